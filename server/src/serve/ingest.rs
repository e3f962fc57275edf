//! `POST /v1/ingest/{table}`: feeding systems send new and changed rows; each batch is checked
//! by the loader's own rules, made durable in the ingest log, and served atomically as a new
//! version of the city, whose sweep then updates the task lists.
//!
//! One batch at a time makes a version (the same lock as a reload), so a reader sees the city
//! before a batch or after it, never part of one. The answer comes only once the batch is on
//! disk: an acknowledged row survives a crash.

use super::App;
use super::api::Caller;
use super::auth::Role;
use super::observe::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use gridlens_engine::contract::TableId;
use gridlens_engine::ingest::{self, Format, Kind, Rows};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;

/// Batches that may wait for their turn at once (beyond them: 503).
pub const INGEST_WAITING: usize = 8;

/// One row of a batch that was not loaded.
#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct IngestReject {
    /// The row's place in the batch as sent, from 1.
    pub row: usize,
    /// The column at fault, if one.
    pub column: Option<String>,
    /// The reason's code (as in the `rejects` table; `outside_scope` for a row the sender may
    /// not write).
    pub reason: String,
    /// What is wrong, in a sentence.
    pub detail: String,
}

/// What became of a batch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ingested {
    /// The table.
    pub table: &'static str,
    /// `append` or `upsert`.
    pub kind: &'static str,
    /// Rows sent.
    pub received: usize,
    /// Rows loaded (new, or replacing the row with their key).
    pub accepted: usize,
    /// Rows not loaded.
    pub rejected: usize,
    /// Why, row by row.
    pub rejects: Vec<IngestReject>,
    /// The version of the city that holds the batch (the version served when nothing was
    /// accepted).
    pub version: u64,
    /// Anomalies found in that version.
    pub anomalies: usize,
    /// What the task lists did (`null` when the batch changed nothing).
    pub tasks: Option<serde_json::Value>,
    /// Milliseconds from the batch's arrival to its version being served.
    pub milliseconds: u64,
}

/// How a batch is taken.
#[derive(Debug, Clone, Copy)]
pub struct IngestMode {
    /// Nothing is written unless every row is accepted (a worker's correction).
    pub all_or_nothing: bool,
    /// Whether the new version's sweep is applied to the task lists (off when the caller
    /// applies it itself, after closing a task).
    pub apply_tasks: bool,
}

impl App {
    /// Takes a batch of rows for a table on behalf of a caller: rows outside the caller's scope
    /// are rejected, the rest are staged in the log and loaded with the city by the loader's
    /// rules; the batch is committed (flushed, renamed into the log) and its version served
    /// before this returns. A batch whose rows are all rejected leaves the city as it is.
    pub async fn ingest(
        self: &Arc<Self>,
        caller: &Caller,
        table: TableId,
        rows: Rows,
        mode: IngestMode,
    ) -> Result<Ingested, ApiError> {
        let started = Instant::now();
        let kind = Kind::of(table).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{} does not take ingested rows; ingest takes {}",
                table.name(),
                ingest::tables()
            ))
        })?;
        let received = rows.len();
        let _one_at_a_time = self.reloading.lock().await;
        let served = self.served();
        let view = self.view_of(&served, caller)?;
        let outside = ingest::outside_scope(&view, table, kind, &rows);
        let mut rejects: Vec<IngestReject> = Vec::new();
        let mut kept_rows: Vec<usize> = Vec::new();
        for (i, why) in outside.iter().enumerate() {
            match why {
                Some(detail) => rejects.push(IngestReject {
                    row: i + 1,
                    column: None,
                    reason: "outside_scope".into(),
                    detail: detail.clone(),
                }),
                None => kept_rows.push(i),
            }
        }
        let outside_rows: Vec<bool> = outside.iter().map(Option::is_some).collect();
        let rows = Arc::new(rows.without(&outside_rows)?);
        let answer = |rejects: Vec<IngestReject>, version, anomalies, tasks| Ingested {
            table: table.name(),
            kind: kind.as_str(),
            received,
            accepted: received - rejects.len(),
            rejected: rejects.len(),
            rejects,
            version,
            anomalies,
            tasks,
            milliseconds: started.elapsed().as_millis() as u64,
        };
        let refuse = |rejects: &[IngestReject]| {
            ApiError::bad_request(format!(
                "nothing was written: {} of the {received} rows {} not accepted (the first: \
                 row {}, {})",
                rejects.len(),
                if rejects.len() == 1 { "was" } else { "were" },
                rejects[0].row,
                rejects[0].detail
            ))
        };
        if rows.is_empty() {
            if mode.all_or_nothing && !rejects.is_empty() {
                return Err(refuse(&rejects));
            }
            let anomalies = served.city.latest()?.anomalies.len();
            return Ok(answer(rejects, served.version, anomalies, None));
        }
        self.room_for_a_version(Some(table))?;
        let log = &self.log;
        let staged = log.next(table)?;
        let lines = rows.lines();
        let mut added = log.added()?;
        // The new version is made from the rows as parsed, while the batch is written to the
        // log and flushed beside it; it is served only once both are done.
        added.push(staged.added_from(&rows)?);
        let name = staged.segment.name();
        let version = staged.segment.seq;
        let changed = Some(super::Change {
            served: served.clone(),
            table,
            rows: rows.clone(),
        });
        let writing = {
            let (staged, rows) = (staged.clone(), rows.clone());
            tokio::task::spawn_blocking(move || staged.write(&rows.to_csv()?))
        };
        let loading = self.clone().load_version(added, version, changed);
        let (written, loaded) = tokio::join!(writing, loading);
        let next = match (written.map_err(ApiError::internal)?, loaded) {
            (Ok(()), Ok(n)) => n,
            (Err(e), _) => {
                log.discard(staged);
                return Err(ApiError::internal(format!(
                    "the batch for {} could not be written to the log, and the data served is \
                     unchanged: {}",
                    table.name(),
                    self.without_paths(&e.to_string())
                )));
            }
            (_, Err(e)) => {
                log.discard(staged);
                return Err(ApiError::bad_request(format!(
                    "the batch for {} was not taken, and the data served is unchanged: {}",
                    table.name(),
                    self.without_paths(&format!("{e:#}"))
                )));
            }
        };
        let made = started.elapsed();
        let mut loaded = rejects_of(&next.store, &name, lines, &kept_rows)?;
        let checked = started.elapsed();
        if view.grids().is_some() {
            // A repeated key may repeat a row outside the sender's scope: say that it repeats,
            // not where.
            for r in loaded.iter_mut().filter(|r| r.reason == "duplicate_key") {
                r.detail = format!(
                    "the {} of this row is taken by a row already loaded",
                    r.column.as_deref().unwrap_or("key")
                );
            }
        }
        let mut all = rejects;
        all.extend(loaded);
        all.sort_by_key(|r| r.row);
        if all.len() == received || (mode.all_or_nothing && !all.is_empty()) {
            log.discard(staged);
            if mode.all_or_nothing {
                return Err(refuse(&all));
            }
            let anomalies = served.city.latest()?.anomalies.len();
            return Ok(answer(all, served.version, anomalies, None));
        }
        log.commit(staged)?;
        let committed = started.elapsed();
        // Nothing here holds the version replaced: it is freed as soon as its last reader is
        // done, and its memory goes back to the system for the next version.
        drop((view, served));
        self.swap(next.clone(), table == TableId::AccessEvents)
            .await;
        self.snapshots
            .write_if_due(&next, self.segments_of(next.version));
        self.metrics.ingested(table.name(), received - all.len());
        let sweep = next.city.latest()?;
        let served_after = started.elapsed();
        let tasks = if mode.apply_tasks {
            let s = self.clone();
            let n = next.clone();
            let sw = sweep.clone();
            Some(
                tokio::task::spawn_blocking(move || s.apply_tasks(&n, &sw))
                    .await
                    .map_err(ApiError::internal)??,
            )
        } else {
            None
        };
        tracing::info!(
            table = table.name(),
            rows = received,
            version,
            ms = started.elapsed().as_millis() as u64,
            made_ms = made.as_millis() as u64,
            rejects_ms = (checked - made).as_millis() as u64,
            commit_ms = (committed - checked).as_millis() as u64,
            served_ms = served_after.as_millis() as u64,
            "batch ingested"
        );
        Ok(answer(all, version, sweep.anomalies.len(), tasks))
    }
}

/// The rejects the loader found among a staged batch's rows, named by their place in the batch
/// as sent: `lines[i]` is the line staged row `i` starts on, `sent[i]` its place as sent.
pub(crate) fn rejects_of(
    store: &gridlens_engine::store::Store,
    file: &str,
    lines: &[u64],
    sent: &[usize],
) -> Result<Vec<IngestReject>, ApiError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::UInt64Type;
    let b = &store.rejects;
    let col = |n: &str| {
        b.column_by_name(n)
            .ok_or_else(|| ApiError::internal(format!("the rejects table has no {n}")))
    };
    let files = col("source_file")?.as_string::<i32>().clone();
    let rows = col("row_number")?.as_primitive::<UInt64Type>().clone();
    let columns = col("column_name")?.as_string::<i32>().clone();
    let reasons = col("reason")?.as_string::<i32>().clone();
    let details = col("detail")?.as_string::<i32>().clone();
    let mut out = Vec::new();
    for i in 0..b.num_rows() {
        if files.value(i) != file {
            continue;
        }
        let line = rows.value(i);
        // The staged row that starts on this line (or the last one before it).
        let staged = lines.partition_point(|&l| l <= line).saturating_sub(1);
        out.push(IngestReject {
            row: sent.get(staged).map_or(staged, |&s| s) + 1,
            column: (!columns.is_null(i)).then(|| columns.value(i).to_string()),
            reason: reasons.value(i).to_string(),
            detail: details.value(i).to_string(),
        });
    }
    Ok(out)
}

/// `POST /v1/ingest/{table}` parameters.
#[derive(Debug, Deserialize)]
pub struct IngestParams {
    /// `csv`, `ndjson` or `arrow`, when the `Content-Type` does not say.
    #[serde(default)]
    format: Option<String>,
}

/// `POST /v1/ingest/{table}`: a feeder (or an admin) sends rows as CSV (`text/csv`), NDJSON
/// (`application/x-ndjson`) or an Arrow IPC stream (`application/vnd.apache.arrow.stream`).
pub async fn ingest(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(table): Path<String>,
    Query(p): Query<IngestParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Feeder], "ingest")?;
    // Batches wait their turn one behind the other; a few may wait, each read only once it
    // has its place, so that a flood of batches cannot hold the server's memory.
    let _place = app.ingest_queue.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{INGEST_WAITING} batches are already waiting to be ingested; send this one when one is answered"
            ),
        )
    })?;
    let body: Bytes = axum::body::to_bytes(body, app.max_ingest_body)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the batch could not be read ({e}); a batch is at most {} MiB: send it in parts",
                    app.max_ingest_body >> 20
                ),
            )
        })?;
    let (table, _) = ingest::table(&table)?;
    let format = match p.format.as_deref() {
        Some(f) => Format::of_name(f).ok_or_else(|| {
            ApiError::bad_request(format!(
                "parameter format: {f:?} is not one of csv, ndjson, arrow"
            ))
        })?,
        None => {
            let ct = headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            Format::of_content_type(ct).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!(
                        "Content-Type {ct:?} is not one ingest takes: text/csv, \
                         application/x-ndjson or application/vnd.apache.arrow.stream"
                    ),
                )
            })?
        }
    };
    let rows = tokio::task::spawn_blocking(move || Rows::parse(&body, format, "the body"))
        .await
        .map_err(ApiError::internal)??;
    let mode = IngestMode {
        all_or_nothing: false,
        apply_tasks: true,
    };
    let done = app.ingest(&caller, table, rows, mode).await?;
    let status = if done.accepted == 0 && done.rejected > 0 {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Json(done)).into_response())
}
