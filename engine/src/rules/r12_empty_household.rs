//! R12 `EMPTY_HOUSEHOLD` — 空挂户: a household with no one in it.
//!
//! For each household with no active record whose `household_id` points to it.

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::{TableId, codes};
use crate::error::Result;
use crate::store::NONE;
use arrow::array::Array;

/// Evaluates R12.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let households = ctx.table(TableId::Households);
    let room = households.keys("room_id")?;
    let registered = households.dates("registered_on")?;
    let people = ctx.table(TableId::People);
    let hh = people.keys("household_id")?;
    let status = people.codes("status")?;
    // Records of any status per household: (moved out, deceased).
    let mut former = vec![(0u32, 0u32); households.rows];
    for (i, &h) in hh.iter().enumerate() {
        if h == NONE {
            continue;
        }
        match status.value(i) {
            codes::status::MOVED_OUT => former[h as usize].0 += 1,
            codes::status::DECEASED => former[h as usize].1 += 1,
            _ => {}
        }
    }
    let mut out = Vec::new();
    for h in ctx
        .rows(TableId::Households, households.rows)
        .map(|h| h as u32)
    {
        if !ctx.ix.active_of_household.get(h).is_empty() {
            continue;
        }
        let i = h as usize;
        let reg = (!registered.is_null(i)).then(|| registered.value(i));
        let r = room[i];
        let mut a = ctx.room_anomaly(
            RuleId::R12,
            r,
            reg.map_or(0, |d| (ctx.today - d) as i64),
            serde_json::json!({
                "moved_out_records": former[i].0,
                "deceased_records": former[i].1,
                "registered_on": date_json(reg),
            }),
        )?;
        a.subject_id = ctx.key_of(TableId::Households, h);
        a.household = Some(h);
        out.push(a);
    }
    Ok(out)
}
