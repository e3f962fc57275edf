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
//! - A sweep worked out from the one applied before ([`crate::rules::SweepBase`]) is applied
//!   in the grids where the rules ran again (and those of tasks workers closed since), and only
//!   the lists of the workers of those grids are filled again: the book comes out as a whole
//!   apply leaves it (tested in `tests/incremental.rs`). See [`apply`].
//! - State is a JSON file of the whole book and a journal of the saves since ([`journal`]):
//!   a save is durable when it returns, and a crash mid-save leaves the save before. A lock
//!   file keeps two writers (the command line and the server) from interleaving.

mod apply;
pub mod journal;

use crate::error::{Error, Result};
use crate::rules::RuleId;
use crate::scope::mask::mask_identities_in_text;
use crate::scope::secret::Secret;
use crate::time;
pub use journal::{JOURNAL_FILE, STATE_FILE, SaveStage};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

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
    /// Per worker: (worker_id, grid_code, open, backlog); shared with the book, which keeps
    /// them for the next run.
    #[serde(serialize_with = "shared_summaries")]
    pub workers: Vec<std::sync::Arc<WorkerSummary>>,
    /// The grids whose tasks the run looked at, when not every grid (a sweep that followed
    /// the one applied before: [`apply`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grids_looked_at: Option<u64>,
}

/// Shared worker summaries, serialized as the summaries.
fn shared_summaries<S: serde::Serializer>(
    v: &[std::sync::Arc<WorkerSummary>],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|w| w.as_ref()))
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunSummaryRecord {
    as_of: String,
    new: usize,
    resolved_in_data: usize,
    reopened: usize,
}

/// The task lists of a city, as kept in a state folder.
#[derive(Debug, Clone)]
pub struct TaskBook {
    dir: PathBuf,
    secret: Secret,
    /// Tasks by id.
    pub tasks: BTreeMap<String, Task>,
    runs: Vec<RunSummaryRecord>,
    /// The book on disk and what is not written to it yet.
    disk: Disk,
    /// Grids of the tasks workers closed since the last sweep applied: the next one looks at
    /// them again.
    dirty: BTreeSet<String>,
    /// The last sweep applied, for the next one that follows it ([`TaskBook::apply`]).
    last: Option<apply::Applied>,
}

/// The book on disk and what is not written to it yet.
#[derive(Debug, Clone, Default)]
struct Disk {
    /// The generation of the whole file.
    generation: u64,
    /// Bytes of the whole file (0: none yet).
    base_bytes: u64,
    /// Bytes of the journal.
    journal_bytes: u64,
    /// Tasks changed since the last save.
    pending: BTreeSet<String>,
    /// Every task may have changed (a whole sweep applied).
    all: bool,
    /// Runs recorded since the last save.
    runs: usize,
}

/// Where the SQL `tasks` table reads the task lists from.
#[derive(Debug, Clone)]
pub enum TaskSource {
    /// The book a server holds, read under its lock (a query waits for an apply under way).
    Held(std::sync::Arc<std::sync::Mutex<TaskBook>>),
    /// A state folder's book, read from disk (a command beside a server).
    Folder(PathBuf),
}

impl TaskSource {
    /// The tasks, passed to `f`.
    pub fn with_tasks<T>(&self, f: impl FnOnce(&BTreeMap<String, Task>) -> Result<T>) -> Result<T> {
        match self {
            TaskSource::Held(book) => {
                let book = book
                    .lock()
                    .map_err(|_| Error::Internal("the task lists' lock is poisoned".into()))?;
                f(&book.tasks)
            }
            TaskSource::Folder(dir) if dir.join(STATE_FILE).exists() => {
                f(&TaskBook::read(dir)?.tasks)
            }
            TaskSource::Folder(_) => f(&BTreeMap::new()),
        }
    }
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

    /// Opens the task lists of a state folder to change them (creating it, empty, if new).
    /// What a crash left is dropped: the state is the last complete save.
    pub fn open(dir: &Path) -> Result<TaskBook> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let secret = Secret::open_or_create(dir)?;
        let (book, leftover) = Self::read_with(dir, secret)?;
        journal::clean(dir, leftover)?;
        Ok(book)
    }

    /// Reads the task lists of a state folder without changing anything in it (a reader beside
    /// the writer: the SQL `tasks` table).
    pub fn read(dir: &Path) -> Result<TaskBook> {
        let secret = Secret::open_or_create(dir)?;
        Ok(Self::read_with(dir, secret)?.0)
    }

    fn read_with(dir: &Path, secret: Secret) -> Result<(TaskBook, journal::Leftover)> {
        let mut book = TaskBook {
            dir: dir.to_path_buf(),
            secret,
            tasks: BTreeMap::new(),
            runs: Vec::new(),
            disk: Disk::default(),
            dirty: BTreeSet::new(),
            last: None,
        };
        let Some(d) = journal::read(dir)? else {
            return Ok((book, journal::Leftover::None));
        };
        // State of version 1 had unkeyed ids: they are keyed now (the same tasks, new ids).
        let rekey = d.version < STATE_VERSION;
        let secret = &book.secret;
        book.tasks = journal::tasks_by_id(d.tasks, d.changed, |t| {
            if rekey {
                secret.id("T", &[t.rule.as_str(), t.subject_id.as_str()])
            } else {
                t.task_id.clone()
            }
        });
        if rekey {
            for (id, t) in book.tasks.iter_mut() {
                t.task_id = id.clone();
            }
        }
        book.runs = d.runs;
        book.disk = Disk {
            generation: d.generation,
            base_bytes: d.base_bytes,
            journal_bytes: d.journal_bytes,
            all: rekey,
            ..Disk::default()
        };
        Ok((book, d.leftover))
    }

    /// The stable id of a (rule, subject) in this state folder.
    pub fn task_id(&self, rule: RuleId, subject_id: &str) -> String {
        task_id(&self.secret, rule, subject_id)
    }

    /// Saves what changed since the last save, durably: a line appended to the journal, or the
    /// book written whole when much of it changed or the journal has grown past it.
    pub fn save(&mut self) -> Result<()> {
        let d = &self.disk;
        if !d.all && d.pending.is_empty() && d.runs == 0 {
            return Ok(());
        }
        if d.base_bytes == 0 || d.all || d.pending.len() * 4 > self.tasks.len() {
            return self.save_with(|_| Ok(()));
        }
        let runs = &self.runs[self.runs.len() - d.runs..];
        let tasks = d
            .pending
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .collect();
        let line = journal::entry_line(runs, tasks)?;
        if d.journal_bytes + line.len() as u64 > d.base_bytes.max(1 << 20) {
            return self.save_with(|_| Ok(()));
        }
        self.disk.journal_bytes += journal::append(&self.dir, self.disk.generation, &line)?;
        self.disk.pending.clear();
        self.disk.runs = 0;
        Ok(())
    }

    /// Writes the book whole at its next generation, calling `hook` at each stage (a test
    /// returns an error to simulate a crash there).
    pub fn save_with(&mut self, hook: impl Fn(SaveStage) -> Result<()>) -> Result<()> {
        let generation = self.disk.generation + 1;
        let (base, journal) = journal::write_whole(
            &self.dir,
            generation,
            STATE_VERSION,
            time::format_timestamp(crate::load::now()),
            &self.runs,
            self.tasks.values(),
            hook,
        )?;
        self.disk = Disk {
            generation,
            base_bytes: base,
            journal_bytes: journal,
            ..Disk::default()
        };
        Ok(())
    }

    /// A worker closes a task (saved with the next [`TaskBook::save`]).
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
        if let Some(last) = &mut self.last {
            last.index.count(Some(t), -1);
        }
        t.status = Status::Closed;
        t.outcome = Some(outcome);
        t.note = note;
        t.closed_at = Some(time::format_timestamp(at));
        self.dirty.insert(t.grid_code.clone());
        self.disk.pending.insert(task_id.to_string());
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
