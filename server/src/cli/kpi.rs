//! `gridlens kpi`: grid KPIs at a level, or incident KPIs over groups.

use super::output::{self, Format};
use crate::dataset::{self, DataArgs};
use anyhow::{Result, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use gridlens_engine::city::City;
use gridlens_engine::kpis::{GroupBy, Level};
use gridlens_engine::time;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `gridlens kpi`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Evaluate at this instant (default: the dataset's as_of).
    #[arg(long)]
    as_of: Option<String>,
    /// The state folder of a server: the city as it serves it (the dataset with the batches
    /// ingested into the folder), read without changing the folder.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Grid KPIs rolled up to this level: grid, community, street, district or city.
    #[arg(long, default_value = "grid")]
    level: String,
    /// Only the groups inside this code (a district, street, community or grid code).
    #[arg(long)]
    code: Option<String>,
    /// Incident KPIs instead of grid KPIs.
    #[arg(long)]
    incidents: bool,
    /// Incident KPI groups, comma-separated: grid, community, street, district, city,
    /// department, category, major_class, source, urgency, month (default: the --level).
    #[arg(long)]
    group_by: Option<String>,
    /// Incidents reported at or after this instant (incident KPIs).
    #[arg(long)]
    from: Option<String>,
    /// Incidents reported before this instant (incident KPIs; default: as_of).
    #[arg(long)]
    to: Option<String>,
    /// Where to write the table (.csv, .json, .parquet, .arrow, .xlsx); default: standard
    /// output. An .xlsx of grid KPIs is the leadership workbook: one sheet per level from the
    /// city (or --code) down to --level, each group with its incident KPIs (立案率 … 综合得分,
    /// 等级) and its grid KPIs.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output format (default: from --out's extension, else a text table).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

fn instant(name: &str, s: &Option<String>) -> Result<Option<i64>> {
    s.as_deref()
        .map(|v| {
            time::parse_as_of(v).map_err(|why| {
                anyhow::anyhow!("--{name} {v:?} is {why} (expected e.g. 2026-01-01)")
            })
        })
        .transpose()
}

/// Runs `gridlens kpi`.
pub fn run(a: Args) -> Result<ExitCode> {
    let format = match (a.format, &a.out) {
        (Some(f), _) => f,
        (None, Some(out)) => Format::from_path(out)?,
        (None, None) => Format::Table,
    };
    let level: Level = a.level.parse()?;
    if !a.incidents && (a.group_by.is_some() || a.from.is_some() || a.to.is_some()) {
        bail!("--group-by, --from and --to are for incident KPIs: add --incidents");
    }
    let (from, to) = (instant("from", &a.from)?, instant("to", &a.to)?);
    let store = dataset::load_store_of_state(&a.data, a.state.as_deref())?;
    let as_of = dataset::as_of(&store, a.as_of.as_deref())?;
    let derived = City::new(Arc::new(store));
    let started = std::time::Instant::now();
    let batch = if a.incidents {
        let groups = match &a.group_by {
            Some(g) => GroupBy::parse_list(g)?,
            None if level == Level::City => Vec::new(),
            None => vec![GroupBy::Level(level)],
        };
        let b = derived.incident_kpis(as_of, groups.clone(), from, to, None)?;
        match &a.code {
            Some(code) => filter_code(&b, &groups, code)?,
            None => b,
        }
    } else {
        derived.grid_kpis(as_of, level, a.code.as_deref())?
    };
    let seconds = started.elapsed().as_secs_f64();
    if format == Format::Xlsx && !a.incidents {
        let sheets = leadership(&derived, as_of, level, a.code.as_deref())?;
        let refs: Vec<(&str, &[RecordBatch], SchemaRef)> = sheets
            .iter()
            .map(|(n, b)| (n.as_str(), std::slice::from_ref(b), b.schema()))
            .collect();
        let bytes = crate::xlsx::workbook(&refs)?;
        match &a.out {
            Some(path) => {
                output::write_bytes(path, &bytes)?;
                eprintln!(
                    "a workbook of {} sheets ({}), written to {}",
                    sheets.len(),
                    sheets
                        .iter()
                        .map(|(n, b)| format!("{n}: {} rows", b.num_rows()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    path.display()
                );
            }
            None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    match &a.out {
        Some(path) => {
            output::write_file(path, std::slice::from_ref(&batch), batch.schema(), format)?;
            eprintln!(
                "{} rows in {seconds:.3} s, written to {}",
                batch.num_rows(),
                path.display()
            );
        }
        None => {
            output::write_to(
                std::io::stdout(),
                std::slice::from_ref(&batch),
                batch.schema(),
                format,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The leadership workbook's sheets: per level from the top (the city, or `code`'s level) down
/// to `finest`, each group's incident KPIs followed by its grid KPIs.
fn leadership(
    city: &City,
    as_of: i64,
    finest: Level,
    code: Option<&str>,
) -> Result<Vec<(String, RecordBatch)>> {
    let top = code.and_then(Level::of_code).unwrap_or(Level::City);
    let mut sheets = Vec::new();
    for level in Level::ALL.into_iter().rev() {
        if level > top || level < finest {
            continue;
        }
        let groups = if level == Level::City {
            Vec::new()
        } else {
            vec![GroupBy::Level(level)]
        };
        let incidents = city.incident_kpis(as_of, groups, None, None, code.map(str::to_string))?;
        let grids = city.grid_kpis(as_of, level, code)?;
        sheets.push((
            sheet_name(level).to_string(),
            joined(&incidents, &grids, level)?,
        ));
    }
    Ok(sheets)
}

/// A level's sheet name.
fn sheet_name(level: Level) -> &'static str {
    match level {
        Level::City => "市",
        Level::District => "区",
        Level::Street => "街道",
        Level::Community => "社区",
        Level::Grid => "网格",
    }
}

/// Grid KPIs (code first) with each code's incident KPIs beside them (null where a code had
/// no incidents).
fn joined(incidents: &RecordBatch, grids: &RecordBatch, level: Level) -> Result<RecordBatch> {
    use arrow::array::{Array, StringArray, UInt32Array};
    let text = |b: &RecordBatch, i: usize| -> Result<StringArray> {
        b.column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("a KPI code column is not text"))
    };
    let codes = text(grids, grids.schema().index_of("code")?)?;
    // The city's incident KPIs are one row without a group column.
    let at: std::collections::HashMap<String, u32> = if level == Level::City {
        (0..codes.len())
            .map(|i| (codes.value(i).to_string(), 0))
            .collect()
    } else {
        let inc = text(incidents, 0)?;
        (0..inc.len())
            .filter(|&i| !inc.is_null(i))
            .map(|i| (inc.value(i).to_string(), i as u32))
            .collect()
    };
    let take: UInt32Array = (0..codes.len())
        .map(|i| at.get(codes.value(i)).copied())
        .collect();
    let skip = usize::from(level != Level::City);
    let mut fields = vec![grids.schema().field(1).clone()];
    let mut columns = vec![grids.column(1).clone()];
    for i in skip..incidents.num_columns() {
        let f = incidents.schema().field(i).clone().with_nullable(true);
        fields.push(f);
        columns.push(arrow::compute::take(incidents.column(i), &take, None)?);
    }
    for i in 2..grids.num_columns() {
        fields.push(grids.schema().field(i).clone());
        columns.push(grids.column(i).clone());
    }
    Ok(RecordBatch::try_new(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )?)
}

/// Keeps the incident KPI rows whose grid-hierarchy group column lies inside `code`.
fn filter_code(
    b: &arrow::array::RecordBatch,
    groups: &[GroupBy],
    code: &str,
) -> Result<arrow::array::RecordBatch> {
    let Some(col) = groups.iter().position(|g| matches!(g, GroupBy::Level(_))) else {
        bail!("--code needs a grid, community, street or district group in --group-by");
    };
    let codes = b
        .column(col)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .ok_or_else(|| anyhow::anyhow!("group column is not text"))?;
    let keep: arrow::array::BooleanArray = codes
        .iter()
        .map(|c| Some(c.is_some_and(|c| c.starts_with(code) || code.starts_with(c))))
        .collect();
    Ok(arrow::compute::filter_record_batch(b, &keep)?)
}
