//! `gridlens serve`: its command-line arguments, turned into a [`serve::Config`].

use crate::dataset::DataArgs;
use crate::serve::{self, Config};
use anyhow::Result;
use gridlens_engine::sql::control::SqlBounds;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `gridlens serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Address for PostgreSQL clients (psql, DBeaver, Metabase, Python): `off` for none.
    #[arg(long, default_value = "127.0.0.1:5433")]
    pg_listen: String,
    /// TLS certificate chain (PEM): HTTPS for the API and web app, and TLS for PostgreSQL
    /// clients; with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for both endpoints; with --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The state folder: task lists, and by default the token file and the audit log.
    #[arg(long, default_value = "gridlens-state")]
    state: PathBuf,
    /// The token file (default: STATE/tokens.json), managed with `gridlens token`.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// The audit log, one JSON line per request (default: STATE/audit.jsonl).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Seconds a query may run before it is stopped.
    #[arg(long, default_value_t = 30.0)]
    query_timeout: f64,
    /// MiB of memory a query may use (DataFusion's memory pool) before it is stopped.
    #[arg(long, default_value_t = 2048)]
    query_memory_mb: usize,
    /// MiB of memory all running queries may use together; a query that would go past it
    /// stops with 503 (busy).
    #[arg(long, default_value_t = 4096)]
    queries_memory_mb: usize,
    /// Largest request body accepted, in KiB.
    #[arg(long, default_value_t = 1024)]
    max_body_kb: usize,
    /// Queries and sweeps run at once (default: four per core); more wait in line. Running
    /// queries share the cores in turns of a few milliseconds.
    #[arg(long)]
    max_queries: Option<usize>,
    /// Milliseconds a query waits for its turn before the server answers 503.
    #[arg(long, default_value_t = 10_000)]
    queue_wait_ms: u64,
    /// Queries one token may have running at once; more get 429.
    #[arg(long, default_value_t = 2)]
    per_token_queries: usize,
    /// Most rows one query returns (a query's own "limit" may ask for fewer).
    #[arg(long, default_value_t = 1_000_000)]
    max_rows: usize,
    /// Largest SQL text accepted, in KiB.
    #[arg(long, default_value_t = 64)]
    max_sql_kb: usize,
    /// How deeply a query may nest expressions and subqueries.
    #[arg(long, default_value_t = 256)]
    max_sql_depth: usize,
    /// Largest batch POST /v1/ingest accepts, in MiB.
    #[arg(long, default_value_t = 64)]
    max_ingest_mb: usize,
    /// Seconds between snapshots of the served city after ingested batches (0: only at start
    /// and reload); a version left without one when batches stop gets one once the last is
    /// this old. A restart reads the newest snapshot and loads only the batches after it.
    #[arg(long, default_value_t = 60.0)]
    snapshot_every: f64,
    /// Open tasks a worker sees at most a day.
    #[arg(long, default_value_t = 20)]
    daily_limit: usize,
    /// Minutes a web app session lasts from sign-in.
    #[arg(long, default_value_t = 480.0)]
    session_minutes: f64,
    /// Minutes a web app session lasts without a request.
    #[arg(long, default_value_t = 60.0)]
    session_idle_minutes: f64,
}

impl Args {
    /// The server's configuration.
    pub fn config(&self) -> Config {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Config {
            data: self.data.clone(),
            listen: self.listen.clone(),
            pg_listen: (!self.pg_listen.eq_ignore_ascii_case("off"))
                .then(|| self.pg_listen.clone()),
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
            tokens: super::token::token_path(&self.state, self.tokens.as_ref()),
            audit: self
                .audit
                .clone()
                .unwrap_or_else(|| self.state.join("audit.jsonl")),
            state: self.state.clone(),
            query_timeout: Duration::from_secs_f64(self.query_timeout.max(0.001)),
            query_memory: self.query_memory_mb.max(1) << 20,
            queries_memory: self.queries_memory_mb.max(self.query_memory_mb).max(1) << 20,
            max_body: self.max_body_kb << 10,
            max_ingest_body: self.max_ingest_mb.max(1) << 20,
            snapshot_every: (self.snapshot_every > 0.0)
                .then(|| Duration::from_secs_f64(self.snapshot_every)),
            max_queries: self.max_queries.unwrap_or(4 * cores).max(1),
            queue_wait: Duration::from_millis(self.queue_wait_ms),
            per_token: self.per_token_queries.max(1),
            max_rows: self.max_rows.max(1),
            sql: SqlBounds {
                max_bytes: self.max_sql_kb.max(1) << 10,
                max_depth: self.max_sql_depth.max(8),
            },
            daily_limit: self.daily_limit,
            session_ttl: Duration::from_secs_f64(self.session_minutes.clamp(0.01, 1e6) * 60.0),
            session_idle: Duration::from_secs_f64(
                self.session_idle_minutes.clamp(0.01, 1e6) * 60.0,
            ),
        }
    }
}

/// Runs `gridlens serve`.
pub fn run(a: Args) -> Result<ExitCode> {
    serve::run(a.config())?;
    Ok(ExitCode::SUCCESS)
}
