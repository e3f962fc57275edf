//! `TIMESTAMP '… +08:00'`: a timestamp without time zone written with an offset means the
//! city's wall-clock time of the instant it names.
//!
//! DataFusion casts such text to the instant in UTC, without its offset
//! (`TIMESTAMP '2026-10-01 00:00:00+08:00'` became `2026-09-30T16:00:00`), and a comparison with
//! a column of the city's time (`ts`, `+08:00`) then read that as 16:00 in the city: a day's door
//! events were counted from 8 hours early. PostgreSQL ignores the offset of such a literal and
//! DuckDB turns it into the session's time zone; in the city's own zone (every example an analyst
//! would write) both give the city's midnight. [`LocalTimestamps`] gives the same: the text is
//! read as an instant (its own offset, or the city's when it has none) and taken as the city's
//! wall-clock time of that instant. Text without an offset is unchanged.

use super::replace_keeping_names;
use crate::contract::TZ;
use arrow::array::timezone::Tz;
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

/// Reads `CAST('text' AS TIMESTAMP)` (what `TIMESTAMP 'text'` is) as the city's wall-clock
/// time of the instant the text names, in every query and subquery.
#[derive(Debug, Default)]
pub struct LocalTimestamps;

impl AnalyzerRule for LocalTimestamps {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        let tz: Tz = TZ.parse()?;
        plan.transform_up_with_subqueries(|p| replace_keeping_names(p, |x| local(x, &tz)))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "gridlens_local_timestamps"
    }
}

/// The literal for a cast of text to a timestamp without time zone, if the text is valid (an
/// invalid one is left to the cast, which names it in its error).
fn local(e: &Expr, tz: &Tz) -> Option<Expr> {
    let (inner, to) = match e {
        Expr::Cast(c) => (c.expr.as_ref(), c.field.data_type()),
        Expr::TryCast(c) => (c.expr.as_ref(), c.field.data_type()),
        _ => return None,
    };
    let DataType::Timestamp(unit, None) = to else {
        return None;
    };
    let text = match inner {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => s,
        _ => return None,
    };
    let wall = string_to_datetime(tz, text.trim())
        .ok()?
        .naive_local()
        .and_utc();
    let value = match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(wall.timestamp()), None),
        TimeUnit::Millisecond => {
            ScalarValue::TimestampMillisecond(Some(wall.timestamp_millis()), None)
        }
        TimeUnit::Microsecond => {
            ScalarValue::TimestampMicrosecond(Some(wall.timestamp_micros()), None)
        }
        TimeUnit::Nanosecond => {
            ScalarValue::TimestampNanosecond(Some(wall.timestamp_nanos_opt()?), None)
        }
    };
    Some(Expr::Literal(value, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{cast, lit};

    fn nanos(text: &str) -> Option<i64> {
        let tz: Tz = TZ.parse().unwrap();
        match local(
            &cast(lit(text), DataType::Timestamp(TimeUnit::Nanosecond, None)),
            &tz,
        )? {
            Expr::Literal(ScalarValue::TimestampNanosecond(v, None), _) => v,
            other => panic!("{other}"),
        }
    }

    /// The city's midnight, however the text writes it; other offsets move to the city's time;
    /// text that is no timestamp is left to the cast.
    #[test]
    fn offsets_become_the_citys_wall_clock() {
        let midnight = nanos("2026-10-01 00:00:00").unwrap();
        assert_eq!(midnight, 1_790_812_800 * 1_000_000_000);
        assert_eq!(nanos("2026-10-01 00:00:00+08:00"), Some(midnight));
        assert_eq!(nanos("2026-10-01T00:00:00+08:00"), Some(midnight));
        assert_eq!(nanos("2026-09-30T16:00:00Z"), Some(midnight));
        assert_eq!(nanos("2026-09-30 16:00:00+00:00"), Some(midnight));
        assert_eq!(nanos("2026-10-01"), Some(midnight));
        assert_eq!(nanos("not a time"), None);
        let tz: Tz = TZ.parse().unwrap();
        // A cast to a timestamp with a time zone, or of a column, is not touched.
        assert!(
            local(
                &cast(
                    lit("2026-10-01 00:00:00+08:00"),
                    DataType::Timestamp(TimeUnit::Nanosecond, Some(TZ.into()))
                ),
                &tz
            )
            .is_none()
        );
    }
}
