//! Writing generated tables: rows are pushed into typed column buffers built from the data
//! contract, then written as Parquet or CSV, one file per table or one part file per chunk.

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use gridlens_engine::contract::{ColumnType, TZ, TableDef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{GenError, Result};

/// One value of a generated row.
#[derive(Debug, Clone, Copy)]
pub enum V<'a> {
    /// Null.
    N,
    /// Text (also enums and months).
    S(&'a str),
    /// Integer.
    I(i64),
    /// Float.
    F(f64),
    /// Boolean.
    B(bool),
    /// Date (days since the epoch).
    D(i32),
    /// Instant (microseconds since the epoch).
    T(i64),
}

impl<'a> From<&'a str> for V<'a> {
    fn from(s: &'a str) -> Self {
        V::S(s)
    }
}
impl<'a> From<&'a String> for V<'a> {
    fn from(s: &'a String) -> Self {
        V::S(s)
    }
}
impl<'a> From<Option<&'a str>> for V<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(V::N, V::S)
    }
}

enum ColBuf {
    S(StringBuilder),
    I(Int64Builder),
    F(Float64Builder),
    B(BooleanBuilder),
    D(Date32Builder),
    T(TimestampMicrosecondBuilder),
}

/// Column buffers for one table, in the contract's column order.
pub struct TableBuf {
    def: &'static TableDef,
    cols: Vec<ColBuf>,
    rows: usize,
}

/// The schema generated files are written with: the contract's columns, enums as text, every
/// column nullable (so that deliberately bad rows can be written too).
pub fn file_schema(def: &TableDef) -> SchemaRef {
    Arc::new(Schema::new(
        def.columns
            .iter()
            .map(|c| Field::new(c.name, c.file_type(), true))
            .collect::<Vec<_>>(),
    ))
}

impl TableBuf {
    /// Empty buffers for a table.
    pub fn new(def: &'static TableDef) -> TableBuf {
        let cols = def
            .columns
            .iter()
            .map(|c| match c.ty {
                ColumnType::Text | ColumnType::Month | ColumnType::Enum(_) => {
                    ColBuf::S(StringBuilder::new())
                }
                ColumnType::Int => ColBuf::I(Int64Builder::new()),
                ColumnType::Float => ColBuf::F(Float64Builder::new()),
                ColumnType::Bool => ColBuf::B(BooleanBuilder::new()),
                ColumnType::Date => ColBuf::D(Date32Builder::new()),
                ColumnType::Timestamp => {
                    ColBuf::T(TimestampMicrosecondBuilder::new().with_timezone(TZ))
                }
            })
            .collect();
        TableBuf { def, cols, rows: 0 }
    }

    /// The table.
    pub fn def(&self) -> &'static TableDef {
        self.def
    }

    /// Rows pushed since the last [`TableBuf::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends a row; values must follow the contract's column order and types.
    pub fn push(&mut self, row: &[V]) {
        debug_assert_eq!(row.len(), self.cols.len(), "{}", self.def.name);
        for (c, v) in self.cols.iter_mut().zip(row) {
            match (c, *v) {
                (ColBuf::S(b), V::S(s)) => b.append_value(s),
                (ColBuf::I(b), V::I(x)) => b.append_value(x),
                (ColBuf::F(b), V::F(x)) => b.append_value(x),
                (ColBuf::B(b), V::B(x)) => b.append_value(x),
                (ColBuf::D(b), V::D(x)) => b.append_value(x),
                // Generated instants are whole seconds, as door systems and case systems report.
                (ColBuf::T(b), V::T(x)) => b.append_value(x - x.rem_euclid(1_000_000)),
                (ColBuf::S(b), _) => b.append_null(),
                (ColBuf::I(b), _) => b.append_null(),
                (ColBuf::F(b), _) => b.append_null(),
                (ColBuf::B(b), _) => b.append_null(),
                (ColBuf::D(b), _) => b.append_null(),
                (ColBuf::T(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
    }

    /// Takes the rows pushed so far as a record batch.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| match c {
                ColBuf::S(b) => Arc::new(b.finish()) as ArrayRef,
                ColBuf::I(b) => Arc::new(b.finish()),
                ColBuf::F(b) => Arc::new(b.finish()),
                ColBuf::B(b) => Arc::new(b.finish()),
                ColBuf::D(b) => Arc::new(b.finish()),
                ColBuf::T(b) => Arc::new(b.finish()),
            })
            .collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(file_schema(self.def), arrays)?)
    }
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Parquet (zstd).
    Parquet,
    /// CSV (UTF-8, header row).
    Csv,
}

impl OutputFormat {
    /// The file extension.
    pub fn ext(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Csv => "csv",
        }
    }
}

/// The path a table's data goes to: `<out>/<table>.<ext>`, or `<out>/<table>/part-NNNNN.<ext>`.
pub fn table_path(out: &Path, table: &str, format: OutputFormat, part: Option<usize>) -> PathBuf {
    match part {
        None => out.join(format!("{table}.{}", format.ext())),
        Some(p) => out
            .join(table)
            .join(format!("part-{p:05}.{}", format.ext())),
    }
}

/// Writes record batches of one table to one file.
pub struct FileWriter {
    path: PathBuf,
    inner: Inner,
    rows: usize,
}

enum Inner {
    Parquet(Box<ArrowWriter<BufWriter<File>>>),
    Csv(Box<arrow::csv::Writer<BufWriter<File>>>),
}

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

impl FileWriter {
    /// Creates the file (and its folder).
    pub fn create(path: &Path, schema: SchemaRef, format: OutputFormat) -> Result<FileWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| GenError::io(dir, e))?;
        }
        let f = File::create(path).map_err(|e| GenError::io(path, e))?;
        let w = BufWriter::with_capacity(1 << 20, f);
        let inner = match format {
            OutputFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_created_by("gridlens generate".into())
                    .build();
                Inner::Parquet(Box::new(ArrowWriter::try_new(w, schema, Some(props))?))
            }
            OutputFormat::Csv => Inner::Csv(Box::new(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .with_timestamp_tz_format("%Y-%m-%d %H:%M:%S".into())
                    .with_date_format("%Y-%m-%d".into())
                    .build(w),
            )),
        };
        Ok(FileWriter {
            path: path.to_path_buf(),
            inner,
            rows: 0,
        })
    }

    /// Writes a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows += batch.num_rows();
        match &mut self.inner {
            Inner::Parquet(w) => w.write(batch)?,
            Inner::Csv(w) => w.write(batch)?,
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Finishes the file.
    pub fn close(self) -> Result<()> {
        match self.inner {
            Inner::Parquet(w) => {
                w.close()?;
            }
            Inner::Csv(w) => {
                let mut inner = (*w).into_inner();
                inner.flush().map_err(|e| GenError::io(&self.path, e))?;
            }
        }
        Ok(())
    }
}

/// Whether a column's type keeps text as written in a Parquet file (so that a deliberately bad
/// value of it can be written there).
pub fn holds_text(dt: &DataType) -> bool {
    matches!(dt, DataType::Utf8)
}
