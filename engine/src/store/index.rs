//! Indexes over the store, built once at load (in parallel) and reused by every sweep, KPI and
//! scoped query.
//!
//! - **adjacency** as compressed rows (CSR): the rooms of a building, the active records of a
//!   room, the active records of an identity number, the door events of a building (events are
//!   held sorted by building, so that is a range);
//! - **roaring bitmaps** of the sets rules and scopes filter on: active records, records per care
//!   tag and residence kind, buildings with door access, residential and vacant rooms, and the
//!   rows of every table per grid (from which communities, streets and districts are unions).

use crate::contract::{TableId, codes};
use crate::error::{Error, Result};
use crate::store::doors::Doors;
use crate::store::event_rows::{self, AddedEvents, EventRows};
use crate::store::{NONE, StoredTable};
use arrow::array::Array;
use roaring::RoaringBitmap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Compressed rows: the items of key `k` are `values[offsets[k]..offsets[k + 1]]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Csr {
    offsets: Vec<u32>,
    values: Vec<u32>,
}

impl Csr {
    /// Groups items `0..keys.len()` by their key (`NONE` and items failing `keep` are left out);
    /// within a key, items stay in order.
    pub fn build(keys: &[u32], n_keys: usize, keep: impl Fn(usize) -> bool) -> Csr {
        let mut counts = vec![0u32; n_keys + 1];
        for (i, &k) in keys.iter().enumerate() {
            if k != NONE && (k as usize) < n_keys && keep(i) {
                counts[k as usize + 1] += 1;
            }
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        let offsets = counts.clone();
        let mut next = counts;
        let mut values = vec![0u32; *offsets.last().unwrap_or(&0) as usize];
        for (i, &k) in keys.iter().enumerate() {
            if k != NONE && (k as usize) < n_keys && keep(i) {
                let slot = &mut next[k as usize];
                values[*slot as usize] = i as u32;
                *slot += 1;
            }
        }
        Csr { offsets, values }
    }

    /// [`Csr::build`] of every item (but those keyed `NONE`), on every core: the items are cut
    /// into parts, counted per part, and each part's items are placed side by side.
    pub fn build_par(keys: &[u32], n_keys: usize) -> Csr {
        use rayon::prelude::*;
        use std::sync::atomic::{AtomicU32, Ordering};
        let part = keys
            .len()
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1 << 16);
        let counts: Vec<Vec<u32>> = keys
            .par_chunks(part)
            .map(|c| {
                let mut n = vec![0u32; n_keys];
                for &k in c {
                    if (k as usize) < n_keys {
                        n[k as usize] += 1;
                    }
                }
                n
            })
            .collect();
        // Where each part's items of each key start.
        let mut offsets = vec![0u32; n_keys + 1];
        let mut starts: Vec<Vec<u32>> = counts.iter().map(|_| vec![0u32; n_keys]).collect();
        let mut at = 0u32;
        for k in 0..n_keys {
            offsets[k] = at;
            for (p, c) in counts.iter().enumerate() {
                starts[p][k] = at;
                at += c[k];
            }
        }
        offsets[n_keys] = at;
        drop(counts);
        let values: Vec<AtomicU32> = (0..at).map(|_| AtomicU32::new(0)).collect();
        keys.par_chunks(part)
            .zip(starts.into_par_iter())
            .enumerate()
            .for_each(|(p, (c, mut next))| {
                for (i, &k) in c.iter().enumerate() {
                    if (k as usize) < n_keys {
                        let slot = &mut next[k as usize];
                        values[*slot as usize].store((p * part + i) as u32, Ordering::Relaxed);
                        *slot += 1;
                    }
                }
            });
        let values = values.into_iter().map(AtomicU32::into_inner).collect();
        Csr { offsets, values }
    }

    /// The items of a key.
    pub fn get(&self, key: u32) -> &[u32] {
        let k = key as usize;
        if k + 1 >= self.offsets.len() {
            return &[];
        }
        &self.values[self.offsets[k] as usize..self.offsets[k + 1] as usize]
    }

    /// The offsets and the items, as a snapshot keeps them.
    pub fn parts(&self) -> (&[u32], &[u32]) {
        (&self.offsets, &self.values)
    }

    /// Compressed rows from their parts ([`Csr::parts`]); `None` unless the offsets run from 0
    /// to the items' end without going back.
    pub fn from_parts(offsets: Vec<u32>, values: Vec<u32>) -> Option<Csr> {
        let ok = offsets.first().is_none_or(|&o| o == 0)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets
                .last()
                .map_or(values.is_empty(), |&o| o as usize == values.len());
        ok.then_some(Csr { offsets, values })
    }

    /// Whether every item is below `n`.
    pub fn items_below(&self, n: u32) -> bool {
        self.values.iter().all(|&v| v < n)
    }

    /// The offsets and the items, taken apart.
    pub fn into_parts(self) -> (Vec<u32>, Vec<u32>) {
        (self.offsets, self.values)
    }

    /// The items, key after key.
    pub fn into_values(self) -> Vec<u32> {
        self.values
    }

    /// Number of keys.
    pub fn keys(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        (self.offsets.capacity() + self.values.capacity()) * 4
    }
}

/// Rows of a table per grid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridRows {
    /// Rows per grid (by grid row).
    pub by_grid: Vec<RoaringBitmap>,
}

impl GridRows {
    fn build(grid_of_row: impl Iterator<Item = u32>, n_grids: usize) -> GridRows {
        use rayon::prelude::*;
        let grids: Vec<u32> = grid_of_row.collect();
        // Rows grouped by grid, in order; then each grid's bitmap from its sorted rows, side by
        // side.
        let csr = Csr::build_par(&grids, n_grids);
        drop(grids);
        let by_grid = (0..n_grids as u32)
            .into_par_iter()
            .map(|g| {
                RoaringBitmap::from_sorted_iter(csr.get(g).iter().copied()).unwrap_or_default()
            })
            .collect();
        GridRows { by_grid }
    }

    /// From ranges of rows: `ranges` yields (grid, rows), the ranges of a grid in order.
    fn from_ranges(
        ranges: impl Iterator<Item = (u32, std::ops::Range<u32>)>,
        n_grids: usize,
    ) -> GridRows {
        let mut by_grid = vec![RoaringBitmap::new(); n_grids];
        for (g, rows) in ranges {
            if let Some(b) = by_grid.get_mut(g as usize) {
                b.insert_range(rows);
            }
        }
        GridRows { by_grid }
    }

    /// The door events' rows per grid: a building's sorted events are one range
    /// (`event_offsets`), its added rows (`tail`) one by one, in its grid (`building_grid`).
    fn of_events(
        event_offsets: &[usize],
        tail: &Csr,
        building_grid: &[u32],
        n_grids: usize,
    ) -> GridRows {
        let grid = |b: usize| building_grid.get(b).copied().unwrap_or(NONE);
        let mut rows = GridRows::from_ranges(
            (0..event_offsets.len().saturating_sub(1)).map(|b| {
                let rows = event_offsets[b] as u32..event_offsets[b + 1] as u32;
                (grid(b), rows)
            }),
            n_grids,
        );
        rows.add(
            (0..tail.keys()).flat_map(|b| tail.get(b as u32).iter().map(move |&r| (r, b as u32))),
            building_grid,
        );
        rows
    }

    /// Adds door-event rows (each with its building) to their buildings' grids.
    fn add(&mut self, rows: impl Iterator<Item = (u32, u32)>, building_grid: &[u32]) {
        for (r, b) in rows {
            let g = building_grid.get(b as usize).copied().unwrap_or(NONE);
            if let Some(set) = self.by_grid.get_mut(g as usize) {
                set.insert(r);
            }
        }
    }

    /// The rows of a set of grids.
    pub fn rows_of(&self, grids: &RoaringBitmap) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for g in grids {
            if let Some(b) = self.by_grid.get(g as usize) {
                out |= b;
            }
        }
        out
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.by_grid.iter().map(|b| b.serialized_size()).sum()
    }
}

/// Every index of a store. The large ones that only people, rooms and households change are
/// shared between versions (door events merged into a version keep them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Indexes {
    /// Active `people` records.
    pub active: RoaringBitmap,
    /// `people` records by care tag (any status).
    pub tags: BTreeMap<String, RoaringBitmap>,
    /// `people` records by residence kind code.
    pub residence: Vec<RoaringBitmap>,
    /// The building of each record's room.
    pub person_building: Arc<Vec<u32>>,
    /// The grid of each room.
    pub room_grid: Arc<Vec<u32>>,
    /// Rooms of each building.
    pub rooms_of_building: Arc<Csr>,
    /// Active records of each room.
    pub active_of_room: Arc<Csr>,
    /// Active records of each identity number.
    pub active_of_identity: Arc<Csr>,
    /// Active records pointing to each household.
    pub active_of_household: Arc<Csr>,
    /// Door events of building `b` among the rows sorted by building and time are rows
    /// `event_offsets[b]..event_offsets[b + 1]` (see [`super::event_rows`]).
    pub event_offsets: Arc<Vec<usize>>,
    /// The door-event rows added after the sorted ones, by building in time order.
    pub event_tail: Arc<Csr>,
    /// Buildings with door access.
    pub access_buildings: RoaringBitmap,
    /// Residential rooms.
    pub residential_rooms: RoaringBitmap,
    /// Rooms with tenure `vacant`.
    pub vacant_rooms: RoaringBitmap,
    /// Rows per grid, for every table that belongs to grids.
    pub grid_rows: BTreeMap<TableId, Arc<GridRows>>,
    /// The parent codes of each grid row: community, street, district.
    pub grid_parents: Arc<Vec<[String; 3]>>,
    /// Per-building summaries of the door events, for the door rules.
    pub doors: Doors,
}

fn table(tables: &[StoredTable], id: TableId) -> &StoredTable {
    &tables[id as usize]
}

impl Indexes {
    /// Builds every index. `tables` is every table in contract order; door events are a run
    /// sorted by building and time, then rows added since (see [`event_rows`]).
    pub fn build(tables: &[StoredTable], identities: usize) -> Result<Indexes> {
        let people = table(tables, TableId::People);
        let rooms = table(tables, TableId::Rooms);
        let buildings = table(tables, TableId::Buildings);
        let grids = table(tables, TableId::Grids);
        let status = people.codes("status")?;
        let n_people = people.rows;
        let is_active = |i: usize| !status.is_null(i) && status.value(i) == codes::status::ACTIVE;
        let person_room = people.keys("room_id")?;
        let room_building = rooms.keys("building_id")?;
        let building_grid = buildings.keys("grid_code")?;
        let person_building: Vec<u32> = person_room
            .iter()
            .map(|&r| room_building.get(r as usize).copied().unwrap_or(NONE))
            .collect();
        let room_grid: Vec<u32> = room_building
            .iter()
            .map(|&b| building_grid.get(b as usize).copied().unwrap_or(NONE))
            .collect();
        let ((active, active_of_room), by_identity) = rayon::join(
            || {
                let active: RoaringBitmap = (0..n_people as u32)
                    .filter(|&i| is_active(i as usize))
                    .collect();
                let by_room = Csr::build(person_room, rooms.rows, is_active);
                (active, by_room)
            },
            || -> Result<(Csr, Csr)> {
                let ids = people.keys("id_number")?;
                let hh = people.keys("household_id")?;
                let by_id = Csr::build(ids, identities, is_active);
                let by_hh = Csr::build(hh, table(tables, TableId::Households).rows, is_active);
                Ok((by_id, by_hh))
            },
        );
        let (active_of_identity, active_of_household) = by_identity?;
        let rooms_of_building = Csr::build(room_building, buildings.rows, |_| true);
        let mut tags: BTreeMap<String, RoaringBitmap> = BTreeMap::new();
        let care = people.strings("care_tags")?;
        for i in 0..n_people {
            if care.is_null(i) {
                continue;
            }
            for t in care.value(i).split(';') {
                let t = t.trim();
                if !t.is_empty() {
                    tags.entry(t.to_string()).or_default().insert(i as u32);
                }
            }
        }
        let kind = people.codes("residence_kind")?;
        let mut residence = vec![RoaringBitmap::new(); 3];
        for i in 0..n_people {
            if !kind.is_null(i) && (kind.value(i) as usize) < residence.len() {
                residence[kind.value(i) as usize].insert(i as u32);
            }
        }
        let access = buildings.bools("access_control")?;
        let access_buildings: RoaringBitmap = (0..buildings.rows as u32)
            .filter(|&b| access.value(b as usize))
            .collect();
        let usage = rooms.codes("usage")?;
        let tenure = rooms.codes("tenure")?;
        let residential_rooms: RoaringBitmap = (0..rooms.rows as u32)
            .filter(|&r| usage.value(r as usize) == codes::usage::RESIDENTIAL)
            .collect();
        let vacant_rooms: RoaringBitmap = (0..rooms.rows as u32)
            .filter(|&r| tenure.value(r as usize) == codes::tenure::VACANT)
            .collect();
        // Door events: a run sorted by building and time, then the rows added since.
        let events = table(tables, TableId::AccessEvents);
        let (event_offsets, event_tail) = if events.rows > 0 {
            let eb = events.keys("building_id")?;
            let ts = events.timestamps("ts")?.values();
            event_rows::layout(buildings.rows, eb, ts)
        } else {
            (vec![0usize; buildings.rows + 1], Csr::default())
        };
        let event_offsets = Arc::new(event_offsets);
        let n_grids = grids.rows;
        let mut grid_rows = BTreeMap::new();
        grid_rows.insert(TableId::Grids, GridRows::build(0..n_grids as u32, n_grids));
        grid_rows.insert(
            TableId::Buildings,
            GridRows::build(building_grid.iter().copied(), n_grids),
        );
        grid_rows.insert(
            TableId::Rooms,
            GridRows::build(room_grid.iter().copied(), n_grids),
        );
        let grid_of_building = |b: u32| building_grid.get(b as usize).copied().unwrap_or(NONE);
        let grid_of_room = |r: u32| room_grid.get(r as usize).copied().unwrap_or(NONE);
        grid_rows.insert(
            TableId::People,
            GridRows::build(
                person_building.iter().map(|&b| grid_of_building(b)),
                n_grids,
            ),
        );
        for (t, col, via) in [
            (TableId::Workers, "grid_code", 'g'),
            (TableId::Incidents, "grid_code", 'g'),
            (TableId::Households, "room_id", 'r'),
            (TableId::Leases, "room_id", 'r'),
            (TableId::UtilityReadings, "room_id", 'r'),
        ] {
            let tb = table(tables, t);
            if tb.rows == 0 {
                grid_rows.insert(
                    t,
                    GridRows {
                        by_grid: vec![RoaringBitmap::new(); n_grids],
                    },
                );
                continue;
            }
            let keys = tb.keys(col)?;
            let it = keys.iter().map(|&k| match via {
                'g' => k,
                'r' => grid_of_room(k),
                _ => grid_of_building(k),
            });
            grid_rows.insert(t, GridRows::build(it, n_grids));
        }
        grid_rows.insert(
            TableId::AccessEvents,
            GridRows::of_events(&event_offsets, &event_tail, building_grid, n_grids),
        );
        // Visits belong to the grid of their worker.
        let visits = table(tables, TableId::Visits);
        let worker_grid = table(tables, TableId::Workers).keys("grid_code")?;
        let vw = if visits.rows > 0 {
            visits.keys("worker_id")?
        } else {
            &[]
        };
        grid_rows.insert(
            TableId::Visits,
            GridRows::build(
                vw.iter()
                    .map(|&w| worker_grid.get(w as usize).copied().unwrap_or(NONE)),
                n_grids,
            ),
        );
        let gc = grids.strings("community_code")?;
        let gs = grids.strings("street_code")?;
        let gd = grids.strings("district_code")?;
        let grid_parents = (0..n_grids)
            .map(|g| {
                [
                    gc.value(g).to_string(),
                    gs.value(g).to_string(),
                    gd.value(g).to_string(),
                ]
            })
            .collect();
        let mut ix = Indexes {
            active,
            tags,
            residence,
            person_building: Arc::new(person_building),
            room_grid: Arc::new(room_grid),
            rooms_of_building: Arc::new(rooms_of_building),
            active_of_room: Arc::new(active_of_room),
            active_of_identity: Arc::new(active_of_identity),
            active_of_household: Arc::new(active_of_household),
            event_offsets,
            event_tail: Arc::new(event_tail),
            access_buildings,
            residential_rooms,
            vacant_rooms,
            grid_rows: grid_rows
                .into_iter()
                .map(|(t, g)| (t, Arc::new(g)))
                .collect(),
            grid_parents: Arc::new(grid_parents),
            doors: Doors::default(),
        };
        if events.rows > 0 {
            let ids = events.keys("id_number")?;
            let ts = events.timestamps("ts")?.values();
            ix.doors = Doors::build(&ix, ids, ts, people.keys("id_number")?);
        }
        Ok(ix)
    }

    /// The indexes after door events were added to the events table (`tables` is every
    /// table, with the events table holding the new rows; `added`: the new events).
    /// `written_after`: whether the rows were written after the rows served (they are then
    /// added to the buildings' lists of added rows); otherwise the table was written anew,
    /// sorted by building and time throughout. The events' layout, their rows per grid and the
    /// door summaries of the buildings touched are worked out again, every other index is this
    /// one's.
    pub fn with_events_added(
        &self,
        tables: &[StoredTable],
        added: &AddedEvents<'_>,
        written_after: bool,
    ) -> Result<Indexes> {
        let n_buildings = self.event_offsets.len().saturating_sub(1);
        if let Some(&b) = added.buildings.iter().find(|&&b| b as usize >= n_buildings) {
            return Err(Error::Internal(format!(
                "door events added at building row {b}, beyond the {n_buildings} indexed"
            )));
        }
        let events = table(tables, TableId::AccessEvents);
        let first = events.rows - added.buildings.len();
        let new: Vec<(u32, u32)> = added
            .buildings
            .iter()
            .enumerate()
            .map(|(i, &b)| ((first + i) as u32, b))
            .collect();
        let ts = events.timestamps("ts")?.values();
        let building_grid = table(tables, TableId::Buildings).keys("grid_code")?;
        let n_grids = table(tables, TableId::Grids).rows;
        let mut grid_rows = self.grid_rows.clone();
        let (event_offsets, event_tail) = if written_after {
            let tail = event_rows::with_added(&self.event_tail, n_buildings, &new, ts);
            if let Some(g) = grid_rows.get_mut(&TableId::AccessEvents) {
                Arc::make_mut(g).add(new.iter().copied(), building_grid);
            }
            (self.event_offsets.clone(), tail)
        } else {
            let (offsets, tail) = event_rows::layout(n_buildings, events.keys("building_id")?, ts);
            grid_rows.insert(
                TableId::AccessEvents,
                Arc::new(GridRows::of_events(&offsets, &tail, building_grid, n_grids)),
            );
            (Arc::new(offsets), tail)
        };
        let counted = event_offsets.last().copied().unwrap_or(0) + event_tail.parts().1.len();
        if counted != events.rows {
            return Err(Error::Internal(format!(
                "door events: {} rows, and the layout counts {counted}",
                events.rows
            )));
        }
        let mut ix = Indexes {
            event_offsets,
            event_tail: Arc::new(event_tail),
            grid_rows,
            ..self.clone()
        };
        let person_ids = table(tables, TableId::People).keys("id_number")?;
        ix.doors = self.doors.with_added(&ix, &added.events(), person_ids);
        Ok(ix)
    }

    /// The door-event rows of a building (see [`EventRows`]).
    pub fn events_of(&self, building: u32) -> EventRows<'_> {
        let b = building as usize;
        let sorted = match self.event_offsets.get(b..b + 2) {
            Some(o) => o[0]..o[1],
            None => 0..0,
        };
        EventRows {
            sorted,
            added: self.event_tail.get(building),
        }
    }

    /// Whether the identity has an active record in a room of the building.
    pub fn registered_at_building(&self, identity: u32, building: u32) -> bool {
        self.active_of_identity
            .get(identity)
            .iter()
            .any(|&p| self.person_building[p as usize] == building)
    }

    /// Bytes held by the indexes.
    pub fn memory(&self) -> usize {
        self.active.serialized_size()
            + self.person_building.capacity() * 4
            + self.room_grid.capacity() * 4
            + self.rooms_of_building.memory()
            + self.active_of_room.memory()
            + self.active_of_identity.memory()
            + self.active_of_household.memory()
            + self.event_offsets.capacity() * 8
            + self.event_tail.memory()
            + self.grid_rows.values().map(|g| g.memory()).sum::<usize>()
            + self.doors.bytes()
    }
}

/// The positions of a sorted slice whose values lie within the bounds.
pub fn span<T: Ord + Copy>(
    sorted: &[T],
    lo: std::ops::Bound<T>,
    hi: std::ops::Bound<T>,
) -> std::ops::Range<usize> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let start = match lo {
        Included(v) => sorted.partition_point(|&x| x < v),
        Excluded(v) => sorted.partition_point(|&x| x <= v),
        Unbounded => 0,
    };
    let end = match hi {
        Included(v) => sorted.partition_point(|&x| x <= v),
        Excluded(v) => sorted.partition_point(|&x| x < v),
        Unbounded => sorted.len(),
    };
    start..end.max(start)
}

/// The rows of a date column within the bounds, compared by arrow's kernels and turned into a
/// bitmap straight from the comparison's bits.
fn matching(
    column: &arrow::array::Date32Array,
    lo: std::ops::Bound<i32>,
    hi: std::ops::Bound<i32>,
) -> Option<RoaringBitmap> {
    use arrow::array::{BooleanArray, Date32Array};
    use arrow::compute::kernels::cmp;
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let test = |bound: std::ops::Bound<i32>, low: bool| -> Option<Option<BooleanArray>> {
        let (v, inclusive) = match bound {
            Included(v) => (v, true),
            Excluded(v) => (v, false),
            Unbounded => return Some(None),
        };
        let v = Date32Array::new_scalar(v);
        match (low, inclusive) {
            (true, true) => cmp::gt_eq(column, &v),
            (true, false) => cmp::gt(column, &v),
            (false, true) => cmp::lt_eq(column, &v),
            (false, false) => cmp::lt(column, &v),
        }
        .ok()
        .map(Some)
    };
    let mut bits = match (test(lo, true)?, test(hi, false)?) {
        (Some(a), Some(b)) => a.values() & b.values(),
        (Some(a), None) | (None, Some(a)) => a.values().clone(),
        (None, None) => arrow::buffer::BooleanBuffer::new_set(column.len()),
    };
    if let Some(nulls) = column.nulls() {
        bits = &bits & nulls.inner();
    }
    // A buffer's bits start at its offset: made to start at bit 0 before it is read as bytes.
    let bits = if bits.offset() % 8 == 0 {
        bits
    } else {
        arrow::buffer::BooleanBuffer::from_iter(bits.iter())
    };
    let from = bits.offset() / 8;
    let bytes = &bits.values()[from..from + bits.len().div_ceil(8)];
    let mut out = RoaringBitmap::from_lsb0_bytes(0, bytes);
    // Bits past the column's end (the last byte's padding) are not rows.
    out.remove_range(column.len() as u32..);
    Some(out)
}

/// A date range holding more than this share of a column's rows (1 in …) is found by reading
/// the column rather than by sorting the index's run of rows.
const DATE_SCAN_SHARE: usize = 32;

/// Rows of a date column in date order: a range of dates is a contiguous run of rows.
#[derive(Debug, Default)]
pub struct DateIndex {
    dates: Vec<i32>,
    rows: Vec<u32>,
}

impl DateIndex {
    /// Indexes the non-null values of a column (built with a parallel sort).
    pub fn build(values: impl Iterator<Item = Option<i32>>) -> DateIndex {
        use rayon::prelude::*;
        let mut pairs: Vec<(i32, u32)> = values
            .enumerate()
            .filter_map(|(i, d)| d.map(|d| (d, i as u32)))
            .collect();
        pairs.par_sort_unstable();
        let (dates, rows) = pairs.into_iter().unzip();
        DateIndex { dates, rows }
    }

    /// The rows whose date lies within the bounds; `column` is the indexed column itself.
    ///
    /// A narrow range sorts its run of rows; a range holding more than a
    /// [`DATE_SCAN_SHARE`]-th of the column compares the column instead (3.5 M of 16 M people:
    /// ≈ 10 ms instead of ≈ 150 ms).
    pub fn range(
        &self,
        lo: std::ops::Bound<i32>,
        hi: std::ops::Bound<i32>,
        column: &arrow::array::Date32Array,
    ) -> RoaringBitmap {
        use rayon::prelude::*;
        let std::ops::Range { start, end } = span(&self.dates, lo, hi);
        if start >= end {
            return RoaringBitmap::new();
        }
        if (end - start) * DATE_SCAN_SHARE >= column.len()
            && let Some(rows) = matching(column, lo, hi)
        {
            return rows;
        }
        let mut rows = self.rows[start..end].to_vec();
        rows.par_sort_unstable();
        RoaringBitmap::from_sorted_iter(rows).unwrap_or_default()
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.dates.capacity() * 4 + self.rows.capacity() * 4
    }
}

/// A column of a table.
type ColumnKey = (TableId, usize);
/// Rows per code of an enum column.
type EnumRows = std::sync::Arc<Vec<RoaringBitmap>>;

/// Indexes over single columns that SQL filters use (rows per enum code, rows in date order),
/// built on first use and shared by every session over the store.
#[derive(Debug, Default)]
pub struct ColumnIndexes {
    enums: std::sync::Mutex<BTreeMap<ColumnKey, EnumRows>>,
    dates: std::sync::Mutex<BTreeMap<ColumnKey, std::sync::Arc<DateIndex>>>,
    dictionaries: std::sync::Mutex<BTreeMap<ColumnKey, std::sync::Arc<Dictionary>>>,
    keys: std::sync::Mutex<BTreeMap<ColumnKey, std::sync::Arc<Csr>>>,
    present: std::sync::Mutex<BTreeMap<ColumnKey, std::sync::Arc<RoaringBitmap>>>,
}

/// The dictionary of a text column: each row's key, the distinct values in order of first
/// appearance, and value → key.
#[derive(Debug)]
pub struct Dictionary {
    keys: Vec<Option<u32>>,
    values: arrow::array::StringArray,
    index: std::collections::HashMap<String, u32>,
}

impl Dictionary {
    /// Builds the dictionary of a text column.
    pub fn build(a: &arrow::array::StringArray) -> Dictionary {
        let mut index = std::collections::HashMap::new();
        let mut values: Vec<String> = Vec::new();
        let keys = a
            .iter()
            .map(|v| {
                v.map(|v| {
                    *index.entry(v.to_string()).or_insert_with(|| {
                        values.push(v.to_string());
                        (values.len() - 1) as u32
                    })
                })
            })
            .collect();
        Dictionary {
            keys,
            values: arrow::array::StringArray::from(values),
            index,
        }
    }

    /// The key of a row's value (`None`: null).
    pub fn key_of_row(&self, row: usize) -> Option<u32> {
        self.keys.get(row).copied().flatten()
    }

    /// The key of a value, if some row holds it.
    pub fn key_of(&self, v: &str) -> Option<u32> {
        self.index.get(v).copied()
    }

    /// The distinct values, by key.
    pub fn values(&self) -> &arrow::array::StringArray {
        &self.values
    }
}

impl ColumnIndexes {
    /// The indexes built so far over every table but one (for a version in which only that
    /// table changed).
    pub fn kept_except(&self, changed: TableId) -> ColumnIndexes {
        fn keep<V: Clone>(
            m: &std::sync::Mutex<BTreeMap<ColumnKey, V>>,
            changed: TableId,
        ) -> std::sync::Mutex<BTreeMap<ColumnKey, V>> {
            let m = m.lock().unwrap_or_else(|e| e.into_inner());
            std::sync::Mutex::new(
                m.iter()
                    .filter(|((t, _), _)| *t != changed)
                    .map(|(k, v)| (*k, v.clone()))
                    .collect(),
            )
        }
        ColumnIndexes {
            enums: keep(&self.enums, changed),
            dates: keep(&self.dates, changed),
            dictionaries: keep(&self.dictionaries, changed),
            keys: keep(&self.keys, changed),
            present: keep(&self.present, changed),
        }
    }

    /// Rows per code of an enum column (codes as stored, `None` for null).
    pub fn enum_rows(
        &self,
        table: TableId,
        column: usize,
        n_codes: usize,
        codes: impl Iterator<Item = Option<i8>>,
    ) -> Option<EnumRows> {
        cached(&self.enums, (table, column), || enum_rows(n_codes, codes))
    }

    /// The dictionary of a text column, built on first use.
    pub fn dictionary(
        &self,
        table: TableId,
        column: usize,
        build: impl FnOnce() -> Dictionary,
    ) -> Option<std::sync::Arc<Dictionary>> {
        cached(&self.dictionaries, (table, column), build)
    }

    /// The rows of each key of a key column (an identity number, a reference), built on first
    /// use.
    pub fn key_rows(
        &self,
        table: TableId,
        column: usize,
        build: impl FnOnce() -> Csr,
    ) -> Option<std::sync::Arc<Csr>> {
        cached(&self.keys, (table, column), build)
    }

    /// The rows where a column holds a value (is not null), built on first use.
    pub fn present_rows(
        &self,
        table: TableId,
        column: usize,
        stored: &super::StoredColumn,
    ) -> Option<std::sync::Arc<RoaringBitmap>> {
        cached(&self.present, (table, column), || present_rows(stored))
    }

    /// A date column in date order.
    pub fn date_rows(
        &self,
        table: TableId,
        column: usize,
        values: impl Iterator<Item = Option<i32>>,
    ) -> Option<std::sync::Arc<DateIndex>> {
        cached(&self.dates, (table, column), || DateIndex::build(values))
    }
}

/// Rows per code, from the codes of every row in order. The rows of each code are gathered
/// for a stretch of rows and appended together: pushing rows one at a time into a dense bitmap
/// container looks for its greatest value each time (a scan of up to 1,024 words), which made
/// the first `direction = 'in'` over 150 M door events take 19 s.
fn enum_rows(n_codes: usize, codes: impl Iterator<Item = Option<i8>>) -> Vec<RoaringBitmap> {
    const STRETCH: usize = 1 << 16;
    let mut by = vec![RoaringBitmap::new(); n_codes];
    let mut gathered: Vec<Vec<u32>> = vec![Vec::new(); n_codes];
    let flush = |by: &mut [RoaringBitmap], gathered: &mut [Vec<u32>]| {
        for (b, rows) in by.iter_mut().zip(gathered.iter_mut()) {
            // Rows come in order, above every row appended before.
            let _ = b.append(rows.drain(..));
        }
    };
    for (i, c) in codes.enumerate() {
        if let Some(rows) = c.and_then(|c| gathered.get_mut(c as usize)) {
            rows.push(i as u32);
        }
        if (i + 1) % STRETCH == 0 {
            flush(&mut by, &mut gathered);
        }
    }
    flush(&mut by, &mut gathered);
    by
}

/// The rows of a stored column that hold a value (in runs where it has long ones: a column
/// without nulls takes a few bytes).
fn present_rows(column: &super::StoredColumn) -> RoaringBitmap {
    use super::StoredColumn;
    let valid = |a: &dyn Array| match a.logical_nulls() {
        None => {
            let mut all = RoaringBitmap::new();
            all.insert_range(0..a.len() as u32);
            all
        }
        Some(n) => {
            RoaringBitmap::from_sorted_iter(n.valid_indices().map(|i| i as u32)).unwrap_or_default()
        }
    };
    let mut rows = match column {
        StoredColumn::Array(a) => valid(a.as_ref()),
        StoredColumn::Codes { codes, .. } => valid(codes),
        StoredColumn::Keys { keys, .. } => RoaringBitmap::from_sorted_iter(
            keys.iter()
                .enumerate()
                .filter(|(_, k)| k.is_some_and(|k| k != NONE))
                .map(|(i, _)| i as u32),
        )
        .unwrap_or_default(),
    };
    rows.optimize();
    rows
}

/// A column's index from a cache, built on first use (`None`: the cache is poisoned).
fn cached<V>(
    cache: &std::sync::Mutex<BTreeMap<ColumnKey, std::sync::Arc<V>>>,
    key: ColumnKey,
    build: impl FnOnce() -> V,
) -> Option<std::sync::Arc<V>> {
    let mut cache = cache.lock().ok()?;
    Some(
        cache
            .entry(key)
            .or_insert_with(|| std::sync::Arc::new(build()))
            .clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Date32Array;
    use std::ops::Bound::{self, Excluded, Included, Unbounded};

    /// Rows per code over several stretches (dense codes, a sparse one, nulls and codes outside
    /// the enum), against the rows picked one by one.
    #[test]
    fn enum_rows_agree_with_the_codes() {
        let n = 3 * (1 << 16) + 12_345;
        let code = |i: usize| -> Option<i8> {
            match i % 7 {
                0 => None,
                1 => Some(9),
                2 if i % 1000 == 2 => Some(2),
                3 => Some(-1),
                _ => Some((i % 2) as i8),
            }
        };
        let by = enum_rows(3, (0..n).map(code));
        assert_eq!(by.len(), 3);
        for (c, rows) in by.iter().enumerate() {
            let want: Vec<u32> = (0..n)
                .filter(|&i| code(i) == Some(c as i8))
                .map(|i| i as u32)
                .collect();
            assert!(!want.is_empty());
            assert_eq!(rows.iter().collect::<Vec<_>>(), want, "code {c}");
        }
    }

    /// Date ranges, narrow (the index's sorted run) and wide (the column compared), with nulls
    /// and a length that does not fill its last byte, against a plain filter of the column.
    #[test]
    fn date_ranges_agree_with_a_filter() {
        let n = 200_003usize;
        let column: Date32Array = (0..n)
            .map(|i| (i % 11 != 3).then(|| ((i * 7_919) % 1_000) as i32 - 100))
            .collect();
        let index = DateIndex::build(column.iter());
        let bounds: Vec<(Bound<i32>, Bound<i32>)> = vec![
            (Included(-100), Unbounded),
            (Excluded(5), Unbounded),
            (Unbounded, Excluded(700)),
            (Unbounded, Included(-100)),
            (Included(10), Included(10)),
            (Included(300), Excluded(320)),
            (Excluded(0), Included(899)),
            (Included(2_000), Unbounded),
            (Unbounded, Unbounded),
        ];
        for (lo, hi) in bounds {
            let want: Vec<u32> = (0..n)
                .filter(|&i| {
                    column.is_valid(i)
                        && std::ops::RangeBounds::contains(&(lo, hi), &column.value(i))
                })
                .map(|i| i as u32)
                .collect();
            let got: Vec<u32> = index.range(lo, hi, &column).iter().collect();
            assert_eq!(got, want, "{lo:?}..{hi:?}");
        }
        let sliced = column.slice(5, 100_001);
        let index = DateIndex::build(sliced.iter());
        let got = index.range(Included(0), Unbounded, &sliced).len() as usize;
        let want = sliced.iter().filter(|d| d.is_some_and(|d| d >= 0)).count();
        assert_eq!(got, want, "a sliced column");
    }
}
