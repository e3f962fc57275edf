//! R03 `UNFILED_RENTAL` — 出租屋未登记: a room is let but not filed as a rental.
//!
//! For each room with at least one lease active at `as_of`, whose `tenure ≠ rental` or whose
//! `rental_registered_on` is null or later than `date(as_of)`.

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::{TENURE, TableId, codes};
use crate::error::Result;
use arrow::array::Array;

/// Evaluates R03.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let leases = ctx.table(TableId::Leases);
    if leases.rows == 0 {
        return Ok(Vec::new());
    }
    let room = leases.keys("room_id")?;
    let start = leases.dates("start_date")?;
    let end = leases.dates("end_date")?;
    let today = ctx.today;
    let rooms = ctx.table(TableId::Rooms);
    let tenure = rooms.codes("tenure")?;
    let filed = rooms.dates("rental_registered_on")?;
    // Per room: active leases and the earliest start (dense, in room order).
    let mut let_rooms: Vec<(u32, i32)> = vec![(0, i32::MAX); rooms.rows];
    for i in ctx.rows(TableId::Leases, leases.rows) {
        let s = start.value(i);
        if s <= today
            && (end.is_null(i) || today <= end.value(i))
            && let Some(e) = let_rooms.get_mut(room[i] as usize)
        {
            e.0 += 1;
            e.1 = e.1.min(s);
        }
    }
    let mut out = Vec::new();
    for (i, &(n, first)) in let_rooms.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let r = i as u32;
        let t = tenure.value(i);
        let filed_on = (!filed.is_null(i)).then(|| filed.value(i));
        let is_filed = t == codes::tenure::RENTAL && filed_on.is_some_and(|f| f <= today);
        if !is_filed {
            out.push(ctx.room_anomaly(
                RuleId::R03,
                r,
                (today - first) as i64,
                serde_json::json!({
                    "tenure": TENURE.get(t as usize).copied().unwrap_or(""),
                    "rental_registered_on": date_json(filed_on),
                    "active_leases": n,
                    "let_since": date_json(Some(first)),
                }),
            )?);
        }
    }
    Ok(out)
}
