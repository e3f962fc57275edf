//! A sweep applied to the task lists: tasks opened, kept, reopened and resolved, assigned to
//! their grid's worker, and each worker's list filled.
//!
//! A sweep worked out from the sweep applied last ([`crate::rules::SweepBase`]: the same
//! instant, every rule, the same findings outside the grids the rules ran in again) is applied
//! in those grids alone, with the grids of tasks closed since: a task elsewhere is found as
//! before, so it stays as it is, and only the lists of workers holding a task of those grids
//! are filled again. Any other sweep (the first after opening the book, another instant, other
//! workers) is applied whole. Both leave the book alike, and so do their summaries.

use super::{
    Assignment, Outcome, RunSummary, RunSummaryRecord, Status, Task, TaskBook, TaskOptions,
    WorkerSummary, order_key,
};
use crate::contract::TableId;
use crate::error::Result;
use crate::rules::{Anomaly, Sweep};
use crate::store::{NONE, Store};
use crate::time;
use ahash::{AHashMap, AHashSet};
use arrow::array::Array;
use roaring::RoaringBitmap;
use std::collections::{BTreeMap, BTreeSet};

/// Who takes a grid's tasks: per grid code, the worker and how.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Assigner(AHashMap<String, (String, Assignment)>);

impl Assigner {
    /// The grid's active worker; if none, the active worker whose `partner_grid_code` is the
    /// grid (B role); among several, the full-time one with the smallest `worker_id`.
    fn of(store: &Store) -> Result<Assigner> {
        let workers = store.table(TableId::Workers);
        let grids = store.table(TableId::Grids).strings("grid_code")?;
        let ids = workers.strings("worker_id")?;
        let active = workers.bools("active")?;
        let employment = workers.codes("employment")?;
        let grid = workers.keys("grid_code")?;
        let partner = workers.keys("partner_grid_code")?;
        let mut own: BTreeMap<&str, (i8, &str)> = BTreeMap::new();
        let mut cover: BTreeMap<&str, (i8, &str)> = BTreeMap::new();
        for w in 0..workers.rows {
            if !active.value(w) {
                continue;
            }
            let key = (employment.value(w), ids.value(w));
            best(&mut own, grids.value(grid[w] as usize), key);
            if partner[w] != NONE {
                best(&mut cover, grids.value(partner[w] as usize), key);
            }
        }
        let mut out: AHashMap<String, (String, Assignment)> = cover
            .into_iter()
            .map(|(g, (_, w))| (g.to_string(), (w.to_string(), Assignment::BRole)))
            .collect();
        for (g, (_, w)) in own {
            out.insert(g.to_string(), (w.to_string(), Assignment::Own));
        }
        Ok(Assigner(out))
    }

    fn assign(&self, t: &mut Task) {
        (t.worker_id, t.assignment) = match self.0.get(&t.grid_code) {
            Some((w, a)) => (Some(w.clone()), *a),
            None => (None, Assignment::Unassigned),
        };
    }
}

/// Keeps the better of two candidates for a grid.
fn best<'a>(m: &mut BTreeMap<&'a str, (i8, &'a str)>, grid: &'a str, key: (i8, &'a str)) {
    let e = m.entry(grid).or_insert(key);
    *e = (*e).min(key);
}

/// What the book keeps of the last sweep applied, for the next one that follows it.
#[derive(Debug, Clone)]
pub(super) struct Applied {
    sweep: u64,
    as_of: i64,
    opts: (usize, i64),
    assigner: Assigner,
    /// Tasks closed as false alarms whose findings were left closed.
    suppressed: AHashSet<String>,
    /// Every worker's list.
    workers: BTreeMap<String, WorkerSummary>,
}

/// The grids a sweep is applied in: every one, or some (as rows and as codes).
enum Region {
    All,
    Some(RoaringBitmap, AHashSet<String>),
}

impl Region {
    fn has_row(&self, grid: u32) -> bool {
        match self {
            Region::All => true,
            Region::Some(rows, _) => rows.contains(grid),
        }
    }

    fn has(&self, grid_code: &str) -> bool {
        match self {
            Region::All => true,
            Region::Some(_, codes) => codes.contains(grid_code),
        }
    }
}

impl TaskBook {
    /// Applies a sweep: opens, keeps, reopens and resolves tasks, assigns them and fills each
    /// worker's list (saved with the next [`TaskBook::save`]).
    pub fn apply(
        &mut self,
        store: &Store,
        sweep: &Sweep,
        opts: &TaskOptions,
    ) -> Result<RunSummary> {
        let as_of = sweep.as_of;
        let as_of_s = time::format_timestamp(as_of);
        let swept: BTreeSet<&str> = sweep.runs.iter().map(|r| r.rule.code()).collect();
        let grids = store.table(TableId::Grids).strings("grid_code")?;
        let assigner = Assigner::of(store)?;
        let settings = (opts.daily_limit, opts.false_alarm_days);
        let last = self.last.take().filter(|l| {
            sweep.base.as_ref().is_some_and(|b| b.sweep == l.sweep)
                && l.as_of == as_of
                && l.opts == settings
                && l.assigner == assigner
                && crate::rules::incremental::is_full(sweep)
        });
        let region = match (&last, &sweep.base) {
            (Some(_), Some(b)) => {
                let mut rows = b.grids.clone();
                if !self.dirty.is_empty() {
                    for g in 0..grids.len() {
                        if self.dirty.contains(grids.value(g)) {
                            rows.insert(g as u32);
                        }
                    }
                }
                let mut codes: AHashSet<String> = rows
                    .iter()
                    .map(|g| grids.value(g as usize).to_string())
                    .collect();
                codes.extend(self.dirty.iter().cloned());
                Region::Some(rows, codes)
            }
            _ => Region::All,
        };
        let whole = matches!(region, Region::All);
        let open_before = self
            .tasks
            .values()
            .filter(|t| t.status != Status::Closed)
            .count();
        let mut summary = RunSummary {
            as_of: as_of_s.clone(),
            ..RunSummary::default()
        };
        // What the apply changes, for the journal: each task as it was before, when not whole.
        let mut before: AHashMap<String, Option<Task>> = AHashMap::new();
        let mut keep = |t: Option<&Task>, id: &str| {
            if !whole && !before.contains_key(id) {
                before.insert(id.to_string(), t.cloned());
            }
        };
        let mut found: AHashSet<String> = AHashSet::new();
        let mut suppressed: AHashSet<String> = AHashSet::new();
        for a in sweep.anomalies.iter().filter(|a| region.has_row(a.grid)) {
            let id = self.task_id(a.rule, &a.subject_id);
            found.insert(id.clone());
            let grid_code = grids.value(a.grid as usize);
            keep(self.tasks.get(&id), &id);
            match self.tasks.get_mut(&id) {
                Some(t) => {
                    refresh(t, a, grid_code, &as_of_s);
                    match (t.status, t.outcome) {
                        (Status::Open | Status::Backlog, _) => summary.still_open += 1,
                        (Status::Closed, Some(Outcome::FalseAlarm)) => {
                            let closed = t
                                .closed_at
                                .as_deref()
                                .and_then(|c| time::parse_timestamp(c).ok());
                            if closed.is_some_and(|c| as_of < c + opts.false_alarm_days * time::DAY)
                            {
                                suppressed.insert(id);
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
                    self.tasks
                        .insert(id.clone(), new_task(id, a, grid_code, &as_of_s));
                    summary.new += 1;
                }
            }
        }
        // Open tasks whose finding is gone (among the rules this sweep ran) are resolved; the
        // tasks of the region are assigned again, and their workers' lists filled again.
        let mut workers: AHashSet<String> = AHashSet::new();
        for t in self.tasks.values_mut() {
            if !region.has(&t.grid_code) {
                continue;
            }
            if matches!(t.status, Status::Open | Status::Backlog)
                && swept.contains(t.rule.as_str())
                && !found.contains(&t.task_id)
            {
                keep(Some(t), &t.task_id);
                t.status = Status::Closed;
                t.outcome = Some(Outcome::ResolvedInData);
                t.closed_at = Some(as_of_s.clone());
                summary.resolved_in_data += 1;
            }
            if let Some(w) = &t.worker_id {
                workers.insert(w.clone());
            }
            if t.status != Status::Closed {
                keep(Some(t), &t.task_id);
                assigner.assign(t);
                if let Some(w) = &t.worker_id {
                    workers.insert(w.clone());
                }
            }
        }
        let lists = self.fill_lists(opts, (!whole).then_some(&workers), &region, &mut keep);
        // The last apply's lists and false alarms are taken over, not copied (this is per batch).
        let (mut lists_now, kept_suppressed) = match last {
            Some(l) => (l.workers, Some(l.suppressed)),
            None => (BTreeMap::new(), None),
        };
        for w in &workers {
            lists_now.remove(w);
        }
        lists_now.extend(lists.into_iter().map(|s| (s.worker_id.clone(), s)));
        if let Some(kept) = kept_suppressed {
            // Elsewhere the findings are the last sweep's: its open tasks are all found again,
            // and its false alarms left closed are left closed again.
            summary.still_open = open_before - summary.resolved_in_data;
            suppressed.extend(kept.into_iter().filter(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|t| !region.has(&t.grid_code))
            }));
        }
        summary.suppressed = suppressed.len();
        if let Region::Some(rows, _) = &region {
            summary.grids_looked_at = Some(rows.len());
        }
        summary.workers = lists_now.values().cloned().collect();
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
        self.disk.runs += 1;
        if whole {
            self.disk.all = true;
        } else {
            for (id, was) in before {
                if self.tasks.get(&id) != was.as_ref() {
                    self.disk.pending.insert(id);
                }
            }
        }
        self.dirty.clear();
        self.last = Some(Applied {
            sweep: sweep.id,
            as_of,
            opts: settings,
            assigner,
            suppressed,
            workers: lists_now,
        });
        Ok(summary)
    }

    /// Gives each worker (of `only`, or every one) at most `daily_limit` open tasks, highest
    /// priority first; a task of the region without a worker is open. `keep` is told of each
    /// task before it changes.
    fn fill_lists(
        &mut self,
        opts: &TaskOptions,
        only: Option<&AHashSet<String>>,
        region: &Region,
        keep: &mut impl FnMut(Option<&Task>, &str),
    ) -> Vec<WorkerSummary> {
        let mut by_worker: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
        for t in self.tasks.values() {
            if t.status != Status::Closed
                && let Some(w) = &t.worker_id
                && only.is_none_or(|o| o.contains(w))
            {
                by_worker.entry(w).or_default().push(t);
            }
        }
        let mut out = Vec::new();
        let mut statuses: Vec<(String, Status)> = Vec::new();
        for (worker, mut tasks) in by_worker {
            tasks.sort_by_cached_key(|t| order_key(t));
            let mut s = WorkerSummary {
                worker_id: worker.to_string(),
                grid_code: String::new(),
                open: 0,
                backlog: 0,
                priority_1: 0,
            };
            for (k, t) in tasks.iter().enumerate() {
                if t.assignment == Assignment::Own {
                    s.grid_code = t.grid_code.clone();
                }
                let status = if k < opts.daily_limit {
                    s.open += 1;
                    if t.priority == 1 {
                        s.priority_1 += 1;
                    }
                    Status::Open
                } else {
                    s.backlog += 1;
                    Status::Backlog
                };
                if t.status != status {
                    statuses.push((t.task_id.clone(), status));
                }
            }
            out.push(s);
        }
        for (id, status) in statuses {
            keep(self.tasks.get(&id), &id);
            if let Some(t) = self.tasks.get_mut(&id) {
                t.status = status;
            }
        }
        for t in self.tasks.values_mut() {
            if t.status == Status::Backlog && t.worker_id.is_none() && region.has(&t.grid_code) {
                keep(Some(t), &t.task_id);
                t.status = Status::Open;
            }
        }
        out
    }
}

fn new_task(id: String, a: &Anomaly, grid_code: &str, as_of: &str) -> Task {
    Task {
        task_id: id,
        rule: a.rule.code().into(),
        rule_name: a.rule.name().into(),
        subject_kind: a.rule.subject_kind().into(),
        subject_id: a.subject_id.clone(),
        grid_code: grid_code.to_string(),
        worker_id: None,
        assignment: Assignment::Unassigned,
        priority: a.rule.priority(),
        weight: a.weight,
        evidence: (*a.evidence).clone(),
        status: Status::Open,
        outcome: None,
        note: None,
        opened_at: as_of.to_string(),
        last_found_at: as_of.to_string(),
        closed_at: None,
        reopened: 0,
    }
}

fn refresh(t: &mut Task, a: &Anomaly, grid_code: &str, as_of: &str) {
    t.weight = a.weight;
    t.priority = a.rule.priority();
    t.evidence = (*a.evidence).clone();
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
