//! `gridlens ingest`: add a file of rows to a state folder's ingest log, checked by the loader's
//! rules against the city with every earlier batch — what `POST /v1/ingest/{table}` does, for a
//! server that is not running.

use crate::dataset::{self, DataArgs};
use crate::serve::ingest::rejects_of;
use anyhow::{Context, Result, bail};
use gridlens_engine::ingest::log::Log;
use gridlens_engine::ingest::{self, Format, Rows};
use gridlens_engine::tasks::TaskBook;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridlens ingest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// The server's state folder, whose ingest log takes the rows.
    #[arg(long)]
    state: PathBuf,
    /// The table the rows belong to (appends: access_events, visits, utility_readings, deaths;
    /// upserts by key: people, households, rooms, leases, incidents).
    #[arg(long)]
    table: String,
    /// The rows' format: csv, ndjson or arrow (default: from the file's extension).
    #[arg(long)]
    format: Option<String>,
    /// The file of rows.
    file: PathBuf,
}

/// Runs `gridlens ingest`: exit 0 when every row was accepted, 1 when some were rejected.
pub fn run(a: Args) -> Result<ExitCode> {
    let (table, kind) = ingest::table(&a.table)?;
    let format = match a.format.as_deref() {
        Some(f) => Format::of_name(f)
            .ok_or_else(|| anyhow::anyhow!("--format {f:?} is not one of csv, ndjson, arrow"))?,
        None => Format::of_path(&a.file).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: say --format csv, ndjson or arrow (the name ends in none of .csv, .ndjson, .arrow)",
                a.file.display()
            )
        })?,
    };
    let body = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let what = a.file.display().to_string();
    let rows = Rows::parse(&body, format, &what)?;
    let Some(_lock) = TaskBook::try_lock(&a.state)? else {
        bail!(
            "the state folder {} is in use by a running server; send the rows to its POST /v1/ingest/{} instead",
            a.state.display(),
            table.name()
        );
    };
    let mut data = a.data.clone();
    if data.data.is_none() {
        data.data = Some(dataset::keep_default_city(&a.state)?);
    }
    let log = Log::open(&a.state)?;
    let received = rows.len();
    let (csv, lines) = (rows.to_csv()?, rows.lines());
    let staged = log.stage(table, &csv)?;
    let mut added = log.added()?;
    added.push(staged.added_from(&rows)?);
    let name = staged.segment.name();
    let store = match dataset::load_store_with(&data, &added) {
        Ok(s) => s,
        Err(e) => {
            log.discard(staged);
            return Err(e.context(format!("{what}: the rows were not taken")));
        }
    };
    let sent: Vec<usize> = (0..received).collect();
    let rejects =
        rejects_of(&store, &name, lines, &sent).map_err(|e| anyhow::anyhow!(e.message))?;
    let accepted = received - rejects.len();
    let version = if accepted > 0 {
        Some(log.commit(staged)?.seq)
    } else {
        log.discard(staged);
        None
    };
    println!(
        "{}: {received} rows ({}), {accepted} accepted, {} rejected{}",
        table.name(),
        kind.as_str(),
        rejects.len(),
        match version {
            Some(v) => format!("; the city is now version {v}"),
            None => "; nothing was written".into(),
        }
    );
    for r in &rejects {
        println!(
            "  row {}{}: {} — {}",
            r.row,
            r.column
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
            r.reason,
            r.detail
        );
    }
    Ok(if rejects.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
