//! A batch of door events added to a served city without loading the table again.
//!
//! The batch's rows are checked and converted by the loader itself, against the served tables
//! (a building is found by the served key index), into a small table of their own; then:
//!
//! ```text
//! batch ──sort by building, time──▶ new identities and devices added at the ends of their pools
//!       ──▶ written after the served rows, in the table's room (store::room): nothing copied
//!       ──▶ the buildings' lists of added rows, rows per grid and door summaries of the touched
//!           buildings worked out again
//! ```
//!
//! The events table is a run sorted by building and time, then the rows added since (see
//! [`crate::store::event_rows`]). A table with no room of its own (loaded from files, read from
//! a snapshot) is copied into one, the batch after it; when the room is used up the table is
//! written anew with room to grow: the rows added since and the batch folded among the sorted
//! rows, each run copied once. Folded, the table
//! equals loading the dataset with the batches as more files (on equal times the rows that came
//! first come first, as a stable sort of the whole would place them); every other table, and
//! every index that does not read door events, is the served version's.

use super::report;
use super::{Added, Ctx, LoadOptions, as_of_of, load_table};
use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::store::event_rows::AddedEvents;
use crate::store::pool::{KeyIndex, StringPool};
use crate::store::room::Room;
use crate::store::{NONE, Pool, Store, StoredColumn, StoredTable};
use arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt32Array};
use arrow::compute;
use arrow::datatypes::{Int8Type, UInt32Type};
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// The served city with batches of door events added (one batch as it arrives, or the batches
/// a restart finds after its snapshot, merged in one pass: the same city as adding them one
/// after the other), or `None` when they are not what this path takes (another table, an
/// upsert, a city without door events yet, or extra columns that differ from the served
/// table's): the caller then loads the table again.
pub fn append(served: &Store, batches: &[Added], opts: &LoadOptions) -> Result<Option<Store>> {
    let id = TableId::AccessEvents;
    let old = served.table(id);
    if batches.is_empty()
        || batches.iter().any(|b| b.table != id || b.file.replaces)
        || old.rows == 0
    {
        return Ok(None);
    }
    let started = Instant::now();
    let mut ctx = Ctx {
        tables: served.tables().to_vec(),
        identity: StringPool::default(),
    };
    let sources: Vec<_> = batches.iter().map(|b| b.file.clone()).collect();
    let loaded = load_table(id, &sources, &mut ctx, opts)?;
    if loaded.table.schema.fields() != old.schema.fields() {
        return Ok(None);
    }
    let new = loaded.table.sorted_by_key_and_time("building_id", "ts")?;
    let read = started.elapsed();
    let ((identities, facts, identity_index), identity_of) =
        identities_with(served, ctx.identity.into_values())?;
    let nb = new.keys("building_id")?;
    // The batch's columns in the served columns' terms.
    let old_arrays: Vec<ArrayRef> = old.columns.iter().map(physical).collect();
    let (new_arrays, pools): (Vec<ArrayRef>, Vec<Option<Pool>>) = old
        .columns
        .iter()
        .zip(&new.columns)
        .map(|(o, n)| in_served_terms(o, n, &identity_of))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let pooled = started.elapsed();
    // Written after the rows served, in the table's room; into a room of the table's own when
    // it has none; or, when its room is used up, the table written anew with the rows added so
    // far and these folded among the sorted ones.
    let in_place = match &old.room {
        Some(room) => room.append(&old_arrays, &new_arrays)?,
        None => None,
    };
    let grows = old
        .room
        .as_ref()
        .is_none_or(|r| r.left(old.rows) >= new.rows);
    let written_after = in_place.is_some() || grows;
    let (arrays, room) = match in_place {
        Some(a) => (a, old.room.clone()),
        // No room of the table's own (loaded from files, read from a snapshot), or another
        // version grew from these rows: the columns copied into a room of their own, the
        // batch written after them.
        None if grows => {
            let pieces: Vec<Vec<ArrayRef>> = old_arrays
                .iter()
                .zip(&new_arrays)
                .map(|(o, n)| vec![o.clone(), n.clone()])
                .collect();
            let rows = old.rows + new.rows;
            let (a, room) = Room::build(&pieces, rows, room_for(rows))?;
            (a, Some(room))
        }
        None => {
            let nts = new.timestamps("ts")?.values();
            let (a, room) = folded(served, &old_arrays, &new_arrays, nb, nts)?;
            (a, Some(room))
        }
    };
    let columns = old
        .columns
        .iter()
        .zip(arrays)
        .zip(pools)
        .map(|((o, a), pool)| with_array(o, a, pool))
        .collect::<Result<Vec<_>>>()?;
    let mut files = old.files.clone();
    files.extend(new.files.iter().cloned());
    let table = StoredTable {
        id,
        rows: old.rows + new.rows,
        columns,
        schema: old.schema.clone(),
        files,
        key_cell: None,
        on_disk: Default::default(),
        room,
    };
    let mut tables = served.tables().to_vec();
    tables[id as usize] = table;
    let written = started.elapsed();
    let id_col = old.schema.index_of("id_number")?;
    let added = AddedEvents {
        buildings: nb,
        identities: new_arrays[id_col].as_primitive::<UInt32Type>().values(),
        times: new.timestamps("ts")?.values(),
    };
    let indexes = served
        .indexes
        .with_events_added(&tables, &added, written_after)?;
    let indexed = started.elapsed();
    let mut report = served.report.clone();
    // The table's counts are the batches' together (as one file after the other adds them).
    for (i, b) in batches.iter().enumerate() {
        let (read, rejects) = match i {
            0 => (loaded.read, &loaded.rejects[..]),
            _ => (0, &[][..]),
        };
        report.tables[id as usize].add_file(b.file.name.clone(), read, rejects);
    }
    report.encodings.extend(loaded.encodings);
    let rejects = report::rejects_batch(&loaded.rejects)?;
    let rejects = compute::concat_batches(&served.rejects.schema(), [&served.rejects, &rejects])?;
    let as_of = as_of_of(&served.manifest)?;
    report.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        rows = new.rows,
        rejected = loaded.rejects.len(),
        written_after,
        read_ms = read.as_millis() as u64,
        pooled_ms = (pooled - read).as_millis() as u64,
        written_ms = (written - pooled).as_millis() as u64,
        indexed_ms = (indexed - written).as_millis() as u64,
        seconds = report.seconds,
        "door events appended"
    );
    let mut next = Store::assembled(
        tables,
        (identities, facts, Some(identity_index)),
        indexes,
        served.manifest.clone(),
        as_of,
        served.calendar.clone(),
        report,
        rejects,
    );
    next.column_indexes = served.column_indexes.kept_except(id);
    Ok(Some(next))
}

/// The served city with its door events written anew, sorted by building and time throughout
/// (the rows added since the last fold folded among the others), with room to grow: the city
/// a load of the same files makes, table for table.
pub fn fold(served: &Store) -> Result<Store> {
    let id = TableId::AccessEvents;
    let old = served.table(id);
    let arrays: Vec<ArrayRef> = old.columns.iter().map(physical).collect();
    let none: Vec<ArrayRef> = arrays.iter().map(|a| a.slice(0, 0)).collect();
    let (arrays, room) = folded(served, &arrays, &none, &[], &[])?;
    let columns = old
        .columns
        .iter()
        .zip(arrays)
        .map(|(o, a)| with_array(o, a, None))
        .collect::<Result<Vec<_>>>()?;
    let mut tables = served.tables().to_vec();
    tables[id as usize] = StoredTable {
        columns,
        key_cell: None,
        on_disk: Default::default(),
        room: Some(room),
        ..old.clone()
    };
    let none = AddedEvents {
        buildings: &[],
        identities: &[],
        times: &[],
    };
    let indexes = served.indexes.with_events_added(&tables, &none, false)?;
    let mut next = Store::assembled(
        tables,
        (
            served.identities.clone(),
            served.facts().clone(),
            Some(served.identity_index().clone()),
        ),
        indexes,
        served.manifest.clone(),
        served.as_of,
        served.calendar.clone(),
        served.report.clone(),
        served.rejects.clone(),
    );
    next.column_indexes = served.column_indexes.kept_except(id);
    Ok(next)
}

/// An identity pool with each number's facts and the pool's index.
type Pooled = (
    Arc<StringArray>,
    Arc<Vec<crate::idcard::Facts>>,
    Arc<KeyIndex>,
);

/// The served identity pool with the batch's new numbers at its end, and the position there of
/// each of the batch's own.
fn identities_with(served: &Store, batch: StringArray) -> Result<(Pooled, Vec<u32>)> {
    let index = served.identity_index();
    let mut next = served.identities.len() as u32;
    let mut fresh: Vec<&str> = Vec::new();
    let of: Vec<u32> = (0..batch.len())
        .map(|i| {
            let v = batch.value(i);
            index.get(&served.identities, v).unwrap_or_else(|| {
                fresh.push(v);
                next += 1;
                next - 1
            })
        })
        .collect();
    if fresh.is_empty() {
        return Ok((
            (
                served.identities.clone(),
                served.facts().clone(),
                index.clone(),
            ),
            of,
        ));
    }
    let added = StringArray::from(fresh.clone());
    let all = compute::concat(&[served.identities.as_ref() as &dyn Array, &added])?
        .as_string::<i32>()
        .clone();
    let mut index = index.as_ref().clone();
    index.extend(&all, served.identities.len());
    let mut facts = served.facts().as_ref().clone();
    facts.extend(fresh.iter().map(|v| crate::idcard::Facts::of(v)));
    Ok(((Arc::new(all), Arc::new(facts), Arc::new(index)), of))
}

/// The array a column's rows are held in: its values, codes or keys.
fn physical(c: &StoredColumn) -> ArrayRef {
    match c {
        StoredColumn::Array(a) => a.clone(),
        StoredColumn::Codes { codes, .. } => Arc::new(codes.clone()),
        StoredColumn::Keys { keys, .. } => Arc::new(keys.clone()),
    }
}

/// A batch's column in the served column's terms: its array (keys into the identity pool
/// renumbered through `identity_of`, keys into a column's own dictionary renumbered into the
/// dictionary grown by the batch's new values), and that grown dictionary.
fn in_served_terms(
    old: &StoredColumn,
    new: &StoredColumn,
    identity_of: &[u32],
) -> Result<(ArrayRef, Option<Pool>)> {
    Ok(match (old, new) {
        (StoredColumn::Array(_), StoredColumn::Array(n)) => (n.clone(), None),
        (StoredColumn::Codes { .. }, StoredColumn::Codes { codes, .. }) => {
            (Arc::new(codes.clone()), None)
        }
        (StoredColumn::Keys { pool, .. }, StoredColumn::Keys { keys: n, pool: np }) => {
            let (n, pool) = match (pool, np) {
                (Pool::Table(a), Pool::Table(b)) if a == b => (n.clone(), pool.clone()),
                (Pool::Identity, Pool::Identity) => (renumbered(n, identity_of), Pool::Identity),
                (Pool::Local(ov), Pool::Local(nv)) => {
                    let (to, values) = grown(ov, nv)?;
                    (renumbered(n, &to), Pool::Local(values))
                }
                _ => {
                    return Err(Error::Internal(
                        "an appended column's pool differs from the served one's".into(),
                    ));
                }
            };
            (Arc::new(n), Some(pool))
        }
        _ => {
            return Err(Error::Internal(
                "an appended column is held differently from the served one".into(),
            ));
        }
    })
}

/// A served column's rows replaced by `array` (and its dictionary by `pool`, if given).
fn with_array(old: &StoredColumn, array: ArrayRef, pool: Option<Pool>) -> Result<StoredColumn> {
    Ok(match old {
        StoredColumn::Array(_) => StoredColumn::Array(array),
        StoredColumn::Codes { values, .. } => StoredColumn::Codes {
            codes: array.as_primitive::<Int8Type>().clone(),
            values: values.clone(),
        },
        StoredColumn::Keys { pool: p, .. } => StoredColumn::Keys {
            keys: array.as_primitive::<UInt32Type>().clone(),
            pool: pool.unwrap_or_else(|| p.clone()),
        },
    })
}

/// Rows the events table is written with room for, beyond its own: a sixteenth more, so that
/// the rows added are folded among the sorted ones about once per sixteenth of the city's
/// events.
fn room_for(rows: usize) -> usize {
    rows / 16 + (1 << 16)
}

/// The events table's arrays written anew, sorted by building and time throughout, with room
/// to grow: the served rows sorted (`old`'s first run), the rows added after them since, and
/// the batch (`new`, sorted by building and time, its arrays in the served terms) folded among
/// them. On equal times the rows that came first come first, as a stable sort of the whole
/// would place them.
fn folded(
    served: &Store,
    old: &[ArrayRef],
    new: &[ArrayRef],
    nb: &[u32],
    nts: &[i64],
) -> Result<(Vec<ArrayRef>, Arc<Room>)> {
    let ix = &served.indexes;
    let table = served.table(TableId::AccessEvents);
    let ots = table.timestamps("ts")?.values();
    let (tail_offsets, tail_rows) = ix.event_tail.parts();
    let sorted = ix.event_offsets.last().copied().unwrap_or(0);
    // The rows after the sorted run, by building in time order; then merged with the batch's.
    let tail_building = |i: usize| tail_offsets.partition_point(|&o| o as usize <= i) as u32 - 1;
    let (mut i, mut j) = (0usize, 0usize);
    // Each later row: (building, time, index into tail rows then batch rows).
    let mut later: Vec<(u32, i64, u32)> = Vec::with_capacity(tail_rows.len() + nb.len());
    let tail: Vec<(u32, i64)> = (0..tail_rows.len())
        .map(|k| (tail_building(k), ots[tail_rows[k] as usize]))
        .collect();
    while i < tail.len() || j < nb.len() {
        let take_tail = j == nb.len() || (i < tail.len() && tail[i] <= (nb[j], nts[j]));
        if take_tail {
            later.push((tail[i].0, tail[i].1, i as u32));
            i += 1;
        } else {
            later.push((nb[j], nts[j], (tail.len() + j) as u32));
            j += 1;
        }
    }
    // Where each later row goes among the sorted rows: after those of its building up to its
    // time.
    let places: Vec<usize> = later
        .par_iter()
        .map(|&(b, t, _)| {
            let range = ix.events_of(b).sorted;
            range.start + ots[range].partition_point(|&x| x <= t)
        })
        .collect();
    let order = UInt32Array::from_iter_values(later.iter().map(|l| l.2));
    let take_tail = UInt32Array::from(tail_rows.to_vec());
    let pieces = old
        .par_iter()
        .zip(new.par_iter())
        .map(|(o, n)| {
            let base = o.slice(0, sorted);
            let tail = compute::take(o.as_ref(), &take_tail, None)?;
            let later = compute::concat(&[tail.as_ref(), n.as_ref()])?;
            let later = compute::take(later.as_ref(), &order, None)?;
            Ok(pieces(base.as_ref(), later.as_ref(), &places))
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = sorted + later.len();
    Room::build(&pieces, rows, room_for(rows))
}

/// Keys renumbered through `to` (`NONE`, with its null slot, stays).
fn renumbered(keys: &UInt32Array, to: &[u32]) -> UInt32Array {
    super::keys_array(
        keys.values()
            .iter()
            .map(|&k| if k == NONE { NONE } else { to[k as usize] })
            .collect(),
    )
}

/// A dictionary grown by another's values it lacks (added at its end, in their order): the new
/// position of each of the other's values, and the grown dictionary.
fn grown(old: &Arc<StringArray>, other: &StringArray) -> Result<(Vec<u32>, Arc<StringArray>)> {
    let (index, _) = KeyIndex::build(old, |_| false);
    let mut next = old.len() as u32;
    let mut fresh: Vec<&str> = Vec::new();
    let to: Vec<u32> = (0..other.len())
        .map(|i| {
            let v = other.value(i);
            index.get(old, v).unwrap_or_else(|| {
                fresh.push(v);
                next += 1;
                next - 1
            })
        })
        .collect();
    if fresh.is_empty() {
        return Ok((to, old.clone()));
    }
    let fresh = StringArray::from(fresh);
    let all = compute::concat(&[old.as_ref() as &dyn Array, &fresh])?;
    Ok((to, Arc::new(all.as_string::<i32>().clone())))
}

/// The sorted rows with the later rows in their places (each later row's position among the
/// sorted rows, in the later rows' order): runs of sorted rows and of later rows, in order.
fn pieces(old: &dyn Array, new: &dyn Array, places: &[usize]) -> Vec<ArrayRef> {
    let mut pieces: Vec<ArrayRef> = Vec::with_capacity(places.len() * 2 + 1);
    let mut at = 0usize;
    let mut i = 0usize;
    while i < places.len() {
        let p = places[i];
        let mut j = i;
        while j < places.len() && places[j] == p {
            j += 1;
        }
        if p > at {
            pieces.push(old.slice(at, p - at));
        }
        pieces.push(new.slice(i, j - i));
        at = p;
        i = j;
    }
    if at < old.len() {
        pieces.push(old.slice(at, old.len() - at));
    }
    if pieces.is_empty() {
        pieces.push(old.slice(0, 0));
    }
    pieces
}
