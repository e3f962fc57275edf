//! R07 `INVALID_ID_NUMBER` — 证件号码异常: the identity number cannot be right.
//!
//! For each active record with `doc_type = resident_id` whose `id_number` fails any of: length
//! 18; first 17 characters digits; the check character (ISO 7064 MOD 11-2, `x` accepted as `X`);
//! characters 7–14 form a real date equal to `birth_date`; the 17th digit's parity matches `sex`
//! (odd = M). Evidence: the first check that failed, in that order (`length`, `digits`,
//! `checksum`, `birth_date`, `sex`).

use super::{Anomaly, Context, RuleId};
use crate::contract::{TableId, codes};
use crate::error::Result;
use crate::idcard;
use rayon::prelude::*;

/// Evaluates R07.
pub fn evaluate(ctx: &Context) -> Result<Vec<Anomaly>> {
    let people = ctx.table(TableId::People);
    let doc = people.codes("doc_type")?;
    let sex = people.codes("sex")?;
    let birth = people.dates("birth_date")?;
    let ids = people.keys("id_number")?;
    let active: Vec<u32> = match ctx.rows_in(TableId::People) {
        Some(rows) => (rows & &ctx.ix.active).iter().collect(),
        None => ctx.ix.active.iter().collect(),
    };
    let failed: Vec<(u32, idcard::IdCheck)> = active
        .par_chunks(64 * 1024)
        .flat_map_iter(|chunk| {
            chunk.iter().filter_map(|&p| {
                let i = p as usize;
                if doc.value(i) != codes::doc_type::RESIDENT_ID {
                    return None;
                }
                let male = sex.value(i) == codes::sex::M;
                let facts = ctx.store.identity_facts(ids[i]);
                facts.check(birth.value(i), male).map(|c| (p, c))
            })
        })
        .collect();
    failed
        .into_iter()
        .map(|(p, check)| {
            ctx.person_anomaly(
                RuleId::R07,
                p,
                0,
                serde_json::json!({ "check": check.as_str() }),
            )
        })
        .collect()
}
