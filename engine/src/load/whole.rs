//! A table's fixed-width columns, allocated whole before its Parquet row groups are converted.
//!
//! A Parquet footer says how many rows each row group holds, so every row group can be given
//! its own part of each column before any is read, and write its batches there as they are
//! converted. Nothing is concatenated afterwards: for 150 million door events that copy took
//! longer than converting them, since every page it wrote was fresh memory.

use super::Built;
use crate::contract::{ColumnDef, ColumnType};
use crate::error::{Error, Result};
use crate::store::{concat_nulls, slots};
use arrow::array::{Array, ArrayRef, AsArray, Int8Array, PrimitiveArray, StringArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, Date32Type, Float64Type, Int64Type, TimestampMicrosecondType,
};
use std::sync::Arc;

/// A whole column: keys (references, identities, pooled text), enum codes, dates, integers and
/// timestamps, or floats.
pub(super) enum Whole {
    U32(Vec<u32>),
    I8(Vec<i8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// One row group's part of a [`Whole`] column.
pub(super) enum Part<'a> {
    U32(&'a mut [u32]),
    I8(&'a mut [i8]),
    I32(&'a mut [i32]),
    I64(&'a mut [i64]),
    F64(&'a mut [f64]),
}

/// What stays with a batch once its column is written into the whole: its nulls, and a pooled
/// column's distinct values (which its keys point into).
#[derive(Default)]
pub(super) struct Placed {
    pub nulls: Option<NullBuffer>,
    pub values: Option<StringArray>,
}

impl Whole {
    /// The whole column of `rows` rows for a contract column, if its rows are fixed-width
    /// (text kept as text, and booleans, are concatenated instead).
    pub fn for_column(col: &ColumnDef, rows: usize) -> Option<Whole> {
        if col.references.is_some() || col.identity || col.pooled {
            return Some(Whole::U32(vec![0; rows]));
        }
        Some(match col.ty {
            ColumnType::Enum(_) => Whole::I8(vec![0; rows]),
            ColumnType::Date => Whole::I32(vec![0; rows]),
            ColumnType::Int | ColumnType::Timestamp => Whole::I64(vec![0; rows]),
            ColumnType::Float => Whole::F64(vec![0.0; rows]),
            ColumnType::Text | ColumnType::Month | ColumnType::Bool => return None,
        })
    }

    /// The column cut into consecutive parts of the given lengths.
    pub fn parts(&mut self, lens: &[usize]) -> Vec<Part<'_>> {
        let lens = lens.iter().copied();
        match self {
            Whole::U32(v) => slots(v, lens).into_iter().map(Part::U32).collect(),
            Whole::I8(v) => slots(v, lens).into_iter().map(Part::I8).collect(),
            Whole::I32(v) => slots(v, lens).into_iter().map(Part::I32).collect(),
            Whole::I64(v) => slots(v, lens).into_iter().map(Part::I64).collect(),
            Whole::F64(v) => slots(v, lens).into_iter().map(Part::F64).collect(),
        }
    }

    /// The column as the loader's other columns are after concatenation. `placed` holds what
    /// each batch kept, `lens` each batch's rows.
    pub fn assemble(self, col: &ColumnDef, placed: Vec<Placed>, lens: &[usize]) -> Result<Built> {
        let total = lens.iter().sum();
        let nulls = concat_nulls(
            placed.iter().zip(lens).map(|(p, &n)| (n, p.nulls.as_ref())),
            total,
        );
        let dt = col.arrow_type();
        Ok(match self {
            Whole::U32(mut keys) if col.pooled || col.identity => {
                let values: Vec<StringArray> = placed
                    .into_iter()
                    .map(|p| {
                        p.values
                            .unwrap_or_else(|| StringArray::from(Vec::<&str>::new()))
                    })
                    .collect();
                if col.identity {
                    // The identities join the pool once the table's loaded rows are known.
                    return Ok(Built::Batches {
                        values,
                        starts: super::starts_of(lens),
                        keys,
                    });
                }
                let values = super::pool_batches(col, &values, &mut keys, lens);
                Built::Pooled { values, keys }
            }
            Whole::U32(keys) => Built::Keys(keys),
            Whole::I8(codes) => Built::Codes(Int8Array::new(ScalarBuffer::from(codes), nulls)),
            Whole::I32(v) => Built::Array(primitive::<Date32Type>(v, nulls, dt)),
            Whole::I64(v) if col.ty == ColumnType::Timestamp => {
                Built::Array(primitive::<TimestampMicrosecondType>(v, nulls, dt))
            }
            Whole::I64(v) => Built::Array(primitive::<Int64Type>(v, nulls, dt)),
            Whole::F64(v) => Built::Array(primitive::<Float64Type>(v, nulls, dt)),
        })
    }
}

impl Part<'_> {
    /// Writes a batch's converted column at row `at` of the part, returning what the batch
    /// keeps of it.
    pub fn write(&mut self, at: usize, built: Built) -> Result<Placed> {
        let mut placed = Placed::default();
        match (self, built) {
            (Part::U32(p), Built::Keys(k)) => put(p, at, &k)?,
            (Part::U32(p), Built::Pooled { values, keys }) => {
                put(p, at, &keys)?;
                placed.values = Some(values);
            }
            (Part::I8(p), Built::Codes(c)) => {
                put(p, at, c.values())?;
                placed.nulls = c.nulls().cloned();
            }
            (Part::I32(p), Built::Array(a)) => placed.nulls = put_array::<Date32Type>(p, at, &a)?,
            (Part::I64(p), Built::Array(a)) => {
                placed.nulls = match a.as_primitive_opt::<Int64Type>() {
                    Some(_) => put_array::<Int64Type>(p, at, &a)?,
                    None => put_array::<TimestampMicrosecondType>(p, at, &a)?,
                }
            }
            (Part::F64(p), Built::Array(a)) => placed.nulls = put_array::<Float64Type>(p, at, &a)?,
            _ => {
                return Err(Error::Internal(
                    "a converted column does not fit its whole column".into(),
                ));
            }
        }
        Ok(placed)
    }

    /// The part's number of rows.
    pub fn len(&self) -> usize {
        match self {
            Part::U32(p) => p.len(),
            Part::I8(p) => p.len(),
            Part::I32(p) => p.len(),
            Part::I64(p) => p.len(),
            Part::F64(p) => p.len(),
        }
    }
}

/// Copies `values` into `part` at `at`.
fn put<T: Copy>(part: &mut [T], at: usize, values: &[T]) -> Result<()> {
    match part.get_mut(at..at + values.len()) {
        Some(dst) => {
            dst.copy_from_slice(values);
            Ok(())
        }
        None => Err(Error::Internal(format!(
            "rows {at}..{} are past the {} rows the footer gives",
            at + values.len(),
            part.len()
        ))),
    }
}

/// Copies a primitive array's values into `part` at `at`, returning its nulls.
fn put_array<T: ArrowPrimitiveType>(
    part: &mut [T::Native],
    at: usize,
    a: &ArrayRef,
) -> Result<Option<NullBuffer>> {
    let p = a.as_primitive_opt::<T>().ok_or_else(|| {
        Error::Internal(format!(
            "a converted column is {}, not {}",
            a.data_type(),
            T::DATA_TYPE
        ))
    })?;
    put(part, at, p.values())?;
    Ok(p.nulls().cloned())
}

/// A primitive array over `values`, of type `dt` (a timestamp's time zone).
fn primitive<T: ArrowPrimitiveType>(
    values: Vec<T::Native>,
    nulls: Option<NullBuffer>,
    dt: arrow::datatypes::DataType,
) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls).with_data_type(dt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{TableDef, TableId};

    #[test]
    fn parts_fill_the_whole_column_in_order() {
        let events = TableId::AccessEvents.def();
        let column = |t: &'static TableDef, n: &str| t.columns[t.position(n).expect("a column")];
        let col = column(events, "ts");
        let a = |v: Vec<Option<i64>>| -> Built {
            Built::Array(Arc::new(
                PrimitiveArray::<TimestampMicrosecondType>::from(v)
                    .with_data_type(col.arrow_type()),
            ))
        };
        let mut whole = Whole::for_column(&col, 5).expect("fixed width");
        let mut parts = whole.parts(&[3, 2]);
        let placed = vec![
            parts[0].write(0, a(vec![Some(1), None])).expect("fits"),
            parts[0].write(2, a(vec![Some(3)])).expect("fits"),
            parts[1].write(0, a(vec![Some(4), Some(5)])).expect("fits"),
        ];
        assert!(parts[1].write(1, a(vec![Some(6), Some(7)])).is_err());
        drop(parts);
        let Built::Array(t) = whole.assemble(&col, placed, &[2, 1, 2]).expect("assembled") else {
            panic!("an array")
        };
        assert_eq!(t.data_type(), &col.arrow_type());
        let t = t.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            vec![Some(1), None, Some(3), Some(4), Some(5)]
        );

        let codes = column(events, "direction");
        let mut whole = Whole::for_column(&codes, 2).expect("fixed width");
        let placed = whole.parts(&[2])[0]
            .write(0, Built::Codes(Int8Array::from(vec![Some(1), Some(0)])))
            .expect("fits");
        let Built::Codes(c) = whole
            .assemble(&codes, vec![placed], &[2])
            .expect("assembled")
        else {
            panic!("codes")
        };
        assert_eq!(c.values().as_ref(), &[1, 0]);
        assert!(c.nulls().is_none());
        assert!(Whole::for_column(&column(TableId::People.def(), "name"), 2).is_none());
    }
}
