//! Functions of one key column worked out once per key: `substr(month, 1, 4)` over 16 M
//! readings is computed for the column's 24 months and then looked up by each row's key.
//!
//! [`PerKey`] holds an expression over one column of a key space. On first use it evaluates
//! the expression over every value of the space (and over a null, for rows without a value),
//! with DataFusion's own physical expressions; every batch after that is a `take` by key.
//! The answer is the expression's answer on each row's value, since the expression reads that
//! value alone and every function in it is immutable. The space holds values the caller may not
//! see (another street's grids); when the expression fails on any of them, nothing of that is
//! told: each batch is then worked out on its own rows' values, as without keys.

use super::space::KeySpace;
use crate::store::Store;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, UInt32Type};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::physical_expr::create_physical_expr;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// The most keys a space may have for an expression to be worked out once per key (a city's
/// months, districts, grids, workers, enum values; not its rooms or people).
pub const MAX_KEYS: usize = 1 << 17;

/// The name the space's values go by inside a [`PerKey`] expression.
const VALUE: &str = "value";

/// `per_key[expr](keys)`: an expression of one key column, computed once per key.
#[derive(Debug)]
pub struct PerKey {
    name: String,
    store: Arc<Store>,
    space: KeySpace,
    /// The expression over the column [`VALUE`].
    expr: Expr,
    /// What the values are read as.
    input: Arc<DFSchema>,
    out: DataType,
    signature: Signature,
    /// The expression's value for each key, and at the end for a null (`None`: it fails on
    /// some value).
    table: OnceLock<Option<ArrayRef>>,
}

impl PerKey {
    /// `expr`, whose only column is `column` (keys of `space`), worked out per key; `None` when
    /// it cannot be (a space too large, a function that is not immutable, a type it cannot tell).
    pub fn new(
        store: &Arc<Store>,
        space: &KeySpace,
        column: &Column,
        expr: &Expr,
    ) -> Option<PerKey> {
        let keys = space.len(store).ok()?;
        if keys == 0 || keys > MAX_KEYS || !immutable(expr) {
            return None;
        }
        let expr = expr
            .clone()
            .transform_up(|x| {
                Ok(match x {
                    Expr::Column(c) if &c == column => {
                        Transformed::yes(Expr::Column(Column::from_name(VALUE)))
                    }
                    x => Transformed::no(x),
                })
            })
            .ok()?
            .data;
        let field = Field::new(VALUE, space.value_type(store), true);
        let input = Arc::new(DFSchema::try_from(Schema::new(vec![field])).ok()?);
        let out = expr.get_type(&input).ok()?;
        Some(PerKey {
            name: format!("per_key[{expr}]"),
            store: store.clone(),
            space: space.clone(),
            expr,
            input,
            out,
            signature: Signature::exact(vec![DataType::UInt32], Volatility::Immutable),
            table: OnceLock::new(),
        })
    }

    /// The expression's value for every key, then for a null; `None` when it fails on some
    /// value of the space.
    fn table(&self) -> Option<&ArrayRef> {
        self.table
            .get_or_init(|| {
                let n = self.space.len(&self.store).ok()? as u32;
                let keys: UInt32Array = (0..n).map(Some).chain([None]).collect();
                self.evaluate(&keys).ok()
            })
            .as_ref()
    }

    /// The expression over the values behind some keys.
    fn evaluate(&self, keys: &UInt32Array) -> DfResult<ArrayRef> {
        let values = self.space.decode(&self.store, keys)?;
        let batch = RecordBatch::try_new(Arc::new(self.input.as_arrow().clone()), vec![values])?;
        let physical = create_physical_expr(
            &self.expr,
            &self.input,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )?;
        physical.evaluate(&batch)?.into_array(batch.num_rows())
    }
}

/// Whether every function of an expression is immutable (and it holds nothing but functions,
/// columns, literals and operators a row's value alone decides).
fn immutable(e: &Expr) -> bool {
    !e.exists(|x| {
        Ok(match x {
            Expr::ScalarFunction(f) => f.func.signature().volatility != Volatility::Immutable,
            Expr::AggregateFunction(_)
            | Expr::WindowFunction(_)
            | Expr::ScalarSubquery(_)
            | Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::OuterReferenceColumn(..)
            | Expr::Placeholder(_)
            | Expr::ScalarVariable(..)
            | Expr::Unnest(_)
            | Expr::GroupingSet(_) => true,
            #[allow(deprecated)]
            Expr::Wildcard { .. } => true,
            _ => false,
        })
    })
    .unwrap_or(true)
}

impl PartialEq for PerKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
            && self.space == other.space
            && self.expr == other.expr
    }
}

impl Eq for PerKey {}

impl Hash for PerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.space.hash(state);
        self.expr.hash(state);
        (Arc::as_ptr(&self.store) as usize).hash(state);
    }
}

impl ScalarUDFImpl for PerKey {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.out.clone())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Field::new(self.name(), self.out.clone(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(table) = self.table() else {
            // It fails on some value of the space: worked out on the rows' own values, so that
            // it fails (and says why) only for a value the caller sees.
            let (keys, scalar) = match args.args.into_iter().next() {
                Some(ColumnarValue::Array(a)) => (a, false),
                Some(ColumnarValue::Scalar(s)) => (s.to_array()?, true),
                None => {
                    return Err(DataFusionError::Internal(
                        "per_key takes one argument".into(),
                    ));
                }
            };
            let keys = keys
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| DataFusionError::Internal("per_key takes keys".into()))?;
            let out = self.evaluate(keys)?;
            return Ok(if scalar {
                ColumnarValue::Scalar(ScalarValue::try_from_array(out.as_ref(), 0)?)
            } else {
                ColumnarValue::Array(out)
            });
        };
        let null = (table.len() - 1) as u32;
        let at = |k: Option<u32>| k.filter(|&k| k < null).unwrap_or(null);
        match args.args.into_iter().next() {
            Some(ColumnarValue::Array(a)) => {
                let keys = a
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(|| DataFusionError::Internal("per_key takes keys".into()))?;
                let at: UInt32Array = if keys.null_count() == 0 {
                    keys.values().iter().map(|&k| at(Some(k))).collect()
                } else {
                    keys.iter().map(|k| Some(at(k))).collect()
                };
                Ok(ColumnarValue::Array(compute::take(
                    table.as_ref(),
                    &at,
                    None,
                )?))
            }
            Some(ColumnarValue::Scalar(s)) => {
                let k = match s {
                    ScalarValue::UInt32(k) => k,
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    table.as_ref(),
                    at(k) as usize,
                )?))
            }
            None => Err(DataFusionError::Internal(
                "per_key takes one argument".into(),
            )),
        }
    }
}

/// Whether a function is a [`PerKey`].
pub fn is_per_key(f: &datafusion::logical_expr::ScalarUDF) -> bool {
    f.inner().downcast_ref::<PerKey>().is_some()
}
