//! Excel workbooks of result tables (`rust_xlsxwriter`), for leadership: Chinese headers for
//! the KPI columns, numbers as numbers (rates as percentages, dates and times as Excel dates),
//! grades coloured, the header row frozen and an autofilter over every column.
//!
//! Sheets are written in `rust_xlsxwriter`'s constant-memory mode: rows go to a temporary file
//! as they come, so a large answer is not held as cells. A sheet holds at most
//! [`MAX_ROWS`] rows, as Excel does; past that the writer stops with an error that says to use
//! CSV or Parquet.

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use rust_xlsxwriter::{Color, Format, FormatAlign, FormatBorder, Workbook, Worksheet};

/// The rows a sheet holds at most after its header (Excel's limit less one).
pub const MAX_ROWS: usize = 1_048_575;

/// The Chinese headers of the columns leadership reads (the terms of `kpis.md`).
const HEADERS: &[(&str, &str)] = &[
    ("level", "层级"),
    ("code", "编码"),
    ("name", "名称"),
    ("grid_code", "网格编码"),
    ("community_code", "社区编码"),
    ("street_code", "街道编码"),
    ("district_code", "区编码"),
    ("city_code", "市编码"),
    ("buildings", "楼栋数"),
    ("rooms", "房屋数"),
    ("residential_rooms", "住宅房屋数"),
    ("rental_rooms", "出租房屋数"),
    ("vacant_rooms", "空置房屋数"),
    ("households", "户数"),
    ("residents", "实有人口"),
    ("floating_residents", "流动人口"),
    ("floating_share", "流动人口占比"),
    ("elderly_alone", "独居老人"),
    ("workers", "网格员数"),
    ("households_per_worker", "人均服务户数"),
    ("visit_coverage_30d", "30日走访覆盖率"),
    ("care_compliance_7d", "7日关爱达标率"),
    ("verified_share", "核验率"),
    ("anomalies", "异常数"),
    ("anomalies_per_1000", "每千人异常数"),
    ("incidents_30d", "30日事件数"),
    ("closure_rate_30d", "30日结案率"),
    ("on_time_closure_rate_30d", "30日按期结案率"),
    ("overdue_open", "超期未结"),
    ("incident_score_30d", "30日事件得分"),
    ("grid_score", "网格综合得分"),
    ("rank_in_street", "街道内排名"),
    ("department", "处置部门"),
    ("category_code", "事件类别"),
    ("major_class", "大类"),
    ("source", "来源"),
    ("urgency", "紧急程度"),
    ("month", "月份"),
    ("reported", "上报数"),
    ("accepted", "立案数"),
    ("acceptance_rate", "立案率"),
    ("due", "应结数"),
    ("closed", "结案数"),
    ("closure_rate", "结案率"),
    ("on_time_closure_rate", "按期结案率"),
    ("handle_due", "应处置数"),
    ("on_time_handling_rate", "按期处置率"),
    ("rework_rate", "返工率"),
    ("median_close_hours", "结案时长中位数(小时)"),
    ("p90_close_hours", "结案时长P90(小时)"),
    ("satisfaction_avg", "满意度"),
    ("score", "综合得分"),
    ("grade", "等级"),
];

/// The header a column gets: its Chinese name where it has one.
pub fn header(column: &str) -> &str {
    HEADERS
        .iter()
        .find(|(c, _)| *c == column)
        .map_or(column, |(_, h)| h)
}

/// Whether a column holds a share (written as a percentage).
fn is_share(column: &str) -> bool {
    column.ends_with("_rate")
        || column.contains("_rate_")
        || column.ends_with("_share")
        || column.starts_with("visit_coverage")
        || column.starts_with("care_compliance")
}

/// A grade's fill colour (A green … E red).
fn grade_colour(grade: &str) -> Option<u32> {
    Some(match grade {
        "A" => 0x63BE7B,
        "B" => 0xB1D580,
        "C" => 0xFFEB84,
        "D" => 0xFBAA77,
        "E" => 0xF8696B,
        _ => return None,
    })
}

/// The formats of one sheet.
struct Formats {
    header: Format,
    integer: Format,
    decimal: Format,
    percent: Format,
    date: Format,
    datetime: Format,
    grades: Vec<(&'static str, Format)>,
}

impl Formats {
    fn new() -> Formats {
        Formats {
            header: Format::new()
                .set_bold()
                .set_background_color(Color::RGB(0x1F4E79))
                .set_font_color(Color::White)
                .set_align(FormatAlign::Center)
                .set_border_bottom(FormatBorder::Thin),
            integer: Format::new().set_num_format("#,##0"),
            decimal: Format::new().set_num_format("#,##0.00"),
            percent: Format::new().set_num_format("0.0%"),
            date: Format::new().set_num_format("yyyy-mm-dd"),
            datetime: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            grades: ["A", "B", "C", "D", "E"]
                .into_iter()
                .filter_map(|g| {
                    grade_colour(g).map(|c| {
                        (
                            g,
                            Format::new()
                                .set_background_color(Color::RGB(c))
                                .set_align(FormatAlign::Center)
                                .set_bold(),
                        )
                    })
                })
                .collect(),
        }
    }
}

/// A workbook written sheet by sheet and batch by batch.
pub struct Writer {
    book: Workbook,
    formats: Formats,
    sheets: Vec<SheetState>,
}

struct SheetState {
    schema: SchemaRef,
    rows: usize,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    /// An empty workbook.
    pub fn new() -> Writer {
        Writer {
            book: Workbook::new(),
            formats: Formats::new(),
            sheets: Vec::new(),
        }
    }

    /// Starts a sheet (its rows follow with [`Writer::rows`]).
    pub fn sheet(&mut self, name: &str, schema: SchemaRef) -> Result<()> {
        let ws = self
            .book
            .add_worksheet_with_constant_memory()
            .context("starting a worksheet")?;
        // Sheet names: at most 31 characters, none of []:*?/\.
        let clean: String = name
            .chars()
            .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
            .take(31)
            .collect();
        ws.set_name(if clean.is_empty() { "sheet" } else { &clean })?;
        ws.set_freeze_panes(1, 0)?;
        for (i, f) in schema.fields().iter().enumerate() {
            let h = header(f.name());
            let width = (h
                .chars()
                .map(|c| if c.is_ascii() { 1.0 } else { 2.0 })
                .sum::<f64>()
                + 2.0)
                .clamp(8.0, 40.0);
            ws.set_column_width(i as u16, width)?;
            ws.write_string_with_format(0, i as u16, h, &self.formats.header)?;
        }
        self.sheets.push(SheetState { schema, rows: 0 });
        Ok(())
    }

    /// Writes a batch's rows to the sheet last started.
    pub fn rows(&mut self, batch: &RecordBatch) -> Result<()> {
        let index = self
            .sheets
            .len()
            .checked_sub(1)
            .context("no sheet started")?;
        let state = &mut self.sheets[index];
        if state.rows + batch.num_rows() > MAX_ROWS {
            bail!(
                "an Excel sheet holds at most {MAX_ROWS} rows and this answer has more; ask for \
                 csv or parquet, or fewer rows"
            );
        }
        let ws = self.book.worksheet_from_index(index)?;
        // Constant-memory sheets take their cells row by row.
        let mut columns = Vec::new();
        for (c, field) in state.schema.fields().iter().enumerate() {
            let cells = cells(batch.column(c).as_ref(), is_share(field.name()))?;
            columns.push((cells.into_iter(), field.name() == "grade"));
        }
        for r in 0..batch.num_rows() {
            let row = (state.rows + r + 1) as u32;
            for (c, (cells, grade)) in columns.iter_mut().enumerate() {
                if let Some(cell) = cells.next() {
                    write_cell(ws, &self.formats, row, c as u16, cell, *grade)?;
                }
            }
        }
        state.rows += batch.num_rows();
        Ok(())
    }

    /// The finished workbook's bytes.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        if self.sheets.is_empty() {
            bail!("a workbook needs a sheet");
        }
        for (i, s) in self.sheets.iter().enumerate() {
            let last = s.schema.fields().len().saturating_sub(1) as u16;
            let ws = self.book.worksheet_from_index(i)?;
            ws.autofilter(0, 0, s.rows as u32, last)?;
        }
        Ok(self.book.save_to_buffer()?)
    }
}

/// One workbook of whole tables, one sheet each.
pub fn workbook(sheets: &[(&str, &[RecordBatch], SchemaRef)]) -> Result<Vec<u8>> {
    let mut w = Writer::new();
    for (name, batches, schema) in sheets {
        w.sheet(name, schema.clone())?;
        for b in *batches {
            w.rows(b)?;
        }
    }
    w.finish()
}

/// Days from Excel's epoch (1899-12-30) to 1970-01-01.
const EXCEL_UNIX_DAYS: f64 = 25_569.0;
/// China Standard Time, seconds east of UTC: timestamps are written as wall-clock time there.
const CST_SECONDS: f64 = 8.0 * 3600.0;

/// A cell to write: the number formats are those of [`Formats`].
enum Cell {
    Empty,
    Number(f64, Kind),
    Bool(bool),
    Text(String),
}

/// Which number format a number takes.
#[derive(Clone, Copy)]
enum Kind {
    Integer,
    Decimal,
    Percent,
    Date,
    DateTime,
}

fn write_cell(
    ws: &mut Worksheet,
    f: &Formats,
    row: u32,
    col: u16,
    cell: Cell,
    grade: bool,
) -> Result<()> {
    match cell {
        Cell::Empty => {}
        Cell::Number(v, k) => {
            let fmt = match k {
                Kind::Integer => &f.integer,
                Kind::Decimal => &f.decimal,
                Kind::Percent => &f.percent,
                Kind::Date => &f.date,
                Kind::DateTime => &f.datetime,
            };
            ws.write_number_with_format(row, col, v, fmt)?;
        }
        Cell::Bool(b) => {
            ws.write_boolean(row, col, b)?;
        }
        Cell::Text(s) => match grade
            .then(|| f.grades.iter().find(|(g, _)| *g == s))
            .flatten()
        {
            Some((_, fmt)) => {
                ws.write_string_with_format(row, col, &s, fmt)?;
            }
            None => {
                ws.write_string(row, col, &s)?;
            }
        },
    }
    Ok(())
}

/// A column's cells.
fn cells(a: &dyn Array, share: bool) -> Result<Vec<Cell>> {
    macro_rules! numbers {
        ($t:ty, $k:expr) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|v| v.map_or(Cell::Empty, |v| Cell::Number(v as f64, $k)))
                .collect()
        };
    }
    let float = if share { Kind::Percent } else { Kind::Decimal };
    Ok(match a.data_type() {
        DataType::Int8 => numbers!(Int8Type, Kind::Integer),
        DataType::Int16 => numbers!(Int16Type, Kind::Integer),
        DataType::Int32 => numbers!(Int32Type, Kind::Integer),
        DataType::Int64 => numbers!(Int64Type, Kind::Integer),
        DataType::UInt8 => numbers!(UInt8Type, Kind::Integer),
        DataType::UInt16 => numbers!(UInt16Type, Kind::Integer),
        DataType::UInt32 => numbers!(UInt32Type, Kind::Integer),
        DataType::UInt64 => numbers!(UInt64Type, Kind::Integer),
        DataType::Float32 => numbers!(Float32Type, float),
        DataType::Float64 => numbers!(Float64Type, float),
        DataType::Boolean => a
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Cell::Empty, Cell::Bool))
            .collect(),
        DataType::Date32 => a
            .as_primitive::<Date32Type>()
            .iter()
            .map(|v| {
                v.map_or(Cell::Empty, |d| {
                    Cell::Number(d as f64 + EXCEL_UNIX_DAYS, Kind::Date)
                })
            })
            .collect(),
        DataType::Timestamp(unit, tz) => {
            let (values, per_second): (Vec<Option<i64>>, f64) = match unit {
                TimeUnit::Second => (
                    a.as_primitive::<TimestampSecondType>().iter().collect(),
                    1.0,
                ),
                TimeUnit::Millisecond => (
                    a.as_primitive::<TimestampMillisecondType>()
                        .iter()
                        .collect(),
                    1e3,
                ),
                TimeUnit::Microsecond => (
                    a.as_primitive::<TimestampMicrosecondType>()
                        .iter()
                        .collect(),
                    1e6,
                ),
                TimeUnit::Nanosecond => (
                    a.as_primitive::<TimestampNanosecondType>().iter().collect(),
                    1e9,
                ),
            };
            let shift = if tz.is_some() { CST_SECONDS } else { 0.0 };
            values
                .into_iter()
                .map(|v| {
                    v.map_or(Cell::Empty, |v| {
                        let serial = (v as f64 / per_second + shift) / 86_400.0 + EXCEL_UNIX_DAYS;
                        Cell::Number(serial, Kind::DateTime)
                    })
                })
                .collect()
        }
        _ => {
            // Text, and anything else as its display form.
            let text = arrow::util::display::ArrayFormatter::try_new(
                a,
                &arrow::util::display::FormatOptions::default(),
            )?;
            (0..a.len())
                .map(|i| {
                    if a.is_valid(i) {
                        Cell::Text(text.value(i).to_string())
                    } else {
                        Cell::Empty
                    }
                })
                .collect()
        }
    })
}
