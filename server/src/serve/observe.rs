//! Errors as JSON, the audit log (one JSON line per request) and the Prometheus metrics.

use super::App;
use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An error answer: an HTTP status and `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Status.
    pub status: StatusCode,
    /// A short machine-readable code.
    pub code: &'static str,
    /// A sentence a person can act on.
    pub message: String,
}

impl ApiError {
    /// Any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 500, logged; the caller gets no detail.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on the server; the error was logged",
        )
    }

    /// From an engine error: queries and parameters are the caller's to fix (400), a
    /// forbidden statement is 403, a limit 400 with its own code, anything else 500.
    pub fn from_engine(e: gridlens_engine::Error) -> ApiError {
        use gridlens_engine::Error as E;
        match e {
            E::Query(m) => ApiError::new(StatusCode::BAD_REQUEST, "query_error", m),
            E::Param { .. } => ApiError::bad_request(e.to_string()),
            E::Forbidden(m) => ApiError::forbidden(m),
            E::TooComplex(m) => ApiError::new(StatusCode::BAD_REQUEST, "query_too_complex", m),
            E::ResourcesExhausted(m) => ApiError::new(StatusCode::BAD_REQUEST, "memory_limit", m),
            E::Busy(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", m),
            E::Timeout => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the query ran longer than its time limit and was stopped; narrow it (a filter, \
                 a LIMIT) or ask an admin",
            ),
            E::Cancelled => ApiError::new(
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "cancelled",
                "the query was cancelled",
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<gridlens_engine::Error> for ApiError {
    fn from(e: gridlens_engine::Error) -> ApiError {
        ApiError::from_engine(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The answer to a request whose handler panicked: a 500 with no detail (the panic is logged).
pub fn panicked(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    ApiError::internal(format!("a handler panicked: {detail}")).into_response()
}

/// Recorded on an error response, for the audit log.
#[derive(Debug, Clone)]
struct ErrorInfo(&'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut r = (self.status, Json(body)).into_response();
        r.extensions_mut()
            .insert(ErrorInfo(self.code, self.message));
        r
    }
}

/// What the audit log records of one request; handlers fill in what they know.
#[derive(Debug, Default, Serialize, Clone)]
pub struct AuditLine {
    time: String,
    token_id: Option<String>,
    name: Option<String>,
    role: Option<String>,
    scope: Option<String>,
    method: String,
    endpoint: String,
    path: String,
    sql: Option<String>,
    rows: Option<u64>,
    status: u16,
    outcome: String,
    error: Option<String>,
    duration_ms: f64,
}

/// The audit record of a request in progress.
#[derive(Debug, Default)]
pub struct Audit {
    line: Mutex<AuditLine>,
    rows: AtomicU64,
    counted: std::sync::atomic::AtomicBool,
    /// Whether the answer was complete: its last byte sent (set for every whole answer).
    complete: std::sync::atomic::AtomicBool,
}

impl Audit {
    /// Records who is calling.
    pub fn caller(&self, token_id: &str, name: &str, role: &str, scope: &str) {
        if let Ok(mut l) = self.line.lock() {
            l.token_id = Some(token_id.to_string());
            l.name = Some(name.to_string());
            l.role = Some(role.to_string());
            l.scope = Some(scope.to_string());
        }
    }
    /// Records the SQL text.
    pub fn sql(&self, sql: &str) {
        if let Ok(mut l) = self.line.lock() {
            l.sql = Some(sql.to_string());
        }
    }
    /// Records the rows returned so far.
    pub fn rows(&self, n: u64) {
        self.rows.store(n, Ordering::Relaxed);
        self.counted.store(true, Ordering::Relaxed);
    }
    /// Records that the answer failed after it had started.
    pub fn failed_midway(&self, e: &ApiError) {
        if let Ok(mut l) = self.line.lock() {
            l.outcome = e.code.to_string();
            l.error = Some(e.message.clone());
        }
    }
}

/// The audit log file.
#[derive(Debug)]
pub struct AuditLog(Mutex<std::fs::File>);

impl AuditLog {
    /// Appends to a file (created if new).
    pub fn open(path: &Path) -> anyhow::Result<AuditLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("opening the audit log {}: {e}", path.display()))?;
        Ok(AuditLog(Mutex::new(f)))
    }

    fn write(&self, line: &AuditLine) {
        let Ok(mut text) = serde_json::to_string(line) else {
            return;
        };
        text.push('\n');
        if let Ok(mut f) = self.0.lock()
            && let Err(e) = f.write_all(text.as_bytes())
        {
            tracing::error!("writing the audit log: {e}");
        }
    }
}

const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (c, b) in self.counts.iter_mut().zip(BUCKETS) {
            if v <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Counters and histograms, rendered in the Prometheus text format.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    query: Mutex<Histogram>,
    rows: AtomicU64,
    /// Queries running now.
    pub in_flight: AtomicU64,
    /// Reloads that worked / failed.
    pub reloads: [AtomicU64; 2],
    /// Rows ingested and committed, by table.
    ingested: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts rows of a committed ingest batch.
    pub fn ingested(&self, table: &'static str, rows: usize) {
        if let Ok(mut m) = self.ingested.lock() {
            *m.entry(table).or_default() += rows as u64;
        }
    }

    fn record(&self, endpoint: &str, status: u16, seconds: f64, rows: Option<u64>, sql: bool) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((endpoint.to_string(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            l.entry(endpoint.to_string()).or_default().observe(seconds);
        }
        if sql && let Ok(mut q) = self.query.lock() {
            q.observe(seconds);
        }
        if let Some(n) = rows {
            self.rows.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The metrics as Prometheus text.
    pub fn render(&self, dataset_rows: &[(&str, usize)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP gridlens_requests_total HTTP requests answered, by endpoint and status.\n# TYPE gridlens_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((e, s), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "gridlens_requests_total{{endpoint=\"{e}\",status=\"{s}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP gridlens_request_duration_seconds Time to answer a request, until the last byte.\n# TYPE gridlens_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (e, h) in l.iter() {
                h.render(
                    &mut out,
                    "gridlens_request_duration_seconds",
                    &format!("endpoint=\"{e}\""),
                );
            }
        }
        out.push_str("# HELP gridlens_query_duration_seconds Time to run an SQL query and send its rows.\n# TYPE gridlens_query_duration_seconds histogram\n");
        if let Ok(q) = self.query.lock() {
            q.render(&mut out, "gridlens_query_duration_seconds", "");
        }
        let _ = writeln!(
            out,
            "# HELP gridlens_rows_returned_total Rows returned by queries.\n# TYPE gridlens_rows_returned_total counter\ngridlens_rows_returned_total {}",
            self.rows.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gridlens_queries_in_flight Queries running now.\n# TYPE gridlens_queries_in_flight gauge\ngridlens_queries_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP gridlens_reloads_total Dataset reloads, by outcome.\n# TYPE gridlens_reloads_total counter\ngridlens_reloads_total{{outcome=\"ok\"}} {}\ngridlens_reloads_total{{outcome=\"failed\"}} {}",
            self.reloads[0].load(Ordering::Relaxed),
            self.reloads[1].load(Ordering::Relaxed)
        );
        out.push_str("# HELP gridlens_ingested_rows_total Rows ingested and committed, by table.\n# TYPE gridlens_ingested_rows_total counter\n");
        if let Ok(m) = self.ingested.lock() {
            for (t, n) in m.iter() {
                let _ = writeln!(out, "gridlens_ingested_rows_total{{table=\"{t}\"}} {n}");
            }
        }
        if let Some(rss) = resident_memory() {
            let _ = writeln!(
                out,
                "# HELP gridlens_resident_memory_bytes Resident memory of the server process.\n# TYPE gridlens_resident_memory_bytes gauge\ngridlens_resident_memory_bytes {rss}"
            );
        }
        out.push_str("# HELP gridlens_dataset_rows Rows loaded, by table.\n# TYPE gridlens_dataset_rows gauge\n");
        for (t, n) in dataset_rows {
            let _ = writeln!(out, "gridlens_dataset_rows{{table=\"{t}\"}} {n}");
        }
        out
    }
}

/// Resident memory of this process, in bytes (Linux).
pub fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Memory the system can still give (`MemAvailable` of `/proc/meminfo`), bytes.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The audit line and metrics of a request that is not HTTP (a PostgreSQL sign-in or
/// statement), written when the guard is dropped, as the HTTP middleware writes its own: a
/// request whose end is not recorded with [`Audit::finish`] is audited as `abandoned`.
pub fn begin(app: Arc<App>, method: &str, endpoint: &str) -> (Arc<Audit>, AuditGuard) {
    let audit = Arc::new(Audit::default());
    if let Ok(mut l) = audit.line.lock() {
        l.time = gridlens_engine::time::format_timestamp(gridlens_engine::load::now());
        l.method = method.to_string();
        l.path = endpoint.to_string();
        l.endpoint = endpoint.to_string();
        l.outcome = "ok".into();
    }
    let guard = AuditGuard(Finish {
        app,
        audit: audit.clone(),
        start: Instant::now(),
    });
    (audit, guard)
}

/// Writes a non-HTTP request's audit line when dropped ([`begin`]).
pub struct AuditGuard(#[allow(dead_code)] Finish);

impl Audit {
    /// Records how a request that is not HTTP ended: with the status and code the HTTP API
    /// would have answered.
    pub fn finish(&self, outcome: Result<(), &ApiError>) {
        if let Ok(mut l) = self.line.lock() {
            match outcome {
                Ok(()) => l.status = 200,
                Err(e) => {
                    l.status = e.status.as_u16();
                    l.outcome = e.code.to_string();
                    l.error = Some(e.message.clone());
                }
            }
        }
        self.complete.store(true, Ordering::Relaxed);
    }
}

/// Written when the answer's last byte has gone (or the client went away).
struct Finish {
    app: Arc<App>,
    audit: Arc<Audit>,
    start: Instant,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let seconds = self.start.elapsed().as_secs_f64();
        let Ok(mut line) = self.audit.line.lock().map(|l| l.clone()) else {
            return;
        };
        line.duration_ms = (seconds * 1e6).round() / 1e3;
        if !self.audit.complete.load(Ordering::Relaxed) && line.outcome == "ok" {
            // The client went away before the answer was whole (or before there was one).
            line.outcome = "abandoned".into();
        }
        if line.status == 0 {
            line.status = 499;
        }
        if self.audit.counted.load(Ordering::Relaxed) {
            line.rows = Some(self.audit.rows.load(Ordering::Relaxed));
        }
        self.app.metrics.record(
            &line.endpoint,
            line.status,
            seconds,
            line.rows,
            line.sql.is_some(),
        );
        self.app.audit.write(&line);
    }
}

/// Middleware: times every request, and writes its audit line and metrics once its answer is
/// complete, or once the client has gone away (outcome `abandoned`): every request is audited,
/// whatever its end.
pub async fn observe(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let audit = Arc::new(Audit::default());
    if let Ok(mut l) = audit.line.lock() {
        l.time = gridlens_engine::time::format_timestamp(gridlens_engine::load::now());
        l.method = req.method().to_string();
        l.path = req.uri().path().to_string();
        l.endpoint = endpoint;
        l.outcome = "ok".into();
    }
    req.extensions_mut().insert(audit.clone());
    // Written when dropped: after the answer, or when this future is dropped because the
    // client went away first.
    let finish = Finish {
        app,
        audit: audit.clone(),
        start,
    };
    let resp = next.run(req).await;
    if let Ok(mut l) = audit.line.lock() {
        l.status = resp.status().as_u16();
        if let Some(ErrorInfo(code, message)) = resp.extensions().get::<ErrorInfo>() {
            l.outcome = code.to_string();
            l.error = Some(message.clone());
        }
    }
    if axum::body::HttpBody::size_hint(resp.body())
        .exact()
        .is_some()
    {
        // The whole answer is already made: record it now, and keep its Content-Length.
        audit.complete.store(true, Ordering::Relaxed);
        drop(finish);
        return resp;
    }
    // A streamed answer: record it when its last byte has gone (or the client went away).
    let (parts, body) = resp.into_parts();
    let mut inner = body.into_data_stream();
    let mut finish = Some(finish);
    let stream = futures::stream::poll_fn(move |cx| {
        let r = inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(None) = r {
            audit.complete.store(true, Ordering::Relaxed);
            drop(finish.take());
        }
        r
    });
    Response::from_parts(parts, Body::from_stream(stream))
}
