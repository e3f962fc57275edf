//! R05 `DECEASED_ACTIVE` — 死亡未注销: dead, but still registered.
//!
//! For each active record whose `id_number` has a `deaths` row with `died_on ≤ date(as_of)`.

use super::{Anomaly, Context, RuleId, date_json};
use crate::contract::TableId;
use crate::error::Result;
use arrow::array::Array;
use std::collections::HashMap;

/// Evaluates R05.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let deaths = ctx.table(TableId::Deaths);
    if deaths.rows == 0 {
        return Ok(Vec::new());
    }
    let ids = deaths.keys("id_number")?;
    let died = deaths.dates("died_on")?;
    let source = deaths.strings("source")?;
    // Identity → earliest death on or before as_of, with its source.
    let mut dead: HashMap<u32, (i32, Option<String>)> = HashMap::new();
    for i in 0..deaths.rows {
        let d = died.value(i);
        if d > ctx.today {
            continue;
        }
        let s = (!source.is_null(i)).then(|| source.value(i).to_string());
        let e = dead.entry(ids[i]).or_insert((d, s.clone()));
        if d < e.0 {
            *e = (d, s);
        }
    }
    let mut out = Vec::new();
    let mut keys: Vec<u32> = dead.keys().copied().collect();
    keys.sort_unstable();
    for id in keys {
        let (d, s) = &dead[&id];
        for &person in ctx.ix.active_of_identity.get(id) {
            out.push(ctx.person_anomaly(
                RuleId::R05,
                person,
                (ctx.today - d) as i64,
                serde_json::json!({ "died_on": date_json(Some(*d)), "source": s }),
            )?);
        }
    }
    Ok(out)
}
