//! Query answers, encoded batch by batch as they are computed: JSON, CSV, the Arrow IPC stream
//! format, Parquet, and Excel workbooks (whose rows go to the workbook's temporary file as they
//! come, the file itself at the end).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamWriter;
use axum::body::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::str::FromStr;

/// An answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"columns": […], "rows": [{…}, …], "row_count": N, "truncated": false}`.
    Json,
    /// CSV with a header line.
    Csv,
    /// The Arrow IPC stream format.
    Arrow,
    /// A Parquet file.
    Parquet,
    /// An Excel workbook of one sheet ([`crate::xlsx`]).
    Xlsx,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "csv" => Format::Csv,
            "arrow" => Format::Arrow,
            "parquet" => Format::Parquet,
            "xlsx" => Format::Xlsx,
            _ => {
                return Err(format!(
                    "format {s:?} is not one of json, csv, arrow, parquet, xlsx"
                ));
            }
        })
    }
}

impl Format {
    /// The Content-Type of the answer.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
            Format::Xlsx => XLSX_MIME,
        }
    }
}

/// The Content-Type of an Excel workbook.
pub const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A batch as a JSON array of objects (explicit nulls); empty for no rows.
fn json_array(batch: &RecordBatch) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(&mut buf);
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(buf)
}

/// A JSON object of the `head` fields followed by `"rows"`: the batch's rows as JSON objects
/// (explicit nulls), written straight from the columns.
pub fn json_with_rows(head: serde_json::Value, batch: &RecordBatch) -> anyhow::Result<Vec<u8>> {
    let mut out = serde_json::to_vec(&head)?;
    anyhow::ensure!(
        out.last() == Some(&b'}'),
        "the head of an answer is not an object"
    );
    out.pop();
    if out.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"rows\":");
    let rows = json_array(batch)?;
    if rows.is_empty() {
        out.extend_from_slice(b"[]");
    } else {
        out.extend_from_slice(&rows);
    }
    out.push(b'}');
    Ok(out)
}

/// Encodes an answer batch by batch. Nothing is produced before the first batch.
pub enum Encoder {
    /// JSON.
    Json {
        /// The schema.
        schema: SchemaRef,
        /// Whether the header was written.
        header: bool,
        /// Whether a row was written.
        rows: bool,
    },
    /// CSV.
    Csv {
        /// The schema.
        schema: SchemaRef,
        /// Whether the header line was written.
        started: bool,
    },
    /// Arrow IPC stream.
    Arrow(Box<StreamWriter<Vec<u8>>>),
    /// Parquet.
    Parquet(Box<ArrowWriter<Vec<u8>>>),
    /// An Excel workbook (taken when finished).
    Xlsx(Option<Box<crate::xlsx::Writer>>),
}

impl Encoder {
    /// An encoder for answers of a schema.
    pub fn new(format: Format, schema: SchemaRef) -> anyhow::Result<Encoder> {
        Ok(match format {
            Format::Json => Encoder::Json {
                schema,
                header: false,
                rows: false,
            },
            Format::Csv => Encoder::Csv {
                schema,
                started: false,
            },
            Format::Arrow => Encoder::Arrow(Box::new(StreamWriter::try_new(Vec::new(), &schema)?)),
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_max_row_group_row_count(Some(65_536))
                    .build();
                Encoder::Parquet(Box::new(ArrowWriter::try_new(
                    Vec::new(),
                    schema,
                    Some(props),
                )?))
            }
            Format::Xlsx => {
                let mut w = crate::xlsx::Writer::new();
                w.sheet("query", schema)?;
                Encoder::Xlsx(Some(Box::new(w)))
            }
        })
    }

    fn json_header(schema: &SchemaRef) -> String {
        let cols: Vec<serde_json::Value> = schema
            .fields()
            .iter()
            .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect();
        format!(
            "{{\"columns\":{},\"rows\":[",
            serde_json::Value::Array(cols)
        )
    }

    /// The bytes of one batch (with what comes before the rows, for the first).
    pub fn batch(&mut self, batch: &RecordBatch) -> anyhow::Result<Bytes> {
        match self {
            Encoder::Json {
                schema,
                header,
                rows,
            } => {
                let mut out = String::new();
                if !*header {
                    out.push_str(&Self::json_header(schema));
                    *header = true;
                }
                let buf = json_array(batch)?;
                let text = std::str::from_utf8(&buf)?;
                let inner = text
                    .trim()
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .unwrap_or("");
                if !inner.is_empty() {
                    if *rows {
                        out.push(',');
                    }
                    out.push_str(inner);
                    *rows = true;
                }
                Ok(Bytes::from(out))
            }
            Encoder::Csv { started, .. } => {
                let mut buf = Vec::new();
                {
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(!*started)
                        .build(&mut buf);
                    w.write(batch)?;
                }
                *started = true;
                Ok(Bytes::from(buf))
            }
            Encoder::Arrow(w) => {
                w.write(batch)?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
            Encoder::Parquet(w) => {
                w.write(batch)?;
                Ok(Bytes::from(std::mem::take(w.inner_mut())))
            }
            Encoder::Xlsx(w) => {
                w.as_mut()
                    .ok_or_else(|| anyhow::anyhow!("the workbook is already finished"))?
                    .rows(batch)?;
                Ok(Bytes::new())
            }
        }
    }

    /// The bytes that end the answer.
    pub fn finish(&mut self, rows: usize, truncated: bool) -> anyhow::Result<Bytes> {
        match self {
            Encoder::Json { schema, header, .. } => {
                let mut out = String::new();
                if !*header {
                    out.push_str(&Self::json_header(schema));
                }
                out.push_str(&format!(
                    "],\"row_count\":{rows},\"truncated\":{truncated}}}"
                ));
                Ok(Bytes::from(out))
            }
            Encoder::Csv { schema, started } if !*started => {
                // No rows: the header line alone.
                let mut buf = Vec::new();
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf)
                    .write(&RecordBatch::new_empty(schema.clone()))?;
                Ok(Bytes::from(buf))
            }
            Encoder::Csv { .. } => Ok(Bytes::new()),
            Encoder::Arrow(w) => {
                w.finish()?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
            Encoder::Parquet(w) => {
                w.finish()?;
                Ok(Bytes::from(std::mem::take(w.inner_mut())))
            }
            Encoder::Xlsx(w) => {
                let w = w
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("the workbook is already finished"))?;
                Ok(Bytes::from(w.finish()?))
            }
        }
    }
}
