//! Key spaces: what a `u32` key of a column stands for, how a column's rows become keys, how
//! keys become the column's values again, and how a literal becomes a key.
//!
//! Every space is injective (two keys of one space stand for two different values), so that
//! equality, grouping, `DISTINCT` and joins on keys give what they give on the values.

use crate::contract::TableId;
use crate::hierarchy;
use crate::store::index::Dictionary;
use crate::store::{NONE, Pool, Store, StoredColumn, StoredTable};
use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int8Array, StringArray, UInt32Array,
};
use arrow::compute;
use arrow::datatypes::{DataType, Int8Type};
use datafusion::error::{DataFusionError, Result as DfResult};
use std::fmt;
use std::sync::Arc;

/// The field metadata that marks a column as carried by its keys, with its [`KeySpace`].
pub const KEY_META: &str = "gridlens.keys";

/// Tables small enough to hold a dictionary of each text column (the grid hierarchy's codes and
/// names, the workers').
const DICTIONARY_TABLES: [TableId; 2] = [TableId::Grids, TableId::Workers];

/// What the keys of an encoded column stand for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeySpace {
    /// Rows of a table: its own single-column key, and every reference to it (a room's
    /// `building_id` is the row of that building in `buildings`; a derived `grid_code` the row
    /// of its grid).
    Rows(TableId),
    /// The shared pool of identity numbers (`people.id_number`, `leases.tenant_id_number`, …).
    Identity,
    /// A column's own pool of distinct values (`access_events.device_id`, …).
    Local(TableId, usize),
    /// An enum column's positions in its list of values.
    Codes(TableId, usize),
    /// A text column of a small table, through a dictionary of its distinct values built once.
    Dictionary(TableId, usize),
}

impl fmt::Display for KeySpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let col = |t: &TableId, c: &usize| {
            t.def()
                .columns
                .get(*c)
                .map_or_else(|| format!("#{c}"), |d| d.name.to_string())
        };
        match self {
            KeySpace::Rows(t) => write!(f, "rows:{}", t.name()),
            KeySpace::Identity => write!(f, "identity"),
            KeySpace::Local(t, c) => write!(f, "local:{}.{}", t.name(), col(t, c)),
            KeySpace::Codes(t, c) => write!(f, "codes:{}.{}", t.name(), col(t, c)),
            KeySpace::Dictionary(t, c) => write!(f, "dictionary:{}.{}", t.name(), col(t, c)),
        }
    }
}

impl KeySpace {
    /// Reads a space back from its [`KeySpace`] display text.
    pub fn parse(text: &str) -> Option<KeySpace> {
        if text == "identity" {
            return Some(KeySpace::Identity);
        }
        let (kind, rest) = text.split_once(':')?;
        if kind == "rows" {
            return TableId::from_name(rest).map(KeySpace::Rows);
        }
        let (t, c) = rest.split_once('.')?;
        let t = TableId::from_name(t)?;
        let c = t.def().position(c)?;
        match kind {
            "local" => Some(KeySpace::Local(t, c)),
            "codes" => Some(KeySpace::Codes(t, c)),
            "dictionary" => Some(KeySpace::Dictionary(t, c)),
            _ => None,
        }
    }

    /// The space column `col` of `table` is encoded in, if it has one (`col` equal to the column
    /// count: the derived `grid_code`).
    pub fn of(store: &Store, table: TableId, col: usize) -> Option<KeySpace> {
        let t = store.table(table);
        if col == t.columns.len() {
            return Some(KeySpace::Rows(TableId::Grids));
        }
        let def = table.def();
        let name = t.schema.fields().get(col)?.name();
        match t.columns.get(col)? {
            StoredColumn::Keys { pool, .. } => Some(match pool {
                Pool::Table(u) => KeySpace::Rows(*u),
                Pool::Identity => KeySpace::Identity,
                Pool::Local(_) => KeySpace::Local(table, col),
            }),
            StoredColumn::Codes { .. } => Some(KeySpace::Codes(table, col)),
            StoredColumn::Array(a) if a.data_type() == &DataType::Utf8 => {
                if def.single_key() == Some(name.as_str()) && t.has_key_index() {
                    Some(KeySpace::Rows(table))
                } else if DICTIONARY_TABLES.contains(&table) && col < def.columns.len() {
                    Some(KeySpace::Dictionary(table, col))
                } else {
                    None
                }
            }
            StoredColumn::Array(_) => None,
        }
    }

    /// The keys of some rows (`ids`) of column `col` of `table`: null where the value is null.
    pub fn encode(
        &self,
        store: &Store,
        table: TableId,
        col: usize,
        ids: &[u32],
    ) -> DfResult<ArrayRef> {
        let t = store.table(table);
        let keys: UInt32Array = match (self, t.columns.get(col)) {
            (_, None) => {
                // The derived grid_code: the row of each row's grid.
                hierarchy::grids_of(store, table, ids)
                    .into_iter()
                    .map(|g| (g != NONE).then_some(g))
                    .collect()
            }
            (_, Some(StoredColumn::Keys { keys, .. })) => {
                let k = keys.values();
                ids.iter()
                    .map(|&r| Some(k[r as usize]).filter(|&v| v != NONE))
                    .collect()
            }
            (_, Some(StoredColumn::Codes { codes, .. })) => ids
                .iter()
                .map(|&r| {
                    let r = r as usize;
                    (!codes.is_null(r)).then(|| codes.value(r) as u32)
                })
                .collect(),
            (KeySpace::Rows(_), Some(StoredColumn::Array(a))) => ids
                .iter()
                .map(|&r| (!a.is_null(r as usize)).then_some(r))
                .collect(),
            (KeySpace::Dictionary(..), Some(StoredColumn::Array(_))) => {
                let d = dictionary(store, table, col)?;
                ids.iter().map(|&r| d.key_of_row(r as usize)).collect()
            }
            _ => return Err(internal(format!("{self} cannot encode {}", table.name()))),
        };
        Ok(Arc::new(keys))
    }

    /// The values behind some keys, as the column's own SQL type.
    pub fn decode(&self, store: &Store, keys: &UInt32Array) -> DfResult<ArrayRef> {
        Ok(match self {
            KeySpace::Rows(t) => {
                let pool = store.pool(&Pool::Table(*t)).map_err(external)?;
                compute::take(pool.as_ref(), keys, None)?
            }
            KeySpace::Identity => compute::take(store.identities.as_ref(), keys, None)?,
            KeySpace::Local(t, c) => compute::take(local(store, *t, *c)?.as_ref(), keys, None)?,
            KeySpace::Codes(t, c) => {
                let values = codes(store, *t, *c)?;
                let codes: Int8Array = keys.iter().map(|k| k.map(|k| k as i8)).collect();
                Arc::new(DictionaryArray::<Int8Type>::try_new(
                    codes,
                    values as ArrayRef,
                )?)
            }
            KeySpace::Dictionary(t, c) => {
                compute::take(dictionary(store, *t, *c)?.values(), keys, None)?
            }
        })
    }

    /// The key of a value, when this space can look one up: `Some(None)` when no row holds the
    /// value, `None` when the space has no index from values to keys (identity numbers).
    pub fn lookup(&self, store: &Store, v: &str) -> Option<Option<u32>> {
        let find = |values: &StringArray| {
            (0..values.len())
                .find(|&i| values.is_valid(i) && values.value(i) == v)
                .map(|i| i as u32)
        };
        match self {
            KeySpace::Rows(t) => {
                let index = store.table(*t).key_index()?;
                let pool = store.pool(&Pool::Table(*t)).ok()?;
                Some(index.get(pool.as_string_opt::<i32>()?, v))
            }
            KeySpace::Identity => None,
            KeySpace::Local(t, c) => Some(find(local(store, *t, *c).ok()?.as_ref())),
            KeySpace::Codes(t, c) => Some(find(codes(store, *t, *c).ok()?.as_ref())),
            KeySpace::Dictionary(t, c) => Some(dictionary(store, *t, *c).ok()?.key_of(v)),
        }
    }

    /// How many keys the space has (keys run from 0 to one less).
    pub fn len(&self, store: &Store) -> DfResult<usize> {
        Ok(match self {
            KeySpace::Rows(t) => store.table(*t).rows,
            KeySpace::Identity => store.identities.len(),
            KeySpace::Local(t, c) => local(store, *t, *c)?.len(),
            KeySpace::Codes(t, c) => codes(store, *t, *c)?.len(),
            KeySpace::Dictionary(t, c) => dictionary(store, *t, *c)?.values().len(),
        })
    }

    /// The SQL type the keys decode to.
    pub fn value_type(&self, store: &Store) -> DataType {
        match self {
            KeySpace::Codes(..) => {
                DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
            }
            KeySpace::Rows(t) => store
                .pool(&Pool::Table(*t))
                .map_or(DataType::Utf8, |p| p.data_type().clone()),
            _ => DataType::Utf8,
        }
    }
}

/// A column's own pool.
fn local(store: &Store, t: TableId, c: usize) -> DfResult<Arc<StringArray>> {
    match store.table(t).columns.get(c) {
        Some(StoredColumn::Keys {
            pool: Pool::Local(v),
            ..
        }) => Ok(v.clone()),
        _ => Err(internal(format!("{}#{c} has no pool of its own", t.name()))),
    }
}

/// An enum column's values.
fn codes(store: &Store, t: TableId, c: usize) -> DfResult<Arc<StringArray>> {
    match store.table(t).columns.get(c) {
        Some(StoredColumn::Codes { values, .. }) => Ok(values.clone()),
        _ => Err(internal(format!("{}#{c} is not an enum", t.name()))),
    }
}

fn dictionary(store: &Store, t: TableId, c: usize) -> DfResult<Arc<Dictionary>> {
    let table: &StoredTable = store.table(t);
    let Some(StoredColumn::Array(a)) = table.columns.get(c) else {
        return Err(internal(format!("{}#{c} is not text", t.name())));
    };
    let a = a
        .as_string_opt::<i32>()
        .ok_or_else(|| internal(format!("{}#{c} is not text", t.name())))?;
    store
        .column_indexes
        .dictionary(t, c, || Dictionary::build(a))
        .ok_or_else(|| internal("the dictionary cache is poisoned".into()))
}

fn internal(m: String) -> DataFusionError {
    DataFusionError::Internal(m)
}

fn external(e: crate::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
