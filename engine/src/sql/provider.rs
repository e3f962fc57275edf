//! The loaded tables as DataFusion tables, without copying.
//!
//! [`StoreTable`] answers filters on the grid hierarchy (`grid_code`, and on `grids` also
//! `community_code`, `street_code`, `district_code`; `=`, `IN`, `LIKE 'prefix%'`, `OR`/`AND` of
//! those), on enum columns (`=`, `IN`) and on date columns (`=`, `<`, `<=`, `>`, `>=`,
//! `BETWEEN`, `IN`) from roaring bitmaps, and reports them `Exact`, so DataFusion does not
//! re-check them and a query for one street reads only that street's rows. Every table that
//! belongs to a grid but has no `grid_code` of its own (`people`, `rooms`, `households`,
//! `leases`, `access_events`, `utility_readings`, `visits`) gets one as a last column, derived
//! through its references. `EXPLAIN` shows the scan as `StoreScan` with the filters it answered
//! and the rows it will read.

use super::control::{QueryControl, SLICE, control_of};
use super::keys::listed;
use super::keys::space::{KEY_META, KeySpace};
use crate::contract::{ColumnType, TableId};
use crate::hierarchy::{self, GridPath, Level};
use crate::scope::View;
use crate::store::index::DateIndex;
use crate::store::{NONE, RowSet, Store, StoredColumn, StoredTable};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::compute;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::{DynamicFilterPhysicalExpr, Literal};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, EmissionType, apply_expression_roots,
};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use roaring::RoaringBitmap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The name of the derived grid column.
pub const GRID_CODE: &str = "grid_code";

/// Which rows of a table to read.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every row.
    All(usize),
    /// The rows of a bitmap.
    Rows(Arc<RoaringBitmap>),
}

impl Selection {
    fn len(&self) -> usize {
        match self {
            Selection::All(n) => *n,
            Selection::Rows(b) => b.len() as usize,
        }
    }
}

/// A loaded table as a DataFusion table, as one caller sees it.
#[derive(Debug, Clone)]
pub struct StoreTable {
    view: Arc<View>,
    table: TableId,
    schema: SchemaRef,
    /// Whether `grid_code` is derived (the last column).
    derived_grid: bool,
    /// For a scan on keys ([`StoreTable::keyed`]): the key space each column is read in.
    spaces: Option<Arc<Vec<Option<KeySpace>>>>,
}

impl StoreTable {
    /// The table `table` of the view's city: only the rows inside the caller's scope, personal
    /// columns masked as the caller's scope says.
    pub fn new(view: Arc<View>, table: TableId) -> StoreTable {
        let t = view.store().table(table);
        let mut fields: Vec<Field> = t
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let derived_grid = GridPath::of(table).derives_grid_code();
        if derived_grid {
            fields.push(Field::new(GRID_CODE, DataType::Utf8, true));
        }
        StoreTable {
            schema: Arc::new(Schema::new(fields)),
            view,
            table,
            derived_grid,
            spaces: None,
        }
    }

    /// The same table read on keys: every column with a key space that the caller sees
    /// unmasked is read as `UInt32` keys, its field marked with the space (see
    /// [`super::keys`]). `None` when no column has keys.
    pub fn keyed(&self) -> Option<StoreTable> {
        if self.spaces.is_some() {
            return Some(self.clone());
        }
        let stored = self.stored().columns.len();
        let spaces: Vec<Option<KeySpace>> = (0..self.schema.fields().len())
            .map(|c| {
                if c < stored && self.view.mask_of(self.table, c).is_some() {
                    return None;
                }
                KeySpace::of(self.store(), self.table, c)
            })
            .collect();
        if spaces.iter().all(Option::is_none) {
            return None;
        }
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .zip(&spaces)
            .map(|(f, s)| match s {
                Some(s) => Field::new(f.name(), DataType::UInt32, f.is_nullable()).with_metadata(
                    [(KEY_META.to_string(), s.to_string())]
                        .into_iter()
                        .collect(),
                ),
                None => f.as_ref().clone(),
            })
            .collect();
        Some(StoreTable {
            schema: Arc::new(Schema::new(fields)),
            spaces: Some(Arc::new(spaces)),
            ..self.clone()
        })
    }

    /// The key space column `col` is read in, if this scan reads it as keys.
    fn space(&self, col: usize) -> Option<&KeySpace> {
        self.spaces.as_ref()?.get(col)?.as_ref()
    }

    fn store(&self) -> &Arc<Store> {
        self.view.store()
    }

    /// The rows inside the caller's scope (`None`: every row).
    fn visible(&self) -> Option<Arc<RoaringBitmap>> {
        self.view.rows(self.table)
    }

    /// Rows the caller may see.
    fn visible_rows(&self) -> usize {
        self.view.row_count(self.table)
    }

    fn stored(&self) -> &StoredTable {
        self.store().table(self.table)
    }

    /// The grids whose code (or parent code, for a `grids` column) satisfies a test.
    fn grids_where(&self, column: &str, test: impl Fn(&str) -> bool) -> Option<RoaringBitmap> {
        let level = match column {
            GRID_CODE => Level::Grid,
            "community_code" if self.table == TableId::Grids => Level::Community,
            "street_code" if self.table == TableId::Grids => Level::Street,
            "district_code" if self.table == TableId::Grids => Level::District,
            _ => return None,
        };
        if GridPath::of(self.table) == GridPath::None {
            return None;
        }
        Some(hierarchy::grids_where(self.store(), level, test))
    }

    fn rows_of_grids(&self, grids: &RoaringBitmap) -> RoaringBitmap {
        hierarchy::rows_of_grids(self.store(), self.table, grids)
    }

    fn enum_rows(&self, col: usize) -> Option<Arc<Vec<RoaringBitmap>>> {
        let StoredColumn::Codes { codes, values } = self.stored().columns.get(col)? else {
            return None;
        };
        self.store()
            .column_indexes
            .enum_rows(self.table, col, values.len(), codes.iter())
    }

    fn date_rows(&self, col: usize) -> Option<Arc<DateIndex>> {
        let def = self.table.def().columns.get(col)?;
        if def.ty != ColumnType::Date {
            return None;
        }
        let dates = self.stored().dates(def.name).ok()?;
        self.store()
            .column_indexes
            .date_rows(self.table, col, dates.iter())
    }

    /// The rows that satisfy a filter, if the indexes answer it fully.
    pub fn index_filter(&self, e: &Expr) -> Option<RoaringBitmap> {
        match e {
            Expr::BinaryExpr(b) if b.op == Operator::And => {
                Some(self.index_filter(&b.left)? & self.index_filter(&b.right)?)
            }
            Expr::BinaryExpr(b) if b.op == Operator::Or => {
                Some(self.index_filter(&b.left)? | self.index_filter(&b.right)?)
            }
            Expr::BinaryExpr(b) => {
                let (col, op, lit) = match (column_of(&b.left), literal_of(&b.right)) {
                    (Some(c), Some(l)) => (c, b.op, l),
                    _ => match (literal_of(&b.left), column_of(&b.right)) {
                        (Some(l), Some(c)) => (c, b.op.swap()?, l),
                        _ => return None,
                    },
                };
                self.compare(col, op, &lit)
            }
            Expr::InList(l) if !l.negated => {
                let col = column_of(&l.expr)?;
                let mut out = RoaringBitmap::new();
                for item in &l.list {
                    out |= self.compare(col, Operator::Eq, &literal_of(item)?)?;
                }
                Some(out)
            }
            Expr::Between(b) if !b.negated => {
                let col = column_of(&b.expr)?;
                let lo = self.compare(col, Operator::GtEq, &literal_of(&b.low)?)?;
                let hi = self.compare(col, Operator::LtEq, &literal_of(&b.high)?)?;
                Some(lo & hi)
            }
            Expr::IsNotNull(c) => Some(self.present_rows(column_of(c)?)?.as_ref().clone()),
            Expr::IsNull(c) => {
                let mut all = RoaringBitmap::new();
                all.insert_range(0..self.stored().rows as u32);
                Some(all - self.present_rows(column_of(c)?)?.as_ref())
            }
            Expr::Like(l) if !l.negated && !l.case_insensitive && l.escape_char.is_none() => {
                let col = column_of(&l.expr)?;
                let ScalarValue::Utf8(Some(p)) = literal_of(&l.pattern)? else {
                    return None;
                };
                let prefix = p.strip_suffix('%')?;
                if prefix.contains(['%', '_']) {
                    return None;
                }
                let grids = self.grids_where(col, |c| c.starts_with(prefix))?;
                Some(self.rows_of_grids(&grids))
            }
            _ => None,
        }
    }

    fn compare(&self, col: &str, op: Operator, lit: &ScalarValue) -> Option<RoaringBitmap> {
        if let ScalarValue::Utf8(Some(v)) = lit
            && op == Operator::Eq
        {
            if let Some(grids) = self.grids_where(col, |c| c == v) {
                return Some(self.rows_of_grids(&grids));
            }
            let i = self.unmasked(col)?;
            if let StoredColumn::Codes { values, .. } = &self.stored().columns[i] {
                let by = self.enum_rows(i)?;
                let code = (0..values.len()).find(|&k| values.value(k) == v);
                return Some(code.map(|k| by[k].clone()).unwrap_or_default());
            }
            return None;
        }
        if let Some(t) = micros_of(lit) {
            return self.time_rows(col, op, t);
        }
        let d = match lit {
            ScalarValue::Date32(Some(d)) => *d,
            _ => return None,
        };
        let i = self.unmasked(col)?;
        let by = self.date_rows(i)?;
        let (lo, hi) = bounds(op, d)?;
        let column = self.stored().dates(col).ok()?;
        Some(by.range(lo, hi, column))
    }

    /// The position of a column the caller sees unmasked, the only kind an index may answer
    /// for: a masked column is compared as the caller sees it, never through the index of its
    /// real values (a birth date's index would tell the day behind the masked year).
    fn unmasked(&self, col: &str) -> Option<usize> {
        let i = self.stored().schema.index_of(col).ok()?;
        self.view.mask_of(self.table, i).is_none().then_some(i)
    }

    /// The rows where a column the caller sees unmasked holds a value.
    fn present_rows(&self, col: &str) -> Option<Arc<RoaringBitmap>> {
        let i = self.unmasked(col)?;
        let stored = self.stored().columns.get(i)?;
        self.store()
            .column_indexes
            .present_rows(self.table, i, stored)
    }

    /// The columns a filter the indexes do not answer holds a value in wherever it passes a
    /// row, and which are null in most rows: the rows it may pass are among theirs
    /// (`care_tags LIKE '%elderly_alone%'` among the 3 % of people with a tag).
    fn sparse_required(&self, f: &Expr) -> Vec<(String, Arc<RoaringBitmap>)> {
        let rows = self.stored().rows;
        let mut out: Vec<(String, Arc<RoaringBitmap>)> = Vec::new();
        for c in required_columns(f) {
            if out.iter().any(|(d, _)| *d == c) {
                continue;
            }
            if let Some(p) = self.present_rows(&c)
                && (p.len() as usize).saturating_mul(SPARSE) <= rows
            {
                out.push((c, p));
            }
        }
        out
    }

    /// The door events whose time compares with `t` (microseconds) as `op` says. Door events
    /// are held as a run sorted by building and time, then the rows added since by building in
    /// time order (see [`crate::store::event_rows`]), so the answer is a run of rows per
    /// building and a run of its added rows, found by binary search: a day of 150 M events is
    /// read without reading the rest.
    fn time_rows(&self, col: &str, op: Operator, t: i64) -> Option<RoaringBitmap> {
        use rayon::prelude::*;
        if self.table != TableId::AccessEvents || col != "ts" {
            return None;
        }
        self.unmasked(col)?;
        let ts = self.stored().timestamps(col).ok()?;
        let ix = &self.store().indexes;
        let offsets = &ix.event_offsets;
        let (_, added) = ix.event_tail.parts();
        let counted = offsets.last().copied().unwrap_or(0) + added.len();
        if ts.null_count() > 0 || counted != ts.len() {
            return None;
        }
        let v = ts.values();
        let (lo, hi) = bounds(op, t)?;
        let runs: Vec<RoaringBitmap> = (0..offsets.len().saturating_sub(1) as u32)
            .into_par_iter()
            .with_min_len(4096)
            .fold(RoaringBitmap::new, |mut acc, b| {
                let w = ix.events_of(b).within(v, lo, hi);
                if !w.sorted.is_empty() {
                    acc.insert_range(w.sorted.start as u32..w.sorted.end as u32);
                }
                acc.extend(w.added.iter().copied());
                acc
            })
            .collect();
        Some(runs.into_iter().fold(RoaringBitmap::new(), |a, b| a | b))
    }

    /// Materializes some rows of the table with the given columns. With `only`, the columns at
    /// other positions of the projection are left null (the schema must then allow it).
    fn batch(
        &self,
        schema: &SchemaRef,
        projection: &[usize],
        rows: &Rows,
        only: Option<&[usize]>,
    ) -> DfResult<RecordBatch> {
        let t = self.stored();
        let n = rows.len();
        let mut arrays = Vec::with_capacity(projection.len());
        let mut ids: Option<Vec<u32>> = None;
        for (i, &c) in projection.iter().enumerate() {
            let a = if only.is_some_and(|o| !o.contains(&i)) {
                arrow::array::new_null_array(schema.field(i).data_type(), n)
            } else if let Some(space) = self.space(c) {
                let ids = ids.get_or_insert_with(|| rows.ids());
                space.encode(self.store(), self.table, c, ids)?
            } else if c == t.columns.len() {
                // The derived grid_code, read on values: its grids' keys, decoded.
                let ids = ids.get_or_insert_with(|| rows.ids());
                let grids = KeySpace::Rows(TableId::Grids);
                let keys = grids.encode(self.store(), self.table, c, ids)?;
                grids.decode(self.store(), keys.as_primitive())?
            } else {
                let set = match rows {
                    Rows::Range(s, n) => RowSet::Range(*s, *n),
                    Rows::Take(r) => RowSet::Take(r),
                };
                let a = self.store().materialize(t, c, set).map_err(df)?;
                self.view.mask_stored(self.table, c, a)?
            };
            arrays.push(a);
        }
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }
}

/// Rows to materialize: a contiguous range, or picked rows.
enum Rows {
    Range(usize, usize),
    Take(UInt32Array),
}

impl Rows {
    /// The row numbers.
    fn ids(&self) -> Vec<u32> {
        match self {
            Rows::Range(s, n) => (*s as u32..(*s + *n) as u32).collect(),
            Rows::Take(r) => r.values().to_vec(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Rows::Range(_, n) => *n,
            Rows::Take(r) => r.len(),
        }
    }

    /// The rows a mask keeps.
    fn keep(&self, mask: &BooleanArray) -> DfResult<Rows> {
        Ok(match self {
            Rows::Range(s, _) => Rows::Take(
                mask.iter()
                    .enumerate()
                    .filter(|(_, k)| *k == Some(true))
                    .map(|(i, _)| (s + i) as u32)
                    .collect(),
            ),
            Rows::Take(r) => Rows::Take(compute::filter(r, mask)?.as_primitive().clone()),
        })
    }
}

/// The rows that pass the dynamic filters, evaluated on their own columns only (`keys`: their
/// positions in the projection; `loose`: the scan's schema with every column nullable), or
/// `None` when no filter is filled in yet.
fn dynamic_keep(
    table: &StoreTable,
    loose: &SchemaRef,
    projection: &[usize],
    keys: &[usize],
    dynamic: &[Arc<dyn PhysicalExpr>],
    rows: &Rows,
) -> DfResult<Option<BooleanArray>> {
    let live: Vec<&Arc<dyn PhysicalExpr>> = dynamic.iter().filter(|f| !is_true(f)).collect();
    if live.is_empty() || rows.len() == 0 {
        return Ok(None);
    }
    let partial = table.batch(loose, projection, rows, Some(keys))?;
    passing(live, &partial).map(Some)
}

/// The rows of a batch that pass every filter (a null counts as not passing).
fn passing<'a>(
    filters: impl IntoIterator<Item = &'a Arc<dyn PhysicalExpr>>,
    batch: &RecordBatch,
) -> DfResult<BooleanArray> {
    let n = batch.num_rows();
    let mut keep = BooleanArray::from(vec![true; n]);
    for f in filters {
        let k = f.evaluate(batch)?.into_array(n)?;
        let k = k.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal(format!("dynamic filter {f} is not boolean"))
        })?;
        keep = compute::and(&keep, k)?;
    }
    Ok(keep)
}

/// Whether a dynamic filter is not filled in yet (it still passes every row).
fn is_true(f: &Arc<dyn PhysicalExpr>) -> bool {
    current_of(f)
        .downcast_ref::<Literal>()
        .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(true)))
}

fn df(e: crate::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn column_of(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

/// A column is sparse, for [`StoreTable::sparse_required`], when at most one row in this many
/// holds a value: reading those rows from a bitmap then costs less than reading every row.
const SPARSE: usize = 4;

/// The columns a filter needs a value in to pass a row: it is null or false wherever one of
/// them is null. Comparisons, `LIKE`, `IN`, `BETWEEN` of a column (negated or not), `IS NOT
/// NULL`; both sides of an `AND`; what both sides of an `OR` need.
fn required_columns(e: &Expr) -> Vec<String> {
    use Operator::*;
    let col = |x: &Expr| column_of(x).map(str::to_string).into_iter();
    match e {
        Expr::BinaryExpr(b) if b.op == And => {
            let mut v = required_columns(&b.left);
            v.extend(required_columns(&b.right));
            v
        }
        Expr::BinaryExpr(b) if b.op == Or => {
            let right = required_columns(&b.right);
            required_columns(&b.left)
                .into_iter()
                .filter(|c| right.contains(c))
                .collect()
        }
        Expr::BinaryExpr(b)
            if matches!(
                b.op,
                Eq | NotEq
                    | Lt
                    | LtEq
                    | Gt
                    | GtEq
                    | LikeMatch
                    | ILikeMatch
                    | NotLikeMatch
                    | NotILikeMatch
                    | RegexMatch
                    | RegexIMatch
                    | RegexNotMatch
                    | RegexNotIMatch
            ) =>
        {
            col(&b.left).chain(col(&b.right)).collect()
        }
        Expr::Like(l) | Expr::SimilarTo(l) => col(&l.expr).collect(),
        Expr::InList(l) => col(&l.expr).collect(),
        Expr::Between(b) => col(&b.expr).collect(),
        Expr::IsNotNull(x) => col(x).collect(),
        _ => Vec::new(),
    }
}

/// The bounds a comparison of a column with `v` sets on the column's values.
fn bounds<T: Copy>(op: Operator, v: T) -> Option<(std::ops::Bound<T>, std::ops::Bound<T>)> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    Some(match op {
        Operator::Eq => (Included(v), Included(v)),
        Operator::Lt => (Unbounded, Excluded(v)),
        Operator::LtEq => (Unbounded, Included(v)),
        Operator::Gt => (Excluded(v), Unbounded),
        Operator::GtEq => (Included(v), Unbounded),
        _ => return None,
    })
}

/// A timestamp literal as microseconds since the epoch, when it is a whole number of them.
fn micros_of(lit: &ScalarValue) -> Option<i64> {
    match lit {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) if v % 1_000 == 0 => Some(v / 1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        _ => None,
    }
}

fn literal_of(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s) => {
                Some(ScalarValue::Utf8(s.clone()))
            }
            ScalarValue::Dictionary(_, inner) => literal_of(&Expr::Literal(*inner.clone(), None)),
            v => Some(v.clone()),
        },
        Expr::Cast(c) => {
            let v = literal_of(&c.expr)?;
            if c.field.data_type() == &DataType::Date32 {
                if let ScalarValue::Utf8(Some(s)) = &v {
                    return crate::time::parse_date(s)
                        .ok()
                        .map(|d| ScalarValue::Date32(Some(d)));
                }
                return v.cast_to(&DataType::Date32).ok();
            }
            if matches!(c.field.data_type(), DataType::Dictionary(..)) {
                return Some(v);
            }
            None
        }
        _ => None,
    }
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.index_filter(f).is_some() {
                    TableProviderFilterPushDown::Exact
                } else if !self.sparse_required(f).is_empty() {
                    // The scan reads only the rows holding the values the filter needs; the
                    // filter itself is still applied above it.
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(
            Statistics::new_unknown(&self.schema)
                .with_num_rows(Precision::Exact(self.visible_rows())),
        )
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (mut selection, answered) = self.select(filters);
        if let Some(l) = limit {
            selection = match selection {
                Selection::All(n) => Selection::All(n.min(l)),
                Selection::Rows(r) => Selection::Rows(Arc::new(r.iter().take(l).collect())),
            };
        }
        let projection: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&projection)?);
        let partitions = state.config().target_partitions().max(1);
        let batch_size = state.config().batch_size().max(1);
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(StoreScan {
            table: Arc::new(self.clone()),
            schema,
            projection,
            selection,
            answered,
            partitions,
            batch_size,
            props: Arc::new(props),
            dynamic: Vec::new(),
            by_value: Arc::default(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

impl StoreTable {
    /// The rows inside the scope that satisfy the filters the indexes answer, and those filters.
    fn select(&self, filters: &[Expr]) -> (Selection, Vec<String>) {
        let mut answered = Vec::new();
        let mut rows: Option<RoaringBitmap> = None;
        for f in filters {
            if let Some(b) = self.index_filter(f) {
                answered.push(f.to_string());
                rows = Some(match rows {
                    Some(r) => r & b,
                    None => b,
                });
            } else {
                for (c, present) in self.sparse_required(f) {
                    let text = format!("{c} IS NOT NULL");
                    if !answered.contains(&text) {
                        answered.push(text);
                        rows = Some(match rows {
                            Some(r) => r & present.as_ref(),
                            None => present.as_ref().clone(),
                        });
                    }
                }
            }
        }
        // A filter every row passes (`x IS NOT NULL` of a column without nulls, which DataFusion
        // adds under a join on it) leaves the rows read in runs, as without it.
        let rows = rows.filter(|r| r.len() < self.stored().rows as u64);
        let selection = match (rows, self.visible()) {
            (Some(r), Some(v)) => Selection::Rows(Arc::new(r & v.as_ref())),
            (Some(r), None) => Selection::Rows(Arc::new(r)),
            (None, Some(v)) => Selection::Rows(v),
            (None, None) => Selection::All(self.stored().rows),
        };
        (selection, answered)
    }

    /// How many rows a scan with these filters reads (filters the indexes do not answer are
    /// not counted).
    pub fn rows_where(&self, filters: &[Expr]) -> usize {
        self.select(filters).0.len()
    }

    /// An upper bound on the distinct values of a column over the whole table, when one is
    /// known below the row count: a reference has at most as many as the table it references,
    /// an enum as many as its values. `None` for the table's own key and anything else.
    pub fn distinct_bound(&self, column: &str) -> Option<usize> {
        let grids = || self.store().table(TableId::Grids).rows;
        if column == GRID_CODE && self.derived_grid {
            return Some(grids());
        }
        let def = self.table.def();
        if def.key == [column] {
            return None;
        }
        let i = def.position(column)?;
        if let Some(t) = def.columns[i].references {
            return Some(self.store().table(t).rows);
        }
        match self.stored().columns.get(i)? {
            StoredColumn::Codes { values, .. } => Some(values.len()),
            _ => None,
        }
    }
}

/// Reads selected rows of a stored table.
///
/// It also takes the dynamic filters a hash join pushes to its probe side (the join keys seen on
/// the build side, known once the build side is read): rows they rule out are dropped as they
/// are read, so a join against a few buildings does not carry every room of the city upwards.
/// The join still checks every row, so the filters only ever save work.
#[derive(Debug, Clone)]
pub struct StoreScan {
    table: Arc<StoreTable>,
    schema: SchemaRef,
    projection: Vec<usize>,
    selection: Selection,
    answered: Vec<String>,
    partitions: usize,
    batch_size: usize,
    props: Arc<PlanProperties>,
    dynamic: Vec<Arc<dyn PhysicalExpr>>,
    /// The dynamic filter evaluated once per value of a pooled column, shared by partitions.
    by_value: Arc<Mutex<Option<ByValue>>>,
    metrics: ExecutionPlanMetricsSet,
}

impl StoreScan {
    /// The row ranges (start, len) of a partition within the selection's positions.
    fn part(&self, p: usize) -> (usize, usize) {
        let n = self.selection.len();
        let per = n.div_ceil(self.partitions);
        let start = (p * per).min(n);
        (start, (start + per).min(n) - start)
    }
}

impl DisplayAs for StoreScan {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let cols: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "StoreScan: table={}, rows={} of {}",
            self.table.table.name(),
            self.selection.len(),
            self.table.visible_rows()
        )?;
        if let Some(scope) = self.table.view.scope().code() {
            write!(f, ", scope={scope}")?;
        }
        if !self.answered.is_empty() {
            write!(f, ", index=[{}]", self.answered.join(", "))?;
        }
        write!(f, ", projection=[{}]", cols.join(", "))?;
        let keys: Vec<&str> = self
            .projection
            .iter()
            .zip(&cols)
            .filter(|(c, _)| self.table.space(**c).is_some())
            .map(|(_, n)| *n)
            .collect();
        if !keys.is_empty() {
            write!(f, ", keys=[{}]", keys.join(", "))?;
        }
        if !self.dynamic.is_empty() {
            let d: Vec<String> = self.dynamic.iter().map(|e| e.to_string()).collect();
            write!(f, ", dynamic=[{}]", d.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StoreScan {
    fn name(&self) -> &str {
        "StoreScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        // The dynamic filters taken must be visible: a hash join fills its filter in only when
        // it finds a consumer of it below its probe side.
        apply_expression_roots(&self.dynamic, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Arc<Statistics>> {
        let n = match partition {
            Some(p) => self.part(p).1,
            None => self.selection.len(),
        };
        // Dynamic filters drop rows at run time: the count is then an upper bound.
        let n = if self.dynamic.is_empty() {
            Precision::Exact(n)
        } else {
            Precision::Inexact(n)
        };
        Ok(Arc::new(
            Statistics::new_unknown(&self.schema).with_num_rows(n),
        ))
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DfResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        // Only dynamic filters are taken, and reported as not pushed down: whoever made them
        // keeps applying its own condition, so correctness never depends on this scan.
        let taken: Vec<Arc<dyn PhysicalExpr>> = child_pushdown_result
            .parent_filters
            .iter()
            .filter(|f| f.filter.is::<DynamicFilterPhysicalExpr>())
            .map(|f| f.filter.clone())
            .collect();
        let filters = vec![PushedDown::No; child_pushdown_result.parent_filters.len()];
        let updated_node = (!taken.is_empty()).then(|| {
            let mut node = self.clone();
            node.dynamic.extend(taken);
            Arc::new(node) as Arc<dyn ExecutionPlan>
        });
        Ok(FilterPushdownPropagation {
            filters,
            updated_node,
        })
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let control = control_of(&context);
        let (start, len) = self.part(partition);
        let table = self.table.clone();
        let schema = self.schema.clone();
        let projection = self.projection.clone();
        let size = self.batch_size;
        let selection = self.selection.clone();
        // For a bitmap selection, the rows of this partition, in order.
        let picked: Option<Arc<Vec<u32>>> = match &selection {
            Selection::All(_) => None,
            Selection::Rows(b) => Some(Arc::new(b.iter().skip(start).take(len).collect())),
        };
        let dynamic = self.dynamic.clone();
        // The dynamic filters are evaluated on the columns they read first; the other columns
        // are materialized only for the rows they keep.
        let keys: Vec<usize> = {
            let mut k: Vec<usize> = dynamic
                .iter()
                .flat_map(|f| collect_columns(f).into_iter().map(|c| c.index()))
                .collect();
            k.sort_unstable();
            k.dedup();
            k
        };
        let loose = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let batches = PartitionReader {
            control,
            table,
            schema: schema.clone(),
            loose,
            projection,
            keys,
            dynamic,
            by_value: self.by_value.clone(),
            total: selection.len(),
            start,
            len,
            picked,
            kept: None,
            decided: false,
            since_yield: Instant::now(),
            pos: 0,
            size,
            baseline: BaselineMetrics::new(&self.metrics, partition),
            dropped: MetricBuilder::new(&self.metrics).counter("dynamic_filtered_rows", partition),
            tested: 0,
            kept_rows: 0,
            given_up: MetricBuilder::new(&self.metrics)
                .counter("dynamic_filters_given_up", partition),
            from_keys: MetricBuilder::new(&self.metrics).counter("rows_from_keys", partition),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// A dynamic filter evaluated once for every value of a column's pool: which values pass, as
/// of the filters' state `filters`.
#[derive(Debug)]
struct ByValue {
    filters: Vec<Arc<dyn PhysicalExpr>>,
    accepted: Arc<BooleanArray>,
}

/// The state a filter stands in now.
fn current_of(f: &Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
    f.downcast_ref::<DynamicFilterPhysicalExpr>()
        .and_then(|d| d.current().ok())
        .unwrap_or_else(|| f.clone())
}

/// Which of some pooled values pass the filters: `values` stands at position `key` of the
/// scan's output (`loose`, every column nullable), the other columns null.
fn test_values(
    loose: &SchemaRef,
    filters: &[Arc<dyn PhysicalExpr>],
    key: usize,
    values: ArrayRef,
) -> DfResult<BooleanArray> {
    let n = values.len();
    let arrays = (0..loose.fields().len())
        .map(|i| {
            if i == key {
                values.clone()
            } else {
                arrow::array::new_null_array(loose.field(i).data_type(), n)
            }
        })
        .collect();
    passing(filters, &RecordBatch::try_new(loose.clone(), arrays)?)
}

/// The rows of a partition that pass the dynamic filters, decided by value.
enum Passing {
    /// Every row: the filters need not be evaluated.
    All,
    /// These rows.
    Rows(Vec<u32>),
}

/// Reads one partition of a scan, batch by batch.
///
/// When the dynamic filters read one pooled text column (a reference such as `building_id`)
/// and the pool is smaller than the scan, they are evaluated once per pooled value rather than
/// once per row, and the partition's passing rows are found from the column's keys before
/// anything is materialized: 104 M door events are narrowed to one street's by testing its
/// 0.6 M buildings.
struct PartitionReader {
    /// The query's control, checked before each batch.
    control: Option<Arc<QueryControl>>,
    table: Arc<StoreTable>,
    schema: SchemaRef,
    loose: SchemaRef,
    projection: Vec<usize>,
    keys: Vec<usize>,
    dynamic: Vec<Arc<dyn PhysicalExpr>>,
    by_value: Arc<Mutex<Option<ByValue>>>,
    /// Rows the whole scan reads.
    total: usize,
    start: usize,
    len: usize,
    picked: Option<Arc<Vec<u32>>>,
    /// The partition's rows that pass, when decided by value.
    kept: Option<Vec<u32>>,
    decided: bool,
    /// When the partition last gave its thread back (see [`Read::Yield`]).
    since_yield: Instant,
    pos: usize,
    size: usize,
    baseline: BaselineMetrics,
    dropped: datafusion::physical_plan::metrics::Count,
    /// Rows tested by the dynamic filters one by one, and how many of them they kept.
    tested: usize,
    kept_rows: usize,
    /// Partitions whose dynamic filters were given up as keeping most rows.
    given_up: datafusion::physical_plan::metrics::Count,
    /// Rows found from the keys a dynamic filter lists.
    from_keys: datafusion::physical_plan::metrics::Count,
}

/// Rows a partition tests by its dynamic filters before it judges them: filters that keep more
/// than half of them (a join whose other side holds most keys) cost more, tested row by row,
/// than the rows they drop save the join above, which checks every row itself; they are then
/// no longer tested. Only a filter that is complete is given up (a join's, once its side is
/// built), never one still narrowing (a `LIMIT`'s).
const JUDGE_ROWS: usize = 1 << 13;

/// Rows found from the keys a dynamic filter lists may be at most this share of the rows a
/// scan reads (1/8): more, and testing every row costs less than sorting them.
const LISTED_SHARE: usize = 8;

/// Whether a dynamic filter is complete (will not change again).
fn complete(f: &Arc<dyn PhysicalExpr>) -> bool {
    use futures::FutureExt;
    f.downcast_ref::<DynamicFilterPhysicalExpr>()
        .is_none_or(|d| d.wait_complete().now_or_never().is_some())
}

impl PartitionReader {
    /// The partition's rows that pass the dynamic filters, decided by value where that applies.
    fn by_value_rows(&self) -> DfResult<Option<Passing>> {
        let &[key] = self.keys.as_slice() else {
            return Ok(None);
        };
        let c = self.projection[key];
        let t = self.table.stored();
        let Some(StoredColumn::Keys { keys: codes, pool }) = t.columns.get(c) else {
            return Ok(None);
        };
        if self.table.view.mask_of(self.table.table, c).is_some() {
            // Tested as the caller sees it, row by row.
            return Ok(None);
        }
        let live: Vec<&Arc<dyn PhysicalExpr>> =
            self.dynamic.iter().filter(|f| !is_true(f)).collect();
        if live.is_empty() {
            return Ok(None);
        }
        let values = self.table.store().pool(pool).map_err(df)?;
        // Read on keys, the filters test the keys themselves: key k stands at position k.
        let values: ArrayRef = match self.table.space(c) {
            Some(_) => Arc::new(UInt32Array::from_iter_values(0..values.len() as u32)),
            None => values,
        };
        if values.len() >= self.total {
            return Ok(None);
        }
        let currents: Vec<Arc<dyn PhysicalExpr>> = live.iter().map(|f| current_of(f)).collect();
        let accepted = {
            let mut cache = self
                .by_value
                .lock()
                .map_err(|_| DataFusionError::Internal("scan cache poisoned".into()))?;
            match cache.as_ref() {
                Some(b)
                    if b.filters.len() == currents.len()
                        && b.filters
                            .iter()
                            .zip(&currents)
                            .all(|(x, y)| Arc::ptr_eq(x, y)) =>
                {
                    b.accepted.clone()
                }
                _ => {
                    // The pool in slices, tested side by side on every core.
                    use rayon::prelude::*;
                    let n = values.len();
                    let step = n.div_ceil(rayon::current_num_threads() * 4).max(1024);
                    let loose = &self.loose;
                    let parts = (0..n.div_ceil(step))
                        .into_par_iter()
                        .map(|p| {
                            let (lo, len) = (p * step, step.min(n - p * step));
                            test_values(loose, &currents, key, values.slice(lo, len))
                        })
                        .collect::<DfResult<Vec<BooleanArray>>>()?;
                    let parts: Vec<&dyn Array> = parts.iter().map(|a| a as &dyn Array).collect();
                    let accepted = Arc::new(if parts.is_empty() {
                        BooleanArray::from(Vec::<bool>::new())
                    } else {
                        compute::concat(&parts)?.as_boolean().clone()
                    });
                    *cache = Some(ByValue {
                        filters: currents,
                        accepted: accepted.clone(),
                    });
                    accepted
                }
            }
        };
        if accepted.null_count() == 0 && accepted.true_count() == accepted.len() {
            // Every value passes: nothing to drop (a null key never joins anyway, and the join
            // checks every row itself).
            return Ok(Some(Passing::All));
        }
        let codes = codes.values();
        let pass = |r: u32| {
            let k = codes[r as usize];
            k != NONE && accepted.is_valid(k as usize) && accepted.value(k as usize)
        };
        Ok(Some(Passing::Rows(match &self.picked {
            Some(p) => p.iter().copied().filter(|&r| pass(r)).collect(),
            None => (self.start as u32..(self.start + self.len) as u32)
                .filter(|&r| pass(r))
                .collect(),
        })))
    }

    /// The partition's rows holding one of the keys a complete dynamic filter lists, found
    /// from the keys ([`listed`]), where a filter lists keys of a column the scan reads as keys.
    fn listed_rows(&self) -> Option<Vec<u32>> {
        for f in self.dynamic.iter().filter(|f| !is_true(f) && complete(f)) {
            let Some((col, keys)) = listed::key_list(&current_of(f)) else {
                continue;
            };
            let field = self.schema.fields().get(col)?;
            let Some(space) = field
                .metadata()
                .get(KEY_META)
                .and_then(|m| KeySpace::parse(m))
            else {
                continue;
            };
            let c = *self.projection.get(col)?;
            let t = &self.table;
            // Found from the keys only where they are few of the rows read.
            let most = self.total / LISTED_SHARE;
            // Each partition sorts only its own rows.
            let (lo, hi) = (self.start as u32, (self.start + self.len) as u32);
            let picked = self.picked.as_deref();
            let mine = |r: u32| match picked {
                Some(p) => p.binary_search(&r).is_ok(),
                None => (lo..hi).contains(&r),
            };
            match listed::rows_of_keys(t.store(), t.table, c, &space, &keys, most, mine) {
                Some(rows) => return Some(rows),
                None => continue,
            }
        }
        None
    }

    /// The next rows to read, or `None` at the end.
    fn next_rows(&mut self) -> DfResult<Option<Rows>> {
        let rows = if let Some(kept) = &self.kept {
            if self.pos >= kept.len() {
                return Ok(None);
            }
            let hi = (self.pos + self.size).min(kept.len());
            let rows = Rows::Take(UInt32Array::from(kept[self.pos..hi].to_vec()));
            self.pos = hi;
            rows
        } else {
            if self.pos >= self.len {
                return Ok(None);
            }
            let (lo, hi) = (self.pos, (self.pos + self.size).min(self.len));
            self.pos = hi;
            match &self.picked {
                None => Rows::Range(self.start + lo, hi - lo),
                Some(p) => Rows::Take(UInt32Array::from(p[lo..hi].to_vec())),
            }
        };
        if self.dynamic.is_empty() {
            return Ok(Some(rows));
        }
        let keep = dynamic_keep(
            &self.table,
            &self.loose,
            &self.projection,
            &self.keys,
            &self.dynamic,
            &rows,
        )?;
        Ok(Some(match keep {
            Some(keep) => {
                let kept = keep.true_count();
                self.judge(rows.len(), kept);
                if kept == rows.len() {
                    rows
                } else {
                    self.dropped.add(rows.len() - kept);
                    rows.keep(&keep)?
                }
            }
            None => rows,
        }))
    }

    /// Counts what the dynamic filters kept of some rows tested one by one, and stops testing
    /// once they are seen to keep most rows (see [`JUDGE_ROWS`]).
    fn judge(&mut self, tested: usize, kept: usize) {
        self.tested += tested;
        self.kept_rows += kept;
        if self.tested >= JUDGE_ROWS
            && self.kept_rows * 2 > self.tested
            && self.dynamic.iter().all(complete)
        {
            self.dynamic.clear();
            self.given_up.add(1);
        }
    }

    fn next_batch(&mut self) -> DfResult<Read> {
        if let Some(c) = &self.control {
            c.check()?;
        }
        let elapsed = self.baseline.elapsed_compute().clone();
        let _timer = elapsed.timer();
        if !self.decided {
            self.decided = true;
            if let Some(listed) = self.listed_rows() {
                // Still tested by every filter, the rows found from the keys are few.
                self.dropped.add(self.len - listed.len());
                self.from_keys.add(listed.len());
                self.kept = Some(listed);
            } else {
                match self.by_value_rows()? {
                    Some(Passing::Rows(kept)) => {
                        self.dropped.add(self.len - kept.len());
                        self.kept = Some(kept);
                        self.dynamic.clear();
                    }
                    Some(Passing::All) => self.dynamic.clear(),
                    None => {}
                }
            }
        }
        while let Some(rows) = self.next_rows()? {
            if rows.len() == 0 {
                if let Some(c) = &self.control {
                    c.check()?;
                }
                if self.since_yield.elapsed() >= SLICE {
                    return Ok(Read::Yield);
                }
                continue;
            }
            let batch = self
                .table
                .batch(&self.schema, &self.projection, &rows, None)?;
            self.baseline.record_output(batch.num_rows());
            return Ok(Read::Batch(batch));
        }
        Ok(Read::End)
    }
}

/// What a partition's next read gives.
enum Read {
    /// Rows that passed.
    Batch(RecordBatch),
    /// Nothing yet: a [`SLICE`] went by reading rows that no filter kept.
    Yield,
    /// The partition is read.
    End,
}

/// The partition's batches, giving the thread back at least every [`SLICE`]. A scan whose
/// dynamic filter keeps few rows (a join's other side of a few thousand keys) would otherwise
/// read its whole partition in one poll, and the query's other partition, woken meanwhile on
/// the same thread, could not be taken by an idle one: the work of two threads done by one.
impl futures::Stream for PartitionReader {
    type Item = DfResult<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.since_yield.elapsed() < SLICE {
            match self.next_batch() {
                Ok(Read::Batch(b)) => return Poll::Ready(Some(Ok(b))),
                Ok(Read::End) => return Poll::Ready(None),
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Read::Yield) => {}
            }
        }
        // Woken at once: the scheduler puts the task behind the others, where an idle thread
        // may take it.
        self.since_yield = Instant::now();
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
