//! R09 `OVERCROWDED` — 群租: more people than the room allows.
//!
//! For each residential room whose occupants exceed `max(1, floor(area_m2 / 5))`
//! (`min_m2_per_person` = 5, the Guangzhou rule). Occupants = the distinct `id_number`s registered
//! at the room, together with the tenants of leases active at `as_of` on the room.

use super::{Anomaly, Context, RuleId};
use crate::contract::TableId;
use crate::error::Result;
use crate::store::index::Csr;
use arrow::array::Array;
use rayon::prelude::*;

/// The most occupants a room may have.
pub fn capacity(area_m2: f64, min_m2_per_person: f64) -> i64 {
    ((area_m2 / min_m2_per_person).floor() as i64).max(1)
}

/// Evaluates R09.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let rooms = ctx.table(TableId::Rooms);
    let area = rooms.floats("area_m2")?;
    let person_ids = ctx.table(TableId::People).keys("id_number")?;
    // Leases active at as_of, by room.
    let leases = ctx.table(TableId::Leases);
    let (active_leases, tenant) = if leases.rows > 0 {
        let start = leases.dates("start_date")?;
        let end = leases.dates("end_date")?;
        let active =
            |i: usize| start.value(i) <= ctx.today && (end.is_null(i) || ctx.today <= end.value(i));
        (
            Csr::build(leases.keys("room_id")?, rooms.rows, active),
            leases.keys("tenant_id_number")?,
        )
    } else {
        (Csr::default(), &[][..])
    };
    let candidates: Vec<u32> = match ctx.rows_in(TableId::Rooms) {
        Some(rows) => (rows & &ctx.ix.residential_rooms).iter().collect(),
        None => ctx.ix.residential_rooms.iter().collect(),
    };
    let (active_leases, area) = (&active_leases, &area);
    let found: Vec<(u32, i64, i64, usize)> = candidates
        .par_chunks(64 * 1024)
        .flat_map_iter(|chunk| {
            let mut ids: Vec<u32> = Vec::new();
            chunk.iter().filter_map(move |&r| {
                let registered = ctx.ix.active_of_room.get(r);
                let leased = active_leases.get(r);
                let cap = capacity(area.value(r as usize), ctx.params.r09_min_m2_per_person);
                if ((registered.len() + leased.len()) as i64) <= cap {
                    return None;
                }
                ids.clear();
                ids.extend(registered.iter().map(|&p| person_ids[p as usize]));
                ids.sort_unstable();
                ids.dedup();
                let n_registered = ids.len();
                ids.extend(leased.iter().map(|&l| tenant[l as usize]));
                ids.sort_unstable();
                ids.dedup();
                let occupants = ids.len() as i64;
                (occupants > cap).then_some((r, occupants, cap, n_registered))
            })
        })
        .collect();
    found
        .into_iter()
        .map(|(r, occupants, cap, n_registered)| {
            ctx.room_anomaly(
                RuleId::R09,
                r,
                occupants - cap,
                serde_json::json!({
                    "occupants": occupants,
                    "capacity": cap,
                    "area_m2": area.value(r as usize),
                    "registered": n_registered,
                    "unregistered_tenants": occupants as usize - n_registered,
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::capacity;

    #[test]
    fn capacity_is_floor_of_area_over_5_but_at_least_1() {
        assert_eq!(capacity(20.0, 5.0), 4);
        assert_eq!(capacity(24.9, 5.0), 4);
        assert_eq!(capacity(9.5, 5.0), 1);
        assert_eq!(capacity(4.0, 5.0), 1);
        assert_eq!(capacity(0.5, 5.0), 1);
    }
}
