//! The sweep of a city's next version from the sweep of the version before: the rules run
//! again only in the grids a batch touched ([`crate::ingest::touched`]), and every other
//! finding is kept. The result is exactly a full sweep of the new version (tested rule by rule
//! after every kind of change in `tests/incremental.rs`).
//!
//! The findings kept name rows of the old version; where a table was loaded again its rows may
//! have moved (a replaced record leaves its old place), so they are found again by their keys.
//! A kept finding whose record cannot be found is evaluated again with its grid.

use super::{Anomaly, RuleId, RuleRun, Sweep, merged_in_task_order, run};
use crate::contract::TableId;
use crate::error::Result;
use crate::store::{Pool, Store, StoredColumn};
use arrow::array::{Array, AsArray};
use roaring::RoaringBitmap;
use std::sync::Arc;
use std::time::Instant;

/// How the rows of a table with a single-column key moved between two versions.
enum Moved<'a> {
    /// The same rows (the table is shared).
    Same,
    /// Found again by key: the old keys, and the new version where to look them up.
    ByKey {
        old: &'a arrow::array::StringArray,
        new: &'a Store,
        table: TableId,
        values: arrow::array::ArrayRef,
    },
}

impl Moved<'_> {
    fn of<'a>(old: &'a Store, new: &'a Store, table: TableId) -> Result<Moved<'a>> {
        let key = |s: &'a Store| -> Option<&'a arrow::array::ArrayRef> {
            let k = table.def().single_key()?;
            match s.table(table).column(k).ok()? {
                StoredColumn::Array(a) => Some(a),
                _ => None,
            }
        };
        let (Some(a), Some(b)) = (key(old), key(new)) else {
            return Ok(Moved::Same);
        };
        if Arc::ptr_eq(a, b) {
            return Ok(Moved::Same);
        }
        Ok(Moved::ByKey {
            old: a.as_string::<i32>(),
            new,
            table,
            values: new.pool(&Pool::Table(table))?,
        })
    }

    /// The row in the new version of an old row, if its record is still there.
    fn row(&self, row: u32) -> Option<u32> {
        match self {
            Moved::Same => Some(row),
            Moved::ByKey {
                old,
                new,
                table,
                values,
            } => {
                if row as usize >= old.len() || old.is_null(row as usize) {
                    return None;
                }
                let ix = new.table(*table).key_index()?;
                ix.get(values.as_string::<i32>(), old.value(row as usize))
            }
        }
    }
}

/// The rules that read door events: the only ones a batch of door events (which changes
/// nothing else) can change the findings of.
pub const DOOR_RULES: [RuleId; 2] = [RuleId::R01, RuleId::R04];

/// The rules whose findings a batch of `table` may change: [`DOOR_RULES`] for door events,
/// every rule otherwise.
pub fn rules_changed_by(table: TableId) -> &'static [RuleId] {
    match table {
        TableId::AccessEvents => &DOOR_RULES,
        _ => &RuleId::ALL,
    }
}

/// A full sweep of `new`, from `prev` (a sweep of every rule of `old`, at the instant and with
/// the parameters wanted): `rules` (those the change may reach) run in `grids`; every other
/// finding of `prev` is kept.
pub fn resweep(
    prev: &Sweep,
    old: &Store,
    new: &Store,
    grids: &RoaringBitmap,
    rules: &[RuleId],
) -> Result<Sweep> {
    let started = Instant::now();
    if !matches!(Moved::of(old, new, TableId::Buildings)?, Moved::Same) {
        // Not a version over `old` (a whole load): its keys may differ; a full sweep.
        return super::sweep(new, prev.as_of, &[], &prev.params);
    }
    let people = Moved::of(old, new, TableId::People)?;
    let rooms = Moved::of(old, new, TableId::Rooms)?;
    let households = Moved::of(old, new, TableId::Households)?;
    let mut grids = grids.clone();
    let mut rules = rules;
    let mut kept: Vec<Anomaly> = Vec::with_capacity(prev.anomalies.len());
    for a in &prev.anomalies {
        if rules.contains(&a.rule) && grids.contains(a.grid) {
            continue;
        }
        let moved = |m: &Moved, r: Option<u32>| -> Option<Option<u32>> {
            match r {
                None => Some(None),
                Some(r) => m.row(r).map(Some),
            }
        };
        match (
            moved(&people, a.person),
            moved(&rooms, a.room),
            moved(&households, a.household),
        ) {
            (Some(person), Some(room), Some(household)) => {
                let mut a = a.clone();
                a.person = person;
                a.room = room;
                a.household = household;
                kept.push(a);
            }
            _ => {
                // Its record is not found again: every rule runs again in its grid.
                grids.insert(a.grid);
                rules = &RuleId::ALL;
            }
        }
    }
    // A grid added for a record not found again: its kept findings are evaluated too.
    kept.retain(|a| !(rules.contains(&a.rule) && grids.contains(a.grid)));
    let (runs, found) = run(new, prev.as_of, rules, &prev.params, Some(&grids))?;
    let mut counts = [0usize; RuleId::ALL.len()];
    for a in kept.iter().chain(&found) {
        counts[a.rule as usize] += 1;
    }
    Ok(Sweep {
        id: super::next_sweep_id(),
        base: Some(super::SweepBase {
            sweep: prev.id,
            grids,
        }),
        as_of: prev.as_of,
        params: prev.params.clone(),
        anomalies: merged_in_task_order(kept, found),
        runs: runs_after(&prev.runs, runs, &counts),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every rule's run after some ran again (`again`): theirs, the others' as before (taking no
/// time); each with its count of findings now.
fn runs_after(before: &[RuleRun], again: Vec<RuleRun>, counts: &[usize]) -> Vec<RuleRun> {
    before
        .iter()
        .map(|r| {
            let mut r = again
                .iter()
                .find(|c| c.rule == r.rule)
                .cloned()
                .unwrap_or_else(|| RuleRun {
                    seconds: 0.0,
                    ..r.clone()
                });
            r.count = counts[r.rule as usize];
            r
        })
        .collect()
}

/// Whether a sweep covers every rule (only such a sweep can be followed incrementally).
pub fn is_full(sweep: &Sweep) -> bool {
    let mut rules: Vec<RuleId> = sweep.runs.iter().map(|r| r.rule).collect();
    rules.sort();
    rules == RuleId::ALL
}

/// The rules that read the instant itself, not only its date: door nights and sightings, and
/// care visits. Every other rule reads `date(as_of)` alone.
pub const CLOCK_RULES: [RuleId; 3] = [RuleId::R01, RuleId::R04, RuleId::R11];

/// A full sweep of `store` at `as_of`, from `prev`, a sweep of every rule of the same store at
/// another instant of the same day (else a full sweep): the rules of [`CLOCK_RULES`] run
/// again in the grids where an event or visit lies near a window's edge between the two
/// instants; every other finding is kept (it depends on the date alone).
pub fn advance(prev: &Sweep, store: &Store, as_of: i64) -> Result<Sweep> {
    use crate::time::date_of;
    let started = Instant::now();
    if !is_full(prev) || date_of(prev.as_of) != date_of(as_of) {
        return super::sweep(store, as_of, &[], &prev.params);
    }
    let grids = clock_grids(store, &prev.params, prev.as_of, as_of)?;
    let kept: Vec<Anomaly> = prev
        .anomalies
        .iter()
        .filter(|a| !CLOCK_RULES.contains(&a.rule) || !grids.contains(a.grid))
        .cloned()
        .collect();
    let (clock_runs, found) = run(store, as_of, &CLOCK_RULES, &prev.params, Some(&grids))?;
    let mut counts = [0usize; RuleId::ALL.len()];
    for a in kept.iter().chain(&found) {
        counts[a.rule as usize] += 1;
    }
    let runs = runs_after(&prev.runs, clock_runs, &counts);
    Ok(Sweep {
        id: super::next_sweep_id(),
        // Another instant: every kept finding is found again at it.
        base: None,
        as_of,
        params: prev.params.clone(),
        anomalies: merged_in_task_order(kept, found),
        runs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The grids where a finding of a [`CLOCK_RULES`] rule may differ between the instants `from`
/// and `to` of one day: where a door event or a visit lies near an edge of a window (a night's
/// start, the last days of R01, R04 and R11, the instant itself) that moves between them.
pub fn clock_grids(store: &Store, p: &super::Params, from: i64, to: i64) -> Result<RoaringBitmap> {
    use crate::time::{CST_OFFSET, DAY, HOUR};
    let (lo, hi) = (from.min(to), from.max(to));
    // The edges a finding of a clock rule can cross between `lo` and `hi`, as spans of event
    // times `(from, to]`: the instant itself (a night's first event, a last sighting, the
    // door system's last report) and the window starts of R04; and, for each night whose 20:00
    // start crosses the instant or R01's window start, the night's ten hours of events.
    let w = p.r01_window_days * DAY;
    let mut door_spans = vec![
        (lo, hi),
        (lo - p.r04_absent_days * DAY, hi - p.r04_absent_days * DAY),
        (lo - p.r04_alive_days * DAY, hi - p.r04_alive_days * DAY),
    ];
    for (from, to) in [(lo, hi), (lo - w, hi - w)] {
        let mut start =
            (from + CST_OFFSET - 20 * HOUR).div_euclid(DAY) * DAY + 20 * HOUR - CST_OFFSET;
        while start <= from {
            start += DAY;
        }
        while start <= to {
            door_spans.push((start - 1, start + 10 * HOUR - 1));
            start += DAY;
        }
    }
    let visit_spans = [
        (lo, hi),
        (
            lo - p.r11_care_interval_days * DAY,
            hi - p.r11_care_interval_days * DAY,
        ),
    ];
    let mut grids = RoaringBitmap::new();
    let ix = &store.indexes;
    let events = store.table(TableId::AccessEvents);
    if events.rows > 0 {
        let ts = events.timestamps("ts")?.values();
        let building_grid = store.table(TableId::Buildings).keys("grid_code")?;
        for (b, &g) in building_grid.iter().enumerate() {
            let rows = ix.events_of(b as u32);
            let hit = door_spans
                .iter()
                .any(|&(from, to)| rows.any_in(ts, from, to));
            if hit && g != crate::store::NONE {
                grids.insert(g);
            }
        }
    }
    let visits = store.table(TableId::Visits);
    if visits.rows > 0 {
        let at = visits.timestamps("visited_at")?.values();
        let room = visits.keys("room_id")?;
        let ids = visits.keys("id_number")?;
        for i in 0..visits.rows {
            if !visit_spans.iter().any(|&(f, t)| at[i] > f && at[i] <= t) {
                continue;
            }
            if let Some(&g) = ix.room_grid.get(room[i] as usize) {
                grids.insert(g);
            }
            for &r in ix.active_of_identity.get(ids[i]) {
                grids.extend(crate::hierarchy::grids_of(store, TableId::People, &[r]));
            }
        }
    }
    grids.remove(crate::store::NONE);
    Ok(grids)
}
