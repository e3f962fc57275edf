//! Evidence as a caller may see it: it names only what lies inside the caller's scope, and
//! holds no personal data unless the caller has `pii`.
//!
//! Evidence is JSON made by the rules (and kept in task lists), so it is read by what it says,
//! not by which rule made it: every string is checked.
//! - A field named after a table's key (`room_id`, `current_person_id`, `lease_ids`, …) names a
//!   record of that table; one named after a code of the hierarchy (`grid_code`,
//!   `current_grid_code`, `street_code`, …) names a unit. Any other string that is a code of the
//!   hierarchy, or the key of a record of a table that lies in grids, is taken as naming it.
//! - A record outside the scope (or one the city no longer has), or a unit that is neither
//!   inside the scope nor one the scope lies in, is replaced by `"outside your scope"`; an
//!   object whose every field was replaced becomes that string itself.
//! - Without `pii`, identity numbers inside strings are masked, and the fields the rules declare
//!   personal ([`crate::rules::PERSONAL_EVIDENCE`], e.g. an age, which would tell a birth date
//!   when asked at several instants) are null.

use super::{View, mask};
use crate::contract::TableId;
use crate::hierarchy::{self, GridPath, Level};
use serde_json::Value;

/// What an out-of-scope reference is replaced by.
pub const OUTSIDE: &str = "outside your scope";

/// The tables whose records evidence may name, with their key column.
fn keyed_tables() -> impl Iterator<Item = (TableId, &'static str)> {
    TableId::ALL.into_iter().filter_map(|t| {
        let k = t.def().single_key()?;
        (GridPath::of(t) != GridPath::None).then_some((t, k))
    })
}

/// Whether a field name names values of a key column `k` (`k`, `…_k`, `ks`, `…_ks`).
fn names_key(field: &str, k: &str) -> bool {
    let f = field
        .strip_suffix('s')
        .filter(|f| f.ends_with(k))
        .unwrap_or(field);
    f == k || f.strip_suffix(k).is_some_and(|p| p.ends_with('_'))
}

impl View {
    /// Evidence as the caller may see it.
    pub fn evidence(&self, v: &Value) -> Value {
        if self.scope().is_full() {
            return v.clone();
        }
        self.redact(None, v)
    }

    fn redact(&self, field: Option<&str>, v: &Value) -> Value {
        let personal =
            !self.pii() && field.is_some_and(|f| crate::rules::PERSONAL_EVIDENCE.contains(&f));
        match v {
            _ if personal => Value::Null,
            Value::String(s) => {
                if !self.scope().is_city() && self.names_outside(field, s) {
                    Value::String(OUTSIDE.into())
                } else if !self.pii() {
                    Value::String(mask::mask_identities_in_text(s))
                } else {
                    v.clone()
                }
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact(field, x)).collect()),
            Value::Object(m) => {
                let out: serde_json::Map<String, Value> = m
                    .iter()
                    .map(|(k, x)| (k.clone(), self.redact(Some(k), x)))
                    .collect();
                let all_outside = !out.is_empty()
                    && out.values().all(|x| x.as_str() == Some(OUTSIDE))
                    && m.values().any(|x| x.as_str() != Some(OUTSIDE));
                if all_outside {
                    Value::String(OUTSIDE.into())
                } else {
                    Value::Object(out)
                }
            }
            _ => v.clone(),
        }
    }

    /// Whether a string of evidence names a record or unit the caller may not see.
    fn names_outside(&self, field: Option<&str>, s: &str) -> bool {
        let field = field.unwrap_or("");
        let is_code_field = [
            "grid_code",
            "community_code",
            "street_code",
            "district_code",
        ]
        .iter()
        .any(|k| names_key(field, k));
        if is_code_field || Level::of_code(s).is_some() {
            return !self.scope().may_name(s);
        }
        let named: Vec<(TableId, &str)> = keyed_tables()
            .filter(|(t, k)| *t != TableId::Grids && names_key(field, k))
            .collect();
        if !named.is_empty() {
            // A record of a known table: outside unless found inside the scope.
            return !named
                .iter()
                .any(|&(t, _)| self.record_inside(t, s) == Some(true));
        }
        // Any other string: outside if it is the key of a record outside the scope.
        keyed_tables()
            .filter(|(t, _)| *t != TableId::Grids)
            .any(|(t, _)| self.record_inside(t, s) == Some(false))
    }

    /// Whether the record of `t` with key `key` lies inside the scope (`None`: no such record).
    fn record_inside(&self, t: TableId, key: &str) -> Option<bool> {
        let table = self.store().table(t);
        let k = t.def().single_key()?;
        let values = table.strings(k).ok()?;
        let row = table.key_index()?.get(values, key)?;
        let grid = hierarchy::grids_of(self.store(), t, &[row])[0];
        Some(self.sees_grid(grid))
    }
}

#[cfg(test)]
mod tests {
    use super::names_key;

    #[test]
    fn field_names_name_keys() {
        assert!(names_key("room_id", "room_id"));
        assert!(names_key("current_room_id", "room_id"));
        assert!(names_key("lease_ids", "lease_id"));
        assert!(names_key("grid_code", "grid_code"));
        assert!(!names_key("bedroom_id", "room_id"));
        assert!(!names_key("rooms", "room_id"));
        assert!(!names_key("partner_grid_codes_x", "grid_code"));
    }
}
