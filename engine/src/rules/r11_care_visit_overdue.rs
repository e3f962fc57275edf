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
use std::collections::HashMap;

/// Evaluates R11.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let Some(tagged) = ctx.ix.tags.get("elderly_alone") else {
        return Ok(Vec::new());
    };
    let people = ctx.table(TableId::People);
    let ids = people.keys("id_number")?;
    let rooms = people.keys("room_id")?;
    let from = ctx.as_of - ctx.params.r11_care_interval_days * DAY;
    // The latest care or household visit (on or before as_of) of each identity and room.
    let mut by_id: HashMap<u32, i64> = HashMap::new();
    let mut by_room: HashMap<u32, i64> = HashMap::new();
    let visits = ctx.table(TableId::Visits);
    if visits.rows > 0 {
        let at = visits.timestamps("visited_at")?.values();
        let kind = visits.codes("kind")?;
        let vid = visits.keys("id_number")?;
        let vroom = visits.keys("room_id")?;
        for i in 0..visits.rows {
            let k = kind.value(i);
            if (k != codes::visit::CARE_VISIT && k != codes::visit::HOUSEHOLD_VISIT)
                || at[i] > ctx.as_of
            {
                continue;
            }
            for (key, map) in [(vid[i], &mut by_id), (vroom[i], &mut by_room)] {
                if key != NONE {
                    let e = map.entry(key).or_insert(at[i]);
                    *e = (*e).max(at[i]);
                }
            }
        }
    }
    let mut out = Vec::new();
    for p in (tagged & &ctx.ix.active).iter() {
        let i = p as usize;
        let last = [by_id.get(&ids[i]), by_room.get(&rooms[i])]
            .into_iter()
            .flatten()
            .copied()
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
