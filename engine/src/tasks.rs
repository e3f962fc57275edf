//! Grid workers' task lists: anomalies assigned to the worker who walks the grid, kept across
//! sweeps in a state folder that survives restarts and crashes.
//!
//! - A task is an anomaly assigned to the active worker of the subject's grid; if the grid has
//!   none, to the active worker whose `partner_grid_code` is that grid (the "B role"); otherwise
//!   it is unassigned. With several candidates, the full-time worker with the smallest
//!   `worker_id` is chosen.
//! - `task_id` is stable: the same (rule, subject) always gets the same id.
//! - Re-running: a task still open is not duplicated; a new finding opens a task; a task whose
//!   anomaly no longer appears is closed with outcome `resolved_in_data`; a task closed as
//!   `false_alarm` is not reopened for 90 days; a task closed as `fixed` or `unreachable` whose
//!   anomaly is still found by a sweep evaluated after the close is reopened.
//! - Each worker has at most 20 open tasks, highest priority first (then older evidence, then
//!   subject); the rest wait in the backlog until a later run has room.
//! - State is one JSON file, replaced atomically (written to a temporary file, flushed to disk,
//!   renamed), so a crash mid-write leaves the previous state intact. A lock file keeps two
//!   writers (the command line and the server) from interleaving.

use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::rules::{Anomaly, RuleId, Sweep};
use crate::scope::mask::mask_identities_in_text;
use crate::scope::secret::Secret;
use crate::store::{NONE, Store};
use crate::time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

/// The state file's name within the state folder.
pub const STATE_FILE: &str = "tasks.json";
const TEMP_FILE: &str = "tasks.json.tmp";
const LOCK_FILE: &str = "tasks.lock";
/// The state file's version: 2 since task ids are keyed with the state folder's secret.
const STATE_VERSION: u32 = 2;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// On the worker's list.
    Open,
    /// Waiting: the worker's list is full.
    Backlog,
    /// Done.
    Closed,
}

/// How a task was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The worker fixed the records.
    Fixed,
    /// The records were right: not reopened for 90 days.
    FalseAlarm,
    /// The worker could not reach the person or room.
    Unreachable,
    /// The anomaly no longer appears in the data.
    ResolvedInData,
}

impl Outcome {
    /// Parses a worker's outcome (`fixed`, `false_alarm`, `unreachable`).
    pub fn parse_worker(s: &str) -> Result<Outcome> {
        match s {
            "fixed" => Ok(Outcome::Fixed),
            "false_alarm" => Ok(Outcome::FalseAlarm),
            "unreachable" => Ok(Outcome::Unreachable),
            _ => Err(Error::param(
                "outcome",
                format!(
                    "{s:?} is not a worker's outcome (expected fixed, false_alarm or unreachable)"
                ),
            )),
        }
    }

    /// The outcome's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Fixed => "fixed",
            Outcome::FalseAlarm => "false_alarm",
            Outcome::Unreachable => "unreachable",
            Outcome::ResolvedInData => "resolved_in_data",
        }
    }
}

/// Whose task it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// The grid's own worker.
    Own,
    /// The neighbouring grid's worker, covering as B role.
    BRole,
    /// Nobody: the grid has no active worker and no B role.
    Unassigned,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Stable id of (rule, subject).
    pub task_id: String,
    /// `R01` …
    pub rule: String,
    /// `UNREGISTERED_OCCUPANT` …
    pub rule_name: String,
    /// Kind of subject.
    pub subject_kind: String,
    /// Subject.
    pub subject_id: String,
    /// The subject's grid.
    pub grid_code: String,
    /// The assigned worker.
    pub worker_id: Option<String>,
    /// How it was assigned.
    pub assignment: Assignment,
    /// 1 (highest) to 3.
    pub priority: i32,
    /// Older evidence first, within a priority.
    pub weight: i64,
    /// The anomaly's evidence when last found.
    pub evidence: serde_json::Value,
    /// Status.
    pub status: Status,
    /// How it was closed.
    pub outcome: Option<Outcome>,
    /// The worker's note.
    pub note: Option<String>,
    /// When it was first opened (the sweep's `as_of`).
    pub opened_at: String,
    /// When the anomaly was last found.
    pub last_found_at: String,
    /// When it was closed.
    pub closed_at: Option<String>,
    /// Times it was reopened.
    pub reopened: u32,
}

/// The stable id of a (rule, subject) under a state folder's secret: `T` and 16 hex digits of
/// their HMAC. A subject may hold an identity number, so the id is keyed: without the secret,
/// trying every identity behind a masked subject does not find its task id.
pub fn task_id(secret: &Secret, rule: RuleId, subject_id: &str) -> String {
    secret.id("T", &[rule.code(), subject_id])
}

/// Settings of the task lists.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// Open tasks a worker sees at most.
    pub daily_limit: usize,
    /// Days a false alarm is not reopened.
    pub false_alarm_days: i64,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            daily_limit: 20,
            false_alarm_days: 90,
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// The sweep's `as_of`.
    pub as_of: String,
    /// Tasks opened for new findings.
    pub new: usize,
    /// Closed tasks reopened.
    pub reopened: usize,
    /// Open tasks still found.
    pub still_open: usize,
    /// Tasks closed because the anomaly no longer appears.
    pub resolved_in_data: usize,
    /// Findings of tasks closed as false alarms within the last 90 days (left closed).
    pub suppressed: usize,
    /// Open and backlog tasks without a worker.
    pub unassigned: usize,
    /// Per worker: (worker_id, grid_code, open, backlog).
    pub workers: Vec<WorkerSummary>,
}

/// One worker's list after a run.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerSummary {
    /// Worker.
    pub worker_id: String,
    /// The worker's grid.
    pub grid_code: String,
    /// Open tasks.
    pub open: usize,
    /// Backlog.
    pub backlog: usize,
    /// Open tasks of priority 1.
    pub priority_1: usize,
}

/// The task book on disk: read with owned runs and tasks, written borrowing them (a city's
/// book holds 150,000 tasks).
#[derive(Debug, Serialize, Deserialize)]
struct StateFile<R = Vec<RunSummaryRecord>, T = Task> {
    version: u32,
    updated_at: String,
    runs: R,
    tasks: Vec<T>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunSummaryRecord {
    as_of: String,
    new: usize,
    resolved_in_data: usize,
    reopened: usize,
}

/// The stages of saving, for tests that simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveStage {
    /// The temporary file is written and flushed to disk.
    TempWritten,
}

/// The task lists of a city, as kept in a state folder.
#[derive(Debug, Clone)]
pub struct TaskBook {
    dir: PathBuf,
    secret: Secret,
    /// Tasks by id.
    pub tasks: BTreeMap<String, Task>,
    runs: Vec<RunSummaryRecord>,
}

/// Holds the state folder's lock while alive.
#[derive(Debug)]
pub struct StateLock(File);

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The state folder's lock file, opened (the folder made if new).
fn lock_file(dir: &Path) -> Result<(File, std::path::PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    Ok((f, path))
}

impl TaskBook {
    /// Takes the state folder's lock (waiting for another writer to finish).
    pub fn lock(dir: &Path) -> Result<StateLock> {
        let (f, path) = lock_file(dir)?;
        f.lock().map_err(|e| Error::io(&path, e))?;
        Ok(StateLock(f))
    }

    /// Takes the state folder's lock if no one holds it; `None` when another process (a
    /// running server) does.
    pub fn try_lock(dir: &Path) -> Result<Option<StateLock>> {
        let (f, path) = lock_file(dir)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(StateLock(f))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Opens the task lists of a state folder (creating it, empty, if new). A temporary file
    /// left by a crash is discarded: the state is the last complete save.
    pub fn open(dir: &Path) -> Result<TaskBook> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = dir.join(TEMP_FILE);
        if tmp.exists() {
            tracing::warn!("discarding {}: a save that did not finish", tmp.display());
            let _ = std::fs::remove_file(&tmp);
        }
        let secret = Secret::open_or_create(dir)?;
        let path = dir.join(STATE_FILE);
        if !path.exists() {
            return Ok(TaskBook {
                dir: dir.to_path_buf(),
                secret,
                tasks: BTreeMap::new(),
                runs: Vec::new(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let state: StateFile = serde_json::from_str(&text).map_err(|e| {
            Error::Load(format!(
                "{}: the task state is not readable: {e}",
                path.display()
            ))
        })?;
        // State of version 1 had unkeyed ids: they are keyed now (the same tasks, new ids).
        let rekey = state.version < STATE_VERSION;
        let tasks = state
            .tasks
            .into_iter()
            .map(|mut t| {
                if rekey {
                    t.task_id = secret.id("T", &[t.rule.as_str(), t.subject_id.as_str()]);
                }
                (t.task_id.clone(), t)
            })
            .collect();
        Ok(TaskBook {
            dir: dir.to_path_buf(),
            secret,
            tasks,
            runs: state.runs,
        })
    }

    /// The stable id of a (rule, subject) in this state folder.
    pub fn task_id(&self, rule: RuleId, subject_id: &str) -> String {
        task_id(&self.secret, rule, subject_id)
    }

    /// Saves atomically.
    pub fn save(&self) -> Result<()> {
        self.save_with(|_| Ok(()))
    }

    /// Saves atomically, calling `hook` at each stage (a test returns an error to simulate a
    /// crash there).
    pub fn save_with(&self, hook: impl Fn(SaveStage) -> Result<()>) -> Result<()> {
        // Without indentation, through a buffer.
        let state = StateFile {
            version: STATE_VERSION,
            updated_at: time::format_timestamp(crate::load::now()),
            runs: &self.runs,
            tasks: self.tasks.values().collect(),
        };
        let tmp = self.dir.join(TEMP_FILE);
        {
            let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            serde_json::to_writer(&mut w, &state)
                .map_err(|e| Error::io(&tmp, std::io::Error::other(e)))?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io(&tmp, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        hook(SaveStage::TempWritten)?;
        let path = self.dir.join(STATE_FILE);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Applies a sweep: opens, keeps, reopens and resolves tasks, assigns them and fills each
    /// worker's list.
    pub fn apply(
        &mut self,
        store: &Store,
        sweep: &Sweep,
        opts: &TaskOptions,
    ) -> Result<RunSummary> {
        let as_of = sweep.as_of;
        let as_of_s = time::format_timestamp(as_of);
        let swept: BTreeSet<String> = sweep
            .runs
            .iter()
            .map(|r| r.rule.code().to_string())
            .collect();
        let grids = store.table(TableId::Grids).strings("grid_code")?;
        let mut summary = RunSummary {
            as_of: as_of_s.clone(),
            ..RunSummary::default()
        };
        let mut found: BTreeSet<String> = BTreeSet::new();
        for a in &sweep.anomalies {
            let id = self.task_id(a.rule, &a.subject_id);
            found.insert(id.clone());
            let grid_code = grids.value(a.grid as usize).to_string();
            match self.tasks.get_mut(&id) {
                Some(t) => {
                    refresh(t, a, &grid_code, &as_of_s);
                    match (t.status, t.outcome) {
                        (Status::Open | Status::Backlog, _) => summary.still_open += 1,
                        (Status::Closed, Some(Outcome::FalseAlarm)) => {
                            let closed = t
                                .closed_at
                                .as_deref()
                                .and_then(|c| time::parse_timestamp(c).ok());
                            if closed.is_some_and(|c| as_of < c + opts.false_alarm_days * time::DAY)
                            {
                                summary.suppressed += 1;
                            } else {
                                reopen(t);
                                summary.reopened += 1;
                            }
                        }
                        (Status::Closed, _) => {
                            let closed = t
                                .closed_at
                                .as_deref()
                                .and_then(|c| time::parse_timestamp(c).ok());
                            // A sweep of data older than the close does not undo it.
                            if closed.is_none_or(|c| as_of > c) {
                                reopen(t);
                                summary.reopened += 1;
                            }
                        }
                    }
                }
                None => {
                    self.tasks.insert(
                        id.clone(),
                        Task {
                            task_id: id,
                            rule: a.rule.code().into(),
                            rule_name: a.rule.name().into(),
                            subject_kind: a.rule.subject_kind().into(),
                            subject_id: a.subject_id.clone(),
                            grid_code,
                            worker_id: None,
                            assignment: Assignment::Unassigned,
                            priority: a.rule.priority(),
                            weight: a.weight,
                            evidence: a.evidence.clone(),
                            status: Status::Open,
                            outcome: None,
                            note: None,
                            opened_at: as_of_s.clone(),
                            last_found_at: as_of_s.clone(),
                            closed_at: None,
                            reopened: 0,
                        },
                    );
                    summary.new += 1;
                }
            }
        }
        // Open tasks whose anomaly is gone (among the rules this sweep ran) are resolved.
        for t in self.tasks.values_mut() {
            if matches!(t.status, Status::Open | Status::Backlog)
                && swept.contains(&t.rule)
                && !found.contains(&t.task_id)
            {
                t.status = Status::Closed;
                t.outcome = Some(Outcome::ResolvedInData);
                t.closed_at = Some(as_of_s.clone());
                summary.resolved_in_data += 1;
            }
        }
        self.assign(store)?;
        summary.workers = self.fill_lists(opts);
        summary.unassigned = self
            .tasks
            .values()
            .filter(|t| t.status != Status::Closed && t.worker_id.is_none())
            .count();
        self.runs.push(RunSummaryRecord {
            as_of: as_of_s,
            new: summary.new,
            resolved_in_data: summary.resolved_in_data,
            reopened: summary.reopened,
        });
        Ok(summary)
    }

    /// Assigns every task that is not closed to its grid's worker, or the B role.
    fn assign(&mut self, store: &Store) -> Result<()> {
        let workers = store.table(TableId::Workers);
        let grids = store.table(TableId::Grids).strings("grid_code")?;
        let ids = workers.strings("worker_id")?;
        let active = workers.bools("active")?;
        let employment = workers.codes("employment")?;
        let grid = workers.keys("grid_code")?;
        let partner = workers.keys("partner_grid_code")?;
        // Grid code → (own candidates, partner candidates), best first.
        let mut own: BTreeMap<&str, Vec<(i8, &str)>> = BTreeMap::new();
        let mut cover: BTreeMap<&str, Vec<(i8, &str)>> = BTreeMap::new();
        for w in 0..workers.rows {
            if !active.value(w) {
                continue;
            }
            let key = (employment.value(w), ids.value(w));
            own.entry(grids.value(grid[w] as usize))
                .or_default()
                .push(key);
            if partner[w] != NONE {
                cover
                    .entry(grids.value(partner[w] as usize))
                    .or_default()
                    .push(key);
            }
        }
        for t in self.tasks.values_mut() {
            if t.status == Status::Closed {
                continue;
            }
            let pick = |m: &BTreeMap<&str, Vec<(i8, &str)>>| {
                m.get(t.grid_code.as_str())
                    .and_then(|v| v.iter().min().map(|(_, id)| id.to_string()))
            };
            (t.worker_id, t.assignment) = match (pick(&own), pick(&cover)) {
                (Some(w), _) => (Some(w), Assignment::Own),
                (None, Some(w)) => (Some(w), Assignment::BRole),
                (None, None) => (None, Assignment::Unassigned),
            };
        }
        Ok(())
    }

    /// Gives each worker at most `daily_limit` open tasks, highest priority first.
    fn fill_lists(&mut self, opts: &TaskOptions) -> Vec<WorkerSummary> {
        let mut by_worker: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.tasks.values() {
            if t.status != Status::Closed
                && let Some(w) = &t.worker_id
            {
                by_worker
                    .entry(w.clone())
                    .or_default()
                    .push(t.task_id.clone());
            }
        }
        let mut out = Vec::new();
        for (worker, mut ids) in by_worker {
            ids.sort_by_cached_key(|a| order_key(&self.tasks[a]));
            let mut s = WorkerSummary {
                worker_id: worker.clone(),
                grid_code: String::new(),
                open: 0,
                backlog: 0,
                priority_1: 0,
            };
            for (k, id) in ids.iter().enumerate() {
                if let Some(t) = self.tasks.get_mut(id) {
                    if t.assignment == Assignment::Own {
                        s.grid_code = t.grid_code.clone();
                    }
                    if k < opts.daily_limit {
                        t.status = Status::Open;
                        s.open += 1;
                        if t.priority == 1 {
                            s.priority_1 += 1;
                        }
                    } else {
                        t.status = Status::Backlog;
                        s.backlog += 1;
                    }
                }
            }
            out.push(s);
        }
        for t in self.tasks.values_mut() {
            if t.status != Status::Closed && t.worker_id.is_none() {
                t.status = Status::Open;
            }
        }
        out
    }

    /// A worker closes a task.
    pub fn close(
        &mut self,
        task_id: &str,
        outcome: Outcome,
        note: Option<String>,
        at: i64,
    ) -> Result<&Task> {
        let t = self
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| Error::param("task_id", format!("no task {task_id:?}")))?;
        if t.status == Status::Closed {
            return Err(Error::param(
                "task_id",
                format!(
                    "task {task_id} is already closed ({})",
                    t.outcome.map_or("", Outcome::as_str)
                ),
            ));
        }
        t.status = Status::Closed;
        t.outcome = Some(outcome);
        t.note = note;
        t.closed_at = Some(time::format_timestamp(at));
        Ok(t)
    }

    /// Whether any sweep has been applied yet.
    pub fn has_runs(&self) -> bool {
        !self.runs.is_empty()
    }

    /// A worker's tasks (all, or with one status), in the order the worker works them.
    pub fn for_worker(&self, worker_id: &str, status: Option<Status>) -> Vec<&Task> {
        let mut v: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| {
                t.worker_id.as_deref() == Some(worker_id) && status.is_none_or(|s| t.status == s)
            })
            .collect();
        v.sort_by_cached_key(|t| order_key(t));
        v
    }
}

/// The order of a worker's list: priority, older evidence, subject, as `rules.md` says, but
/// with identity numbers inside subjects masked and the keyed task id last, so that neither the
/// order nor which tasks wait in the backlog follows an identity number.
fn order_key(t: &Task) -> (i32, i64, String, String) {
    (
        t.priority,
        -t.weight,
        mask_identities_in_text(&t.subject_id),
        t.task_id.clone(),
    )
}

fn refresh(t: &mut Task, a: &Anomaly, grid_code: &str, as_of: &str) {
    t.weight = a.weight;
    t.priority = a.rule.priority();
    t.evidence = a.evidence.clone();
    t.grid_code = grid_code.to_string();
    t.last_found_at = as_of.to_string();
}

fn reopen(t: &mut Task) {
    t.status = Status::Open;
    t.outcome = None;
    t.closed_at = None;
    t.note = None;
    t.reopened += 1;
}

/// The schema of the `tasks` table.
pub fn tasks_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    let text = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    std::sync::Arc::new(Schema::new(vec![
        text("task_id", false),
        text("rule", false),
        text("rule_name", false),
        text("subject_kind", false),
        text("subject_id", false),
        text("grid_code", false),
        text("worker_id", true),
        text("assignment", false),
        Field::new("priority", DataType::Int32, false),
        Field::new("weight", DataType::Int64, false),
        text("evidence", false),
        text("status", false),
        text("outcome", true),
        text("note", true),
        text("opened_at", false),
        text("last_found_at", false),
        text("closed_at", true),
        Field::new("reopened", DataType::UInt32, false),
    ]))
}

/// Tasks as the `tasks` table.
pub fn tasks_batch<'a>(tasks: impl Iterator<Item = &'a Task>) -> Result<arrow::array::RecordBatch> {
    use arrow::array::{ArrayRef, Int32Builder, Int64Builder, StringBuilder, UInt32Builder};
    let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut text: Vec<StringBuilder> = (0..15).map(|_| StringBuilder::new()).collect();
    let (mut priority, mut weight, mut reopened) = (
        Int32Builder::new(),
        Int64Builder::new(),
        UInt32Builder::new(),
    );
    for t in tasks {
        text[0].append_value(&t.task_id);
        text[1].append_value(&t.rule);
        text[2].append_value(&t.rule_name);
        text[3].append_value(&t.subject_kind);
        text[4].append_value(&t.subject_id);
        text[5].append_value(&t.grid_code);
        text[6].append_option(t.worker_id.as_deref());
        text[7].append_value(name(serde_json::to_value(t.assignment)?));
        text[8].append_value(t.evidence.to_string());
        text[9].append_value(name(serde_json::to_value(t.status)?));
        text[10].append_option(t.outcome.map(Outcome::as_str));
        text[11].append_option(t.note.as_deref());
        text[12].append_value(&t.opened_at);
        text[13].append_value(&t.last_found_at);
        text[14].append_option(t.closed_at.as_deref());
        priority.append_value(t.priority);
        weight.append_value(t.weight);
        reopened.append_value(t.reopened);
    }
    let mut cols: Vec<ArrayRef> = text
        .iter_mut()
        .map(|b| std::sync::Arc::new(b.finish()) as ArrayRef)
        .collect();
    let tail = cols.split_off(8);
    cols.push(std::sync::Arc::new(priority.finish()));
    cols.push(std::sync::Arc::new(weight.finish()));
    cols.extend(tail);
    cols.push(std::sync::Arc::new(reopened.finish()));
    Ok(arrow::array::RecordBatch::try_new(tasks_schema(), cols)?)
}
