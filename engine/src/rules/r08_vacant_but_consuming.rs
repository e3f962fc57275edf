//! R08 `VACANT_BUT_CONSUMING` — 空置房有能耗: empty on paper, using power.
//!
//! For each residential room with `tenure = vacant` or with no active record registered at it,
//! whose `electricity_kwh ≥ 50` (`min_kwh`) in each of the last **2** (`months`) complete months
//! before `as_of` (for `as_of` in November 2026: 2026-09 and 2026-10). A missing reading counts
//! as below the threshold.

use super::{Anomaly, Context, RuleId};
use crate::contract::{TENURE, TableId};
use crate::error::Result;
use crate::time;
use arrow::array::Array;
use std::collections::HashMap;

/// Evaluates R08.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let readings = ctx.table(TableId::UtilityReadings);
    if readings.rows == 0 {
        return Ok(Vec::new());
    }
    let k = ctx.params.r08_months.max(1);
    let this_month = time::month_of(ctx.today);
    let first = this_month - k;
    let room = readings.keys("room_id")?;
    let month = readings.strings("month")?;
    let kwh = readings.floats("electricity_kwh")?;
    // Room → kWh of each of the months (index 0 = the oldest).
    let mut use_by_room: HashMap<u32, Vec<Option<f64>>> = HashMap::new();
    for i in 0..readings.rows {
        if kwh.is_null(i) {
            continue;
        }
        let Ok(m) = time::parse_month(month.value(i)) else {
            continue;
        };
        if m < first || m >= this_month {
            continue;
        }
        let v = kwh.value(i);
        if v >= ctx.params.r08_min_kwh {
            use_by_room
                .entry(room[i])
                .or_insert_with(|| vec![None; k as usize])[(m - first) as usize] = Some(v);
        }
    }
    let tenure = ctx.table(TableId::Rooms).codes("tenure")?;
    let mut rooms: Vec<u32> = use_by_room
        .iter()
        .filter(|(_, v)| v.iter().all(Option::is_some))
        .map(|(&r, _)| r)
        .filter(|&r| {
            ctx.ix.residential_rooms.contains(r)
                && (ctx.ix.vacant_rooms.contains(r) || ctx.ix.active_of_room.get(r).is_empty())
        })
        .collect();
    rooms.sort_unstable();
    let mut out = Vec::new();
    for r in rooms {
        let v = &use_by_room[&r];
        let mut months = serde_json::Map::new();
        for (j, x) in v.iter().enumerate() {
            months.insert(time::format_month(first + j as i32), serde_json::json!(x));
        }
        let least = v.iter().flatten().fold(f64::INFINITY, |a, &b| a.min(b));
        out.push(ctx.room_anomaly(
            RuleId::R08,
            r,
            least as i64,
            serde_json::json!({
                "electricity_kwh": months,
                "tenure": TENURE.get(tenure.value(r as usize) as usize).copied().unwrap_or(""),
                "active_records": ctx.ix.active_of_room.get(r).len(),
            }),
        )?);
    }
    Ok(out)
}
