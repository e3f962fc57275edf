//! The engine's own tables and table functions in SQL: `anomalies` and `sweep(as_of, rules)`,
//! `grid_kpis`, `incident_kpis`, `incident_stages`, `rejects` and `tasks`. Each is computed when
//! scanned and seen through the caller's [`View`] (scope, masks, redacted evidence).
//!
//! Table-function arguments are positional, or named: `grid_kpis(level => 'street')` and
//! `grid_kpis('level=street')` both work ([`NamedArgs`] rewrites the first into the second);
//! any argument may be left out from the right.

use crate::city::{self, City};
use crate::error::Result;
use crate::hierarchy::Level;
use crate::kpis::{self, GroupBy};
use crate::rules::{self, RuleId};
use crate::scope::View;
use crate::tasks::{TaskSource, tasks_schema};
use crate::time;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{
    self as sqlast, FunctionArg, FunctionArgExpr, TableFactor, VisitorMut,
};
use hashbrown::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

type Compute = Arc<dyn Fn() -> Result<RecordBatch> + Send + Sync>;

/// A table computed by the engine when it is scanned.
struct Computed {
    name: String,
    schema: SchemaRef,
    compute: Compute,
}

impl fmt::Debug for Computed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Computed({})", self.name)
    }
}

#[async_trait]
impl TableProvider for Computed {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let compute = self.compute.clone();
        // A sweep at a new instant keeps both cores busy for a while (and waits for any other
        // sweep being computed): off the query threads, so that other queries go on meanwhile.
        let batch = tokio::task::spawn_blocking(move || compute())
            .await
            .map_err(|e| DataFusionError::Internal(format!("computing a table: {e}")))?
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let batch = if batch.schema() != self.schema {
            RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?
        } else {
            batch
        };
        // Split into a few slices so both cores work on it.
        let parts = state.config().target_partitions().max(1);
        let per = batch.num_rows().div_ceil(parts).max(1);
        let slices: Vec<Vec<RecordBatch>> = (0..batch.num_rows().div_ceil(per).max(1))
            .map(|i| {
                let s = (i * per).min(batch.num_rows());
                vec![batch.slice(s, per.min(batch.num_rows() - s))]
            })
            .collect();
        let mem = MemTable::try_new(self.schema.clone(), slices)?;
        mem.scan(state, projection, filters, limit).await
    }
}

fn computed(name: &str, schema: SchemaRef, compute: Compute) -> Arc<dyn TableProvider> {
    Arc::new(Computed {
        name: name.into(),
        schema,
        compute,
    })
}

/// Reads the arguments of a table function: positional in the order of `names`, or
/// `'name=value'` strings (what `name => value` is rewritten to).
fn function_args(
    function: &str,
    exprs: &[Expr],
    names: &[&str],
) -> DfResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (i, e) in exprs.iter().enumerate() {
        let text = match e {
            Expr::Literal(v, _) => literal_text(v),
            _ => None,
        }
        .ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{function}(): argument {} must be a constant, e.g. '2026-11-01' (got {e})",
                i + 1
            ))
        })?;
        let named = text.split_once('=').and_then(|(k, v)| {
            let k = k.trim().to_ascii_lowercase();
            names
                .contains(&k.as_str())
                .then(|| (k, v.trim().to_string()))
        });
        let (k, v) = match named {
            Some(kv) => kv,
            None => {
                let k = names.get(i).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "{function}() takes at most {} arguments ({})",
                        names.len(),
                        names.join(", ")
                    ))
                })?;
                (k.to_string(), text)
            }
        };
        out.insert(k, v);
    }
    Ok(out)
}

fn literal_text(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        ScalarValue::Date32(Some(d)) => Some(time::format_date(*d)),
        ScalarValue::TimestampMicrosecond(Some(t), _) => Some(time::format_timestamp(*t)),
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(time::format_timestamp(t / 1000)),
        ScalarValue::TimestampSecond(Some(t), _) => Some(time::format_timestamp(t * time::SECOND)),
        v if v.data_type().is_integer() => Some(v.to_string()),
        _ => None,
    }
}

fn plan_err(e: impl fmt::Display) -> DataFusionError {
    DataFusionError::Plan(e.to_string())
}

fn as_of_arg(args: &HashMap<String, String>, city: &City) -> DfResult<i64> {
    match args.get("as_of") {
        Some(s) => time::parse_as_of(s).map_err(|why| {
            plan_err(format!(
                "as_of {s:?} is {why} (expected e.g. 2026-11-01 or 2026-11-01T00:00:00+08:00)"
            ))
        }),
        None => Ok(city.store().as_of),
    }
}

fn instant_arg(args: &HashMap<String, String>, name: &str) -> DfResult<Option<i64>> {
    args.get(name)
        .map(|s| {
            time::parse_as_of(s).map_err(|why| {
                plan_err(format!("{name} {s:?} is {why} (expected e.g. 2026-01-01)"))
            })
        })
        .transpose()
}

/// What a table function of a session works with: the city and the caller's view of it.
#[derive(Debug, Clone)]
struct Over(Arc<City>, Arc<View>);

#[derive(Debug)]
struct SweepFn(Over);
#[derive(Debug)]
struct GridKpisFn(Over);
#[derive(Debug)]
struct IncidentKpisFn(Over);
#[derive(Debug)]
struct StagesFn(Over);

impl SweepFn {
    /// The anomalies of a sweep, as the caller may see them.
    fn table(&self, as_of: i64, rules: Vec<RuleId>) -> Arc<dyn TableProvider> {
        let Over(city, view) = self.0.clone();
        computed(
            "sweep",
            rules::anomalies_schema(),
            Arc::new(move || view.anomalies(&*city.sweep(as_of, &rules)?)),
        )
    }
}

impl TableFunctionImpl for SweepFn {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let a = function_args("sweep", args.exprs(), &["as_of", "rules"])?;
        let as_of = as_of_arg(&a, &self.0.0)?;
        let rules = match a.get("rules") {
            Some(r) => RuleId::parse_list(r).map_err(plan_err)?,
            None => Vec::new(),
        };
        Ok(self.table(as_of, rules))
    }
}

impl GridKpisFn {
    /// Grid KPIs at a level, as the caller may see them (units inside the scope).
    fn table(&self, level: Level, as_of: i64, code: Option<String>) -> Arc<dyn TableProvider> {
        let Over(city, view) = self.0.clone();
        computed(
            "grid_kpis",
            kpis::grid_schema(),
            Arc::new(move || city.grid_kpis_for(&view, as_of, level, code.as_deref())),
        )
    }
}

impl TableFunctionImpl for GridKpisFn {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let a = function_args("grid_kpis", args.exprs(), &["level", "as_of", "code"])?;
        let level: Level = a
            .get("level")
            .map(|l| l.parse())
            .transpose()
            .map_err(plan_err)?
            .unwrap_or(Level::Grid);
        let as_of = as_of_arg(&a, &self.0.0)?;
        Ok(self.table(level, as_of, a.get("code").cloned()))
    }
}

impl IncidentKpisFn {
    /// Incident KPIs over the incidents inside the caller's scope.
    fn table(
        &self,
        group_by: Vec<GroupBy>,
        from: Option<i64>,
        to: Option<i64>,
        as_of: i64,
    ) -> Arc<dyn TableProvider> {
        let Over(city, view) = self.0.clone();
        let schema = kpis::incident_schema(&group_by);
        computed(
            "incident_kpis",
            schema,
            Arc::new(move || {
                city.incident_kpis_for(&view, as_of, group_by.clone(), (from, to), None)
            }),
        )
    }
}

impl TableFunctionImpl for IncidentKpisFn {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let a = function_args(
            "incident_kpis",
            args.exprs(),
            &["group_by", "from", "to", "as_of"],
        )?;
        let group_by = match a.get("group_by") {
            Some(g) => GroupBy::parse_list(g).map_err(plan_err)?,
            None => vec![GroupBy::Level(Level::Grid)],
        };
        let as_of = as_of_arg(&a, &self.0.0)?;
        let from = instant_arg(&a, "from")?;
        let to = instant_arg(&a, "to")?;
        Ok(self.table(group_by, from, to, as_of))
    }
}

impl StagesFn {
    /// One row per incident and stage, inside the caller's scope.
    fn table(&self, as_of: i64) -> Arc<dyn TableProvider> {
        let Over(city, view) = self.0.clone();
        computed(
            "incident_stages",
            city::stages_schema(),
            Arc::new(move || city.incident_stages_for(&view, as_of)),
        )
    }
}

impl TableFunctionImpl for StagesFn {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let a = function_args("incident_stages", args.exprs(), &["as_of"])?;
        Ok(self.table(as_of_arg(&a, &self.0.0)?))
    }
}

/// Registers the engine's own tables and table functions in a session, as `view`'s caller sees
/// them: `anomalies`, `incident_stages`, `grid_kpis`, `incident_kpis` (the functions at the
/// dataset's `as_of` with their default arguments), `rejects` (raw input: only for a caller who
/// sees everything unmasked) and `tasks` (the task lists of `tasks`).
pub fn register(
    ctx: &SessionContext,
    city: &Arc<City>,
    view: &Arc<View>,
    tasks: Option<TaskSource>,
) -> Result<()> {
    let over = Over(city.clone(), view.clone());
    let as_of = city.store().as_of;
    let sweep = SweepFn(over.clone());
    let grid_kpis = GridKpisFn(over.clone());
    let incident_kpis = IncidentKpisFn(over.clone());
    let stages = StagesFn(over);
    let (c, v) = (city.clone(), view.clone());
    let rejects = city.store().rejects.clone();
    let sees_all = view.scope().is_full();
    let v2 = view.clone();
    let tables = [
        (
            "anomalies",
            computed(
                "anomalies",
                rules::anomalies_schema(),
                Arc::new(move || v.anomalies(&*c.latest()?)),
            ),
        ),
        ("incident_stages", stages.table(as_of)),
        ("grid_kpis", grid_kpis.table(Level::Grid, as_of, None)),
        (
            "incident_kpis",
            incident_kpis.table(vec![GroupBy::Level(Level::Grid)], None, None, as_of),
        ),
        (
            "rejects",
            computed(
                "rejects",
                rejects.schema(),
                Arc::new(move || {
                    Ok(if sees_all {
                        rejects.clone()
                    } else {
                        rejects.slice(0, 0)
                    })
                }),
            ),
        ),
        (
            "tasks",
            computed(
                "tasks",
                tasks_schema(),
                Arc::new(move || match &tasks {
                    Some(source) => source.with_tasks(|t| v2.tasks(t.values())),
                    None => v2.tasks(std::iter::empty()),
                }),
            ),
        ),
    ];
    for (name, t) in tables {
        ctx.register_table(name, t)?;
    }
    ctx.register_udtf("sweep", Arc::new(sweep));
    ctx.register_udtf("grid_kpis", Arc::new(grid_kpis));
    ctx.register_udtf("incident_kpis", Arc::new(incident_kpis));
    ctx.register_udtf("incident_stages", Arc::new(stages));
    Ok(())
}

/// Rewrites `f(name => value)` table-function arguments into `f('name=value')`, which DataFusion
/// passes on to the function.
pub struct NamedArgs;

impl VisitorMut for NamedArgs {
    type Break = ();
    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            args: Some(args), ..
        } = t
        {
            for a in args.args.iter_mut() {
                if let FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } = a
                {
                    let value = match e {
                        sqlast::Expr::Value(v) => match &v.value {
                            sqlast::Value::SingleQuotedString(s)
                            | sqlast::Value::DoubleQuotedString(s) => s.clone(),
                            other => other.to_string(),
                        },
                        sqlast::Expr::Array(arr) => arr
                            .elem
                            .iter()
                            .map(|x| x.to_string().trim_matches('\'').to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        other => other.to_string().trim_matches('\'').to_string(),
                    };
                    let text = format!("{}={}", name.value, value);
                    *a = FunctionArg::Unnamed(FunctionArgExpr::Expr(sqlast::Expr::value(
                        sqlast::Value::SingleQuotedString(text),
                    )));
                }
            }
        }
        ControlFlow::Continue(())
    }
}
