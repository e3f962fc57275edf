//! Finding a dataset's files and reading them into raw batches: CSV (UTF-8 with or without a BOM,
//! or GB18030/GBK) and Parquet.
//!
//! A raw batch holds the file's own columns as read (text for CSV, the file's types for Parquet)
//! and each row's number in the file, for the report.

use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::load::report::{Reject, RejectReason};
use crate::store::Manifest;
use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Schema};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Encoding as ParquetEncoding, PageType};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The encoding of CSV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8 (with or without a byte-order mark) if the file is valid UTF-8, else GB18030.
    #[default]
    Auto,
    /// UTF-8 only.
    Utf8,
    /// GB18030 (a superset of GBK and GB2312).
    Gb18030,
}

impl std::str::FromStr for Encoding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" => Ok(Encoding::Auto),
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "gb18030" | "gbk" | "gb2312" => Ok(Encoding::Gb18030),
            _ => Err(Error::param(
                "encoding",
                format!("unknown encoding {s:?} (expected auto, utf-8 or gb18030)"),
            )),
        }
    }
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV.
    Csv,
    /// Parquet.
    Parquet,
}

/// One file of a table.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its path relative to the dataset folder, as reports show it.
    pub name: String,
    /// Its format.
    pub format: Format,
    /// Whether its rows replace earlier rows with the same key (an ingested upsert) instead of
    /// being rejected as duplicates.
    pub replaces: bool,
    /// The file's rows as [`read_csv`] reads them, when they are at hand already (a batch just
    /// ingested, parsed from its body): the loader takes these instead of reading the file.
    pub read: Option<Arc<Vec<RawBatch>>>,
}

/// What a dataset folder holds.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Each provided table's files, in name order.
    pub tables: BTreeMap<TableId, Vec<SourceFile>>,
    /// Entries that are not tables of the contract.
    pub ignored: Vec<String>,
    /// `manifest.json`, if present.
    pub manifest: Option<Manifest>,
}

fn format_of(name: &str) -> Option<(&str, Format)> {
    if let Some(stem) = name.strip_suffix(".csv") {
        Some((stem, Format::Csv))
    } else if let Some(stem) = name.strip_suffix(".parquet") {
        Some((stem, Format::Parquet))
    } else {
        None
    }
}

fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        Error::Load(format!(
            "cannot read the dataset folder {}: {e}",
            dir.display()
        ))
    })?;
    let mut out = Vec::new();
    for entry in rd {
        let entry =
            entry.map_err(|e| Error::Load(format!("cannot read {}: {e}", dir.display())))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = path.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Finds the tables of a dataset folder: `<table>.csv`, `<table>.parquet`, or a folder
/// `<table>/` of such files; reads `manifest.json`. Fails if a required table is missing or a
/// table is given twice.
pub fn discover(dir: &Path) -> Result<Discovery> {
    if !dir.is_dir() {
        return Err(Error::Load(format!(
            "the dataset folder {} does not exist or is not a folder",
            dir.display()
        )));
    }
    let mut d = Discovery::default();
    for (name, path, is_dir) in sorted_entries(dir)? {
        if name == "manifest.json" && !is_dir {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Load(format!("manifest.json: cannot read it: {e}")))?;
            let m: Manifest = serde_json::from_str(&text)
                .map_err(|e| Error::Load(format!("manifest.json: not valid JSON: {e}")))?;
            d.manifest = Some(m);
            continue;
        }
        if is_dir {
            let Some(table) = TableId::from_name(&name) else {
                d.ignored.push(format!("{name}/"));
                continue;
            };
            let mut files = Vec::new();
            for (fname, fpath, fdir) in sorted_entries(&path)? {
                match format_of(&fname) {
                    Some((_, format)) if !fdir => files.push(SourceFile {
                        path: fpath,
                        name: format!("{name}/{fname}"),
                        format,
                        replaces: false,
                        read: None,
                    }),
                    _ => d.ignored.push(format!("{name}/{fname}")),
                }
            }
            if files.is_empty() {
                return Err(Error::Load(format!(
                    "{name}/: the folder for table {name} holds no .csv or .parquet file"
                )));
            }
            add(&mut d, table, files)?;
            continue;
        }
        match format_of(&name).and_then(|(stem, f)| TableId::from_name(stem).map(|t| (t, f))) {
            Some((table, format)) => {
                let file = SourceFile {
                    path,
                    name,
                    format,
                    replaces: false,
                    read: None,
                };
                add(&mut d, table, vec![file])?
            }
            None => d.ignored.push(name),
        }
    }
    let missing: Vec<&str> = TableId::ALL
        .iter()
        .filter(|t| t.def().required && !d.tables.contains_key(t))
        .map(|t| t.name())
        .collect();
    if !missing.is_empty() {
        let list = missing
            .iter()
            .map(|m| format!("{m}.csv, {m}.parquet or {m}/"))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Load(format!(
            "{}: required table{} {} missing (expected {list})",
            dir.display(),
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ") + if missing.len() > 1 { " are" } else { " is" },
        )));
    }
    Ok(d)
}

fn add(d: &mut Discovery, table: TableId, files: Vec<SourceFile>) -> Result<()> {
    if let Some(prev) = d.tables.get(&table) {
        return Err(Error::Load(format!(
            "table {} is given twice ({} and {}); keep one",
            table.name(),
            prev[0].name,
            files[0].name
        )));
    }
    d.tables.insert(table, files);
    Ok(())
}

/// Rows read from a file, before conversion to the contract's types.
#[derive(Debug, Clone)]
pub struct RawBatch {
    /// The file's column names.
    pub names: Arc<Vec<String>>,
    /// The file's columns: text for CSV (null for an empty field), the file's types for Parquet.
    pub columns: Vec<ArrayRef>,
    /// Each row's number in the file (CSV: line the record starts on; Parquet: position from 1).
    pub rows: Vec<u64>,
    /// Whether the batch came from CSV.
    pub csv: bool,
}

impl RawBatch {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The first invalid UTF-8 position of a file, if any (streamed, so any size works).
fn first_invalid_utf8(path: &Path, skip: u64) -> Result<Option<u64>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(skip))
        .map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut carry = 0usize;
    let mut offset = skip;
    loop {
        let n = f.read(&mut buf[carry..]).map_err(|e| Error::io(path, e))?;
        let len = carry + n;
        if len == 0 {
            return Ok(None);
        }
        match simdutf8::compat::from_utf8(&buf[..len]) {
            Ok(_) => {
                carry = 0;
            }
            Err(e) => {
                // An incomplete sequence at the end of the chunk continues in the next read.
                if e.error_len().is_none() && n > 0 {
                    let valid = e.valid_up_to();
                    buf.copy_within(valid..len, 0);
                    carry = len - valid;
                    offset += valid as u64;
                    continue;
                }
                return Ok(Some(offset + e.valid_up_to() as u64));
            }
        }
        if n == 0 {
            return Ok(if carry > 0 { Some(offset) } else { None });
        }
        offset += len as u64;
    }
}

/// Whether a file decodes as GB18030 without a malformed sequence; the offset of the first one.
fn first_invalid_gb18030(path: &Path) -> Result<Option<u64>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut dec = encoding_rs::GB18030.new_decoder_without_bom_handling();
    let mut buf = vec![0u8; 1 << 20];
    let mut out = String::with_capacity(3 << 20);
    let mut offset = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        let last = n == 0;
        let mut input = &buf[..n];
        loop {
            out.clear();
            let (res, read) = dec.decode_to_string_without_replacement(input, &mut out, last);
            match res {
                encoding_rs::DecoderResult::InputEmpty => break,
                encoding_rs::DecoderResult::OutputFull => {
                    input = &input[read..];
                    offset += read as u64;
                    out.reserve(3 << 20);
                }
                encoding_rs::DecoderResult::Malformed(bad, after) => {
                    // `read` counts the malformed bytes and those read after them.
                    let start = (read as u64).saturating_sub(bad as u64 + after as u64);
                    return Ok(Some(offset + start));
                }
            }
        }
        offset += input.len() as u64;
        if last {
            return Ok(None);
        }
    }
}

fn line_of(path: &Path, offset: u64) -> u64 {
    let Ok(f) = File::open(path) else { return 0 };
    let mut r = BufReader::new(f).take(offset);
    let mut buf = [0u8; 65536];
    let mut lines = 1;
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    lines
}

/// Decides the encoding of a CSV file, failing with a clear message when it is neither.
pub fn detect_encoding(file: &SourceFile, wanted: Encoding) -> Result<(Encoding, bool)> {
    let mut head = [0u8; 3];
    let mut f = File::open(&file.path)
        .map_err(|e| Error::Load(format!("{}: cannot open the file: {e}", file.name)))?;
    let n = f
        .read(&mut head)
        .map_err(|e| Error::Load(format!("{}: cannot read: {e}", file.name)))?;
    let bom = n == 3 && head == [0xEF, 0xBB, 0xBF];
    let skip = if bom { 3 } else { 0 };
    match wanted {
        Encoding::Gb18030 => match first_invalid_gb18030(&file.path)? {
            None => Ok((Encoding::Gb18030, false)),
            Some(at) => Err(Error::Load(format!(
                "{}: not valid GB18030 text (malformed bytes at byte {at}, line {})",
                file.name,
                line_of(&file.path, at)
            ))),
        },
        Encoding::Utf8 => match first_invalid_utf8(&file.path, skip)? {
            None => Ok((Encoding::Utf8, bom)),
            Some(at) => Err(Error::Load(format!(
                "{}: not valid UTF-8 (invalid bytes at byte {at}, line {}); if office software \
                 saved it in Chinese, load it with --encoding gb18030",
                file.name,
                line_of(&file.path, at)
            ))),
        },
        Encoding::Auto => match first_invalid_utf8(&file.path, skip)? {
            None => Ok((Encoding::Utf8, bom)),
            Some(at) if bom => Err(Error::Load(format!(
                "{}: starts with a UTF-8 byte-order mark but is not valid UTF-8 (invalid bytes \
                 at byte {at}, line {})",
                file.name,
                line_of(&file.path, at)
            ))),
            Some(utf8_at) => match first_invalid_gb18030(&file.path)? {
                None => Ok((Encoding::Gb18030, false)),
                // Neither decodes: the file is named at the fault of the encoding that read it
                // further (most likely the one it is written in).
                Some(gb_at) if utf8_at >= gb_at => Err(Error::Load(format!(
                    "{}: the text is not valid UTF-8 at line {} (byte {utf8_at}), nor GB18030/GBK; \
                     fix that line or save the file again as UTF-8 CSV",
                    file.name,
                    line_of(&file.path, utf8_at)
                ))),
                Some(gb_at) => Err(Error::Load(format!(
                    "{}: the text is not valid GB18030/GBK at line {} (byte {gb_at}), nor UTF-8; \
                     fix that line or save the file again as UTF-8 CSV",
                    file.name,
                    line_of(&file.path, gb_at)
                ))),
            },
        },
    }
}

/// A CSV header's name as the loader reads it: without a byte-order mark or spaces around it.
pub fn header_name(h: &str) -> String {
    h.trim_start_matches('\u{feff}').trim().to_string()
}

/// Reads a CSV file in batches of `batch_rows`, calling `on_batch` for each. Records whose number
/// of fields differs from the header's are rejected here. Returns the encoding used and those
/// rejects.
pub fn read_csv(
    file: &SourceFile,
    table: TableId,
    wanted: Encoding,
    batch_rows: usize,
    mut on_batch: impl FnMut(RawBatch) -> Result<()>,
) -> Result<(Encoding, Vec<Reject>)> {
    let (encoding, bom) = detect_encoding(file, wanted)?;
    let mut f = File::open(&file.path)
        .map_err(|e| Error::Load(format!("{}: cannot open the file: {e}", file.name)))?;
    if bom {
        f.seek(SeekFrom::Start(3))
            .map_err(|e| Error::Load(format!("{}: cannot read: {e}", file.name)))?;
    }
    let reader: Box<dyn Read> = match encoding {
        Encoding::Gb18030 => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding_rs::GB18030))
                .build(f),
        ),
        _ => Box::new(f),
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(BufReader::with_capacity(1 << 20, reader));
    let headers = rdr
        .headers()
        .map_err(|e| Error::Load(format!("{}: cannot read the header row: {e}", file.name)))?
        .clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].trim().is_empty()) {
        return Err(Error::Load(format!(
            "{}: the file is empty (no header row)",
            file.name
        )));
    }
    let names: Arc<Vec<String>> = Arc::new(headers.iter().map(header_name).collect());
    let width = names.len();
    let mut rejects = Vec::new();
    let mut record = csv::StringRecord::new();
    let new_builders = || -> Vec<StringBuilder> {
        (0..width)
            .map(|_| StringBuilder::with_capacity(batch_rows, batch_rows * 8))
            .collect()
    };
    let mut builders = new_builders();
    let mut rows: Vec<u64> = Vec::with_capacity(batch_rows);
    loop {
        let more = rdr
            .read_record(&mut record)
            .map_err(|e| Error::Load(format!("{}: cannot be read as CSV: {e}", file.name)))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != width {
            rejects.push(Reject {
                table: table.name(),
                file: file.name.clone(),
                row: line,
                column: None,
                reason: RejectReason::WrongFieldCount,
                detail: format!(
                    "the record has {} fields, the header has {width}",
                    record.len()
                ),
                raw: record_to_csv(record.iter()),
            });
            continue;
        }
        for (b, v) in builders.iter_mut().zip(record.iter()) {
            if v.is_empty() {
                b.append_null();
            } else {
                b.append_value(v);
            }
        }
        rows.push(line);
        if rows.len() == batch_rows {
            let columns = builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect();
            on_batch(RawBatch {
                names: names.clone(),
                columns,
                rows: std::mem::replace(&mut rows, Vec::with_capacity(batch_rows)),
                csv: true,
            })?;
        }
    }
    if !rows.is_empty() || names.is_empty() {
        let columns = builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        on_batch(RawBatch {
            names: names.clone(),
            columns,
            rows,
            csv: true,
        })?;
    } else {
        // An empty file still tells its columns.
        let columns = builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        on_batch(RawBatch {
            names,
            columns,
            rows: Vec::new(),
            csv: true,
        })?;
    }
    Ok((encoding, rejects))
}

/// Formats fields as one CSV record (RFC 4180 quoting), without the line end.
pub fn record_to_csv<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let fields: Vec<&str> = fields.collect();
    if w.write_record(&fields).is_err() {
        return fields.join(",");
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string()
}

/// A row group of a Parquet file: its index, its first row (from 0) and its number of rows.
pub type RowGroup = (usize, u64, usize);

/// A Parquet file's footer, read once and shared by the readers of its row groups.
#[derive(Debug, Clone)]
pub struct ParquetLayout {
    /// The file's Arrow schema.
    pub schema: Arc<Schema>,
    /// Its row groups.
    pub groups: Vec<RowGroup>,
    metadata: Arc<ParquetMetaData>,
}

/// A Parquet file's schema and row groups.
pub fn parquet_layout(file: &SourceFile) -> Result<ParquetLayout> {
    let f = File::open(&file.path)
        .map_err(|e| Error::Load(format!("{}: cannot open the file: {e}", file.name)))?;
    let b = undamaged(file, "its footer", || {
        ParquetRecordBatchReaderBuilder::try_new(f)
    })?
    .map_err(|e| Error::Load(format!("{}: not a readable Parquet file: {e}", file.name)))?;
    let schema = b.schema().clone();
    let metadata = b.metadata().clone();
    let mut first = 0u64;
    let mut groups = Vec::new();
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        let n = rg.num_rows().max(0) as usize;
        groups.push((i, first, n));
        first += n as u64;
    }
    Ok(ParquetLayout {
        schema,
        groups,
        metadata,
    })
}

/// Runs a step of the Parquet reader, which asserts on some damaged footers and pages instead
/// of returning an error: a damaged file must be refused, not take down the load (or the
/// server reloading it).
fn undamaged<T>(file: &SourceFile, what: &str, step: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|_| {
        Error::Load(format!(
            "{}: cannot decode {what}: the file is damaged",
            file.name
        ))
    })
}

/// Whether every data page of a column chunk is dictionary-encoded (unknown: assumed so).
fn all_dictionary(column: &ColumnChunkMetaData) -> bool {
    if let Some(mask) = column.page_encoding_stats_mask() {
        return column.dictionary_page_offset().is_some()
            && (mask.is_only(ParquetEncoding::PLAIN_DICTIONARY)
                || mask.is_only(ParquetEncoding::RLE_DICTIONARY));
    }
    if let Some(stats) = column.page_encoding_stats() {
        return column.dictionary_page_offset().is_some()
            && stats
                .iter()
                .filter(|s| {
                    s.page_type == PageType::DATA_PAGE || s.page_type == PageType::DATA_PAGE_V2
                })
                .all(|s| {
                    s.encoding == ParquetEncoding::PLAIN_DICTIONARY
                        || s.encoding == ParquetEncoding::RLE_DICTIONARY
                });
    }
    column.dictionary_page_offset().is_some()
}

/// Reads one row group of a Parquet file. Text columns stored wholly as dictionaries are read as
/// dictionaries, which lets the loader resolve each distinct value once; text that the writer
/// stored plainly is read plainly (building a dictionary of it would only cost).
pub fn read_parquet_row_group(
    file: &SourceFile,
    layout: &ParquetLayout,
    group: RowGroup,
    batch_rows: usize,
    mut on_batch: impl FnMut(RawBatch) -> Result<()>,
) -> Result<()> {
    let schema = &layout.schema;
    let f = File::open(&file.path)
        .map_err(|e| Error::Load(format!("{}: cannot open the file: {e}", file.name)))?;
    let rg = layout.metadata.row_group(group.0);
    let leaves = layout.metadata.file_metadata().schema_descr();
    let dictionary = |name: &str| -> bool {
        (0..rg.num_columns())
            .find(|&c| leaves.column(c).path().string() == name)
            .is_some_and(|c| all_dictionary(rg.column(c)))
    };
    let hinted = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 if dictionary(f.name()) => {
                    f.as_ref().clone().with_data_type(DataType::Dictionary(
                        Box::new(DataType::Int32),
                        Box::new(DataType::Utf8),
                    ))
                }
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ));
    let opts = ArrowReaderOptions::new().with_schema(hinted);
    let meta = undamaged(file, "its footer", || {
        ArrowReaderMetadata::try_new(layout.metadata.clone(), opts)
    })?
    .map_err(|e| Error::Load(format!("{}: not a readable Parquet file: {e}", file.name)))?;
    let b = ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta);
    let names: Arc<Vec<String>> =
        Arc::new(schema.fields().iter().map(|f| f.name().clone()).collect());
    let mut reader = b
        .with_row_groups(vec![group.0])
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| {
            Error::Load(format!(
                "{}: cannot read row group {}: {e}",
                file.name, group.0
            ))
        })?;
    let mut next = group.1 + 1;
    loop {
        let what = format!("the pages of row group {}", group.0);
        let batch = undamaged(file, &what, || reader.next())?;
        let Some(batch) = batch else { break };
        let batch = batch.map_err(|e| {
            Error::Load(format!(
                "{}: cannot read row group {}: {e}",
                file.name, group.0
            ))
        })?;
        let n = batch.num_rows() as u64;
        on_batch(RawBatch {
            names: names.clone(),
            columns: batch.columns().to_vec(),
            rows: (next..next + n).collect(),
            csv: false,
        })?;
        next += n;
    }
    Ok(())
}
