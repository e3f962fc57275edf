//! `gridlens sweep`: run the rules and write the anomalies.

use super::output::{self, Format};
use crate::dataset::{self, DataArgs};
use anyhow::Result;
use gridlens_engine::rules::{self, Params, RuleId};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridlens sweep`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Evaluate at this instant (default: the dataset's as_of), e.g. 2026-11-01.
    #[arg(long)]
    as_of: Option<String>,
    /// The state folder of a server: the city as it serves it (the dataset with the batches
    /// ingested into the folder), read without changing the folder.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Rules to run, e.g. R01,R04 (default: all twelve).
    #[arg(long)]
    rules: Option<String>,
    /// A rule parameter, e.g. --param r01_min_nights=4 (repeatable). Parameters: r01_min_nights,
    /// r01_window_days, r02_grace_working_days, r04_absent_days, r04_alive_days, r04_min_age,
    /// r04_max_age, r08_min_kwh, r08_months, r09_min_m2_per_person, r10_hukou_days,
    /// r10_other_days, r11_care_interval_days.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Where to write the anomalies (.csv, .json, .parquet or .arrow).
    #[arg(long)]
    out: PathBuf,
    /// Output format (default: from the file name).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

/// Parses `--param` values.
pub fn parse_params(given: &[String]) -> Result<Params> {
    let mut p = Params::default();
    for kv in given {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--param {kv:?} is not NAME=VALUE"))?;
        p.set(k, v)?;
    }
    Ok(p)
}

/// Runs `gridlens sweep`.
pub fn run(a: Args) -> Result<ExitCode> {
    let format = match a.format {
        Some(f) => f,
        None => Format::from_path(&a.out)?,
    };
    let rules = match &a.rules {
        Some(r) => RuleId::parse_list(r)?,
        None => Vec::new(),
    };
    let params = parse_params(&a.params)?;
    let store = dataset::load_store_of_state(&a.data, a.state.as_deref())?;
    let as_of = dataset::as_of(&store, a.as_of.as_deref())?;
    let sweep = rules::sweep(&store, as_of, &rules, &params)?;
    let batch = sweep.to_batch(&store)?;
    output::write_file(&a.out, std::slice::from_ref(&batch), batch.schema(), format)?;
    println!(
        "swept at {} in {:.3} s: {} anomalies, written to {}",
        gridlens_engine::time::format_timestamp(as_of),
        sweep.seconds,
        sweep.anomalies.len(),
        a.out.display()
    );
    println!("{:<5} {:<24} {:>10} {:>10}", "rule", "name", "found", "ms");
    for r in &sweep.runs {
        println!(
            "{:<5} {:<24} {:>10} {:>10.1}",
            r.rule.code(),
            r.rule.name(),
            r.count,
            r.seconds * 1000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
