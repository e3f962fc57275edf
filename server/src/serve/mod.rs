//! The query API (tokio + axum), with per-person tokens, scopes, masking, limits, an audit log
//! and Prometheus metrics. The endpoints are in [`api`].
//!
//! [`App::open`] makes everything the endpoints share from a plain [`Config`] (no command line
//! here: `gridlens serve` turns its arguments into one), [`router`] is every endpoint on an
//! [`App`] — tested without a socket as well as on a real port — and [`run`] serves it.
//!
//! Queries run on a runtime of their own, so that a heavy query leaves the HTTP side free to
//! answer health checks, KPIs and other callers. The served dataset is swapped whole on a
//! reload (`POST /v1/admin/reload`, SIGHUP); a reload that fails leaves it untouched.

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod ingest;
pub mod observe;
pub mod pg;
pub mod session;
pub mod snapshots;
pub mod sqlout;
pub mod tls;
pub mod web;

use crate::dataset::{self, DataArgs};
use anyhow::{Context, Result};
use auth::{NewToken, Role, TokenFile, Tokens};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use gridlens_engine::city::City;
use gridlens_engine::contract::TableId;
use gridlens_engine::rules::Sweep;
use gridlens_engine::scope::{Scope, View};
use gridlens_engine::sql::SqlEngine;
use gridlens_engine::sql::control::{QueryControl, SqlBounds};
use gridlens_engine::store::Store;
use gridlens_engine::tasks::TaskBook;
use gridlens_engine::time;
use observe::{ApiError, AuditLog, Metrics};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Now, as the state files write it.
pub fn now_text() -> String {
    time::format_timestamp(gridlens_engine::load::now())
}

/// Writes the codes a scope may name in the city served (see [`auth::KNOWN_SCOPES`]).
fn write_known_scopes(state: &std::path::Path, store: &Store) -> Result<()> {
    let grids = store.table(TableId::Grids);
    let mut codes = std::collections::BTreeSet::new();
    for c in [
        "grid_code",
        "community_code",
        "street_code",
        "district_code",
    ] {
        codes.extend(grids.strings(c)?.iter().flatten().map(str::to_string));
    }
    let text: String = codes.into_iter().map(|c| c + "\n").collect();
    std::fs::create_dir_all(state)?;
    let tmp = state.join(format!("{}.tmp", auth::KNOWN_SCOPES));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, state.join(auth::KNOWN_SCOPES))?;
    Ok(())
}

/// How a server runs: what it serves, where it keeps its state, and its limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// The dataset (or the embedded default city).
    pub data: DataArgs,
    /// Address to listen on.
    pub listen: String,
    /// Address the PostgreSQL endpoint listens on (`None`: no PostgreSQL endpoint).
    pub pg_listen: Option<String>,
    /// The TLS certificate chain and private key (PEM) for both endpoints.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The state folder: task lists, the secret, and by default tokens and audit.
    pub state: PathBuf,
    /// The token file.
    pub tokens: PathBuf,
    /// The audit log.
    pub audit: PathBuf,
    /// Time a query may run.
    pub query_timeout: Duration,
    /// Memory a query may use, bytes.
    pub query_memory: usize,
    /// Memory all running queries may use together, bytes.
    pub queries_memory: usize,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Largest body of an ingested batch, bytes.
    pub max_ingest_body: usize,
    /// Time between snapshots after ingested batches (`None`: at start and reload only).
    pub snapshot_every: Option<Duration>,
    /// Queries and sweeps run at once.
    pub max_queries: usize,
    /// Time a query waits for its turn.
    pub queue_wait: Duration,
    /// Queries one token may have running at once.
    pub per_token: usize,
    /// Rows a query returns at most.
    pub max_rows: usize,
    /// Size and nesting of SQL accepted.
    pub sql: SqlBounds,
    /// Open tasks a worker sees at most a day.
    pub daily_limit: usize,
    /// How long a web app session lasts from sign-in.
    pub session_ttl: Duration,
    /// How long a web app session lasts without a request.
    pub session_idle: Duration,
}

impl Config {
    /// The defaults of `gridlens serve`, over a dataset and a state folder.
    pub fn new(data: DataArgs, state: PathBuf) -> Config {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Config {
            data,
            listen: "127.0.0.1:8080".into(),
            pg_listen: None,
            tls: None,
            tokens: state.join("tokens.json"),
            audit: state.join("audit.jsonl"),
            state,
            query_timeout: Duration::from_secs(30),
            query_memory: 2048 << 20,
            queries_memory: 4096 << 20,
            max_body: 1 << 20,
            max_ingest_body: 64 << 20,
            snapshot_every: Some(Duration::from_secs(60)),
            max_queries: 4 * cores,
            queue_wait: Duration::from_secs(10),
            per_token: 2,
            max_rows: 1_000_000,
            sql: SqlBounds::default(),
            daily_limit: 20,
            session_ttl: Duration::from_secs(8 * 3600),
            session_idle: Duration::from_secs(3600),
        }
    }
}

/// The dataset being served.
pub struct Served {
    /// The store.
    pub store: Arc<Store>,
    /// The city: its sweeps, clocks and KPIs.
    pub city: Arc<City>,
    /// Its name.
    pub name: String,
    /// When it was loaded.
    pub loaded_at: String,
    /// Its version: the number of the last ingested batch it holds (0: the dataset alone).
    pub version: u64,
    /// The version of the snapshot it was read from at start, with later batches loaded over
    /// it (`None`: loaded from the dataset).
    pub snapshot: Option<u64>,
}

impl Served {
    /// Rows per loaded table.
    pub fn table_rows(&self) -> Vec<(&'static str, usize)> {
        TableId::ALL
            .iter()
            .map(|&t| (t.name(), self.store.table(t).rows))
            .collect()
    }
}

/// Limits on queries.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time a query may run.
    pub query_timeout: Duration,
    /// Memory a query may use, bytes.
    pub query_memory: usize,
    /// Memory all queries may use together.
    pub shared_memory: Arc<gridlens_engine::sql::memory::SharedMemory>,
    /// Rows a query returns at most.
    pub max_rows: usize,
    /// Time a query waits for its turn.
    pub queue_wait: Duration,
    /// Queries per token at once.
    pub per_token: usize,
    /// Size and nesting of SQL accepted.
    pub sql: SqlBounds,
}

/// Everything the endpoints share.
pub struct App {
    served: RwLock<Arc<Served>>,
    data: DataArgs,
    /// The ingest log: the batches the served city holds on top of its dataset.
    pub log: gridlens_engine::ingest::log::Log,
    /// Tokens.
    pub tokens: Tokens,
    /// The task lists (saved on every change; the SQL `tasks` table reads them here).
    pub tasks: Arc<Mutex<TaskBook>>,
    state_dir: PathBuf,
    audit: AuditLog,
    /// The web app's signed-in browsers.
    pub sessions: session::Sessions,
    /// The dashboards made, per `as_of` and code.
    pub dashboards: dashboard::Cache,
    /// Metrics.
    pub metrics: Metrics,
    /// Limits.
    pub limits: Limits,
    queries: Arc<tokio::sync::Semaphore>,
    per_token: Arc<Mutex<HashMap<String, usize>>>,
    /// Where queries run.
    pub query_rt: tokio::runtime::Handle,
    /// Snapshots of the served city, written in the background.
    pub snapshots: snapshots::Snapshots,
    /// Held while a new version of the city is made (a reload, an ingested batch): one at a
    /// time.
    pub reloading: tokio::sync::Mutex<()>,
    /// Start of the process.
    pub started: Instant,
    /// Sweeps run, for their ids.
    pub sweep_seq: AtomicU64,
    daily_limit: usize,
    /// Largest request body accepted, bytes.
    pub max_body: usize,
    /// Largest ingested batch accepted, bytes.
    pub max_ingest_body: usize,
    /// Places for ingested batches waiting their turn.
    pub ingest_queue: Arc<tokio::sync::Semaphore>,
    /// The state folder's lock, held while the server runs.
    _lock: gridlens_engine::tasks::StateLock,
}

/// A caller's turn to run one query ([`App::sql_turn`]).
pub struct SqlTurn {
    /// The engine, as the caller sees the data.
    pub engine: SqlEngine,
    /// The token's query slot and the server's permit; given back when dropped.
    pub held: (TokenSlot, tokio::sync::OwnedSemaphorePermit),
    /// The query's control: its time limit, and cancellation.
    pub control: Arc<gridlens_engine::sql::control::QueryControl>,
}

/// A running query's place in its token's allowance; released when dropped.
pub struct TokenSlot(Arc<Mutex<HashMap<String, usize>>>, String);

impl Drop for TokenSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.lock()
            && let Some(n) = m.get_mut(&self.1)
        {
            *n = n.saturating_sub(1);
        }
    }
}

impl App {
    /// The dataset served now.
    pub fn served(&self) -> Arc<Served> {
        self.served
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The caller's view of the city served: refused (403) when the token's scope is not a
    /// part of it.
    pub fn view(&self, caller: &api::Caller) -> Result<Arc<View>, ApiError> {
        self.view_of(&self.served(), caller)
    }

    /// The caller's view of a given city.
    pub fn view_of(&self, served: &Served, caller: &api::Caller) -> Result<Arc<View>, ApiError> {
        View::new(served.store.clone(), caller.scope.clone())
            .map(Arc::new)
            .map_err(ApiError::from_engine)
    }

    /// An SQL engine as the caller sees the data.
    pub fn engine(&self, caller: &api::Caller) -> Result<SqlEngine, ApiError> {
        let served = self.served();
        let view = self.view_of(&served, caller)?;
        Ok(SqlEngine::over(served.city.clone())
            .with_view(view)
            .with_task_book(self.tasks.clone())
            .with_memory_limit(Some(self.limits.query_memory))
            .with_shared_memory(Some(self.limits.shared_memory.clone()))
            .with_bounds(self.limits.sql))
    }

    /// The SQL engine of a caller allowed SQL (admin, analyst; 403 for anyone else), as the
    /// caller sees the data.
    pub fn sql_engine(&self, caller: &api::Caller) -> Result<SqlEngine, ApiError> {
        caller.require(&[Role::Admin, Role::Analyst], "SQL")?;
        self.engine(caller)
    }

    /// A caller's turn to run one query, the same for every endpoint that takes SQL (HTTP and
    /// PostgreSQL): the engine ([`App::sql_engine`]), one of the token's query slots (429),
    /// a place among the server's running queries (503 after the queue wait), and a control
    /// with the query time limit.
    pub async fn sql_turn(&self, caller: &api::Caller) -> Result<SqlTurn, ApiError> {
        let engine = self.sql_engine(caller)?;
        let slot = self.token_slot(&caller.token_id)?;
        let permit = self.query_permit().await?;
        Ok(SqlTurn {
            engine,
            held: (slot, permit),
            control: QueryControl::new(Some(self.limits.query_timeout)),
        })
    }

    /// Takes one of the token's query slots, or 429.
    pub fn token_slot(&self, token_id: &str) -> Result<TokenSlot, ApiError> {
        let mut m = self.per_token.lock().map_err(ApiError::internal)?;
        let n = m.entry(token_id.to_string()).or_default();
        if *n >= self.limits.per_token {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "this token already has {} queries running; wait for one to finish",
                    self.limits.per_token
                ),
            ));
        }
        *n += 1;
        Ok(TokenSlot(self.per_token.clone(), token_id.to_string()))
    }

    /// Waits for a turn to run a query or sweep, or 503 when the wait is too long.
    pub async fn query_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(self.limits.queue_wait, self.queries.clone().acquire_owned())
            .await
        {
            Ok(Ok(p)) => Ok(p),
            _ => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server is busy with other queries; try again shortly",
            )),
        }
    }

    /// Applies a full sweep to the task lists and saves them.
    pub fn apply_tasks(
        &self,
        served: &Served,
        sweep: &Sweep,
    ) -> Result<serde_json::Value, ApiError> {
        let t = Instant::now();
        let mut book = self.tasks.lock().map_err(ApiError::internal)?;
        let summary = self.changing_tasks(&mut book, |b| {
            b.apply(&served.store, sweep, &api::task_options(self.daily_limit))
        })?;
        tracing::info!(
            ms = t.elapsed().as_millis() as u64,
            grids = summary.grids_looked_at,
            new = summary.new,
            resolved = summary.resolved_in_data,
            "task lists updated"
        );
        Ok(serde_json::json!({
            "new": summary.new,
            "still_open": summary.still_open,
            "reopened": summary.reopened,
            "resolved_in_data": summary.resolved_in_data,
            "false_alarms_left_closed": summary.suppressed,
            "unassigned": summary.unassigned,
        }))
    }

    /// Changes the task lists and saves the change (see [`change_tasks`]).
    pub fn changing_tasks<T>(
        &self,
        book: &mut TaskBook,
        change: impl FnOnce(&mut TaskBook) -> gridlens_engine::Result<T>,
    ) -> Result<T, ApiError> {
        change_tasks(book, &self.state_dir, change).map_err(ApiError::from_engine)
    }

    /// Refuses (404, as for an unknown worker) a worker outside the caller's scope.
    pub fn check_worker_in_scope(&self, worker_id: &str, view: &View) -> Result<(), ApiError> {
        if view.sees_worker(worker_id) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "there is no worker {worker_id} in this token's scope"
            )))
        }
    }

    /// Loads the dataset again and swaps it in; the served data is untouched on failure.
    pub async fn reload(self: Arc<Self>) -> Result<Arc<Served>, ApiError> {
        let _one_at_a_time = self.reloading.lock().await;
        self.room_for_a_version(None)?;
        let added = self.log.added().map_err(ApiError::internal)?;
        let version = self.log.version().map_err(ApiError::internal)?;
        match self.clone().load_version(added, version, None).await {
            Ok(s) => {
                self.swap(s.clone(), false).await;
                self.snapshots.write(&s, self.segments_of(s.version));
                self.metrics.reloads[0].fetch_add(1, Ordering::Relaxed);
                tracing::info!("reloaded {}", s.name);
                Ok(s)
            }
            Err(e) => {
                self.metrics.reloads[1].fetch_add(1, Ordering::Relaxed);
                let message = self.without_paths(&format!("{e:#}"));
                tracing::error!("reload failed: {e:#}");
                Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "reload_failed",
                    format!("the reload failed and the data served is unchanged: {message}"),
                ))
            }
        }
    }
}

/// Memory a new version of the city needs while the one served is still held: a load of it
/// peaks at about 1.3 times what the loaded city holds, plus room for the answers being served.
pub fn memory_for_a_version(served_bytes: u64) -> u64 {
    served_bytes / 10 * 13 + (1 << 30)
}

impl App {
    /// Refuses (503) to build a new version of the city (a reload, an ingested batch) when the
    /// machine has not the memory to hold it beside the one served: a load past it would be
    /// killed by the system and take the server down with it.
    /// `table`: the table of the batch the version is for (`None`: a reload). Door events are
    /// merged into a copy of the events table beside the served one and the indexes, the rest
    /// of the city shared; any other change may load the city again.
    pub fn room_for_a_version(&self, table: Option<TableId>) -> Result<(), ApiError> {
        let store = self.served().store.clone();
        let held = store.memory() as u64;
        let need = match table {
            Some(TableId::AccessEvents) => memory_for_a_version(
                (store.table(TableId::AccessEvents).memory() + store.indexes.memory()) as u64,
            ),
            _ => memory_for_a_version(held),
        };
        match observe::available_memory() {
            Some(free) if free < need => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "insufficient_memory",
                format!(
                    "a new version of the city needs about {:.1} GiB beside the {:.1} GiB served, \
                     and the machine has {:.1} GiB free; nothing was changed",
                    need as f64 / f64::from(1 << 30),
                    held as f64 / f64::from(1 << 30),
                    free as f64 / f64::from(1 << 30)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Loads a version of the city: the dataset with the given ingested batches on top, swept
    /// and warmed (not yet served). The caller holds [`App::reloading`].
    /// With `changed`, the version after a batch over the served one: only the tables the batch
    /// reaches are loaded again, the rest shared, and the rules run again only where it touched.
    pub async fn load_version(
        self: Arc<Self>,
        added: Vec<gridlens_engine::load::Added>,
        version: u64,
        changed: Option<Change>,
    ) -> Result<Arc<Served>> {
        let data = self.data.clone();
        let state = self.state_dir.clone();
        let s = tokio::task::spawn_blocking(move || {
            load_served(&data, &state, &added, version, changed.as_ref())
        })
        .await??;
        Ok(Arc::new(s))
    }

    /// Serves a new version of the city from now on: requests that began on the old one finish
    /// on it, and it is freed after the last. A snapshot being written of it is stopped first,
    /// unless `shares` says the new version shares all but a table or two with it (door events
    /// merged in): the snapshot then goes on, holding only what the two do not share, so that
    /// a steady stream of batches does not stop every snapshot.
    pub async fn swap(self: &Arc<Self>, s: Arc<Served>, shares: bool) {
        if !shares {
            let app = self.clone();
            let _ = tokio::task::spawn_blocking(move || app.snapshots.stop()).await;
        }
        let replaced = match self.served.write() {
            Ok(mut w) => Some(std::mem::replace(&mut *w, s)),
            Err(_) => None,
        };
        if !shares {
            // A snapshot the timer began of the old version since the stop above.
            let app = self.clone();
            let _ = tokio::task::spawn_blocking(move || app.snapshots.stop()).await;
        }
        // The version replaced is freed (when no request holds it any more) on a thread of its
        // own: its findings and caches take a while to free, and the batch's answer need not
        // wait for that.
        tokio::task::spawn_blocking(move || drop(replaced));
        // What is free now goes back to the system; but the events columns a merge replaced
        // stay in the process for the next merge to reuse: memory handed back would have to be
        // zeroed page by page by the system again (half the time of a merge at scale 1.0).
        if !shares {
            tokio::task::spawn_blocking(gridlens_engine::memory::release_freed_memory);
        }
    }

    /// The names of the log's segments up to a version (what a snapshot of it folds).
    pub fn segments_of(&self, version: u64) -> Vec<String> {
        self.log
            .segments()
            .map(|s| {
                s.iter()
                    .filter(|s| s.seq <= version)
                    .map(|s| s.name())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A message with the server's own paths taken out: files named relative to the dataset
    /// or state folder.
    pub fn without_paths(&self, message: &str) -> String {
        let mut message = message.to_string();
        let dirs = self.data.data.iter().map(|d| (d, "the dataset folder"));
        for (dir, what) in dirs.chain([(&self.state_dir, "the state folder")]) {
            let prefix = format!("{}/", dir.display());
            message = message.replace(&prefix, "");
            message = message.replace(&dir.display().to_string(), what);
        }
        message
    }
}

/// A batch over the served version, for [`App::load_version`].
pub struct Change {
    /// The version served.
    pub served: Arc<Served>,
    /// The batch's table.
    pub table: TableId,
    /// The batch's rows that may be written (before the loader's checks).
    pub rows: Arc<gridlens_engine::ingest::Rows>,
}

/// Loads the dataset (or generates the default city) with the ingested batches on top, and
/// warms the caches the KPIs use.
fn load_served(
    data: &DataArgs,
    state: &std::path::Path,
    added: &[gridlens_engine::load::Added],
    version: u64,
    changed: Option<&Change>,
) -> Result<Served> {
    let t = Instant::now();
    let store = Arc::new(match changed {
        Some(c) => dataset::load_store_next(data, added, &c.served.store, c.table)?,
        None => dataset::load_store_with(data, added)?,
    });
    tracing::info!(
        version,
        ms = t.elapsed().as_millis() as u64,
        "version {}",
        if changed.is_some() {
            "made over the served one"
        } else {
            "loaded"
        }
    );
    served_from(data, state, store, version, changed, false)
}

/// Changes the task lists and saves the change; when either fails (but for a request at fault,
/// which changes nothing), the lists are read again from the state folder `state` (the last
/// save) and the error returned.
fn change_tasks<T>(
    book: &mut TaskBook,
    state: &std::path::Path,
    change: impl FnOnce(&mut TaskBook) -> gridlens_engine::Result<T>,
) -> gridlens_engine::Result<T> {
    let result = match change(book) {
        // A request at fault changed nothing.
        Err(e @ gridlens_engine::Error::Param { .. }) => return Err(e),
        r => r.and_then(|t| book.save().map(|()| t)),
    };
    if let Err(e) = &result {
        tracing::error!("the task lists were not changed: {e}");
        if let Ok(b) = TaskBook::open(state) {
            *book = b;
        }
    }
    result
}

/// A loaded version made ready to serve: its known scopes written, its sweep (incremental
/// after a batch), SLA clocks and grid counts worked out (`at_start`: the sweep, the clocks
/// and the grid counts beside the first requests).
fn served_from(
    data: &DataArgs,
    state: &std::path::Path,
    store: Arc<Store>,
    version: u64,
    changed: Option<&Change>,
    at_start: bool,
) -> Result<Served> {
    // The grids' codes change only with the grids.
    if changed.is_none_or(|c| {
        gridlens_engine::load::tables_to_reload(&[c.table]).contains(&TableId::Grids)
    }) {
        write_known_scopes(state, &store)
            .with_context(|| format!("writing {} in {}", auth::KNOWN_SCOPES, state.display()))?;
    }
    let city = Arc::new(City::new(store.clone()));
    // The latest sweep, the SLA clocks and the grid counts at the dataset's as_of: the first
    // KPI request is then as fast as the rest.
    let t = Instant::now();
    match changed {
        Some(c) => {
            city.sweep_after(&c.served.city, c.table, &c.rows)?;
        }
        // At start the sweep is worked out beside the first requests, as the clocks below: a
        // request that reads the anomalies (or the task lists, which follow them) waits for
        // it; the rest are answered at once.
        None if at_start => {
            let c = city.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                match c.latest() {
                    Ok(sweep) => {
                        c.set_latest(sweep);
                        tracing::info!("anomalies ready in {:.1} s", t.elapsed().as_secs_f64())
                    }
                    Err(e) => tracing::error!("the anomalies could not be worked out: {e}"),
                }
            });
        }
        None => {
            let sweep = city.sweep(store.as_of, &[])?;
            city.set_latest(sweep);
        }
    };
    let swept = t.elapsed();
    // The indexes built on first use (identity numbers, which door events merged into this
    // version look up; the tables' keys, after a snapshot), built on a thread of their own
    // beside the first requests, which wait for one only when they need it (a version made by
    // a merge has them already).
    if store.has_deferred() {
        let warm = store.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            warm.build_deferred();
            tracing::debug!(ms = t.elapsed().as_millis() as u64, "key indexes ready");
        });
    }
    match changed {
        Some(c) => {
            city.grid_counts_after(&c.served.city, c.table)?;
        }
        // At start nothing is served yet: the clocks and grid counts are worked out beside the
        // first requests (a KPI request meanwhile waits for them), not before them.
        None if at_start => {
            let c = city.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                match c.grid_counts(c.store().as_of) {
                    Ok(_) => tracing::info!(
                        "clocks and grid KPIs ready in {:.1} s",
                        t.elapsed().as_secs_f64()
                    ),
                    Err(e) => tracing::error!("the grid KPIs could not be worked out: {e}"),
                }
            });
        }
        None => {
            city.grid_counts(store.as_of)?;
        }
    };
    tracing::info!(
        sweep_ms = swept.as_millis() as u64,
        "version ready to serve in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let name = store
        .manifest
        .name
        .clone()
        .unwrap_or_else(|| match &data.data {
            Some(d) => d
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| d.display().to_string()),
            None => "default city".to_string(),
        });
    Ok(Served {
        store,
        city,
        name,
        loaded_at: now_text(),
        version,
        snapshot: None,
    })
}

impl App {
    /// Makes everything the endpoints share: the token file (with an admin token made if it has
    /// none: returned, to be shown once), the state folder's lock and task lists, the served
    /// city (loaded, swept, its known scopes written), the audit log. Queries run on
    /// `query_rt`.
    pub fn open(
        config: &Config,
        query_rt: tokio::runtime::Handle,
    ) -> Result<(App, Option<String>)> {
        let mut file = TokenFile::load(&config.tokens)?;
        let mut made = None;
        if !file.has_admin() {
            let (token, e) = file.issue(
                NewToken {
                    name: "admin".into(),
                    role: Role::Admin,
                    scope: Scope::full(),
                    worker_id: None,
                },
                &now_text(),
            )?;
            file.save(&config.tokens)?;
            made = Some(format!(
                "created the admin token {} in {} (shown this once; keep it secret):\n{token}",
                e.id,
                config.tokens.display()
            ));
        }
        let lock = TaskBook::lock(&config.state)
            .with_context(|| format!("the state folder {} is in use", config.state.display()))?;
        // The task lists are read (≈ 0.5 s for 150,000 tasks) beside the city's load.
        let opening = {
            let dir = config.state.clone();
            std::thread::spawn(move || TaskBook::open(&dir))
        };
        let mut data = config.data.clone();
        if data.data.is_none() {
            data.data = Some(dataset::keep_default_city(&config.state)?);
        }
        let log = gridlens_engine::ingest::log::Log::open(&config.state)?;
        let t = Instant::now();
        let (store, snapshot) = dataset::load_store_at_start(&data, &config.state, &log)?;
        let mut served = served_from(
            &data,
            &config.state,
            Arc::new(store),
            log.version()?,
            None,
            true,
        )?;
        served.snapshot = snapshot;
        let served = Arc::new(served);
        tracing::info!(
            "serving version {} {} after {:.1} s",
            served.version,
            match snapshot {
                Some(v) => format!("from the snapshot of version {v}"),
                None => "from the dataset".to_string(),
            },
            t.elapsed().as_secs_f64()
        );
        if served.version > 0 {
            tracing::info!(
                "{} ingested batches replayed; serving version {} after {:.1} s",
                log.segments()?.len(),
                served.version,
                t.elapsed().as_secs_f64()
            );
        }
        // A city with ingested batches: the task lists follow its sweep (a crash may have come
        // between a batch's commit and its sweep reaching the lists). Applied beside the first
        // requests, by a thread holding the book from before anything is served: whatever reads
        // the lists (the task endpoints, the SQL `tasks` table) waits for it.
        let book = opening
            .join()
            .map_err(|_| anyhow::anyhow!("reading the task lists failed"))??;
        let has_runs = book.has_runs();
        let tasks = Arc::new(Mutex::new(book));
        if !has_runs || served.version > 0 {
            let (taken, lock_taken) = std::sync::mpsc::channel();
            let (lists, served, opts, dir) = (
                tasks.clone(),
                served.clone(),
                api::task_options(config.daily_limit),
                config.state.clone(),
            );
            std::thread::spawn(move || {
                let Ok(mut book) = lists.lock() else {
                    let _ = taken.send(());
                    return;
                };
                let _ = taken.send(());
                let t = Instant::now();
                let applied = change_tasks(&mut book, &dir, |b| {
                    let sweep = served.city.latest()?;
                    b.apply(&served.store, &sweep, &opts)
                });
                match applied {
                    Ok(_) => {
                        tracing::info!(ms = t.elapsed().as_millis() as u64, "task lists updated")
                    }
                    Err(e) => {
                        tracing::error!("the task lists could not follow the city served: {e}")
                    }
                }
            });
            let _ = lock_taken.recv();
        }
        let app = App {
            served: RwLock::new(served.clone()),
            data: data.clone(),
            log,
            tokens: Tokens::new(config.tokens.clone())?,
            tasks,
            state_dir: config.state.clone(),
            audit: AuditLog::open(&config.audit)?,
            metrics: Metrics::default(),
            limits: Limits {
                query_timeout: config.query_timeout,
                query_memory: config.query_memory,
                shared_memory: gridlens_engine::sql::memory::SharedMemory::new(
                    config.queries_memory,
                ),
                max_rows: config.max_rows,
                queue_wait: config.queue_wait,
                per_token: config.per_token,
                sql: config.sql,
            },
            queries: Arc::new(tokio::sync::Semaphore::new(config.max_queries)),
            per_token: Arc::default(),
            query_rt,
            reloading: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            sweep_seq: AtomicU64::new(0),
            daily_limit: config.daily_limit,
            sessions: session::Sessions::new(
                config.session_ttl,
                config.session_idle,
                config.tls.is_some(),
            ),
            dashboards: dashboard::Cache::default(),
            max_body: config.max_body,
            max_ingest_body: config.max_ingest_body,
            ingest_queue: Arc::new(tokio::sync::Semaphore::new(ingest::INGEST_WAITING)),
            snapshots: snapshots::Snapshots::new(
                data.clone(),
                config.state.clone(),
                config.snapshot_every,
            ),
            _lock: lock,
        };
        match snapshot {
            Some(v) if v == served.version => app.snapshots.mark(v),
            _ => app
                .snapshots
                .write(&served, app.segments_of(served.version)),
        }
        Ok((app, made))
    }
}

/// Serves a configuration until SIGINT / SIGTERM: loads the city, prints the admin token if one
/// was made and the address, and answers on it.
pub fn run(config: Config) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let query_rt =
        gridlens_engine::sql::query_runtime(Some(cores)).context("starting the query runtime")?;
    let (app, made) = App::open(&config, query_rt.handle().clone())?;
    if let Some(text) = made {
        println!("{text}");
    }
    let http_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("gridlens-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let result = http_rt.block_on(serve(Arc::new(app), &config));
    query_rt.shutdown_background();
    result
}

/// The router of every endpoint.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.max_body;
    Router::new()
        .route("/v1/health", get(api::health))
        .route("/v1/tables", get(api::tables))
        .route("/v1/sql", post(api::sql))
        .route("/v1/kpis/grids", get(api::kpi_grids))
        .route("/v1/kpis/incidents", get(api::kpi_incidents))
        .route("/v1/sweeps", post(api::sweeps))
        .route("/v1/tasks", get(api::tasks))
        .route("/v1/tasks/{task_id}/close", post(api::close_task))
        .route("/v1/metrics", get(api::metrics))
        .route("/v1/admin/reload", post(api::reload))
        .route(
            "/v1/ingest/{table}",
            post(ingest::ingest).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/openapi.json", get(api::openapi))
        .route(
            "/v1/session",
            post(session::sign_in)
                .get(session::current)
                .delete(session::sign_out),
        )
        .route("/v1/dashboard", get(dashboard::dashboard))
        .route("/", get(web::page))
        .route("/assets/{*path}", get(web::page))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        // A handler that panics answers 500 (and is logged and audited); the server goes on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            observe::panicked,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            observe::observe,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// Answers on the configuration's addresses (HTTP, and PostgreSQL when it has one) until
/// SIGINT / SIGTERM (SIGHUP reloads).
pub async fn serve(app: Arc<App>, config: &Config) -> Result<()> {
    use axum::serve::ListenerExt;
    let listen = &config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen there"))?;
    let addr = listener.local_addr()?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    if let Some(pg_listen) = &config.pg_listen {
        let tls = tls.clone();
        let pg_listener = pg::bind(pg_listen).await?;
        let pg_addr = pg_listener.local_addr()?;
        println!(
            "PostgreSQL clients: postgresql://{}:{}/gridlens (the password is your token{})",
            pg_addr.ip(),
            pg_addr.port(),
            if tls.is_some() {
                ", TLS on"
            } else {
                "; TLS off: loopback only"
            }
        );
        tokio::spawn(pg::serve(app.clone(), pg_listener, tls));
    }
    let served = app.served();
    println!(
        "gridlens is serving {} (as_of {}) on {}://{addr}",
        served.name,
        time::format_timestamp(served.store.as_of),
        if tls.is_some() { "https" } else { "http" }
    );
    println!(
        "the web app: {}://{addr}/ (sign in with your token)",
        if tls.is_some() { "https" } else { "http" }
    );
    drop(served);
    // A snapshot of the served version once the last is old enough, batches or not.
    if let Some(tick) = app.snapshots.tick() {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let version = app.served().version;
                if !app.snapshots.is_stale(version) {
                    continue;
                }
                let segments = app.segments_of(version);
                // Begun while the version is served (the lock held), so that a swap's stop
                // after it catches this snapshot of a version it replaces.
                if let Ok(current) = app.served.read()
                    && current.version == version
                {
                    app.snapshots.write_if_stale(&current, segments);
                }
            }
        });
    }
    // SIGHUP reloads the dataset.
    #[cfg(unix)]
    {
        let app = app.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                if let Err(e) = app.clone().reload().await {
                    eprintln!("reload on SIGHUP failed: {}", e.message);
                }
            }
        });
    }
    if let Some(tls) = tls {
        tls::serve_https(listener, tls, router(app), shutdown_signal()).await?;
        eprintln!("gridlens: shut down");
        return Ok(());
    }
    // No Nagle: a small answer's last chunk would otherwise wait for the client's delayed ACK
    // (≈ 40 ms on Linux), a fixed tax on every short query.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY on an accepted connection: {e}");
        }
    });
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    eprintln!("gridlens: shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
