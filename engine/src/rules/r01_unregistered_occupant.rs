//! R01 `UNREGISTERED_OCCUPANT` — 实住未登记: someone lives in a building where they are not
//! registered.
//!
//! For each (`id_number`, building B) with at least **5** (`min_nights`) distinct nights at B
//! within the last **30** days (`window_days`), where `id_number` is not registered at B. Null
//! `id_number`s are ignored. A *night at B on date D* is an access event with that `id_number` at
//! B with `ts ∈ [D 20:00, D+1 06:00)`; the night belongs to D, and counts for the window when D's
//! 20:00 lies within `(as_of − window, as_of]`. Events after `as_of` are ignored.
//!
//! Evidence: nights, first and last night, and where the person is registered instead (room and
//! grid), or that the `id_number` has no active record at all.
//!
//! Door events are held sorted by building and time, so each building is one range, scanned in
//! parallel from the window's start;
//! the building's registered identities are a small sorted list, so residents' events are
//! dropped without any lookup outside the building.

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::TableId;
use crate::error::Result;
use crate::store::NONE;
use crate::time::{CST_OFFSET, DAY, HOUR, midnight};
use rayon::prelude::*;

/// The night an instant belongs to (`Some(D)` for `[D 20:00, D+1 06:00)`), else `None`.
pub fn night_of(ts: i64) -> Option<i32> {
    let local = ts + CST_OFFSET;
    let date = local.div_euclid(DAY) as i32;
    let tod = local.rem_euclid(DAY);
    if tod >= 20 * HOUR {
        Some(date)
    } else if tod < 6 * HOUR {
        Some(date - 1)
    } else {
        None
    }
}

/// Evaluates R01.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let events = ctx.table(TableId::AccessEvents);
    if events.rows == 0 {
        return Ok(Vec::new());
    }
    let ts = events.timestamps("ts")?.values();
    let ids = events.keys("id_number")?;
    let person_ids = ctx.table(TableId::People).keys("id_number")?;
    let window_start = ctx.as_of - ctx.params.r01_window_days * DAY;
    let min = ctx.params.r01_min_nights as usize;
    let buildings = ctx.table(TableId::Buildings);
    let building_grid = buildings.keys("grid_code")?;
    // (building, identity, nights, first night, last night)
    type Found = (u32, u32, usize, i32, i32);
    let found: Vec<Vec<Found>> = (0..buildings.rows as u32)
        .into_par_iter()
        .filter(|&b| !ctx.ix.events_of(b).is_empty())
        .map(|b| {
            let mut residents: Vec<u32> = ctx
                .ix
                .rooms_of_building
                .get(b)
                .iter()
                .flat_map(|&r| {
                    ctx.ix
                        .active_of_room
                        .get(r)
                        .iter()
                        .map(|&p| person_ids[p as usize])
                })
                .collect();
            residents.sort_unstable();
            let mut nights: Vec<(u32, i32)> = Vec::new();
            // Events are in time order: only those after the window's start are read.
            let range = ctx.ix.events_of(b);
            let from = range.start + ts[range.clone()].partition_point(|&t| t <= window_start);
            for row in from..range.end {
                let id = ids[row];
                let t = ts[row];
                if id == NONE || t > ctx.as_of {
                    continue;
                }
                let Some(d) = night_of(t) else { continue };
                let start = midnight(d) + 20 * HOUR;
                if start <= window_start || start > ctx.as_of {
                    continue;
                }
                if residents.binary_search(&id).is_ok() {
                    continue;
                }
                nights.push((id, d));
            }
            nights.sort_unstable();
            nights.dedup();
            let mut out = Vec::new();
            for group in nights.chunk_by(|a, b| a.0 == b.0) {
                if group.len() >= min {
                    out.push((
                        b,
                        group[0].0,
                        group.len(),
                        group[0].1,
                        group[group.len() - 1].1,
                    ));
                }
            }
            out
        })
        .collect();
    let mut anomalies = Vec::new();
    for (b, id, n, first, last) in found.into_iter().flatten() {
        let registered = ctx.registered_places(id);
        let has_record = registered.as_array().is_some_and(|a| !a.is_empty());
        anomalies.push(Anomaly {
            rule: RuleId::R01,
            subject_id: format!(
                "{}@{}",
                ctx.store.identity(id),
                ctx.key_of(TableId::Buildings, b)
            ),
            grid: building_grid[b as usize],
            building: Some(b),
            room: None,
            person: None,
            household: None,
            identity: Some(id),
            weight: n as i64,
            evidence: serde_json::json!({
                "nights": n,
                "first": date_json(Some(first)),
                "last": date_json(Some(last)),
                "window_days": ctx.params.r01_window_days,
                "registered_elsewhere": registered,
                "has_active_record": has_record,
            }),
        });
    }
    Ok(anomalies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{at, ymd};

    #[test]
    fn nights_run_from_20_00_to_06_00() {
        let d = ymd(2026, 10, 5).unwrap();
        assert_eq!(night_of(at(d, 20, 0, 0)), Some(d));
        assert_eq!(night_of(at(d, 23, 59, 59)), Some(d));
        assert_eq!(night_of(at(d + 1, 0, 0, 0)), Some(d));
        assert_eq!(night_of(at(d + 1, 5, 59, 59)), Some(d));
        assert_eq!(night_of(at(d + 1, 6, 0, 0)), None);
        assert_eq!(night_of(at(d, 19, 59, 59)), None);
        assert_eq!(night_of(at(d, 12, 0, 0)), None);
    }
}
