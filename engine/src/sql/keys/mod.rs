//! Execution on keys: queries run on the store's dense `u32` keys, and strings are made only for
//! what leaves the query.
//!
//! The store holds references, identity numbers, pooled text and enums as keys ([`space`]).
//! After DataFusion has optimized a query's logical plan, [`KeyPlanner`] rewrites it once,
//! bottom-up, before physical planning:
//!
//! - every scan of a loaded table reads the columns that have a key space (and that the caller
//!   sees unmasked) as `UInt32` keys, marked in the field's metadata with their space;
//! - a key column stays a key where keys give the same answer as the values: passed through a
//!   projection, filter, limit, alias or `DISTINCT`; a join key whose other side is a key of the
//!   same space (a reference and the key it points to, two identity columns); a group-by
//!   column; `PARTITION BY`; the argument of `count` and `count(DISTINCT …)`; `=`, `<>` and
//!   `IN` against literals (each literal looked up once) or against a key of the same space;
//!   `IS NULL`; a column of a `UNION` that is a key of one space in every input (a cast of a
//!   key to the type its keys decode to, as type coercion puts on a union's inputs, is the key);
//! - a part of an expression that reads one key column alone and whose space is small
//!   (`substr(month, 1, 4)`, `CASE WHEN district_code = … END`, `name LIKE '%x%'` over a
//!   column's own pool) is worked out once per key and looked up by key ([`per_key`]);
//! - a group-by whose columns are all keys of spaces small enough is counted in arrays indexed
//!   by key, not hashed ([`dense`]: `count` and `sum`);
//! - a join's side of few keys is pushed to the other side's scan as a list, and the rows
//!   holding them are found from the keys, not by testing every row ([`listed`]);
//! - anywhere else (a sort, `min`, `LIKE`, a function) the key column is first
//!   turned back into its values by `key_text(column)`, in a projection placed just below the
//!   node that needs them, and so are the key columns the query returns, at its top.
//!
//! Masked columns are never read as keys: they are masked values from the scan up, as before.
//! The rewrite keeps the query's output names and types; when it cannot (or a plan holds a
//! subquery it does not follow), the plan is run as DataFusion made it. `EXPLAIN` shows the
//! scans' `keys=[…]` and each `key_text`.

pub mod dense;
pub mod listed;
pub mod per_key;
pub mod space;

use crate::scope::View;
use crate::store::{NONE, Store};
use arrow::array::{AsArray, UInt32Array};
use arrow::datatypes::{DataType, Field, FieldRef, UInt32Type};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result as DfResult;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::expr::{AggregateFunction, InList, ScalarFunction};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Distinct, Explain, Expr, LogicalPlan, Operator, PlanType,
    Projection, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableScan, TableScanBuilder, ToStringifiedPlan, Volatility, WindowFunctionDefinition,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use per_key::PerKey;
use space::{KEY_META, KeySpace};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::provider::StoreTable;

/// Plans queries with execution on keys (see the module's documentation).
#[derive(Debug)]
pub struct KeyPlanner {
    store: Arc<Store>,
}

impl KeyPlanner {
    /// A planner for the queries of a view.
    pub fn new(view: &Arc<View>) -> KeyPlanner {
        KeyPlanner {
            store: view.store().clone(),
        }
    }

    /// The plan rewritten to run on keys, or the plan itself where it cannot be.
    pub fn rewrite(&self, plan: &LogicalPlan) -> LogicalPlan {
        match plan {
            LogicalPlan::Explain(e) => {
                let inner = self.rewrite(&e.plan);
                let mut stringified_plans = e.stringified_plans.clone();
                stringified_plans.push(inner.to_stringified(PlanType::OptimizedLogicalPlan {
                    optimizer_name: "gridlens_keys".into(),
                }));
                LogicalPlan::Explain(Explain {
                    plan: Arc::new(inner),
                    stringified_plans,
                    ..e.clone()
                })
            }
            LogicalPlan::Analyze(a) => {
                let mut a = a.clone();
                a.input = Arc::new(self.rewrite(&a.input));
                LogicalPlan::Analyze(a)
            }
            _ => self.try_rewrite(plan).unwrap_or_else(|_| plan.clone()),
        }
    }

    fn try_rewrite(&self, plan: &LogicalPlan) -> DfResult<LogicalPlan> {
        if !reads_keys(plan) || !works_on_keys(plan) || follows_subqueries(plan) {
            return Ok(plan.clone());
        }
        let new = self.node(plan)?;
        let all: BTreeSet<Column> = encoded(new.schema()).into_keys().collect();
        let new = self.decode(new, &all)?;
        if !same_shape(plan.schema(), new.schema()) {
            return Ok(plan.clone());
        }
        Ok(new)
    }

    /// A node rewritten over its rewritten inputs.
    fn node(&self, plan: &LogicalPlan) -> DfResult<LogicalPlan> {
        if let LogicalPlan::TableScan(s) = plan {
            return scan(s);
        }
        let inputs = plan
            .inputs()
            .into_iter()
            .map(|p| self.node(p))
            .collect::<DfResult<Vec<_>>>()?;
        match plan {
            LogicalPlan::Projection(p) => {
                let pass = vec![true; p.expr.len()];
                self.single(plan, inputs, &pass)
            }
            LogicalPlan::Aggregate(a) => {
                let mut pass = vec![true; a.group_expr.len()];
                pass.extend(vec![false; a.aggr_expr.len()]);
                self.single(plan, inputs, &pass)
            }
            LogicalPlan::Filter(_) | LogicalPlan::Window(_) | LogicalPlan::Sort(_) => {
                let n = plan.expressions().len();
                self.single(plan, inputs, &vec![false; n])
            }
            LogicalPlan::Limit(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Distinct(Distinct::All(_)) => {
                plan.with_new_exprs(plan.expressions(), inputs)
            }
            LogicalPlan::Union(_) => self.union(inputs),
            LogicalPlan::Join(j) => {
                let mut inputs = inputs.into_iter();
                let (Some(l), Some(r)) = (inputs.next(), inputs.next()) else {
                    return plan.with_new_exprs(plan.expressions(), Vec::new());
                };
                self.join(plan, &j.on, j.filter.as_ref(), l, r)
            }
            _ => {
                // Anything else sees values.
                let inputs = inputs
                    .into_iter()
                    .map(|i| {
                        let all = encoded(i.schema()).into_keys().collect();
                        self.decode(i, &all)
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                plan.with_new_exprs(plan.expressions(), inputs)
            }
        }
    }

    /// A node with one input: its key columns that some expression needs as values are decoded
    /// below it, the others stay keys (`pass[i]`: expression `i` may pass a key column through).
    fn single(
        &self,
        plan: &LogicalPlan,
        inputs: Vec<LogicalPlan>,
        pass: &[bool],
    ) -> DfResult<LogicalPlan> {
        let Some(input) = inputs.into_iter().next() else {
            return plan.with_new_exprs(plan.expressions(), Vec::new());
        };
        let all = encoded(input.schema());
        let named = matches!(plan, LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_));
        let original: Vec<Expr> = match plan {
            LogicalPlan::Projection(_) => plan
                .expressions()
                .into_iter()
                .map(|e| self.uncast(e, &all))
                .collect(),
            _ => plan.expressions(),
        };
        // Columns some expression needs as values are decoded below the node; a function of
        // one key column is worked out per key only over a column that stays a key.
        let mut values_only = BTreeSet::new();
        let (exprs, enc, decoded) = loop {
            let per_key_over: Enc = all
                .iter()
                .filter(|(c, _)| !values_only.contains(*c))
                .map(|(c, s)| (c.clone(), s.clone()))
                .collect();
            let exprs = match plan {
                // A window's expressions keep their own names: left as they are.
                LogicalPlan::Window(_) => original.clone(),
                _ => original
                    .iter()
                    .map(|e| self.per_key(e.clone(), &per_key_over, named))
                    .collect::<DfResult<Vec<_>>>()?,
            };
            let (enc, decoded) = self.needed_values(&exprs, pass, all.clone());
            // Each turn adds a column not excluded before: the loop ends.
            if !exprs.iter().any(|e| reads_per_key(e, &decoded)) {
                break (exprs, enc, decoded);
            }
            values_only.extend(decoded);
        };
        let input = self.decode(input, &decoded)?;
        let exprs = exprs
            .into_iter()
            .map(|e| self.keyed(e, &enc))
            .collect::<DfResult<Vec<_>>>()?;
        plan.with_new_exprs(exprs, vec![input])
    }

    /// A projection's cast of a key column to the type its keys decode to (as type coercion
    /// puts on the inputs of a `UNION`) is the column itself: it stays a key, under the
    /// expression's name.
    fn uncast(&self, e: Expr, enc: &Enc) -> Expr {
        let (inner, relation, name) = match &e {
            Expr::Alias(a) => (a.expr.as_ref(), a.relation.clone(), a.name.clone()),
            _ => (&e, None, e.schema_name().to_string()),
        };
        if let Expr::Cast(c) = inner
            && let Expr::Column(col) = c.expr.as_ref()
            && enc
                .get(col)
                .is_some_and(|s| &s.value_type(&self.store) == c.field.data_type())
        {
            return Expr::Column(col.clone()).alias_qualified(relation, name);
        }
        e
    }

    /// A union: a column that is a key of one space in every input stays a key; the other key
    /// columns are turned into values in each input.
    fn union(&self, inputs: Vec<LogicalPlan>) -> DfResult<LogicalPlan> {
        let column = |p: &LogicalPlan, i: usize| {
            let (q, f) = p.schema().qualified_field(i);
            Column::new(q.cloned(), f.name())
        };
        let encs: Vec<Enc> = inputs.iter().map(|p| encoded(p.schema())).collect();
        let width = inputs.first().map_or(0, |p| p.schema().fields().len());
        let keep: Vec<bool> = (0..width)
            .map(|i| {
                let mut spaces = inputs.iter().zip(&encs).map(|(p, e)| e.get(&column(p, i)));
                let first = spaces.next().flatten();
                first.is_some() && spaces.all(|s| s == first)
            })
            .collect();
        let inputs = inputs
            .into_iter()
            .zip(&encs)
            .map(|(p, e)| {
                let values: BTreeSet<Column> = (0..width)
                    .filter(|&i| !keep[i])
                    .map(|i| column(&p, i))
                    .filter(|c| e.contains_key(c))
                    .collect();
                self.decode(p, &values).map(Arc::new)
            })
            .collect::<DfResult<Vec<_>>>()?;
        Ok(LogicalPlan::Union(
            datafusion::logical_expr::Union::try_new(inputs)?,
        ))
    }

    /// The key columns that a node's expressions need as values (`pass[i]`: expression `i`
    /// may pass a key column through), and the key columns left.
    fn needed_values(
        &self,
        exprs: &[Expr],
        pass: &[bool],
        mut enc: Enc,
    ) -> (Enc, BTreeSet<Column>) {
        let mut decoded = BTreeSet::new();
        loop {
            let mut d = BTreeSet::new();
            for (e, &p) in exprs
                .iter()
                .zip(pass.iter().chain(std::iter::repeat(&false)))
            {
                if !(p && bare(e).is_some()) {
                    self.flag(e, &enc, &mut d);
                }
            }
            if d.is_empty() {
                return (enc, decoded);
            }
            for c in &d {
                enc.remove(c);
            }
            decoded.extend(d);
        }
    }

    fn join(
        &self,
        plan: &LogicalPlan,
        on: &[(Expr, Expr)],
        filter: Option<&Expr>,
        l: LogicalPlan,
        r: LogicalPlan,
    ) -> DfResult<LogicalPlan> {
        let (mut el, mut er) = (encoded(l.schema()), encoded(r.schema()));
        let (mut dl, mut dr) = (BTreeSet::new(), BTreeSet::new());
        loop {
            let (mut nl, mut nr) = (BTreeSet::new(), BTreeSet::new());
            for (a, b) in on {
                let same = match (bare(a), bare(b)) {
                    (Some(a), Some(b)) => el.get(a).is_some_and(|s| er.get(b) == Some(s)),
                    _ => false,
                };
                if !same {
                    self.flag(a, &el, &mut nl);
                    self.flag(b, &er, &mut nr);
                }
            }
            if let Some(f) = filter {
                let both: Enc = el
                    .iter()
                    .chain(&er)
                    .map(|(c, s)| (c.clone(), s.clone()))
                    .collect();
                let mut d = BTreeSet::new();
                self.flag(f, &both, &mut d);
                for c in d {
                    if el.contains_key(&c) {
                        nl.insert(c);
                    } else {
                        nr.insert(c);
                    }
                }
            }
            if nl.is_empty() && nr.is_empty() {
                break;
            }
            for c in &nl {
                el.remove(c);
            }
            for c in &nr {
                er.remove(c);
            }
            dl.extend(nl);
            dr.extend(nr);
        }
        let (l, r) = (self.decode(l, &dl)?, self.decode(r, &dr)?);
        let both: Enc = el.into_iter().chain(er).collect();
        let mut exprs: Vec<Expr> = on
            .iter()
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        if let Some(f) = filter {
            exprs.push(self.keyed(f.clone(), &both)?);
        }
        plan.with_new_exprs(exprs, vec![l, r])
    }

    /// An expression with its parts that read one key column alone (`substr(month, 1, 4)`)
    /// worked out once per key ([`PerKey`]); with `named`, under the expression's own name.
    fn per_key(&self, e: Expr, enc: &Enc, named: bool) -> DfResult<Expr> {
        if enc.is_empty() {
            return Ok(e);
        }
        let name = named.then(|| e.schema_name().to_string());
        let out = e.transform_down(|x| {
            if matches!(x, Expr::Column(_) | Expr::Literal(..) | Expr::Alias(_)) {
                return Ok(Transformed::no(x));
            }
            let on_keys = match &x {
                Expr::IsNull(c) | Expr::IsNotNull(c) => key_column(c, enc).is_some(),
                _ => key_column(&x, enc).is_some() || self.comparison(&x, enc).is_some(),
            };
            if on_keys {
                return Ok(Transformed::new(x, false, TreeNodeRecursion::Jump));
            }
            let cols = x.column_refs();
            let made = match cols.iter().next() {
                Some(&c) if cols.len() == 1 => enc
                    .get(c)
                    .and_then(|space| PerKey::new(&self.store, space, c, &x))
                    .map(|udf| (c.clone(), udf)),
                _ => None,
            };
            Ok(match made {
                Some((c, udf)) => Transformed::new(
                    Expr::ScalarFunction(ScalarFunction::new_udf(
                        Arc::new(ScalarUDF::new_from_impl(udf)),
                        vec![Expr::Column(c)],
                    )),
                    true,
                    TreeNodeRecursion::Jump,
                ),
                None => Transformed::no(x),
            })
        })?;
        Ok(match name {
            Some(n) if out.transformed && out.data.schema_name().to_string() != n => {
                out.data.alias(n)
            }
            _ => out.data,
        })
    }

    /// Adds to `d` the key columns an expression needs as values.
    fn flag(&self, e: &Expr, enc: &Enc, d: &mut BTreeSet<Column>) {
        match e {
            Expr::Column(c) => {
                if enc.contains_key(c) {
                    d.insert(c.clone());
                }
            }
            _ if self.comparison(e, enc).is_some() => {}
            Expr::ScalarFunction(f) if per_key::is_per_key(&f.func) => {}
            Expr::IsNull(x) | Expr::IsNotNull(x) if key_column(x, enc).is_some() => {}
            Expr::AggregateFunction(AggregateFunction { func, params }) => {
                let counts = func.name() == "count";
                for a in &params.args {
                    if !(counts && bare(a).is_some()) {
                        self.flag(a, enc, d);
                    }
                }
                if let Some(f) = &params.filter {
                    self.flag(f, enc, d);
                }
                for s in &params.order_by {
                    self.flag(&s.expr, enc, d);
                }
            }
            Expr::WindowFunction(w) => {
                let counts = matches!(&w.fun, WindowFunctionDefinition::AggregateUDF(f) if f.name() == "count");
                for a in &w.params.args {
                    if !(counts && bare(a).is_some()) {
                        self.flag(a, enc, d);
                    }
                }
                for p in &w.params.partition_by {
                    if bare(p).is_none() {
                        self.flag(p, enc, d);
                    }
                }
                for s in &w.params.order_by {
                    self.flag(&s.expr, enc, d);
                }
                if let Some(f) = &w.params.filter {
                    self.flag(f, enc, d);
                }
            }
            _ => {
                let _ = e.apply_children(|c| {
                    self.flag(c, enc, d);
                    Ok(TreeNodeRecursion::Continue)
                });
            }
        }
    }

    /// An expression with its comparisons on key columns made on keys.
    fn keyed(&self, e: Expr, enc: &Enc) -> DfResult<Expr> {
        if enc.is_empty() {
            return Ok(e);
        }
        Ok(e.transform_down(|x| {
            Ok(match self.comparison(&x, enc) {
                Some(k) => Transformed::new(k, true, TreeNodeRecursion::Jump),
                None => Transformed::no(x),
            })
        })?
        .data)
    }

    /// A comparison answered on keys: `key = literal`, `key <> literal`, `key IN (literals)`,
    /// `key = key` of one space; as it reads on keys.
    fn comparison(&self, e: &Expr, enc: &Enc) -> Option<Expr> {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) =>
            {
                let (kl, kr) = (key_column(left, enc), key_column(right, enc));
                let make = |l: Expr, r: Expr| {
                    Some(Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(l),
                        *op,
                        Box::new(r),
                    )))
                };
                match (kl, kr) {
                    (Some((a, sa)), Some((b, sb))) if sa == sb => {
                        make(Expr::Column(a), Expr::Column(b))
                    }
                    (Some((a, s)), None) => make(Expr::Column(a), self.key_literal(right, s)?),
                    (None, Some((b, s))) => make(self.key_literal(left, s)?, Expr::Column(b)),
                    _ => None,
                }
            }
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) => {
                let (c, s) = key_column(expr, enc)?;
                let list = list
                    .iter()
                    .map(|x| self.key_literal(x, s))
                    .collect::<Option<Vec<_>>>()?;
                Some(Expr::InList(InList::new(
                    Box::new(Expr::Column(c)),
                    list,
                    *negated,
                )))
            }
            _ => None,
        }
    }

    /// A text literal as a key of `space` (a value no row holds becomes a key no row has).
    fn key_literal(&self, e: &Expr, space: &KeySpace) -> Option<Expr> {
        let v = match text_literal(e)? {
            None => None,
            Some(v) => Some(space.lookup(&self.store, &v)?.unwrap_or(NONE)),
        };
        Some(Expr::Literal(ScalarValue::UInt32(v), None))
    }

    /// A plan with some of its key columns turned back into values (same names).
    fn decode(&self, input: LogicalPlan, cols: &BTreeSet<Column>) -> DfResult<LogicalPlan> {
        if cols.is_empty() {
            return Ok(input);
        }
        let enc = encoded(input.schema());
        let exprs = input
            .schema()
            .iter()
            .map(|(q, f)| {
                let c = Column::new(q.cloned(), f.name());
                match enc.get(&c) {
                    Some(space) if cols.contains(&c) => {
                        let udf = ScalarUDF::new_from_impl(KeyText::new(&self.store, space));
                        Expr::ScalarFunction(ScalarFunction::new_udf(
                            Arc::new(udf),
                            vec![Expr::Column(c)],
                        ))
                        .alias_qualified(q.cloned(), f.name())
                    }
                    _ => Expr::Column(c),
                }
            })
            .collect();
        Ok(LogicalPlan::Projection(Projection::try_new(
            exprs,
            Arc::new(input),
        )?))
    }
}

#[async_trait]
impl QueryPlanner for KeyPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self.rewrite(logical_plan);
        DefaultPhysicalPlanner::default()
            .create_physical_plan(&plan, session)
            .await
    }
}

/// Key columns of a schema and their spaces.
type Enc = BTreeMap<Column, KeySpace>;

fn encoded(schema: &DFSchema) -> Enc {
    schema
        .iter()
        .filter_map(|(q, f)| {
            let s = KeySpace::parse(f.metadata().get(KEY_META)?)?;
            (f.data_type() == &DataType::UInt32).then(|| (Column::new(q.cloned(), f.name()), s))
        })
        .collect()
}

/// Whether an expression works out something per key over one of these columns.
fn reads_per_key(e: &Expr, cols: &BTreeSet<Column>) -> bool {
    e.exists(|x| {
        Ok(match x {
            Expr::ScalarFunction(f) if per_key::is_per_key(&f.func) => f
                .args
                .iter()
                .any(|a| bare(a).is_some_and(|c| cols.contains(c))),
            _ => false,
        })
    })
    .unwrap_or(true)
}

/// The column an expression is, possibly under aliases.
fn bare(e: &Expr) -> Option<&Column> {
    match e {
        Expr::Column(c) => Some(c),
        Expr::Alias(a) => bare(&a.expr),
        _ => None,
    }
}

/// A key column, possibly cast to text (a cast that keeps its values, so equal values stay
/// equal).
fn key_column<'a>(e: &Expr, enc: &'a Enc) -> Option<(Column, &'a KeySpace)> {
    match e {
        Expr::Column(c) => enc.get(c).map(|s| (c.clone(), s)),
        Expr::Cast(c) if is_text(c.field.data_type()) => key_column(&c.expr, enc),
        Expr::TryCast(c) if is_text(c.field.data_type()) => key_column(&c.expr, enc),
        _ => None,
    }
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// A text literal's value (`Some(None)`: a null literal).
fn text_literal(e: &Expr) -> Option<Option<String>> {
    match e {
        Expr::Literal(v, _) => scalar_text(v),
        Expr::Cast(c) if is_text(c.field.data_type()) => text_literal(&c.expr),
        _ => None,
    }
}

fn scalar_text(v: &ScalarValue) -> Option<Option<String>> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s) => {
            Some(s.clone())
        }
        ScalarValue::Dictionary(_, inner) => scalar_text(inner),
        ScalarValue::Null => Some(None),
        _ => None,
    }
}

/// A loaded table's scan, reading its key columns as keys.
fn scan(s: &TableScan) -> DfResult<LogicalPlan> {
    let same = || Ok(LogicalPlan::TableScan(s.clone()));
    let Ok(provider) = source_as_provider(&s.source) else {
        return same();
    };
    let Some(table) = (provider.as_ref() as &dyn Any).downcast_ref::<StoreTable>() else {
        return same();
    };
    let Some(keyed) = table.keyed() else {
        return same();
    };
    let built = TableScanBuilder::new(s.table_name.clone(), provider_as_source(Arc::new(keyed)))
        .with_projection(s.projection.clone())
        .with_filters(s.filters.clone())
        .with_fetch(s.fetch)
        .build()?;
    let mut out = s.clone();
    out.source = built.source;
    out.projected_schema = built.projected_schema;
    Ok(LogicalPlan::TableScan(out))
}

/// Whether a plan reads some loaded table's columns that have keys.
fn reads_keys(plan: &LogicalPlan) -> bool {
    plan.exists(|n| {
        Ok(match n {
            LogicalPlan::TableScan(s) => source_as_provider(&s.source).is_ok_and(|p| {
                (p.as_ref() as &dyn Any)
                    .downcast_ref::<StoreTable>()
                    .and_then(|t| t.keyed())
                    .is_some()
            }),
            _ => false,
        })
    })
    .unwrap_or(false)
}

/// Whether a plan has work that keys make cheaper (a join, group-by, distinct or window): a
/// plain scan, filter and sort gains nothing from reading keys only to decode them.
fn works_on_keys(plan: &LogicalPlan) -> bool {
    plan.exists(|n| {
        Ok(matches!(
            n,
            LogicalPlan::Join(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Distinct(_)
                | LogicalPlan::Window(_)
        ))
    })
    .unwrap_or(false)
}

/// Whether a plan still holds subqueries (or nodes) the rewrite does not follow. A scalar
/// subquery that reads nothing of the query around it (`month = (SELECT max(month) FROM …)`)
/// is followed: it is run on its own, as DataFusion runs it, and the expressions around it read
/// the columns it is compared with as values (it is never worked out per key).
fn follows_subqueries(plan: &LogicalPlan) -> bool {
    plan.exists(|n| {
        Ok(matches!(
            n,
            LogicalPlan::Subquery(_) | LogicalPlan::RecursiveQuery(_) | LogicalPlan::Extension(_)
        ) || n.expressions().iter().any(|e| {
            e.exists(|x| {
                Ok(match x {
                    Expr::ScalarSubquery(s) => {
                        !s.outer_ref_columns.is_empty() || !uncorrelated(&s.subquery)
                    }
                    Expr::Exists(_) | Expr::InSubquery(_) | Expr::OuterReferenceColumn(..) => true,
                    _ => false,
                })
            })
            .unwrap_or(true)
        }))
    })
    .unwrap_or(true)
}

/// Whether a subquery's plan reads nothing of an outer query (at any depth).
fn uncorrelated(plan: &LogicalPlan) -> bool {
    let mut outer = false;
    let walked = plan.apply_with_subqueries(|n| {
        outer |= n.expressions().iter().any(|e| {
            e.exists(|x| Ok(matches!(x, Expr::OuterReferenceColumn(..))))
                .unwrap_or(true)
        });
        Ok(if outer {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    walked.is_ok() && !outer
}

/// Whether two schemas have the same qualified names and types.
fn same_shape(a: &DFSchema, b: &DFSchema) -> bool {
    a.fields().len() == b.fields().len()
        && a.iter().zip(b.iter()).all(|((qa, fa), (qb, fb))| {
            qa == qb && fa.name() == fb.name() && fa.data_type() == fb.data_type()
        })
}

/// `key_text(keys)`: the values behind the keys of one space.
#[derive(Debug)]
pub struct KeyText {
    store: Arc<Store>,
    space: KeySpace,
    out: DataType,
    signature: Signature,
}

impl KeyText {
    /// Decodes keys of `space`.
    pub fn new(store: &Arc<Store>, space: &KeySpace) -> KeyText {
        KeyText {
            out: space.value_type(store),
            store: store.clone(),
            space: space.clone(),
            signature: Signature::exact(vec![DataType::UInt32], Volatility::Immutable),
        }
    }
}

impl PartialEq for KeyText {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store) && self.space == other.space
    }
}

impl Eq for KeyText {}

impl Hash for KeyText {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.space.hash(state);
        (Arc::as_ptr(&self.store) as usize).hash(state);
    }
}

impl ScalarUDFImpl for KeyText {
    fn name(&self) -> &str {
        "key_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.out.clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            self.out.clone(),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arg = args.args.into_iter().next();
        match arg {
            Some(ColumnarValue::Array(a)) => {
                let keys = a.as_primitive_opt::<UInt32Type>().ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal("key_text takes keys".into())
                })?;
                Ok(ColumnarValue::Array(self.space.decode(&self.store, keys)?))
            }
            Some(ColumnarValue::Scalar(s)) => {
                let k = match s {
                    ScalarValue::UInt32(k) => k,
                    _ => None,
                };
                let a = self
                    .space
                    .decode(&self.store, &UInt32Array::from(vec![k]))?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?))
            }
            None => Err(datafusion::error::DataFusionError::Internal(
                "key_text takes one argument".into(),
            )),
        }
    }
}
