//! The grids a batch may change the anomalies of: what the incremental sweep
//! ([`crate::rules::incremental`]) evaluates again.
//!
//! A rule's findings in a grid depend only on the rows that lie in that grid (its buildings,
//! rooms, records, households, leases, readings, door events and the visits to its rooms) and
//! on the active records, anywhere, of the identity numbers those findings name (where else a
//! person is registered, which record of a person is the current one, a care visit or a death
//! recorded under the number). So a batch touches, in the version served and in the next:
//! - the grid of each of its rows, and of each record the row refers to (a visit's room, a
//!   record's household);
//! - for an upsert, the grid of the record the row replaces, and of the records it referred to;
//! - for each identity number a touched record, visit or death carries (and, for a room, the
//!   numbers of the people registered in it, whose registered place it is): the grids of the
//!   number's active records in either version, and of the findings that name it.
//!
//! Door events bear only on the rules of their own building (nights and last sightings there),
//! so their identity numbers add nothing.

use super::Rows;
use crate::contract::TableId;
use crate::hierarchy::grids_of;
use crate::rules::Anomaly;
use crate::store::{NONE, Pool, Store};
use ahash::AHashSet;
use arrow::array::{Array, AsArray};
use roaring::RoaringBitmap;

/// The row of a table with a single-column key, by its key.
fn row_of(store: &Store, table: TableId, key: &str) -> Option<u32> {
    let ix = store.table(table).key_index()?;
    let values = store.pool(&Pool::Table(table)).ok()?;
    ix.get(values.as_string::<i32>(), key.trim())
}

/// What one version says about the stored rows a batch reaches.
struct Reach<'a> {
    store: &'a Store,
    grids: &'a mut RoaringBitmap,
    identities: &'a mut Vec<u32>,
}

impl Reach<'_> {
    fn grid(&mut self, table: TableId, row: u32) {
        if let Some(&g) = grids_of(self.store, table, &[row]).first()
            && g != NONE
        {
            self.grids.insert(g);
        }
    }

    /// A stored row: its grid, the grids of the rows it refers to, its identity numbers.
    fn record(&mut self, table: TableId, row: u32) {
        let store = self.store;
        let t = store.table(table);
        if row as usize >= t.rows {
            return;
        }
        self.grid(table, row);
        for c in table.def().columns {
            let Ok(keys) = t.keys(c.name) else { continue };
            let k = keys[row as usize];
            if k == NONE {
                continue;
            }
            if c.identity {
                self.identities.push(k);
            } else if let Some(to) = c.references {
                self.grid(to, k);
            }
        }
        if table == TableId::Rooms {
            // The room is where its people are registered: the findings that say so elsewhere.
            let ids = store
                .table(TableId::People)
                .keys("id_number")
                .unwrap_or(&[]);
            for &p in store.indexes.active_of_room.get(row) {
                if let Some(&k) = ids.get(p as usize) {
                    self.identities.push(k);
                }
            }
        }
    }

    /// A batch row as this version resolves it: its grid, the rows it refers to, and the stored
    /// rows it is (by key; for deaths, by identity number).
    fn batch_row(&mut self, table: TableId, rows: &Rows, i: usize) {
        let g = super::grid_of(self.store, table, rows, i);
        if g != NONE {
            self.grids.insert(g);
        }
        for c in table.def().columns {
            if let (Some(to), Some(v)) = (c.references, rows.value(i, c.name))
                && let Some(r) = row_of(self.store, to, v)
            {
                self.grid(to, r);
            }
        }
        if let Some(key) = table.def().single_key()
            && let Some(v) = rows.value(i, key)
            && let Some(r) = row_of(self.store, table, v)
        {
            self.record(table, r);
        }
    }
}

/// One row of each set of rows that share the values their reach is decided by (what
/// [`Reach::batch_row`] reads: the column their grid is found by, their references and their
/// key): a batch of door events names a few buildings.
fn distinct_rows(table: TableId, rows: &Rows) -> Vec<usize> {
    let def = table.def();
    let grid = super::grid_column(table).map(|(c, _)| c);
    let decides = |name: &str| {
        grid.is_some_and(|c| c.eq_ignore_ascii_case(name))
            || def
                .single_key()
                .is_some_and(|k| k.eq_ignore_ascii_case(name))
            || def
                .columns
                .iter()
                .any(|c| c.references.is_some() && c.name.eq_ignore_ascii_case(name))
    };
    let deciding: Vec<usize> = (0..rows.names.len())
        .filter(|&i| decides(&rows.names[i]))
        .collect();
    let mut seen: AHashSet<Vec<Option<&str>>> = AHashSet::new();
    (0..rows.len())
        .filter(|&i| seen.insert(deciding.iter().map(|&c| rows.get(i, c)).collect()))
        .collect()
}

/// The grids whose anomalies may differ between `old` (served) and `new` (`old` with the batch
/// `rows` of `table`), given the findings `prev` of `old` (see the module's text).
pub fn grids(
    old: &Store,
    new: &Store,
    table: TableId,
    rows: &Rows,
    prev: &[Anomaly],
) -> RoaringBitmap {
    let mut grids = RoaringBitmap::new();
    let mut identities: Vec<u32> = Vec::new();
    let distinct = distinct_rows(table, rows);
    for store in [old, new] {
        let mut reach = Reach {
            store,
            grids: &mut grids,
            identities: &mut identities,
        };
        for &i in &distinct {
            reach.batch_row(table, rows, i);
        }
        if table == TableId::Deaths {
            // Deaths have no key: their numbers, as sent, found among the stored deaths.
            let sent: ahash::AHashSet<String> = (0..rows.len())
                .filter_map(|i| rows.value(i, "id_number"))
                .map(|v| v.trim().to_ascii_uppercase())
                .collect();
            if let Ok(ids) = store.table(TableId::Deaths).keys("id_number") {
                let mut found: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|&k| {
                        k != NONE && sent.contains(&store.identity(k).to_ascii_uppercase())
                    })
                    .collect();
                reach.identities.append(&mut found);
            }
        }
    }
    if table == TableId::AccessEvents {
        identities.clear();
    }
    identities.sort_unstable();
    identities.dedup();
    if identities.is_empty() {
        return grids;
    }
    for store in [old, new] {
        let person_grid = |p: u32| grids_of(store, TableId::People, &[p])[0];
        for &k in &identities {
            if (k as usize) < store.identities.len() {
                for &p in store.indexes.active_of_identity.get(k) {
                    let g = person_grid(p);
                    if g != NONE {
                        grids.insert(g);
                    }
                }
            }
        }
    }
    for a in prev {
        if a.identity
            .is_some_and(|k| identities.binary_search(&k).is_ok())
        {
            grids.insert(a.grid);
        }
    }
    grids
}
