//! SQL over the whole city, through DataFusion.
//!
//! [`SqlEngine`] registers, in every session it makes:
//! - the loaded tables under their names (`people`, `rooms`, …), read in place through
//!   [`provider::StoreTable`] with index pushdown;
//! - `anomalies` (the latest sweep), `rejects` (the load's rejected rows), `tasks` (the task
//!   lists, when a state folder is given), `incident_stages`, `grid_kpis` (grid level) and
//!   `incident_kpis` (per grid), all at the dataset's `as_of`;
//! - the table functions `sweep(as_of, rules)`, `grid_kpis(level, as_of, code)`,
//!   `incident_kpis(group_by, from, to, as_of)` and `incident_stages(as_of)`.
//!
//! Table-function arguments are positional, or named: `grid_kpis(level => 'street')` and
//! `grid_kpis('level=street')` both work; any argument may be left out from the right.
//! Queries are read-only: DDL, DML, `COPY` and `SET` are refused.

pub mod access;
pub mod date_trunc;
pub mod join_order;
pub mod provider;

pub use access::Access;

use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::kpis::{self, GridCounts, GridRollup, GroupBy, IncidentQuery, KpiParams, Level};
use crate::rules::{self, Params, RuleId, Sweep};
use crate::sla::{self, Clocks, NO_TIME, STATE_NAMES, Stage};
use crate::store::{NONE, Store};
use crate::tasks::{TaskBook, tasks_batch, tasks_schema};
use crate::time;
use arrow::array::{ArrayRef, RecordBatch, StringBuilder, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    self as sqlast, FunctionArg, FunctionArgExpr, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use hashbrown::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// A sweep's `as_of` and rules.
type SweepKey = (i64, Vec<RuleId>);

/// What the sweeps, SLA clocks and KPIs are computed with, cached per `as_of`.
pub struct Derived {
    store: Arc<Store>,
    /// Rule parameters.
    pub params: Params,
    /// KPI weights and windows.
    pub kpi_params: KpiParams,
    sweeps: Mutex<HashMap<SweepKey, Arc<Sweep>>>,
    clocks: Mutex<HashMap<i64, Arc<Clocks>>>,
    grids: Mutex<HashMap<i64, Arc<Vec<GridCounts>>>>,
    rollups: Mutex<HashMap<(i64, Level), Arc<GridRollup>>>,
    latest: RwLock<Option<Arc<Sweep>>>,
    /// Held while computing into the sweeps, clocks, grids and roll-up caches.
    computing: [Mutex<()>; 4],
}

impl fmt::Debug for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Derived").finish_non_exhaustive()
    }
}

fn cached<K: std::hash::Hash + Eq + Clone, V>(
    cache: &Mutex<HashMap<K, Arc<V>>>,
    computing: &Mutex<()>,
    key: K,
    compute: impl FnOnce() -> Result<V>,
) -> Result<Arc<V>> {
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(v);
    }
    // One computation at a time per cache: callers asking for the same value at once wait for
    // the first instead of computing it again.
    let _computing = computing.lock();
    if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(v);
    }
    let v = Arc::new(compute()?);
    if let Ok(mut c) = cache.lock() {
        // A small cache: a few as_of values are used at a time.
        if c.len() >= 8 {
            c.clear();
        }
        c.insert(key, v.clone());
    }
    Ok(v)
}

impl Derived {
    /// Over a store, with default parameters.
    pub fn new(store: Arc<Store>) -> Derived {
        Derived {
            store,
            params: Params::default(),
            kpi_params: KpiParams::default(),
            sweeps: Mutex::default(),
            clocks: Mutex::default(),
            grids: Mutex::default(),
            rollups: Mutex::default(),
            latest: RwLock::default(),
            computing: Default::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A sweep (all rules if `rules` is empty).
    pub fn sweep(&self, as_of: i64, rules: &[RuleId]) -> Result<Arc<Sweep>> {
        let mut key_rules = rules.to_vec();
        key_rules.sort();
        cached(&self.sweeps, &self.computing[0], (as_of, key_rules), || {
            rules::sweep(&self.store, as_of, rules, &self.params)
        })
    }

    /// The latest sweep: the one last recorded with [`Derived::set_latest`], else a full sweep
    /// at the dataset's `as_of`.
    pub fn latest(&self) -> Result<Arc<Sweep>> {
        if let Some(s) = self.latest.read().ok().and_then(|l| l.clone()) {
            return Ok(s);
        }
        self.sweep(self.store.as_of, &[])
    }

    /// Records a sweep as the latest (the `anomalies` table).
    pub fn set_latest(&self, sweep: Arc<Sweep>) {
        if let Ok(mut l) = self.latest.write() {
            *l = Some(sweep);
        }
    }

    /// The SLA clocks of every incident.
    pub fn clocks(&self, as_of: i64) -> Result<Arc<Clocks>> {
        cached(&self.clocks, &self.computing[1], as_of, || {
            sla::clocks(&self.store, as_of)
        })
    }

    /// Per-grid KPI counts.
    pub fn grid_counts(&self, as_of: i64) -> Result<Arc<Vec<GridCounts>>> {
        cached(&self.grids, &self.computing[2], as_of, || {
            let sweep = self.sweep(as_of, &[])?;
            let clocks = self.clocks(as_of)?;
            kpis::grid_counts(&self.store, &sweep, &clocks, &self.kpi_params)
        })
    }

    /// Grid KPIs at a level, optionally inside one code. The city-wide roll-up of a level is kept,
    /// so asking for one street is a slice of it.
    pub fn grid_kpis(&self, as_of: i64, level: Level, within: Option<&str>) -> Result<RecordBatch> {
        let rollup = cached(&self.rollups, &self.computing[3], (as_of, level), || {
            let counts = self.grid_counts(as_of)?;
            Ok(GridRollup::new(
                &counts,
                &self.store,
                level,
                &self.kpi_params,
            ))
        })?;
        rollup.batch(&self.store, within, &self.kpi_params)
    }

    /// Incident KPIs.
    pub fn incident_kpis(
        &self,
        as_of: i64,
        group_by: Vec<GroupBy>,
        from: Option<i64>,
        to: Option<i64>,
        within: Option<String>,
    ) -> Result<RecordBatch> {
        let clocks = self.clocks(as_of)?;
        kpis::incident_kpis(
            &self.store,
            &clocks,
            &IncidentQuery {
                group_by,
                from,
                to,
                within,
                params: self.kpi_params.clone(),
            },
        )
    }

    /// One row per incident and stage.
    pub fn incident_stages(&self, as_of: i64) -> Result<RecordBatch> {
        let clocks = self.clocks(as_of)?;
        stages_batch(&self.store, &clocks)
    }
}

/// The schema of `incident_stages`.
pub fn stages_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some(crate::contract::TZ.into()));
    Arc::new(Schema::new(vec![
        Field::new("incident_id", DataType::Utf8, false),
        Field::new("grid_code", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("started_at", ts(), true),
        Field::new("ended_at", ts(), true),
        Field::new("deadline", ts(), true),
        Field::new("state", DataType::Utf8, true),
    ]))
}

fn stages_batch(store: &Store, clocks: &Clocks) -> Result<RecordBatch> {
    let t = store.table(TableId::Incidents);
    let ids = t.strings("incident_id")?;
    let grid = t.keys("grid_code")?;
    let grid_codes = store.table(TableId::Grids).strings("grid_code")?;
    let n = t.rows * 4;
    let (mut id, mut g, mut st, mut state) = (
        StringBuilder::with_capacity(n, n * 12),
        StringBuilder::with_capacity(n, n * 15),
        StringBuilder::with_capacity(n, n * 7),
        StringBuilder::with_capacity(n, n * 7),
    );
    let (mut start, mut end, mut deadline) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let opt = |v: i64| (v != NO_TIME).then_some(v);
    for i in 0..t.rows {
        for stage in Stage::ALL {
            let c = &clocks.stages[stage as usize];
            id.append_value(ids.value(i));
            g.append_value(if grid[i] == NONE {
                ""
            } else {
                grid_codes.value(grid[i] as usize)
            });
            st.append_value(stage.name());
            let s = c.state[i];
            state.append_option((s >= 0).then(|| STATE_NAMES[s as usize]));
            start.push(opt(c.start[i]));
            end.push(opt(c.end[i]));
            deadline.push(opt(c.deadline[i]));
        }
    }
    let ts = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone(crate::contract::TZ))
    };
    Ok(RecordBatch::try_new(
        stages_schema(),
        vec![
            Arc::new(id.finish()),
            Arc::new(g.finish()),
            Arc::new(st.finish()),
            ts(start),
            ts(end),
            ts(deadline),
            Arc::new(state.finish()),
        ],
    )?)
}

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
        let batch = compute().map_err(|e| DataFusionError::Execution(e.to_string()))?;
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

fn as_of_arg(args: &HashMap<String, String>, derived: &Derived) -> DfResult<i64> {
    match args.get("as_of") {
        Some(s) => time::parse_as_of(s).map_err(|why| {
            plan_err(format!(
                "as_of {s:?} is {why} (expected e.g. 2026-11-01 or 2026-11-01T00:00:00+08:00)"
            ))
        }),
        None => Ok(derived.store.as_of),
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

#[derive(Debug)]
struct SweepFn(Arc<Derived>, Access);
#[derive(Debug)]
struct GridKpisFn(Arc<Derived>, Access);
#[derive(Debug)]
struct IncidentKpisFn(Arc<Derived>, Access);
#[derive(Debug)]
struct StagesFn(Arc<Derived>, Access);

/// Restricts a computed table's batch to the caller's scope (by `column`) and masks it.
fn restricted(access: &Access, batch: RecordBatch, column: &str) -> Result<RecordBatch> {
    if access.is_full() {
        return Ok(batch);
    }
    Ok(access.restrict(batch, column)?)
}

impl SweepFn {
    /// The anomalies of a sweep, as the caller may see them.
    fn table(&self, as_of: i64, rules: Vec<RuleId>) -> Arc<dyn TableProvider> {
        let (d, access) = (self.0.clone(), self.1.clone());
        computed(
            "sweep",
            rules::anomalies_schema(),
            Arc::new(move || {
                let b = d.sweep(as_of, &rules)?.to_batch(&d.store)?;
                restricted(&access, b, "grid_code")
            }),
        )
    }
}

impl TableFunctionImpl for SweepFn {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let a = function_args("sweep", args.exprs(), &["as_of", "rules"])?;
        let as_of = as_of_arg(&a, &self.0)?;
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
        let (d, access) = (self.0.clone(), self.1.clone());
        computed(
            "grid_kpis",
            kpis::grid_schema(),
            Arc::new(move || {
                restricted(&access, d.grid_kpis(as_of, level, code.as_deref())?, "code")
            }),
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
        let as_of = as_of_arg(&a, &self.0)?;
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
        let (d, within) = (self.0.clone(), self.1.scope.clone());
        let schema = kpis::incident_schema(&group_by);
        computed(
            "incident_kpis",
            schema,
            Arc::new(move || d.incident_kpis(as_of, group_by.clone(), from, to, within.clone())),
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
        let as_of = as_of_arg(&a, &self.0)?;
        let from = instant_arg(&a, "from")?;
        let to = instant_arg(&a, "to")?;
        Ok(self.table(group_by, from, to, as_of))
    }
}

impl StagesFn {
    /// One row per incident and stage, inside the caller's scope.
    fn table(&self, as_of: i64) -> Arc<dyn TableProvider> {
        let (d, access) = (self.0.clone(), self.1.clone());
        computed(
            "incident_stages",
            stages_schema(),
            Arc::new(move || restricted(&access, d.incident_stages(as_of)?, "grid_code")),
        )
    }
}

impl TableFunctionImpl for StagesFn {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let a = function_args("incident_stages", args.exprs(), &["as_of"])?;
        Ok(self.table(as_of_arg(&a, &self.0)?))
    }
}

/// Rewrites `f(name => value)` table-function arguments into `f('name=value')`, which DataFusion
/// passes on to the function.
struct NamedArgs;

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

/// The result of a query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Its schema.
    pub schema: SchemaRef,
    /// Its rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// SQL over a loaded city.
#[derive(Debug, Clone)]
pub struct SqlEngine {
    derived: Arc<Derived>,
    tables: Vec<(String, Arc<dyn TableProvider>)>,
    state_dir: Option<PathBuf>,
    access: Access,
    memory_limit: Option<usize>,
}

impl SqlEngine {
    /// Over a store.
    pub fn new(store: Arc<Store>) -> SqlEngine {
        SqlEngine::with_derived(Arc::new(Derived::new(store)))
    }

    /// Over the store of a [`Derived`] (sharing its caches).
    pub fn with_derived(derived: Arc<Derived>) -> SqlEngine {
        let store = derived.store.clone();
        let tables = TableId::ALL
            .iter()
            .map(|&t| {
                (
                    t.name().to_string(),
                    Arc::new(provider::StoreTable::new(store.clone(), t)) as Arc<dyn TableProvider>,
                )
            })
            .collect();
        SqlEngine {
            derived,
            tables,
            state_dir: None,
            access: Access::full(),
            memory_limit: None,
        }
    }

    /// The same engine as a caller with `access` sees it: every table and table function holds
    /// only the rows inside the scope, with personal columns masked unless `access.pii`.
    pub fn with_access(mut self, access: Access) -> SqlEngine {
        let store = self.derived.store.clone();
        self.tables = TableId::ALL
            .iter()
            .map(|&t| {
                (
                    t.name().to_string(),
                    Arc::new(provider::StoreTable::scoped(store.clone(), t, &access))
                        as Arc<dyn TableProvider>,
                )
            })
            .collect();
        self.access = access;
        self
    }

    /// Limits the memory each query may use (bytes); a query past it stops with an error.
    pub fn with_memory_limit(mut self, bytes: Option<usize>) -> SqlEngine {
        self.memory_limit = bytes;
        self
    }

    /// What the engine's caller may see.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Serves the task lists under a state folder as the `tasks` table.
    pub fn with_state_dir(mut self, dir: Option<PathBuf>) -> SqlEngine {
        self.state_dir = dir;
        self
    }

    /// The sweeps, clocks and KPIs behind the engine.
    pub fn derived(&self) -> &Arc<Derived> {
        &self.derived
    }

    /// A session with every table and function registered.
    pub fn context(&self) -> Result<SessionContext> {
        // Wall-clock readings are China Standard Time: `TIMESTAMP '2026-11-01 00:00:00'` and
        // `now()` are in +08:00.
        let config = SessionConfig::new()
            .set_str("datafusion.execution.time_zone", crate::contract::TZ)
            .with_information_schema(true)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
        let ctx = match self.memory_limit {
            Some(bytes) => {
                // No spilling: a query past its memory stops, it does not fill the disk.
                let runtime = RuntimeEnvBuilder::new()
                    .with_memory_limit(bytes, 1.0)
                    .with_disk_manager_builder(
                        DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
                    )
                    .build_arc()
                    .map_err(query_error)?;
                SessionContext::new_with_config_rt(config, runtime)
            }
            None => SessionContext::new_with_config(config),
        };
        ctx.add_optimizer_rule(Arc::new(join_order::JoinOrder));
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            date_trunc::DateTrunc::new(),
        ));
        for (name, t) in &self.tables {
            ctx.register_table(name.as_str(), t.clone())?;
        }
        let d = self.derived.clone();
        let access = self.access.clone();
        let as_of = d.store.as_of;
        let sweep = SweepFn(d.clone(), access.clone());
        let grid_kpis = GridKpisFn(d.clone(), access.clone());
        let incident_kpis = IncidentKpisFn(d.clone(), access.clone());
        let stages = StagesFn(d.clone(), access.clone());
        // The tables are the functions at the dataset's as_of, with their default arguments;
        // `anomalies` is the latest sweep.
        let (dd, a) = (d.clone(), access.clone());
        let mut tables = vec![
            (
                "anomalies",
                computed(
                    "anomalies",
                    rules::anomalies_schema(),
                    Arc::new(move || {
                        restricted(&a, dd.latest()?.to_batch(&dd.store)?, "grid_code")
                    }),
                ),
            ),
            ("incident_stages", stages.table(as_of)),
            ("grid_kpis", grid_kpis.table(Level::Grid, as_of, None)),
            (
                "incident_kpis",
                incident_kpis.table(vec![GroupBy::Level(Level::Grid)], None, None, as_of),
            ),
        ];
        // Rejected rows are raw input text: the whole city's, unmasked; only for callers who
        // may see both.
        let rejects = d.store.rejects.clone();
        let a = access.clone();
        tables.push((
            "rejects",
            computed(
                "rejects",
                rejects.schema(),
                Arc::new(move || {
                    Ok(if a.is_full() {
                        rejects.clone()
                    } else {
                        rejects.slice(0, 0)
                    })
                }),
            ),
        ));
        let state_dir = self.state_dir.clone();
        let a = access;
        tables.push((
            "tasks",
            computed(
                "tasks",
                tasks_schema(),
                Arc::new(move || {
                    let b = match &state_dir {
                        Some(dir) if dir.join("tasks.json").exists() => {
                            let book = TaskBook::open(dir)?;
                            tasks_batch(book.tasks.values())?
                        }
                        _ => tasks_batch(std::iter::empty())?,
                    };
                    restricted(&a, b, "grid_code")
                }),
            ),
        ));
        for (name, t) in tables {
            ctx.register_table(name, t)?;
        }
        ctx.register_udtf("sweep", Arc::new(sweep));
        ctx.register_udtf("grid_kpis", Arc::new(grid_kpis));
        ctx.register_udtf("incident_kpis", Arc::new(incident_kpis));
        ctx.register_udtf("incident_stages", Arc::new(stages));
        Ok(ctx)
    }

    /// Runs one read-only query.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let df = self.plan(sql).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(query_error)?;
        Ok(QueryResult { schema, batches })
    }

    /// Runs one read-only query, its rows as a stream of batches (for answers too large to hold).
    pub async fn stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        let df = self.plan(sql).await?;
        df.execute_stream().await.map_err(query_error)
    }

    /// Plans one read-only query.
    async fn plan(&self, sql: &str) -> Result<DataFrame> {
        let ctx = self.context()?;
        let mut statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
            .map_err(|e| Error::Query(format!("the SQL does not parse: {e}")))?;
        if statements.len() != 1 {
            return Err(Error::Query(format!(
                "one statement per query, please (got {})",
                statements.len()
            )));
        }
        let mut statement = statements
            .pop_front()
            .ok_or_else(|| Error::Query("empty query".into()))?;
        if let DfStatement::Statement(s) = &mut statement {
            let _ = s.visit(&mut NamedArgs);
        }
        let state = ctx.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(query_error)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| Error::Forbidden(format!("queries are read-only: {}", strip(&e))))?;
        ctx.execute_logical_plan(plan).await.map_err(query_error)
    }

    /// Runs one query on a runtime of its own (for callers that are not async).
    pub fn query_blocking(&self, sql: &str) -> Result<QueryResult> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the query runtime: {e}")))?;
        rt.block_on(self.query(sql))
    }
}

fn strip(e: &DataFusionError) -> String {
    e.to_string()
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("External error: ")
        .to_string()
}

/// An error of DataFusion as the engine reports it: a memory limit reached is
/// [`Error::ResourcesExhausted`], anything else a query error with DataFusion's prefixes removed.
pub fn query_error(e: DataFusionError) -> Error {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(m) => {
            Error::ResourcesExhausted(format!("the query needs more memory than it may use: {m}"))
        }
        _ => Error::Query(strip(&e)),
    }
}
