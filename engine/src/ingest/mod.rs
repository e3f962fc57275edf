//! The live city's way in: rows sent by feeding systems (door access, the registry, the
//! incident hotline) and by grid workers' corrections, made durable in the state folder's
//! [`log`] and loaded, by the loader's own rules, as a new version of the city.
//!
//! ```text
//! body (CSV / NDJSON / Arrow IPC) ──parse──▶ Rows ──scope──▶ staged CSV ──load (base + log + it)──▶ new Store
//!                                                                 └──fsync, rename──▶ log segment (acknowledged)
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
use crate::scope::View;
use crate::store::{NONE, Store};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;

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

/// Rows as text, before the loader's checks: column names and, per row, each column's value
/// (`None`: empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Column names, as sent.
    pub names: Vec<String>,
    /// The rows, each as long as `names`.
    pub rows: Vec<Vec<Option<String>>>,
}

fn bad_body(what: &str, message: String) -> Error {
    Error::Param {
        name: what.into(),
        message,
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
        let mut rows = Vec::new();
        for (i, rec) in r.records().enumerate() {
            let rec = rec.map_err(|e| bad_body(what, format!("row {}: {e}", i + 1)))?;
            // A short or long record is kept as sent: the loader rejects it (wrong field count).
            rows.push(
                rec.iter()
                    .map(|v| (!v.is_empty()).then(|| v.to_string()))
                    .collect(),
            );
        }
        Ok(Rows { names, rows })
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
        let mut rows = Vec::with_capacity(objects.len());
        for (i, o) in objects.iter().enumerate() {
            let mut row = Vec::with_capacity(names.len());
            for n in &names {
                row.push(match o.get(n) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => (!s.is_empty()).then(|| s.clone()),
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
            rows.push(row);
        }
        Ok(Rows { names, rows })
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
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| bad_body(what, format!("holds a damaged batch: {e}")))?;
            let cols = batch
                .columns()
                .iter()
                .map(|c| arrow::compute::cast(c, &DataType::Utf8))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad_body(what, format!("has a column that is not text: {e}")))?;
            for r in 0..batch.num_rows() {
                rows.push(
                    cols.iter()
                        .map(|c| {
                            let s = c.as_string::<i32>();
                            (!s.is_null(r) && !s.value(r).is_empty())
                                .then(|| s.value(r).to_string())
                        })
                        .collect(),
                );
            }
        }
        Ok(Rows { names, rows })
    }

    /// The rows as a CSV file (UTF-8, a header, then the rows), as the log keeps them, and the
    /// line each row starts on (the header is line 1), as the loader names rows.
    pub fn to_csv(&self) -> Result<(Vec<u8>, Vec<u64>)> {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        let io = |e: csv::Error| Error::Internal(format!("writing rows as CSV: {e}"));
        w.write_record(&self.names).map_err(io)?;
        let mut lines = Vec::with_capacity(self.rows.len());
        let mut line = 2u64;
        for row in &self.rows {
            lines.push(line);
            w.write_record(row.iter().map(|v| v.as_deref().unwrap_or("")))
                .map_err(io)?;
            line += 1 + row
                .iter()
                .flatten()
                .map(|v| v.matches('\n').count() as u64)
                .sum::<u64>();
        }
        let bytes = w
            .into_inner()
            .map_err(|e| Error::Internal(format!("writing rows as CSV: {e}")))?;
        Ok((bytes, lines))
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A row's value of a column (by name, case-insensitive), if sent.
    pub fn value(&self, row: usize, column: &str) -> Option<&str> {
        let ci = self
            .names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(column))?;
        self.rows.get(row)?.get(ci)?.as_deref()
    }

    /// The rows with some taken out (`drop[i]`: row `i` goes).
    pub fn without(mut self, drop: &[bool]) -> Rows {
        let mut i = 0;
        self.rows.retain(|_| {
            let keep = !drop.get(i).copied().unwrap_or(false);
            i += 1;
            keep
        });
        self
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
