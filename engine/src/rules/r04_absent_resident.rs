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
use crate::time::{self, DAY};
use arrow::array::Array;
use rayon::prelude::*;

/// Evaluates R04.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let p = ctx.params;
    let buildings = ctx.table(TableId::Buildings);
    let since = buildings.dates("access_control_since")?;
    let building_grid = buildings.keys("grid_code")?;
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
        .filter(|&b| {
            !since.is_null(b as usize)
                && since.value(b as usize) <= latest_since
                && ctx.covers(building_grid[b as usize])
        })
        .collect();
    let found: Vec<Vec<(u32, Option<i64>)>> = candidates
        .par_iter()
        .map(|&b| {
            if !ctx.ix.events_of(b).any_in(ts, alive_from, ctx.as_of) {
                return Vec::new(); // the door system reported nothing in the last days
            }
            // Each identity's last event at the building up to `as_of`, from the door summary.
            let seen = ctx.ix.doors.last_seen(ctx.ix, b, ctx.as_of, ids, ts);
            let mut out: Vec<(u32, Option<i64>)> = Vec::new();
            for &room in ctx.ix.rooms_of_building.get(b) {
                for &person in ctx.ix.active_of_room.get(room) {
                    let i = person as usize;
                    // age < min_age, or age ≥ max_age
                    let b = birth.value(i);
                    if b > youngest || b <= oldest {
                        continue;
                    }
                    if registered.value(i) > latest_since {
                        continue;
                    }
                    let last = seen
                        .binary_search_by_key(&person_ids[i], |e| e.0)
                        .ok()
                        .map(|k| seen[k].1);
                    // Absent: not seen after `absent_from`; last seen, then, before the window.
                    if last.is_none_or(|t| t <= absent_from)
                        && !housebound.is_some_and(|h| h.contains(person))
                    {
                        out.push((person, last));
                    }
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
