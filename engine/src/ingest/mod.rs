//! The live city's way in: rows sent by feeding systems (door access, the registry, the
//! incident hotline) and by grid workers' corrections, made durable in the state folder's
//! [`log`] and loaded, by the loader's own rules, as a new version of the city.
//!
//! ```text
//! body (CSV / NDJSON / Arrow IPC) ──parse──▶ Rows (a text column a field) ──scope──▶ kept Rows
//!     kept Rows ──read back as the log's file reads (Rows::read_back)──▶ load (base + log + it) ──▶ new Store
//!     kept Rows ──CSV, fsync (beside the load)──▶ staged file ──rename once both are done──▶ log segment (acknowledged)
//! ```
//!
//! Appends (`access_events`, `visits`, `utility_readings`, `deaths`) add rows; upserts (`people`,
//! `households`, `rooms`, `leases`, `incidents`) replace the row with the same key (an incident's
//! later stages, a person moved out, a lease ended). Every row is loaded or rejected with a
//! reason, as a load of files is; rows outside the sender's scope are rejected before anything
//! is written.

pub mod log;
pub mod touched;

use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::hierarchy::GridPath;
use crate::load::read::{RawBatch, header_name};
use crate::scope::View;
use crate::store::{NONE, Store};
use arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// How a table takes ingested rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// New rows are added (events, readings, visits, deaths).
    Append,
    /// A row replaces the row with the same key, or is added when there is none.
    Upsert,
}

impl Kind {
    /// How a table takes ingested rows; `None` for the tables a city's set-up fixes (grids,
    /// workers, buildings, SLA rules, the calendar), which change by a reload.
    pub fn of(t: TableId) -> Option<Kind> {
        use TableId::*;
        match t {
            AccessEvents | Visits | UtilityReadings | Deaths => Some(Kind::Append),
            People | Households | Rooms | Leases | Incidents => Some(Kind::Upsert),
            Grids | Workers | Buildings | SlaRules | Calendar => None,
        }
    }

    /// The name, as answers show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Append => "append",
            Kind::Upsert => "upsert",
        }
    }
}

/// The tables that take ingested rows, for messages.
pub fn tables() -> String {
    TableId::ALL
        .iter()
        .filter(|t| Kind::of(**t).is_some())
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table name given to ingest, checked: known, and one that takes ingested rows.
pub fn table(name: &str) -> Result<(TableId, Kind)> {
    let bad = |why: String| Error::Param {
        name: "table".into(),
        message: why,
    };
    let t = TableId::from_name(name).ok_or_else(|| {
        bad(format!(
            "{name:?} is not a table; ingest takes {}",
            tables()
        ))
    })?;
    let k = Kind::of(t).ok_or_else(|| {
        bad(format!(
            "{name} is part of the city's set-up and changes by a reload, not by ingest; \
             ingest takes {}",
            tables()
        ))
    })?;
    Ok((t, k))
}

/// The format of a body of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header (UTF-8, or GB18030).
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// An Arrow IPC stream.
    Arrow,
}

impl Format {
    /// The format a `Content-Type` names (`text/csv`, `application/x-ndjson`,
    /// `application/vnd.apache.arrow.stream`); `None` for another.
    pub fn of_content_type(ct: &str) -> Option<Format> {
        let ct = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match ct.as_str() {
            "text/csv" | "application/csv" => Some(Format::Csv),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(Format::Ndjson)
            }
            "application/vnd.apache.arrow.stream" | "application/vnd.apache.arrow" => {
                Some(Format::Arrow)
            }
            _ => None,
        }
    }

    /// A format by its name: `csv`, `ndjson` (or `jsonl`), `arrow`.
    pub fn of_name(name: &str) -> Option<Format> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "arrow" => Some(Format::Arrow),
            _ => None,
        }
    }

    /// The format of a file, by its extension (`.csv`, `.ndjson`/`.jsonl`, `.arrow`/`.arrows`).
    pub fn of_path(p: &std::path::Path) -> Option<Format> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "arrow" | "arrows" | "ipc" => Some(Format::Arrow),
            _ => None,
        }
    }
}

/// Rows as text, before the loader's checks: column names and each column's values (null:
/// empty), held as columns: a batch of half a million door events is seven arrays, not three
/// million strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Column names, as sent.
    pub names: Vec<String>,
    /// Each name's values, one a row (null where the row gives none, and for a ragged row).
    columns: Vec<StringArray>,
    /// Rows sent with more or fewer values than there are names, by their place: kept as sent,
    /// for the loader to reject (wrong field count).
    ragged: BTreeMap<usize, Vec<Option<String>>>,
    /// Number of rows.
    len: usize,
    /// The line each row starts on in the log's file, worked out once ([`Rows::lines`]).
    lines: OnceLock<Vec<u64>>,
}

fn bad_body(what: &str, message: String) -> Error {
    Error::Param {
        name: what.into(),
        message,
    }
}

/// Rows as they are read, a row at a time, into columns.
struct Builder {
    names: Vec<String>,
    columns: Vec<StringBuilder>,
    ragged: BTreeMap<usize, Vec<Option<String>>>,
    len: usize,
}

impl Builder {
    /// Room for about `rows` rows of `bytes` bytes of values.
    fn new(names: Vec<String>, rows: usize, bytes: usize) -> Builder {
        let per = bytes / names.len().max(1);
        let columns = names
            .iter()
            .map(|_| StringBuilder::with_capacity(rows, per))
            .collect();
        Builder {
            names,
            columns,
            ragged: BTreeMap::new(),
            len: 0,
        }
    }

    /// Adds a row of `count` values (empty ones: none).
    fn push<'a>(&mut self, count: usize, values: impl Iterator<Item = Option<&'a str>>) {
        let values = values.map(|v| v.filter(|v| !v.is_empty()));
        if count == self.names.len() {
            for (b, v) in self.columns.iter_mut().zip(values) {
                b.append_option(v);
            }
        } else {
            self.ragged
                .insert(self.len, values.map(|v| v.map(str::to_string)).collect());
            self.columns.iter_mut().for_each(|b| b.append_null());
        }
        self.len += 1;
    }

    fn finish(mut self) -> Rows {
        Rows {
            columns: self.columns.iter_mut().map(|b| b.finish()).collect(),
            names: self.names,
            ragged: self.ragged,
            len: self.len,
            lines: OnceLock::new(),
        }
    }
}

impl Rows {
    /// Parses a body. `what` names it in errors (`the body`, a file name).
    pub fn parse(body: &[u8], format: Format, what: &str) -> Result<Rows> {
        match format {
            Format::Csv => Rows::csv(body, what),
            Format::Ndjson => Rows::ndjson(body, what),
            Format::Arrow => Rows::arrow(body, what),
        }
    }

    fn csv(body: &[u8], what: &str) -> Result<Rows> {
        let text: std::borrow::Cow<str> = match std::str::from_utf8(body) {
            Ok(s) => s.into(),
            Err(_) => {
                let (s, _, bad) = encoding_rs::GB18030.decode(body);
                if bad {
                    return Err(bad_body(
                        what,
                        "is neither UTF-8 nor GB18030 text".to_string(),
                    ));
                }
                s
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut r = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(text.as_bytes());
        let names: Vec<String> = r
            .headers()
            .map_err(|e| bad_body(what, format!("has no readable CSV header: {e}")))?
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        if names.iter().all(String::is_empty) {
            return Err(bad_body(what, "has no CSV header".into()));
        }
        // Room for the rows the first one's length foretells (no more than a row of empty
        // values would take, and at most a million: the columns grow past that as needed).
        let line = text.lines().nth(1).map_or(1, |l| l.len() + 1);
        let rows = (text.len() / line.max(names.len())).min(1 << 20) + 1;
        let mut b = Builder::new(names, rows, text.len());
        let mut rec = csv::StringRecord::new();
        let mut i = 0;
        while r
            .read_record(&mut rec)
            .map_err(|e| bad_body(what, format!("row {}: {e}", i + 1)))?
        {
            // A short or long record is kept as sent: the loader rejects it (wrong field count).
            b.push(rec.len(), rec.iter().map(Some));
            i += 1;
        }
        Ok(b.finish())
    }

    fn ndjson(body: &[u8], what: &str) -> Result<Rows> {
        let text = std::str::from_utf8(body)
            .map_err(|e| bad_body(what, format!("is not UTF-8 text: {e}")))?;
        let mut objects = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| bad_body(what, format!("line {} is not JSON: {e}", i + 1)))?;
            let serde_json::Value::Object(o) = v else {
                return Err(bad_body(
                    what,
                    format!("line {} is not a JSON object", i + 1),
                ));
            };
            objects.push(o);
        }
        Rows::objects(&objects, what)
    }

    /// Rows from JSON objects, one a row (columns in order of first appearance): strings as
    /// they are, numbers and booleans as written, `null` and missing keys empty. `what` names
    /// them in errors.
    pub fn objects(
        objects: &[serde_json::Map<String, serde_json::Value>],
        what: &str,
    ) -> Result<Rows> {
        let mut names: Vec<String> = Vec::new();
        for o in objects {
            for k in o.keys() {
                if !names.iter().any(|n| n == k) {
                    names.push(k.clone());
                }
            }
        }
        let mut b = Builder::new(names.clone(), objects.len(), 0);
        for (i, o) in objects.iter().enumerate() {
            let mut row: Vec<Option<String>> = Vec::with_capacity(names.len());
            for n in &names {
                row.push(match o.get(n) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                    Some(serde_json::Value::Number(x)) => Some(x.to_string()),
                    Some(_) => {
                        return Err(bad_body(
                            what,
                            format!("row {}: {n} is an array or object, not a value", i + 1),
                        ));
                    }
                });
            }
            b.push(row.len(), row.iter().map(Option::as_deref));
        }
        Ok(b.finish())
    }

    fn arrow(body: &[u8], what: &str) -> Result<Rows> {
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .map_err(|e| bad_body(what, format!("is not an Arrow IPC stream: {e}")))?;
        let names: Vec<String> = reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut b = Builder::new(names, 0, 0);
        for batch in reader {
            let batch = batch.map_err(|e| bad_body(what, format!("holds a damaged batch: {e}")))?;
            let cols = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad_body(what, format!("has a column that is not text: {e}")))?;
            let cols: Vec<&StringArray> = cols.iter().map(|c| c.as_string::<i32>()).collect();
            for r in 0..batch.num_rows() {
                b.push(
                    cols.len(),
                    cols.iter().map(|c| (!c.is_null(r)).then(|| c.value(r))),
                );
            }
        }
        Ok(b.finish())
    }

    /// The rows as a CSV file (UTF-8, a header, then the rows), as the log keeps them; the line
    /// each row starts on in it, as the loader names rows, is [`Rows::lines`].
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::with_capacity(
                self.columns
                    .iter()
                    .map(|c| c.value_data().len())
                    .sum::<usize>()
                    + self.len * (self.names.len() + 1),
            ));
        let io = |e: csv::Error| Error::Internal(format!("writing rows as CSV: {e}"));
        w.write_record(&self.names).map_err(io)?;
        for i in 0..self.len {
            match self.ragged.get(&i) {
                Some(row) => w.write_record(row.iter().map(|v| v.as_deref().unwrap_or(""))),
                None => w.write_record(
                    self.columns
                        .iter()
                        .map(|c| if c.is_null(i) { "" } else { c.value(i) }),
                ),
            }
            .map_err(io)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| Error::Internal(format!("writing rows as CSV: {e}")))?;
        Ok(bytes)
    }

    /// The line each row starts on in [`Rows::to_csv`]'s file (the header is line 1): a row
    /// whose values hold line breaks takes more than one.
    pub fn lines(&self) -> &[u64] {
        self.lines.get_or_init(|| self.count_lines())
    }

    fn count_lines(&self) -> Vec<u64> {
        let breaks = |v: Option<&str>| v.map_or(0, |v| v.matches('\n').count() as u64);
        let broken =
            !self.ragged.is_empty() || self.columns.iter().any(|c| c.value_data().contains(&b'\n'));
        if !broken {
            return (2..self.len as u64 + 2).collect();
        }
        let mut lines = Vec::with_capacity(self.len);
        let mut line = 2u64;
        for i in 0..self.len {
            lines.push(line);
            line += 1 + match self.ragged.get(&i) {
                Some(row) => row.iter().map(|v| breaks(v.as_deref())).sum::<u64>(),
                None => (0..self.names.len()).map(|c| breaks(self.get(i, c))).sum(),
            };
        }
        lines
    }

    /// The rows as the loader reads them back from [`Rows::to_csv`]'s file, in batches of
    /// `batch_rows` (the same columns, not copied), so that a batch just sent is not written
    /// and parsed again before it is loaded; `None` when the file's own reading must decide
    /// (a row of the wrong length, a header without names).
    pub fn read_back(&self, batch_rows: usize) -> Option<Vec<RawBatch>> {
        if !self.ragged.is_empty() || self.names.iter().all(|n| header_name(n).is_empty()) {
            return None;
        }
        let names = Arc::new(
            self.names
                .iter()
                .map(|n| header_name(n))
                .collect::<Vec<_>>(),
        );
        let lines = self.lines();
        let step = batch_rows.max(1);
        let mut out = Vec::new();
        let mut at = 0;
        while at < self.len || out.is_empty() {
            let n = step.min(self.len - at);
            out.push(RawBatch {
                names: names.clone(),
                columns: self
                    .columns
                    .iter()
                    .map(|c| Arc::new(c.slice(at, n)) as ArrayRef)
                    .collect(),
                rows: lines[at..at + n].to_vec(),
                csv: true,
            });
            at += n;
        }
        Some(out)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The place of a column among the names (case-insensitive), if sent.
    pub fn position(&self, column: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(column))
    }

    /// A row's value of the column at place `column`, if it has one.
    pub fn get(&self, row: usize, column: usize) -> Option<&str> {
        if let Some(r) = self.ragged.get(&row) {
            return r.get(column)?.as_deref();
        }
        let c = self.columns.get(column)?;
        (row < c.len() && c.is_valid(row)).then(|| c.value(row))
    }

    /// A row's value of a column (by name, case-insensitive), if sent.
    pub fn value(&self, row: usize, column: &str) -> Option<&str> {
        self.get(row, self.position(column)?)
    }

    /// The rows with some taken out (`drop[i]`: row `i` goes).
    pub fn without(self, drop: &[bool]) -> Result<Rows> {
        if !drop.iter().any(|&d| d) {
            return Ok(self);
        }
        let keep: Vec<bool> = (0..self.len)
            .map(|i| !drop.get(i).copied().unwrap_or(false))
            .collect();
        let mask = arrow::array::BooleanArray::from(keep.clone());
        let columns = self
            .columns
            .iter()
            .map(|c| Ok(arrow::compute::filter(c, &mask)?.as_string::<i32>().clone()))
            .collect::<Result<Vec<_>>>()?;
        let mut ragged = BTreeMap::new();
        let mut kept = 0;
        for (i, k) in keep.iter().enumerate() {
            if *k {
                if let Some(r) = self.ragged.get(&i) {
                    ragged.insert(kept, r.clone());
                }
                kept += 1;
            }
        }
        Ok(Rows {
            names: self.names,
            columns,
            ragged,
            len: kept,
            lines: OnceLock::new(),
        })
    }
}

/// A correction's rows completed from the records they change: for a table upserted by key, a
/// row naming an existing record gets that record's value for every column it does not give
/// (`{"person_id": "P1", "status": "deceased"}` changes one column), so that a worker sends
/// what they corrected, not the whole record. Rows naming no record are left as they are.
pub fn fill_from_records(
    store: &Store,
    table: TableId,
    rows: &mut [serde_json::Map<String, serde_json::Value>],
) -> Result<()> {
    let (Some(key), Some(ix)) = (table.def().single_key(), store.table(table).key_index()) else {
        return Ok(());
    };
    let t = store.table(table);
    let keys = store.pool(&crate::store::Pool::Table(table))?;
    for row in rows.iter_mut() {
        let Some(serde_json::Value::String(k)) = row.get(key) else {
            continue;
        };
        let Some(r) = ix.get(keys.as_string::<i32>(), k) else {
            continue;
        };
        let one = arrow::array::UInt32Array::from(vec![r]);
        let batch = store.batch(t, None, Some(&one))?;
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            if row.contains_key(field.name()) {
                continue;
            }
            let text = arrow::compute::cast(col, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let v = if text.is_null(0) {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(text.value(0).to_string())
            };
            row.insert(field.name().clone(), v);
        }
    }
    Ok(())
}

/// The column a row to be ingested names its grid by, and the table that column's key leads to
/// (`grids` itself, or a table whose row the hierarchy finds the grid of); none for a table
/// without grids.
pub fn grid_column(table: TableId) -> Option<(&'static str, TableId)> {
    match GridPath::of(table) {
        GridPath::Itself | GridPath::Own => Some(("grid_code", TableId::Grids)),
        GridPath::Room if table == TableId::Rooms => Some(("building_id", TableId::Buildings)),
        GridPath::Room | GridPath::Person => Some(("room_id", TableId::Rooms)),
        GridPath::Building => Some(("building_id", TableId::Buildings)),
        GridPath::Worker => Some(("worker_id", TableId::Workers)),
        GridPath::None => None,
    }
}

/// The grid (row of `grids`, [`NONE`] if none is known) a row to be ingested lies in, found
/// through the references it carries, resolved in the city served.
pub fn grid_of(store: &Store, table: TableId, rows: &Rows, row: usize) -> u32 {
    let Some((column, to)) = grid_column(table) else {
        return NONE;
    };
    let (Some(key), Some(ix)) = (rows.value(row, column), store.table(to).key_index()) else {
        return NONE;
    };
    let Ok(values) = store.pool(&crate::store::Pool::Table(to)) else {
        return NONE;
    };
    let r = ix.get(values.as_string::<i32>(), key).unwrap_or(NONE);
    // As the hierarchy finds it (a row of `grids` is its own grid).
    crate::hierarchy::grids_of(store, to, &[r])[0]
}

/// The rows a sender may not write, with the reason: rows whose grid lies outside the view's
/// scope (or that have none: a table without grids takes rows from city scope only), and, for
/// upserts, rows whose key names a row outside the scope now. Nothing for a city-wide view.
pub fn outside_scope(view: &View, table: TableId, kind: Kind, rows: &Rows) -> Vec<Option<String>> {
    let store = view.store();
    let mut out = vec![None; rows.len()];
    if view.grids().is_none() {
        return out;
    }
    let key = match kind {
        Kind::Upsert => table.def().single_key(),
        Kind::Append => None,
    };
    let key_index = store.table(table).key_index();
    let values = store.pool(&crate::store::Pool::Table(table)).ok();
    for (i, o) in out.iter_mut().enumerate() {
        let g = grid_of(store, table, rows, i);
        if g == NONE || !view.sees_grid(g) {
            *o = Some(if GridPath::of(table) == GridPath::None {
                format!(
                    "{} has no grid: only a city-wide token may send it",
                    table.name()
                )
            } else {
                "the row lies outside the token's scope (or names no known place in it)".into()
            });
            continue;
        }
        if let (Some(k), Some(ix), Some(vals)) = (key, key_index, &values)
            && let Some(kv) = rows.value(i, k)
            && let Some(existing) = ix.get(vals.as_string::<i32>(), kv)
            && !view.sees_row(table, existing)
        {
            // The same words as for a new row outside: no probing of which keys exist there.
            *o = Some(
                "the row lies outside the token's scope (or names no known place in it)".into(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::read::{self, Encoding, SourceFile};

    /// Column names, and each row's line and values.
    type Read = (Vec<String>, Vec<(u64, Vec<Option<String>>)>);

    /// Every value of some raw batches, row by row.
    fn values(batches: &[RawBatch]) -> Read {
        let names = batches
            .first()
            .map(|b| (*b.names).clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for b in batches {
            for r in 0..b.len() {
                let row = b
                    .columns
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        c.is_valid(r).then(|| c.value(r).to_string())
                    })
                    .collect();
                out.push((b.rows[r], row));
            }
        }
        (names, out)
    }

    /// What the loader reads from the rows' log file.
    fn from_file(rows: &Rows) -> Read {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.csv");
        let (csv, lines) = (rows.to_csv().unwrap(), rows.lines());
        std::fs::write(&path, csv).unwrap();
        let file = SourceFile {
            path,
            name: "batch.csv".into(),
            format: read::Format::Csv,
            replaces: false,
            read: None,
        };
        let mut batches = Vec::new();
        let (_, rejects) = read::read_csv(&file, TableId::AccessEvents, Encoding::Auto, 3, |b| {
            batches.push(b);
            Ok(())
        })
        .unwrap();
        assert!(rejects.is_empty());
        let got = values(&batches);
        assert_eq!(got.1.iter().map(|r| r.0).collect::<Vec<_>>(), lines);
        got
    }

    #[test]
    fn rows_read_back_as_their_log_file_reads() {
        let bodies: [(&[u8], Format); 4] = [
            (
                "\u{feff} ts ,building_id,id_number,note\n\
                 2026-10-31 08:00:00,B1,,\"two\nlines\"\n\
                 2026-10-31 08:00:01,B2,440104199001011234,\n\
                 ,,,\"a, \"\"quoted\"\" one\"\n\
                 2026-10-31 08:00:02,B3,X,\"\n\n\"\n\
                 2026-10-31 08:00:03,B4,Y,last\n"
                    .as_bytes(),
                Format::Csv,
            ),
            (
                "{\" ts \": \"2026-10-31 08:00:00\", \"n\": 3, \"ok\": true}\n\
                 {\"n\": null, \"note\": \"x\\ny\"}\n\n\
                 {\"note\": \"\", \" ts \": \"t\"}\n\
                 {\"note\": \"carriage\\rreturn\", \"n\": 1}\n\
                 {\"note\": \"both\\r\\nends\", \"n\": 2}\n\
                 {\"n\": 3}\n"
                    .as_bytes(),
                Format::Ndjson,
            ),
            ("a,b\n".as_bytes(), Format::Csv),
            ("a,b\n1,2\n3,4\n5,6\n7,8\n".as_bytes(), Format::Csv),
        ];
        for (body, format) in bodies {
            let rows = Rows::parse(body, format, "the body").unwrap();
            for batch_rows in [1, 2, 3, 100] {
                let back = rows.read_back(batch_rows).expect("rows read back");
                assert_eq!(
                    values(&back),
                    from_file(&rows),
                    "{format:?} by {batch_rows}"
                );
            }
            // With some rows taken out.
            let drop: Vec<bool> = (0..rows.len()).map(|i| i % 2 == 0).collect();
            let kept = rows.clone().without(&drop).unwrap();
            assert_eq!(kept.len(), rows.len() / 2);
            for i in 0..kept.len() {
                for c in 0..kept.names.len() {
                    assert_eq!(kept.get(i, c), rows.get(2 * i + 1, c));
                }
            }
            assert_eq!(values(&kept.read_back(2).unwrap()), from_file(&kept));
        }
    }

    #[test]
    fn ragged_rows_are_kept_as_sent_for_the_loader() {
        let body = b"a,b\n1,2\n3\n4,5,6\n\"x\ny\",7\n";
        let rows = Rows::parse(body, Format::Csv, "the body").unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows.value(1, "A"), Some("3"));
        assert_eq!(rows.value(1, "b"), None);
        assert_eq!(rows.value(2, "b"), Some("5"));
        assert_eq!(rows.get(2, 2), Some("6"));
        assert_eq!(rows.value(3, "a"), Some("x\ny"));
        // The file's reader decides them (a wrong field count), so none is read back.
        assert!(rows.read_back(10).is_none());
        let (csv, lines) = (rows.to_csv().unwrap(), rows.lines());
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "a,b\n1,2\n3\n4,5,6\n\"x\ny\",7\n"
        );
        assert_eq!(lines, vec![2, 3, 4, 5]);
        let kept = rows.without(&[true, false, true, false]).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.value(0, "a"), Some("3"));
        assert_eq!(kept.get(0, 1), None);
        assert_eq!(kept.value(1, "b"), Some("7"));
        assert_eq!(kept.lines(), vec![2, 3]);
        assert!(kept.read_back(10).is_none());
    }
}
