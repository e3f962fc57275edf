//! `gridlens-bench`: times whole jobs and reports them as JSON, with peak memory.
//!
//! ```text
//! gridlens-bench generate --scale 1.0 --out /data/city1   # time and peak memory of the generator
//! gridlens-bench load --data /data/city1                   # load time, store size, peak memory
//! gridlens-bench sweep --data /data/city1 --repeat 5       # full sweep and each rule, medians
//! ```

use anyhow::Result;
use clap::{Parser, Subcommand};
use gridlens_benches::{median, peak_rss, reset_peak, rss};
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::rules::{Params, RuleId, sweep};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "gridlens-bench", about = "Times gridlens jobs and prints JSON")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a city (Parquet) and report time and peak memory.
    Generate {
        #[arg(long)]
        scale: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Load a city and report time, store size and peak memory.
    Load {
        #[arg(long)]
        data: PathBuf,
    },
    /// Load a city, then sweep it `repeat` times; report medians per rule and in all, the peak
    /// memory of the sweep, and write the anomalies (rule, subject_id, grid_code) as CSV.
    Sweep {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[arg(long)]
        anomalies: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Generate { scale, seed, out } => {
            let t = Instant::now();
            let s = gridlens_datasets::generate(&gridlens_datasets::GenerateOptions::new(
                scale, seed, &out,
            ))?;
            let rows: u64 = s.rows.iter().map(|r| r.1).sum();
            println!(
                "{}",
                json!({"job": "generate", "scale": scale, "seconds": t.elapsed().as_secs_f64(),
                       "rows": rows, "tables": s.rows, "peak_rss_bytes": peak_rss()})
            );
        }
        Cmd::Load { data } => {
            let t = Instant::now();
            let store = load(&data, &LoadOptions::default())?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"job": "load", "seconds": secs, "rows": store.report.loaded(),
                       "rejected": store.report.rejected(), "store_bytes": store.memory(),
                       "rss_bytes": rss(), "peak_rss_bytes": peak_rss()})
            );
        }
        Cmd::Sweep {
            data,
            repeat,
            anomalies,
        } => {
            let store = load(&data, &LoadOptions::default())?;
            let after_load = rss();
            reset_peak();
            let params = Params::default();
            let mut totals = Vec::new();
            let mut per_rule: Vec<Vec<f64>> = vec![Vec::new(); 12];
            let mut last = None;
            for _ in 0..repeat.max(1) {
                let s = sweep(&store, store.as_of, &[], &params)?;
                totals.push(s.seconds);
                for r in &s.runs {
                    per_rule[r.rule as usize].push(r.seconds);
                }
                last = Some(s);
            }
            let s = last.ok_or_else(|| anyhow::anyhow!("no sweep"))?;
            if let Some(path) = anomalies {
                let grids = store
                    .table(gridlens_engine::contract::TableId::Grids)
                    .strings("grid_code")?;
                let mut w = csv::Writer::from_path(&path)?;
                w.write_record(["rule", "subject_id", "grid_code"])?;
                for a in &s.anomalies {
                    w.write_record([a.rule.code(), &a.subject_id, grids.value(a.grid as usize)])?;
                }
                w.flush()?;
            }
            let rules: Vec<_> = RuleId::ALL
                .iter()
                .map(|r| {
                    let mut v = per_rule[*r as usize].clone();
                    json!({"rule": r.code(), "found": s.runs.iter().find(|x| x.rule == *r).map(|x| x.count), "median_seconds": median(&mut v)})
                })
                .collect();
            println!(
                "{}",
                json!({"job": "sweep", "repeat": repeat, "median_seconds": median(&mut totals),
                       "anomalies": s.anomalies.len(), "rules": rules,
                       "rss_after_load_bytes": after_load, "peak_rss_during_sweep_bytes": peak_rss()})
            );
        }
    }
    Ok(())
}
