//! Functions whose result grows with an argument, bounded: `repeat('x', 2147483647)` would fill
//! gigabytes in one call — in the planner, which folds constants, where no time limit reaches —
//! and a few such calls at once would take the server's memory. Each is replaced in every
//! session by the same function with a check first: no value it makes may hold more than
//! [`MAX_VALUE`] characters or elements, or the query stops with a sentence saying so.
//!
//! Bounded: `repeat`, `lpad`, `rpad` (text), `replace` and `regexp_replace` (a replacement
//! inserted at every match), `array_repeat`, `array_resize`, `range` and `generate_series` (as
//! scalar functions making arrays; as table functions they stream and the time limit stops
//! them).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use std::sync::Arc;

/// The most characters (or array elements) one value made by a bounded function may hold.
pub const MAX_VALUE: i64 = 1 << 20;

/// How a function's largest result is worked out from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: length × n.
    Repeat,
    /// `lpad(text, n, …)`: n.
    Pad,
    /// `replace(text, from, to)`, `regexp_replace(text, pattern, to, …)`: length × (1 + to's
    /// length), should every position match.
    Replace,
    /// `array_repeat(x, n)`, `array_resize(a, n, …)`: n.
    Count,
    /// `range(start, stop, step)`: (stop − start) / step.
    Series,
}

/// The bounded functions and how each grows.
const BOUNDED: [(&str, Growth); 9] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("replace", Growth::Replace),
    ("regexp_replace", Growth::Replace),
    ("array_repeat", Growth::Count),
    ("array_resize", Growth::Count),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
];

/// Replaces the session's growing functions with bounded ones.
pub fn register(ctx: &SessionContext) {
    for (name, growth) in BOUNDED {
        if let Ok(udf) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner: udf.inner().clone().into(),
                growth,
            }));
        }
    }
}

/// A function checked before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    growth: Growth,
}

/// One value per row of an argument (a scalar stands for every row).
enum Values {
    Scalar(Option<i64>),
    Rows(Vec<Option<i64>>),
}

impl Values {
    fn at(&self, i: usize) -> Option<i64> {
        match self {
            Values::Scalar(v) => *v,
            Values::Rows(v) => v.get(i).copied().flatten(),
        }
    }
    fn rows(&self) -> usize {
        match self {
            Values::Scalar(_) => 1,
            Values::Rows(v) => v.len(),
        }
    }
}

/// An argument as integers: text as its length in bytes, numbers as themselves, dates and
/// times as nanoseconds since the epoch (`None` where null or not understood).
fn values(arg: Option<&ColumnarValue>, text_len: bool) -> Values {
    let array = match arg {
        None => return Values::Scalar(None),
        Some(ColumnarValue::Scalar(s)) => match s.to_array_of_size(1) {
            Ok(a) => return Values::Scalar(as_ints(&a, text_len).into_iter().next().flatten()),
            Err(_) => return Values::Scalar(None),
        },
        Some(ColumnarValue::Array(a)) => a.clone(),
    };
    Values::Rows(as_ints(&array, text_len))
}

fn as_ints(a: &dyn Array, text_len: bool) -> Vec<Option<i64>> {
    let ty = a.data_type();
    if text_len
        || matches!(
            ty,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    {
        return match arrow::compute::cast(a, &DataType::Utf8) {
            Ok(t) => t
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(|v| v.len() as i64))
                .collect(),
            Err(_) => vec![None; a.len()],
        };
    }
    let target = match ty {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None)
        }
        _ => DataType::Int64,
    };
    let cast =
        arrow::compute::cast(a, &target).and_then(|c| arrow::compute::cast(&c, &DataType::Int64));
    match cast {
        Ok(c) => c.as_primitive::<Int64Type>().iter().collect(),
        Err(_) => vec![None; a.len()],
    }
}

/// The step of a series in the unit of its bounds (1 by default; an interval in nanoseconds,
/// months counted as 28 days so that the estimate is never below the truth).
fn step(arg: Option<&ColumnarValue>) -> Values {
    match arg {
        Some(ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(v)))) => {
            let ns = (v.months as i64 * 28 + v.days as i64) * 86_400_000_000_000 + v.nanoseconds;
            Values::Scalar(Some(ns))
        }
        Some(ColumnarValue::Scalar(ScalarValue::IntervalDayTime(Some(v)))) => Values::Scalar(Some(
            v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000,
        )),
        Some(ColumnarValue::Scalar(ScalarValue::IntervalYearMonth(Some(m)))) => {
            Values::Scalar(Some(*m as i64 * 28 * 86_400_000_000_000))
        }
        None => Values::Scalar(Some(1)),
        other => values(other, false),
    }
}

impl Bounded {
    /// The largest value the call would make, in characters or elements.
    fn largest(&self, args: &[ColumnarValue]) -> i64 {
        let arg = |i: usize, text: bool| values(args.get(i), text);
        let (a, b, c) = match self.growth {
            Growth::Repeat => (arg(0, true), arg(1, false), Values::Scalar(Some(1))),
            Growth::Pad | Growth::Count => (
                Values::Scalar(Some(1)),
                arg(1, false),
                Values::Scalar(Some(1)),
            ),
            Growth::Replace => (arg(0, true), arg(2, true), Values::Scalar(Some(1))),
            Growth::Series => {
                // One argument: range(stop) from 0.
                let (start, stop) = if args.len() == 1 {
                    (Values::Scalar(Some(0)), arg(0, false))
                } else {
                    (arg(0, false), arg(1, false))
                };
                (start, stop, step(args.get(2)))
            }
        };
        let rows = a.rows().max(b.rows()).max(c.rows());
        (0..rows)
            .filter_map(|i| {
                let (x, y, z) = (a.at(i)?, b.at(i)?, c.at(i)?);
                Some(match self.growth {
                    Growth::Repeat => x.saturating_mul(y),
                    Growth::Pad | Growth::Count => y,
                    Growth::Replace => x.saturating_mul(y.saturating_add(1)),
                    Growth::Series if z != 0 => y.saturating_sub(x).checked_div(z).unwrap_or(0),
                    Growth::Series => 0,
                })
            })
            .max()
            .unwrap_or(0)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let largest = self.largest(&args.args);
        if largest > MAX_VALUE {
            let what = match self.growth {
                Growth::Count | Growth::Series => "elements",
                _ => "characters",
            };
            return plan_err!(
                "{}(): one value would hold {largest} {what}; at most {MAX_VALUE} are allowed",
                self.inner.name()
            );
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(name: &str) -> Bounded {
        let ctx = SessionContext::new();
        let (_, growth) = BOUNDED.iter().find(|(n, _)| *n == name).unwrap();
        Bounded {
            inner: ctx.udf(name).unwrap().inner().clone().into(),
            growth: *growth,
        }
    }

    fn s(v: ScalarValue) -> ColumnarValue {
        ColumnarValue::Scalar(v)
    }

    #[test]
    fn growth_is_worked_out_before_the_call() {
        let r = bounded("repeat");
        let text = s(ScalarValue::Utf8(Some("abc".into())));
        assert_eq!(
            r.largest(&[text.clone(), s(ScalarValue::Int64(Some(10)))]),
            30
        );
        let rows: arrow::array::ArrayRef = Arc::new(arrow::array::StringArray::from(vec![
            Some("ab"),
            None,
            Some("abcd"),
        ]));
        let n: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![5, 9, 3]));
        assert_eq!(
            r.largest(&[ColumnarValue::Array(rows), ColumnarValue::Array(n)]),
            12
        );
        let g = bounded("generate_series");
        assert_eq!(
            g.largest(&[
                s(ScalarValue::Int64(Some(1))),
                s(ScalarValue::Int64(Some(1_000_000_000_000))),
            ]),
            999_999_999_999
        );
        assert_eq!(
            g.largest(&[
                s(ScalarValue::Int64(Some(0))),
                s(ScalarValue::Int64(Some(100))),
                s(ScalarValue::Int64(Some(10))),
            ]),
            10
        );
        let p = bounded("lpad");
        assert_eq!(
            p.largest(&[text, s(ScalarValue::Int64(Some(2147483647)))]),
            2147483647
        );
    }
}
