//! R10 `VERIFICATION_OVERDUE` — 核查超期: not verified in person for too long.
//!
//! For each active record whose `last_verified_on` is null or older than **365** days before
//! `date(as_of)` for `residence_kind = hukou`, **180** days for `floating` and `overseas`
//! (`last_verified_on < date(as_of) − N days`).

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::{TableId, codes};
use crate::error::Result;
use arrow::array::Array;
use rayon::prelude::*;

/// Evaluates R10.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let people = ctx.table(TableId::People);
    let verified = people.dates("last_verified_on")?;
    let kind = people.codes("residence_kind")?;
    let limit_of = |i: usize| {
        if kind.value(i) == codes::residence::HUKOU {
            ctx.params.r10_hukou_days
        } else {
            ctx.params.r10_other_days
        }
    };
    let last_of = |i: usize| (!verified.is_null(i)).then(|| verified.value(i));
    // The dates are read in order, in parallel; only overdue records are looked up as active.
    let overdue: Vec<u32> = ctx
        .par_rows(TableId::People, people.rows, 64 * 1024)
        .map(|i| i as u32)
        .filter(|&p| {
            let i = p as usize;
            let due = ctx.today - limit_of(i) as i32;
            last_of(i).is_none_or(|d| d < due) && ctx.ix.active.contains(p)
        })
        .collect();
    overdue
        .par_iter()
        .map(|&p| {
            let i = p as usize;
            let limit = limit_of(i);
            let due = ctx.today - limit as i32;
            let last = last_of(i);
            let overdue = last.map_or(100_000, |d| (due - d) as i64);
            ctx.person_anomaly(
                RuleId::R10,
                p,
                overdue,
                serde_json::json!({
                    "last_verified_on": date_json(last),
                    "limit_days": limit,
                    "overdue_days": last.map(|d| due - d),
                }),
            )
        })
        .collect()
}
