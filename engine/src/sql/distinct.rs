//! `count(DISTINCT x)` beside other aggregates, as two group-bys.
//!
//! DataFusion answers `SELECT g, count(DISTINCT x), count(*) … GROUP BY g` with a hash set of
//! `x` per group: with millions of groups (identities seen at doors), millions of sets. Its own
//! rewrite into two group-bys applies only when every aggregate is distinct. [`SplitDistinct`]
//! does it for the mixed case: the rows are grouped by `(g, x)` first, with the other
//! aggregates computed per `(g, x)`; then by `g`, where `count(DISTINCT x)` is `count(x)` and
//! the others are combined (`count` and `sum` summed, `min` of mins, `max` of maxes). Same
//! answer, same names and types (a projection restores them).

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result as DfResult};
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, cast};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use std::sync::Arc;

/// The rule (see the module's documentation).
#[derive(Debug, Default)]
pub struct SplitDistinct;

/// What one aggregate of the original becomes.
enum Part {
    /// `count(DISTINCT x)`: `count(x)` in the second group-by.
    Distinct,
    /// Another aggregate: computed in the first group-by, combined by this in the second.
    Combined(fn(Expr) -> Expr, Expr),
}

impl OptimizerRule for SplitDistinct {
    fn name(&self) -> &str {
        "gridlens_split_distinct"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match split(agg)? {
            Some(p) => Ok(Transformed::yes(p)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

fn split(agg: &Aggregate) -> DfResult<Option<LogicalPlan>> {
    if agg.group_expr.is_empty()
        || agg
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Ok(None);
    }
    let mut distinct_arg: Option<&Expr> = None;
    let mut parts = Vec::with_capacity(agg.aggr_expr.len());
    for e in &agg.aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
            return Ok(None);
        };
        if params.filter.is_some() || !params.order_by.is_empty() || params.args.len() != 1 {
            return Ok(None);
        }
        let name = func.name();
        if params.distinct {
            if name != "count" || distinct_arg.is_some_and(|d| d != &params.args[0]) {
                return Ok(None);
            }
            distinct_arg = Some(&params.args[0]);
            parts.push(Part::Distinct);
        } else {
            let combine: fn(Expr) -> Expr = match name {
                "count" | "sum" => sum,
                "min" => min,
                "max" => max,
                _ => return Ok(None),
            };
            parts.push(Part::Combined(combine, e.clone()));
        }
    }
    let Some(x) = distinct_arg else {
        return Ok(None);
    };
    if parts.iter().all(|p| matches!(p, Part::Distinct)) {
        // DataFusion's own rule takes it.
        return Ok(None);
    }
    const X: &str = "__gridlens_distinct";
    let mut inner_group = agg.group_expr.clone();
    inner_group.push(x.clone().alias(X));
    let inner_aggs: Vec<Expr> = parts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Part::Combined(_, e) => Some(e.clone().alias(format!("__gridlens_part{i}"))),
            Part::Distinct => None,
        })
        .collect();
    let inner = LogicalPlan::Aggregate(Aggregate::try_new(
        agg.input.clone(),
        inner_group,
        inner_aggs,
    )?);
    let column = |i: usize| Expr::Column(Column::from(inner.schema().qualified_field(i)));
    let groups = agg.group_expr.len();
    let outer_group: Vec<Expr> = (0..groups).map(column).collect();
    let mut next = groups + 1;
    let outer_aggs: Vec<Expr> = parts
        .iter()
        .map(|p| match p {
            Part::Distinct => count(column(groups)),
            Part::Combined(f, _) => {
                next += 1;
                f(column(next - 1))
            }
        })
        .collect();
    let outer = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(inner),
        outer_group,
        outer_aggs,
    )?);
    // The original names and types.
    let exprs = agg
        .schema
        .iter()
        .zip(outer.schema().iter())
        .map(|((q, f), (oq, of))| {
            let e = Expr::Column(Column::new(oq.cloned(), of.name()));
            let e = if of.data_type() == f.data_type() {
                e
            } else {
                cast(e, f.data_type().clone())
            };
            e.alias_qualified(q.cloned(), f.name())
        })
        .collect();
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(outer),
    )?)))
}
