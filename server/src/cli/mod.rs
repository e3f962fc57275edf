//! The command line: one subcommand per job, each in its own module.

mod check;
mod generate;
mod import;
mod ingest;
mod kpi;
mod output;
pub mod serve;
mod sql;
mod sweep;
mod tasks;
pub mod token;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// gridlens: cross-match a city's population, housing and door-access records, find what the
/// records get wrong, and report incident SLAs and per-grid KPIs.
#[derive(Debug, Parser)]
#[command(name = "gridlens", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a synthetic city dataset, with manifest.json and the planted ground truth.
    Generate(generate::Args),
    /// Turn another system's export into a dataset folder (--from la311: the Los Angeles 311
    /// service-request log).
    Import(import::Args),
    /// Load a dataset and print the load report (exit 1 if any row was rejected, 2 if the load
    /// failed). Without --data, checks a small city generated on the spot.
    Check(check::Args),
    /// Run the cross-matching rules and write the anomalies (csv / json / parquet by extension);
    /// prints the count per rule and the time taken.
    Sweep(sweep::Args),
    /// Add a file of rows (CSV, NDJSON or Arrow IPC) to a state folder's ingest log, checked
    /// by the loader's rules: what POST /v1/ingest/{table} does, without a running server.
    Ingest(ingest::Args),
    /// Run a sweep and update the grid workers' persistent task lists; or close a task
    /// (--close ID --outcome …), or show a worker's list (--show WORKER_ID).
    Tasks(tasks::Args),
    /// Run one read-only SQL query over the loaded tables, the anomalies, the SLA stages and
    /// the KPIs; prints a table, or writes csv / json / parquet / arrow.
    Sql(sql::Args),
    /// Write KPI tables: grid KPIs at a level (grid, community, street, district, city), or
    /// incident KPIs (--incidents) over any grouping.
    Kpi(kpi::Args),
    /// Serve the query API over HTTP: SQL, KPIs, sweeps, task lists, metrics; per-person
    /// tokens with roles, scopes and masking. Without --data, serves a small default city.
    Serve(serve::Args),
    /// Manage the API's per-person tokens: add (prints the token once), list, revoke.
    Token(token::TokenArgs),
}

/// Parses the command line and runs it; errors are printed as one sentence.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Import(a) => import::run(a),
        Command::Check(a) => check::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Ingest(a) => ingest::run(a),
        Command::Tasks(a) => tasks::run(a),
        Command::Sql(a) => sql::run(a),
        Command::Kpi(a) => kpi::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Token(a) => token::token(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GRIDLENS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
