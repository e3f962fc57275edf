//! Loading a dataset folder into a [`Store`], applying every loading rule of the data contract.
//!
//! Data flows one way:
//!
//! ```text
//! files ──read──▶ raw batches ──convert──▶ typed, checked, references resolved ──finalize──▶ table
//!        (CSV/Parquet)        (in parallel, per batch)                        (unique keys, identities)
//! ```
//!
//! Tables load in dependency order (a table after every table it references), so that a reference
//! is resolved to the referenced row's position while the batch is converted. Every input row is
//! either loaded or rejected with a reason, and the report reconciles per table. A file that cannot
//! be read at all fails the load with a message naming it.

mod append;
pub mod convert;
pub mod read;
pub mod report;
mod whole;

use crate::calendar::{Calendar, WorkingHours};
use crate::contract::{ColumnDef, ColumnType, TableDef, TableId};
use crate::error::{Error, Result};
use crate::store::pool::{KeyIndex, KeyIndexCell, StringPool};
use crate::store::{NONE, Pool, Store, StoredColumn, StoredTable, slots};
use crate::time;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, StringArray, StringBuilder, UInt32Array,
};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use convert::{Text, Typed};
use rayon::prelude::*;
use read::{Encoding, Format, RawBatch, SourceFile};
use report::{LoadReport, Reject, RejectReason, TableReport};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use whole::{Placed, Whole};

pub use append::{append, fold};

/// A row's first problem: the column (if one), the reason and the detail.
type Fault = (Option<usize>, RejectReason, String);

/// Called as rows are read: the table and how many more rows.
pub type Progress = Arc<dyn Fn(&'static str, u64) + Send + Sync>;

/// How to load.
#[derive(Clone)]
pub struct LoadOptions {
    /// The encoding of CSV files.
    pub encoding: Encoding,
    /// Rows per batch read from a file.
    pub batch_rows: usize,
    /// Working hours for the calendar (default 09:00–12:00, 14:00–18:00).
    pub working_hours: WorkingHours,
    /// Progress callback.
    pub progress: Option<Progress>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            encoding: Encoding::Auto,
            batch_rows: 64 * 1024,
            working_hours: WorkingHours::default(),
            progress: None,
        }
    }
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("encoding", &self.encoding)
            .field("batch_rows", &self.batch_rows)
            .finish()
    }
}

/// Loads a dataset folder.
pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Store> {
    load_with(dir, &[], opts)
}

/// A file loaded after a table's own files: an ingested batch of the live city.
#[derive(Debug, Clone)]
pub struct Added {
    /// The table its rows belong to.
    pub table: TableId,
    /// The file (with [`SourceFile::replaces`] set for upserts).
    pub file: SourceFile,
}

/// Loads a dataset folder with more files after its tables' own, in the order given (the
/// ingested batches of a live city): each added file's rows are checked by the same rules as
/// the folder's, and the rows of a file that `replaces` take the place of earlier rows with the
/// same key.
pub fn load_with(dir: &Path, added: &[Added], opts: &LoadOptions) -> Result<Store> {
    load_from(dir, added, None, opts)
}

/// The next version of a served city after a batch changed some tables: as [`load_with`]
/// gives, but when the last added file is a batch of door events it is merged into the served
/// events ([`append`]); otherwise only the changed tables and the tables that refer to them
/// (and so to their row numbers) are loaded again; every other table is the served one's, its
/// columns shared, and the identity pool starts as the served one's, so that their keys stay
/// valid.
pub fn load_next(
    dir: &Path,
    added: &[Added],
    served: &Store,
    changed: &[TableId],
    opts: &LoadOptions,
) -> Result<Store> {
    if let ([table], Some(batch)) = (changed, added.last())
        && batch.table == *table
        && let Some(next) = append(served, std::slice::from_ref(batch), opts)?
    {
        return Ok(next);
    }
    load_from(dir, added, Some((served, changed)), opts)
}

/// The tables to load again when some change: those, and every table that refers to one of
/// them, transitively.
pub fn tables_to_reload(changed: &[TableId]) -> std::collections::BTreeSet<TableId> {
    let mut set: std::collections::BTreeSet<TableId> = changed.iter().copied().collect();
    for t in TableId::ALL {
        if t.def()
            .columns
            .iter()
            .any(|c| c.references.is_some_and(|r| set.contains(&r)))
        {
            set.insert(t);
        }
    }
    set
}

fn load_from(
    dir: &Path,
    added: &[Added],
    base: Option<(&Store, &[TableId])>,
    opts: &LoadOptions,
) -> Result<Store> {
    let started = Instant::now();
    let loaded = load_store(dir, added, base, opts);
    // What the load used and freed goes back to the system: a served city holds its own memory.
    crate::memory::release_freed_memory();
    let mut store = loaded?;
    store.report.seconds = started.elapsed().as_secs_f64();
    Ok(store)
}

/// The codes a scope may name in a dataset, read from its `grids` table alone (quick, for
/// checking a token's scope): every grid code and the community, street and district codes of
/// the grids loaded.
pub fn scope_codes(dir: &Path, opts: &LoadOptions) -> Result<std::collections::BTreeSet<String>> {
    let found = read::discover(dir)?;
    let files = found
        .tables
        .get(&TableId::Grids)
        .ok_or_else(|| Error::Load(format!("{}: the dataset has no grids table", dir.display())))?;
    let mut ctx = Ctx::default();
    let loaded = load_table(TableId::Grids, files, &mut ctx, opts)?;
    let mut out = std::collections::BTreeSet::new();
    for c in [
        "grid_code",
        "community_code",
        "street_code",
        "district_code",
    ] {
        let codes = loaded.table.strings(c)?;
        out.extend(codes.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

fn load_store(
    dir: &Path,
    added: &[Added],
    base: Option<(&Store, &[TableId])>,
    opts: &LoadOptions,
) -> Result<Store> {
    let started = Instant::now();
    let mut found = read::discover(dir)?;
    for a in added {
        found
            .tables
            .entry(a.table)
            .or_default()
            .push(a.file.clone());
    }
    let mut ctx = Ctx::default();
    let mut reports = Vec::new();
    let mut rejects_all = Vec::new();
    let mut encodings = BTreeMap::new();
    let reload = base.map(|(_, changed)| tables_to_reload(changed));
    if let Some((served, _)) = base {
        let ids = &served.identities;
        let values: Vec<&str> = (0..ids.len()).map(|i| ids.value(i)).collect();
        ctx.identity.intern_all(&values);
        encodings = served.report.encodings.clone();
    }
    for table in TableId::ALL {
        if let (Some((served, _)), Some(reload)) = (base, &reload)
            && !reload.contains(&table)
        {
            ctx.tables.push(served.table(table).clone());
            reports.push(served.report.tables[table as usize].clone());
            continue;
        }
        let Some(files) = found.tables.get(&table) else {
            ctx.tables.push(StoredTable::empty(table));
            reports.push(TableReport::new(table, Vec::new(), 0, &[]));
            continue;
        };
        let t0 = Instant::now();
        let loaded = load_table(table, files, &mut ctx, opts)?;
        tracing::info!(
            table = table.name(),
            rows = loaded.table.rows,
            seconds = t0.elapsed().as_secs_f64(),
            "table loaded"
        );
        encodings.extend(loaded.encodings);
        let mut rep = TableReport::new(
            table,
            loaded.table.files.clone(),
            loaded.read,
            &loaded.rejects,
        );
        rep.extra_columns = loaded
            .extras
            .iter()
            .map(|n| match n.strip_prefix(RENAMED) {
                Some(orig) => format!("{n} (the file's {orig}, which the engine derives)"),
                None => n.clone(),
            })
            .collect();
        rep.superseded = loaded.superseded;
        rep.loaded -= loaded.superseded;
        reports.push(rep);
        rejects_all.extend(loaded.rejects);
        // Door events are held sorted by building, and by time within a building: a building's
        // events are then one range, and a time window within it a sub-range.
        let t = if table == TableId::AccessEvents {
            let t1 = Instant::now();
            let t = loaded.table.sorted_by_key_and_time("building_id", "ts")?;
            tracing::info!(
                table = table.name(),
                seconds = t1.elapsed().as_secs_f64(),
                "sorted by building and time"
            );
            // The events' columns read and their order before the sort (≈ 2 GB at scale 1.0)
            // go back to the system now: kept for reuse, they stayed in the heaps of the
            // threads that freed them while the tables after and the indexes took more, and
            // the load's peak was theirs on top of all the rest.
            crate::memory::release_freed_memory();
            t
        } else {
            loaded.table
        };
        ctx.tables.push(t);
    }
    let manifest = found.manifest.unwrap_or_default();
    let as_of = as_of_of(&manifest)?;
    let calendar =
        Calendar::of_table(&ctx.tables[TableId::Calendar as usize], &opts.working_hours)?;
    let report = LoadReport {
        dataset: dir.display().to_string(),
        tables: reports,
        ignored: found.ignored,
        encodings,
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut rejects = report::rejects_batch(&rejects_all)?;
    if let (Some((served, _)), Some(reload)) = (base, &reload) {
        // The rejects of the tables kept are the served city's.
        let names = served.rejects.column(0).as_string::<i32>();
        let keep = BooleanArray::from(
            (0..names.len())
                .map(|i| TableId::from_name(names.value(i)).is_none_or(|t| !reload.contains(&t)))
                .collect::<Vec<_>>(),
        );
        let kept = compute::filter_record_batch(&served.rejects, &keep)?;
        rejects = compute::concat_batches(&rejects.schema(), [&kept, &rejects])?;
    }
    let identities = Arc::new(std::mem::take(&mut ctx.identity).into_values());
    // So does the identity numbers' hash table, before the indexes are built.
    crate::memory::release_freed_memory();
    let t0 = Instant::now();
    let store = Store::new(
        ctx.tables,
        identities,
        crate::store::Kept::default(),
        manifest,
        as_of,
        calendar,
        report,
        rejects,
    )?;
    tracing::info!(seconds = t0.elapsed().as_secs_f64(), "indexes built");
    Ok(store)
}

/// The instant a dataset is evaluated at: its manifest's `as_of`, else now.
fn as_of_of(manifest: &crate::store::Manifest) -> Result<i64> {
    match &manifest.as_of {
        Some(s) => time::parse_as_of(s)
            .map_err(|why| Error::Load(format!("manifest.json: as_of {s:?} is {why}"))),
        None => Ok(now()),
    }
}

/// The current instant.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[derive(Default)]
struct Ctx {
    tables: Vec<StoredTable>,
    identity: StringPool,
}

impl Ctx {
    fn table(&self, id: TableId) -> Result<&StoredTable> {
        self.tables
            .get(id as usize)
            .ok_or_else(|| Error::Internal(format!("{} is not loaded yet", id.name())))
    }
}

/// How a file's columns map to the contract's.
#[derive(Debug, Clone)]
struct ColumnMap {
    /// For each contract column, the file's column.
    contract: Vec<Option<usize>>,
    /// The file's other columns: position and name.
    extras: Vec<(usize, String)>,
}

/// The prefix of an extra column renamed because the engine derives a column of its name.
pub const RENAMED: &str = "file_";

/// The name an extra column of a file is kept under: its own, unless SQL shows a derived column
/// of that name on the table (`grid_code` on tables that reach their grid through a reference),
/// in which case it is kept as `file_<name>` (and the load report says so).
fn extra_column_name(def: &TableDef, name: &str) -> String {
    let derived = crate::hierarchy::GridPath::of(def.id()).derives_grid_code();
    if derived && name.eq_ignore_ascii_case("grid_code") {
        format!("{RENAMED}{}", name.to_ascii_lowercase())
    } else {
        name.to_string()
    }
}

/// A header name as an error message shows it: control characters escaped, at most 64
/// characters (a damaged header can hold a whole file).
fn shown(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars().take(64) {
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    if name.chars().count() > 64 {
        s.push('…');
    }
    s
}

/// A header as an error message lists it: its first 40 names, each [`shown`].
fn header_list(names: &[String]) -> String {
    let mut list: Vec<String> = names.iter().take(40).map(|n| shown(n)).collect();
    if names.len() > 40 {
        list.push(format!("… {} more", names.len() - 40));
    }
    list.join(", ")
}

impl ColumnMap {
    fn new(def: &TableDef, names: &[String], file: &str) -> Result<ColumnMap> {
        let mut contract = vec![None; def.columns.len()];
        let mut extras = Vec::new();
        for (i, n) in names.iter().enumerate() {
            match def
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(n))
            {
                Some(ci) => {
                    if contract[ci].is_some() {
                        return Err(Error::Load(format!(
                            "{file}: column {} appears twice",
                            def.columns[ci].name
                        )));
                    }
                    contract[ci] = Some(i);
                }
                None => {
                    if n.is_empty() {
                        return Err(Error::Load(format!(
                            "{file}: column {} of the header has no name",
                            i + 1
                        )));
                    }
                    let name = extra_column_name(def, n);
                    if extras.iter().any(|(_, e): &(usize, String)| *e == name) {
                        return Err(Error::Load(format!(
                            "{file}: column {} appears twice",
                            shown(&name)
                        )));
                    }
                    extras.push((i, name));
                }
            }
        }
        let missing: Vec<&str> = def
            .columns
            .iter()
            .zip(&contract)
            .filter(|(c, m)| c.required && m.is_none())
            .map(|(c, _)| c.name)
            .collect();
        if !missing.is_empty() {
            return Err(Error::Load(format!(
                "{file}: required column{} {} missing (the file has: {})",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", ") + if missing.len() > 1 { " are" } else { " is" },
                header_list(names)
            )));
        }
        Ok(ColumnMap { contract, extras })
    }
}

/// A column of a converted batch.
enum Built {
    /// Text kept as text (a table's own key, free text, months).
    Text(Text),
    /// Numbers, booleans, dates, timestamps.
    Array(ArrayRef),
    /// Enum codes.
    Codes(Int8Array),
    /// Keys: a resolved reference, or a pooled identity.
    Keys(Vec<u32>),
    /// A pooled text column, or an identity column before it joins the identity pool: keys
    /// (`NONE` for null) into its distinct values (a batch's own, then, once the batches are
    /// concatenated, the column's).
    Pooled {
        /// The distinct values.
        values: StringArray,
        /// Each row's value.
        keys: Vec<u32>,
    },
    /// An identity column once its batches are concatenated, before the identities of its
    /// loaded rows join the pool: each batch's keys still point into that batch's values.
    Batches {
        /// Each batch's values.
        values: Vec<StringArray>,
        /// Each batch's first row.
        starts: Vec<usize>,
        /// Each row's value, in its batch's values.
        keys: Vec<u32>,
    },
}

/// Row numbers of a batch: a run (Parquet) or a list (CSV, where quoted line breaks skip lines).
enum RowNumbers {
    Run(u64, usize),
    List(Vec<u64>),
}

impl RowNumbers {
    fn get(&self, i: usize) -> u64 {
        match self {
            RowNumbers::Run(first, _) => first + i as u64,
            RowNumbers::List(v) => v[i],
        }
    }
    fn len(&self) -> usize {
        match self {
            RowNumbers::Run(_, n) => *n,
            RowNumbers::List(v) => v.len(),
        }
    }
}

struct BatchOut {
    file: usize,
    rows: RowNumbers,
    cols: Vec<Built>,
    /// Per column written into its table's whole column: what the batch kept of it.
    placed: Vec<Placed>,
    extras: Vec<(String, ArrayRef)>,
    rejects: Vec<(usize, Reject)>,
}

struct LoadedTable {
    table: StoredTable,
    read: u64,
    /// Rows replaced by a later row with the same key.
    superseded: u64,
    rejects: Vec<Reject>,
    extras: Vec<String>,
    encodings: BTreeMap<String, String>,
}

fn load_table(
    table: TableId,
    files: &[SourceFile],
    ctx: &mut Ctx,
    opts: &LoadOptions,
) -> Result<LoadedTable> {
    let def = table.def();
    let mut per_file: Vec<Vec<BatchOut>> = files.iter().map(|_| Vec::new()).collect();
    let mut early: Vec<Reject> = Vec::new();
    let mut encodings = BTreeMap::new();
    let group = rayon::current_num_threads().max(1) * 2;

    // Parquet: every row group of every file is one unit of work, so that a table written as
    // many one-group files loads on every core.
    let mut layouts = Vec::new();
    let mut units: Vec<(usize, (usize, u64, usize))> = Vec::new();
    for (fi, file) in files.iter().enumerate() {
        if file.format == Format::Parquet {
            let layout = read::parquet_layout(file)?;
            let names: Vec<String> = layout
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let map = ColumnMap::new(def, &names, &file.name)?;
            units.extend(layout.groups.iter().map(|&g| (layouts.len(), g)));
            layouts.push((fi, layout, map));
        }
    }
    // A table read from Parquet alone knows its rows before reading them: its fixed-width
    // columns are allocated whole, and each row group writes its batches into its own part.
    let group_rows: Vec<usize> = units.iter().map(|(_, g)| g.2).collect();
    let mut wholes: Vec<Option<Whole>> = if files.iter().all(|f| f.format == Format::Parquet) {
        let total = group_rows.iter().sum();
        def.columns
            .iter()
            .map(|c| Whole::for_column(c, total))
            .collect()
    } else {
        def.columns.iter().map(|_| None).collect()
    };
    let mut parts: Vec<Vec<Option<whole::Part>>> = units.iter().map(|_| Vec::new()).collect();
    for w in wholes.iter_mut() {
        match w {
            Some(w) => {
                for (u, p) in w.parts(&group_rows).into_iter().enumerate() {
                    parts[u].push(Some(p));
                }
            }
            None => parts.iter_mut().for_each(|p| p.push(None)),
        }
    }
    let cx: &Ctx = ctx;
    let done: Vec<Result<(usize, Vec<BatchOut>)>> = units
        .par_iter()
        .zip(parts.into_par_iter())
        .map(|(&(li, g), mut parts)| {
            let (fi, layout, map) = &layouts[li];
            let file = &files[*fi];
            let mut v = Vec::new();
            let mut at = 0;
            read::read_parquet_row_group(file, layout, g, opts.batch_rows, |raw| {
                let n = raw.len();
                let mut out = convert_batch(def, map, raw, *fi, file, cx)?;
                for (ci, part) in parts.iter_mut().enumerate() {
                    let placed = match part {
                        Some(part) => {
                            let built =
                                std::mem::replace(&mut out.cols[ci], Built::Keys(Vec::new()));
                            part.write(at, built).map_err(|e| {
                                Error::Load(format!("{}: row group {}: {e}", file.name, g.0))
                            })?
                        }
                        None => Placed::default(),
                    };
                    out.placed.push(placed);
                }
                at += n;
                v.push(out);
                if let Some(p) = &opts.progress {
                    p(def.name, n as u64);
                }
                Ok(())
            })?;
            if let Some(short) = parts.iter().flatten().find(|p| p.len() != at) {
                return Err(Error::Load(format!(
                    "{}: row group {} holds {at} rows, and its footer says {}",
                    file.name,
                    g.0,
                    short.len()
                )));
            }
            Ok((*fi, v))
        })
        .collect();
    for d in done {
        let (fi, v) = d?;
        per_file[fi].extend(v);
    }

    // CSV: read in order, converted a group of batches at a time on every core.
    for (fi, file) in files.iter().enumerate() {
        if file.format != Format::Csv {
            continue;
        }
        let mut outs: Vec<BatchOut> = Vec::new();
        if let Some(read) = file.read.as_ref().filter(|r| !r.is_empty()) {
            // Rows at hand already (a batch just ingested): converted as read from the file.
            let map = ColumnMap::new(def, &read[0].names, &file.name)?;
            for part in read.chunks(group) {
                outs.extend(convert_group(def, &map, part.to_vec(), fi, file, cx, opts)?);
            }
            encodings.insert(file.name.clone(), "UTF-8".to_string());
            per_file[fi] = outs;
            continue;
        }
        let mut pending: Vec<RawBatch> = Vec::new();
        let mut map: Option<ColumnMap> = None;
        let (enc, rej) = read::read_csv(file, table, opts.encoding, opts.batch_rows, |raw| {
            if map.is_none() {
                map = Some(ColumnMap::new(def, &raw.names, &file.name)?);
            }
            pending.push(raw);
            if pending.len() >= group
                && let Some(m) = &map
            {
                let done = convert_group(def, m, std::mem::take(&mut pending), fi, file, cx, opts)?;
                outs.extend(done);
            }
            Ok(())
        })?;
        if let Some(m) = &map {
            let done = convert_group(def, m, pending, fi, file, cx, opts)?;
            outs.extend(done);
        }
        encodings.insert(
            file.name.clone(),
            match enc {
                Encoding::Gb18030 => "GB18030",
                _ => "UTF-8",
            }
            .to_string(),
        );
        early.extend(rej);
        per_file[fi] = outs;
    }
    let outs: Vec<BatchOut> = per_file.into_iter().flatten().collect();
    let replaces: Vec<bool> = files.iter().map(|f| f.replaces).collect();
    let files: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    finalize(def, (files, replaces), outs, wholes, early, ctx, encodings)
}

fn convert_group(
    def: &'static TableDef,
    map: &ColumnMap,
    raws: Vec<RawBatch>,
    fi: usize,
    file: &SourceFile,
    ctx: &Ctx,
    opts: &LoadOptions,
) -> Result<Vec<BatchOut>> {
    let rows: u64 = raws.iter().map(|r| r.len() as u64).sum();
    let out = raws
        .into_par_iter()
        .map(|raw| convert_batch(def, map, raw, fi, file, ctx))
        .collect::<Result<Vec<_>>>()?;
    if let Some(p) = &opts.progress {
        p(def.name, rows);
    }
    Ok(out)
}

/// Renders a raw row as the file had it (CSV: the record; Parquet: the values, comma separated).
fn render_raw(raw: &RawBatch, row: usize) -> String {
    let opts = FormatOptions::default().with_null("");
    let values: Vec<String> = raw
        .columns
        .iter()
        .map(|c| match ArrayFormatter::try_new(c.as_ref(), &opts) {
            Ok(f) => f.value(row).to_string(),
            Err(_) => String::new(),
        })
        .collect();
    read::record_to_csv(values.iter().map(String::as_str))
}

fn convert_batch(
    def: &'static TableDef,
    map: &ColumnMap,
    raw: RawBatch,
    fi: usize,
    file: &SourceFile,
    ctx: &Ctx,
) -> Result<BatchOut> {
    let n = raw.len();
    // The first problem of each row: (column, reason, detail).
    let mut fault: Vec<Option<Box<Fault>>> = vec![None; n];
    let mut typed = Vec::with_capacity(def.columns.len());
    for (ci, col) in def.columns.iter().enumerate() {
        let input = map.contract[ci].map(|i| &raw.columns[i]);
        let (t, errors) = convert::convert(&file.name, col, input, n)?;
        for (row, reason, detail) in errors {
            if fault[row].is_none() {
                fault[row] = Some(Box::new((Some(ci), reason, detail)));
            }
        }
        typed.push(t);
    }
    cross_checks(def, &typed, &mut fault);
    let mut cols = Vec::with_capacity(typed.len());
    for (ci, (col, t)) in def.columns.iter().zip(typed).enumerate() {
        let built = match (col.references, col.identity, t) {
            (Some(target), _, Typed::Text(text)) => {
                Built::Keys(resolve(ctx, col, target, &text, ci, &mut fault)?)
            }
            // Identities join the pool once the table's loaded rows are known.
            (None, true, Typed::Text(text)) => {
                let (values, keys) = text.pooled();
                Built::Pooled { values, keys }
            }
            (_, _, Typed::Text(text)) if col.pooled => {
                let (values, keys) = text.distinct();
                Built::Pooled { values, keys }
            }
            (_, _, Typed::Text(text)) => Built::Text(text),
            (_, _, Typed::Array(a)) => Built::Array(a),
            (_, _, Typed::Codes(c)) => Built::Codes(c),
        };
        cols.push(built);
    }
    let mut rejects = Vec::new();
    for (row, f) in fault.into_iter().enumerate() {
        if let Some(f) = f {
            let (ci, reason, detail) = *f;
            rejects.push((
                row,
                Reject {
                    table: def.name,
                    file: file.name.clone(),
                    row: raw.rows[row],
                    column: ci.map(|c| def.columns[c].name.to_string()),
                    reason,
                    detail,
                    raw: render_raw(&raw, row),
                },
            ));
        }
    }
    let mut extras = Vec::with_capacity(map.extras.len());
    for (i, name) in &map.extras {
        let a = &raw.columns[*i];
        let a = match convert::as_text(a)? {
            Some(t) => Arc::new(t.to_plain()?) as ArrayRef,
            None => a.clone(),
        };
        extras.push((name.clone(), a));
    }
    let rows = if raw.csv {
        RowNumbers::List(raw.rows)
    } else {
        RowNumbers::Run(raw.rows.first().copied().unwrap_or(1), n)
    };
    Ok(BatchOut {
        file: fi,
        rows,
        cols,
        placed: Vec::new(),
        extras,
        rejects,
    })
}

/// Resolves a reference column to the rows of the target table.
fn resolve(
    ctx: &Ctx,
    col: &ColumnDef,
    target: TableId,
    text: &Text,
    ci: usize,
    fault: &mut [Option<Box<Fault>>],
) -> Result<Vec<u32>> {
    let t = ctx.table(target)?;
    let key_name = target.def().single_key().unwrap_or("");
    let keys = t.strings(key_name)?;
    let index = t.key_index();
    let found = text.lookup(|s| index.and_then(|ix| ix.get(keys, s)));
    let mut out = Vec::with_capacity(found.len());
    for (row, f) in found.into_iter().enumerate() {
        out.push(match f {
            None => NONE,
            Some(Some(k)) => k,
            Some(None) => {
                if fault[row].is_none() {
                    let v = text.get(row).unwrap_or("");
                    fault[row] = Some(Box::new((
                        Some(ci),
                        RejectReason::UnknownReference,
                        format!(
                            "{} {v:?} is not a {key_name} of {}{}",
                            col.name,
                            target.name(),
                            if t.rows == 0 {
                                " (which has no loaded rows)"
                            } else {
                                ""
                            }
                        ),
                    )));
                }
                NONE
            }
        });
    }
    Ok(out)
}

/// Checks that involve several columns of a row.
fn cross_checks(def: &TableDef, typed: &[Typed], fault: &mut [Option<Box<Fault>>]) {
    let text = |name: &str| -> Option<&Text> {
        match def.position(name).map(|i| &typed[i]) {
            Some(Typed::Text(t)) => Some(t),
            _ => None,
        }
    };
    let array = |name: &str| -> Option<&ArrayRef> {
        match def.position(name).map(|i| &typed[i]) {
            Some(Typed::Array(a)) => Some(a),
            _ => None,
        }
    };
    match def.id() {
        TableId::Grids => {
            let Some(grid) = text("grid_code") else {
                return;
            };
            for (name, len) in [
                ("community_code", 12),
                ("street_code", 9),
                ("district_code", 6),
            ] {
                let (Some(code), Some(ci)) = (text(name), def.position(name)) else {
                    continue;
                };
                for (row, f) in fault.iter_mut().enumerate() {
                    if f.is_some() {
                        continue;
                    }
                    if let (Some(g), Some(c)) = (grid.get(row), code.get(row))
                        && g.get(..len) != Some(c)
                    {
                        *f = Some(Box::new((
                            Some(ci),
                            RejectReason::GridCodeMismatch,
                            format!(
                                "{name} {c} disagrees with grid_code {g} (expected {})",
                                g.get(..len).unwrap_or(g)
                            ),
                        )));
                    }
                }
            }
        }
        TableId::Leases => {
            let (Some(s), Some(e), Some(ci)) = (
                array("start_date"),
                array("end_date"),
                def.position("end_date"),
            ) else {
                return;
            };
            let (Some(s), Some(e)) = (
                s.as_primitive_opt::<arrow::datatypes::Date32Type>(),
                e.as_primitive_opt::<arrow::datatypes::Date32Type>(),
            ) else {
                return;
            };
            for (row, f) in fault.iter_mut().enumerate() {
                if f.is_none() && !s.is_null(row) && !e.is_null(row) && e.value(row) < s.value(row)
                {
                    *f = Some(Box::new((
                        Some(ci),
                        RejectReason::EndBeforeStart,
                        format!(
                            "end_date {} is before start_date {}",
                            time::format_date(e.value(row)),
                            time::format_date(s.value(row))
                        ),
                    )));
                }
            }
        }
        TableId::Incidents => {
            let stages = [
                "reported_at",
                "accepted_at",
                "dispatched_at",
                "handled_at",
                "verified_at",
                "closed_at",
            ];
            let cols: Vec<(usize, &arrow::array::TimestampMicrosecondArray)> = stages
                .iter()
                .filter_map(|s| {
                    let i = def.position(s)?;
                    let a = array(s)?
                        .as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>()?;
                    Some((i, a))
                })
                .collect();
            for (row, f) in fault.iter_mut().enumerate() {
                if f.is_some() {
                    continue;
                }
                // A case that closes before it was reported says so first, whatever the
                // stages between.
                if let (Some(&(ri, r)), Some(&(ci, c))) = (cols.first(), cols.last())
                    && !r.is_null(row)
                    && !c.is_null(row)
                    && c.value(row) < r.value(row)
                {
                    *f = Some(Box::new((
                        Some(ci),
                        RejectReason::StageOrder,
                        format!(
                            "{} {} is before {} {}: the case closes before it opens",
                            def.columns[ci].name,
                            time::format_timestamp(c.value(row)),
                            def.columns[ri].name,
                            time::format_timestamp(r.value(row))
                        ),
                    )));
                    continue;
                }
                let mut prev: Option<(usize, i64)> = None;
                for &(ci, a) in &cols {
                    if a.is_null(row) {
                        continue;
                    }
                    let t = a.value(row);
                    if let Some((pi, pt)) = prev
                        && t < pt
                    {
                        *f = Some(Box::new((
                            Some(ci),
                            RejectReason::StageOrder,
                            format!(
                                "{} {} is before {} {}",
                                def.columns[ci].name,
                                time::format_timestamp(t),
                                def.columns[pi].name,
                                time::format_timestamp(pt)
                            ),
                        )));
                        break;
                    }
                    prev = Some((ci, t));
                }
            }
        }
        _ => {}
    }
}

/// Where a global row came from: (batch, row within the batch).
/// Upserts: the last loaded row of a key among the rows of files that replace takes the place of
/// every other row with that key (marked not alive). Returns how many rows were replaced.
fn supersede(
    def: &TableDef,
    columns: &[Built],
    outs: &[BatchOut],
    starts: &[usize],
    replaces: &[bool],
    alive: &mut [bool],
) -> u64 {
    let Some(key) = def.single_key() else {
        return 0;
    };
    if !replaces.iter().any(|&r| r) {
        return 0;
    }
    let Some(Built::Text(Text::Plain(values))) = def.position(key).map(|ci| &columns[ci]) else {
        return 0;
    };
    let mut last: ahash::AHashMap<&str, usize> = ahash::AHashMap::new();
    for (b, o) in outs.iter().enumerate() {
        if !replaces[o.file] {
            continue;
        }
        for row in starts[b]..starts[b] + o.rows.len() {
            if alive[row] && !values.is_null(row) {
                last.insert(values.value(row), row);
            }
        }
    }
    let mut n = 0;
    for (row, a) in alive.iter_mut().enumerate() {
        if *a && !values.is_null(row) && last.get(values.value(row)).is_some_and(|&l| l != row) {
            *a = false;
            n += 1;
        }
    }
    n
}

fn locate(starts: &[usize], row: usize) -> (usize, usize) {
    let b = starts.partition_point(|&s| s <= row) - 1;
    (b, row - starts[b])
}

fn finalize(
    def: &'static TableDef,
    (files, replaces): (Vec<String>, Vec<bool>),
    mut outs: Vec<BatchOut>,
    wholes: Vec<Option<Whole>>,
    early: Vec<Reject>,
    ctx: &mut Ctx,
    encodings: BTreeMap<String, String>,
) -> Result<LoadedTable> {
    let table = def.id();
    let t0 = Instant::now();
    let phase = |what: &str| {
        tracing::debug!(
            table = def.name,
            seconds = t0.elapsed().as_secs_f64(),
            "finalize: {what}"
        )
    };
    let mut starts = Vec::with_capacity(outs.len());
    let mut total = 0usize;
    for o in &outs {
        starts.push(total);
        total += o.rows.len();
    }
    let read = (total + early.len()) as u64;
    let mut alive = vec![true; total];
    let mut rejects: Vec<(usize, Reject)> = Vec::new();
    for (b, o) in outs.iter().enumerate() {
        for (r, rej) in &o.rejects {
            alive[starts[b] + r] = false;
            rejects.push((starts[b] + r, rej.clone()));
        }
    }
    // Concatenate the batches column by column, unless their rows are in a whole column already.
    let ncols = def.columns.len();
    let lens: Vec<usize> = outs.iter().map(|o| o.rows.len()).collect();
    let mut columns: Vec<Built> = Vec::with_capacity(ncols);
    for (ci, w) in wholes.into_iter().enumerate() {
        let col = def.columns[ci];
        columns.push(match w {
            Some(w) => {
                let placed: Vec<Placed> = outs
                    .iter_mut()
                    .map(|o| std::mem::take(&mut o.placed[ci]))
                    .collect();
                w.assemble(&col, placed, &lens)?
            }
            None => {
                // Each batch's part is moved out (and freed once concatenated).
                let parts: Vec<Built> = outs
                    .iter_mut()
                    .map(|o| std::mem::replace(&mut o.cols[ci], Built::Keys(Vec::new())))
                    .collect();
                concat_built(col, parts, total)?
            }
        });
    }
    phase("concatenated");
    let superseded = supersede(def, &columns, &outs, &starts, &replaces, &mut alive);
    // Unique keys: every copy after the first is rejected.
    let mut key_index = None;
    let where_of = |row: usize| -> (String, u64) {
        let (b, r) = locate(&starts, row);
        (files[outs[b].file].clone(), outs[b].rows.get(r))
    };
    let mut duplicates: Vec<(usize, usize)> = Vec::new();
    if let Some(key) = def.single_key() {
        let ci = def.position(key).unwrap_or(0);
        if let Built::Text(Text::Plain(values)) = &columns[ci] {
            let (index, reps) = KeyIndex::build(values, |r| !alive[r]);
            duplicates = reps;
            key_index = Some(index);
        }
    } else if !def.key.is_empty() {
        duplicates = composite_duplicates(def, &columns, &alive);
    }
    phase("keys checked");
    for (row, first) in &duplicates {
        alive[*row] = false;
        let (ffile, frow) = where_of(*first);
        let (file, rown) = where_of(*row);
        let key_desc = def
            .key
            .iter()
            .map(|k| {
                let ci = def.position(k).unwrap_or(0);
                format!("{k} {}", value_string(def, ctx, &columns, ci, *row))
            })
            .collect::<Vec<_>>()
            .join(", ");
        rejects.push((
            *row,
            Reject {
                table: def.name,
                file,
                row: rown,
                column: Some(def.key.join("+")),
                reason: RejectReason::DuplicateKey,
                detail: format!("{key_desc} repeats {ffile} row {frow}"),
                raw: render_built(def, ctx, &columns, *row),
            },
        ));
    }
    // The identities of the loaded rows join the pool.
    for c in columns.iter_mut() {
        if let Built::Batches {
            values,
            starts,
            keys,
        } = c
        {
            intern_identities(&mut ctx.identity, values, starts, keys, &alive);
            *c = Built::Keys(std::mem::take(keys));
        }
    }
    phase("identities interned");
    // Keep the loaded rows.
    // Usually every row is kept, and the columns are stored as they are.
    let kept = if rejects.is_empty() && superseded == 0 {
        None
    } else {
        let keep = BooleanArray::from(alive.clone());
        if let Some(ix) = key_index.as_mut() {
            let mut new_row = vec![NONE; total];
            let mut next = 0u32;
            for (i, a) in alive.iter().enumerate() {
                if *a {
                    new_row[i] = next;
                    next += 1;
                }
            }
            ix.renumber(&new_row);
        }
        Some(Kept {
            rows: keep.true_count(),
            keep,
            alive: &alive,
        })
    };
    let rows = kept.as_ref().map_or(total, |k| k.rows);
    let mut stored = Vec::with_capacity(ncols);
    for (ci, built) in columns.into_iter().enumerate() {
        stored.push(store_column(def.columns[ci], built, kept.as_ref())?);
    }
    phase("rows kept");
    // Extra columns, in order of first appearance.
    let mut extra_names: Vec<String> = Vec::new();
    for o in &outs {
        for (n, _) in &o.extras {
            if !extra_names.contains(n) {
                extra_names.push(n.clone());
            }
        }
    }
    let mut fields: Vec<Field> = def
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for name in &extra_names {
        let parts: Vec<Option<&ArrayRef>> = outs
            .iter()
            .map(|o| o.extras.iter().find(|(n, _)| n == name).map(|(_, a)| a))
            .collect();
        let types: Vec<&DataType> = parts.iter().flatten().map(|a| a.data_type()).collect();
        let dt = if types.windows(2).all(|w| w[0] == w[1]) {
            types
                .first()
                .map(|t| (*t).clone())
                .unwrap_or(DataType::Utf8)
        } else {
            DataType::Utf8
        };
        let arrays: Vec<ArrayRef> = parts
            .iter()
            .zip(&outs)
            .map(|(p, o)| match p {
                Some(a) if a.data_type() == &dt => Ok((*a).clone()),
                Some(a) => Ok(compute::cast(a, &dt)?),
                None => Ok(arrow::array::new_null_array(&dt, o.rows.len())),
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
        let all = if refs.is_empty() {
            arrow::array::new_empty_array(&dt)
        } else {
            compute::concat(&refs)?
        };
        stored.push(StoredColumn::Array(match &kept {
            Some(k) => k.array(&all)?,
            None => all,
        }));
        fields.push(Field::new(name, dt, true));
    }
    rejects.sort_by_key(|(r, _)| *r);
    let mut all_rejects = early;
    all_rejects.extend(rejects.into_iter().map(|(_, r)| r));
    Ok(LoadedTable {
        table: StoredTable {
            id: table,
            rows,
            columns: stored,
            schema: Arc::new(Schema::new(fields)),
            files,
            key_cell: key_index.map(|ix| KeyIndexCell::built(Arc::new(ix))),
            on_disk: Default::default(),
            room: None,
        },
        read,
        superseded,
        rejects: all_rejects,
        extras: extra_names,
        encodings,
    })
}

fn concat_built(col: ColumnDef, parts: Vec<Built>, total: usize) -> Result<Built> {
    if parts.is_empty() {
        return Ok(match col.ty {
            _ if col.pooled => Built::Pooled {
                values: StringArray::from(Vec::<&str>::new()),
                keys: Vec::new(),
            },
            ColumnType::Enum(_) => Built::Codes(Int8Array::from(Vec::<i8>::new())),
            ColumnType::Text | ColumnType::Month if col.references.is_none() && !col.identity => {
                Built::Text(Text::Plain(StringArray::from(Vec::<&str>::new())))
            }
            ColumnType::Text => Built::Keys(Vec::new()),
            _ => Built::Array(arrow::array::new_empty_array(&col.arrow_type())),
        });
    }
    Ok(match parts[0] {
        Built::Batches { .. } => {
            return Err(Error::Internal(
                "a batch holds an identity column already concatenated".into(),
            ));
        }
        Built::Keys(_) => {
            let parts: Vec<&[u32]> = parts
                .iter()
                .filter_map(|p| match p {
                    Built::Keys(k) => Some(k.as_slice()),
                    _ => None,
                })
                .collect();
            Built::Keys(par_concat(&parts, total))
        }
        Built::Pooled { .. } => {
            let mut values = Vec::with_capacity(parts.len());
            let mut keys = Vec::with_capacity(parts.len());
            for p in &parts {
                if let Built::Pooled { values: v, keys: k } = p {
                    values.push(v.clone());
                    keys.push(k.as_slice());
                }
            }
            let lens: Vec<usize> = keys.iter().map(|k| k.len()).collect();
            let mut keys = par_concat(&keys, total);
            if col.identity {
                return Ok(Built::Batches {
                    values,
                    starts: starts_of(&lens),
                    keys,
                });
            }
            let values = pool_batches(&col, &values, &mut keys, &lens);
            Built::Pooled { values, keys }
        }
        Built::Codes(_) => {
            let arrays: Vec<&dyn Array> = parts
                .iter()
                .filter_map(|p| match p {
                    Built::Codes(c) => Some(c as &dyn Array),
                    _ => None,
                })
                .collect();
            let c = compute::concat(&arrays)?;
            Built::Codes(c.as_primitive::<arrow::datatypes::Int8Type>().clone())
        }
        Built::Array(_) => {
            let arrays: Vec<&dyn Array> = parts
                .iter()
                .filter_map(|p| match p {
                    Built::Array(a) => Some(a.as_ref()),
                    _ => None,
                })
                .collect();
            Built::Array(concat_arrays(&arrays, total)?)
        }
        Built::Text(_) => {
            let plain: Vec<StringArray> = parts
                .iter()
                .filter_map(|p| match p {
                    Built::Text(t) => Some(t.to_plain()),
                    _ => None,
                })
                .collect::<Result<_>>()?;
            let arrays: Vec<&dyn Array> = plain.iter().map(|a| a as &dyn Array).collect();
            let c = compute::concat(&arrays)?;
            Built::Text(Text::Plain(c.as_string::<i32>().clone()))
        }
    })
}

/// Interns the identities of an identity column's loaded rows into the identity pool, in order
/// of their first loaded row (positions are deterministic); `keys` then hold pool positions
/// (`NONE` for null and for rows not loaded). Batch `b` holds rows `starts[b]..` and `values[b]`.
fn intern_identities(
    pool: &mut StringPool,
    values: &[StringArray],
    starts: &[usize],
    keys: &mut [u32],
    alive: &[bool],
) {
    let lens: Vec<usize> = (0..starts.len())
        .map(|b| starts.get(b + 1).copied().unwrap_or(keys.len()) - starts[b])
        .collect();
    join_pool(
        pool,
        values,
        keys,
        &lens,
        Some(alive),
        std::borrow::Cow::Borrowed,
    );
}

/// A pooled column's pool, from its batches' own distinct values (months in their canonical
/// form, YYYY-MM); `keys` then hold positions in it.
fn pool_batches(
    col: &ColumnDef,
    values: &[StringArray],
    keys: &mut [u32],
    lens: &[usize],
) -> StringArray {
    let mut pool = StringPool::default();
    join_pool(&mut pool, values, keys, lens, None, |v| match col.ty {
        ColumnType::Month => canonical_month(v).into(),
        _ => v.into(),
    });
    pool.into_values()
}

/// Batches' own values joining a pool, all at once, in order of first use batch by batch, as
/// `canon` gives them: `keys` holds the batches' keys one after another (`lens` rows each), each
/// into its batch's `values`, and is renumbered to pool positions side by side. With `alive`,
/// only values of the rows it keeps join, and the other rows' keys become `NONE`; without, every
/// value of a batch is one its rows use (a batch's own dictionary), in order of first use.
fn join_pool<'a>(
    pool: &mut StringPool,
    values: &'a [StringArray],
    keys: &mut [u32],
    lens: &[usize],
    alive: Option<&[bool]>,
    canon: impl Fn(&'a str) -> std::borrow::Cow<'a, str> + Sync,
) {
    let starts = starts_of(lens);
    // Each batch's values that join, in order of first use.
    let used: Vec<Vec<u32>> = match alive {
        None => values
            .iter()
            .map(|v| (0..v.len() as u32).collect())
            .collect(),
        Some(alive) => slots(keys, lens.iter().copied())
            .into_par_iter()
            .zip(values.par_iter())
            .zip(starts.par_iter())
            .map(|((keys, values), &start)| {
                let mut seen = vec![false; values.len()];
                let mut used = Vec::new();
                for (i, &k) in keys.iter().enumerate() {
                    if k != NONE && alive[start + i] && !seen[k as usize] {
                        seen[k as usize] = true;
                        used.push(k);
                    }
                }
                used
            })
            .collect(),
    };
    let all: Vec<std::borrow::Cow<str>> = used
        .iter()
        .zip(values)
        .flat_map(|(u, v)| u.iter().map(|&k| canon(v.value(k as usize))))
        .collect();
    let all: Vec<&str> = all.iter().map(|v| v.as_ref()).collect();
    let mut ids = pool.intern_all(&all).into_iter();
    let mut to: Vec<Vec<u32>> = values.iter().map(|v| vec![NONE; v.len()]).collect();
    for (to, u) in to.iter_mut().zip(&used) {
        for &k in u {
            to[k as usize] = ids.next().unwrap_or(NONE);
        }
    }
    slots(keys, lens.iter().copied())
        .into_par_iter()
        .zip(to.par_iter())
        .zip(starts.par_iter())
        .for_each(|((keys, to), &start)| {
            for (i, k) in keys.iter_mut().enumerate() {
                let loaded = alive.is_none_or(|a| a[start + i]);
                *k = if *k == NONE || !loaded {
                    NONE
                } else {
                    to[*k as usize]
                };
            }
        });
}

/// The rows kept when some were rejected.
struct Kept<'a> {
    keep: BooleanArray,
    alive: &'a [bool],
    rows: usize,
}

impl Kept<'_> {
    fn keys(&self, keys: Vec<u32>) -> Vec<u32> {
        let mut v: Vec<u32> = Vec::with_capacity(self.rows);
        v.extend(
            keys.iter()
                .zip(self.alive)
                .filter(|(_, a)| **a)
                .map(|(k, _)| *k),
        );
        v
    }

    fn array(&self, a: &dyn Array) -> Result<ArrayRef> {
        Ok(compute::filter(a, &self.keep)?)
    }
}

/// Each part's first row, for parts of the given lengths.
fn starts_of(lens: &[usize]) -> Vec<usize> {
    lens.iter()
        .scan(0, |next, &n| {
            let start = *next;
            *next += n;
            Some(start)
        })
        .collect()
}

/// Parts concatenated, copied side by side.
fn par_concat<T: Copy + Default + Send + Sync>(parts: &[&[T]], total: usize) -> Vec<T> {
    let mut out = vec![T::default(); total];
    slots(&mut out, parts.iter().map(|p| p.len()))
        .into_par_iter()
        .zip(parts.par_iter())
        .for_each(|(o, p)| o.copy_from_slice(p));
    out
}

/// Arrays concatenated: fixed-width ones copied side by side, others by Arrow.
fn concat_arrays(arrays: &[&dyn Array], total: usize) -> Result<ArrayRef> {
    use arrow::datatypes::{
        ArrowPrimitiveType, Date32Type, Float64Type, Int64Type, TimestampMicrosecondType,
    };
    fn primitive<T: ArrowPrimitiveType>(arrays: &[&dyn Array], total: usize) -> Option<ArrayRef> {
        let parts: Vec<&arrow::array::PrimitiveArray<T>> = arrays
            .iter()
            .map(|a| a.as_primitive_opt::<T>())
            .collect::<Option<_>>()?;
        let dt = parts.first()?.data_type().clone();
        let slices: Vec<&[T::Native]> = parts.iter().map(|p| p.values().as_ref()).collect();
        let values = par_concat(&slices, total);
        let nulls = crate::store::concat_nulls(parts.iter().map(|p| (p.len(), p.nulls())), total);
        Some(Arc::new(
            arrow::array::PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls)
                .with_data_type(dt),
        ))
    }
    let fast = match arrays.first().map(|a| a.data_type()) {
        Some(DataType::Int64) => primitive::<Int64Type>(arrays, total),
        Some(DataType::Float64) => primitive::<Float64Type>(arrays, total),
        Some(DataType::Date32) => primitive::<Date32Type>(arrays, total),
        Some(DataType::Timestamp(..)) => primitive::<TimestampMicrosecondType>(arrays, total),
        _ => None,
    };
    match fast {
        Some(a) => Ok(a),
        None => Ok(compute::concat(arrays)?),
    }
}

fn store_column(col: ColumnDef, built: Built, kept: Option<&Kept>) -> Result<StoredColumn> {
    Ok(match built {
        Built::Batches { .. } => {
            return Err(Error::Internal(format!(
                "the identities of {} were not pooled",
                col.name
            )));
        }
        Built::Pooled { values, keys } => {
            let Some(kept) = kept else {
                // Every batch's values are ones its rows use.
                return Ok(StoredColumn::Keys {
                    keys: keys_array(keys),
                    pool: Pool::Local(Arc::new(values)),
                });
            };
            // The loaded rows' keys, and only the values they use, in pool order.
            let mut v = kept.keys(keys);
            let mut used = vec![false; values.len()];
            for &k in &v {
                if k != NONE {
                    used[k as usize] = true;
                }
            }
            let mut to = vec![NONE; values.len()];
            let mut used_values = StringBuilder::new();
            let mut next = 0u32;
            for (i, u) in used.iter().enumerate() {
                if *u {
                    to[i] = next;
                    next += 1;
                    used_values.append_value(values.value(i));
                }
            }
            v.par_iter_mut().for_each(|k| {
                if *k != NONE {
                    *k = to[*k as usize];
                }
            });
            StoredColumn::Keys {
                keys: keys_array(v),
                pool: Pool::Local(Arc::new(used_values.finish())),
            }
        }
        Built::Keys(keys) => {
            let v = match kept {
                Some(k) => k.keys(keys),
                None => keys,
            };
            let pool = match col.references {
                Some(t) => Pool::Table(t),
                None => Pool::Identity,
            };
            StoredColumn::Keys {
                keys: keys_array(v),
                pool,
            }
        }
        Built::Codes(c) => {
            let f = match kept {
                Some(k) => k.array(&c)?,
                None => Arc::new(c),
            };
            StoredColumn::Codes {
                codes: f.as_primitive::<arrow::datatypes::Int8Type>().clone(),
                values: Arc::new(StringArray::from(col.enum_values().unwrap_or(&[]).to_vec())),
            }
        }
        Built::Array(a) => StoredColumn::Array(match kept {
            Some(k) => k.array(&a)?,
            None => a,
        }),
        Built::Text(t) => {
            let plain = t.to_plain()?;
            let f: ArrayRef = match kept {
                Some(k) => k.array(&plain)?,
                None => Arc::new(plain),
            };
            if col.ty == ColumnType::Month {
                let s = f.as_string::<i32>();
                let mut b = StringBuilder::with_capacity(s.len(), s.len() * 7);
                for v in s.iter() {
                    match v {
                        Some(v) => b.append_value(canonical_month(v)),
                        None => b.append_null(),
                    }
                }
                StoredColumn::Array(Arc::new(b.finish()))
            } else {
                StoredColumn::Array(f)
            }
        }
    })
}

/// A month in its canonical form, YYYY-MM (a value that is not a month, which the checks have
/// rejected already, as it is).
fn canonical_month(v: &str) -> String {
    time::parse_month(v.trim())
        .map(time::format_month)
        .unwrap_or_else(|_| v.to_string())
}

/// Keys as an array, null where `NONE`.
fn keys_array(v: Vec<u32>) -> UInt32Array {
    let nulls = v.par_iter().any(|&k| k == NONE).then(|| {
        NullBuffer::new(arrow::buffer::BooleanBuffer::collect_bool(v.len(), |i| {
            v[i] != NONE
        }))
    });
    UInt32Array::new(ScalarBuffer::from(v), nulls)
}

/// A row's value of a contract column, as text, before the table is finalized.
fn value_string(def: &TableDef, ctx: &Ctx, columns: &[Built], ci: usize, row: usize) -> String {
    let col = &def.columns[ci];
    match &columns[ci] {
        Built::Text(t) => t.get(row).unwrap_or("").to_string(),
        Built::Pooled { values, keys } => match keys[row] {
            NONE => String::new(),
            k => values.value(k as usize).to_string(),
        },
        Built::Batches {
            values,
            starts,
            keys,
        } => match keys[row] {
            NONE => String::new(),
            k => values[locate(starts, row).0].value(k as usize).to_string(),
        },
        Built::Codes(c) => {
            if c.is_null(row) {
                String::new()
            } else {
                col.enum_values()
                    .and_then(|v| v.get(c.value(row) as usize))
                    .unwrap_or(&"")
                    .to_string()
            }
        }
        Built::Array(a) => {
            let opts = FormatOptions::default().with_null("");
            ArrayFormatter::try_new(a.as_ref(), &opts)
                .map(|f| f.value(row).to_string())
                .unwrap_or_default()
        }
        Built::Keys(k) => {
            let key = k[row];
            if key == NONE {
                return String::new();
            }
            match col.references {
                Some(t) => ctx
                    .table(t)
                    .ok()
                    .and_then(|t| {
                        let key_name = t.id.def().single_key()?;
                        let s = t.strings(key_name).ok()?;
                        Some(s.value(key as usize).to_string())
                    })
                    .unwrap_or_default(),
                None if (key as usize) < ctx.identity.len() => ctx.identity.value(key).to_string(),
                None => String::new(),
            }
        }
    }
}

fn render_built(def: &TableDef, ctx: &Ctx, columns: &[Built], row: usize) -> String {
    let values: Vec<String> = (0..def.columns.len())
        .map(|ci| value_string(def, ctx, columns, ci, row))
        .collect();
    read::record_to_csv(values.iter().map(String::as_str))
}

/// Rows whose composite key repeats an earlier live row's: (row, first row).
fn composite_duplicates(def: &TableDef, columns: &[Built], alive: &[bool]) -> Vec<(usize, usize)> {
    let parts: Vec<usize> = def.key.iter().filter_map(|k| def.position(k)).collect();
    let n = alive.len();
    // Encode each row's key as bytes: fixed-width parts as their bits, text with its length.
    let encode = |row: usize| -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        for &ci in &parts {
            match &columns[ci] {
                Built::Keys(k) | Built::Pooled { keys: k, .. } => {
                    out.extend_from_slice(&k[row].to_le_bytes())
                }
                Built::Batches {
                    values,
                    starts,
                    keys,
                } => {
                    let s = match keys[row] {
                        NONE => "",
                        k => values[locate(starts, row).0].value(k as usize),
                    };
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
                Built::Codes(c) => out.push(c.value(row) as u8),
                Built::Array(a) => {
                    if let Some(d) = a.as_primitive_opt::<arrow::datatypes::Date32Type>() {
                        out.extend_from_slice(&d.value(row).to_le_bytes());
                    }
                }
                Built::Text(t) => {
                    let s = t.get(row).unwrap_or("");
                    let s = if def.columns[ci].ty == ColumnType::Month {
                        canonical_month(s)
                    } else {
                        s.to_string()
                    };
                    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
        out
    };
    // Fast path: at most two parts, each a fixed-width value (a key, a code, a date, a month),
    // packed into one integer per row, computed on every core.
    let fixed = |ci: usize, row: usize| -> Option<u64> {
        match &columns[ci] {
            Built::Keys(k) | Built::Pooled { keys: k, .. } => Some(k[row] as u64),
            Built::Batches { .. } => None,
            Built::Codes(c) => Some(c.value(row) as u8 as u64),
            Built::Array(a) => a
                .as_primitive_opt::<arrow::datatypes::Date32Type>()
                .map(|d| d.value(row) as u32 as u64),
            Built::Text(t) if def.columns[ci].ty == ColumnType::Month => {
                time::parse_month(t.get(row).unwrap_or("").trim())
                    .ok()
                    .map(|m| m as u32 as u64)
            }
            Built::Text(_) => None,
        }
    };
    if parts.len() <= 2 {
        let packed: Option<Vec<u128>> = (0..n)
            .into_par_iter()
            .map(|row| {
                if !alive[row] {
                    return Some(0);
                }
                let mut k = 0u128;
                for &ci in &parts {
                    k = (k << 64) | fixed(ci, row)? as u128;
                }
                Some(k)
            })
            .collect();
        if let Some(packed) = packed {
            let state = ahash::RandomState::with_seeds(7, 11, 13, 17);
            let hashes: Vec<Option<u64>> = packed
                .par_iter()
                .enumerate()
                .map(|(row, k)| alive[row].then(|| state.hash_one(k)))
                .collect();
            return crate::store::pool::repeats(&hashes, |a, b| packed[a] == packed[b]);
        }
    }
    let mut seen: ahash::AHashMap<Vec<u8>, usize> = ahash::AHashMap::with_capacity(n);
    let mut dups = Vec::new();
    for (row, a) in alive.iter().enumerate() {
        if !*a {
            continue;
        }
        match seen.entry(encode(row)) {
            std::collections::hash_map::Entry::Occupied(e) => dups.push((row, *e.get())),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(row);
            }
        }
    }
    dups
}
