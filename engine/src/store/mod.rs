//! The in-memory store: a loaded city, immutable once built.
//!
//! Each table keeps its rows in Arrow form, but a column that refers to another table's key
//! (`people.room_id` → `rooms`) or to an identity number is held as dense `u32` keys into the
//! referenced strings, and an enum as `i8` codes. Rules read the keys directly (a join is an array
//! lookup); SQL sees ordinary Arrow batches, materialized on demand by [`StoredTable::batch`].

pub mod doors;
pub mod event_rows;
pub mod index;
mod mapped;
pub mod pool;
pub mod room;
mod saved_indexes;
pub mod snapshot;

use crate::calendar::Calendar;
use crate::contract::{ColumnDef, ColumnType, TableId};
use crate::error::{Error, Result};
use crate::load::report::LoadReport;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int8Array,
    Int64Array, PrimitiveArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::buffer::NullBuffer;
use arrow::compute;
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use index::Indexes;
use pool::{KeyIndex, KeyIndexCell};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The key that marks a null in a key column.
pub const NONE: u32 = u32::MAX;

/// Where the strings behind a key column live.
#[derive(Debug, Clone)]
pub enum Pool {
    /// The single-column key of another table: `keys[i]` is a row of that table.
    Table(TableId),
    /// The shared identity pool.
    Identity,
    /// The column's own dictionary of distinct values.
    Local(Arc<StringArray>),
}

/// One column of a stored table.
#[derive(Debug, Clone)]
pub enum StoredColumn {
    /// Held as an Arrow array of its SQL type.
    Array(ArrayRef),
    /// Dense keys into a pool of strings; `NONE` (and a null slot) for null.
    Keys {
        /// The keys.
        keys: UInt32Array,
        /// Where the strings are.
        pool: Pool,
    },
    /// An enum, as positions in its list of values.
    Codes {
        /// The codes; null where the value is null.
        codes: Int8Array,
        /// The enum's values.
        values: Arc<StringArray>,
    },
}

impl StoredColumn {
    /// Whether `other` holds the very same buffers (one is a clone of the other).
    pub fn is_shared_with(&self, other: &StoredColumn) -> bool {
        let same = |a: &dyn Array, b: &dyn Array| a.to_data().ptr_eq(&b.to_data());
        match (self, other) {
            (StoredColumn::Array(a), StoredColumn::Array(b)) => {
                Arc::ptr_eq(a, b) || same(a.as_ref(), b.as_ref())
            }
            (StoredColumn::Keys { keys: a, pool: p }, StoredColumn::Keys { keys: b, pool: q }) => {
                let pools = match (p, q) {
                    (Pool::Table(x), Pool::Table(y)) => x == y,
                    (Pool::Identity, Pool::Identity) => true,
                    (Pool::Local(x), Pool::Local(y)) => Arc::ptr_eq(x, y),
                    _ => false,
                };
                pools && same(a, b)
            }
            (
                StoredColumn::Codes {
                    codes: a,
                    values: x,
                },
                StoredColumn::Codes {
                    codes: b,
                    values: y,
                },
            ) => Arc::ptr_eq(x, y) && same(a, b),
            _ => false,
        }
    }
}

/// Bytes of an array's own values: an array read from a snapshot is a slice of the buffer its
/// whole table was read into, which [`Array::get_array_memory_size`] would count for each.
pub fn bytes_of(a: &dyn Array) -> usize {
    a.to_data()
        .get_slice_memory_size()
        .unwrap_or_else(|_| a.get_array_memory_size())
}

impl StoredColumn {
    /// Bytes of memory held by the column itself (not by shared pools).
    pub fn memory(&self) -> usize {
        match self {
            StoredColumn::Array(a) => bytes_of(a.as_ref()),
            StoredColumn::Keys { keys, pool } => {
                bytes_of(keys)
                    + match pool {
                        Pool::Local(v) => bytes_of(v.as_ref()),
                        _ => 0,
                    }
            }
            StoredColumn::Codes { codes, .. } => bytes_of(codes),
        }
    }
}

/// A loaded table.
#[derive(Debug, Clone)]
pub struct StoredTable {
    /// Which table.
    pub id: TableId,
    /// Number of rows.
    pub rows: usize,
    /// Contract columns, in contract order, then extra columns.
    pub columns: Vec<StoredColumn>,
    /// The schema seen in SQL (same order as `columns`).
    pub schema: SchemaRef,
    /// The source files, relative to the dataset folder (empty if the table was not provided).
    pub files: Vec<String>,
    /// Value → row, for a table with a single-column key (see [`StoredTable::key_index`]).
    pub key_cell: Option<KeyIndexCell>,
    /// The snapshot folder holding this table's files as they are, if any (see [`OnDisk`]).
    pub on_disk: OnDisk,
    /// Room for the columns to grow in place, if they were written with some (door events:
    /// see [`room`]).
    pub room: Option<Arc<room::Room>>,
}

/// Where a table's files lie as they are: the snapshot folder it was read from or last written
/// to, shared by the table's clones (the versions that share it) and moved on to each newer
/// snapshot written, so that a snapshot links the files of the tables unchanged since the last
/// instead of writing them again. A table made anew starts with none.
#[derive(Debug, Clone, Default)]
pub struct OnDisk(Arc<std::sync::Mutex<Option<std::path::PathBuf>>>);

impl OnDisk {
    /// The folder, if any.
    pub fn get(&self) -> Option<std::path::PathBuf> {
        self.0.lock().ok()?.clone()
    }

    /// Records the folder now holding the table's files.
    pub fn set(&self, dir: &std::path::Path) {
        if let Ok(mut d) = self.0.lock() {
            *d = Some(dir.to_path_buf());
        }
    }
}

impl StoredTable {
    /// An empty table (an optional table the dataset did not provide).
    pub fn empty(id: TableId) -> StoredTable {
        let def = id.def();
        let columns = def.columns.iter().map(empty_column).collect();
        StoredTable {
            id,
            rows: 0,
            columns,
            schema: Arc::new(def.arrow_schema()),
            files: Vec::new(),
            key_cell: None,
            on_disk: OnDisk::default(),
            room: None,
        }
    }

    /// Value → row, for a table with a single-column key; built here on first use when the
    /// table was read from a snapshot (see [`KeyIndexCell`]).
    pub fn key_index(&self) -> Option<&Arc<KeyIndex>> {
        let cell = self.key_cell.as_ref()?;
        Some(cell.get_or_build(|| {
            let key = self.id.def().single_key()?;
            self.strings(key).ok().cloned()
        }))
    }

    /// Whether `other` holds this table's very columns (a later version that left the table
    /// as it was): the same buffers, not merely equal values. Cheap at any size.
    pub fn is_shared_with(&self, other: &StoredTable) -> bool {
        self.id == other.id
            && self.rows == other.rows
            && self.columns.len() == other.columns.len()
            && self
                .columns
                .iter()
                .zip(&other.columns)
                .all(|(a, b)| a.is_shared_with(b))
    }

    /// Whether the table has a key index (built or to be built on first use).
    pub fn has_key_index(&self) -> bool {
        self.key_cell.is_some()
    }

    fn position(&self, name: &str) -> Result<usize> {
        self.schema
            .index_of(name)
            .map_err(|_| Error::Internal(format!("{} has no column {name}", self.id.name())))
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Result<&StoredColumn> {
        Ok(&self.columns[self.position(name)?])
    }

    /// The keys of a key column (`NONE` for null).
    pub fn keys(&self, name: &str) -> Result<&[u32]> {
        match self.column(name)? {
            StoredColumn::Keys { keys, .. } => Ok(keys.values()),
            _ => Err(Error::Internal(format!(
                "{}.{name} is not a key column",
                self.id.name()
            ))),
        }
    }

    /// The keys of a pooled text column (`NONE` for null) and the distinct values they point to.
    pub fn pooled(&self, name: &str) -> Result<(&[u32], &StringArray)> {
        match self.column(name)? {
            StoredColumn::Keys {
                keys,
                pool: Pool::Local(values),
            } => Ok((keys.values(), values)),
            _ => Err(Error::Internal(format!(
                "{}.{name} is not a pooled text column",
                self.id.name()
            ))),
        }
    }

    /// The codes of an enum column.
    pub fn codes(&self, name: &str) -> Result<&Int8Array> {
        match self.column(name)? {
            StoredColumn::Codes { codes, .. } => Ok(codes),
            _ => Err(Error::Internal(format!(
                "{}.{name} is not an enum",
                self.id.name()
            ))),
        }
    }

    fn array<T: 'static>(&self, name: &str) -> Result<&T> {
        match self.column(name)? {
            StoredColumn::Array(a) => a.as_any().downcast_ref::<T>().ok_or_else(|| {
                Error::Internal(format!(
                    "{}.{name} has type {}",
                    self.id.name(),
                    a.data_type()
                ))
            }),
            _ => Err(Error::Internal(format!(
                "{}.{name} is not a plain column",
                self.id.name()
            ))),
        }
    }

    /// A text column held as strings (the table's own key, free text, months).
    pub fn strings(&self, name: &str) -> Result<&StringArray> {
        self.array(name)
    }
    /// A date column.
    pub fn dates(&self, name: &str) -> Result<&Date32Array> {
        self.array(name)
    }
    /// A timestamp column (microseconds since the epoch).
    pub fn timestamps(&self, name: &str) -> Result<&TimestampMicrosecondArray> {
        self.array(name)
    }
    /// An integer column.
    pub fn ints(&self, name: &str) -> Result<&Int64Array> {
        self.array(name)
    }
    /// A float column.
    pub fn floats(&self, name: &str) -> Result<&Float64Array> {
        self.array(name)
    }
    /// A boolean column.
    pub fn bools(&self, name: &str) -> Result<&BooleanArray> {
        self.array(name)
    }

    /// Bytes of memory held by the table (not by shared pools).
    pub fn memory(&self) -> usize {
        self.columns.iter().map(StoredColumn::memory).sum()
    }

    /// The table with its rows in a new order (`order[i]` is the old row of new row `i`), its
    /// columns reordered side by side. Tables with a key index keep row numbers referenced
    /// elsewhere, so only tables without one may be reordered.
    pub fn reorder(self, order: &UInt32Array) -> Result<StoredTable> {
        if self.has_key_index() {
            return Err(Error::Internal(format!(
                "{} cannot be reordered",
                self.id.name()
            )));
        }
        let StoredTable {
            id,
            rows,
            columns,
            schema,
            files,
            ..
        } = self;
        // One column at a time, each gathered on every core; each old column is dropped as soon
        // as its reordered copy is made.
        let columns = columns
            .into_iter()
            .map(|c| {
                Ok(match c {
                    StoredColumn::Array(a) => StoredColumn::Array(take(a.as_ref(), order)?),
                    StoredColumn::Keys { keys, pool } => StoredColumn::Keys {
                        keys: take_primitive(&keys, order.values()),
                        pool,
                    },
                    StoredColumn::Codes { codes, values } => StoredColumn::Codes {
                        codes: take_primitive(&codes, order.values()),
                        values,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StoredTable {
            id,
            rows,
            columns,
            schema,
            files,
            key_cell: None,
            on_disk: OnDisk::default(),
            room: None,
        })
    }

    /// Sorts the rows by a key column, and the rows of each key by a timestamp column, stably
    /// (rows without a key last). A no-op when the rows already come so, as exports often do;
    /// otherwise one counting sort by key, the keys' time sorts side by side, and one reorder.
    pub fn sorted_by_key_and_time(self, column: &str, time: &str) -> Result<StoredTable> {
        use rayon::prelude::*;
        let keys = self.keys(column)?;
        let ts = self.timestamps(time)?.values();
        let n = self.rows;
        let in_order = (1..n).into_par_iter().all(|i| {
            let (a, b) = (keys[i - 1], keys[i]);
            a < b || (a == b && ts[i - 1] <= ts[i])
        });
        if in_order {
            return Ok(self);
        }
        let n_keys = keys
            .par_iter()
            .copied()
            .filter(|&k| k != NONE)
            .max()
            .map_or(0, |m| m as usize + 1);
        // Rows grouped by key (the keyless last), then each key's rows sorted by time, as
        // (time, row) pairs: no lookups while sorting, and equal times keep their order.
        let t0 = std::time::Instant::now();
        let csr = index::Csr::build_par(keys, n_keys);
        tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "sort: grouped by key");
        let lens: Vec<usize> = (0..n_keys as u32).map(|k| csr.get(k).len()).collect();
        let mut order = csr.into_values();
        let keyless = n - order.len();
        order.extend((0..n as u32).filter(|&r| keys[r as usize] == NONE));
        let parts = slots(&mut order, lens.into_iter().chain([keyless]));
        parts.into_par_iter().for_each(|s| {
            let mut pairs: Vec<(i64, u32)> = s.iter().map(|&r| (ts[r as usize], r)).collect();
            pairs.sort_unstable();
            for (slot, (_, r)) in s.iter_mut().zip(pairs) {
                *slot = r;
            }
        });
        tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "sort: sorted by time");
        let order = UInt32Array::from(order);
        let out = self.reorder(&order);
        tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "sort: reordered");
        out
    }
}

/// An array's rows in a new order (`order[i]` is the old row of new row `i`): fixed-width
/// arrays gathered on every core, others by Arrow.
fn take(a: &dyn Array, order: &UInt32Array) -> Result<ArrayRef> {
    use arrow::datatypes::{
        Date32Type, Float64Type, Int64Type, TimestampMicrosecondType, UInt32Type,
    };
    let o = order.values();
    Ok(match a.data_type() {
        DataType::Int64 => Arc::new(take_primitive(a.as_primitive::<Int64Type>(), o)),
        DataType::Float64 => Arc::new(take_primitive(a.as_primitive::<Float64Type>(), o)),
        DataType::Date32 => Arc::new(take_primitive(a.as_primitive::<Date32Type>(), o)),
        DataType::UInt32 => Arc::new(take_primitive(a.as_primitive::<UInt32Type>(), o)),
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => Arc::new(
            take_primitive(a.as_primitive::<TimestampMicrosecondType>(), o),
        ),
        _ => compute::take(a, order, None)?,
    })
}

/// A primitive array's rows in a new order, gathered on every core.
fn take_primitive<T: arrow::datatypes::ArrowPrimitiveType>(
    a: &PrimitiveArray<T>,
    order: &[u32],
) -> PrimitiveArray<T> {
    use arrow::buffer::BooleanBuffer;
    use rayon::prelude::*;
    // A multiple of 8, so that the chunks' null masks join on byte boundaries.
    const CHUNK: usize = 1 << 16;
    let src = a.values();
    let mut values = vec![T::Native::default(); order.len()];
    values
        .par_chunks_mut(CHUNK)
        .zip(order.par_chunks(CHUNK))
        .for_each(|(out, rows)| {
            for (o, &r) in out.iter_mut().zip(rows) {
                *o = src[r as usize];
            }
        });
    let nulls = a.nulls().filter(|n| n.null_count() > 0).and_then(|n| {
        let chunks: Vec<NullBuffer> = order
            .par_chunks(CHUNK)
            .map(|rows| {
                NullBuffer::new(BooleanBuffer::collect_bool(rows.len(), |i| {
                    n.is_valid(rows[i] as usize)
                }))
            })
            .collect();
        concat_nulls(chunks.iter().map(|c| (c.len(), Some(c))), order.len())
    });
    PrimitiveArray::<T>::new(values.into(), nulls).with_data_type(a.data_type().clone())
}

/// Parts' null masks, concatenated: `(rows, nulls)` per part; `None` when no part has a null.
pub(crate) fn concat_nulls<'a>(
    parts: impl Iterator<Item = (usize, Option<&'a NullBuffer>)> + Clone,
    total: usize,
) -> Option<NullBuffer> {
    if parts
        .clone()
        .all(|(_, n)| n.is_none_or(|n| n.null_count() == 0))
    {
        return None;
    }
    let mut b = arrow::array::BooleanBufferBuilder::new(total);
    for (rows, n) in parts {
        match n {
            Some(n) => b.append_buffer(n.inner()),
            None => b.append_n(rows, true),
        }
    }
    Some(NullBuffer::new(b.finish()))
}

/// `out` cut into consecutive slices of the given lengths.
pub(crate) fn slots<T>(mut out: &mut [T], lens: impl Iterator<Item = usize>) -> Vec<&mut [T]> {
    let mut v = Vec::new();
    for n in lens {
        let (head, tail) = out.split_at_mut(n);
        v.push(head);
        out = tail;
    }
    v
}

fn empty_column(c: &ColumnDef) -> StoredColumn {
    if c.pooled {
        return StoredColumn::Keys {
            keys: UInt32Array::from(Vec::<u32>::new()),
            pool: Pool::Local(Arc::new(StringArray::from(Vec::<&str>::new()))),
        };
    }
    if let ColumnType::Enum(v) = c.ty {
        return StoredColumn::Codes {
            codes: Int8Array::from(Vec::<i8>::new()),
            values: Arc::new(StringArray::from(v.to_vec())),
        };
    }
    StoredColumn::Array(arrow::array::new_empty_array(&c.arrow_type()))
}

/// `manifest.json`: what the dataset is.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Dataset name.
    #[serde(default)]
    pub name: Option<String>,
    /// The reference instant rules and KPIs are evaluated at, unless a caller gives another.
    #[serde(default)]
    pub as_of: Option<String>,
    /// Where the data came from.
    #[serde(default)]
    pub source: Option<String>,
    /// When the dataset was made.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// What a snapshot keeps beside the tables, so that a start need not work it out again: the
/// identity numbers' facts and every index (each `None` when not kept).
#[derive(Debug, Default)]
pub struct Kept {
    /// [`Store::identity_facts`] of every identity, by position.
    pub facts: Option<Vec<crate::idcard::Facts>>,
    /// Every index.
    pub indexes: Option<Indexes>,
}

/// A loaded city: every table, the identity pool, the calendar, the load report and the
/// rejected rows. Immutable; a reload builds a new one and swaps it in whole.
#[derive(Debug)]
pub struct Store {
    tables: Vec<StoredTable>,
    /// Every identity number seen in any source, by position.
    pub identities: Arc<StringArray>,
    /// What each identity number says by itself, by position (see [`Store::identity_facts`]).
    facts: Arc<Vec<crate::idcard::Facts>>,
    /// The manifest, if the dataset had one.
    pub manifest: Manifest,
    /// The default `as_of` (the manifest's, else the load time).
    pub as_of: i64,
    /// The working calendar: the shipped default with the dataset's `calendar` table applied.
    pub calendar: Calendar,
    /// What was loaded and rejected.
    pub report: LoadReport,
    /// The rejected rows, as the SQL table `rejects`.
    pub rejects: RecordBatch,
    /// Indexes over the tables.
    pub indexes: Indexes,
    /// Indexes over single columns for SQL filters, built on first use.
    pub column_indexes: index::ColumnIndexes,
    /// Identity number → position in [`Store::identities`], built on first use (by the first
    /// batch appended) and handed on to the versions after it.
    identity_index: std::sync::OnceLock<Arc<KeyIndex>>,
}

impl Store {
    /// Assembles a store and builds its indexes, but for what a snapshot kept (`kept`;
    /// `Kept::default()` after a load). `tables` must hold every table of the contract, in
    /// `TableId::ALL` order, with door events sorted by building.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tables: Vec<StoredTable>,
        identities: Arc<StringArray>,
        kept: Kept,
        manifest: Manifest,
        as_of: i64,
        calendar: Calendar,
        report: LoadReport,
        rejects: RecordBatch,
    ) -> Result<Store> {
        let Kept { facts, indexes } = kept;
        let (indexes, facts) = rayon::join(
            || match indexes {
                Some(ix) => Ok(ix),
                None => Indexes::build(&tables, identities.len()),
            },
            || match facts {
                Some(f) if f.len() == identities.len() => f,
                _ => {
                    use rayon::prelude::*;
                    (0..identities.len())
                        .into_par_iter()
                        .with_min_len(64 * 1024)
                        .map(|i| crate::idcard::Facts::of(identities.value(i)))
                        .collect()
                }
            },
        );
        let indexes = indexes?;
        Ok(Store::assembled(
            tables,
            (identities, Arc::new(facts), None),
            indexes,
            manifest,
            as_of,
            calendar,
            report,
            rejects,
        ))
    }

    /// A store whose indexes and identity facts were worked out by the caller (a batch
    /// appended to a served store: see [`crate::load::append`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assembled(
        tables: Vec<StoredTable>,
        (identities, facts, identity_index): (
            Arc<StringArray>,
            Arc<Vec<crate::idcard::Facts>>,
            Option<Arc<KeyIndex>>,
        ),
        indexes: Indexes,
        manifest: Manifest,
        as_of: i64,
        calendar: Calendar,
        report: LoadReport,
        rejects: RecordBatch,
    ) -> Store {
        let once = std::sync::OnceLock::new();
        if let Some(ix) = identity_index {
            let _ = once.set(ix);
        }
        Store {
            tables,
            identities,
            facts,
            manifest,
            as_of,
            calendar,
            report,
            rejects,
            indexes,
            column_indexes: Default::default(),
            identity_index: once,
        }
    }

    /// What each identity number says by itself, by position.
    pub(crate) fn facts(&self) -> &Arc<Vec<crate::idcard::Facts>> {
        &self.facts
    }

    /// Whether an index built on first use is not built yet (see [`Store::build_deferred`]).
    pub fn has_deferred(&self) -> bool {
        self.identity_index.get().is_none()
            || self
                .tables
                .iter()
                .any(|t| t.key_cell.as_ref().is_some_and(|c| !c.is_built()))
    }

    /// Builds the indexes built on first use: the identity index and the key indexes of tables
    /// read from a snapshot. A starting server calls it beside its sweep and first requests,
    /// which wait for an index only when they need it. It works on one thread of its own, so
    /// as not to hold up the work of the shared threads (a sweep, a query) behind it.
    pub fn build_deferred(&self) {
        let build = || {
            self.identity_index();
            for t in &self.tables {
                t.key_index();
            }
        };
        match rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "gridlens-indexes".into())
            .build()
        {
            Ok(pool) => pool.install(build),
            Err(_) => build(),
        }
    }

    /// Identity number → position in [`Store::identities`] (built on the first call).
    pub fn identity_index(&self) -> &Arc<KeyIndex> {
        self.identity_index
            .get_or_init(|| Arc::new(KeyIndex::build(&self.identities, |_| false).0))
    }

    /// A table.
    pub fn table(&self, id: TableId) -> &StoredTable {
        &self.tables[id as usize]
    }

    /// Every table, in contract order.
    pub fn tables(&self) -> &[StoredTable] {
        &self.tables
    }

    /// The strings a key column's keys point into.
    pub fn pool(&self, pool: &Pool) -> Result<ArrayRef> {
        match pool {
            Pool::Identity => Ok(self.identities.clone() as ArrayRef),
            Pool::Local(v) => Ok(v.clone() as ArrayRef),
            Pool::Table(t) => {
                let table = self.table(*t);
                let key = t.def().single_key().ok_or_else(|| {
                    Error::Internal(format!("{} has no single-column key", t.name()))
                })?;
                match table.column(key)? {
                    StoredColumn::Array(a) => Ok(a.clone()),
                    _ => Err(Error::Internal(format!(
                        "{}.{key} is not stored as text",
                        t.name()
                    ))),
                }
            }
        }
    }

    /// The string behind a key of a key column.
    pub fn key_str(&self, table: TableId, column: &str, row: usize) -> Result<Option<String>> {
        match self.table(table).column(column)? {
            StoredColumn::Keys { keys, pool } => {
                let k = keys.values()[row];
                if k == NONE {
                    return Ok(None);
                }
                let p = self.pool(pool)?;
                let s = p
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| Error::Internal("pool is not text".into()))?;
                Ok(Some(s.value(k as usize).to_string()))
            }
            _ => Err(Error::Internal(format!("{column} is not a key column"))),
        }
    }

    /// The identity number at a position of the pool.
    pub fn identity(&self, key: u32) -> &str {
        if key == NONE {
            return "";
        }
        self.identities.value(key as usize)
    }

    /// What an identity number says by itself (its checks, birth date and sex digit), worked
    /// out once per number at load.
    pub fn identity_facts(&self, key: u32) -> crate::idcard::Facts {
        match self.facts.get(key as usize) {
            Some(f) => *f,
            None => crate::idcard::Facts::of(self.identity(key)),
        }
    }

    /// Materializes one column for some rows as its SQL-typed array.
    pub fn materialize(
        &self,
        table: &StoredTable,
        column: usize,
        rows: RowSet<'_>,
    ) -> Result<ArrayRef> {
        let field = table.schema.field(column);
        let out: ArrayRef = match &table.columns[column] {
            StoredColumn::Array(a) => match rows {
                RowSet::All => a.clone(),
                RowSet::Range(s, n) => a.slice(s, n),
                RowSet::Take(r) => compute::take(a.as_ref(), r, None)?,
            },
            StoredColumn::Keys { keys, pool } => {
                compute::take(self.pool(pool)?.as_ref(), &rows.pick(keys)?, None)?
            }
            StoredColumn::Codes { codes, values } => {
                Arc::new(DictionaryArray::<Int8Type>::try_new(
                    rows.pick(codes)?,
                    values.clone() as ArrayRef,
                )?)
            }
        };
        if out.data_type() != field.data_type() {
            // Timestamps are stored without their zone; SQL sees them in +08:00.
            return Ok(compute::cast(&out, field.data_type())?);
        }
        Ok(out)
    }

    /// Materializes a slice of rows of a table as a record batch, with the given columns
    /// (`None`: all).
    pub fn batch(
        &self,
        table: &StoredTable,
        projection: Option<&[usize]>,
        rows: Option<&UInt32Array>,
    ) -> Result<RecordBatch> {
        let all: Vec<usize> = (0..table.columns.len()).collect();
        let cols = projection.unwrap_or(&all);
        let fields: Vec<Field> = cols
            .iter()
            .map(|&i| table.schema.field(i).clone())
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let arrays = cols
            .iter()
            .map(|&i| self.materialize(table, i, rows.map_or(RowSet::All, RowSet::Take)))
            .collect::<Result<Vec<_>>>()?;
        let n = rows.map_or(table.rows, |r| r.len());
        Ok(RecordBatch::try_new_with_options(
            schema,
            arrays,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }

    /// Bytes of memory held by the store's columns, pools and indexes.
    pub fn memory(&self) -> usize {
        self.tables.iter().map(StoredTable::memory).sum::<usize>()
            + bytes_of(self.identities.as_ref())
            + self.indexes.memory()
    }
}

/// Which rows of a stored table to materialize.
#[derive(Debug, Clone, Copy)]
pub enum RowSet<'a> {
    /// Every row.
    All,
    /// `len` rows from `start`.
    Range(usize, usize),
    /// The rows at these positions, in this order.
    Take(&'a UInt32Array),
}

impl RowSet<'_> {
    /// These rows of a primitive array.
    fn pick<T: arrow::datatypes::ArrowPrimitiveType>(
        self,
        a: &PrimitiveArray<T>,
    ) -> Result<PrimitiveArray<T>> {
        Ok(match self {
            RowSet::All => a.clone(),
            RowSet::Range(s, n) => a.slice(s, n),
            RowSet::Take(r) => compute::take(a, r, None)?.as_primitive::<T>().clone(),
        })
    }
}

/// The SQL type of a stored timestamp: microseconds in +08:00.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(
        arrow::datatypes::TimeUnit::Microsecond,
        Some(crate::contract::TZ.into()),
    )
}
