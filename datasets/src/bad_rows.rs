//! Deliberately bad rows (`--with-bad-rows`): a few rows of every kind the loader must reject,
//! each written down with the reason and column it must be rejected for (`truth/rejects.csv`).
//!
//! Each bad row starts from a valid row of the same table and spoils one thing, so that nothing
//! else about it is wrong. A bad row never gets loaded, so the city's ground truth is unchanged.

use crate::writer::{OutputFormat, file_schema};
use crate::{GenError, Result};
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use gridlens_engine::contract::{ColumnType, TableId};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// One bad row: its values (text, per contract column), and why the loader must reject it.
#[derive(Debug, Clone)]
pub struct BadRow {
    /// Values in the contract's column order (None = empty).
    pub values: Vec<Option<String>>,
    /// The column at fault (None for a row-level fault).
    pub column: Option<&'static str>,
    /// The reject reason's code.
    pub reason: &'static str,
    /// Write one field more than the header (CSV only).
    pub extra_field: bool,
}

/// Where a bad row was written and why it must be rejected.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Table.
    pub table: &'static str,
    /// File, relative to the dataset folder.
    pub file: String,
    /// Row (CSV: line; Parquet: position from 1).
    pub row: u64,
    /// Column.
    pub column: Option<&'static str>,
    /// Reason code.
    pub reason: &'static str,
}

fn template(batch: &RecordBatch) -> Option<Vec<Option<String>>> {
    if batch.num_rows() == 0 {
        return None;
    }
    let opts = FormatOptions::default();
    Some(
        batch
            .columns()
            .iter()
            .map(|c| {
                if c.is_null(0) {
                    return None;
                }
                ArrayFormatter::try_new(c.as_ref(), &opts)
                    .ok()
                    .map(|f| f.value(0).to_string())
            })
            .collect(),
    )
}

type Spoil = (
    &'static [(&'static str, Option<&'static str>)],
    Option<&'static str>,
    &'static str,
    bool,
    bool,
);

/// The bad rows of each table, built from the first rows of a chunk's tables. `csv_only` rows
/// (values a typed Parquet column cannot hold, and records of the wrong width) are left out of
/// Parquet datasets.
pub fn build(
    tables: &BTreeMap<TableId, RecordBatch>,
    format: OutputFormat,
) -> BTreeMap<TableId, Vec<BadRow>> {
    // (changes, column at fault, reason, csv only, extra field)
    let catalogue: Vec<(TableId, Vec<Spoil>)> = vec![
        (
            TableId::Grids,
            vec![
                (
                    &[("grid_code", None)],
                    Some("grid_code"),
                    "missing_required",
                    false,
                    false,
                ),
                (
                    &[
                        ("grid_code", Some("440100000000999")),
                        ("community_code", Some("440100000001")),
                    ],
                    Some("community_code"),
                    "grid_code_mismatch",
                    false,
                    false,
                ),
                (
                    &[("grid_code", Some("44010"))],
                    Some("grid_code"),
                    "out_of_range",
                    false,
                    false,
                ),
                (&[], Some("grid_code"), "duplicate_key", false, false),
            ],
        ),
        (
            TableId::Workers,
            vec![
                (
                    &[
                        ("worker_id", Some("WBAD1")),
                        ("grid_code", Some("440100000000999")),
                    ],
                    Some("grid_code"),
                    "unknown_reference",
                    false,
                    false,
                ),
                (
                    &[("worker_id", Some("WBAD2")), ("active", Some("maybe"))],
                    Some("active"),
                    "bad_value",
                    true,
                    false,
                ),
                (
                    &[("worker_id", Some("WBAD3")), ("employment", Some("intern"))],
                    Some("employment"),
                    "bad_enum",
                    false,
                    false,
                ),
            ],
        ),
        (
            TableId::Buildings,
            vec![
                (
                    &[("building_id", Some("BBAD1")), ("floors", Some("three"))],
                    Some("floors"),
                    "bad_value",
                    true,
                    false,
                ),
                (
                    &[("building_id", Some("BBAD2")), ("lat", Some("123.4"))],
                    Some("lat"),
                    "out_of_range",
                    false,
                    false,
                ),
                (
                    &[("building_id", Some("BBAD3")), ("address", None)],
                    Some("address"),
                    "missing_required",
                    false,
                    false,
                ),
            ],
        ),
        (
            TableId::Rooms,
            vec![
                (
                    &[("room_id", Some("RBAD1")), ("area_m2", Some("0"))],
                    Some("area_m2"),
                    "out_of_range",
                    false,
                    false,
                ),
                (
                    &[("room_id", Some("RBAD2")), ("tenure", Some("rented"))],
                    Some("tenure"),
                    "bad_enum",
                    false,
                    false,
                ),
                (
                    &[("room_id", Some("RBAD3")), ("building_id", Some("BNOSUCH"))],
                    Some("building_id"),
                    "unknown_reference",
                    false,
                    false,
                ),
                (
                    &[("room_id", Some("RBAD4")), ("area_m2", Some("abc"))],
                    Some("area_m2"),
                    "bad_value",
                    true,
                    false,
                ),
            ],
        ),
        (
            TableId::Households,
            vec![
                (
                    &[
                        ("household_id", Some("HBAD1")),
                        ("room_id", Some("RNOSUCH")),
                    ],
                    Some("room_id"),
                    "unknown_reference",
                    false,
                    false,
                ),
                (
                    &[("household_id", Some("HBAD2")), ("kind", Some("family"))],
                    Some("kind"),
                    "bad_enum",
                    false,
                    false,
                ),
            ],
        ),
        (
            TableId::People,
            vec![
                (
                    &[
                        ("person_id", Some("PBAD1")),
                        ("birth_date", Some("1990-02-30")),
                    ],
                    Some("birth_date"),
                    "bad_value",
                    true,
                    false,
                ),
                (
                    &[("person_id", Some("PBAD2")), ("name", None)],
                    Some("name"),
                    "missing_required",
                    false,
                    false,
                ),
                (&[], Some("person_id"), "duplicate_key", false, false),
                (
                    &[("person_id", Some("PBAD3")), ("room_id", Some("RNOSUCH"))],
                    Some("room_id"),
                    "unknown_reference",
                    false,
                    false,
                ),
                (
                    &[("person_id", Some("PBAD4")), ("sex", Some("X"))],
                    Some("sex"),
                    "bad_enum",
                    false,
                    false,
                ),
                (
                    &[("person_id", Some("PBAD5"))],
                    None,
                    "wrong_field_count",
                    true,
                    true,
                ),
            ],
        ),
        (
            TableId::Leases,
            vec![
                (
                    &[
                        ("lease_id", Some("LBAD1")),
                        ("start_date", Some("2026-05-01")),
                        ("end_date", Some("2026-04-01")),
                    ],
                    Some("end_date"),
                    "end_before_start",
                    false,
                    false,
                ),
                (
                    &[("lease_id", Some("LBAD2")), ("room_id", Some("RNOSUCH"))],
                    Some("room_id"),
                    "unknown_reference",
                    false,
                    false,
                ),
            ],
        ),
        (
            TableId::AccessEvents,
            vec![
                (
                    &[("ts", Some("2026-10-32 20:00:00"))],
                    Some("ts"),
                    "bad_value",
                    true,
                    false,
                ),
                (
                    &[("direction", Some("sideways"))],
                    Some("direction"),
                    "bad_enum",
                    false,
                    false,
                ),
                (
                    &[("building_id", Some("BNOSUCH"))],
                    Some("building_id"),
                    "unknown_reference",
                    false,
                    false,
                ),
            ],
        ),
        (
            TableId::UtilityReadings,
            vec![
                (&[], Some("room_id+month"), "duplicate_key", false, false),
                (
                    &[("month", Some("2020-01")), ("electricity_kwh", Some("-5"))],
                    Some("electricity_kwh"),
                    "out_of_range",
                    false,
                    false,
                ),
                (
                    &[("month", Some("2026-13"))],
                    Some("month"),
                    "bad_value",
                    false,
                    false,
                ),
            ],
        ),
        (
            TableId::Deaths,
            vec![(
                &[("died_on", None)],
                Some("died_on"),
                "missing_required",
                false,
                false,
            )],
        ),
        (
            TableId::Visits,
            vec![
                (
                    &[("visit_id", Some("VBAD1")), ("worker_id", Some("WNOSUCH"))],
                    Some("worker_id"),
                    "unknown_reference",
                    false,
                    false,
                ),
                (
                    &[("visit_id", Some("VBAD2")), ("kind", Some("chat"))],
                    Some("kind"),
                    "bad_enum",
                    false,
                    false,
                ),
            ],
        ),
        (
            TableId::Incidents,
            vec![
                (
                    &[
                        ("incident_id", Some("EBAD1")),
                        ("reported_at", Some("2026-10-01 10:00:00+08:00")),
                        ("accepted_at", Some("2026-10-01 11:00:00+08:00")),
                        ("dispatched_at", None),
                        ("handled_at", None),
                        ("verified_at", None),
                        ("closed_at", Some("2026-09-30 10:00:00+08:00")),
                        ("status", Some("closed")),
                    ],
                    Some("closed_at"),
                    "stage_order",
                    false,
                    false,
                ),
                (
                    &[("incident_id", Some("EBAD2")), ("satisfaction", Some("7"))],
                    Some("satisfaction"),
                    "out_of_range",
                    false,
                    false,
                ),
                (
                    &[
                        ("incident_id", Some("EBAD3")),
                        ("category_code", Some("1x")),
                    ],
                    Some("category_code"),
                    "out_of_range",
                    false,
                    false,
                ),
            ],
        ),
    ];
    let mut out = BTreeMap::new();
    for (table, spoils) in catalogue {
        let def = table.def();
        let Some(base) = tables.get(&table).and_then(template) else {
            continue;
        };
        let mut rows = Vec::new();
        for (changes, column, reason, csv_only, extra) in spoils {
            if csv_only && format == OutputFormat::Parquet {
                continue;
            }
            let mut values = base.clone();
            for (name, v) in changes.iter() {
                if let Some(i) = def.position(name) {
                    values[i] = v.map(str::to_string);
                }
            }
            rows.push(BadRow {
                values,
                column,
                reason,
                extra_field: extra,
            });
        }
        out.insert(table, rows);
    }
    out
}

/// The bad rows of a table as a record batch of the generator's file schema (Parquet).
pub fn to_batch(table: TableId, rows: &[BadRow]) -> Result<RecordBatch> {
    let def = table.def();
    let schema = file_schema(def);
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (i, col) in def.columns.iter().enumerate() {
        let text: StringArray = rows.iter().map(|r| r.values[i].as_deref()).collect();
        let target = schema.field(i).data_type();
        let a: ArrayRef = match col.ty {
            ColumnType::Text | ColumnType::Month | ColumnType::Enum(_) => Arc::new(text),
            _ => compute::cast(&text, target)?,
        };
        arrays.push(a);
    }
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// Appends the bad rows to a CSV file (which already has its header).
pub fn append_csv(path: &Path, rows: &[BadRow]) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| GenError::io(path, e))?;
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(f);
    for r in rows {
        let mut fields: Vec<&str> = r
            .values
            .iter()
            .map(|v| v.as_deref().unwrap_or(""))
            .collect();
        if r.extra_field {
            fields.push("unexpected");
        }
        w.write_record(&fields)?;
    }
    w.flush().map_err(|e| GenError::io(path, e))?;
    Ok(())
}

/// Writes a CSV file holding only a header and the bad rows.
pub fn new_csv(path: &Path, table: TableId, rows: &[BadRow]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| GenError::io(dir, e))?;
    }
    let mut f = std::fs::File::create(path).map_err(|e| GenError::io(path, e))?;
    let header: Vec<&str> = table.def().columns.iter().map(|c| c.name).collect();
    writeln!(f, "{}", header.join(",")).map_err(|e| GenError::io(path, e))?;
    drop(f);
    append_csv(path, rows)
}

/// Writes `truth/rejects.csv`.
pub fn write_expected(out: &Path, expected: &[Expected]) -> Result<()> {
    let dir = out.join("truth");
    std::fs::create_dir_all(&dir).map_err(|e| GenError::io(&dir, e))?;
    let path = dir.join("rejects.csv");
    let mut w = csv::Writer::from_path(&path)?;
    w.write_record(["table", "file", "row", "column", "reason"])?;
    for e in expected {
        w.write_record([
            e.table,
            &e.file,
            &e.row.to_string(),
            e.column.unwrap_or(""),
            e.reason,
        ])?;
    }
    w.flush().map_err(|e| GenError::io(&path, e))?;
    Ok(())
}
