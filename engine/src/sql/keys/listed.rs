//! Rows found from the keys a join's side holds.
//!
//! A hash join whose build side has few distinct keys (up to [`LISTED_KEYS`]) pushes them to
//! the scan of its other side as a list (`room_id IN (…)` inside its dynamic filter). When the
//! scan reads that column as keys, the rows holding them are found from the keys themselves,
//! not by testing every row: a table's own key is its row (`rooms.room_id`), and a reference
//! or identity column has an index of its rows per key, built on first use
//! ([`crate::store::index::ColumnIndexes::key_rows`]). The rooms of the 2,700 people still
//! registered after their death are read as 2,700 rows, not by testing 5.6 M.

use super::space::KeySpace;
use crate::contract::TableId;
use crate::store::index::Csr;
use crate::store::{Store, StoredColumn};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, CaseExpr, Column, InListExpr, Literal};
use std::sync::Arc;

/// The most distinct keys a join's side (each partition of it) may push to the other side as
/// a list. DataFusion makes a literal of each key, copies the list into every expression it
/// rewrites and frees them one by one: about 3 µs a key all told, against 40–80 ns for testing
/// a row by the join's hash table. A side of 261,000 keys per partition (rooms with two running
/// leases) cost more as lists than testing 5.6 M rooms saved.
pub const LISTED_KEYS: usize = 1 << 17;

/// The most bytes those keys may take (a side of text keys, on values, pushes fewer).
pub const LISTED_BYTES: usize = 2 << 20;

/// The most rows a table may have for an index of its rows per key to be built (4 bytes a row
/// and a key): not the door events.
const INDEXED_ROWS: usize = 1 << 25;

/// The column (its place in the scan's output) and the keys of a list that a filter requires
/// of every row it passes: `col IN (k1, k2, …)` of keys, alone or among the filter's `AND`s;
/// for a join hashed into partitions, `CASE hash % n WHEN 0 THEN … IN (…) … ELSE false END`,
/// the keys of every partition's list together.
pub fn key_list(e: &Arc<dyn PhysicalExpr>) -> Option<(usize, Vec<u32>)> {
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        return match b.op() {
            Operator::And => key_list(b.left()).or_else(|| key_list(b.right())),
            _ => None,
        };
    }
    if let Some(c) = e.downcast_ref::<CaseExpr>() {
        let passes_none = match c.else_expr() {
            None => true,
            Some(x) => x
                .downcast_ref::<Literal>()
                .is_some_and(|l| matches!(l.value(), ScalarValue::Boolean(None | Some(false)))),
        };
        if !passes_none {
            return None;
        }
        let mut all: Option<(usize, Vec<u32>)> = None;
        for (_, then) in c.when_then_expr() {
            let (col, keys) = key_list(then)?;
            match &mut all {
                None => all = Some((col, keys)),
                Some((c, k)) if *c == col => k.extend(keys),
                Some(_) => return None,
            }
        }
        return all;
    }
    let list = e.downcast_ref::<InListExpr>()?;
    if list.negated() {
        return None;
    }
    let column = list.expr().downcast_ref::<Column>()?;
    // A null in the list passes no row (`k IN (…, NULL)` is null where `k` is not listed, and
    // the filter keeps only rows it holds true): a nullable join column's side lists its nulls.
    let mut keys = Vec::with_capacity(list.list().len());
    for x in list.list() {
        match x.downcast_ref::<Literal>()?.value() {
            ScalarValue::UInt32(Some(k)) => keys.push(*k),
            ScalarValue::UInt32(None) | ScalarValue::Null => {}
            _ => return None,
        }
    }
    Some((column.index(), keys))
}

/// The rows of `table` that `keep` keeps (a scan's partition) and whose stored column `column`
/// (keys of `space`) holds one of `keys`, in order; `None` where the column has no way from
/// keys to rows, or where all its rows holding them would be more than `most` (a join's side
/// holding most keys: testing the rows costs less).
pub fn rows_of_keys(
    store: &Store,
    table: TableId,
    column: usize,
    space: &KeySpace,
    keys: &[u32],
    most: usize,
    keep: impl Fn(u32) -> bool,
) -> Option<Vec<u32>> {
    let t = store.table(table);
    let mut rows: Vec<u32> = match t.columns.get(column)? {
        // The table's own key: key k is row k.
        StoredColumn::Array(_) if *space == KeySpace::Rows(table) => {
            if keys.len() > most {
                return None;
            }
            keys.iter()
                .copied()
                .filter(|&k| (k as usize) < t.rows && keep(k))
                .collect()
        }
        StoredColumn::Keys { keys: stored, .. } if t.rows <= INDEXED_ROWS => {
            let n = space.len(store).ok()?;
            // As many rows a key as on average, before an index is built to know.
            if keys.len().saturating_mul(t.rows) / n.max(1) > most {
                return None;
            }
            let index = store
                .column_indexes
                .key_rows(table, column, || Csr::build_par(stored.values(), n))?;
            let keys: Vec<u32> = keys.iter().copied().filter(|&k| (k as usize) < n).collect();
            if keys.iter().map(|&k| index.get(k).len()).sum::<usize>() > most {
                return None;
            }
            keys.iter()
                .flat_map(|&k| index.get(k).iter().copied())
                .filter(|&r| keep(r))
                .collect()
        }
        _ => return None,
    };
    rows.sort_unstable();
    rows.dedup();
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::{col, lit};

    #[test]
    fn lists_are_found_among_ands_only() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::UInt32, true),
            Field::new("b", DataType::UInt32, true),
            Field::new("c", DataType::Utf8, true),
        ]);
        let a = col("a", &schema).unwrap();
        let b = col("b", &schema).unwrap();
        let list = |c: &Arc<dyn PhysicalExpr>, keys: &[u32], negated: bool| {
            let values = keys
                .iter()
                .map(|&k| lit(ScalarValue::UInt32(Some(k))))
                .collect();
            Arc::new(InListExpr::try_new(c.clone(), values, negated, &schema).unwrap())
                as Arc<dyn PhysicalExpr>
        };
        let and = |l, r| Arc::new(BinaryExpr::new(l, Operator::And, r)) as Arc<dyn PhysicalExpr>;
        let or = |l, r| Arc::new(BinaryExpr::new(l, Operator::Or, r)) as Arc<dyn PhysicalExpr>;
        let range = Arc::new(BinaryExpr::new(
            b.clone(),
            Operator::GtEq,
            lit(ScalarValue::UInt32(Some(3))),
        )) as Arc<dyn PhysicalExpr>;
        assert_eq!(key_list(&list(&b, &[7, 3], false)), Some((1, vec![7, 3])));
        assert_eq!(
            key_list(&and(range.clone(), list(&b, &[4], false))),
            Some((1, vec![4]))
        );
        // Under an OR, or negated, a list does not bound the rows.
        assert_eq!(key_list(&or(range.clone(), list(&a, &[4], false))), None);
        assert_eq!(key_list(&list(&a, &[4], true)), None);
        // A null in a list passes no row: the keys are the others.
        let nulls = Arc::new(
            InListExpr::try_new(
                a.clone(),
                vec![
                    lit(ScalarValue::UInt32(Some(1))),
                    lit(ScalarValue::UInt32(None)),
                ],
                false,
                &schema,
            )
            .unwrap(),
        ) as Arc<dyn PhysicalExpr>;
        assert_eq!(key_list(&nulls), Some((0, vec![1])));
        // Values that are not keys: no list.
        let texts = Arc::new(
            InListExpr::try_new(
                col("c", &schema).unwrap(),
                vec![lit(ScalarValue::Utf8(Some("1".into())))],
                false,
                &schema,
            )
            .unwrap(),
        ) as Arc<dyn PhysicalExpr>;
        assert_eq!(key_list(&texts), None);
        // A join hashed into partitions: every partition's list, if each lists the column and
        // the rest passes nothing.
        let when = |i: i64| lit(ScalarValue::Int64(Some(i)));
        let case = |lists: Vec<Arc<dyn PhysicalExpr>>, otherwise: Option<ScalarValue>| {
            let branches = lists
                .into_iter()
                .enumerate()
                .map(|(i, l)| (when(i as i64), l))
                .collect();
            Arc::new(CaseExpr::try_new(Some(when(0)), branches, otherwise.map(lit)).unwrap())
                as Arc<dyn PhysicalExpr>
        };
        let parts = || {
            vec![
                and(range.clone(), list(&b, &[1, 2], false)),
                list(&b, &[5], false),
            ]
        };
        assert_eq!(
            key_list(&case(parts(), Some(ScalarValue::Boolean(Some(false))))),
            Some((1, vec![1, 2, 5]))
        );
        assert_eq!(key_list(&case(parts(), None)), Some((1, vec![1, 2, 5])));
        assert_eq!(
            key_list(&case(parts(), Some(ScalarValue::Boolean(Some(true))))),
            None
        );
        let mixed = vec![list(&b, &[1], false), list(&a, &[5], false)];
        assert_eq!(key_list(&case(mixed, None)), None);
        let unlisted = vec![list(&b, &[1], false), range.clone()];
        assert_eq!(key_list(&case(unlisted, None)), None);
    }
}
