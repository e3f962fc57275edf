//! `gridlens sql`: run one query over a dataset.

use super::output::{self, Format};
use crate::dataset::{self, DataArgs};
use anyhow::Result;
use gridlens_engine::sql::SqlEngine;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `gridlens sql`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// The query, e.g. "SELECT grid_code, count(*) FROM anomalies WHERE rule = 'R01' GROUP BY 1".
    query: String,
    /// Evaluate anomalies, SLAs and KPIs at this instant (default: the dataset's as_of).
    #[arg(long)]
    as_of: Option<String>,
    /// The state folder: the `tasks` table, and the batches ingested into it (the city as its
    /// server serves it).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Output format (default: table on the terminal, else from --out's extension).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write the result to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `gridlens sql`.
pub fn run(a: Args) -> Result<ExitCode> {
    let format = match (a.format, &a.out) {
        (Some(f), _) => f,
        (None, Some(out)) => Format::from_path(out)?,
        (None, None) => Format::Table,
    };
    let mut store = dataset::load_store_of_state(&a.data, a.state.as_deref())?;
    store.as_of = dataset::as_of(&store, a.as_of.as_deref())?;
    let engine = SqlEngine::new(Arc::new(store)).with_state_dir(a.state.clone());
    let started = std::time::Instant::now();
    let result = engine.query_blocking(&a.query)?;
    let seconds = started.elapsed().as_secs_f64();
    match &a.out {
        Some(path) => {
            output::write_file(path, &result.batches, result.schema.clone(), format)?;
            eprintln!(
                "{} rows in {:.3} s, written to {}",
                result.rows(),
                seconds,
                path.display()
            );
        }
        None => {
            output::write_to(
                std::io::stdout(),
                &result.batches,
                result.schema.clone(),
                format,
            )?;
            if format == Format::Table {
                eprintln!("{} rows in {:.3} s", result.rows(), seconds);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
