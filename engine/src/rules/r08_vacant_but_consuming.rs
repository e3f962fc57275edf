//! R08 `VACANT_BUT_CONSUMING` — 空置房有能耗: empty on paper, using power.
//!
//! For each residential room with `tenure = vacant` or with no active record registered at it,
//! whose `electricity_kwh ≥ 50` (`min_kwh`) in each of the last **2** (`months`) complete months
//! before `as_of` (for `as_of` in November 2026: 2026-09 and 2026-10). A missing reading counts
//! as below the threshold.
//!
//! Readings are scanned in parallel chunks; each reading at or above the threshold in one of the
//! months sets that month's bit in a dense per-room mask, so no hash table is involved. Only the
//! rooms found are looked at again, for their evidence.

use super::{Anomaly, Context, RuleId};
use crate::contract::{TENURE, TableId};
use crate::error::{Error, Result};
use crate::time;
use arrow::array::Array;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows per parallel chunk of readings.
const CHUNK: usize = 256 * 1024;

/// Evaluates R08.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let readings = ctx.table(TableId::UtilityReadings);
    if readings.rows == 0 {
        return Ok(Vec::new());
    }
    let k = ctx.params.r08_months.max(1);
    if k > 64 {
        return Err(Error::param(
            "r08_months",
            format!("{k} months: at most 64 are supported"),
        ));
    }
    let this_month = time::month_of(ctx.today);
    let first = this_month - k;
    let room = readings.keys("room_id")?;
    let (month, months) = readings.pooled("month")?;
    // Each distinct month once.
    let month_of: Vec<Option<i32>> = months
        .iter()
        .map(|v| v.and_then(|v| time::parse_month(v).ok()))
        .collect();
    let kwh = readings.floats("electricity_kwh")?;
    let n_rooms = ctx.table(TableId::Rooms).rows;
    let min_kwh = ctx.params.r08_min_kwh;
    // The month (0 = the oldest of the window) of a reading at or above the threshold.
    let qualifies = |i: usize| -> Option<usize> {
        if kwh.is_null(i) || kwh.value(i) < min_kwh || room[i] as usize >= n_rooms {
            return None;
        }
        let m = month_of.get(month[i] as usize).copied().flatten()?;
        (first..this_month)
            .contains(&m)
            .then(|| (m - first) as usize)
    };
    // The rooms that could be found: residential, and vacant or without an active record.
    let mut candidate = vec![false; n_rooms];
    for r in ctx.ix.residential_rooms.iter() {
        candidate[r as usize] = ctx.ix.active_of_room.get(r).is_empty();
    }
    for r in ctx.ix.vacant_rooms.iter() {
        if let Some(c) = candidate.get_mut(r as usize) {
            *c = ctx.ix.residential_rooms.contains(r);
        }
    }
    if ctx.grids.is_some() {
        for (r, c) in candidate.iter_mut().enumerate() {
            *c = *c && ctx.covers_room(r as u32);
        }
    }
    let masks: Vec<AtomicU64> = (0..n_rooms).map(|_| AtomicU64::new(0)).collect();
    ctx.par_rows(TableId::UtilityReadings, readings.rows, CHUNK)
        .for_each(|i| {
            let r = room[i] as usize;
            if r < n_rooms
                && candidate[r]
                && let Some(j) = qualifies(i)
            {
                masks[r].fetch_or(1 << j, Ordering::Relaxed);
            }
        });
    let all = if k == 64 { u64::MAX } else { (1u64 << k) - 1 };
    let rooms: Vec<u32> = (0..n_rooms as u32)
        .filter(|&r| masks[r as usize].load(Ordering::Relaxed) == all)
        .collect();
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    // The evidence: each found room's kWh per month.
    let mut slot = vec![u32::MAX; n_rooms];
    for (s, &r) in rooms.iter().enumerate() {
        slot[r as usize] = s as u32;
    }
    let hits: Vec<(u32, usize, f64)> = ctx
        .par_rows(TableId::UtilityReadings, readings.rows, CHUNK)
        .filter_map(|i| {
            let r = room[i] as usize;
            if r >= n_rooms || slot[r] == u32::MAX {
                return None;
            }
            qualifies(i).map(|j| (slot[r], j, kwh.value(i)))
        })
        .collect();
    let mut values = vec![vec![None::<f64>; k as usize]; rooms.len()];
    for (s, j, v) in hits {
        values[s as usize][j] = Some(v);
    }
    let tenure = ctx.table(TableId::Rooms).codes("tenure")?;
    let mut out = Vec::with_capacity(rooms.len());
    for (r, v) in rooms.into_iter().zip(values) {
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
