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
//! The events are not read here: the door summary built at load ([`crate::store::doors`]) holds,
//! per building, the (identity, night) pairs of identities without an active record there, with
//! each night's first event, sorted by identity. A night counts when its 20:00 lies in the window
//! and its first event is not after `as_of`; buildings are taken in parallel.

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::TableId;
use crate::error::Result;
use crate::time::{DAY, HOUR, midnight};
use rayon::prelude::*;

/// Evaluates R01.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let events = ctx.table(TableId::AccessEvents);
    if events.rows == 0 {
        return Ok(Vec::new());
    }
    let window_start = ctx.as_of - ctx.params.r01_window_days * DAY;
    let min = ctx.params.r01_min_nights as usize;
    let buildings = ctx.table(TableId::Buildings);
    let building_grid = buildings.keys("grid_code")?;
    // (building, identity, nights, first night, last night)
    type Found = (u32, u32, usize, i32, i32);
    let found: Vec<Vec<Found>> = (0..buildings.rows as u32)
        .into_par_iter()
        .filter(|&b| ctx.covers(building_grid[b as usize]) && !ctx.ix.events_of(b).is_empty())
        .map(|b| {
            // The nights at the building of identities registered elsewhere, from the door
            // summary, by identity: those of the window, up to `as_of`.
            let nights: Vec<(u32, i32)> = ctx
                .ix
                .doors
                .nights(b)
                .iter()
                .filter(|n| {
                    let start = midnight(n.date) + 20 * HOUR;
                    start > window_start && start <= ctx.as_of && n.first <= ctx.as_of
                })
                .map(|n| (n.identity, n.date))
                .collect();
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
            evidence: std::sync::Arc::new(serde_json::json!({
                "nights": n,
                "first": date_json(Some(first)),
                "last": date_json(Some(last)),
                "window_days": ctx.params.r01_window_days,
                "registered_elsewhere": registered,
                "has_active_record": has_record,
            })),
        });
    }
    Ok(anomalies)
}
