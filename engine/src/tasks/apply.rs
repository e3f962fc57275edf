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
use crate::store::{NONE, Store, StoredTable};
use crate::time;
use ahash::{AHashMap, AHashSet};
use arrow::array::Array;
use roaring::RoaringBitmap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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

    /// The grids whose tasks some workers take.
    fn grids_of<'a>(&'a self, workers: &AHashSet<String>) -> Vec<&'a str> {
        self.0
            .iter()
            .filter(|(_, (w, _))| workers.contains(w))
            .map(|(g, _)| g.as_str())
            .collect()
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

/// The book's tasks by grid, and its counts, kept between applies: a sweep applied in some
/// grids looks at their tasks alone.
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    /// Task ids by grid code.
    by_grid: AHashMap<String, BTreeSet<String>>,
    /// Tasks not closed.
    pub(super) open: usize,
    /// Tasks not closed that no worker holds.
    pub(super) unassigned: usize,
}

impl Index {
    /// The index of every task.
    fn of<'a>(tasks: impl Iterator<Item = &'a Task>) -> Index {
        let mut ix = Index::default();
        for t in tasks {
            ix.add(&t.grid_code, &t.task_id);
            ix.count(Some(t), 1);
        }
        ix
    }

    fn add(&mut self, grid_code: &str, id: &str) {
        match self.by_grid.get_mut(grid_code) {
            Some(ids) => {
                ids.insert(id.to_string());
            }
            None => {
                self.by_grid
                    .insert(grid_code.to_string(), BTreeSet::from([id.to_string()]));
            }
        }
    }

    fn moved(&mut self, from: &str, to: &str, id: &str) {
        if let Some(ids) = self.by_grid.get_mut(from) {
            ids.remove(id);
        }
        self.add(to, id);
    }

    /// Counts a task in (`sign` 1) or out (`sign` -1).
    pub(super) fn count(&mut self, t: Option<&Task>, sign: isize) {
        if let Some(t) = t.filter(|t| t.status != Status::Closed) {
            self.open = self.open.saturating_add_signed(sign);
            if t.worker_id.is_none() {
                self.unassigned = self.unassigned.saturating_add_signed(sign);
            }
        }
    }

    /// The ids of the tasks of some grids.
    fn ids_in<'a>(&self, grids: impl Iterator<Item = &'a str>) -> Vec<String> {
        grids
            .filter_map(|g| self.by_grid.get(g))
            .flatten()
            .cloned()
            .collect()
    }
}

/// Calls `f` on the tasks of `ids` (those of a region, from the [`Index`]), or on every task.
fn each_task(
    tasks: &mut BTreeMap<String, Task>,
    ids: Option<&[String]>,
    mut f: impl FnMut(&mut Task),
) {
    match ids {
        Some(ids) => ids.iter().for_each(|id| {
            if let Some(t) = tasks.get_mut(id) {
                f(t)
            }
        }),
        None => tasks.values_mut().for_each(f),
    }
}

/// What the book keeps of the last sweep applied, for the next one that follows it.
#[derive(Debug, Clone)]
pub(super) struct Applied {
    sweep: u64,
    as_of: i64,
    opts: (usize, i64),
    assigner: Assigner,
    /// The workers and grids the assigner was made from (held, so that a later version
    /// sharing them is known by its buffers and the assigner is not made again).
    made_from: [StoredTable; 2],
    /// Tasks closed as false alarms whose findings were left closed.
    suppressed: AHashSet<String>,
    /// Every worker's list.
    workers: BTreeMap<String, Arc<WorkerSummary>>,
    /// The tasks by grid, and the counts (kept up to date by [`TaskBook::close`]).
    pub(super) index: Index,
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
        let made_from = [
            store.table(TableId::Workers).clone(),
            store.table(TableId::Grids).clone(),
        ];
        let mut last = self.last.take();
        // The last apply's assigner, when the workers and grids are those it was made from.
        let (assigner, reused) = match last.as_mut().filter(|l| {
            l.made_from
                .iter()
                .zip(&made_from)
                .all(|(a, b)| a.is_shared_with(b))
        }) {
            Some(l) => (std::mem::take(&mut l.assigner), true),
            None => (Assigner::of(store)?, false),
        };
        let settings = (opts.daily_limit, opts.false_alarm_days);
        let last = last.filter(|l| {
            sweep.base.as_ref().is_some_and(|b| b.sweep == l.sweep)
                && l.as_of == as_of
                && l.opts == settings
                && (reused || l.assigner == assigner)
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
        // The last apply's index, lists and false alarms are taken over, not copied (this is
        // per batch).
        let (mut index, mut lists_now, kept_suppressed) = match last {
            Some(l) => (Some(l.index), l.workers, Some(l.suppressed)),
            None => (None, BTreeMap::new(), None),
        };
        let open_before = match &index {
            Some(ix) => ix.open,
            None => self
                .tasks
                .values()
                .filter(|t| t.status != Status::Closed)
                .count(),
        };
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
                    if let Some(ix) = index.as_mut().filter(|_| t.grid_code != grid_code) {
                        ix.moved(&t.grid_code, grid_code, &id);
                    }
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
                    if let Some(ix) = index.as_mut() {
                        ix.add(grid_code, &id);
                    }
                    self.tasks
                        .insert(id.clone(), new_task(id, a, grid_code, &as_of_s));
                    summary.new += 1;
                }
            }
        }
        // The tasks of the region: every task, or those the index holds for its grids.
        let in_region: Option<Vec<String>> = match (&index, &region) {
            (Some(ix), Region::Some(_, codes)) => Some(ix.ids_in(codes.iter().map(|c| c.as_str()))),
            _ => None,
        };
        // Open tasks whose finding is gone (among the rules this sweep ran) are resolved; the
        // tasks of the region are assigned again, and their workers' lists filled again.
        let mut workers: AHashSet<String> = AHashSet::new();
        let mut visit = |t: &mut Task| {
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
        };
        each_task(&mut self.tasks, in_region.as_deref(), |t| {
            if region.has(&t.grid_code) {
                visit(t);
            }
        });
        let lists = self.fill_lists(
            opts,
            (!whole).then_some(&workers),
            &region,
            index.as_ref().map(|ix| (ix, &assigner)),
            in_region.as_deref(),
            &mut keep,
        );
        for w in &workers {
            lists_now.remove(w);
        }
        lists_now.extend(
            lists
                .into_iter()
                .map(|s| (s.worker_id.clone(), Arc::new(s))),
        );
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
        // The counts follow the tasks changed; after a whole apply, every task is counted.
        let index = match index {
            Some(mut ix) => {
                for (id, was) in &before {
                    ix.count(was.as_ref(), -1);
                    ix.count(self.tasks.get(id), 1);
                }
                ix
            }
            None => Index::of(self.tasks.values()),
        };
        summary.unassigned = index.unassigned;
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
            made_from,
            suppressed,
            workers: lists_now,
            index,
        });
        Ok(summary)
    }

    /// Gives each worker (of `only`, or every one) at most `daily_limit` open tasks, highest
    /// priority first; a task of the region without a worker is open. `keep` is told of each
    /// task before it changes. With the last apply's `index` (the book's tasks by grid, each
    /// task not closed held by its grid's worker) and the region's tasks `in_region`, only
    /// those tasks are looked at.
    fn fill_lists(
        &mut self,
        opts: &TaskOptions,
        only: Option<&AHashSet<String>>,
        region: &Region,
        index: Option<(&Index, &Assigner)>,
        in_region: Option<&[String]>,
        keep: &mut impl FnMut(Option<&Task>, &str),
    ) -> Vec<WorkerSummary> {
        let mut by_worker: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
        let ids: Vec<String>;
        let looked_at: Box<dyn Iterator<Item = &Task>> = match (index, only) {
            (Some((ix, assigner)), Some(only)) => {
                ids = ix.ids_in(assigner.grids_of(only).into_iter());
                Box::new(ids.iter().filter_map(|id| self.tasks.get(id)))
            }
            _ => Box::new(self.tasks.values()),
        };
        for t in looked_at {
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
        let mut unheld = |t: &mut Task| {
            if t.status == Status::Backlog && t.worker_id.is_none() && region.has(&t.grid_code) {
                keep(Some(t), &t.task_id);
                t.status = Status::Open;
            }
        };
        each_task(&mut self.tasks, in_region, &mut unheld);
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
