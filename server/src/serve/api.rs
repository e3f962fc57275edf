//! The endpoints of `interfaces.md`, under `/v1`.

use super::App;
use super::auth::{Role, TokenEntry};
use super::observe::{ApiError, Audit};
use super::session;
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
use gridlens_engine::scope::{Scope, View};
use gridlens_engine::sql::SqlEngine;
use gridlens_engine::sql::control::{QueryControl, Stop, StopOnDrop};
use gridlens_engine::tasks::{Outcome, Status, Task, TaskOptions};
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
    /// The person the token was issued to.
    pub name: String,
    /// Role.
    pub role: Role,
    /// What the token may see: its scope and whether personal data is shown.
    pub scope: Scope,
    /// For a worker: their id.
    pub worker_id: Option<String>,
}

impl Caller {
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
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let audit = parts.extensions.get::<Arc<Audit>>().cloned();
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            // A browser signed in on the web app: its session's token.
            let Some(id) = session::cookie_of(&parts.headers) else {
                return Err(unauthorized(
                    "send your token: Authorization: Bearer <token> (or sign in on the web app)",
                ));
            };
            let token_id = session::token_of_session(app, parts, &id)?;
            let entry = app.tokens.active_by_id(&token_id).ok_or_else(|| {
                unauthorized("the token this session was opened with is revoked; sign in again")
            })?;
            return Caller::of_entry(entry, audit.as_deref());
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("the Authorization header must be: Bearer <token>"))?;
        Caller::of_token(app, token, audit.as_deref())
    }
}

impl Caller {
    /// The caller a token stands for (re-reading the token file if it changed): 401 for an
    /// unknown or revoked token, 403 for one without a valid scope. The caller is recorded in
    /// the audit line, when there is one. Every endpoint, HTTP or PostgreSQL, signs in here.
    pub fn of_token(app: &App, token: &str, audit: Option<&Audit>) -> Result<Caller, ApiError> {
        let entry = app.tokens.authenticate(token).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this token is not valid (unknown or revoked)",
            )
        })?;
        Caller::of_entry(entry, audit)
    }

    /// The caller an active token entry stands for (403 without a valid scope), recorded in
    /// the audit line when there is one.
    pub fn of_entry(entry: TokenEntry, audit: Option<&Audit>) -> Result<Caller, ApiError> {
        if let Some(a) = audit {
            a.caller(
                &entry.id,
                &entry.name,
                entry.role.as_str(),
                entry.scope.as_deref().unwrap_or("none"),
            );
        }
        // A token without a valid scope is refused; it never falls back to the whole city.
        let scope = entry
            .scope()
            .map_err(|e| ApiError::forbidden(e.to_string()))?;
        Ok(Caller {
            token_id: entry.id,
            name: entry.name,
            role: entry.role,
            scope,
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

/// An instant a query parameter gives (`None` when absent), or 400 naming the parameter.
pub(crate) fn parse_instant(name: &str, v: Option<&String>) -> Result<Option<i64>, ApiError> {
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
            "version": served.version,
            "snapshot": served.snapshot,
            "rows": rows,
        },
        "uptime_seconds": app.started.elapsed().as_secs(),
    }))
    .into_response()
}

/// `GET /v1/tables`: the catalog as the caller sees it.
pub async fn tables(State(app): State<Arc<App>>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Analyst, Role::Leader], "the catalog")?;
    let engine = app.engine(&caller)?;
    let ctx = engine.context()?;
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
///
/// The query runs on the query runtime under a [`QueryControl`]: at its deadline, or as soon as
/// the client goes away (this handler or its body is dropped), the control stops it and its
/// CPU is released. The answer does not wait for a query that is slow to notice: the 408 is
/// sent from here at the deadline.
pub async fn sql(
    State(app): State<Arc<App>>,
    caller: Caller,
    audit: Option<axum::Extension<Arc<Audit>>>,
    ApiJson(req): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    let audit = audit_of(&audit);
    audit.sql(&req.sql);
    // The role first: a refused caller learns nothing of formats or limits.
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
    let super::SqlTurn {
        engine,
        held,
        control,
    } = app.sql_turn(&caller).await?;
    let timeout = app.limits.query_timeout;
    // Whoever drops this (the handler, or the body once sent or abandoned) stops the query.
    let stop_on_drop = StopOnDrop(Some(control.clone()));
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, ApiError>>(4);
    let a = audit.clone();
    let app2 = app.clone();
    let c = control.clone();
    app.query_rt.spawn(async move {
        app2.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        run_query(engine, req.sql, (format, limit), c, tx, a, held).await;
        app2.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    });
    let first = tokio::select! {
        biased;
        m = rx.recv() => m,
        why = control.wait_stopped() => return Err(stop_error(why, timeout)),
    };
    let first = match first {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(match control.stopped() {
                Some(why) => stop_error(why, timeout),
                None => ApiError::internal("the query task ended without an answer"),
            });
        }
    };
    let rest = futures::stream::unfold(
        (rx, stop_on_drop, control),
        move |(mut rx, guard, control)| async move {
            let item = tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(m) => m,
                    // The query task ended: with its last chunk sent, or stopped.
                    None => Err(stop_error(control.stopped()?, timeout)),
                },
                why = control.wait_stopped() => Err(stop_error(why, timeout)),
            };
            Some((item, (rx, guard, control)))
        },
    )
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
    if format == Format::Xlsx {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"query.xlsx\""),
        );
    }
    Ok(resp)
}

/// The answer to a stopped query.
fn stop_error(why: Stop, timeout: std::time::Duration) -> ApiError {
    match why {
        Stop::Timeout => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the query ran longer than the limit of {} s and was stopped; narrow it (a \
                 filter, a LIMIT) or ask an admin",
                timeout.as_secs_f64()
            ),
        ),
        Stop::Cancelled => ApiError::new(
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "cancelled",
            "the query was cancelled",
        ),
        Stop::Memory => ApiError::from_engine(gridlens_engine::Error::ResourcesExhausted(
            "the query needs more memory than it may use and was stopped; narrow it (a filter, \
             fewer columns, a LIMIT) or ask an admin for a larger --query-memory-mb"
                .into(),
        )),
    }
}

/// Plans and runs a query, sending the encoded answer in chunks. Nothing is sent before the
/// first batch (or the end), so an error until then gets a proper status. Stops as soon as the
/// control does.
async fn run_query(
    engine: SqlEngine,
    sql: String,
    (format, limit): (Format, usize),
    control: Arc<QueryControl>,
    tx: mpsc::Sender<Result<Bytes, ApiError>>,
    audit: Arc<Audit>,
    held: (super::TokenSlot, tokio::sync::OwnedSemaphorePermit),
) {
    let fail = |e: gridlens_engine::Error| ApiError::from_engine(e);
    let mut stream = tokio::select! {
        biased;
        _ = control.wait_stopped() => return,
        s = engine.stream(&sql, &control) => match s {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(fail(e))).await;
                return;
            }
        },
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
        let batch = tokio::select! {
            biased;
            _ = control.wait_stopped() => return,
            next = stream.next() => match next {
                None => break,
                Some(Err(e)) => {
                    let _ = tx
                        .send(Err(fail(gridlens_engine::sql::query_error(e))))
                        .await;
                    return;
                }
                Some(Ok(b)) => b,
            },
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
            // An Excel sheet's row limit: the caller's to change (nothing is sent yet).
            Err(e) if format == Format::Xlsx => {
                let _ = tx.send(Err(ApiError::bad_request(e.to_string()))).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(ApiError::internal(e))).await;
                return;
            }
        };
        if !chunk.is_empty() {
            let sent = tokio::select! {
                biased;
                _ = control.wait_stopped() => return,
                r = tx.send(Ok(chunk)) => r,
            };
            if sent.is_err() {
                return; // the client went away: dropping the stream stops the query
            }
        }
        if truncated {
            break;
        }
    }
    drop(stream);
    audit.rows(rows as u64);
    // The token's slot goes back before the last chunk, so that a client firing its next query
    // the moment this answer ends finds it free.
    drop(held);
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
    let served = app.served();
    let view = app.view_of(&served, &caller)?;
    let as_of = parse_instant("as_of", q.get("as_of"))?.unwrap_or(served.store.as_of);
    let code = q.get("code").cloned();
    let batch = tokio::task::spawn_blocking(move || {
        served
            .city
            .grid_kpis_for(&view, as_of, level, code.as_deref())
    })
    .await
    .map_err(ApiError::internal)??;
    audit_of(&audit).rows(batch.num_rows() as u64);
    kpi_answer(
        &q,
        serde_json::json!({"level": level.name(), "as_of": time::format_timestamp(as_of)}),
        &batch,
        &format!("grid_kpis_{}", level.name()),
    )
}

/// `GET /v1/kpis/incidents?group_by=&code=&from=&to=&as_of=`.
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
    let view = app.view_of(&served, &caller)?;
    let as_of = parse_instant("as_of", q.get("as_of"))?.unwrap_or(served.store.as_of);
    let groups = group_by.clone();
    let code = q.get("code").cloned();
    let batch = tokio::task::spawn_blocking(move || {
        served
            .city
            .incident_kpis_for(&view, as_of, groups, (from, to), code.as_deref())
    })
    .await
    .map_err(ApiError::internal)??;
    audit_of(&audit).rows(batch.num_rows() as u64);
    let groups: Vec<&str> = group_by.iter().map(|g| g.column()).collect();
    let name = format!("incident_kpis_{}", groups.join("_"));
    kpi_answer(
        &q,
        serde_json::json!({"group_by": groups, "as_of": time::format_timestamp(as_of)}),
        &batch,
        name.trim_end_matches('_'),
    )
}

/// A KPI answer in the `format` asked (`json`, the default, `csv` or `xlsx`).
fn kpi_answer(
    q: &HashMap<String, String>,
    head: serde_json::Value,
    batch: &arrow::array::RecordBatch,
    name: &str,
) -> Result<Response, ApiError> {
    let format = match q.get("format").map(|f| f.to_ascii_lowercase()).as_deref() {
        None | Some("json") => return json_answer(head, batch),
        Some("csv") => Format::Csv,
        Some("xlsx") => Format::Xlsx,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "format {f:?} is not one of json, csv, xlsx"
            )));
        }
    };
    let body = match format {
        Format::Xlsx => {
            crate::xlsx::workbook(&[(name, std::slice::from_ref(batch), batch.schema())])
                .map_err(ApiError::internal)?
        }
        _ => {
            let mut enc = Encoder::new(Format::Csv, batch.schema()).map_err(ApiError::internal)?;
            let mut out = enc.batch(batch).map_err(ApiError::internal)?.to_vec();
            out.extend_from_slice(
                &enc.finish(batch.num_rows(), false)
                    .map_err(ApiError::internal)?,
            );
            out
        }
    };
    let disposition = format!(
        "attachment; filename=\"{name}.{}\"",
        if format == Format::Xlsx {
            "xlsx"
        } else {
            "csv"
        }
    );
    Ok((
        [
            (CONTENT_TYPE, format.mime().to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
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

/// `POST /v1/sweeps`: runs a sweep, makes it the shared `anomalies` table; a full sweep also
/// updates the task lists. It changes what everyone sees, so it is for an admin of the whole
/// city; an analyst asks `sweep(as_of => …)` in SQL instead (scoped, private, changes nothing).
pub async fn sweeps(
    State(app): State<Arc<App>>,
    caller: Caller,
    ApiJson(req): ApiJson<SweepRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "running a shared sweep")?;
    if !caller.scope.is_city() {
        return Err(ApiError::forbidden(format!(
            "a shared sweep replaces the anomalies and task lists of the whole city; this \
             admin token's scope is {}; ask in SQL with sweep(as_of => …) instead",
            caller.scope.label()
        )));
    }
    let served = app.served();
    let view = app.view_of(&served, &caller)?;
    let as_of = parse_instant("as_of", req.as_of.as_ref())?.unwrap_or(served.store.as_of);
    let rules = RuleId::parse_list(&req.rules.join(","))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let permit = app.query_permit().await?;
    let app2 = app.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
        let _permit = permit;
        let sweep = served.city.sweep(as_of, &rules)?;
        served.city.set_latest(sweep.clone());
        let tasks = if rules.is_empty() {
            Some(app2.apply_tasks(&served, &sweep)?)
        } else {
            None
        };
        let counts = view.sweep_counts(&sweep);
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

/// A task as the caller sees it. A worker sees the tasks assigned to them, B-role tasks of a
/// partner grid included: their evidence is redacted to the token's scope and the task's own
/// grid, which the worker is sent to.
fn task_for(app: &App, view: &View, caller: &Caller, t: &Task) -> Option<serde_json::Value> {
    let seen = if caller.role == Role::Worker && !view.sees_task(t) {
        let own = Scope::parse(&t.grid_code, caller.scope.pii()).ok()?;
        let grid_view = View::new(app.served().store.clone(), own).ok()?;
        grid_view.task(t)
    } else {
        view.task(t)
    }?;
    serde_json::to_value(seen).ok()
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
    let view = app.view(&caller)?;
    if caller.role != Role::Worker {
        app.check_worker_in_scope(&worker, &view)?;
    }
    let book = app.tasks.lock().map_err(ApiError::internal)?;
    let picked: Vec<Task> = book
        .for_worker(&worker, status)
        .into_iter()
        .cloned()
        .collect();
    drop(book);
    let list: Vec<serde_json::Value> = picked
        .iter()
        .filter_map(|t| task_for(&app, &view, &caller, t))
        .collect();
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
    /// The record correction the worker made (with `fixed`): rows for one table, as JSON
    /// objects, taken through ingest whole or not at all.
    #[serde(default)]
    correction: Option<Correction>,
}

/// A worker's correction of the records, attached to a task closed as `fixed`: for an upserted
/// table, each row names its record by key and gives the columns that changed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    table: String,
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Refuses a task the caller may not close (404, as for one that does not exist) or that is
/// closed already (409).
fn open_task(app: &App, view: &View, caller: &Caller, task_id: &str) -> Result<(), ApiError> {
    let book = app.tasks.lock().map_err(ApiError::internal)?;
    let Some(t) = book.tasks.get(task_id) else {
        return Err(ApiError::not_found(format!("there is no task {task_id}")));
    };
    let allowed = match caller.role {
        Role::Worker => t.worker_id.is_some() && t.worker_id == caller.worker_id,
        _ => view.sees_task(t),
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
    Ok(())
}

/// `POST /v1/tasks/{task_id}/close`: a worker closes one of their tasks (an admin any task
/// inside their scope).
pub async fn close_task(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(task_id): Path<String>,
    ApiJson(req): ApiJson<CloseRequest>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Worker], "closing tasks")?;
    let outcome =
        Outcome::parse_worker(&req.outcome).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if req.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::bad_request(
            "the note is longer than 2000 characters",
        ));
    }
    let view = app.view(&caller)?;
    open_task(&app, &view, &caller, &task_id)?;
    // The closed loop: the correction goes in through ingest, whole or not at all, before the
    // task is closed; the new version's sweep then updates every list.
    let corrected = match req.correction {
        None => None,
        Some(c) => {
            if outcome != Outcome::Fixed {
                return Err(ApiError::bad_request(
                    "a correction goes with the outcome fixed",
                ));
            }
            let (table, _) = gridlens_engine::ingest::table(&c.table)?;
            if c.rows.is_empty() || c.rows.len() > 1000 {
                return Err(ApiError::bad_request(
                    "a correction holds from 1 to 1000 rows",
                ));
            }
            // A correction gives what changed; the rest of each record is the record's own.
            let mut given = c.rows;
            gridlens_engine::ingest::fill_from_records(&app.served().store, table, &mut given)?;
            let rows = gridlens_engine::ingest::Rows::objects(&given, "the correction")?;
            let mode = super::ingest::IngestMode {
                all_or_nothing: true,
                apply_tasks: false,
            };
            Some(app.ingest(&caller, table, rows, mode).await?)
        }
    };
    let app2 = app.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, ApiError> {
        let view = app2.view(&caller)?;
        open_task(&app2, &view, &caller, &task_id)?;
        let mut book = app2.tasks.lock().map_err(ApiError::internal)?;
        let t = app2.changing_tasks(&mut book, |b| {
            b.close(&task_id, outcome, req.note, gridlens_engine::load::now())
                .cloned()
        })?;
        drop(book);
        let mut answer = task_for(&app2, &view, &caller, &t)
            .ok_or_else(|| ApiError::not_found(format!("there is no task {task_id}")))?;
        if let Some(c) = corrected {
            let served = app2.served();
            let sweep = served.city.latest()?;
            let tasks = app2.apply_tasks(&served, &sweep)?;
            if let Some(o) = answer.as_object_mut() {
                o.insert(
                    "correction".into(),
                    serde_json::to_value(&c).map_err(ApiError::internal)?,
                );
                o.insert("tasks".into(), tasks);
            }
        }
        Ok(answer)
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
    if !caller.scope.is_city() {
        return Err(ApiError::forbidden(format!(
            "a reload replaces the city everyone is served; this admin token's scope is {}",
            caller.scope.label()
        )));
    }
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
