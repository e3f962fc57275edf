//! KPIs (`kpis.md`): incident KPIs (立案率, 结案率, 按期结案率, 按期处置率, 返工率 …) over any
//! grouping, and per-grid performance (网格绩效) rolled up to community, street, district and city.
//!
//! Both are computed by columnar passes over the store, the SLA [`Clocks`](crate::sla::Clocks)
//! and a [`Sweep`]; the roll-up sums counts and recomputes every rate from the summed numerator
//! and denominator, and every score from the rolled-up rates.
//!
//! Decisions where `kpis.md` is silent:
//! - incidents with `status = rejected` are counted in `reported` (and `accepted`, `closed` when
//!   those timestamps are set) but, being evaluated for no stage, in no due-based figure;
//! - numerators are intersected with their denominators (`on_time_closure_rate` counts close
//!   stages met among the due incidents), so a rate never exceeds 1;
//! - a visit "within the last 30 days" is one with `as_of − 30 days ≤ visited_at ≤ as_of`.

use crate::contract::{TableId, codes};
use crate::error::{Error, Result};
use crate::rules::{RuleId, Sweep};
use crate::sla::{Clocks, NO_TIME, Stage, State};
use crate::store::{NONE, Store};
use crate::time::{self, DAY, HOUR};
use arrow::array::{
    Array, ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use hashbrown::HashMap;
use rayon::prelude::*;
use roaring::RoaringBitmap;
use std::sync::Arc;

pub use crate::hierarchy::Level;
use crate::hierarchy::code_at;

/// A dimension incident KPIs can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// A level of the grid hierarchy.
    Level(Level),
    /// The department the case was dispatched to.
    Department,
    /// The 4-digit category.
    Category,
    /// The 2-digit major class.
    MajorClass,
    /// Where the case came from.
    Source,
    /// urgent / normal.
    Urgency,
    /// The month of `reported_at`.
    Month,
}

impl GroupBy {
    /// The name of the output column.
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::Level(Level::Grid) => "grid_code",
            GroupBy::Level(Level::Community) => "community_code",
            GroupBy::Level(Level::Street) => "street_code",
            GroupBy::Level(Level::District) => "district_code",
            GroupBy::Level(Level::City) => "city_code",
            GroupBy::Department => "department",
            GroupBy::Category => "category_code",
            GroupBy::MajorClass => "major_class",
            GroupBy::Source => "source",
            GroupBy::Urgency => "urgency",
            GroupBy::Month => "month",
        }
    }

    /// Parses a comma-separated list (`grid,month`); the empty list groups the whole city.
    pub fn parse_list(s: &str) -> Result<Vec<GroupBy>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g = match part.to_ascii_lowercase().as_str() {
                "department" => GroupBy::Department,
                "category" | "category_code" => GroupBy::Category,
                "major_class" | "major" => GroupBy::MajorClass,
                "source" => GroupBy::Source,
                "urgency" => GroupBy::Urgency,
                "month" => GroupBy::Month,
                other => {
                    let level = other.strip_suffix("_code").unwrap_or(other);
                    GroupBy::Level(level.parse().map_err(|_| {
                        Error::param(
                            "group_by",
                            format!(
                                "{part:?} is unknown (expected grid, community, street, \
                                 district, city, department, category, major_class, source, \
                                 urgency or month)"
                            ),
                        )
                    })?)
                }
            };
            if !out.contains(&g) {
                out.push(g);
            }
        }
        Ok(out)
    }
}

/// The weights and windows of the KPIs (the defaults are those of `kpis.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct KpiParams {
    /// Incident score weights: closure rate, on-time closure rate, on-time handling rate,
    /// 1 − rework rate.
    pub incident_weights: [f64; 4],
    /// Grid score weights: visit coverage, care compliance, verified share, incident score,
    /// anomaly term.
    pub grid_weights: [f64; 5],
    /// Days a household visit counts for visit coverage.
    pub visit_window_days: i64,
    /// Days of incidents in the grid KPIs.
    pub incident_window_days: i64,
    /// Anomalies per 1,000 residents at which the anomaly term reaches 0.
    pub anomalies_per_1000_cap: f64,
}

impl Default for KpiParams {
    fn default() -> Self {
        KpiParams {
            incident_weights: [0.3, 0.3, 0.2, 0.2],
            grid_weights: [0.25, 0.15, 0.15, 0.25, 0.20],
            visit_window_days: 30,
            incident_window_days: 30,
            anomalies_per_1000_cap: 50.0,
        }
    }
}

/// The counts behind the incident KPIs of one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentCounts {
    /// 上报数
    pub reported: u64,
    /// 立案数
    pub accepted: u64,
    /// 应结案数
    pub due: u64,
    /// 结案数
    pub closed: u64,
    /// closed among the due
    pub closed_due: u64,
    /// close stage met among the due
    pub close_met: u64,
    /// 应处置数
    pub handle_due: u64,
    /// handle stage met among the handle-due
    pub handle_met: u64,
    /// due with reopened > 0
    pub rework: u64,
    /// 超期未结
    pub overdue_open: u64,
    /// Sum of satisfaction scores.
    pub satisfaction_sum: i64,
    /// Number of satisfaction scores.
    pub satisfaction_n: u64,
    /// Natural hours reported → closed of the closed incidents.
    pub close_hours: Vec<f64>,
}

impl IncidentCounts {
    fn add(&mut self, o: &IncidentCounts) {
        self.reported += o.reported;
        self.accepted += o.accepted;
        self.due += o.due;
        self.closed += o.closed;
        self.closed_due += o.closed_due;
        self.close_met += o.close_met;
        self.handle_due += o.handle_due;
        self.handle_met += o.handle_met;
        self.rework += o.rework;
        self.overdue_open += o.overdue_open;
        self.satisfaction_sum += o.satisfaction_sum;
        self.satisfaction_n += o.satisfaction_n;
        self.close_hours.extend_from_slice(&o.close_hours);
    }

    /// 立案率
    pub fn acceptance_rate(&self) -> Option<f64> {
        rate(self.accepted, self.reported)
    }
    /// 结案率
    pub fn closure_rate(&self) -> Option<f64> {
        rate(self.closed_due, self.due)
    }
    /// 按期结案率
    pub fn on_time_closure_rate(&self) -> Option<f64> {
        rate(self.close_met, self.due)
    }
    /// 按期处置率
    pub fn on_time_handling_rate(&self) -> Option<f64> {
        rate(self.handle_met, self.handle_due)
    }
    /// 返工率
    pub fn rework_rate(&self) -> Option<f64> {
        rate(self.rework, self.due)
    }
    /// 综合得分: null if any term is null.
    pub fn score(&self, w: &[f64; 4]) -> Option<f64> {
        Some(
            100.0
                * (w[0] * self.closure_rate()?
                    + w[1] * self.on_time_closure_rate()?
                    + w[2] * self.on_time_handling_rate()?
                    + w[3] * (1.0 - self.rework_rate()?)),
        )
    }
}

fn rate(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// 等级: A ≥ 90, B ≥ 75, C ≥ 60, D ≥ 40, else E.
pub fn grade(score: f64) -> &'static str {
    match score {
        s if s >= 90.0 => "A",
        s if s >= 75.0 => "B",
        s if s >= 60.0 => "C",
        s if s >= 40.0 => "D",
        _ => "E",
    }
}

/// The nearest-rank percentile `p` (0–100) of values in any order (reorders them; linear time).
pub fn nearest_rank_unsorted(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    let (_, v, _) = values.select_nth_unstable_by(rank.clamp(1, values.len()) - 1, f64::total_cmp);
    Some(*v)
}

/// The nearest-rank percentile `p` (0–100) of sorted values.
pub fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The per-incident inputs of the incident KPIs, read once.
struct IncidentView<'a> {
    clocks: &'a Clocks,
    /// `accepted_at` as of `as_of` (the start of the dispatch stage).
    accepted: &'a [i64],
    /// `dispatched_at` as of `as_of` (the start of the handle stage).
    dispatched: &'a [i64],
    handled: Vec<i64>,
    status: &'a arrow::array::Int8Array,
    reopened: &'a arrow::array::Int64Array,
    satisfaction: &'a arrow::array::Int64Array,
}

impl<'a> IncidentView<'a> {
    fn new(store: &'a Store, clocks: &'a Clocks) -> Result<IncidentView<'a>> {
        let t = store.table(TableId::Incidents);
        let as_of = clocks.as_of;
        let col = |name: &str| -> Result<Vec<i64>> {
            let a = t.timestamps(name)?;
            Ok((0..t.rows)
                .map(|i| {
                    if a.is_null(i) || a.value(i) > as_of {
                        NO_TIME
                    } else {
                        a.value(i)
                    }
                })
                .collect())
        };
        Ok(IncidentView {
            clocks,
            accepted: &clocks.stages[Stage::Dispatch as usize].start,
            dispatched: &clocks.stages[Stage::Handle as usize].start,
            handled: col("handled_at")?,
            status: t.codes("status")?,
            reopened: t.ints("reopened")?,
            satisfaction: t.ints("satisfaction")?,
        })
    }

    /// Adds incident `i` to a group's counts.
    fn count(&self, i: usize, c: &mut IncidentCounts, with_hours: bool) {
        let reported = self.clocks.reported[i];
        let closed = self.clocks.closed[i];
        let status = self.status.value(i);
        let parked = status == codes::incident_status::PARKED;
        let close = self.clocks.state(Stage::Close, i);
        let handle = self.clocks.state(Stage::Handle, i);
        c.reported += 1;
        let accepted = self.accepted[i] != NO_TIME;
        c.accepted += accepted as u64;
        if closed != NO_TIME {
            c.closed += 1;
            if with_hours {
                c.close_hours.push((closed - reported) as f64 / HOUR as f64);
            }
        }
        let close_overdue = close == Some(State::Overdue);
        // A rejected incident has no close state, so it is never due.
        let due = accepted && !parked && close.is_some() && (closed != NO_TIME || close_overdue);
        if due {
            c.due += 1;
            c.closed_due += (closed != NO_TIME) as u64;
            c.close_met += (close == Some(State::Met)) as u64;
            let reopened = !self.reopened.is_null(i) && self.reopened.value(i) > 0;
            c.rework += reopened as u64;
        }
        let handle_due = self.dispatched[i] != NO_TIME
            && !parked
            && handle.is_some()
            && (self.handled[i] != NO_TIME || handle == Some(State::Overdue));
        if handle_due {
            c.handle_due += 1;
            c.handle_met += (handle == Some(State::Met)) as u64;
        }
        if close_overdue && !parked {
            c.overdue_open += 1;
        }
        if !self.satisfaction.is_null(i) {
            c.satisfaction_sum += self.satisfaction.value(i);
            c.satisfaction_n += 1;
        }
    }
}

/// One grouping dimension, resolved per incident: a dense id per incident and the label of
/// each id (`None` for a null).
struct Dimension {
    ids: Vec<u32>,
    labels: Vec<Option<String>>,
}

fn intern<'s>(values: impl Iterator<Item = Option<&'s str>>) -> Dimension {
    let mut map: HashMap<Option<&str>, u32> = HashMap::new();
    let mut labels = Vec::new();
    let ids = values
        .map(|v| {
            *map.entry(v).or_insert_with(|| {
                labels.push(v.map(str::to_string));
                (labels.len() - 1) as u32
            })
        })
        .collect();
    Dimension { ids, labels }
}

fn dimension(store: &Store, clocks: &Clocks, g: GroupBy) -> Result<Dimension> {
    let t = store.table(TableId::Incidents);
    let n = t.rows;
    Ok(match g {
        GroupBy::Level(level) => {
            // The label of each grid is interned once, and each incident takes its grid's.
            let grids = t.keys("grid_code")?;
            let n_grids = store.table(TableId::Grids).rows;
            let codes: Vec<String> = (0..n_grids as u32)
                .map(|gr| code_at(store, gr, level))
                .collect();
            let Dimension {
                ids: of_grid,
                mut labels,
            } = intern(codes.iter().map(|c| Some(c.as_str())));
            let none = labels.len() as u32;
            let ids: Vec<u32> = grids
                .par_iter()
                .map(|&gr| of_grid.get(gr as usize).copied().unwrap_or(none))
                .collect();
            if ids.contains(&none) {
                labels.push(None);
            }
            Dimension { ids, labels }
        }
        GroupBy::Department => {
            let d = t.strings("department")?;
            intern((0..n).map(|i| (!d.is_null(i)).then(|| d.value(i))))
        }
        GroupBy::Category => {
            let c = t.strings("category_code")?;
            intern((0..n).map(|i| Some(c.value(i))))
        }
        GroupBy::MajorClass => {
            let c = t.strings("category_code")?;
            intern((0..n).map(|i| c.value(i).get(..2)))
        }
        GroupBy::Source | GroupBy::Urgency => {
            let (name, values) = if g == GroupBy::Source {
                ("source", crate::contract::INCIDENT_SOURCE)
            } else {
                ("urgency", crate::contract::URGENCY)
            };
            let c = t.codes(name)?;
            intern((0..n).map(|i| values.get(c.value(i) as usize).copied()))
        }
        GroupBy::Month => {
            let months: Vec<Option<String>> = clocks
                .reported
                .iter()
                .map(|&r| {
                    (r != NO_TIME).then(|| time::format_month(time::month_of(time::date_of(r))))
                })
                .collect();
            intern(months.iter().map(|m| m.as_deref()))
        }
    })
}

/// What [`incident_kpis`] computes.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentQuery {
    /// The groups (empty: one row for everything).
    pub group_by: Vec<GroupBy>,
    /// Incidents reported at or after this instant (`None`: no lower bound).
    pub from: Option<i64>,
    /// Incidents reported before this instant (`None`: up to `as_of`).
    pub to: Option<i64>,
    /// Only incidents whose grid code starts with this code (a caller's scope); `None`: all.
    pub within: Option<String>,
    /// Weights and windows.
    pub params: KpiParams,
}

/// The schema of the incident KPI columns (after the group columns).
fn incident_fields() -> Vec<Field> {
    let u = |n: &str| Field::new(n, DataType::UInt64, false);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    vec![
        u("reported"),
        u("accepted"),
        f("acceptance_rate"),
        u("due"),
        u("closed"),
        f("closure_rate"),
        f("on_time_closure_rate"),
        u("handle_due"),
        f("on_time_handling_rate"),
        f("rework_rate"),
        u("overdue_open"),
        f("median_close_hours"),
        f("p90_close_hours"),
        f("satisfaction_avg"),
        f("score"),
        Field::new("grade", DataType::Utf8, true),
    ]
}

/// The schema of `incident_kpis` for a grouping.
pub fn incident_schema(group_by: &[GroupBy]) -> SchemaRef {
    let mut fields: Vec<Field> = group_by
        .iter()
        .map(|g| Field::new(g.column(), DataType::Utf8, true))
        .collect();
    fields.extend(incident_fields());
    Arc::new(Schema::new(fields))
}

/// Incident KPIs per group, over incidents reported in `[from, to)` (and not after `as_of`).
pub fn incident_kpis(store: &Store, clocks: &Clocks, q: &IncidentQuery) -> Result<RecordBatch> {
    let view = IncidentView::new(store, clocks)?;
    let dims = q
        .group_by
        .iter()
        .map(|&g| dimension(store, clocks, g))
        .collect::<Result<Vec<_>>>()?;
    let n = clocks.reported.len();
    let (from, to) = (q.from.unwrap_or(i64::MIN), q.to.unwrap_or(i64::MAX));
    // Grids inside `within` (every grid when there is none).
    let inside: Option<Vec<bool>> = q.within.as_ref().map(|w| {
        let grids = crate::hierarchy::grids_within(store, w);
        (0..store.table(TableId::Grids).rows as u32)
            .map(|g| grids.contains(g))
            .collect()
    });
    let incident_grid = store.table(TableId::Incidents).keys("grid_code")?;
    let in_period = |i: usize| {
        let r = clocks.reported[i];
        r != NO_TIME
            && r >= from
            && r < to
            && inside.as_ref().is_none_or(|inside| {
                inside
                    .get(incident_grid[i] as usize)
                    .copied()
                    .unwrap_or(false)
            })
    };
    // Mixed-radix group key over the dimensions.
    let radix: Vec<u128> = dims.iter().map(|d| d.labels.len().max(1) as u128).collect();
    let key_of = |i: usize| -> u128 {
        let mut k = 0u128;
        for (d, r) in dims.iter().zip(&radix) {
            k = k * r + d.ids[i] as u128;
        }
        k
    };
    let groups: HashMap<u128, IncidentCounts> = (0..n)
        .into_par_iter()
        .filter(|&i| in_period(i))
        .fold(HashMap::new, |mut m: HashMap<u128, IncidentCounts>, i| {
            view.count(i, m.entry(key_of(i)).or_default(), true);
            m
        })
        .reduce(HashMap::new, |mut a, b| {
            for (k, v) in b {
                a.entry(k).or_default().add(&v);
            }
            a
        });
    // Decode the keys to labels, and sort the rows by label.
    let mut rows: Vec<(Vec<Option<&str>>, IncidentCounts)> = groups
        .into_iter()
        .map(|(mut k, c)| {
            let mut labels = vec![None; dims.len()];
            for (j, (d, r)) in dims.iter().zip(&radix).enumerate().rev() {
                labels[j] = d.labels[(k % r) as usize].as_deref();
                k /= r;
            }
            (labels, c)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut group_cols: Vec<StringBuilder> = dims.iter().map(|_| StringBuilder::new()).collect();
    let mut out = IncidentColumns::default();
    for (labels, mut c) in rows {
        for (b, l) in group_cols.iter_mut().zip(labels) {
            b.append_option(l);
        }
        out.push(&mut c, &q.params);
    }
    let mut arrays: Vec<ArrayRef> = group_cols
        .iter_mut()
        .map(|b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    arrays.extend(out.finish());
    Ok(RecordBatch::try_new(incident_schema(&q.group_by), arrays)?)
}

#[derive(Default)]
struct IncidentColumns {
    counts: [UInt64Builder; 6],
    rates: [Float64Builder; 10],
    grade: StringBuilder,
}

impl IncidentColumns {
    fn push(&mut self, c: &mut IncidentCounts, p: &KpiParams) {
        let [reported, accepted, due, closed, handle_due, overdue_open] = &mut self.counts;
        let [
            acc_rate,
            closure,
            on_time_closure,
            on_time_handling,
            rework,
            median,
            p90,
            sat,
            score,
            _,
        ] = &mut self.rates;
        reported.append_value(c.reported);
        accepted.append_value(c.accepted);
        acc_rate.append_option(c.acceptance_rate());
        due.append_value(c.due);
        closed.append_value(c.closed);
        closure.append_option(c.closure_rate());
        on_time_closure.append_option(c.on_time_closure_rate());
        handle_due.append_value(c.handle_due);
        on_time_handling.append_option(c.on_time_handling_rate());
        rework.append_option(c.rework_rate());
        overdue_open.append_value(c.overdue_open);
        median.append_option(nearest_rank_unsorted(&mut c.close_hours, 50.0));
        p90.append_option(nearest_rank_unsorted(&mut c.close_hours, 90.0));
        sat.append_option(
            (c.satisfaction_n > 0).then(|| c.satisfaction_sum as f64 / c.satisfaction_n as f64),
        );
        let s = c.score(&p.incident_weights);
        score.append_option(s);
        self.grade.append_option(s.map(grade));
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        let [reported, accepted, due, closed, handle_due, overdue_open] = &mut self.counts;
        let [
            acc_rate,
            closure,
            on_time_closure,
            on_time_handling,
            rework,
            median,
            p90,
            sat,
            score,
            _,
        ] = &mut self.rates;
        let u = |b: &mut UInt64Builder| Arc::new(b.finish()) as ArrayRef;
        let f = |b: &mut Float64Builder| Arc::new(b.finish()) as ArrayRef;
        vec![
            u(reported),
            u(accepted),
            f(acc_rate),
            u(due),
            u(closed),
            f(closure),
            f(on_time_closure),
            u(handle_due),
            f(on_time_handling),
            f(rework),
            u(overdue_open),
            f(median),
            f(p90),
            f(sat),
            f(score),
            Arc::new(self.grade.finish()),
        ]
    }
}

/// The counts behind the grid KPIs of one grid or roll-up group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridCounts {
    /// Buildings.
    pub buildings: u64,
    /// Rooms.
    pub rooms: u64,
    /// Residential rooms.
    pub residential_rooms: u64,
    /// Rental rooms.
    pub rental_rooms: u64,
    /// Vacant rooms.
    pub vacant_rooms: u64,
    /// Households with at least one active record.
    pub households: u64,
    /// Of those, households whose room had a household visit or verification in the window.
    pub visited_households: u64,
    /// Active records.
    pub residents: u64,
    /// Active floating records.
    pub floating_residents: u64,
    /// Active records tagged elderly_alone.
    pub elderly_alone: u64,
    /// Of those, records not flagged by R11.
    pub elderly_cared: u64,
    /// Active records not flagged by R10.
    pub verified: u64,
    /// Active workers of the grid.
    pub workers: u64,
    /// Anomalies of the sweep in the grid.
    pub anomalies: u64,
    /// Incident counts over the window.
    pub incidents: IncidentCounts,
}

impl GridCounts {
    fn add(&mut self, o: &GridCounts) {
        self.buildings += o.buildings;
        self.rooms += o.rooms;
        self.residential_rooms += o.residential_rooms;
        self.rental_rooms += o.rental_rooms;
        self.vacant_rooms += o.vacant_rooms;
        self.households += o.households;
        self.visited_households += o.visited_households;
        self.residents += o.residents;
        self.floating_residents += o.floating_residents;
        self.elderly_alone += o.elderly_alone;
        self.elderly_cared += o.elderly_cared;
        self.verified += o.verified;
        self.workers += o.workers;
        self.anomalies += o.anomalies;
        self.incidents.add(&o.incidents);
    }

    /// Visit coverage over the window.
    pub fn visit_coverage(&self) -> Option<f64> {
        rate(self.visited_households, self.households)
    }
    /// Care compliance.
    pub fn care_compliance(&self) -> Option<f64> {
        rate(self.elderly_cared, self.elderly_alone)
    }
    /// Verified share.
    pub fn verified_share(&self) -> Option<f64> {
        rate(self.verified, self.residents)
    }
    /// Anomalies per 1,000 residents.
    pub fn anomalies_per_1000(&self) -> Option<f64> {
        (self.residents > 0).then(|| self.anomalies as f64 * 1000.0 / self.residents as f64)
    }

    /// 网格综合得分: a null term counts as its full weight (nothing to do).
    pub fn grid_score(&self, p: &KpiParams) -> f64 {
        let w = &p.grid_weights;
        let term = |v: Option<f64>| v.unwrap_or(1.0);
        100.0
            * (w[0] * term(self.visit_coverage())
                + w[1] * term(self.care_compliance())
                + w[2] * term(self.verified_share())
                + w[3] * term(self.incidents.score(&p.incident_weights).map(|s| s / 100.0))
                + w[4]
                    * term(
                        self.anomalies_per_1000()
                            .map(|a| (1.0 - a / p.anomalies_per_1000_cap).max(0.0)),
                    ))
    }
}

/// Counts per grid (by grid row) at `as_of`.
pub fn grid_counts(
    store: &Store,
    sweep: &Sweep,
    clocks: &Clocks,
    p: &KpiParams,
) -> Result<Vec<GridCounts>> {
    let ix = &store.indexes;
    let n_grids = store.table(TableId::Grids).rows;
    let as_of = sweep.as_of;
    let mut out = vec![GridCounts::default(); n_grids];
    let rows_in = |t: TableId, g: usize| -> &RoaringBitmap { &ix.grid_rows[&t].by_grid[g] };

    // Rooms and buildings.
    let rooms = store.table(TableId::Rooms);
    let tenure = rooms.codes("tenure")?;
    for (g, c) in out.iter_mut().enumerate() {
        c.buildings = rows_in(TableId::Buildings, g).len();
        let r = rows_in(TableId::Rooms, g);
        c.rooms = r.len();
        c.residential_rooms = r.intersection_len(&ix.residential_rooms);
        c.vacant_rooms = r.intersection_len(&ix.vacant_rooms);
    }
    for (r, &g) in ix.room_grid.iter().enumerate() {
        if !tenure.is_null(r) && tenure.value(r) == codes::tenure::RENTAL && g != NONE {
            out[g as usize].rental_rooms += 1;
        }
    }

    // Rooms visited within the window.
    let visits = store.table(TableId::Visits);
    let (v_room, v_kind, v_at) = (
        visits.keys("room_id")?,
        visits.codes("kind")?,
        visits.timestamps("visited_at")?,
    );
    let window_start = as_of - p.visit_window_days * DAY;
    let mut visited = RoaringBitmap::new();
    for i in 0..visits.rows {
        let k = v_kind.value(i);
        let t = v_at.value(i);
        if v_room[i] != NONE
            && (k == codes::visit::HOUSEHOLD_VISIT || k == codes::visit::VERIFICATION)
            && t >= window_start
            && t <= as_of
        {
            visited.insert(v_room[i]);
        }
    }

    // Households with an active record.
    let households = store.table(TableId::Households);
    let hh_room = households.keys("room_id")?;
    for (h, &room) in hh_room.iter().enumerate() {
        if room == NONE || ix.active_of_household.get(h as u32).is_empty() {
            continue;
        }
        let g = ix.room_grid[room as usize];
        if g == NONE {
            continue;
        }
        let c = &mut out[g as usize];
        c.households += 1;
        c.visited_households += visited.contains(room) as u64;
    }

    sweep_counts(store, sweep, None, &mut out);

    // Workers.
    let workers = store.table(TableId::Workers);
    let (w_grid, w_active) = (workers.keys("grid_code")?, workers.bools("active")?);
    for i in 0..workers.rows {
        if w_active.value(i) && w_grid[i] != NONE {
            out[w_grid[i] as usize].workers += 1;
        }
    }

    // Incidents reported within the window.
    let view = IncidentView::new(store, clocks)?;
    let i_grid = store.table(TableId::Incidents).keys("grid_code")?;
    let from = as_of - p.incident_window_days * DAY;
    for (i, &g) in i_grid.iter().enumerate() {
        let r = clocks.reported[i];
        if g != NONE && r != NO_TIME && r >= from && r < as_of {
            view.count(i, &mut out[g as usize].incidents, false);
        }
    }
    Ok(out)
}

/// The counts of records and findings per grid, which read the sweep (residents, floating
/// residents, verified, elderly living alone and cared for, findings): in every grid, or in
/// `only`.
fn sweep_counts(
    store: &Store,
    sweep: &Sweep,
    only: Option<&RoaringBitmap>,
    out: &mut [GridCounts],
) {
    let ix = &store.indexes;
    let rows_in = |t: TableId, g: usize| -> &RoaringBitmap { &ix.grid_rows[&t].by_grid[g] };
    let flagged = |rule: RuleId| -> RoaringBitmap {
        sweep
            .anomalies
            .iter()
            .filter(|a| a.rule == rule)
            .filter_map(|a| a.person)
            .collect()
    };
    let unverified = flagged(RuleId::R10);
    let uncared = flagged(RuleId::R11);
    let floating = &ix.residence[codes::residence::FLOATING as usize];
    let empty = RoaringBitmap::new();
    let elderly = ix.tags.get("elderly_alone").unwrap_or(&empty);
    // Per grid, the sizes of the grid's records intersected with these sets: no per-record work.
    let active_floating = &ix.active & floating;
    let active_unverified = &ix.active & &unverified;
    let active_elderly = &ix.active & elderly;
    let elderly_uncared = &active_elderly & &uncared;
    let wanted = |g: usize| only.is_none_or(|o| o.contains(g as u32));
    out.par_iter_mut().enumerate().for_each(|(g, c)| {
        if !wanted(g) {
            return;
        }
        let records = rows_in(TableId::People, g);
        c.residents = records.intersection_len(&ix.active);
        c.floating_residents = records.intersection_len(&active_floating);
        c.verified = c.residents - records.intersection_len(&active_unverified);
        c.elderly_alone = records.intersection_len(&active_elderly);
        c.elderly_cared = c.elderly_alone - records.intersection_len(&elderly_uncared);
        c.anomalies = 0;
    });
    for a in &sweep.anomalies {
        if wanted(a.grid as usize)
            && let Some(c) = out.get_mut(a.grid as usize)
        {
            c.anomalies += 1;
        }
    }
}

/// [`grid_counts`] of a version whose only change over the one `before` counted is door
/// events (which no count reads), with the sweep worked out again in `grids`: the counts that
/// read the sweep are worked out again there, every other is `before`'s.
pub fn grid_counts_after(
    before: &[GridCounts],
    store: &Store,
    sweep: &Sweep,
    grids: &RoaringBitmap,
) -> Vec<GridCounts> {
    let mut out = before.to_vec();
    sweep_counts(store, sweep, Some(grids), &mut out);
    out
}

/// What [`grid_kpis`] computes.
#[derive(Debug, Clone, PartialEq)]
pub struct GridQuery {
    /// The level to roll up to.
    pub level: Level,
    /// Only the groups inside this code (a district, street, community or grid code).
    pub within: Option<String>,
    /// Weights and windows.
    pub params: KpiParams,
}

/// The schema of `grid_kpis`.
pub fn grid_schema() -> SchemaRef {
    let s = |n: &str, null| Field::new(n, DataType::Utf8, null);
    let u = |n: &str| Field::new(n, DataType::UInt64, false);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        s("level", false),
        s("code", false),
        s("grid_code", true),
        s("community_code", true),
        s("street_code", true),
        s("district_code", true),
        u("buildings"),
        u("rooms"),
        u("residential_rooms"),
        u("rental_rooms"),
        u("vacant_rooms"),
        u("households"),
        u("residents"),
        u("floating_residents"),
        f("floating_share"),
        u("elderly_alone"),
        u("workers"),
        f("households_per_worker"),
        f("visit_coverage_30d"),
        f("care_compliance_7d"),
        f("verified_share"),
        u("anomalies"),
        f("anomalies_per_1000"),
        u("incidents_30d"),
        f("closure_rate_30d"),
        f("on_time_closure_rate_30d"),
        u("overdue_open"),
        f("incident_score_30d"),
        Field::new("grid_score", DataType::Float64, false),
        Field::new("rank_in_street", DataType::Int64, true),
    ]))
}

/// Grid KPIs at a level: per grid counts rolled up (sums), rates and scores recomputed, and the
/// rank by score among the groups of the same street (grid and community levels; ties share the
/// better rank, as SQL `RANK()`).
pub fn grid_kpis(per_grid: &[GridCounts], store: &Store, q: &GridQuery) -> Result<RecordBatch> {
    let rollup = GridRollup::new(per_grid, store, q.level, &q.params);
    rollup.batch(store, q.within.as_deref(), &q.params)
}

/// Every group of one level, city-wide, with its counts, score and rank: the part of the grid
/// KPIs that does not depend on which codes are asked for, so it can be kept and sliced.
#[derive(Debug, Clone)]
pub struct GridRollup {
    level: Level,
    /// (code, a grid of the group, counts, score, rank in street), in code order.
    rows: Vec<(String, u32, GridCounts, f64, Option<i64>)>,
}

impl GridRollup {
    /// Rolls the per-grid counts up to a level.
    pub fn new(
        per_grid: &[GridCounts],
        store: &Store,
        level: Level,
        params: &KpiParams,
    ) -> GridRollup {
        // Group the grids by their code at the level (sorted, so the output is in code order).
        let mut groups: std::collections::BTreeMap<String, (u32, GridCounts)> = Default::default();
        for (g, c) in per_grid.iter().enumerate() {
            let code = code_at(store, g as u32, level);
            groups
                .entry(code)
                .or_insert_with(|| (g as u32, GridCounts::default()))
                .1
                .add(c);
        }
        let mut rows: Vec<(String, u32, GridCounts, f64, Option<i64>)> = groups
            .into_iter()
            .map(|(code, (g, c))| {
                let s = c.grid_score(params);
                (code, g, c, s, None)
            })
            .collect();
        // Rank among the groups of the same street.
        if matches!(level, Level::Grid | Level::Community) {
            let mut by_street: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, r) in rows.iter().enumerate() {
                by_street
                    .entry(code_at(store, r.1, Level::Street))
                    .or_default()
                    .push(i);
            }
            for members in by_street.values() {
                for &i in members {
                    let better = members.iter().filter(|&&j| rows[j].3 > rows[i].3).count();
                    rows[i].4 = Some(better as i64 + 1);
                }
            }
        }
        GridRollup { level, rows }
    }

    /// The `grid_kpis` rows of the groups inside `within` (all when `None`).
    pub fn batch(
        &self,
        store: &Store,
        within: Option<&str>,
        params: &KpiParams,
    ) -> Result<RecordBatch> {
        let within = within.unwrap_or("");
        let grid_codes = store.table(TableId::Grids).strings("grid_code")?;
        // Codes below the city are prefixes of their grids' codes: when `within` is no longer
        // than the codes, the groups inside it are one run of the sorted rows.
        let shortest = self.rows.iter().map(|r| r.0.len()).min().unwrap_or(0);
        let rows = if self.level != Level::City && within.len() <= shortest {
            let start = self.rows.partition_point(|r| r.0.as_str() < within);
            let len = self.rows[start..]
                .iter()
                .take_while(|r| r.0.starts_with(within))
                .count();
            &self.rows[start..start + len]
        } else {
            &self.rows[..]
        };
        let mut b = GridColumns::default();
        for (code, g, c, score, rank) in rows {
            if !code.starts_with(within) && !grid_codes.value(*g as usize).starts_with(within) {
                continue;
            }
            b.push(store, self.level, code, *g, c, *score, *rank, params);
        }
        Ok(RecordBatch::try_new(grid_schema(), b.finish())?)
    }
}

#[derive(Default)]
struct GridColumns {
    text: [StringBuilder; 6],
    counts: Vec<UInt64Builder>,
    rates: Vec<Float64Builder>,
    score: Float64Builder,
    rank: Int64Builder,
}

impl GridColumns {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        store: &Store,
        level: Level,
        code: &str,
        g: u32,
        c: &GridCounts,
        score: f64,
        rank: Option<i64>,
        p: &KpiParams,
    ) {
        if self.counts.is_empty() {
            self.counts = (0..13).map(|_| UInt64Builder::new()).collect();
            self.rates = (0..10).map(|_| Float64Builder::new()).collect();
        }
        self.text[0].append_value(level.name());
        self.text[1].append_value(code);
        for (j, l) in [
            Level::Grid,
            Level::Community,
            Level::Street,
            Level::District,
        ]
        .into_iter()
        .enumerate()
        {
            // A parent code is shown when it is at or above the level.
            let shown = Level::ALL.iter().position(|x| *x == l)
                >= Level::ALL.iter().position(|x| *x == level);
            self.text[2 + j].append_option(shown.then(|| code_at(store, g, l)));
        }
        let inc = &c.incidents;
        let counts = [
            c.buildings,
            c.rooms,
            c.residential_rooms,
            c.rental_rooms,
            c.vacant_rooms,
            c.households,
            c.residents,
            c.floating_residents,
            c.elderly_alone,
            c.workers,
            c.anomalies,
            inc.reported,
            inc.overdue_open,
        ];
        for (b, v) in self.counts.iter_mut().zip(counts) {
            b.append_value(v);
        }
        let rates = [
            rate(c.floating_residents, c.residents),
            (c.workers > 0).then(|| c.households as f64 / c.workers as f64),
            c.visit_coverage(),
            c.care_compliance(),
            c.verified_share(),
            c.anomalies_per_1000(),
            inc.closure_rate(),
            inc.on_time_closure_rate(),
            inc.score(&p.incident_weights),
            None,
        ];
        for (b, v) in self.rates.iter_mut().zip(rates) {
            b.append_option(v);
        }
        self.score.append_value(score);
        self.rank.append_option(rank);
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        if self.counts.is_empty() {
            self.counts = (0..13).map(|_| UInt64Builder::new()).collect();
            self.rates = (0..10).map(|_| Float64Builder::new()).collect();
        }
        let t: Vec<ArrayRef> = self
            .text
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let u: Vec<ArrayRef> = self
            .counts
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let f: Vec<ArrayRef> = self
            .rates
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        vec![
            t[0].clone(),
            t[1].clone(),
            t[2].clone(),
            t[3].clone(),
            t[4].clone(),
            t[5].clone(),
            u[0].clone(),  // buildings
            u[1].clone(),  // rooms
            u[2].clone(),  // residential_rooms
            u[3].clone(),  // rental_rooms
            u[4].clone(),  // vacant_rooms
            u[5].clone(),  // households
            u[6].clone(),  // residents
            u[7].clone(),  // floating_residents
            f[0].clone(),  // floating_share
            u[8].clone(),  // elderly_alone
            u[9].clone(),  // workers
            f[1].clone(),  // households_per_worker
            f[2].clone(),  // visit_coverage_30d
            f[3].clone(),  // care_compliance_7d
            f[4].clone(),  // verified_share
            u[10].clone(), // anomalies
            f[5].clone(),  // anomalies_per_1000
            u[11].clone(), // incidents_30d
            f[6].clone(),  // closure_rate_30d
            f[7].clone(),  // on_time_closure_rate_30d
            u[12].clone(), // overdue_open
            f[8].clone(),  // incident_score_30d
            Arc::new(self.score.finish()),
            Arc::new(self.rank.finish()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(nearest_rank(&v, 50.0), Some(5.0));
        assert_eq!(nearest_rank(&v, 90.0), Some(9.0));
        assert_eq!(nearest_rank(&[3.0], 90.0), Some(3.0));
        assert_eq!(nearest_rank(&[], 50.0), None);
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        let mut shuffled = [7.0, 3.0, 10.0, 1.0, 9.0, 2.0, 5.0, 8.0, 4.0, 6.0];
        assert_eq!(nearest_rank_unsorted(&mut shuffled, 50.0), Some(5.0));
        assert_eq!(nearest_rank_unsorted(&mut shuffled, 90.0), Some(9.0));
        assert_eq!(nearest_rank_unsorted(&mut [], 50.0), None);
    }

    #[test]
    fn grades() {
        assert_eq!(grade(90.0), "A");
        assert_eq!(grade(89.99), "B");
        assert_eq!(grade(60.0), "C");
        assert_eq!(grade(40.0), "D");
        assert_eq!(grade(39.9), "E");
    }

    #[test]
    fn group_by_lists() {
        assert_eq!(
            GroupBy::parse_list("grid, month,street_code").unwrap(),
            vec![
                GroupBy::Level(Level::Grid),
                GroupBy::Month,
                GroupBy::Level(Level::Street)
            ]
        );
        assert!(GroupBy::parse_list("weather").is_err());
        assert!(GroupBy::parse_list("").unwrap().is_empty());
    }

    #[test]
    fn empty_grid_scores_full_marks() {
        let c = GridCounts::default();
        assert!((c.grid_score(&KpiParams::default()) - 100.0).abs() < 1e-9);
    }
}
