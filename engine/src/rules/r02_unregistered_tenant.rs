//! R02 `UNREGISTERED_TENANT` — 租客未登记: a leased room's tenant is not registered there.
//!
//! For each lease active at `as_of` (`start_date ≤ date(as_of)` and `end_date` null or
//! `date(as_of) ≤ end_date`) whose `start_date` is at least **3** (`grace_working_days`) working
//! days before `date(as_of)` (the 3rd working day after `start_date` is ≤ `date(as_of)`), where
//! `tenant_id_number` is not registered at the lease's room. One anomaly per (tenant, room),
//! however many leases match.

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::TableId;
use crate::error::Result;
use arrow::array::Array;
use std::collections::BTreeMap;

/// Whether the grace period of a lease starting on `start` has ended by `today`.
pub fn grace_ended(cal: &crate::calendar::Calendar, start: i32, grace: u32, today: i32) -> bool {
    if grace == 0 {
        return start <= today;
    }
    cal.nth_workday_after(start, grace)
        .is_some_and(|d| d <= today)
}

/// Evaluates R02.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let leases = ctx.table(TableId::Leases);
    if leases.rows == 0 {
        return Ok(Vec::new());
    }
    let room = leases.keys("room_id")?;
    let tenant = leases.keys("tenant_id_number")?;
    let start = leases.dates("start_date")?;
    let end = leases.dates("end_date")?;
    let person_room = ctx.table(TableId::People).keys("room_id")?;
    let today = ctx.today;
    let grace = ctx.params.r02_grace_working_days;
    // (tenant, room) → lease rows.
    let mut hits: BTreeMap<(u32, u32), Vec<u32>> = BTreeMap::new();
    let mut cache: std::collections::HashMap<i32, bool> = std::collections::HashMap::new();
    for i in ctx.rows(TableId::Leases, leases.rows) {
        let s = start.value(i);
        if s > today || (!end.is_null(i) && end.value(i) < today) {
            continue;
        }
        let ended = *cache
            .entry(s)
            .or_insert_with(|| grace_ended(&ctx.store.calendar, s, grace, today));
        if !ended {
            continue;
        }
        let (t, r) = (tenant[i], room[i]);
        let registered = ctx
            .ix
            .active_of_identity
            .get(t)
            .iter()
            .any(|&p| person_room[p as usize] == r);
        if !registered {
            hits.entry((t, r)).or_default().push(i as u32);
        }
    }
    let mut out = Vec::with_capacity(hits.len());
    for ((t, r), rows) in hits {
        let first = rows
            .iter()
            .map(|&i| start.value(i as usize))
            .min()
            .unwrap_or(today);
        let lease_ids: Vec<String> = rows
            .iter()
            .map(|&i| ctx.key_of(TableId::Leases, i))
            .collect();
        let mut a = ctx.room_anomaly(
            RuleId::R02,
            r,
            (today - first) as i64,
            serde_json::json!({
                "lease_ids": lease_ids,
                "start_date": date_json(Some(first)),
                "grace_working_days": grace,
                "registered_elsewhere": ctx.registered_places(t),
            }),
        )?;
        a.subject_id = format!("{}@{}", ctx.store.identity(t), a.subject_id);
        a.identity = Some(t);
        out.push(a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Calendar;
    use crate::time::ymd;

    fn d(y: i32, m: u32, day: u32) -> i32 {
        ymd(y, m, day).unwrap()
    }

    #[test]
    fn grace_counts_working_days_across_holidays_and_make_up_days() {
        let c = Calendar::china();
        // A lease starting on Wednesday 30 September 2026, before the National Day holiday
        // (1–7 October): the working days after it are Thursday 8, Friday 9 and the make-up
        // Saturday 10 October.
        let start = d(2026, 9, 30);
        assert!(!grace_ended(&c, start, 3, d(2026, 10, 9)));
        assert!(grace_ended(&c, start, 3, d(2026, 10, 10)));
        // An ordinary week: Tuesday → Wed, Thu, Fri.
        assert!(!grace_ended(&c, d(2026, 11, 10), 3, d(2026, 11, 12)));
        assert!(grace_ended(&c, d(2026, 11, 10), 3, d(2026, 11, 13)));
        // Over a weekend: Thursday → Fri, Mon, Tue.
        assert!(!grace_ended(&c, d(2026, 11, 12), 3, d(2026, 11, 16)));
        assert!(grace_ended(&c, d(2026, 11, 12), 3, d(2026, 11, 17)));
        // A make-up working Sunday (20 September 2026) counts as a working day.
        assert!(grace_ended(&c, d(2026, 9, 17), 3, d(2026, 9, 21)));
        assert!(!grace_ended(
            &Calendar::weekdays_only(),
            d(2026, 9, 17),
            3,
            d(2026, 9, 21)
        ));
    }
}
