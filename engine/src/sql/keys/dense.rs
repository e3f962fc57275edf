//! Group-bys on keys counted in arrays indexed by key.
//!
//! A `GROUP BY` whose columns are all keys ([`KeySpace`]s) has at most as many groups as its
//! spaces have keys together, and each group's place is known without hashing: key `k` of a
//! space of `n` keys is place `k` (a null is place `n`), several columns multiply. Where that
//! product is small enough, and the input not much smaller than it, [`DenseGroups`] replaces
//! DataFusion's hash aggregation (its partial and final steps and the repartition between them)
//! by a [`DenseGroupsExec`]: every input partition adds its rows into arrays of its own, the
//! arrays are added together, and the groups that saw a row are given out in key order, in the
//! partitions (and by the same hash) the replaced aggregation would have given them.
//!
//! It takes `count(*)`, `count(x)` and `sum(x)` of integers or floats (no `DISTINCT`,
//! `FILTER` or `ORDER BY` inside); any other aggregation is left to DataFusion. 15 M people
//! into 5 M households: 0.2 s of work where hashing took 1.1 s.

use super::space::{KEY_META, KeySpace};
use crate::sql::control::control_of;
use crate::store::Store;
use arrow::array::{
    Array, ArrayRef, ArrowNativeTypeOp, ArrowPrimitiveType, AsArray, Int64Array, PrimitiveArray,
    RecordBatch, UInt32Array,
};
use arrow::buffer::NullBuffer;
use arrow::compute;
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, UInt32Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{Distribution, Partitioning, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet, Time,
};
use datafusion::physical_plan::repartition::{BatchPartitioner, RepartitionExec};
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, InputOrderMode,
    PlanProperties, SendableRecordBatchStream, StatisticsArgs, StatisticsContext,
    replace_children_if_necessary,
};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use std::fmt;
use std::sync::{Arc, Mutex};

/// The most places a dense group-by may have (its arrays hold 4–12 bytes a place).
const MAX_PLACES: usize = 1 << 25;

/// The most bytes the arrays of a dense group-by may take, every input partition's together
/// (on a machine of many cores, many partitions each hold arrays of their own).
const MAX_BYTES: usize = 1 << 30;

/// Places beyond which a group's arrays are not in the processor's caches: each row then costs
/// a read from memory for every array it adds into.
const CACHED_PLACES: usize = 1 << 20;

/// The most arrays a group-by beyond [`CACHED_PLACES`] may add into (the count of rows, and a
/// count of a nullable column): a sum takes two (the sum, and whether any value was summed),
/// and with more arrays hashing (one table, a group's values side by side) costs less.
/// Measured: 15 M people into 22.5 M places, one array: 72 ms of adding, against 2.1 s hashed;
/// 5.5 M (identity, building) groups into 22.5 M places, three arrays: 1.8 s of adding, where
/// the whole query took 2.6 s hashed.
const MAX_ARRAYS: usize = 2;

/// Places a group-by may have whatever its input: a few pages of memory.
const SMALL_PLACES: usize = 1 << 16;

/// Places a group-by may have when its input's size is not known.
const UNKNOWN_INPUT_PLACES: usize = 1 << 20;

/// The input must have at least one row for this many places (beyond [`SMALL_PLACES`]): an
/// array much larger than its input costs more to hand out than hashing would.
const PLACES_PER_ROW: usize = 8;

/// Replaces hash aggregations grouped by keys with [`DenseGroupsExec`] where it may.
#[derive(Debug)]
pub struct DenseGroups {
    store: Arc<Store>,
}

impl DenseGroups {
    /// For the queries of a store.
    pub fn new(store: Arc<Store>) -> DenseGroups {
        DenseGroups { store }
    }

    /// The plan with its aggregations replaced, from the top down: `matters` tells whether
    /// anything above relies on how `plan`'s rows are spread over its partitions (a join or an
    /// aggregation that takes them hashed on its keys, through operators that keep the spread).
    /// Where nothing does, a dense group-by hands its groups out in ranges, without hashing.
    fn walk(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        matters: bool,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(dense) = self.replace(&plan, matters)? {
            // Its input is read whole, whatever its spread.
            let input = dense.children()[0].clone();
            let walked = self.walk(input, false)?;
            return replace_children_if_necessary(dense, vec![walked]);
        }
        let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
        if children.is_empty() {
            return Ok(plan);
        }
        // Operators that spread their input's rows anew, or whose partial aggregation does
        // not care how they are spread.
        let spreads = plan.is::<RepartitionExec>()
            || plan.is::<CoalescePartitionsExec>()
            || plan.is::<SortPreservingMergeExec>()
            || plan
                .downcast_ref::<AggregateExec>()
                .is_some_and(|a| *a.mode() == AggregateMode::Partial);
        let required = plan.input_distribution_requirements().into_per_child();
        let mut walked = Vec::with_capacity(children.len());
        for (i, child) in children.into_iter().enumerate() {
            let child_matters = match required.get(i) {
                Some(Distribution::UnspecifiedDistribution) | None => matters && !spreads,
                Some(Distribution::SinglePartition) => false,
                Some(_) => true,
            };
            walked.push(self.walk(child, child_matters)?);
        }
        replace_children_if_necessary(plan, walked)
    }

    /// The dense replacement of an aggregation, if it has one.
    fn replace(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        matters: bool,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(top) = plan.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        // The aggregation that reads the rows: the top one, or the partial step below it.
        let first: &AggregateExec = match top.mode() {
            AggregateMode::Single | AggregateMode::SinglePartitioned => top,
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                let mid = top.input();
                let below = if mid.is::<RepartitionExec>() || mid.is::<CoalescePartitionsExec>() {
                    match mid.children().as_slice() {
                        [c] => *c,
                        _ => return Ok(None),
                    }
                } else {
                    mid
                };
                match below.downcast_ref::<AggregateExec>() {
                    Some(p) if *p.mode() == AggregateMode::Partial => p,
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let plain = |a: &AggregateExec| {
            a.group_expr().is_single()
                && !a.group_expr().is_empty()
                && a.limit_options().is_none()
                && *a.input_order_mode() == InputOrderMode::Linear
                && a.filter_expr().iter().all(Option::is_none)
                && a.aggr_expr().len() == top.aggr_expr().len()
        };
        if !plain(top) || !plain(first) {
            return Ok(None);
        }
        let partitioning = top.properties().output_partitioning().clone();
        match &partitioning {
            Partitioning::Hash(..) => {}
            p if p.partition_count() == 1 => {}
            _ => return Ok(None),
        }
        let input = first.input().clone();
        let in_schema = input.schema();
        let mut groups = Vec::new();
        let mut places = 1usize;
        for (e, _) in first.group_expr().expr() {
            let Some(c) = e.downcast_ref::<Column>() else {
                return Ok(None);
            };
            let field = in_schema.field(c.index());
            let Some(space) = field
                .metadata()
                .get(KEY_META)
                .and_then(|s| KeySpace::parse(s))
            else {
                return Ok(None);
            };
            if field.data_type() != &DataType::UInt32 {
                return Ok(None);
            }
            let keys = space.len(&self.store)?;
            places = match places.checked_mul(keys + 1) {
                Some(p) if p <= MAX_PLACES => p,
                _ => return Ok(None),
            };
            groups.push(GroupColumn {
                column: c.index(),
                keys: keys as u32,
                space,
            });
        }
        if places > SMALL_PLACES {
            let rows = match StatisticsContext::new()
                .compute(input.as_ref(), &StatisticsArgs::new())?
                .num_rows
            {
                Precision::Exact(n) | Precision::Inexact(n) => Some(n),
                Precision::Absent => None,
            };
            let enough = match rows {
                Some(n) => n.saturating_mul(PLACES_PER_ROW) >= places,
                None => places <= UNKNOWN_INPUT_PLACES,
            };
            if !enough {
                return Ok(None);
            }
        }
        let out = top.schema();
        let mut aggs = Vec::new();
        for (i, a) in first.aggr_expr().iter().enumerate() {
            let args = a.expressions();
            let ([arg], false, true) = (args.as_slice(), a.is_distinct(), a.order_bys().is_empty())
            else {
                return Ok(None);
            };
            let out_type = out.field(groups.len() + i).data_type();
            let kind = match (a.fun().name(), out_type) {
                ("count", DataType::Int64) => match arg.downcast_ref::<Literal>() {
                    Some(l) if !l.value().is_null() => Kind::Rows,
                    // A count of a column never null counts the rows.
                    None if !arg.nullable(&in_schema)? => Kind::Rows,
                    _ => Kind::Count,
                },
                ("sum", DataType::Int64) => Kind::SumInt,
                ("sum", DataType::Float64) => Kind::SumFloat,
                _ => return Ok(None),
            };
            if kind != Kind::Rows && !summable(&arg.data_type(&in_schema)?, kind) {
                return Ok(None);
            }
            aggs.push(Agg {
                kind,
                arg: arg.clone(),
                name: a.name().to_string(),
            });
        }
        if places > CACHED_PLACES && Sums::arrays(&aggs) > MAX_ARRAYS {
            return Ok(None);
        }
        let parts = input.output_partitioning().partition_count().max(1);
        if Sums::bytes(places, &aggs).saturating_mul(parts) > MAX_BYTES {
            return Ok(None);
        }
        let props = if matters || partitioning.partition_count() == 1 {
            top.properties().clone()
        } else {
            let n = partitioning.partition_count();
            Arc::new(
                top.properties()
                    .as_ref()
                    .clone()
                    .with_partitioning(Partitioning::UnknownPartitioning(n)),
            )
        };
        let spec = Arc::new(Spec {
            groups,
            aggs,
            places,
            schema: out,
        });
        Ok(Some(Arc::new(DenseGroupsExec::new(input, spec, props))))
    }
}

/// Whether `sum` of a column of type `t` adds as `kind` does (integers as `i64`, floats as
/// `f64`, as DataFusion's `sum` does), and `count`'s argument may be any type.
fn summable(t: &DataType, kind: Kind) -> bool {
    match kind {
        Kind::Rows | Kind::Count => true,
        Kind::SumInt => matches!(
            t,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
        ),
        Kind::SumFloat => matches!(t, DataType::Float32 | DataType::Float64),
    }
}

impl PhysicalOptimizerRule for DenseGroups {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.walk(plan, false)
    }

    fn name(&self) -> &str {
        "DenseGroups"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A group-by column: its place in the input, and its space's size.
#[derive(Debug, Clone)]
struct GroupColumn {
    column: usize,
    keys: u32,
    space: KeySpace,
}

/// What an aggregate adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `count(*)` (a count of a value never null): the group's rows.
    Rows,
    /// `count(x)`: the rows where `x` is not null.
    Count,
    /// `sum(x)` of integers, as `i64` (wrapping on overflow, as DataFusion's).
    SumInt,
    /// `sum(x)` of floats.
    SumFloat,
}

#[derive(Debug, Clone)]
struct Agg {
    kind: Kind,
    arg: Arc<dyn PhysicalExpr>,
    name: String,
}

/// The sums of one partition (or of all, once added together).
struct Sums {
    rows: Vec<u32>,
    aggs: Vec<AggSums>,
    _memory: MemoryReservation,
}

enum AggSums {
    Rows,
    Count(Vec<u32>),
    Int(Summed<Int64Type>),
    Float(Summed<Float64Type>),
}

/// A sum's values by place, and whether any value was summed there (else the sum is null).
struct Summed<T: ArrowPrimitiveType> {
    sums: Vec<T::Native>,
    seen: Vec<bool>,
}

impl<T: ArrowPrimitiveType> Summed<T> {
    fn new(places: usize) -> Summed<T> {
        Summed {
            sums: vec![T::Native::ZERO; places],
            seen: vec![false; places],
        }
    }

    /// Adds a batch's values (cast to `T`, as DataFusion's `sum` does) at their rows' places.
    fn add(&mut self, values: &ArrayRef, place: &[u32]) -> DfResult<()> {
        let v = compute::cast(values, &T::DATA_TYPE)?;
        let v = v.as_primitive::<T>();
        for (i, &p) in place.iter().enumerate() {
            if v.is_valid(i) {
                let p = p as usize;
                self.sums[p] = self.sums[p].add_wrapping(v.value(i));
                self.seen[p] = true;
            }
        }
        Ok(())
    }

    /// Adds another partition's sum at place `p`.
    fn merge_at(&mut self, other: &Summed<T>, p: usize) {
        self.sums[p] = self.sums[p].add_wrapping(other.sums[p]);
        self.seen[p] |= other.seen[p];
    }

    /// The sums of some places.
    fn column(&self, places: &[u32]) -> ArrayRef {
        Arc::new(
            places
                .iter()
                .map(|&p| self.seen[p as usize].then_some(self.sums[p as usize]))
                .collect::<PrimitiveArray<T>>(),
        )
    }
}

impl Sums {
    /// How many arrays a row adds into.
    fn arrays(aggs: &[Agg]) -> usize {
        1 + aggs
            .iter()
            .map(|a| match a.kind {
                Kind::Rows => 0,
                Kind::Count => 1,
                Kind::SumInt | Kind::SumFloat => 2,
            })
            .sum::<usize>()
    }

    /// The bytes of one partition's arrays.
    fn bytes(places: usize, aggs: &[Agg]) -> usize {
        let per_place: usize = 4 + aggs
            .iter()
            .map(|a| match a.kind {
                Kind::Rows => 0,
                Kind::Count => 4,
                Kind::SumInt | Kind::SumFloat => 9,
            })
            .sum::<usize>();
        places.saturating_mul(per_place)
    }

    fn new(places: usize, aggs: &[Agg], ctx: &TaskContext) -> DfResult<Sums> {
        let bytes = Sums::bytes(places, aggs);
        let memory = MemoryConsumer::new("DenseGroups").register(ctx.memory_pool());
        memory.try_grow(bytes)?;
        Ok(Sums {
            rows: vec![0; places],
            aggs: aggs
                .iter()
                .map(|a| match a.kind {
                    Kind::Rows => AggSums::Rows,
                    Kind::Count => AggSums::Count(vec![0; places]),
                    Kind::SumInt => AggSums::Int(Summed::new(places)),
                    Kind::SumFloat => AggSums::Float(Summed::new(places)),
                })
                .collect(),
            _memory: memory,
        })
    }

    /// Adds a batch of input rows.
    fn add(&mut self, batch: &RecordBatch, groups: &[GroupColumn], aggs: &[Agg]) -> DfResult<()> {
        let n = batch.num_rows();
        let mut place = vec![0u32; n];
        let mut stride = 1u32;
        for g in groups {
            let keys = batch
                .column(g.column)
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| internal("a dense group-by column is not keys"))?;
            for (i, p) in place.iter_mut().enumerate() {
                let k = if keys.is_null(i) {
                    g.keys
                } else {
                    let k = keys.value(i);
                    if k >= g.keys {
                        return Err(internal("a key lies outside its space"));
                    }
                    k
                };
                *p += k * stride;
            }
            stride *= g.keys + 1;
        }
        for &p in &place {
            self.rows[p as usize] += 1;
        }
        for (a, sums) in aggs.iter().zip(self.aggs.iter_mut()) {
            if let AggSums::Rows = sums {
                continue;
            }
            let values = a.arg.evaluate(batch)?.into_array(n)?;
            match sums {
                AggSums::Rows => {}
                AggSums::Count(c) => {
                    for (i, &p) in place.iter().enumerate() {
                        if values.is_valid(i) {
                            c[p as usize] += 1;
                        }
                    }
                }
                AggSums::Int(s) => s.add(&values, &place)?,
                AggSums::Float(s) => s.add(&values, &place)?,
            }
        }
        Ok(())
    }

    /// Adds another partition's sums to these, place by place where it saw rows (a place it
    /// never saw is a page of its arrays never written, and is neither read nor written here).
    fn merge(&mut self, other: Sums) {
        for (p, &r) in other.rows.iter().enumerate() {
            if r == 0 {
                continue;
            }
            self.rows[p] += r;
            for (a, b) in self.aggs.iter_mut().zip(&other.aggs) {
                match (a, b) {
                    (AggSums::Count(a), AggSums::Count(b)) => a[p] += b[p],
                    (AggSums::Int(a), AggSums::Int(b)) => a.merge_at(b, p),
                    (AggSums::Float(a), AggSums::Float(b)) => a.merge_at(b, p),
                    _ => {}
                }
            }
        }
    }
}

/// What a dense group-by reads, keeps and gives: the same for all its partitions.
#[derive(Debug)]
struct Spec {
    groups: Vec<GroupColumn>,
    aggs: Vec<Agg>,
    places: usize,
    schema: SchemaRef,
}

impl Spec {
    /// Every input partition's rows added up, on a task each, and the partitions' arrays added
    /// together.
    async fn add_up(
        self: Arc<Self>,
        input: Arc<dyn ExecutionPlan>,
        ctx: Arc<TaskContext>,
        add_time: Time,
        merge_time: Time,
    ) -> DfResult<Sums> {
        let parts = input.output_partitioning().partition_count();
        let mut tasks = Vec::with_capacity(parts);
        for p in 0..parts {
            let mut stream = input.execute(p, ctx.clone())?;
            let (spec, ctx, add_time) = (self.clone(), ctx.clone(), add_time.clone());
            tasks.push(SpawnedTask::spawn(async move {
                let mut sums = {
                    let _t = add_time.timer();
                    Sums::new(spec.places, &spec.aggs, &ctx)?
                };
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let _t = add_time.timer();
                    sums.add(&batch, &spec.groups, &spec.aggs)?;
                }
                Ok::<_, DataFusionError>(sums)
            }));
        }
        let mut total: Option<Sums> = None;
        for t in tasks {
            let sums = t
                .join()
                .await
                .map_err(|e| internal(&format!("a dense group-by failed: {e}")))??;
            let _t = merge_time.timer();
            match &mut total {
                None => total = Some(sums),
                Some(t) => t.merge(sums),
            }
        }
        match total {
            Some(s) => Ok(s),
            // An input of no partitions has no rows.
            None => Sums::new(self.places, &self.aggs, &ctx),
        }
    }

    /// A batch of groups: their keys, then their aggregates.
    fn batch(&self, sums: &Sums, places: &[u32]) -> DfResult<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        let mut stride = 1u32;
        for g in &self.groups {
            let width = g.keys + 1;
            let keys: Vec<u32> = places.iter().map(|&p| (p / stride) % width).collect();
            let nulls = keys
                .contains(&g.keys)
                .then(|| NullBuffer::from(keys.iter().map(|&k| k != g.keys).collect::<Vec<_>>()));
            columns.push(Arc::new(UInt32Array::new(keys.into(), nulls)));
            stride *= width;
        }
        let counts = |c: &[u32]| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                places.iter().map(|&p| c[p as usize] as i64),
            ))
        };
        for s in &sums.aggs {
            columns.push(match s {
                AggSums::Rows => counts(&sums.rows),
                AggSums::Count(c) => counts(c),
                AggSums::Int(v) => v.column(places),
                AggSums::Float(v) => v.column(places),
            });
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// All partitions' sums, the places that saw a row, and, where the groups go out hashed into
/// partitions, each partition's batches (hashed once, for all of them).
struct Totals {
    sums: Sums,
    used: Vec<u32>,
    hashed: Option<Vec<Mutex<Vec<RecordBatch>>>>,
}

type SharedTotals = Shared<BoxFuture<'static, Result<Arc<Totals>, Arc<DataFusionError>>>>;

/// A group-by on keys counted in arrays indexed by key (see the module's documentation).
#[derive(Debug)]
pub struct DenseGroupsExec {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<Spec>,
    props: Arc<PlanProperties>,
    /// The totals, worked out once by whichever output partition asks first.
    state: Arc<Mutex<Option<SharedTotals>>>,
    metrics: ExecutionPlanMetricsSet,
}

impl DenseGroupsExec {
    fn new(input: Arc<dyn ExecutionPlan>, spec: Arc<Spec>, props: Arc<PlanProperties>) -> Self {
        DenseGroupsExec {
            input,
            spec,
            props,
            state: Arc::new(Mutex::new(None)),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The totals' future, shared by the output partitions.
    fn totals(&self, ctx: &Arc<TaskContext>) -> DfResult<SharedTotals> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| internal("a dense group-by's state is poisoned"))?;
        if let Some(s) = state.as_ref() {
            return Ok(s.clone());
        }
        let (input, ctx, spec) = (self.input.clone(), ctx.clone(), self.spec.clone());
        // The time spent adding rows up (`add_time`), adding the partitions' arrays together
        // (`merge_time`) and hashing groups into partitions (`hash_time`), beside the time
        // handing groups out (`elapsed_compute`).
        let metric = |name| MetricBuilder::new(&self.metrics).subset_time(name, 0);
        let (add_time, merge_time) = (metric("add_time"), metric("merge_time"));
        let hash_time = metric("hash_time");
        let partitioning = self.props.output_partitioning().clone();
        let fut = async move {
            let sums = spec
                .clone()
                .add_up(input, ctx.clone(), add_time, merge_time.clone())
                .await?;
            let used: Vec<u32> = {
                let _t = merge_time.timer();
                (0..sums.rows.len() as u32)
                    .filter(|&p| sums.rows[p as usize] > 0)
                    .collect()
            };
            let hashed = match &partitioning {
                Partitioning::Hash(_, n) if *n > 1 => {
                    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); *n];
                    let mut partitioner =
                        BatchPartitioner::try_new(partitioning.clone(), hash_time, 0, 1)?;
                    let control = control_of(&ctx);
                    for chunk in used.chunks(ctx.session_config().batch_size().max(1)) {
                        if let Some(c) = &control {
                            c.check()?;
                        }
                        partitioner.partition(spec.batch(&sums, chunk)?, |i, b| {
                            parts[i].push(b);
                            Ok(())
                        })?;
                    }
                    Some(parts.into_iter().map(Mutex::new).collect())
                }
                _ => None,
            };
            Ok(Arc::new(Totals { sums, used, hashed }))
        }
        .map(|r: DfResult<Arc<Totals>>| r.map_err(Arc::new))
        .boxed()
        .shared();
        *state = Some(fut.clone());
        Ok(fut)
    }
}

impl DisplayAs for DenseGroupsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let spec = &self.spec;
        let groups: Vec<String> = spec
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                format!(
                    "{}@{} ({}, {} keys)",
                    spec.schema.field(i).name(),
                    g.column,
                    g.space,
                    g.keys
                )
            })
            .collect();
        let aggs: Vec<&str> = spec.aggs.iter().map(|a| a.name.as_str()).collect();
        write!(
            f,
            "DenseGroupsExec: gby=[{}], aggr=[{}], places={}",
            groups.join(", "),
            aggs.join(", "),
            spec.places
        )
    }
}

impl ExecutionPlan for DenseGroupsExec {
    fn name(&self) -> &str {
        "DenseGroupsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for a in &self.spec.aggs {
            if f(&a.arg)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(DenseGroupsExec::new(
                input,
                self.spec.clone(),
                self.props.clone(),
            ))),
            _ => Err(internal("DenseGroupsExec takes one input")),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let totals = self.totals(&context)?;
        let spec = self.spec.clone();
        let control = control_of(&context);
        let size = context.session_config().batch_size().max(1);
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let n = self.props.output_partitioning().partition_count().max(1);
        let stream = futures::stream::once(async move {
            let totals = totals.await.map_err(DataFusionError::Shared)?;
            let out = match &totals.hashed {
                // Hashed once for every partition: this one's batches.
                Some(parts) => {
                    let mut part = parts
                        .get(partition)
                        .ok_or_else(|| internal("a dense group-by has no such partition"))?
                        .lock()
                        .map_err(|_| internal("a dense group-by's state is poisoned"))?;
                    std::mem::take(&mut *part)
                }
                // Else a range of the groups, one a partition.
                None => {
                    let used = &totals.used;
                    let per = used.len().div_ceil(n);
                    let lo = (partition * per).min(used.len());
                    let mut out = Vec::new();
                    for chunk in used[lo..(lo + per).min(used.len())].chunks(size) {
                        if let Some(c) = &control {
                            c.check()?;
                        }
                        let _t = baseline.elapsed_compute().timer();
                        out.push(spec.batch(&totals.sums, chunk)?);
                    }
                    out
                }
            };
            for b in &out {
                baseline.record_output(b.num_rows());
            }
            baseline.done();
            Ok::<_, DataFusionError>(futures::stream::iter(out.into_iter().map(Ok)))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.spec.schema.clone(),
            stream,
        )))
    }
}

fn internal(m: &str) -> DataFusionError {
    DataFusionError::Internal(m.to_string())
}
