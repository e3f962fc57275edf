//! R11 `CARE_VISIT_OVERDUE` — 关爱走访超期: an elderly person living alone was not visited.
//!
//! For each active record tagged `elderly_alone` with no visit of kind `care_visit` or
//! `household_visit` within the last **7** days (`care_interval_days`) whose `id_number` equals the
//! record's, or whose `room_id` equals the record's room.

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::{TableId, codes};
use crate::error::Result;
use crate::store::NONE;
use crate::time::{self, DAY};
use ahash::AHashMap;
use rayon::prelude::*;

/// Evaluates R11.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let Some(tagged) = ctx.ix.tags.get("elderly_alone") else {
        return Ok(Vec::new());
    };
    let people = ctx.table(TableId::People);
    let ids = people.keys("id_number")?;
    let rooms = people.keys("room_id")?;
    let from = ctx.as_of - ctx.params.r11_care_interval_days * DAY;
    let mut targets = tagged & &ctx.ix.active;
    if let Some(rows) = ctx.rows_in(TableId::People) {
        targets &= rows;
    }
    let targets: Vec<u32> = targets.iter().collect();
    // Each target's identity and room get a slot; a visit updates the latest instant of its slots.
    let mut slot_of_id: AHashMap<u32, u32> = AHashMap::with_capacity(targets.len());
    let mut slot_of_room: AHashMap<u32, u32> = AHashMap::with_capacity(targets.len());
    let mut n_slots = 0usize;
    for &p in &targets {
        for (key, map) in [
            (ids[p as usize], &mut slot_of_id),
            (rooms[p as usize], &mut slot_of_room),
        ] {
            if key != NONE {
                let next = n_slots as u32;
                if *map.entry(key).or_insert(next) == next {
                    n_slots += 1;
                }
            }
        }
    }
    // The latest care or household visit (on or before as_of) of each slot.
    let visits = ctx.table(TableId::Visits);
    let latest: Vec<i64> = if visits.rows > 0 {
        let at = visits.timestamps("visited_at")?.values();
        let kind = visits.codes("kind")?;
        let vid = visits.keys("id_number")?;
        let vroom = visits.keys("room_id")?;
        (0..visits.rows)
            .into_par_iter()
            .with_min_len(64 * 1024)
            .fold(
                || vec![i64::MIN; n_slots],
                |mut best, i| {
                    let k = kind.value(i);
                    if (k == codes::visit::CARE_VISIT || k == codes::visit::HOUSEHOLD_VISIT)
                        && at[i] <= ctx.as_of
                    {
                        let slots = [slot_of_id.get(&vid[i]), slot_of_room.get(&vroom[i])];
                        for &s in slots.into_iter().flatten() {
                            best[s as usize] = best[s as usize].max(at[i]);
                        }
                    }
                    best
                },
            )
            .reduce(
                || vec![i64::MIN; n_slots],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x = (*x).max(y);
                    }
                    a
                },
            )
    } else {
        vec![i64::MIN; n_slots]
    };
    let latest_of =
        |slot: Option<&u32>| slot.map(|&s| latest[s as usize]).filter(|&t| t != i64::MIN);
    let mut out = Vec::new();
    for p in targets {
        let i = p as usize;
        let last = [
            latest_of(slot_of_id.get(&ids[i])),
            latest_of(slot_of_room.get(&rooms[i])),
        ]
        .into_iter()
        .flatten()
        .max();
        if last.is_some_and(|t| t > from) {
            continue;
        }
        let last_date = last.map(time::date_of);
        out.push(ctx.person_anomaly(
            RuleId::R11,
            p,
            last_date.map_or(100_000, |d| (ctx.today - d) as i64),
            serde_json::json!({
                "last_visit": date_json(last_date),
                "care_interval_days": ctx.params.r11_care_interval_days,
            }),
        )?);
    }
    Ok(out)
}
