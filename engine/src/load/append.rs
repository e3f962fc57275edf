//! A batch of door events added to a served city without loading the table again.
//!
//! The batch's rows are checked and converted by the loader itself, against the served tables
//! (a building is found by the served key index), into a small table of their own; then:
//!
//! ```text
//! batch ──sort by building, time──▶ insertion points in the served events (a binary search
//!        within each building's range) ──▶ each column copied once, slice by slice, with the
//!        new rows in their places ──▶ new identities and devices added at the ends of their pools
//!        ──▶ offsets, rows per grid and door summaries of the touched buildings worked out again
//! ```
//!
//! The result equals loading the dataset with the batch as one more file (the events are held
//! sorted by building and time, and on equal times the served rows come first, as a stable sort
//! of the whole would place them); every other table, and every index that does not read door
//! events, is the served version's.

use super::report;
use super::{Added, Ctx, LoadOptions, as_of_of, load_table};
use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::store::pool::{KeyIndex, StringPool};
use crate::store::{NONE, Pool, Store, StoredColumn, StoredTable};
use arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt32Array};
use arrow::compute;
use arrow::datatypes::UInt32Type;
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
    let ((identities, facts, identity_index), identity_of) =
        identities_with(served, ctx.identity.into_values())?;
    // Where each new row goes: after the served rows of its building up to its time.
    let nb = new.keys("building_id")?;
    let nts = new.timestamps("ts")?.values();
    let ots = old.timestamps("ts")?.values();
    let places: Vec<usize> = (0..new.rows)
        .into_par_iter()
        .map(|i| {
            let range = served.indexes.events_of(nb[i]);
            range.start + ots[range].partition_point(|&t| t <= nts[i])
        })
        .collect();
    let mut added: Vec<(u32, usize)> = Vec::new();
    for &b in nb {
        match added.last_mut() {
            Some((last, n)) if *last == b => *n += 1,
            _ => added.push((b, 1)),
        }
    }
    let columns = old
        .columns
        .par_iter()
        .zip(new.columns.par_iter())
        .map(|(o, n)| merged_column(o, n, &places, &identity_of))
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
    };
    let mut tables = served.tables().to_vec();
    tables[id as usize] = table;
    let indexes = served.indexes.with_events_added(&tables, &added)?;
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
        buildings = added.len(),
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

/// A served column with the batch's column merged in at `places` (each new row's position
/// among the served rows, in the new rows' order): keys into the identity pool are renumbered
/// through `identity_of`, a column's own dictionary grows by the batch's new values.
fn merged_column(
    old: &StoredColumn,
    new: &StoredColumn,
    places: &[usize],
    identity_of: &[u32],
) -> Result<StoredColumn> {
    Ok(match (old, new) {
        (StoredColumn::Array(o), StoredColumn::Array(n)) => {
            StoredColumn::Array(merged(o.as_ref(), n.as_ref(), places)?)
        }
        (StoredColumn::Codes { codes, values }, StoredColumn::Codes { codes: n, .. }) => {
            StoredColumn::Codes {
                codes: merged(codes, n, places)?
                    .as_primitive::<arrow::datatypes::Int8Type>()
                    .clone(),
                values: values.clone(),
            }
        }
        (StoredColumn::Keys { keys, pool }, StoredColumn::Keys { keys: n, pool: np }) => {
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
            StoredColumn::Keys {
                keys: merged(keys, &n, places)?
                    .as_primitive::<UInt32Type>()
                    .clone(),
                pool,
            }
        }
        _ => {
            return Err(Error::Internal(
                "an appended column is held differently from the served one".into(),
            ));
        }
    })
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

/// The served rows with the new rows in their places: runs of served rows and of new rows,
/// copied once.
fn merged(old: &dyn Array, new: &dyn Array, places: &[usize]) -> Result<ArrayRef> {
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
    let refs: Vec<&dyn Array> = pieces.iter().map(|a| a.as_ref()).collect();
    Ok(compute::concat(&refs)?)
}
