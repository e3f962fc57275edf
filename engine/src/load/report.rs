//! The load report: per table, rows read, loaded and rejected, and why.

use crate::contract::TableId;
use arrow::array::{RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A table's name, as the contract spells it.
pub type TableName = &'static str;

/// A table's name read back (a snapshot's report): the contract's own `&'static str`.
fn table_name<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    TableId::from_name(&name)
        .map(TableId::name)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown table {name:?}")))
}

/// Why a row was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// A CSV record does not have as many fields as the header.
    WrongFieldCount,
    /// A required column is null.
    MissingRequired,
    /// A value does not parse as its column's type.
    BadValue,
    /// A value is not one of its enum's values.
    BadEnum,
    /// A number or code is out of its range or pattern.
    OutOfRange,
    /// A grid's community, street or district code disagrees with its `grid_code` prefix.
    GridCodeMismatch,
    /// An incident's stage timestamps go backwards.
    StageOrder,
    /// A lease ends before it starts.
    EndBeforeStart,
    /// A unique key repeats an earlier row's.
    DuplicateKey,
    /// A reference points to no row of the target table.
    UnknownReference,
}

impl RejectReason {
    /// The reason's code, as in the `rejects` table.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::WrongFieldCount => "wrong_field_count",
            RejectReason::MissingRequired => "missing_required",
            RejectReason::BadValue => "bad_value",
            RejectReason::BadEnum => "bad_enum",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::GridCodeMismatch => "grid_code_mismatch",
            RejectReason::StageOrder => "stage_order",
            RejectReason::EndBeforeStart => "end_before_start",
            RejectReason::DuplicateKey => "duplicate_key",
            RejectReason::UnknownReference => "unknown_reference",
        }
    }

    /// Every reason.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::WrongFieldCount,
        RejectReason::MissingRequired,
        RejectReason::BadValue,
        RejectReason::BadEnum,
        RejectReason::OutOfRange,
        RejectReason::GridCodeMismatch,
        RejectReason::StageOrder,
        RejectReason::EndBeforeStart,
        RejectReason::DuplicateKey,
        RejectReason::UnknownReference,
    ];

    /// Looks a reason up by its code.
    pub fn from_code(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// One rejected input row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// The table.
    #[serde(deserialize_with = "table_name")]
    pub table: TableName,
    /// The source file, relative to the dataset folder.
    pub file: String,
    /// In a CSV file, the line the record starts on (the header is line 1); in Parquet, the
    /// row's position in the file, from 1.
    pub row: u64,
    /// The column at fault, if one is.
    pub column: Option<String>,
    /// Why.
    pub reason: RejectReason,
    /// A sentence saying what is wrong, with the value.
    pub detail: String,
    /// The row as it was read (CSV: the record; Parquet: the values, comma separated).
    pub raw: String,
}

/// Counts and first examples of one reason, within one table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReasonCount {
    /// The reason.
    pub reason: RejectReason,
    /// How many rows.
    pub count: u64,
    /// The first few.
    pub examples: Vec<Reject>,
}

/// One table's part of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableReport {
    /// Table name.
    #[serde(deserialize_with = "table_name")]
    pub table: TableName,
    /// Whether the dataset provided the table.
    pub provided: bool,
    /// Source files.
    pub files: Vec<String>,
    /// Rows read.
    pub read: u64,
    /// Rows loaded.
    pub loaded: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Rows replaced by a later ingested row with the same key (upserts of the live city).
    pub superseded: u64,
    /// Reasons with counts and first examples.
    pub reasons: Vec<ReasonCount>,
    /// Columns the file carried beyond the contract (kept, queryable, ignored by the rules).
    pub extra_columns: Vec<String>,
}

/// How many examples of each reason the report keeps.
pub const EXAMPLES: usize = 3;

impl TableReport {
    /// Builds a table's report from its rejects.
    pub fn new(table: TableId, files: Vec<String>, read: u64, rejects: &[Reject]) -> TableReport {
        let mut report = TableReport {
            table: table.name(),
            provided: !files.is_empty(),
            files,
            read: 0,
            loaded: 0,
            rejected: 0,
            superseded: 0,
            reasons: Vec::new(),
            extra_columns: Vec::new(),
        };
        report.count(read, rejects);
        report
    }

    /// Counts one more file of the table: its rows read and rejected.
    pub fn add_file(&mut self, file: String, read: u64, rejects: &[Reject]) {
        self.provided = true;
        self.files.push(file);
        self.count(read, rejects);
    }

    /// Counts rows read and rejected, with their reasons in reason order (the first examples
    /// of each reason kept are the earliest).
    fn count(&mut self, read: u64, rejects: &[Reject]) {
        self.read += read;
        self.rejected += rejects.len() as u64;
        self.loaded = self.read - self.rejected - self.superseded;
        for r in rejects {
            let at = match self.reasons.binary_search_by_key(&r.reason, |c| c.reason) {
                Ok(i) => i,
                Err(i) => {
                    self.reasons.insert(
                        i,
                        ReasonCount {
                            reason: r.reason,
                            count: 0,
                            examples: Vec::new(),
                        },
                    );
                    i
                }
            };
            let c = &mut self.reasons[at];
            c.count += 1;
            if c.examples.len() < EXAMPLES {
                c.examples.push(r.clone());
            }
        }
    }
}

/// What a load did.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LoadReport {
    /// The dataset folder.
    pub dataset: String,
    /// Per table, in contract order.
    pub tables: Vec<TableReport>,
    /// Files in the folder that are not tables of the contract, and were not read.
    pub ignored: Vec<String>,
    /// The encoding each CSV file was read in.
    pub encodings: BTreeMap<String, String>,
    /// Seconds the load took.
    pub seconds: f64,
}

impl LoadReport {
    /// Rows read, over every table.
    pub fn read(&self) -> u64 {
        self.tables.iter().map(|t| t.read).sum()
    }
    /// Rows loaded, over every table.
    pub fn loaded(&self) -> u64 {
        self.tables.iter().map(|t| t.loaded).sum()
    }
    /// Rows rejected, over every table.
    pub fn rejected(&self) -> u64 {
        self.tables.iter().map(|t| t.rejected).sum()
    }
    /// Whether every table reconciles: read = loaded + rejected + superseded.
    pub fn reconciles(&self) -> bool {
        self.tables
            .iter()
            .all(|t| t.read == t.loaded + t.rejected + t.superseded)
    }

    /// The report as text, for a terminal.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<18} {:<28} {:>12} {:>12} {:>10}",
            "table", "source", "read", "loaded", "rejected"
        );
        for t in &self.tables {
            let src = match t.files.len() {
                0 => "(not provided)".to_string(),
                1 => t.files[0].clone(),
                n => format!("{} ({n} files)", t.files[0].split('/').next().unwrap_or("")),
            };
            let _ = writeln!(
                s,
                "{:<18} {:<28} {:>12} {:>12} {:>10}",
                t.table, src, t.read, t.loaded, t.rejected
            );
        }
        let _ = writeln!(
            s,
            "{:<18} {:<28} {:>12} {:>12} {:>10}",
            "total",
            "",
            self.read(),
            self.loaded(),
            self.rejected()
        );
        for t in &self.tables {
            if !t.extra_columns.is_empty() {
                let _ = writeln!(
                    s,
                    "{}: extra columns kept: {}",
                    t.table,
                    t.extra_columns.join(", ")
                );
            }
        }
        if self.rejected() > 0 {
            let _ = writeln!(s, "\nrejected rows, by reason (first examples):");
            for t in &self.tables {
                for r in &t.reasons {
                    let _ = writeln!(s, "  {} {}: {}", t.table, r.reason.code(), r.count);
                    for e in &r.examples {
                        let _ = writeln!(
                            s,
                            "    {} row {}{}: {}",
                            e.file,
                            e.row,
                            e.column
                                .as_deref()
                                .map(|c| format!(" column {c}"))
                                .unwrap_or_default(),
                            e.detail
                        );
                    }
                }
            }
        }
        if !self.ignored.is_empty() {
            let _ = writeln!(
                s,
                "\nnot tables of the contract, not read: {}",
                self.ignored.join(", ")
            );
        }
        s
    }
}

/// The schema of the `rejects` table.
pub fn rejects_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("source_file", DataType::Utf8, false),
        Field::new("row_number", DataType::UInt64, false),
        Field::new("column_name", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("raw_row", DataType::Utf8, false),
    ]))
}

/// The rejected rows as the `rejects` table.
pub fn rejects_batch(rejects: &[Reject]) -> arrow::error::Result<RecordBatch> {
    let mut table = StringBuilder::new();
    let mut file = StringBuilder::new();
    let mut row = UInt64Builder::new();
    let mut column = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut detail = StringBuilder::new();
    let mut raw = StringBuilder::new();
    for r in rejects {
        table.append_value(r.table);
        file.append_value(&r.file);
        row.append_value(r.row);
        column.append_option(r.column.as_deref());
        reason.append_value(r.reason.code());
        detail.append_value(&r.detail);
        raw.append_value(&r.raw);
    }
    RecordBatch::try_new(
        rejects_schema(),
        vec![
            Arc::new(table.finish()),
            Arc::new(file.finish()),
            Arc::new(row.finish()),
            Arc::new(column.finish()),
            Arc::new(reason.finish()),
            Arc::new(detail.finish()),
            Arc::new(raw.finish()),
        ],
    )
}
