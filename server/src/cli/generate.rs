//! `gridlens generate`: write a synthetic city.

use crate::progress;
use anyhow::{Context, Result};
use gridlens_datasets::{GenerateOptions, OutputFormat};
use gridlens_engine::time;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `gridlens generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the city: 1.0 ≈ Guangzhou (25,000 grids, 16 million people records, 150 million
    /// door events); every row count scales with it.
    #[arg(long, default_value_t = 0.01)]
    scale: f64,
    /// Random seed; the same seed and scale give the same city.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output folder (created; an earlier city in it is replaced).
    #[arg(long)]
    out: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value = "parquet")]
    format: Format,
    /// Also write deliberately bad rows of every kind, and truth/rejects.csv.
    #[arg(long)]
    with_bad_rows: bool,
    /// The dataset's reference instant (manifest.json's as_of), e.g. 2026-11-01 or
    /// 2026-11-01T00:00:00+08:00.
    #[arg(long, default_value = "2026-11-01T00:00:00+08:00")]
    as_of: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Parquet,
    Csv,
}

/// Runs `gridlens generate`.
pub fn run(a: Args) -> Result<ExitCode> {
    let as_of = time::parse_as_of(&a.as_of)
        .map_err(|why| anyhow::anyhow!("--as-of {:?} is {why}", a.as_of))?;
    let mut opts = GenerateOptions::new(a.scale, a.seed, &a.out);
    opts.format = match a.format {
        Format::Parquet => OutputFormat::Parquet,
        Format::Csv => OutputFormat::Csv,
    };
    opts.bad_rows = a.with_bad_rows;
    opts.as_of = as_of;
    let estimate = (a.scale * 214_000_000.0) as u64;
    let bar = progress::rows("generating", Some(estimate.max(1)));
    let b = bar.clone();
    opts.progress = Some(Arc::new(move |n| b.inc(n)));
    let summary = gridlens_datasets::generate(&opts)
        .with_context(|| format!("generating a city into {}", a.out.display()))?;
    bar.finish_and_clear();
    let total: u64 = summary.rows.iter().map(|(_, n)| n).sum();
    println!(
        "wrote a city of {} grids ({} chunks), {} rows, to {} in {:.1} s",
        summary.grids,
        summary.chunks,
        total,
        a.out.display(),
        summary.seconds
    );
    for (t, n) in &summary.rows {
        println!("  {t:<18} {n:>12}");
    }
    let planted: u64 = summary.anomalies.iter().map(|(_, n)| n).sum();
    let near: u64 = summary.near_misses.iter().map(|(_, n)| n).sum();
    println!(
        "planted {planted} anomalies and {near} near-misses (truth/anomalies.csv, truth/near_misses.csv)"
    );
    for (r, n) in &summary.anomalies {
        println!("  {r} {n}");
    }
    if a.with_bad_rows {
        println!("wrote {} bad rows (truth/rejects.csv)", summary.bad_rows);
    }
    Ok(ExitCode::SUCCESS)
}
