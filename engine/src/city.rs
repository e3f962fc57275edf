//! One version of the city: the loaded [`Store`] with the parameters its rules and KPIs run
//! with, and what they computed, cached per `as_of` so that the sweep, the SLA clocks and the
//! grid KPIs are computed once and shared by every caller (each then sees them through its
//! [`View`]).

use crate::contract::TableId;
use crate::error::Result;
use crate::hierarchy::Level;
use crate::kpis::{self, GridCounts, GridRollup, GroupBy, IncidentQuery, KpiParams};
use crate::rules::{self, Params, RuleId, Sweep};
use crate::scope::View;
use crate::sla::{self, Clocks, NO_TIME, STATE_NAMES, Stage};
use crate::store::{NONE, Store};
use arrow::array::{ArrayRef, RecordBatch, StringBuilder, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use hashbrown::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

/// A sweep's `as_of` and rules.
type SweepKey = (i64, Vec<RuleId>);
/// Incident KPIs' `as_of`, groups, period and code.
type IncidentKey = (i64, Vec<GroupBy>, Option<i64>, Option<i64>, Option<String>);

/// One version of the city: the store, the parameters its rules and KPIs run with, and what
/// they computed (sweeps, SLA clocks, grid counts and roll-ups), cached per `as_of`.
pub struct City {
    store: Arc<Store>,
    /// Rule parameters.
    pub params: Params,
    /// KPI weights and windows.
    pub kpi_params: KpiParams,
    sweeps: Mutex<HashMap<SweepKey, Arc<Sweep>>>,
    clocks: Mutex<HashMap<i64, Arc<Clocks>>>,
    grids: Mutex<HashMap<i64, Arc<Vec<GridCounts>>>>,
    rollups: Mutex<HashMap<(i64, Level), Arc<GridRollup>>>,
    incidents: Mutex<HashMap<IncidentKey, Arc<RecordBatch>>>,
    latest: RwLock<Option<Arc<Sweep>>>,
    /// Held while computing into the sweeps, clocks, grids, roll-up and incident KPI caches.
    computing: [Mutex<()>; 5],
}

impl fmt::Debug for City {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("City").finish_non_exhaustive()
    }
}

fn cached<K: std::hash::Hash + Eq + Clone, V>(
    cache: &Mutex<HashMap<K, Arc<V>>>,
    computing: &Mutex<()>,
    key: K,
    compute: impl FnOnce() -> Result<V>,
) -> Result<Arc<V>> {
    cached_up_to(8, cache, computing, key, compute)
}

/// [`cached`], keeping up to `kept` values (a few `as_of` values are used at a time; the
/// incident KPIs of a dashboard come in many groupings and codes).
fn cached_up_to<K: std::hash::Hash + Eq + Clone, V>(
    kept: usize,
    cache: &Mutex<HashMap<K, Arc<V>>>,
    computing: &Mutex<()>,
    key: K,
    compute: impl FnOnce() -> Result<V>,
) -> Result<Arc<V>> {
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(v);
    }
    // One computation at a time per cache: callers asking for the same value at once wait for
    // the first instead of computing it again.
    let _computing = computing.lock();
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(v);
    }
    let v = Arc::new(compute()?);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= kept {
            c.clear();
        }
        c.insert(key, v.clone());
    }
    Ok(v)
}

impl City {
    /// Over a store, with default parameters.
    pub fn new(store: Arc<Store>) -> City {
        City {
            store,
            params: Params::default(),
            kpi_params: KpiParams::default(),
            sweeps: Mutex::default(),
            clocks: Mutex::default(),
            grids: Mutex::default(),
            rollups: Mutex::default(),
            incidents: Mutex::default(),
            latest: RwLock::default(),
            computing: Default::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A sweep (all rules if `rules` is empty). A sweep of every rule at an instant of a day
    /// already swept follows the nearest sweep of that day as the clock moves
    /// ([`crate::rules::incremental::advance`]): the same findings as a full sweep.
    pub fn sweep(&self, as_of: i64, rules: &[RuleId]) -> Result<Arc<Sweep>> {
        let mut key_rules = rules.to_vec();
        key_rules.sort();
        cached(&self.sweeps, &self.computing[0], (as_of, key_rules), || {
            if rules.is_empty()
                && let Some(prev) = self.same_day(as_of)
            {
                return crate::rules::incremental::advance(&prev, &self.store, as_of);
            }
            rules::sweep(&self.store, as_of, rules, &self.params)
        })
    }

    /// The cached sweep of every rule nearest to `as_of` on its day.
    fn same_day(&self, as_of: i64) -> Option<Arc<Sweep>> {
        let day = crate::time::date_of(as_of);
        let cache = self.sweeps.lock().ok()?;
        cache
            .iter()
            .filter(|((t, rules), _)| rules.is_empty() && crate::time::date_of(*t) == day)
            .min_by_key(|((t, _), _)| (t - as_of).abs())
            .map(|(_, s)| s.clone())
    }

    /// The sweep of this city, the version after `before` with a batch of `table` (`rows`, as
    /// sent), at the dataset's `as_of`: worked out from `before`'s latest sweep in the grids the
    /// batch touched ([`crate::rules::incremental`]), or a full sweep when that one cannot be
    /// followed (another instant, other parameters, not every rule). Recorded as the latest.
    pub fn sweep_after(
        &self,
        before: &City,
        table: crate::contract::TableId,
        rows: &crate::ingest::Rows,
    ) -> Result<Arc<Sweep>> {
        use crate::rules::incremental;
        let as_of = self.store.as_of;
        let prev = before.latest()?;
        let sweep =
            if prev.as_of == as_of && prev.params == self.params && incremental::is_full(&prev) {
                let grids = crate::ingest::touched::grids(
                    &before.store,
                    &self.store,
                    table,
                    rows,
                    &prev.anomalies,
                );
                let rules = incremental::rules_changed_by(table);
                incremental::resweep(&prev, &before.store, &self.store, &grids, rules)?
            } else {
                rules::sweep(&self.store, as_of, &[], &self.params)?
            };
        let sweep = Arc::new(sweep);
        if let Ok(mut c) = self.sweeps.lock() {
            c.insert((as_of, Vec::new()), sweep.clone());
        }
        self.set_latest(sweep.clone());
        // The SLA clocks read incidents alone: a batch that reloaded no incidents keeps them.
        if !crate::load::tables_to_reload(&[table]).contains(&TableId::Incidents)
            && let (Ok(was), Ok(mut now)) = (before.clocks.lock(), self.clocks.lock())
        {
            for (k, v) in was.iter() {
                now.entry(*k).or_insert_with(|| v.clone());
            }
        }
        Ok(sweep)
    }

    /// The latest sweep: the one last recorded with [`City::set_latest`], else a full sweep
    /// at the dataset's `as_of`.
    pub fn latest(&self) -> Result<Arc<Sweep>> {
        if let Some(s) = self.latest.read().ok().and_then(|l| l.clone()) {
            return Ok(s);
        }
        self.sweep(self.store.as_of, &[])
    }

    /// Records a sweep as the latest (the `anomalies` table).
    pub fn set_latest(&self, sweep: Arc<Sweep>) {
        if let Ok(mut l) = self.latest.write() {
            *l = Some(sweep);
        }
    }

    /// The SLA clocks of every incident.
    pub fn clocks(&self, as_of: i64) -> Result<Arc<Clocks>> {
        cached(&self.clocks, &self.computing[1], as_of, || {
            sla::clocks(&self.store, as_of)
        })
    }

    /// Per-grid KPI counts.
    pub fn grid_counts(&self, as_of: i64) -> Result<Arc<Vec<GridCounts>>> {
        cached(&self.grids, &self.computing[2], as_of, || {
            let sweep = self.sweep(as_of, &[])?;
            let clocks = self.clocks(as_of)?;
            kpis::grid_counts(&self.store, &sweep, &clocks, &self.kpi_params)
        })
    }

    /// The per-grid counts at the dataset's `as_of` of a version made from `before` by a batch
    /// for `table`: for door events (which no count reads) with the latest sweep worked out
    /// from `before`'s ([`City::sweep_after`]), `before`'s counts with those that read the
    /// sweep worked out again in the grids it ran in again; otherwise counted whole.
    pub fn grid_counts_after(&self, before: &City, table: TableId) -> Result<Arc<Vec<GridCounts>>> {
        let as_of = self.store.as_of;
        let counted = before
            .grids
            .lock()
            .ok()
            .and_then(|c| c.get(&as_of).cloned());
        let sweep = self.latest()?;
        match (counted, &sweep.base) {
            (Some(counted), Some(base))
                if table == TableId::AccessEvents
                    && sweep.as_of == as_of
                    && sweep.params == self.params
                    && before.kpi_params == self.kpi_params
                    && before.latest()?.id == base.sweep =>
            {
                cached(&self.grids, &self.computing[2], as_of, || {
                    Ok(kpis::grid_counts_after(
                        &counted,
                        &self.store,
                        &sweep,
                        &base.grids,
                    ))
                })
            }
            _ => self.grid_counts(as_of),
        }
    }

    /// Grid KPIs at a level, optionally inside one code. The city-wide roll-up of a level is kept,
    /// so asking for one street is a slice of it.
    pub fn grid_kpis(&self, as_of: i64, level: Level, within: Option<&str>) -> Result<RecordBatch> {
        let rollup = cached(&self.rollups, &self.computing[3], (as_of, level), || {
            let counts = self.grid_counts(as_of)?;
            Ok(GridRollup::new(
                &counts,
                &self.store,
                level,
                &self.kpi_params,
            ))
        })?;
        rollup.batch(&self.store, within, &self.kpi_params)
    }

    /// Incident KPIs.
    pub fn incident_kpis(
        &self,
        as_of: i64,
        group_by: Vec<GroupBy>,
        from: Option<i64>,
        to: Option<i64>,
        within: Option<String>,
    ) -> Result<RecordBatch> {
        let key = (as_of, group_by.clone(), from, to, within.clone());
        let batch = cached_up_to(256, &self.incidents, &self.computing[4], key, || {
            let clocks = self.clocks(as_of)?;
            kpis::incident_kpis(
                &self.store,
                &clocks,
                &IncidentQuery {
                    group_by,
                    from,
                    to,
                    within,
                    params: self.kpi_params.clone(),
                },
            )
        })?;
        Ok(batch.as_ref().clone())
    }

    /// One row per incident and stage.
    pub fn incident_stages(&self, as_of: i64) -> Result<RecordBatch> {
        let clocks = self.clocks(as_of)?;
        stages_batch(&self.store, &clocks)
    }

    /// Grid KPIs at a level as a caller sees them: inside the narrower of the code asked for
    /// and the caller's scope (refused when they do not overlap), only units inside the scope.
    pub fn grid_kpis_for(
        &self,
        view: &View,
        as_of: i64,
        level: Level,
        asked: Option<&str>,
    ) -> Result<RecordBatch> {
        let within = view.scope().narrow(asked)?;
        let b = self.grid_kpis(as_of, level, within.as_deref())?;
        Ok(view.restrict(b, "code")?)
    }

    /// Incident KPIs over the incidents inside the caller's scope, optionally inside one code
    /// of it (`asked`; a code outside the scope is [`crate::Error::Forbidden`]).
    pub fn incident_kpis_for(
        &self,
        view: &View,
        as_of: i64,
        group_by: Vec<GroupBy>,
        (from, to): (Option<i64>, Option<i64>),
        asked: Option<&str>,
    ) -> Result<RecordBatch> {
        let within = view.scope().narrow(asked)?;
        self.incident_kpis(as_of, group_by, from, to, within)
    }

    /// Stages past their deadline and still open (超期未结), inside some grids (`None`: all):
    /// how many, and the first `listed` by deadline then incident id, as (incident row, stage,
    /// deadline) — worked out from the clocks without making the stages table.
    pub fn overdue(
        &self,
        as_of: i64,
        grids: Option<&roaring::RoaringBitmap>,
        listed: usize,
    ) -> Result<(usize, Vec<OverdueStage>)> {
        let clocks = self.clocks(as_of)?;
        let t = self.store.table(TableId::Incidents);
        let grid = t.keys("grid_code")?;
        let ids = t.strings("incident_id")?;
        let overdue = sla::State::Overdue as i8;
        let mut found = Vec::new();
        for i in 0..t.rows {
            if grids.is_some_and(|g| grid[i] == NONE || !g.contains(grid[i])) {
                continue;
            }
            for stage in Stage::ALL {
                let c = &clocks.stages[stage as usize];
                if c.state[i] == overdue {
                    found.push((i, stage, c.deadline[i]));
                }
            }
        }
        let total = found.len();
        // Oldest deadline first (none last), then incident id.
        found.sort_by(|a, b| {
            ((a.2 == NO_TIME), a.2, ids.value(a.0)).cmp(&((b.2 == NO_TIME), b.2, ids.value(b.0)))
        });
        found.truncate(listed);
        Ok((total, found))
    }

    /// One row per incident and stage, inside the caller's scope.
    pub fn incident_stages_for(&self, view: &View, as_of: i64) -> Result<RecordBatch> {
        Ok(view.restrict(self.incident_stages(as_of)?, "grid_code")?)
    }
}

/// An overdue stage: the incident's row, the stage, its deadline.
pub type OverdueStage = (usize, Stage, i64);

/// The schema of `incident_stages`.
pub fn stages_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some(crate::contract::TZ.into()));
    Arc::new(Schema::new(vec![
        Field::new("incident_id", DataType::Utf8, false),
        Field::new("grid_code", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("started_at", ts(), true),
        Field::new("ended_at", ts(), true),
        Field::new("deadline", ts(), true),
        Field::new("state", DataType::Utf8, true),
    ]))
}

fn stages_batch(store: &Store, clocks: &Clocks) -> Result<RecordBatch> {
    let t = store.table(TableId::Incidents);
    let ids = t.strings("incident_id")?;
    let grid = t.keys("grid_code")?;
    let grid_codes = store.table(TableId::Grids).strings("grid_code")?;
    let n = t.rows * 4;
    let (mut id, mut g, mut st, mut state) = (
        StringBuilder::with_capacity(n, n * 12),
        StringBuilder::with_capacity(n, n * 15),
        StringBuilder::with_capacity(n, n * 7),
        StringBuilder::with_capacity(n, n * 7),
    );
    let (mut start, mut end, mut deadline) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let opt = |v: i64| (v != NO_TIME).then_some(v);
    for i in 0..t.rows {
        for stage in Stage::ALL {
            let c = &clocks.stages[stage as usize];
            id.append_value(ids.value(i));
            g.append_value(if grid[i] == NONE {
                ""
            } else {
                grid_codes.value(grid[i] as usize)
            });
            st.append_value(stage.name());
            let s = c.state[i];
            state.append_option((s >= 0).then(|| STATE_NAMES[s as usize]));
            start.push(opt(c.start[i]));
            end.push(opt(c.end[i]));
            deadline.push(opt(c.deadline[i]));
        }
    }
    let ts = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone(crate::contract::TZ))
    };
    Ok(RecordBatch::try_new(
        stages_schema(),
        vec![
            Arc::new(id.finish()),
            Arc::new(g.finish()),
            Arc::new(st.finish()),
            ts(start),
            ts(end),
            ts(deadline),
            Arc::new(state.finish()),
        ],
    )?)
}
