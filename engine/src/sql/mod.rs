//! SQL over the whole city, through DataFusion, as one caller may see it.
//!
//! [`SqlEngine`] registers, in every session it makes:
//! - the loaded tables under their names (`people`, `rooms`, …), read in place through
//!   [`provider::StoreTable`] with index pushdown;
//! - the engine's own tables and table functions ([`tables`]): `anomalies`, `sweep(as_of,
//!   rules)`, `grid_kpis`, `incident_kpis`, `incident_stages`, `rejects`, `tasks`.
//!
//! Every one of them is seen through the caller's [`View`]: the rows inside the scope, personal
//! columns masked, evidence redacted, below SQL, so no query however written reaches past them.
//! Queries are read-only (DDL, DML, `COPY` and `SET` are refused), bounded in size and nesting
//! ([`control::SqlBounds`]), and stopped by their [`control::QueryControl`]. An engine in
//! [`Dialect::Postgres`] (the PostgreSQL endpoint's) parses as PostgreSQL does and adds
//! `pg_catalog` ([`postgres`]); it is otherwise the same engine.

pub mod bounded;
pub mod control;
pub mod date_trunc;
pub mod distinct;
pub mod join_order;
pub mod keys;
pub mod local_time;
pub mod memory;
pub mod postgres;
pub mod provider;
pub mod tables;

use crate::city::City;
use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::scope::{Scope, View};
use crate::store::Store;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use control::{QueryControl, SqlBounds, StopRule, Stopped};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::Transformed;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::VisitMut;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use std::path::PathBuf;
use std::sync::Arc;

/// The most rows a join's side may have to be built once for every partition (`CollectLeft`).
const COLLECT_ROWS: usize = 1 << 20;

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

/// What a query returns and the parameters it takes, known before it runs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The schema of its rows.
    pub schema: SchemaRef,
    /// The types of `$1`, `$2`, … in order; `None` where the query does not tell.
    pub params: Vec<Option<DataType>>,
}

/// How an engine reads SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// DataFusion's generic dialect (the HTTP API, the command line).
    #[default]
    Generic,
    /// PostgreSQL's, with the rewrites and `pg_catalog` its clients need ([`postgres`]).
    Postgres,
}

/// SQL over a loaded city, as one caller sees it.
#[derive(Debug, Clone)]
pub struct SqlEngine {
    city: Arc<City>,
    view: Arc<View>,
    tasks: Option<crate::tasks::TaskSource>,
    memory_limit: Option<usize>,
    shared_memory: Option<Arc<memory::SharedMemory>>,
    bounds: SqlBounds,
    on_keys: bool,
    dialect: Dialect,
    /// Partitions a query is planned for (`None`: one a core).
    partitions: Option<usize>,
    /// The most rows a join's side may have to be built once for every partition.
    collect_rows: usize,
}

impl SqlEngine {
    /// Over a store, seeing everything.
    pub fn new(store: Arc<Store>) -> SqlEngine {
        SqlEngine::over(Arc::new(City::new(store)))
    }

    /// Over a city (sharing its caches), seeing everything.
    pub fn over(city: Arc<City>) -> SqlEngine {
        let view = Arc::new(View::full(city.store().clone()));
        SqlEngine {
            city,
            view,
            tasks: None,
            memory_limit: None,
            shared_memory: None,
            bounds: SqlBounds::default(),
            on_keys: true,
            dialect: Dialect::Generic,
            partitions: None,
            collect_rows: COLLECT_ROWS,
        }
    }

    /// The same engine as a caller with `scope` sees it: every table and table function holds
    /// only the rows inside the scope, personal columns masked unless the scope has `pii`.
    /// A scope that names no part of this city is refused.
    pub fn scoped(mut self, scope: Scope) -> Result<SqlEngine> {
        self.view = Arc::new(View::new(self.city.store().clone(), scope)?);
        Ok(self)
    }

    /// The same engine over an existing view of its city.
    pub fn with_view(mut self, view: Arc<View>) -> SqlEngine {
        self.view = view;
        self
    }

    /// Limits the memory each query may use (bytes); a query past it stops with an error.
    pub fn with_memory_limit(mut self, bytes: Option<usize>) -> SqlEngine {
        self.memory_limit = bytes;
        self
    }

    /// Draws each query's memory from a limit shared with other engines' queries.
    pub fn with_shared_memory(mut self, shared: Option<Arc<memory::SharedMemory>>) -> SqlEngine {
        self.shared_memory = shared;
        self
    }

    /// Bounds the size and nesting of the SQL accepted.
    pub fn with_bounds(mut self, bounds: SqlBounds) -> SqlEngine {
        self.bounds = bounds;
        self
    }

    /// Whether queries run on the store's keys ([`keys`]; on by default). Off, they run on the
    /// columns' values throughout, as a reference for tests and benchmarks.
    pub fn on_keys(mut self, on: bool) -> SqlEngine {
        self.on_keys = on;
        self
    }

    /// Plans queries for `partitions` partitions (one a core by default), building a join's
    /// side once for every partition only up to `collect_rows` rows (a million by default).
    /// Tests set them to plan a small city's queries as a large city's are planned: hashed
    /// into partitions on both sides of a join.
    pub fn with_plan_sizes(mut self, partitions: usize, collect_rows: usize) -> SqlEngine {
        self.partitions = Some(partitions.max(1));
        self.collect_rows = collect_rows;
        self
    }

    /// Reads SQL in `dialect`.
    pub fn with_dialect(mut self, dialect: Dialect) -> SqlEngine {
        self.dialect = dialect;
        self
    }

    /// Serves the task lists under a state folder (read from disk) as the `tasks` table.
    pub fn with_state_dir(mut self, dir: Option<PathBuf>) -> SqlEngine {
        self.tasks = dir.map(crate::tasks::TaskSource::Folder);
        self
    }

    /// Serves a server's task lists (read under their lock) as the `tasks` table.
    pub fn with_task_book(
        mut self,
        book: Arc<std::sync::Mutex<crate::tasks::TaskBook>>,
    ) -> SqlEngine {
        self.tasks = Some(crate::tasks::TaskSource::Held(book));
        self
    }

    /// What the engine's caller may see.
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// The city behind the engine (its sweeps, clocks and KPIs).
    pub fn city(&self) -> &Arc<City> {
        &self.city
    }

    /// A session with every table and function registered.
    pub fn context(&self) -> Result<SessionContext> {
        self.context_with(None)
    }

    /// A session whose queries answer to `control`.
    fn context_with(&self, control: Option<Arc<QueryControl>>) -> Result<SessionContext> {
        // Wall-clock readings are China Standard Time: `TIMESTAMP '2026-11-01 00:00:00'` and
        // `now()` are in +08:00.
        let mut config = SessionConfig::new()
            .set_str("datafusion.execution.time_zone", crate::contract::TZ)
            .with_information_schema(true)
            // A join's side of up to a million rows (a table of buildings, deaths, grids; a
            // filtered side) is built once and probed by every partition of the other side,
            // which is then not hashed into partitions first: 15 M people joined to 0.2 M
            // deaths are probed where they are read.
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                self.collect_rows,
            )
            // A join's side of up to 131,072 distinct keys is pushed to the other side's scan
            // as a list of them, from which the scan finds its rows (`keys::listed`).
            .set_usize(
                "datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
                keys::listed::LISTED_KEYS,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_inlist_pushdown_max_size",
                keys::listed::LISTED_BYTES,
            )
            .with_target_partitions(
                self.partitions
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            );
        if let Some(c) = &control {
            config = config.with_extension(c.clone());
        }
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_analyzer_rule(Arc::new(local_time::LocalTimestamps))
            .with_optimizer_rule(Arc::new(join_order::JoinOrder))
            .with_optimizer_rule(Arc::new(distinct::SplitDistinct))
            .with_optimizer_rule(Arc::new(date_trunc::DatesTruncated));
        if self.dialect == Dialect::Postgres {
            builder = postgres::with_types(builder);
        }
        if self.on_keys {
            builder = builder
                .with_query_planner(Arc::new(keys::KeyPlanner::new(&self.view)))
                .with_physical_optimizer_rule(Arc::new(keys::dense::DenseGroups::new(
                    self.view.store().clone(),
                )));
        }
        // Last, so that no other rule looks through its wrappers.
        builder = builder.with_physical_optimizer_rule(Arc::new(StopRule));
        if let Some(bytes) = self.memory_limit {
            // No spilling: a query past its memory stops, it does not fill the disk.
            let pool = memory::QueryMemory::new(bytes, self.shared_memory.clone(), control);
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(pool))
                .with_disk_manager_builder(
                    DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
                )
                .build_arc()
                .map_err(query_error)?;
            builder = builder.with_runtime_env(runtime);
        }
        let ctx = SessionContext::new_with_state(builder.build());
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            date_trunc::DateTrunc::new(),
        ));
        bounded::register(&ctx);
        for &t in TableId::ALL.iter() {
            let table = provider::StoreTable::new(self.view.clone(), t);
            ctx.register_table(t.name(), Arc::new(table) as Arc<dyn TableProvider>)?;
        }
        tables::register(&ctx, &self.city, &self.view, self.tasks.clone())?;
        Ok(ctx)
    }

    /// Runs one read-only query, without a time limit.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        let control = QueryControl::unlimited();
        let df = self.plan(sql, &control).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(query_error)?;
        Ok(QueryResult { schema, batches })
    }

    /// Runs one read-only query under a control, its rows as a stream of batches (for answers
    /// too large to hold). The stream fails with [`Error::Timeout`] or [`Error::Cancelled`]
    /// (through [`query_error`]) once the control stops it.
    pub async fn stream(
        &self,
        sql: &str,
        control: &Arc<QueryControl>,
    ) -> Result<SendableRecordBatchStream> {
        let df = self.plan(sql, control).await?;
        let stream = df.execute_stream().await.map_err(query_error)?;
        Ok(control::stopping(stream, control.clone()))
    }

    /// Runs one read-only query whose `$1`, `$2`, … take the values given (a prepared
    /// statement's execution), its rows as a stream of batches, as [`SqlEngine::stream`].
    pub async fn stream_with(
        &self,
        sql: &str,
        params: Vec<ScalarValue>,
        control: &Arc<QueryControl>,
    ) -> Result<SendableRecordBatchStream> {
        let (ctx, plan) = self.logical(sql, control).await?;
        let plan = plan.with_param_values(params).map_err(query_error)?;
        let df = ctx.execute_logical_plan(plan).await.map_err(query_error)?;
        let stream = df.execute_stream().await.map_err(query_error)?;
        Ok(control::stopping(stream, control.clone()))
    }

    /// What a query would return and which parameters it takes, without running it (for
    /// clients that prepare statements first). Refused like the query itself would be.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared> {
        let (_, plan) = self.logical(sql, &QueryControl::unlimited()).await?;
        let types = plan.get_parameter_types().map_err(query_error)?;
        let n = types
            .keys()
            .filter_map(|k| k.strip_prefix('$')?.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        let params = (1..=n)
            .map(|i| types.get(&format!("${i}")).cloned().flatten())
            .collect();
        Ok(Prepared {
            schema: Arc::new(plan.schema().as_arrow().clone()),
            params,
        })
    }

    /// Checks a query's size and nesting, and plans it.
    async fn plan(&self, sql: &str, control: &Arc<QueryControl>) -> Result<DataFrame> {
        let (ctx, plan) = self.logical(sql, control).await?;
        ctx.execute_logical_plan(plan).await.map_err(query_error)
    }

    /// Checks a query's size and nesting, and makes its logical plan in a session of its own,
    /// refusing anything but a read.
    async fn logical(
        &self,
        sql: &str,
        control: &Arc<QueryControl>,
    ) -> Result<(SessionContext, LogicalPlan)> {
        if sql.len() > self.bounds.max_bytes {
            return Err(Error::TooComplex(format!(
                "the SQL is {:.1} KiB; at most {} KiB is accepted",
                sql.len() as f64 / 1024.0,
                self.bounds.max_bytes >> 10
            )));
        }
        let ctx = self.context_with(Some(control.clone()))?;
        let mut statements = match self.dialect {
            Dialect::Generic => DFParserBuilder::new(sql)
                .with_dialect(&GenericDialect {})
                .build()
                .and_then(|mut p| p.parse_statements())
                .map_err(|e| parse_error(&e))?,
            Dialect::Postgres => {
                postgres::install(&ctx).await?;
                postgres::parse(sql)?
                    .into_iter()
                    .map(|s| DfStatement::Statement(Box::new(s)))
                    .collect()
            }
        };
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
            let depth = control::nesting(s, self.bounds.max_depth);
            if depth > self.bounds.max_depth {
                return Err(Error::TooComplex(format!(
                    "the SQL nests expressions or subqueries more than {} deep; split it up, \
                     or use IN (…) instead of long chains of AND / OR",
                    self.bounds.max_depth
                )));
            }
            let _ = s.visit(&mut tables::NamedArgs);
        }
        control.check().map_err(query_error)?;
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
        Ok((ctx, plan))
    }

    /// Runs one query on a runtime of its own (for callers that are not async), on the
    /// runtime's threads (whose stacks are deep enough for any SQL accepted).
    pub fn query_blocking(&self, sql: &str) -> Result<QueryResult> {
        let rt = query_runtime(None)
            .map_err(|e| Error::Internal(format!("starting the query runtime: {e}")))?;
        let (engine, sql) = (self.clone(), sql.to_string());
        rt.block_on(rt.spawn(async move { engine.query(&sql).await }))
            .map_err(|e| Error::Internal(format!("the query task failed: {e}")))?
    }
}

/// A tokio runtime for queries: threads with stacks deep enough for any SQL within
/// [`SqlBounds`].
pub fn query_runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n.max(1));
    }
    b.thread_name("gridlens-query")
        .thread_stack_size(control::QUERY_STACK)
        .enable_all()
        .build()
}

/// A plan node with every part of its expressions that `replace` gives a replacement for
/// replaced (bottom-up), each expression under its own name.
pub(crate) fn replace_keeping_names(
    plan: LogicalPlan,
    replace: impl Fn(&Expr) -> Option<Expr>,
) -> std::result::Result<Transformed<LogicalPlan>, DataFusionError> {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::expr_rewriter::NamePreserver;
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|e| {
        let saved = names.save(&e);
        let t = e.transform_up(|x| {
            Ok(match replace(&x) {
                Some(y) => Transformed::yes(y),
                None => Transformed::no(x),
            })
        })?;
        Ok(t.update_data(|e| saved.restore(e)))
    })
}

/// A parse error as one sentence.
fn parse_error(e: &DataFusionError) -> Error {
    let text = strip(e);
    if text.contains("RecursionLimitExceeded") || text.to_lowercase().contains("recursion limit") {
        return Error::TooComplex(
            "the SQL nests parentheses or subqueries too deeply; split it up".into(),
        );
    }
    let text = text
        .trim_start_matches("SQL error: ")
        .trim_start_matches("ParserError(\"")
        .trim_end_matches("\")")
        .to_string();
    Error::Query(format!("the SQL does not parse: {text}"))
}

/// DataFusion's message without the prefixes that name its internals.
fn strip(e: &DataFusionError) -> String {
    const PREFIXES: [&str; 8] = [
        "Error during planning: ",
        "External error: ",
        "Execution error: ",
        "Arrow error: ",
        "Schema error: ",
        "Invalid argument error: ",
        "Optimizer rule '",
        "This feature is not implemented: ",
    ];
    let mut text = e.to_string();
    loop {
        let before = text.len();
        for p in PREFIXES {
            if let Some(rest) = text.strip_prefix(p) {
                text = match p {
                    // "Optimizer rule 'x' failed\ncaused by\n…": the cause.
                    "Optimizer rule '" => rest
                        .split_once("caused by")
                        .map(|(_, c)| c.trim().to_string())
                        .unwrap_or_else(|| rest.to_string()),
                    _ => rest.to_string(),
                };
            }
        }
        if text.len() == before {
            return text;
        }
    }
}

/// An error of DataFusion as the engine reports it: a memory limit reached is
/// [`Error::ResourcesExhausted`], anything else a query error with DataFusion's prefixes removed.
pub fn query_error(e: DataFusionError) -> Error {
    let root = e.find_root();
    if let DataFusionError::External(x) = root
        && let Some(Stopped(why)) = x.downcast_ref::<Stopped>()
    {
        return match why {
            control::Stop::Timeout => Error::Timeout,
            control::Stop::Cancelled => Error::Cancelled,
            control::Stop::Memory => memory_error(),
        };
    }
    if let DataFusionError::External(x) = root
        && let Some(inner) = x.downcast_ref::<Error>()
    {
        return match inner {
            Error::Forbidden(m) => Error::Forbidden(m.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
            other => Error::Query(other.to_string()),
        };
    }
    match root {
        DataFusionError::ResourcesExhausted(m) if m.contains(memory::SHARED_EXHAUSTED) => {
            Error::Busy(
                "the memory the server keeps for queries is taken by other queries just now; \
                 try again shortly"
                    .into(),
            )
        }
        DataFusionError::ResourcesExhausted(_) => memory_error(),
        _ => Error::Query(first_line(&strip(&e))),
    }
}

/// A query past its memory limit.
fn memory_error() -> Error {
    Error::ResourcesExhausted(
        "the query needs more memory than it may use and was stopped; narrow it (a filter, \
         fewer columns, a LIMIT) or ask an admin for a larger --query-memory-mb"
            .into(),
    )
}

/// The first line of a message (DataFusion's may go on with internals).
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}
