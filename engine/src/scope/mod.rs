//! The caller's scope, in one place: which rows of each table a caller may see, which columns
//! are masked and how, and how evidence is redacted (`spec/interfaces.md`, "Who may see what").
//!
//! A [`Scope`] is what a token grants: the whole city or one code of the grid hierarchy, and
//! whether personal data is shown. A [`View`] is a scope applied to one city: it checks that the
//! code is a code of that city (an unknown code is refused, never widened to the city), and
//! answers for every path — SQL scans and table functions, KPIs, sweeps, task lists, the HTTP
//! API and the PostgreSQL endpoint:
//!
//! - [`View::rows`]: the rows of a table inside the scope (through the per-grid bitmaps);
//! - [`View::mask_stored`] / [`View::mask`]: personal columns masked as the contract declares;
//! - [`View::evidence`]: evidence naming only what lies inside the scope;
//! - [`View::anomalies`], [`View::tasks`], [`View::task`]: the engine's own tables as the
//!   caller may see them, in an order that does not follow personal data.

pub mod evidence;
pub mod mask;
pub mod secret;

use crate::contract::{Mask, TableId};
use crate::error::{Error, Result};
use crate::hierarchy::{self, GridPath, Level};
use crate::rules::{Sweep, anomalies_masks};
use crate::store::{NONE, Store};
use crate::tasks::{Task, tasks_batch};
use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute;
use arrow::datatypes::DataType;
use roaring::RoaringBitmap;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// What a caller may see: an area of the city and whether personal data is shown.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `None`: the whole city; else a district (6 digits), street (9), community (12) or grid
    /// (15) code.
    code: Option<String>,
    pii: bool,
}

impl Scope {
    /// Everything, unmasked (the command line; an admin with city scope and `pii`).
    pub fn full() -> Scope {
        Scope {
            code: None,
            pii: true,
        }
    }

    /// The whole city.
    pub fn city(pii: bool) -> Scope {
        Scope { code: None, pii }
    }

    /// Parses a scope as written on a token: `city`, or a district, street, community or grid
    /// code. A blank or malformed scope is refused: nothing ever falls back to the whole city.
    pub fn parse(text: &str, pii: bool) -> Result<Scope> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("city") {
            return Ok(Scope::city(pii));
        }
        if t.is_empty() {
            return Err(Error::param(
                "scope",
                "is blank; give \"city\" or a district (6 digits), street (9), community (12) or \
                 grid (15) code",
            ));
        }
        if Level::of_code(t).is_none() {
            return Err(Error::param(
                "scope",
                format!(
                    "{t:?} is not a district (6 digits), street (9), community (12) or grid (15) \
                     code, nor \"city\""
                ),
            ));
        }
        Ok(Scope {
            code: Some(t.to_string()),
            pii,
        })
    }

    /// The scope's code (`None` for the city).
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The scope as written on a token: `city` or the code.
    pub fn label(&self) -> &str {
        self.code.as_deref().unwrap_or("city")
    }

    /// The level of the scope.
    pub fn level(&self) -> Level {
        self.code
            .as_deref()
            .and_then(Level::of_code)
            .unwrap_or(Level::City)
    }

    /// Whether personal data is shown unmasked.
    pub fn pii(&self) -> bool {
        self.pii
    }

    /// Whether nothing is restricted.
    pub fn is_full(&self) -> bool {
        self.code.is_none() && self.pii
    }

    /// Whether the caller sees the whole city.
    pub fn is_city(&self) -> bool {
        self.code.is_none()
    }

    /// Whether a code of the hierarchy (a grid's, or a unit's) lies inside the scope.
    pub fn contains(&self, code: &str) -> bool {
        self.code.as_deref().is_none_or(|s| code.starts_with(s))
    }

    /// Whether a code of the hierarchy may be named to the caller: inside the scope, or one of
    /// the units the scope itself lies in (a street caller knows their district).
    pub fn may_name(&self, code: &str) -> bool {
        self.code
            .as_deref()
            .is_none_or(|s| code.starts_with(s) || (!code.is_empty() && s.starts_with(code)))
    }

    /// The code to restrict an answer to when the caller asks for `asked`: the narrower of the
    /// two, or [`Error::Forbidden`] when they do not overlap.
    pub fn narrow(&self, asked: Option<&str>) -> Result<Option<String>> {
        match (asked.map(str::trim), self.code.as_deref()) {
            (None, s) => Ok(s.map(str::to_string)),
            (Some(a), None) => Ok(Some(a.to_string())),
            (Some(a), Some(s)) if a.starts_with(s) => Ok(Some(a.to_string())),
            (Some(a), Some(s)) if s.starts_with(a) => Ok(Some(s.to_string())),
            (Some(a), Some(s)) => Err(Error::Forbidden(format!(
                "code {a} is outside this token's scope {s}"
            ))),
        }
    }
}

/// A scope applied to one city.
pub struct View {
    store: Arc<Store>,
    scope: Scope,
    /// The grid rows inside the scope (`None`: every grid).
    grids: Option<RoaringBitmap>,
    /// Per table, the rows inside the scope, worked out on first use.
    rows: Vec<OnceLock<Option<Arc<RoaringBitmap>>>>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("scope", &self.scope).finish()
    }
}

impl View {
    /// The scope over a city. A code that names no district, street, community or grid of the
    /// city is refused ([`Error::Forbidden`]).
    pub fn new(store: Arc<Store>, scope: Scope) -> Result<View> {
        let grids = match scope.code() {
            None => None,
            Some(code) => {
                let g = hierarchy::grids_within(&store, code);
                if g.is_empty() || Level::of_code(code).is_none() {
                    return Err(Error::Forbidden(format!(
                        "this token's scope {code} is not a district, street, community or grid \
                         of the city served; ask an admin for a token with a scope of this city"
                    )));
                }
                Some(g)
            }
        };
        Ok(View {
            store,
            scope,
            grids,
            rows: TableId::ALL.iter().map(|_| OnceLock::new()).collect(),
        })
    }

    /// Everything of a city, unmasked.
    pub fn full(store: Arc<Store>) -> View {
        View {
            store,
            scope: Scope::full(),
            grids: None,
            rows: TableId::ALL.iter().map(|_| OnceLock::new()).collect(),
        }
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The city.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Whether personal data is shown unmasked.
    pub fn pii(&self) -> bool {
        self.scope.pii
    }

    /// The grid rows inside the scope (`None`: every grid).
    pub fn grids(&self) -> Option<&RoaringBitmap> {
        self.grids.as_ref()
    }

    /// Whether a grid row lies inside the scope.
    pub fn sees_grid(&self, grid: u32) -> bool {
        match &self.grids {
            None => true,
            Some(g) => grid != NONE && g.contains(grid),
        }
    }

    /// The rows of a table inside the scope (`None`: every row). A table without a grid shows,
    /// below city scope, only what ties to a visible row: `deaths` of the people inside the
    /// scope; `sla_rules` and `calendar` nothing.
    pub fn rows(&self, t: TableId) -> Option<Arc<RoaringBitmap>> {
        let i = TableId::ALL.iter().position(|&x| x == t).unwrap_or(0);
        self.rows[i]
            .get_or_init(|| {
                let grids = self.grids.as_ref()?;
                Some(Arc::new(match GridPath::of(t) {
                    GridPath::None if t == TableId::Deaths => self.deaths_in_scope(),
                    GridPath::None => RoaringBitmap::new(),
                    _ => hierarchy::rows_of_grids(&self.store, t, grids),
                }))
            })
            .clone()
    }

    /// How many rows of a table the caller sees.
    pub fn row_count(&self, t: TableId) -> usize {
        match self.rows(t) {
            Some(r) => r.len() as usize,
            None => self.store.table(t).rows,
        }
    }

    /// Whether a row of a table is inside the scope.
    pub fn sees_row(&self, t: TableId, row: u32) -> bool {
        match self.rows(t) {
            None => (row as usize) < self.store.table(t).rows,
            Some(r) => r.contains(row),
        }
    }

    /// The rows of `deaths` whose identity number is that of a person inside the scope.
    fn deaths_in_scope(&self) -> RoaringBitmap {
        let Some(people) = self.rows(TableId::People) else {
            return RoaringBitmap::new();
        };
        let (Ok(person_ids), Ok(death_ids)) = (
            self.store.table(TableId::People).keys("id_number"),
            self.store.table(TableId::Deaths).keys("id_number"),
        ) else {
            return RoaringBitmap::new();
        };
        let identities: RoaringBitmap = people
            .iter()
            .map(|r| person_ids[r as usize])
            .filter(|&i| i != NONE)
            .collect();
        death_ids
            .iter()
            .enumerate()
            .filter(|(_, i)| identities.contains(**i))
            .map(|(r, _)| r as u32)
            .collect()
    }

    /// How column `col` of a loaded table is masked for this caller (`None`: shown as it is).
    /// Contract columns are masked as the contract declares; a column the contract does not
    /// declare (an extra column of the city's file) is withheld.
    pub fn mask_of(&self, t: TableId, col: usize) -> Option<Mask> {
        if self.scope.pii {
            return None;
        }
        match t.def().columns.get(col) {
            Some(def) => def.mask,
            None => Some(Mask::Withheld),
        }
    }

    /// Masks an array of column `col` of a loaded table, as [`View::mask_of`] says.
    pub fn mask_stored(
        &self,
        t: TableId,
        col: usize,
        a: arrow::array::ArrayRef,
    ) -> arrow::error::Result<arrow::array::ArrayRef> {
        match self.mask_of(t, col) {
            Some(m) => mask::mask_array(&a, m),
            None => Ok(a),
        }
    }

    /// Masks the named columns of a batch of the engine's own tables (unless `pii`).
    pub fn mask(
        &self,
        batch: RecordBatch,
        masks: &[(&str, Mask)],
    ) -> arrow::error::Result<RecordBatch> {
        if self.scope.pii {
            return Ok(batch);
        }
        let schema = batch.schema();
        let mut columns = batch.columns().to_vec();
        for (name, m) in masks {
            if let Ok(i) = schema.index_of(name) {
                columns[i] = mask::mask_array(&columns[i], *m)?;
            }
        }
        RecordBatch::try_new(schema, columns)
    }

    /// Keeps the rows of a batch whose `column` (a code of the grid hierarchy) lies inside the
    /// scope. Rows with a null code, or a batch without the column, are kept only with city
    /// scope.
    pub fn restrict(&self, batch: RecordBatch, column: &str) -> arrow::error::Result<RecordBatch> {
        let Some(scope) = self.scope.code() else {
            return Ok(batch);
        };
        let Ok(i) = batch.schema().index_of(column) else {
            return Ok(batch.slice(0, 0));
        };
        let codes = compute::cast(batch.column(i), &DataType::Utf8)?;
        let codes = codes.as_string::<i32>();
        let keep: BooleanArray = codes
            .iter()
            .map(|c| Some(c.is_some_and(|c| c.starts_with(scope))))
            .collect();
        compute::filter_record_batch(&batch, &keep)
    }

    /// The anomalies of a sweep as the caller may see them: inside the scope, personal columns
    /// masked, evidence redacted; without `pii`, in an order that does not follow the identity
    /// numbers inside subjects (priority, weight, masked subject, then a keyed hash).
    pub fn anomalies(&self, sweep: &Sweep) -> Result<RecordBatch> {
        let mut picked: Vec<usize> = (0..sweep.anomalies.len())
            .filter(|&i| self.sees_grid(sweep.anomalies[i].grid))
            .collect();
        if !self.scope.pii {
            let key = |i: usize| {
                let a = &sweep.anomalies[i];
                (
                    a.rule.priority(),
                    -a.weight,
                    mask::mask_identities_in_text(&a.subject_id),
                    secret::process_secret().rank(&[a.rule.code(), &a.subject_id]),
                )
            };
            let mut keyed: Vec<_> = picked.iter().map(|&i| (key(i), i)).collect();
            keyed.sort();
            picked = keyed.into_iter().map(|(_, i)| i).collect();
        }
        let batch = sweep.to_batch_of(&self.store, &picked, |e| self.evidence(e))?;
        Ok(self.mask(batch, anomalies_masks())?)
    }

    /// Findings of a sweep inside the scope, per rule (every rule of the sweep listed).
    pub fn sweep_counts(&self, sweep: &Sweep) -> BTreeMap<&'static str, usize> {
        let mut counts: BTreeMap<&'static str, usize> =
            sweep.runs.iter().map(|r| (r.rule.code(), 0)).collect();
        for a in &sweep.anomalies {
            if self.sees_grid(a.grid) {
                *counts.entry(a.rule.code()).or_default() += 1;
            }
        }
        counts
    }

    /// Whether a task lies inside the scope (its grid does).
    pub fn sees_task(&self, t: &Task) -> bool {
        self.scope.contains(&t.grid_code) && !t.grid_code.is_empty()
    }

    /// A task as the caller may see it (`None` outside the scope): evidence redacted, personal
    /// data masked.
    pub fn task(&self, t: &Task) -> Option<Task> {
        if !self.sees_task(t) {
            return None;
        }
        let mut t = t.clone();
        t.evidence = self.evidence(&t.evidence);
        if !self.scope.pii {
            t.subject_id = mask::mask_identities_in_text(&t.subject_id);
            // A worker's note is free text: identity and phone numbers typed in it are masked.
            t.note = t.note.map(|n| mask::mask_identities_in_text(&n));
        }
        Some(t)
    }

    /// The `tasks` table as the caller may see it.
    pub fn tasks<'a>(&self, tasks: impl Iterator<Item = &'a Task>) -> Result<RecordBatch> {
        let visible: Vec<Task> = tasks.filter_map(|t| self.task(t)).collect();
        tasks_batch(visible.iter())
    }

    /// Whether a worker (by id) works in a grid inside the scope.
    pub fn sees_worker(&self, worker_id: &str) -> bool {
        let workers = self.store.table(TableId::Workers);
        let (Ok(ids), Ok(grid)) = (workers.strings("worker_id"), workers.keys("grid_code")) else {
            return false;
        };
        let found = match workers.key_index() {
            Some(ix) => ix.get(ids, worker_id).map(|r| r as usize),
            None => (0..workers.rows).find(|&i| ids.value(i) == worker_id),
        };
        found.is_some_and(|i| self.sees_grid(grid[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_strictly() {
        assert!(Scope::parse("city", false).unwrap().is_city());
        assert_eq!(
            Scope::parse(" 440104 ", false).unwrap().code(),
            Some("440104")
        );
        for bad in ["", "   ", "4401", "44010a", "440104001001001001", "*", "%"] {
            assert!(Scope::parse(bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_contain_and_narrow() {
        let s = Scope::parse("440104001", false).unwrap();
        assert!(s.contains("440104001002003"));
        assert!(!s.contains("440104002002003"));
        assert!(s.may_name("440104"));
        assert!(!s.may_name("440105"));
        assert!(!s.may_name(""));
        assert_eq!(s.narrow(None).unwrap().as_deref(), Some("440104001"));
        assert_eq!(
            s.narrow(Some("440104")).unwrap().as_deref(),
            Some("440104001")
        );
        assert_eq!(
            s.narrow(Some("440104001003")).unwrap().as_deref(),
            Some("440104001003")
        );
        assert!(s.narrow(Some("440105")).is_err());
        assert!(Scope::full().contains("anything"));
    }
}
