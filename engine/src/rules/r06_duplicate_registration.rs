//! R06 `DUPLICATE_REGISTRATION` — 重复登记: the same person registered more than once.
//!
//! For each `id_number` with two or more active records: every one of those records except the
//! **current** one, which is the record with the latest `registered_on` (ties: the greatest
//! `person_id`). Evidence: the current record's person_id, room and grid.

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::TableId;
use crate::error::Result;

/// Evaluates R06.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let people = ctx.table(TableId::People);
    let registered = people.dates("registered_on")?;
    let person_id = people.strings("person_id")?;
    let rooms = people.keys("room_id")?;
    let csr = &ctx.ix.active_of_identity;
    // Restricted to some grids: the identities of their active records.
    let identities: Box<dyn Iterator<Item = u32>> = match ctx.rows_in(TableId::People) {
        Some(rows) => {
            let ids = people.keys("id_number")?;
            let mut v: Vec<u32> = (rows & &ctx.ix.active)
                .iter()
                .map(|p| ids[p as usize])
                .filter(|&id| id != crate::store::NONE)
                .collect();
            v.sort_unstable();
            v.dedup();
            Box::new(v.into_iter())
        }
        None => Box::new(0..csr.keys() as u32),
    };
    let mut out = Vec::new();
    for id in identities {
        let records = csr.get(id);
        if records.len() < 2 {
            continue;
        }
        let key = |p: u32| (registered.value(p as usize), person_id.value(p as usize));
        let current = records
            .iter()
            .copied()
            .max_by(|&a, &b| key(a).cmp(&key(b)))
            .unwrap_or(records[0]);
        let croom = rooms[current as usize];
        for &p in records {
            if p == current {
                continue;
            }
            let reg = registered.value(p as usize);
            out.push(ctx.person_anomaly(
                RuleId::R06,
                p,
                (ctx.today - reg) as i64,
                serde_json::json!({
                    "registered_on": date_json(Some(reg)),
                    "active_records": records.len(),
                    "current_person_id": person_id.value(current as usize),
                    "current_room_id": ctx.key_of(TableId::Rooms, croom),
                    "current_grid_code": ctx.key_of(TableId::Grids, ctx.ix.room_grid[croom as usize]),
                }),
            )?);
        }
    }
    Ok(out)
}
