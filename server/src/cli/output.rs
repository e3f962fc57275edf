//! Writing result tables: CSV, JSON, Parquet, Arrow IPC, or a text table for a terminal.

use anyhow::{Context, Result, bail};
use arrow::array::RecordBatch;
use std::io::Write;
use std::path::Path;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// Parquet.
    Parquet,
    /// The Arrow IPC stream format.
    Arrow,
    /// An Excel workbook.
    Xlsx,
}

impl Format {
    /// The format a file name's extension asks for.
    pub fn from_path(path: &Path) -> Result<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Ok(Format::Csv),
            Some("json") => Ok(Format::Json),
            Some("parquet") => Ok(Format::Parquet),
            Some("arrow") | Some("arrows") | Some("ipc") => Ok(Format::Arrow),
            Some("txt") => Ok(Format::Table),
            Some("xlsx") => Ok(Format::Xlsx),
            _ => bail!(
                "{}: cannot tell the format from the file name (use .csv, .json, .parquet, .arrow or .xlsx, or --format)",
                path.display()
            ),
        }
    }
}

/// Writes batches in a format to any writer.
pub fn write_to(
    w: impl Write + Send,
    batches: &[RecordBatch],
    schema: arrow::datatypes::SchemaRef,
    format: Format,
) -> Result<()> {
    match format {
        Format::Table => {
            let mut w = w;
            let text = arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(w, "{text}")?;
        }
        Format::Csv => {
            let mut wr = arrow::csv::WriterBuilder::new().with_header(true).build(w);
            for b in batches {
                wr.write(b)?;
            }
            if batches.is_empty() {
                // A header even with no rows.
                wr.write(&RecordBatch::new_empty(schema))?;
            }
        }
        Format::Json => {
            let mut wr = arrow::json::ArrayWriter::new(w);
            for b in batches {
                wr.write(b)?;
            }
            wr.finish()?;
        }
        Format::Parquet => {
            let mut wr = parquet::arrow::ArrowWriter::try_new(w, schema, None)?;
            for b in batches {
                wr.write(b)?;
            }
            wr.close()?;
        }
        Format::Arrow => {
            let mut wr = arrow::ipc::writer::StreamWriter::try_new(w, &schema)?;
            for b in batches {
                wr.write(b)?;
            }
            wr.finish()?;
        }
        Format::Xlsx => {
            let mut w = w;
            w.write_all(&crate::xlsx::workbook(&[("result", batches, schema)])?)?;
        }
    }
    Ok(())
}

/// Writes bytes to a file atomically (a temporary file renamed into place).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes batches to a file (atomically: a temporary file renamed into place).
pub fn write_file(
    path: &Path,
    batches: &[RecordBatch],
    schema: arrow::datatypes::SchemaRef,
    format: Format,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    let f = std::io::BufWriter::new(tmp.reopen()?);
    write_to(f, batches, schema, format).with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
