//! What keeps one query from taking the server down: bounds on its SQL (size and nesting), and a
//! [`QueryControl`] that stops it — at its deadline, or when its caller goes away — and makes it
//! share the cores with everyone else's.
//!
//! DataFusion runs a query as streams polled by tokio tasks; a stream that keeps producing never
//! gives its task back, so neither a deadline nor another caller gets a turn. Two things fix that:
//! - every [`crate::sql::provider::StoreScan`] checks the control before each batch it reads;
//! - [`StopRule`] puts a [`StopExec`] above every operator that can do unbounded work between
//!   two reads of its input (joins, which may cross every row with every row; unnest; window
//!   functions; generated series) and above every leaf the engine did not write. It checks the
//!   control before passing on each batch, and gives the thread back every [`SLICE`] of work,
//!   so that small queries are served while a large one runs.
//!
//! A stopped query fails with [`Stopped`] at its next batch, everywhere at once: its tasks end
//! and its CPU is released.

use datafusion::common::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long a query's task works before it gives its thread back to other queries.
pub const SLICE: Duration = Duration::from_millis(1);

/// Why a query was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// It ran past its time limit.
    Timeout,
    /// Its caller went away or cancelled it.
    Cancelled,
    /// It needed more memory than it may use (and cannot spill).
    Memory,
}

/// The error a stopped query fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped(pub Stop);

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Stop::Timeout => f.write_str("the query ran past its time limit and was stopped"),
            Stop::Cancelled => f.write_str("the query was cancelled"),
            Stop::Memory => f.write_str("the query needed more memory than it may use"),
        }
    }
}

impl std::error::Error for Stopped {}

/// The control of one running query, shared by whoever runs it and the plan's operators.
#[derive(Debug)]
pub struct QueryControl {
    /// 0: running; else 1 + [`Stop`] as a number.
    state: AtomicU8,
    deadline: Option<Instant>,
    started: Instant,
    notify: tokio::sync::Notify,
}

impl QueryControl {
    /// A control for a query starting now, stopped at `timeout` if one is given.
    pub fn new(timeout: Option<Duration>) -> Arc<QueryControl> {
        let started = Instant::now();
        Arc::new(QueryControl {
            state: AtomicU8::new(0),
            deadline: timeout.map(|t| started + t),
            started,
            notify: tokio::sync::Notify::new(),
        })
    }

    /// A control without a time limit.
    pub fn unlimited() -> Arc<QueryControl> {
        QueryControl::new(None)
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// When the query started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the query (the first reason given stays).
    pub fn stop(&self, why: Stop) {
        let code = match why {
            Stop::Timeout => 1,
            Stop::Cancelled => 2,
            Stop::Memory => 3,
        };
        if self
            .state
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_waiters();
        }
    }

    /// Why the query was stopped, if it was (a deadline passed counts as a timeout).
    pub fn stopped(&self) -> Option<Stop> {
        match self.state.load(Ordering::Acquire) {
            1 => Some(Stop::Timeout),
            2 => Some(Stop::Cancelled),
            3 => Some(Stop::Memory),
            _ => {
                if self.deadline.is_some_and(|d| Instant::now() >= d) {
                    self.stop(Stop::Timeout);
                    return self.stopped();
                }
                None
            }
        }
    }

    /// `Err` once the query is stopped.
    pub fn check(&self) -> DfResult<()> {
        match self.stopped() {
            Some(why) => Err(DataFusionError::External(Box::new(Stopped(why)))),
            None => Ok(()),
        }
    }

    /// Resolves once the query is stopped (by [`QueryControl::stop`] or at its deadline).
    pub async fn wait_stopped(&self) -> Stop {
        loop {
            let notified = self.notify.notified();
            if let Some(why) = self.stopped() {
                return why;
            }
            match self.deadline {
                Some(d) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(d.into()) => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}

/// Stops the query when dropped, unless disarmed: held by whoever waits for a query's answer,
/// so that a caller who goes away stops the work done for them.
#[derive(Debug)]
pub struct StopOnDrop(pub Option<Arc<QueryControl>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.stop(Stop::Cancelled);
        }
    }
}

/// The control of the query a task context runs (a session without one runs unchecked).
pub fn control_of(ctx: &TaskContext) -> Option<Arc<QueryControl>> {
    ctx.session_config().get_extension::<QueryControl>()
}

/// Puts a [`StopExec`] above each operator that may work without end between two reads of its
/// input. It runs last, so that no other rule looks through the wrappers.
#[derive(Debug, Default)]
pub struct StopRule;

/// Whether an operator can do unbounded work per batch of its input (a join may cross every
/// row with every row; a generated series has no input at all). Other operators do work in
/// proportion to what they read, and what they read is checked below them.
fn needs_stop(plan: &dyn ExecutionPlan) -> bool {
    let name = plan.name();
    name.contains("Join")
        || name.contains("Window")
        || matches!(name, "UnnestExec" | "RecursiveQueryExec" | "LazyMemoryExec")
}

impl PhysicalOptimizerRule for StopRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        plan.transform_up(|p| {
            if needs_stop(p.as_ref()) && !p.is::<StopExec>() {
                Ok(Transformed::yes(
                    Arc::new(StopExec::new(p)) as Arc<dyn ExecutionPlan>
                ))
            } else {
                Ok(Transformed::no(p))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "StopRule"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input's batches on unchanged, unless the query is stopped; gives the thread back
/// every [`SLICE`] of work.
#[derive(Debug)]
pub struct StopExec {
    input: Arc<dyn ExecutionPlan>,
    props: Arc<PlanProperties>,
}

impl StopExec {
    /// Above an operator.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> StopExec {
        let props = input.properties().clone();
        StopExec { input, props }
    }
}

impl DisplayAs for StopExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("StopExec")
    }
}

impl ExecutionPlan for StopExec {
    fn name(&self) -> &str {
        "StopExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(c) if children.is_empty() => Ok(Arc::new(StopExec::new(c))),
            _ => Err(DataFusionError::Internal("StopExec takes one input".into())),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let control = control_of(&context);
        if let Some(c) = &control {
            c.check()?;
        }
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let Some(control) = control else {
            return Ok(input);
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            Stopping::new(input, control),
        )))
    }
}

/// A stream that ends with [`Stopped`] once its query is stopped, and yields every [`SLICE`].
pub struct Stopping<S> {
    input: S,
    control: Arc<QueryControl>,
    since_yield: Instant,
    held: Option<DfResult<arrow::array::RecordBatch>>,
    done: bool,
}

impl<S> Stopping<S> {
    /// Over a stream of batches.
    pub fn new(input: S, control: Arc<QueryControl>) -> Stopping<S> {
        Stopping {
            input,
            control,
            since_yield: Instant::now(),
            held: None,
            done: false,
        }
    }
}

impl<S> Stream for Stopping<S>
where
    S: Stream<Item = DfResult<arrow::array::RecordBatch>> + Unpin,
{
    type Item = DfResult<arrow::array::RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Err(e) = self.control.check() {
            self.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        if let Some(held) = self.held.take() {
            self.since_yield = Instant::now();
            return Poll::Ready(Some(held));
        }
        match self.input.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => {
                if self.since_yield.elapsed() >= SLICE {
                    // Give the thread back: the batch is passed on at the next poll.
                    self.held = Some(item);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.since_yield = Instant::now();
                Poll::Pending
            }
        }
    }
}

/// What an analyst's SQL may be: its size and how deeply it nests.
#[derive(Debug, Clone, Copy)]
pub struct SqlBounds {
    /// Bytes of SQL text.
    pub max_bytes: usize,
    /// Expressions and subqueries nested inside each other.
    pub max_depth: usize,
}

impl Default for SqlBounds {
    fn default() -> Self {
        SqlBounds {
            max_bytes: 64 << 10,
            max_depth: 256,
        }
    }
}

/// Counts how deeply expressions and queries nest, and stops counting past a limit.
struct Depth {
    now: usize,
    deepest: usize,
    limit: usize,
}

impl Depth {
    fn enter(&mut self) -> std::ops::ControlFlow<()> {
        self.now += 1;
        self.deepest = self.deepest.max(self.now);
        if self.now > self.limit {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }
    fn leave(&mut self) -> std::ops::ControlFlow<()> {
        self.now = self.now.saturating_sub(1);
        std::ops::ControlFlow::Continue(())
    }
}

impl datafusion::sql::sqlparser::ast::Visitor for Depth {
    type Break = ();
    fn pre_visit_expr(
        &mut self,
        _e: &datafusion::sql::sqlparser::ast::Expr,
    ) -> std::ops::ControlFlow<()> {
        self.enter()
    }
    fn post_visit_expr(
        &mut self,
        _e: &datafusion::sql::sqlparser::ast::Expr,
    ) -> std::ops::ControlFlow<()> {
        self.leave()
    }
    fn pre_visit_query(
        &mut self,
        q: &datafusion::sql::sqlparser::ast::Query,
    ) -> std::ops::ControlFlow<()> {
        // A chain of UNION / INTERSECT / EXCEPT nests as deep as it is long; it is measured
        // without recursion before the visit goes down it.
        let chain = set_depth(&q.body);
        self.deepest = self.deepest.max(self.now + chain);
        if self.now + chain > self.limit {
            return std::ops::ControlFlow::Break(());
        }
        self.enter()
    }
    fn post_visit_query(
        &mut self,
        _q: &datafusion::sql::sqlparser::ast::Query,
    ) -> std::ops::ControlFlow<()> {
        self.leave()
    }
}

/// How deeply set operations (`UNION`, …) nest in a query body, counted with an explicit
/// stack.
fn set_depth(body: &datafusion::sql::sqlparser::ast::SetExpr) -> usize {
    use datafusion::sql::sqlparser::ast::SetExpr;
    let mut stack = vec![(body, 1usize)];
    let mut deepest = 0;
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        match e {
            SetExpr::SetOperation { left, right, .. } => {
                stack.push((left, d + 1));
                stack.push((right, d + 1));
            }
            SetExpr::Query(q) => stack.push((&q.body, d + 1)),
            _ => {}
        }
    }
    deepest
}

/// How deeply a statement nests (expressions and queries), counted up to `limit + 1`.
pub fn nesting(statement: &datafusion::sql::sqlparser::ast::Statement, limit: usize) -> usize {
    use datafusion::sql::sqlparser::ast::Visit;
    let mut d = Depth {
        now: 0,
        deepest: 0,
        limit,
    };
    let _ = statement.visit(&mut d);
    d.deepest
}

/// The stack of a thread that plans and runs queries: deep enough for any statement within
/// [`SqlBounds`] (DataFusion's planner and optimizer recurse over the expression tree).
pub const QUERY_STACK: usize = 64 << 20;

/// A stream of batches of a running query, checked against its control.
pub fn stopping(
    stream: SendableRecordBatchStream,
    control: Arc<QueryControl>,
) -> SendableRecordBatchStream {
    let schema = stream.schema();
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        Stopping::new(stream, control),
    ))
}
