//! R04 `ABSENT_RESIDENT` — 人走户在: registered, but not seen for a long time.
//!
//! For each active record registered at a room of building B where B has
//! `access_control = true`, `access_control_since ≤ date(as_of) − 60 days` and B has at least one
//! access event (any id) within the last **7** days (the system is alive), and there is **no**
//! access event with the record's `id_number` at B within the last **60** days (`absent_days`).
//! Exempt: age < **6** or ≥ **80** at `as_of`, records tagged `housebound`, and records with
//! `registered_on` within the last 60 days (`registered_on > date(as_of) − 60`).

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::TableId;
use crate::error::Result;
use crate::store::NONE;
use crate::time::{self, DAY};
use arrow::array::Array;
use rayon::prelude::*;

/// Evaluates R04.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let p = ctx.params;
    let buildings = ctx.table(TableId::Buildings);
    let since = buildings.dates("access_control_since")?;
    let events = ctx.table(TableId::AccessEvents);
    let empty: &[u32] = &[];
    let (ts, ids): (&[i64], &[u32]) = if events.rows > 0 {
        (events.timestamps("ts")?.values(), events.keys("id_number")?)
    } else {
        (&[], empty)
    };
    let people = ctx.table(TableId::People);
    let person_ids = people.keys("id_number")?;
    let birth = people.dates("birth_date")?;
    let registered = people.dates("registered_on")?;
    let housebound = ctx.ix.tags.get("housebound");
    let absent_from = ctx.as_of - p.r04_absent_days * DAY;
    let alive_from = ctx.as_of - p.r04_alive_days * DAY;
    let latest_since = ctx.today - p.r04_absent_days as i32;
    // Ages as birth-date bounds, worked out once: exempt when born after `youngest` (younger
    // than min_age) or on or before `oldest` (max_age or older).
    let youngest = time::latest_birth_for_age(ctx.today, p.r04_min_age);
    let oldest = time::latest_birth_for_age(ctx.today, p.r04_max_age);
    let candidates: Vec<u32> = ctx
        .ix
        .access_buildings
        .iter()
        .filter(|&b| !since.is_null(b as usize) && since.value(b as usize) <= latest_since)
        .collect();
    let found: Vec<Vec<(u32, Option<i64>)>> = candidates
        .par_iter()
        .map(|&b| {
            // A building's events are in time order: windows are sub-ranges.
            let range = ctx.ix.events_of(b);
            let times = &ts[range.clone()];
            let after = |t: i64| range.start + times.partition_point(|&x| x <= t);
            let end = after(ctx.as_of);
            if after(alive_from) >= end {
                return Vec::new(); // the door system reported nothing in the last days
            }
            let from = after(absent_from);
            // Who was seen within the window: a small sorted list.
            let mut seen: Vec<u32> = (from..end)
                .map(|row| ids[row])
                .filter(|&id| id != NONE)
                .collect();
            seen.sort_unstable();
            seen.dedup();
            let mut out: Vec<(u32, Option<i64>)> = Vec::new();
            for &room in ctx.ix.rooms_of_building.get(b) {
                for &person in ctx.ix.active_of_room.get(room) {
                    let i = person as usize;
                    // age < min_age, or age ≥ max_age
                    let b = birth.value(i);
                    if b > youngest || b <= oldest {
                        continue;
                    }
                    if housebound.is_some_and(|h| h.contains(person)) {
                        continue;
                    }
                    if registered.value(i) > ctx.today - p.r04_absent_days as i32 {
                        continue;
                    }
                    if seen.binary_search(&person_ids[i]).is_err() {
                        out.push((person, None));
                    }
                }
            }
            if out.is_empty() {
                return out;
            }
            // When each absent identity was last seen at all: before the window, in time order.
            let mut absent: Vec<(u32, Option<i64>)> = out
                .iter()
                .map(|&(p, _)| (person_ids[p as usize], None))
                .collect();
            absent.sort_unstable();
            absent.dedup();
            for row in range.start..from {
                if ids[row] == NONE {
                    continue;
                }
                if let Ok(k) = absent.binary_search_by_key(&ids[row], |e| e.0) {
                    absent[k].1 = Some(ts[row]);
                }
            }
            for (person, last) in &mut out {
                let id = person_ids[*person as usize];
                if let Ok(k) = absent.binary_search_by_key(&id, |e| e.0) {
                    *last = absent[k].1;
                }
            }
            out
        })
        .collect();
    let mut out = Vec::new();
    for (person, last) in found.into_iter().flatten() {
        let last_date = last.map(time::date_of);
        let since_date = registered.value(person as usize);
        let weight = (ctx.today - last_date.unwrap_or(since_date)) as i64;
        out.push(ctx.person_anomaly(
            RuleId::R04,
            person,
            weight,
            serde_json::json!({
                "last_seen": date_json(last_date),
                "absent_days": p.r04_absent_days,
                "age": time::age_on(birth.value(person as usize), ctx.today),
            }),
        )?);
    }
    Ok(out)
}
