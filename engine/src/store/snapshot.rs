//! Snapshots: a loaded city written to disk as Arrow IPC files, and read back at start instead of
//! loading its sources again.
//!
//! A snapshot is a folder `<dir>/<version>/` (the last ingested batch folded in): one IPC file
//! per table holding its stored columns as they are in memory (keys as `u32`, enums as codes,
//! text as text), one per pooled column's own dictionary, the SQL schema of each table, the
//! identity pool, the rejects, and `meta.json` (the manifest, the load report, how each column is
//! held, and what the snapshot was made from), written last: a folder without it is unfinished
//! (a crash while writing) and is ignored and removed. Beside the tables it keeps what a start
//! would otherwise work out again: the identity numbers' facts and every index of
//! [`super::index::Indexes`], door summaries included (`indexes.*.arrow`, see
//! `saved_indexes`); indexes that do not hold together are built again from the tables. The tables' key indexes are built when
//! first used (a starting server builds them after it answers).
//!
//! The files are read by mapping them into memory ([`super::mapped`]): a column is the page
//! cache's pages, read from disk when first touched. A table unchanged since the snapshot that
//! holds its files ([`super::OnDisk`]) is hard-linked from there into the next one instead of
//! written again.
//!
//! A snapshot is taken only when it was made from the same sources: the caller's `source`
//! fingerprint (see [`fingerprint`]) and the log segments it folded must match.

use super::{Kept, Manifest, Pool, Store, StoredColumn, StoredTable};
use crate::calendar::{Calendar, WorkingHours};
use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::idcard::Facts;
use crate::load::report::LoadReport;
use crate::store::pool::KeyIndexCell;
use arrow::array::{Array, ArrayRef, AsArray, Int8Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The layout of the files; a snapshot of another layout is not read.
const FORMAT: u32 = 2;
const META: &str = "meta.json";
/// The identity numbers' facts ([`crate::idcard::Facts`]), by position.
const FACTS: &str = "identity_facts.arrow";

/// How a stored column is held.
#[derive(Debug, Serialize, Deserialize)]
enum Held {
    Array,
    KeysOfTable(String),
    KeysOfIdentities,
    KeysOfOwnValues,
    Codes,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableMeta {
    name: String,
    rows: usize,
    files: Vec<String>,
    keyed: bool,
    columns: Vec<Held>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    engine: String,
    source: String,
    version: u64,
    segments: Vec<String>,
    manifest: Manifest,
    as_of: i64,
    report: LoadReport,
    tables: Vec<TableMeta>,
}

/// A snapshot read back.
#[derive(Debug)]
pub struct Restored {
    /// The city.
    pub store: Store,
    /// The last ingested batch folded into it.
    pub version: u64,
    /// How many of the log's segments it folded.
    pub segments: usize,
    /// Whether its indexes had to be built from the tables (the snapshot's did not hold
    /// together, or it kept none).
    pub rebuilt: bool,
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Load(format!("{}: {e}", p.display()))
}

/// What a dataset folder is made of, for telling whether a snapshot was made from it: every
/// file's path, size and modification time, and the load options that change what is loaded.
pub fn fingerprint(dir: &Path, options: &str) -> Result<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let p = e.path();
            let m = e.metadata().map_err(io(&p))?;
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
            files.push(format!("{rel}:{}:{mtime}", m.len()));
        }
    }
    files.sort();
    Ok(format!("{options}\n{}", files.join("\n")))
}

/// Writes one IPC file. The file must be new: a file of a snapshot is never written again in
/// place, as a running server may hold it mapped ([`super::mapped`]).
fn write_batch(path: &Path, schema: SchemaRef, batch: Option<&RecordBatch>) -> Result<()> {
    let f = File::create_new(path).map_err(io(path))?;
    let mut w = FileWriter::try_new(BufWriter::with_capacity(1 << 20, f), &schema)?;
    if let Some(b) = batch {
        w.write(b)?;
    }
    let f = w
        .into_inner()?
        .into_inner()
        .map_err(|e| io(path)(e.into_error()))?;
    f.sync_all().map_err(io(path))
}

fn write_array(path: &Path, a: ArrayRef) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        a.data_type().clone(),
        true,
    )]));
    let b = RecordBatch::try_new(schema.clone(), vec![a])?;
    write_batch(path, schema, Some(&b))
}

/// An IPC file's schema and first batch. The file is mapped into memory whole
/// ([`super::mapped`]) and its columns are slices of the mapping: reading a snapshot copies
/// nothing, and a column's pages come in from the page cache when it is first read.
fn read_file(path: &Path) -> Result<(SchemaRef, Option<RecordBatch>)> {
    use arrow::buffer::Buffer;
    use arrow::ipc::reader::{FileDecoder, read_footer_length};
    let bad = |what: &str| Error::Load(format!("{}: {what}", path.display()));
    let buffer: Buffer = super::mapped::read(path).map_err(io(path))?;
    let trailer = buffer
        .len()
        .checked_sub(10)
        .ok_or_else(|| bad("too short for an Arrow IPC file"))?;
    let tail: [u8; 10] = buffer[trailer..]
        .try_into()
        .map_err(|_| bad("no Arrow IPC trailer"))?;
    let footer_len = read_footer_length(tail)?;
    let footer_at = trailer
        .checked_sub(footer_len)
        .ok_or_else(|| bad("a footer longer than the file"))?;
    let footer = arrow::ipc::root_as_footer(&buffer[footer_at..trailer])
        .map_err(|e| bad(&format!("an unreadable footer ({e})")))?;
    let schema = Arc::new(arrow::ipc::convert::fb_to_schema(
        footer.schema().ok_or_else(|| bad("no schema"))?,
    ));
    let mut decoder = FileDecoder::new(schema.clone(), footer.version());
    let block_of = |b: &arrow::ipc::Block| -> Result<Buffer> {
        let len = b.bodyLength() as usize + b.metaDataLength() as usize;
        let at = b.offset() as usize;
        if at.checked_add(len).is_none_or(|end| end > buffer.len()) {
            return Err(bad("a block beyond the end of the file"));
        }
        Ok(buffer.slice_with_length(at, len))
    };
    for b in footer.dictionaries().iter().flatten() {
        decoder.read_dictionary(b, &block_of(b)?)?;
    }
    let batch = match footer.recordBatches().and_then(|v| v.iter().next()) {
        Some(b) => decoder.read_record_batch(b, &block_of(b)?)?,
        None => None,
    };
    Ok((schema, batch))
}

fn read_array(path: &Path) -> Result<ArrayRef> {
    match read_file(path)? {
        (_, Some(b)) => Ok(b.column(0).clone()),
        _ => Err(Error::Load(format!("{}: no values", path.display()))),
    }
}

/// Links a table's files (its columns, SQL schema and own dictionaries) from the snapshot
/// folder `from` into `to`; on any failure the links made are removed and the error returned
/// (the caller then writes the table).
fn link_table(from: &Path, to: &Path, name: &str, columns: usize) -> std::io::Result<()> {
    let mut files = vec![format!("{name}.arrow"), format!("{name}.schema.arrow")];
    files.extend(
        (0..columns)
            .map(|i| format!("{name}.{i}.values.arrow"))
            .filter(|f| from.join(f).exists()),
    );
    for (n, f) in files.iter().enumerate() {
        if let Err(e) = std::fs::hard_link(from.join(f), to.join(f)) {
            for made in &files[..n] {
                let _ = std::fs::remove_file(to.join(made));
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The complete snapshots of a folder, newest first.
fn complete(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u64>().ok()?;
            e.path().join(META).exists().then(|| (v, e.path()))
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out
}

/// Writes a snapshot of `store`, the city made from `source` (see [`fingerprint`]) with the log
/// `segments` (their names, in order) up to batch `version`, into `dir/<version>/`; then removes
/// older and unfinished snapshots. Stops, leaving nothing, when `stop` becomes true (checked
/// between files), and leaves nothing when it fails (a full disk, say: the files written so
/// far would only take more of it); returns whether it was written.
pub fn write(
    store: &Store,
    dir: &Path,
    source: &str,
    version: u64,
    segments: Vec<String>,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<bool> {
    let written = write_in(store, dir, source, version, segments, stop);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(dir.join(format!("{version:012}")));
    }
    written
}

/// [`write`], which removes what this leaves when it fails.
fn write_in(
    store: &Store,
    dir: &Path,
    source: &str,
    version: u64,
    segments: Vec<String>,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<bool> {
    let at = dir.join(format!("{version:012}"));
    let _ = std::fs::remove_dir_all(&at);
    std::fs::create_dir_all(&at).map_err(io(&at))?;
    let stopped = || {
        let s = stop.load(std::sync::atomic::Ordering::Relaxed);
        if s {
            let _ = std::fs::remove_dir_all(&at);
        }
        s
    };
    let mut tables = Vec::new();
    for t in store.tables() {
        if stopped() {
            return Ok(false);
        }
        let name = t.id.name();
        // A table unchanged since the snapshot holding its files is linked from there.
        let linked = t
            .on_disk
            .get()
            .filter(|from| from != &at)
            .is_some_and(|from| link_table(&from, &at, name, t.columns.len()).is_ok());
        let mut held = Vec::new();
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (i, c) in t.columns.iter().enumerate() {
            let col = t.schema.field(i).name();
            let (h, a): (Held, ArrayRef) = match c {
                StoredColumn::Array(a) => (Held::Array, a.clone()),
                StoredColumn::Keys { keys, pool } => {
                    let h = match pool {
                        Pool::Table(to) => Held::KeysOfTable(to.name().to_string()),
                        Pool::Identity => Held::KeysOfIdentities,
                        Pool::Local(values) => {
                            if !linked {
                                write_array(
                                    &at.join(format!("{name}.{i}.values.arrow")),
                                    values.clone(),
                                )?;
                            }
                            Held::KeysOfOwnValues
                        }
                    };
                    (h, Arc::new(keys.clone()))
                }
                StoredColumn::Codes { codes, values } => {
                    if !linked {
                        write_array(&at.join(format!("{name}.{i}.values.arrow")), values.clone())?;
                    }
                    (Held::Codes, Arc::new(codes.clone()))
                }
            };
            fields.push(Field::new(col, a.data_type().clone(), true));
            arrays.push(a);
            held.push(h);
        }
        if !linked {
            let schema = Arc::new(Schema::new(fields));
            let batch = RecordBatch::try_new_with_options(
                schema.clone(),
                arrays,
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(t.rows)),
            )?;
            write_batch(&at.join(format!("{name}.arrow")), schema, Some(&batch))?;
            write_batch(
                &at.join(format!("{name}.schema.arrow")),
                t.schema.clone(),
                None,
            )?;
        }
        tables.push(TableMeta {
            name: name.to_string(),
            rows: t.rows,
            files: t.files.clone(),
            keyed: t.has_key_index(),
            columns: held,
        });
    }
    if stopped() {
        return Ok(false);
    }
    write_array(&at.join("identities.arrow"), store.identities.clone())?;
    write_array(
        &at.join(FACTS),
        Arc::new(UInt32Array::from_iter_values(
            store.facts().iter().map(|f| f.bits()),
        )),
    )?;
    for (name, a) in super::saved_indexes::to_arrays(&store.indexes)? {
        write_array(&at.join(format!("indexes.{name}.arrow")), a)?;
    }
    write_batch(
        &at.join("rejects.arrow"),
        store.rejects.schema(),
        Some(&store.rejects),
    )?;
    let meta = Meta {
        format: FORMAT,
        engine: env!("CARGO_PKG_VERSION").to_string(),
        source: source.to_string(),
        version,
        segments,
        manifest: store.manifest.clone(),
        as_of: store.as_of,
        report: store.report.clone(),
        tables,
    };
    let text = serde_json::to_vec(&meta)
        .map_err(|e| Error::Internal(format!("writing a snapshot's meta: {e}")))?;
    let m = at.join(META);
    let tmp = at.join("meta.json.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &m).map_err(io(&m))?;
    crate::ingest::log::sync_dir(&at)?;
    // The tables' files are now (also) here: the next snapshot links them from here.
    for t in store.tables() {
        t.on_disk.set(&at);
    }
    // Older snapshots and unfinished ones go.
    for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let p = e.path();
        if p != at && p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
    crate::ingest::log::sync_dir(dir)?;
    Ok(true)
}

/// Reads the newest snapshot in `dir` made from `source` whose folded segments begin the log
/// (`segments`, the log's names in order), with its indexes built again; `None` when there is
/// none such. The calendar's working hours are the load's.
pub fn read(
    dir: &Path,
    source: &str,
    segments: &[String],
    hours: &WorkingHours,
) -> Result<Option<Restored>> {
    for (_, at) in complete(dir) {
        let m = at.join(META);
        let text = std::fs::read(&m).map_err(io(&m))?;
        let Ok(meta) = serde_json::from_slice::<Meta>(&text) else {
            continue;
        };
        if meta.format != FORMAT
            || meta.engine != env!("CARGO_PKG_VERSION")
            || meta.source != source
            || !segments.starts_with(&meta.segments)
        {
            continue;
        }
        return Ok(Some(restore(&at, meta, hours)?));
    }
    Ok(None)
}

fn restore(at: &Path, meta: Meta, hours: &WorkingHours) -> Result<Restored> {
    use rayon::prelude::*;
    // The tables side by side, the largest first.
    let mut order: Vec<usize> = (0..meta.tables.len().min(TableId::ALL.len())).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(meta.tables[i].rows));
    let mut read: Vec<(usize, StoredTable)> = order
        .into_par_iter()
        .map(|i| Ok((i, restore_table(at, TableId::ALL[i], &meta.tables[i])?)))
        .collect::<Result<_>>()?;
    if read.len() != TableId::ALL.len() {
        return Err(Error::Load(format!(
            "{}: {} tables where {} were expected",
            at.display(),
            meta.tables.len(),
            TableId::ALL.len()
        )));
    }
    read.sort_by_key(|(i, _)| *i);
    let tables: Vec<StoredTable> = read.into_iter().map(|(_, t)| t).collect();
    restored(at, meta, tables, hours)
}

/// One table of a snapshot (its key index built on first use).
fn restore_table(at: &Path, id: TableId, tm: &TableMeta) -> Result<StoredTable> {
    if tm.name != id.name() {
        return Err(Error::Load(format!(
            "{}: table {} where {} was expected",
            at.display(),
            tm.name,
            id.name()
        )));
    }
    let started = std::time::Instant::now();
    let (_, batch) = read_file(&at.join(format!("{}.arrow", tm.name)))?;
    let (schema, _) = read_file(&at.join(format!("{}.schema.arrow", tm.name)))?;
    let batch =
        batch.ok_or_else(|| Error::Load(format!("{}: no rows of {}", at.display(), tm.name)))?;
    let mut columns = Vec::with_capacity(tm.columns.len());
    for (i, h) in tm.columns.iter().enumerate() {
        let a = batch.column(i).clone();
        let values = || -> Result<Arc<StringArray>> {
            let v = read_array(&at.join(format!("{}.{i}.values.arrow", tm.name)))?;
            Ok(Arc::new(v.as_string::<i32>().clone()))
        };
        let keys = || a.as_primitive::<arrow::datatypes::UInt32Type>().clone();
        columns.push(match h {
            Held::Array => StoredColumn::Array(a.clone()),
            Held::KeysOfTable(to) => {
                StoredColumn::Keys {
                    keys: keys(),
                    pool: Pool::Table(TableId::from_name(to).ok_or_else(|| {
                        Error::Load(format!("{}: unknown table {to}", at.display()))
                    })?),
                }
            }
            Held::KeysOfIdentities => StoredColumn::Keys {
                keys: keys(),
                pool: Pool::Identity,
            },
            Held::KeysOfOwnValues => StoredColumn::Keys {
                keys: keys(),
                pool: Pool::Local(values()?),
            },
            Held::Codes => StoredColumn::Codes {
                codes: a
                    .as_any()
                    .downcast_ref::<Int8Array>()
                    .cloned()
                    .ok_or_else(|| {
                        Error::Load(format!("{}: codes of {} are not i8", at.display(), tm.name))
                    })?,
                values: values()?,
            },
        });
    }
    // The key index is built on first use (a starting server builds it after it answers),
    // over the key column, which must be text.
    let keyed = id.def().single_key().filter(|_| tm.keyed);
    let table = StoredTable {
        id,
        rows: tm.rows,
        columns,
        schema,
        files: tm.files.clone(),
        key_cell: keyed.map(|_| KeyIndexCell::deferred()),
        on_disk: Default::default(),
        room: None,
    };
    if let Some(k) = keyed
        && table.strings(k).is_err()
    {
        return Err(Error::Load(format!(
            "{}: the key {k} of {} is not text",
            at.display(),
            tm.name
        )));
    }
    table.on_disk.set(at);
    tracing::debug!(
        table = tm.name,
        ms = started.elapsed().as_millis() as u64,
        "table read from the snapshot"
    );
    Ok(table)
}

/// The store of a snapshot from its tables.
fn restored(
    at: &Path,
    meta: Meta,
    tables: Vec<StoredTable>,
    hours: &WorkingHours,
) -> Result<Restored> {
    let identities = read_array(&at.join("identities.arrow"))?;
    let identities = Arc::new(identities.as_string::<i32>().clone());
    let (_, rejects) = read_file(&at.join("rejects.arrow"))?;
    let rejects = match rejects {
        Some(r) => r,
        None => crate::load::report::rejects_batch(&[])?,
    };
    let calendar = Calendar::of_table(&tables[TableId::Calendar as usize], hours)?;
    let segments = meta.segments.len();
    let started = std::time::Instant::now();
    let kept = kept(at, &tables, identities.len())?;
    let rebuilt = kept.indexes.is_none();
    let store = Store::new(
        tables,
        identities,
        kept,
        meta.manifest,
        meta.as_of,
        calendar,
        meta.report,
        rejects,
    )?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "indexes and identity facts of the snapshot built"
    );
    Ok(Restored {
        store,
        version: meta.version,
        segments,
        rebuilt,
    })
}

/// What the snapshot kept beside its tables: the identity facts and the indexes. Indexes that
/// do not hold together are built again from the tables (and said so).
fn kept(at: &Path, tables: &[StoredTable], identities: usize) -> Result<Kept> {
    let facts = read_array(&at.join(FACTS))?;
    let facts = facts
        .as_primitive_opt::<arrow::datatypes::UInt32Type>()
        .filter(|f| f.len() == identities)
        .ok_or_else(|| {
            Error::Load(format!(
                "{}: not one fact per identity number",
                at.join(FACTS).display()
            ))
        })?;
    let facts = facts
        .values()
        .iter()
        .map(|&b| Facts::from_bits(b))
        .collect();
    let get = |name: &str| read_array(&at.join(format!("indexes.{name}.arrow"))).ok();
    let indexes = super::saved_indexes::from_arrays(get, tables, identities);
    if indexes.is_none() {
        tracing::warn!(
            "{}: the indexes do not hold together; built again from the tables",
            at.display()
        );
    }
    Ok(Kept {
        facts: Some(facts),
        indexes,
    })
}
