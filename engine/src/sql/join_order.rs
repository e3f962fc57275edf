//! Join order from the store's exact row counts.
//!
//! DataFusion joins tables in the order the SQL text names them. An analyst writes
//! `people JOIN rooms JOIN buildings WHERE b.grid_code LIKE '440104%'`, and the city's 12 M people
//! are joined to its 5.6 M rooms before the district's 46 K buildings cut both down. [`JoinOrder`]
//! reorders each run of inner equi-joins greedily, smallest estimated result first:
//!
//! - a store table's rows are counted exactly from its indexes (the filters it answers);
//! - a join's result is estimated as `|A| · |B| / max(ndv(A.key), ndv(B.key))`, where a table's
//!   own key has as many values as rows, a reference at most as many as the table it references;
//! - the smaller input of each join is put on the build (left) side.
//!
//! The result is the same relation (inner joins commute); a projection puts the columns back in
//! the order the query produced them. A run is left alone when it has fewer than three inputs,
//! an input whose size is unknown, or inputs not all connected by join keys.

use super::provider::StoreTable;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, NullEquality};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Expr, Join, JoinConstraint, JoinType, LogicalPlan, Projection, TableScan,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use std::any::Any;
use std::sync::Arc;

/// The optimizer rule; see the module documentation.
#[derive(Debug, Default)]
pub struct JoinOrder;

impl OptimizerRule for JoinOrder {
    fn name(&self) -> &str {
        "gridlens_join_order"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        reorder(plan)
    }
}

/// Whether a node is an inner equi-join on plain columns, part of a run that may be reordered.
fn reorderable(plan: &LogicalPlan) -> Option<&Join> {
    match plan {
        LogicalPlan::Join(j)
            if j.join_type == JoinType::Inner
                && j.filter.is_none()
                && j.join_constraint == JoinConstraint::On
                && j.null_equality == NullEquality::NullEqualsNothing
                && !j.null_aware
                && !j.on.is_empty()
                && j.on
                    .iter()
                    .all(|(l, r)| matches!((l, r), (Expr::Column(_), Expr::Column(_)))) =>
        {
            Some(j)
        }
        _ => None,
    }
}

/// The join under a node of a run: the node itself, or the join under a projection that only
/// picks columns (the columns it drops are dropped again above the reordered run).
fn through(plan: &LogicalPlan) -> Option<&Join> {
    match plan {
        LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
            reorderable(&p.input)
        }
        _ => reorderable(plan),
    }
}

/// One input of a run of joins.
struct Input {
    plan: LogicalPlan,
    /// Estimated rows.
    rows: f64,
    /// The store table underneath, if any, to bound the distinct values of a column.
    table: Option<Arc<dyn TableProvider>>,
}

impl Input {
    /// An upper bound on the distinct values of a column, within this input's rows.
    fn distinct(&self, column: &Column) -> f64 {
        let bound = self
            .table
            .as_ref()
            .and_then(|t| (t.as_ref() as &dyn Any).downcast_ref::<StoreTable>())
            .and_then(|t| t.distinct_bound(&column.name));
        match bound {
            Some(b) => (b as f64).min(self.rows),
            None => self.rows,
        }
        .max(1.0)
    }
}

/// A join key between two inputs.
struct Edge {
    a: usize,
    a_col: Column,
    b: usize,
    b_col: Column,
}

impl Edge {
    /// If the key joins input `x` to one already joined (`inside`): that input, its column and
    /// `x`'s column.
    fn toward(&self, x: usize, inside: &[bool]) -> Option<(usize, &Column, &Column)> {
        if self.b == x && inside[self.a] {
            Some((self.a, &self.a_col, &self.b_col))
        } else if self.a == x && inside[self.b] {
            Some((self.b, &self.b_col, &self.a_col))
        } else {
            None
        }
    }
}

fn reorder(plan: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
    if reorderable(&plan).is_none() {
        return plan.map_children(reorder);
    }
    let mut plans = Vec::new();
    let mut keys = Vec::new();
    collect(&plan, &mut plans, &mut keys);
    let mut changed = false;
    let mut inputs = Vec::with_capacity(plans.len());
    let several = plans.len() >= 3;
    for p in plans {
        let t = reorder(p)?;
        changed |= t.transformed;
        // Sizes only where there is an order to choose (fewer inputs: the build side is
        // DataFusion's choice).
        let (rows, table) = several
            .then(|| estimate(&t.data))
            .flatten()
            .unwrap_or((f64::NAN, None));
        inputs.push(Input {
            plan: t.data,
            rows,
            table,
        });
    }
    let chosen = inputs
        .iter()
        .all(|i| i.rows.is_finite())
        .then(|| edges(&inputs, &keys))
        .flatten()
        .and_then(|e| greedy(&inputs, &e).map(|order| (order, e)))
        .map(|(order, e)| {
            let left = build_sides(&inputs, &order);
            (order, e, left)
        })
        .filter(|(order, _, left)| order_shape(order, left) != shape(&plan, &mut 0));
    let Some((order, edges, left)) = chosen else {
        // Keep the order (none chosen, or already this one: a later pass of the optimizer over
        // the rewritten plan); only the inputs may have changed.
        if !changed {
            return Ok(Transformed::no(plan));
        }
        let mut inputs = inputs.into_iter().map(|i| i.plan);
        return Ok(Transformed::yes(replace_inputs(plan, &mut inputs)?));
    };
    let joined = build(inputs, &edges, &order, &left)?;
    if joined.schema().columns() == plan.schema().columns() {
        return Ok(Transformed::yes(joined));
    }
    let exprs = plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    Ok(Transformed::yes(LogicalPlan::Projection(
        Projection::try_new(exprs, Arc::new(joined))?,
    )))
}

/// The inputs and keys of the run of joins rooted at `plan`, inputs left to right.
fn collect(plan: &LogicalPlan, inputs: &mut Vec<LogicalPlan>, keys: &mut Vec<(Column, Column)>) {
    match through(plan) {
        Some(j) => {
            collect(&j.left, inputs, keys);
            collect(&j.right, inputs, keys);
            for (l, r) in &j.on {
                if let (Expr::Column(l), Expr::Column(r)) = (l, r) {
                    keys.push((l.clone(), r.clone()));
                }
            }
        }
        None => inputs.push(plan.clone()),
    }
}

/// The same run of joins with its inputs replaced, in order.
fn replace_inputs(
    plan: LogicalPlan,
    inputs: &mut impl Iterator<Item = LogicalPlan>,
) -> DfResult<LogicalPlan> {
    if through(&plan).is_none() {
        return Ok(inputs.next().unwrap_or(plan));
    }
    plan.map_children(|c| replace_inputs(c, inputs).map(Transformed::yes))
        .map(|t| t.data)
}

/// The shape of a run of joins: its inputs numbered left to right, each join in brackets with
/// its build side first.
fn shape(plan: &LogicalPlan, next: &mut usize) -> String {
    match through(plan) {
        Some(j) => {
            let l = shape(&j.left, next);
            let r = shape(&j.right, next);
            format!("({l} {r})")
        }
        None => {
            *next += 1;
            (*next - 1).to_string()
        }
    }
}

/// The input each key column belongs to; `None` if one belongs to none or to several.
fn edges(inputs: &[Input], keys: &[(Column, Column)]) -> Option<Vec<Edge>> {
    let owner = |c: &Column| {
        let mut owners = inputs
            .iter()
            .enumerate()
            .filter(|(_, i)| i.plan.schema().has_column(c));
        match (owners.next(), owners.next()) {
            (Some((k, _)), None) => Some(k),
            _ => None,
        }
    };
    keys.iter()
        .map(|(l, r)| {
            let (a, b) = (owner(l)?, owner(r)?);
            (a != b).then(|| Edge {
                a,
                a_col: l.clone(),
                b,
                b_col: r.clone(),
            })
        })
        .collect()
}

/// The estimated size of joining a set of inputs (`rows`, membership `inside`) with input `x`,
/// or `None` if no key connects them.
fn join_size(
    inputs: &[Input],
    edges: &[Edge],
    inside: &[bool],
    rows: f64,
    x: usize,
) -> Option<f64> {
    let mut denominator: Option<f64> = None;
    for (s, s_col, x_col) in edges.iter().filter_map(|e| e.toward(x, inside)) {
        let d = inputs[s]
            .distinct(s_col)
            .min(rows)
            .max(inputs[x].distinct(x_col));
        denominator = Some(denominator.map_or(d, |m: f64| m.max(d)));
    }
    denominator.map(|d| rows * inputs[x].rows / d.max(1.0))
}

/// The order in which to join: each step adds the input giving the smallest estimated result.
/// Each entry is an input and the estimated size of everything joined so far.
fn greedy(inputs: &[Input], edges: &[Edge]) -> Option<Vec<(usize, f64)>> {
    let n = inputs.len();
    // The first pair: the smallest estimated join.
    let mut best: Option<(f64, usize, usize)> = None;
    for e in edges {
        let mut inside = vec![false; n];
        inside[e.a] = true;
        let size = join_size(inputs, edges, &inside, inputs[e.a].rows, e.b)?;
        if best.is_none_or(|(b, _, _)| size < b) {
            best = Some((size, e.a, e.b));
        }
    }
    let (size, a, b) = best?;
    let mut inside = vec![false; n];
    inside[a] = true;
    inside[b] = true;
    let mut order = vec![(a, inputs[a].rows), (b, size)];
    let mut rows = size;
    while order.len() < n {
        let next = (0..n)
            .filter(|&x| !inside[x])
            .filter_map(|x| join_size(inputs, edges, &inside, rows, x).map(|s| (s, x)))
            .min_by(|p, q| p.0.total_cmp(&q.0))?;
        inside[next.1] = true;
        rows = next.0;
        order.push((next.1, rows));
    }
    Some(order)
}

/// For each step of `order` after the first, whether the added input goes on the build (left)
/// side: the smaller side of each join is built.
fn build_sides(inputs: &[Input], order: &[(usize, f64)]) -> Vec<bool> {
    let mut acc = inputs[order[0].0].rows;
    order[1..]
        .iter()
        .map(|&(x, size)| {
            let left = inputs[x].rows < acc;
            acc = size;
            left
        })
        .collect()
}

/// The shape (see [`shape`]) of the joins `build` makes.
fn order_shape(order: &[(usize, f64)], left: &[bool]) -> String {
    let mut acc = order[0].0.to_string();
    for (&(x, _), &l) in order[1..].iter().zip(left) {
        acc = if l {
            format!("({x} {acc})")
        } else {
            format!("({acc} {x})")
        };
    }
    acc
}

/// The joins in `order`, left-deep, each added input on the side `left` says.
fn build(
    inputs: Vec<Input>,
    edges: &[Edge],
    order: &[(usize, f64)],
    left: &[bool],
) -> DfResult<LogicalPlan> {
    let mut plans: Vec<Option<LogicalPlan>> = inputs.into_iter().map(|i| Some(i.plan)).collect();
    let mut inside = vec![false; plans.len()];
    let (first, _) = order[0];
    inside[first] = true;
    let mut acc = plans[first].take().expect("each input is joined once");
    for (&(x, _), &x_left) in order[1..].iter().zip(left) {
        let added = plans[x].take().expect("each input is joined once");
        let mut on: Vec<(Expr, Expr)> = Vec::new();
        for (_, inner, outer) in edges.iter().filter_map(|e| e.toward(x, &inside)) {
            let (inner, outer) = (Expr::Column(inner.clone()), Expr::Column(outer.clone()));
            on.push(if x_left {
                (outer, inner)
            } else {
                (inner, outer)
            });
        }
        let (l, r) = if x_left { (added, acc) } else { (acc, added) };
        acc = LogicalPlan::Join(Join::try_new(
            Arc::new(l),
            Arc::new(r),
            on,
            None,
            JoinType::Inner,
            JoinConstraint::On,
            NullEquality::NullEqualsNothing,
            false,
        )?);
        inside[x] = true;
    }
    Ok(acc)
}

/// The estimated rows of an input, and the table underneath it.
fn estimate(plan: &LogicalPlan) -> Option<(f64, Option<Arc<dyn TableProvider>>)> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => estimate(&a.input),
        LogicalPlan::Projection(p) => estimate(&p.input),
        LogicalPlan::Filter(f) => {
            let (rows, table) = estimate(&f.input)?;
            // A condition the indexes do not answer: assumed to keep half the rows.
            let n = split_conjunction(&f.predicate).len() as i32;
            Some((rows * 0.5f64.powi(n), table))
        }
        LogicalPlan::TableScan(s) => scan_rows(s),
        _ => None,
    }
}

fn scan_rows(s: &TableScan) -> Option<(f64, Option<Arc<dyn TableProvider>>)> {
    let provider = source_as_provider(&s.source).ok()?;
    let rows = match (provider.as_ref() as &dyn Any).downcast_ref::<StoreTable>() {
        Some(t) => t.rows_where(&s.filters) as f64,
        None => {
            let stats = provider.statistics()?;
            let n = *stats.num_rows.get_value()? as f64;
            n * 0.5f64.powi(s.filters.len() as i32)
        }
    };
    let rows = match s.fetch {
        Some(f) => rows.min(f as f64),
        None => rows,
    };
    Some((rows, Some(provider)))
}
