//! The endpoints of `interfaces.md`, under `/v1`.

use super::App;
use super::auth::Role;
use super::observe::{ApiError, Audit};
use super::sqlout::{Encoder, Format};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gridlens_engine::kpis::{GroupBy, Level};
use gridlens_engine::rules::RuleId;
use gridlens_engine::sql::{Access, SqlEngine};
use gridlens_engine::tasks::{Outcome, Status, TaskOptions};
use gridlens_engine::time;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token id.
    pub token_id: String,
    /// Role.
    pub role: Role,
    /// Scope (`None`: the city).
    pub scope: Option<String>,
    /// The `pii` permission.
    pub pii: bool,
    /// For a worker: their id.
    pub worker_id: Option<String>,
}

impl Caller {
    /// What the caller may see in tables.
    pub fn access(&self) -> Access {
        Access {
            scope: self.scope.clone(),
            pii: self.pii,
        }
    }

    /// Refuses the request unless the caller has one of the roles.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "{what} is for the roles {}; this token's role is {}",
            allowed.join(", "),
            self.role
        )))
    }

    /// The code to restrict to, given a code the caller asked for: the narrower of the two,
    /// or 403 when they do not overlap.
    pub fn within(&self, asked: Option<&str>) -> Result<Option<String>, ApiError> {
        match (asked, &self.scope) {
            (None, s) => Ok(s.clone()),
            (Some(a), None) => Ok(Some(a.to_string())),
            (Some(a), Some(s)) if a.starts_with(s.as_str()) => Ok(Some(a.to_string())),
            (Some(a), Some(s)) if s.starts_with(a) => Ok(Some(s.clone())),
            (Some(a), Some(s)) => Err(ApiError::forbidden(format!(
                "code {a} is outside this token's scope {s}"
            ))),
        }
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("send your token: Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be: Bearer <token>"))?;
        let entry = app
            .tokens
            .authenticate(token)
            .ok_or_else(|| unauthorized("this token is not valid (unknown or revoked)"))?;
        if let Some(a) = parts.extensions.get::<Arc<Audit>>() {
            a.caller(
                &entry.id,
                &entry.name,
                entry.role.as_str(),
                entry.scope.as_deref(),
            );
        }
        Ok(Caller {
            token_id: entry.id,
            role: entry.role,
            scope: entry.scope,
            pii: entry.pii,
            worker_id: entry.worker_id,
        })
    }
}

/// A JSON body: 415 without a JSON content type, 413 past the body limit, 400 if it does not
/// parse.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<ApiJson<T>, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the request body is larger than the {} KiB the server accepts",
                    app.max_body >> 10
                ),
            )
        };
        // A declared length past the limit is refused before reading any of the body.
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > app.max_body as u64) {
            return Err(too_large());
        }
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON, with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, app).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::bad_request(format!("the request body could not be read: {r}"))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("the body is not the JSON expected: {e}")))
    }
}

fn audit_of(req_audit: &Option<axum::Extension<Arc<Audit>>>) -> Arc<Audit> {
    req_audit.as_ref().map(|a| a.0.clone()).unwrap_or_default()
}

fn parse_instant(name: &str, v: Option<&String>) -> Result<Option<i64>, ApiError> {
    v.map(|s| {
        time::parse_as_of(s).map_err(|why| {
            ApiError::bad_request(format!(
                "{name} {s:?} is {why} (expected e.g. 2026-11-01 or 2026-11-01T00:00:00+08:00)"
            ))
        })
    })
    .transpose()
}

/// `GET /v1/health`: liveness and the dataset served. Needs no token.
pub async fn health(State(app): State<Arc<App>>) -> Response {
    let served = app.served();
    let rows: serde_json::Map<String, serde_json::Value> = served
        .table_rows()
        .into_iter()
        .map(|(t, n)| (t.to_string(), n.into()))
        .collect();
    Json(serde_json::json!({
        "status": "ok",
        "dataset": {
            "name": served.name,
            "as_of": time::format_timestamp(served.store.as_of),
            "loaded_at": served.loaded_at,
            "rows": rows,
        },
        "uptime_seconds": app.started.elapsed().as_secs(),
    }))
    .into_response()
}

/// `GET /v1/tables`: the catalog as the caller sees it.
pub async fn tables(State(app): State<Arc<App>>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Analyst, Role::Leader], "the catalog")?;
    let engine = app.engine(&caller);
    let ctx = engine.context().map_err(ApiError::from_engine)?;
    let schema = ctx
        .catalog("datafusion")
        .and_then(|c| c.schema("public"))
        .ok_or_else(|| ApiError::internal("no public schema"))?;
    let mut names = schema.table_names();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        if caller.role == Role::Leader && !name.ends_with("_kpis") {
            continue;
        }
        let Ok(Some(t)) = schema.table(&name).await else {
            continue;
        };
        let columns: Vec<serde_json::Value> = t
            .schema()
            .fields()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name(),
                    "type": f.data_type().to_string(),
                    "nullable": f.is_nullable(),
                })
            })
            .collect();
        let rows = t.statistics().and_then(|s| s.num_rows.get_value().copied());
        out.push(serde_json::json!({"name": name, "columns": columns, "rows": rows}));
    }
    Ok(Json(serde_json::json!({"tables": out})).into_response())
}

/// The body of `POST /v1/sql`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /v1/sql`: one read-only query; rows streamed as they are computed.
pub async fn sql(
    State(app): State<Arc<App>>,
    caller: Caller,
    audit: Option<axum::Extension<Arc<Audit>>>,
    ApiJson(req): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    let audit = audit_of(&audit);
    audit.sql(&req.sql);
    caller.require(&[Role::Admin, Role::Analyst], "SQL")?;
    let format: Format = req
        .format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(ApiError::bad_request)?;
    let limit = req
        .limit
        .unwrap_or(app.limits.max_rows)
        .min(app.limits.max_rows);
    let slot = app.token_slot(&caller.token_id)?;
    let permit = app.query_permit().await?;
    let engine = app.engine(&caller);
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, ApiError>>(4);
    let deadline = tokio::time::Instant::now() + app.limits.query_timeout;
    let timeout = app.limits.query_timeout;
    let a = audit.clone();
    let app2 = app.clone();
    app.query_rt.spawn(async move {
        let _held = (slot, permit);
        app2.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        run_query(engine, req.sql, format, limit, deadline, timeout, tx, a).await;
        app2.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    });
    let first = match rx.recv().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(e),
        None => return Err(ApiError::internal("the query task ended without an answer")),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
    .map(move |item| {
        item.map_err(|e| {
            audit.failed_midway(&e);
            std::io::Error::other(e.to_string())
        })
    });
    let body = Body::from_stream(futures::stream::once(async move { Ok(first) }).chain(rest));
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(format.mime()));
    Ok(resp)
}

fn timeout_error(timeout: std::time::Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "timeout",
        format!(
            "the query ran longer than the limit of {} s and was stopped; narrow it (a filter, a LIMIT) or ask an admin",
            timeout.as_secs_f64()
        ),
    )
}

/// Plans and runs a query, sending the encoded answer in chunks. Nothing is sent before the
/// first batch (or the end), so an error until then gets a proper status.
#[allow(clippy::too_many_arguments)]
async fn run_query(
    engine: SqlEngine,
    sql: String,
    format: Format,
    limit: usize,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
    tx: mpsc::Sender<Result<Bytes, ApiError>>,
    audit: Arc<Audit>,
) {
    let mut stream = match tokio::time::timeout_at(deadline, engine.stream(&sql)).await {
        Err(_) => {
            let _ = tx.send(Err(timeout_error(timeout))).await;
            return;
        }
        Ok(Err(e)) => {
            let _ = tx.send(Err(ApiError::from_engine(e))).await;
            return;
        }
        Ok(Ok(s)) => s,
    };
    let mut enc = match Encoder::new(format, stream.schema()) {
        Ok(e) => e,
        Err(e) => {
            let _ = tx.send(Err(ApiError::internal(e))).await;
            return;
        }
    };
    let (mut rows, mut truncated) = (0usize, false);
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let batch = match next {
            Err(_) => {
                let _ = tx.send(Err(timeout_error(timeout))).await;
                return;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                let _ = tx
                    .send(Err(ApiError::from_engine(
                        gridlens_engine::sql::query_error(e),
                    )))
                    .await;
                return;
            }
            Ok(Some(Ok(b))) => b,
        };
        if rows >= limit {
            truncated = batch.num_rows() > 0;
            if truncated {
                break;
            }
            continue;
        }
        let take = batch.num_rows().min(limit - rows);
        truncated |= take < batch.num_rows();
        rows += take;
        audit.rows(rows as u64);
        let chunk = match enc.batch(&batch.slice(0, take)) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(ApiError::internal(e))).await;
                return;
            }
        };
        if !chunk.is_empty() && tx.send(Ok(chunk)).await.is_err() {
            return; // the client went away: dropping the stream stops the query
        }
        if truncated {
            break;
        }
    }
    audit.rows(rows as u64);
    let _ = match enc.finish(rows, truncated) {
        Ok(tail) => tx.send(Ok(tail)).await,
        Err(e) => tx.send(Err(ApiError::internal(e))).await,
    };
}

/// A JSON answer: the `head` fields and the batch as `rows`.
fn json_answer(
    head: serde_json::Value,
    batch: &arrow::array::RecordBatch,
) -> Result<Response, ApiError> {
    let body = super::sqlout::json_with_rows(head, batch).map_err(ApiError::internal)?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /v1/kpis/grids?level=&code=&as_of=`.
pub async fn kpi_grids(
    State(app): State<Arc<App>>,
    caller: Caller,
    audit: Option<axum::Extension<Arc<Audit>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Analyst, Role::Leader], "KPIs")?;
    let level: Level = q
        .get("level")
        .map(|l| l.parse())
        .transpose()
        .map_err(|e: gridlens_engine::Error| ApiError::bad_request(e.to_string()))?
        .unwrap_or(Level::Grid);
    let within = caller.within(q.get("code").map(String::as_str))?;
    let served = app.served();
    let as_of = parse_instant("as_of", q.get("as_of"))?.unwrap_or(served.store.as_of);
    let access = caller.access();
    let batch = tokio::task::spawn_blocking(move || {
        let b = served.derived.grid_kpis(as_of, level, within.as_deref())?;
        Ok::<_, gridlens_engine::Error>(access.restrict(b, "code")?)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from_engine)?;
    audit_of(&audit).rows(batch.num_rows() as u64);
    json_answer(
        serde_json::json!({"level": level.name(), "as_of": time::format_timestamp(as_of)}),
        &batch,
    )
}

/// `GET /v1/kpis/incidents?group_by=&from=&to=&as_of=`.
pub async fn kpi_incidents(
    State(app): State<Arc<App>>,
    caller: Caller,
    audit: Option<axum::Extension<Arc<Audit>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Analyst, Role::Leader], "KPIs")?;
    let group_by = match q.get("group_by") {
        Some(g) => GroupBy::parse_list(g).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => Vec::new(),
    };
    let from = parse_instant("from", q.get("from"))?;
    let to = parse_instant("to", q.get("to"))?;
    let served = app.served();
    let as_of = parse_instant("as_of", q.get("as_of"))?.unwrap_or(served.store.as_of);
    let within = caller.scope.clone();
    let groups = group_by.clone();
    let batch = tokio::task::spawn_blocking(move || {
        served
            .derived
            .incident_kpis(as_of, groups, from, to, within)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::from_engine)?;
    audit_of(&audit).rows(batch.num_rows() as u64);
    let groups: Vec<&str> = group_by.iter().map(|g| g.column()).collect();
    json_answer(
        serde_json::json!({"group_by": groups, "as_of": time::format_timestamp(as_of)}),
        &batch,
    )
}

/// The body of `POST /v1/sweeps`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepRequest {
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
}

/// `POST /v1/sweeps`: runs a sweep, makes it the `anomalies` table; a full sweep also updates
/// the task lists.
pub async fn sweeps(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(req): ApiJson<SweepRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Analyst], "sweeps")?;
    let served = app.served();
    let as_of = parse_instant("as_of", req.as_of.as_ref())?.unwrap_or(served.store.as_of);
    let rules = RuleId::parse_list(&req.rules.join(","))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let permit = app.query_permit().await?;
    let app2 = app.clone();
    let scope = caller.scope.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
        let _permit = permit;
        let sweep = served
            .derived
            .sweep(as_of, &rules)
            .map_err(ApiError::from_engine)?;
        served.derived.set_latest(sweep.clone());
        let tasks = if rules.is_empty() {
            Some(app2.apply_tasks(&served, &sweep)?)
        } else {
            None
        };
        let grid_codes = served
            .store
            .table(gridlens_engine::contract::TableId::Grids)
            .strings("grid_code")
            .map_err(ApiError::from_engine)?;
        let mut counts: std::collections::BTreeMap<&str, usize> =
            sweep.runs.iter().map(|r| (r.rule.code(), 0)).collect();
        for a in &sweep.anomalies {
            if scope
                .as_deref()
                .is_none_or(|s| grid_codes.value(a.grid as usize).starts_with(s))
            {
                *counts.entry(a.rule.code()).or_default() += 1;
            }
        }
        let total: usize = counts.values().sum();
        let id = app2.sweep_seq.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(serde_json::json!({
            "id": format!("S{id}"),
            "as_of": time::format_timestamp(as_of),
            "rules": sweep.runs.iter().map(|r| r.rule.code()).collect::<Vec<_>>(),
            "counts": counts,
            "total": total,
            "seconds": sweep.seconds,
            "tasks": tasks,
            "queryable_as": "anomalies",
        }))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

fn status_filter(s: Option<&String>) -> Result<Option<Status>, ApiError> {
    match s.map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("open") => Ok(Some(Status::Open)),
        Some("backlog") => Ok(Some(Status::Backlog)),
        Some("closed") => Ok(Some(Status::Closed)),
        Some("all") => Ok(None),
        Some(other) => Err(ApiError::bad_request(format!(
            "status {other:?} is not one of open, backlog, closed, all"
        ))),
    }
}

/// `GET /v1/tasks?worker_id=&status=open`: a worker's list, in the order to work it.
pub async fn tasks(
    State(app): State<Arc<App>>,
    caller: Caller,
    audit: Option<axum::Extension<Arc<Audit>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Analyst, Role::Worker], "task lists")?;
    let status = status_filter(q.get("status"))?;
    let worker = match (&caller.worker_id, q.get("worker_id")) {
        (Some(own), None) => own.clone(),
        (Some(own), Some(w)) if w == own => own.clone(),
        (Some(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "a worker token sees its own task list only",
            ));
        }
        (None, Some(w)) => w.clone(),
        (None, None) => return Err(ApiError::bad_request("give worker_id")),
    };
    if caller.role != Role::Worker {
        app.check_worker_in_scope(&worker, &caller)?;
    }
    let access = caller.access();
    let book = app.tasks.lock().map_err(ApiError::internal)?;
    let list: Vec<serde_json::Value> = book
        .for_worker(&worker, status)
        .into_iter()
        .map(|t| super::mask_task(t, &access))
        .collect();
    drop(book);
    audit_of(&audit).rows(list.len() as u64);
    Ok(Json(serde_json::json!({"worker_id": worker, "tasks": list})).into_response())
}

/// The body of `POST /v1/tasks/{task_id}/close`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    outcome: String,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /v1/tasks/{task_id}/close`: a worker closes one of their tasks.
pub async fn close_task(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(task_id): Path<String>,
    ApiJson(req): ApiJson<CloseRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Worker], "closing tasks")?;
    let outcome =
        Outcome::parse_worker(&req.outcome).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let access = caller.access();
    let app2 = app.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
        let mut book = app2.tasks.lock().map_err(ApiError::internal)?;
        let Some(t) = book.tasks.get(&task_id) else {
            return Err(ApiError::not_found(format!("there is no task {task_id}")));
        };
        let allowed = match caller.role {
            Role::Worker => t.worker_id.is_some() && t.worker_id == caller.worker_id,
            _ => access.contains(&t.grid_code),
        };
        if !allowed {
            // The same answer as for a task that does not exist: no probing of other lists.
            return Err(ApiError::not_found(format!("there is no task {task_id}")));
        }
        if t.status == Status::Closed {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_closed",
                format!("task {task_id} is already closed"),
            ));
        }
        let mut next = book.clone();
        let t = next
            .close(&task_id, outcome, req.note, gridlens_engine::load::now())
            .map_err(ApiError::from_engine)?
            .clone();
        next.save().map_err(ApiError::internal)?;
        *book = next;
        Ok(super::mask_task(&t, &access))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(task).into_response())
}

/// `GET /v1/metrics`: Prometheus text.
pub async fn metrics(State(app): State<Arc<App>>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "metrics")?;
    let served = app.served();
    let text = app.metrics.render(&served.table_rows());
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

/// `POST /v1/admin/reload`: loads the dataset again and swaps it in; on failure the served
/// data stays as it was.
pub async fn reload(State(app): State<Arc<App>>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "reloading")?;
    let served = app.clone().reload().await?;
    Ok(Json(serde_json::json!({
        "status": "reloaded",
        "dataset": served.name,
        "as_of": time::format_timestamp(served.store.as_of),
        "loaded_at": served.loaded_at,
    }))
    .into_response())
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /v1/openapi.json")
}

/// A known path with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /v1/openapi.json",
    )
}

/// Unused options of [`TaskOptions`] are the defaults.
pub fn task_options(daily_limit: usize) -> TaskOptions {
    TaskOptions {
        daily_limit,
        ..TaskOptions::default()
    }
}
