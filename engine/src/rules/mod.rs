//! The twelve cross-matching rules (`spec/rules.md`) and the sweep that evaluates them.
//!
//! One file per rule, each stating its definition in its doc comment. A rule reads the store's
//! dense keys and indexes (a join is an array lookup, a set a roaring bitmap) and returns its
//! anomalies; [`sweep`] runs the chosen rules at an `as_of` and orders the findings.

pub mod r01_unregistered_occupant;
pub mod r02_unregistered_tenant;
pub mod r03_unfiled_rental;
pub mod r04_absent_resident;
pub mod r05_deceased_active;
pub mod r06_duplicate_registration;
pub mod r07_invalid_id_number;
pub mod r08_vacant_but_consuming;
pub mod r09_overcrowded;
pub mod r10_verification_overdue;
pub mod r11_care_visit_overdue;
pub mod r12_empty_household;

pub mod incremental;

use crate::contract::{Mask, TZ, TableId};
use crate::error::{Error, Result};
use crate::store::index::Indexes;
use crate::store::{NONE, Store, StoredTable};
use crate::time;
use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringBuilder, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rayon::prelude::*;
use roaring::RoaringBitmap;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// A rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RuleId {
    /// 实住未登记
    R01,
    /// 租客未登记
    R02,
    /// 出租屋未登记
    R03,
    /// 人走户在
    R04,
    /// 死亡未注销
    R05,
    /// 重复登记
    R06,
    /// 证件号码异常
    R07,
    /// 空置房有能耗
    R08,
    /// 群租
    R09,
    /// 核查超期
    R10,
    /// 关爱走访超期
    R11,
    /// 空挂户
    R12,
}

impl RuleId {
    /// Every rule.
    pub const ALL: [RuleId; 12] = [
        RuleId::R01,
        RuleId::R02,
        RuleId::R03,
        RuleId::R04,
        RuleId::R05,
        RuleId::R06,
        RuleId::R07,
        RuleId::R08,
        RuleId::R09,
        RuleId::R10,
        RuleId::R11,
        RuleId::R12,
    ];

    /// `R01` …
    pub fn code(self) -> &'static str {
        [
            "R01", "R02", "R03", "R04", "R05", "R06", "R07", "R08", "R09", "R10", "R11", "R12",
        ][self as usize]
    }

    /// `UNREGISTERED_OCCUPANT` …
    pub fn name(self) -> &'static str {
        [
            "UNREGISTERED_OCCUPANT",
            "UNREGISTERED_TENANT",
            "UNFILED_RENTAL",
            "ABSENT_RESIDENT",
            "DECEASED_ACTIVE",
            "DUPLICATE_REGISTRATION",
            "INVALID_ID_NUMBER",
            "VACANT_BUT_CONSUMING",
            "OVERCROWDED",
            "VERIFICATION_OVERDUE",
            "CARE_VISIT_OVERDUE",
            "EMPTY_HOUSEHOLD",
        ][self as usize]
    }

    /// 实住未登记 …
    pub fn chinese(self) -> &'static str {
        [
            "实住未登记",
            "租客未登记",
            "出租屋未登记",
            "人走户在",
            "死亡未注销",
            "重复登记",
            "证件号码异常",
            "空置房有能耗",
            "群租",
            "核查超期",
            "关爱走访超期",
            "空挂户",
        ][self as usize]
    }

    /// The kind of subject.
    pub fn subject_kind(self) -> &'static str {
        match self {
            RuleId::R01 => "person_at_building",
            RuleId::R02 => "person_at_room",
            RuleId::R03 | RuleId::R08 | RuleId::R09 => "room",
            RuleId::R12 => "household",
            _ => "person",
        }
    }

    /// 1 (highest) to 3: life and safety first.
    pub fn priority(self) -> i32 {
        match self {
            RuleId::R05 | RuleId::R09 | RuleId::R11 => 1,
            RuleId::R01 | RuleId::R02 | RuleId::R03 | RuleId::R04 | RuleId::R06 => 2,
            _ => 3,
        }
    }

    /// Parses `R01` or `UNREGISTERED_OCCUPANT` (any case).
    pub fn parse(s: &str) -> Option<RuleId> {
        let s = s.trim();
        RuleId::ALL
            .into_iter()
            .find(|r| r.code().eq_ignore_ascii_case(s) || r.name().eq_ignore_ascii_case(s))
    }

    /// Parses a comma-separated list (`R01,R04`).
    pub fn parse_list(s: &str) -> Result<Vec<RuleId>> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let r = RuleId::parse(part).ok_or_else(|| {
                Error::param(
                    "rules",
                    format!("unknown rule {part:?} (expected R01 … R12)"),
                )
            })?;
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Every rule's parameters, with the defaults of `rules.md`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Params {
    /// R01: distinct nights needed.
    pub r01_min_nights: u32,
    /// R01: the window, in days.
    pub r01_window_days: i64,
    /// R02: working days of grace after a lease starts.
    pub r02_grace_working_days: u32,
    /// R04: days without being seen.
    pub r04_absent_days: i64,
    /// R04: the door system is alive if it reported within this many days.
    pub r04_alive_days: i64,
    /// R04: people younger than this are exempt.
    pub r04_min_age: i32,
    /// R04: people this old or older are exempt.
    pub r04_max_age: i32,
    /// R08: kWh a month that counts as consumption.
    pub r08_min_kwh: f64,
    /// R08: complete months before `as_of` that must all reach it.
    pub r08_months: i32,
    /// R09: m² needed per occupant.
    pub r09_min_m2_per_person: f64,
    /// R10: days allowed since the last verification of `hukou` residents.
    pub r10_hukou_days: i64,
    /// R10: days allowed for `floating` and `overseas` residents.
    pub r10_other_days: i64,
    /// R11: days within which a care visit is due.
    pub r11_care_interval_days: i64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            r01_min_nights: 5,
            r01_window_days: 30,
            r02_grace_working_days: 3,
            r04_absent_days: 60,
            r04_alive_days: 7,
            r04_min_age: 6,
            r04_max_age: 80,
            r08_min_kwh: 50.0,
            r08_months: 2,
            r09_min_m2_per_person: 5.0,
            r10_hukou_days: 365,
            r10_other_days: 180,
            r11_care_interval_days: 7,
        }
    }
}

impl Params {
    /// Sets a parameter by name (`r01_min_nights` or `R01.min_nights`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let key = name.trim().to_ascii_lowercase().replace('.', "_");
        let bad = |why: &str| Error::param(name, format!("{value:?} {why}"));
        let int = || {
            value
                .trim()
                .parse::<i64>()
                .map_err(|_| bad("is not a whole number"))
        };
        let pos = || -> Result<i64> {
            let v = int()?;
            if v <= 0 {
                return Err(bad("must be greater than 0"));
            }
            Ok(v)
        };
        let num = || -> Result<f64> {
            match value.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(bad("is not a number ≥ 0")),
            }
        };
        match key.as_str() {
            "r01_min_nights" => self.r01_min_nights = pos()? as u32,
            "r01_window_days" => self.r01_window_days = pos()?,
            "r02_grace_working_days" => self.r02_grace_working_days = int()?.max(0) as u32,
            "r04_absent_days" => self.r04_absent_days = pos()?,
            "r04_alive_days" => self.r04_alive_days = pos()?,
            "r04_min_age" => self.r04_min_age = int()? as i32,
            "r04_max_age" => self.r04_max_age = int()? as i32,
            "r08_min_kwh" => self.r08_min_kwh = num()?,
            "r08_months" => self.r08_months = pos()? as i32,
            "r09_min_m2_per_person" => {
                self.r09_min_m2_per_person = num()?;
                if self.r09_min_m2_per_person <= 0.0 {
                    return Err(bad("must be greater than 0"));
                }
            }
            "r10_hukou_days" => self.r10_hukou_days = pos()?,
            "r10_other_days" => self.r10_other_days = pos()?,
            "r11_care_interval_days" => self.r11_care_interval_days = pos()?,
            _ => {
                return Err(Error::param(
                    name,
                    "unknown rule parameter (see `gridlens sweep --help` for the list)",
                ));
            }
        }
        Ok(())
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    /// The rule.
    pub rule: RuleId,
    /// The subject (see `rules.md`).
    pub subject_id: String,
    /// The subject's grid (row of `grids`).
    pub grid: u32,
    /// Building (row), where it applies.
    pub building: Option<u32>,
    /// Room (row), where it applies.
    pub room: Option<u32>,
    /// Person record (row), where it applies.
    pub person: Option<u32>,
    /// Household (row), where it applies.
    pub household: Option<u32>,
    /// Identity number (pool position), where it applies.
    pub identity: Option<u32>,
    /// How old or how large the evidence is: within a priority, larger first.
    pub weight: i64,
    /// Rule-specific facts (shared: a finding kept from one version's sweep to the next is
    /// not copied).
    #[serde(serialize_with = "shared_value")]
    pub evidence: std::sync::Arc<serde_json::Value>,
}

/// A shared value, serialized as the value.
fn shared_value<S: serde::Serializer>(
    v: &std::sync::Arc<serde_json::Value>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    v.as_ref().serialize(s)
}

/// What a rule sees: the store, its indexes, the instant and the parameters.
pub struct Context<'a> {
    /// The store.
    pub store: &'a Store,
    /// Its indexes.
    pub ix: &'a Indexes,
    /// The instant rules are evaluated at.
    pub as_of: i64,
    /// `date(as_of)`.
    pub today: i32,
    /// Parameters.
    pub params: &'a Params,
    /// The grids evaluated (`None`: every grid). A rule restricted to some grids may look at
    /// more, but must find every anomaly of those grids exactly as a full sweep does
    /// ([`incremental`] keeps those of the grids and drops the rest).
    pub grids: Option<&'a RoaringBitmap>,
}

impl<'a> Context<'a> {
    /// A table.
    pub fn table(&self, t: TableId) -> &'a StoredTable {
        self.store.table(t)
    }

    /// Whether the anomalies of a grid are evaluated.
    pub fn covers(&self, grid: u32) -> bool {
        self.grids.is_none_or(|g| g.contains(grid))
    }

    /// Whether the anomalies of a room's grid are evaluated.
    pub fn covers_room(&self, room: u32) -> bool {
        self.grids.is_none()
            || self
                .ix
                .room_grid
                .get(room as usize)
                .is_some_and(|&g| self.covers(g))
    }

    /// The rows of a table in the grids evaluated; `None` when every grid is.
    pub fn rows_in(&self, t: TableId) -> Option<RoaringBitmap> {
        self.grids
            .map(|g| crate::hierarchy::rows_of_grids(self.store, t, g))
    }

    /// The rows of a table to read, in order: those in the grids evaluated, else all `n`.
    pub fn rows(&self, t: TableId, n: usize) -> impl Iterator<Item = usize> + use<> {
        match self.rows_in(t) {
            Some(rows) => rayon::iter::Either::Left(rows.into_iter().map(|r| r as usize)),
            None => rayon::iter::Either::Right(0..n),
        }
    }

    /// The rows of a table to read, in parallel: those in the grids evaluated, else all `n`
    /// (at least `min_len` rows a task).
    pub fn par_rows(
        &self,
        t: TableId,
        n: usize,
        min_len: usize,
    ) -> impl ParallelIterator<Item = usize> + use<> {
        match self.rows_in(t) {
            Some(rows) => rayon::iter::Either::Left(
                rows.iter()
                    .map(|r| r as usize)
                    .collect::<Vec<_>>()
                    .into_par_iter(),
            ),
            None => rayon::iter::Either::Right((0..n).into_par_iter().with_min_len(min_len)),
        }
    }

    /// The key string of a row of a table with a single-column key.
    pub fn key_of(&self, t: TableId, row: u32) -> String {
        let table = self.store.table(t);
        t.def()
            .single_key()
            .and_then(|k| table.strings(k).ok())
            .map(|s| s.value(row as usize).to_string())
            .unwrap_or_default()
    }

    /// An anomaly about a person record, with its room, building, household and grid.
    pub fn person_anomaly(
        &self,
        rule: RuleId,
        person: u32,
        weight: i64,
        evidence: serde_json::Value,
    ) -> Result<Anomaly> {
        let people = self.table(TableId::People);
        let room = people.keys("room_id")?[person as usize];
        let household = people.keys("household_id")?[person as usize];
        let identity = people.keys("id_number")?[person as usize];
        let building = self.ix.person_building[person as usize];
        Ok(Anomaly {
            rule,
            subject_id: self.key_of(TableId::People, person),
            grid: self.ix.room_grid[room as usize],
            building: Some(building),
            room: Some(room),
            person: Some(person),
            household: (household != NONE).then_some(household),
            identity: Some(identity),
            weight,
            evidence: std::sync::Arc::new(evidence),
        })
    }

    /// An anomaly about a room.
    pub fn room_anomaly(
        &self,
        rule: RuleId,
        room: u32,
        weight: i64,
        evidence: serde_json::Value,
    ) -> Result<Anomaly> {
        let building = self.table(TableId::Rooms).keys("building_id")?[room as usize];
        Ok(Anomaly {
            rule,
            subject_id: self.key_of(TableId::Rooms, room),
            grid: self.ix.room_grid[room as usize],
            building: Some(building),
            room: Some(room),
            person: None,
            household: None,
            identity: None,
            weight,
            evidence: std::sync::Arc::new(evidence),
        })
    }

    /// Where an identity is registered: `[{"room_id": …, "grid_code": …}]` of its active records.
    pub fn registered_places(&self, identity: u32) -> serde_json::Value {
        let people = self.table(TableId::People);
        let rooms = people.keys("room_id").unwrap_or(&[]);
        let places: Vec<serde_json::Value> = self
            .ix
            .active_of_identity
            .get(identity)
            .iter()
            .map(|&p| {
                let r = rooms.get(p as usize).copied().unwrap_or(NONE);
                serde_json::json!({
                    "room_id": self.key_of(TableId::Rooms, r),
                    "grid_code": self.key_of(TableId::Grids, self.ix.room_grid.get(r as usize).copied().unwrap_or(0)),
                })
            })
            .collect();
        serde_json::Value::Array(places)
    }
}

/// The time one rule took and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRun {
    /// The rule.
    pub rule: RuleId,
    /// Findings.
    pub count: usize,
    /// Seconds.
    pub seconds: f64,
}

/// The result of a sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Which sweep it is, unique within the process ([`next_sweep_id`]).
    pub id: u64,
    /// The sweep it was worked out from, if it was ([`crate::rules::incremental`]).
    pub base: Option<SweepBase>,
    /// The instant it was evaluated at.
    pub as_of: i64,
    /// The parameters.
    pub params: Params,
    /// Findings, in task order: priority, then weight (older evidence first), then subject.
    pub anomalies: Vec<Anomaly>,
    /// Per rule, in rule order.
    pub runs: Vec<RuleRun>,
    /// Seconds for the whole sweep.
    pub seconds: f64,
}

/// Where a sweep was worked out from the sweep before it: outside `grids` its findings are
/// that sweep's own, at the same instant with the same parameters. The task lists follow such a
/// sweep in those grids alone ([`crate::tasks::TaskBook::apply`]).
#[derive(Debug, Clone)]
pub struct SweepBase {
    /// The [`Sweep::id`] of the sweep before.
    pub sweep: u64,
    /// The grids (rows of `grids`) where the rules ran again.
    pub grids: RoaringBitmap,
}

/// A new sweep's [`Sweep::id`].
pub fn next_sweep_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Evaluates one rule.
pub fn evaluate(rule: RuleId, ctx: &Context) -> Result<Vec<Anomaly>> {
    match rule {
        RuleId::R01 => r01_unregistered_occupant::evaluate(ctx),
        RuleId::R02 => r02_unregistered_tenant::evaluate(ctx),
        RuleId::R03 => r03_unfiled_rental::evaluate(ctx),
        RuleId::R04 => r04_absent_resident::evaluate(ctx),
        RuleId::R05 => r05_deceased_active::evaluate(ctx),
        RuleId::R06 => r06_duplicate_registration::evaluate(ctx),
        RuleId::R07 => r07_invalid_id_number::evaluate(ctx),
        RuleId::R08 => r08_vacant_but_consuming::evaluate(ctx),
        RuleId::R09 => r09_overcrowded::evaluate(ctx),
        RuleId::R10 => r10_verification_overdue::evaluate(ctx),
        RuleId::R11 => r11_care_visit_overdue::evaluate(ctx),
        RuleId::R12 => r12_empty_household::evaluate(ctx),
    }
}

/// Runs the rules (all if `rules` is empty) at `as_of`.
pub fn sweep(store: &Store, as_of: i64, rules: &[RuleId], params: &Params) -> Result<Sweep> {
    let started = Instant::now();
    let rules: Vec<RuleId> = if rules.is_empty() {
        RuleId::ALL.to_vec()
    } else {
        rules.to_vec()
    };
    let (runs, found) = run(store, as_of, &rules, params, None)?;
    Ok(Sweep {
        id: next_sweep_id(),
        base: None,
        as_of,
        params: params.clone(),
        anomalies: in_task_order(found),
        runs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs some rules, in some grids or all: per rule its run, and the findings in rule order.
pub(crate) fn run(
    store: &Store,
    as_of: i64,
    rules: &[RuleId],
    params: &Params,
    grids: Option<&RoaringBitmap>,
) -> Result<(Vec<RuleRun>, Vec<Anomaly>)> {
    let ctx = Context {
        store,
        ix: &store.indexes,
        as_of,
        today: time::date_of(as_of),
        params,
        grids,
    };
    // The rules run side by side (each also uses rayon inside): a rule's time is its wall time
    // while sharing the cores with the others.
    let results: Vec<(RuleRun, Vec<Anomaly>)> = rules
        .par_iter()
        .map(|&rule| {
            let t = Instant::now();
            let mut found = evaluate(rule, &ctx)?;
            if let Some(g) = grids {
                found.retain(|a| g.contains(a.grid));
            }
            let run = RuleRun {
                rule,
                count: found.len(),
                seconds: t.elapsed().as_secs_f64(),
            };
            Ok((run, found))
        })
        .collect::<Result<_>>()?;
    let mut anomalies = Vec::with_capacity(results.iter().map(|(r, _)| r.count).sum());
    let mut runs = Vec::with_capacity(results.len());
    for (run, found) in results {
        runs.push(run);
        anomalies.extend(found);
    }
    Ok((runs, anomalies))
}

/// Findings in task order: by priority, weight and subject; ties keep the order given (the
/// position makes the key unique, so the faster unstable sort gives the stable order).
pub(crate) fn in_task_order(anomalies: Vec<Anomaly>) -> Vec<Anomaly> {
    let mut keyed: Vec<(usize, Anomaly)> = anomalies.into_iter().enumerate().collect();
    keyed.par_sort_unstable_by(|(i, a), (j, b)| {
        (a.rule.priority(), -a.weight, &a.subject_id, a.rule, i).cmp(&(
            b.rule.priority(),
            -b.weight,
            &b.subject_id,
            b.rule,
            j,
        ))
    });
    keyed.into_iter().map(|(_, a)| a).collect()
}

/// Findings kept from a sweep (in its task order) and findings found again, in the task order
/// that [`in_task_order`] gives the two one after the other: the new ones sorted and merged in,
/// a kept finding first among equals, instead of sorting the whole city's again.
pub(crate) fn merged_in_task_order(kept: Vec<Anomaly>, found: Vec<Anomaly>) -> Vec<Anomaly> {
    fn key(a: &Anomaly) -> (i32, i64, &str, RuleId) {
        (a.rule.priority(), -a.weight, a.subject_id.as_str(), a.rule)
    }
    debug_assert!(kept.windows(2).all(|w| key(&w[0]) <= key(&w[1])));
    let mut out = Vec::with_capacity(kept.len() + found.len());
    let mut found = in_task_order(found).into_iter().peekable();
    for a in kept {
        while let Some(f) = found.next_if(|f| key(f) < key(&a)) {
            out.push(f);
        }
        out.push(a);
    }
    out.extend(found);
    out
}

/// The schema of the `anomalies` table.
pub fn anomalies_schema() -> SchemaRef {
    let text = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        text("rule", false),
        text("rule_name", false),
        text("subject_kind", false),
        text("subject_id", false),
        text("grid_code", false),
        text("building_id", true),
        text("room_id", true),
        text("person_id", true),
        text("household_id", true),
        text("id_number", true),
        Field::new("priority", DataType::Int32, false),
        text("evidence", false),
        Field::new(
            "as_of",
            DataType::Timestamp(TimeUnit::Microsecond, Some(TZ.into())),
            false,
        ),
    ]))
}

impl Sweep {
    /// Findings per rule, in rule order.
    pub fn counts(&self) -> Vec<(RuleId, usize)> {
        self.runs.iter().map(|r| (r.rule, r.count)).collect()
    }

    /// The findings as the `anomalies` table (every one, evidence as found).
    pub fn to_batch(&self, store: &Store) -> Result<RecordBatch> {
        let all: Vec<usize> = (0..self.anomalies.len()).collect();
        self.to_batch_of(store, &all, |e| e.clone())
    }

    /// Some findings (positions in [`Sweep::anomalies`], in the order given) as the `anomalies`
    /// table, each evidence passed through `evidence` (a caller's redaction).
    pub fn to_batch_of(
        &self,
        store: &Store,
        picked: &[usize],
        evidence: impl Fn(&serde_json::Value) -> serde_json::Value,
    ) -> Result<RecordBatch> {
        let n = picked.len();
        let mut cols: Vec<StringBuilder> = (0..12)
            .map(|_| StringBuilder::with_capacity(n, n * 16))
            .collect();
        let key = |t: TableId, r: Option<u32>| -> Option<String> {
            r.map(|r| {
                let table = store.table(t);
                t.def()
                    .single_key()
                    .and_then(|k| table.strings(k).ok())
                    .map(|s| s.value(r as usize).to_string())
                    .unwrap_or_default()
            })
        };
        let mut priority = Vec::with_capacity(n);
        for &i in picked {
            let a = &self.anomalies[i];
            cols[0].append_value(a.rule.code());
            cols[1].append_value(a.rule.name());
            cols[2].append_value(a.rule.subject_kind());
            cols[3].append_value(&a.subject_id);
            cols[4].append_option(key(TableId::Grids, Some(a.grid)));
            cols[5].append_option(key(TableId::Buildings, a.building));
            cols[6].append_option(key(TableId::Rooms, a.room));
            cols[7].append_option(key(TableId::People, a.person));
            cols[8].append_option(key(TableId::Households, a.household));
            cols[9].append_option(a.identity.map(|i| store.identity(i).to_string()));
            priority.push(a.rule.priority());
            cols[10].append_value(evidence(&a.evidence).to_string());
        }
        let mut arrays: Vec<ArrayRef> = cols[..10]
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        arrays.push(Arc::new(Int32Array::from(priority)));
        arrays.push(Arc::new(cols[10].finish()));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(vec![self.as_of; n]).with_timezone(TZ),
        ));
        Ok(RecordBatch::try_new(anomalies_schema(), arrays)?)
    }
}

/// The personal columns of the `anomalies` table and how each is masked (evidence is redacted
/// as a whole, see [`crate::scope::evidence`]).
pub fn anomalies_masks() -> &'static [(&'static str, Mask)] {
    &[
        ("subject_id", Mask::IdentitiesInText),
        ("id_number", Mask::Identity),
    ]
}

/// Fields of evidence that hold personal data: null for callers without `pii`. An age is
/// personal: asked at several instants, it tells the birth date.
pub const PERSONAL_EVIDENCE: &[&str] = &["age"];

/// A date as `YYYY-MM-DD` JSON, or null.
pub fn date_json(d: Option<i32>) -> serde_json::Value {
    match d {
        Some(d) => serde_json::Value::String(time::format_date(d)),
        None => serde_json::Value::Null,
    }
}
