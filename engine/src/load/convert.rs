//! Converting a file's column to its contract type, value by value, with a reason for every
//! value that does not fit.
//!
//! Text arrives from CSV as strings and from Parquet as strings, dictionaries or the file's own
//! types. Dictionary input is converted once per distinct value, then mapped to rows.

use crate::contract::{Check, ColumnDef, ColumnType, TZ};
use crate::error::{Error, Result};
use crate::load::report::RejectReason;
use crate::time;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int8Array,
    Int64Array, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::compute::{self, CastOptions};
use arrow::datatypes::{DataType, Int32Type, TimeUnit};
use std::sync::Arc;

/// A row without a value, in a batch's own dictionary.
const NULL: u32 = u32::MAX;

/// A value that does not fit: the row (within the batch), why, and a sentence with the value.
pub type ValueError = (usize, RejectReason, String);

/// Text as the loader handles it: plain, or a dictionary whose distinct values are handled once.
#[derive(Debug, Clone)]
pub enum Text {
    /// One string per row.
    Plain(StringArray),
    /// Keys into distinct values.
    Dict(DictionaryArray<Int32Type>),
}

impl Text {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Text::Plain(a) => a.len(),
            Text::Dict(d) => d.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of a row (`None` for null).
    pub fn get(&self, row: usize) -> Option<&str> {
        match self {
            Text::Plain(a) => (!a.is_null(row)).then(|| a.value(row)),
            Text::Dict(d) => {
                if d.is_null(row) {
                    return None;
                }
                let k = d.keys().value(row) as usize;
                let v = d.values().as_string::<i32>();
                (!v.is_null(k)).then(|| v.value(k))
            }
        }
    }

    /// Maps every row through `f`, calling it once per distinct value of a dictionary.
    pub fn map<T: Clone>(&self, f: impl Fn(&str) -> T) -> Vec<Option<T>> {
        match self {
            Text::Plain(a) => {
                // Exports group rows (a room's months, a household's members): a value equal to
                // the previous row's is not mapped again.
                let mut last: Option<(&str, T)> = None;
                (0..a.len())
                    .map(|i| {
                        if a.is_null(i) {
                            return None;
                        }
                        let v = a.value(i);
                        match &last {
                            Some((lv, t)) if *lv == v => Some(t.clone()),
                            _ => {
                                let t = f(v);
                                last = Some((v, t.clone()));
                                Some(t)
                            }
                        }
                    })
                    .collect()
            }
            Text::Dict(d) => {
                // A batch of a Parquet column chunk carries the chunk's whole dictionary: only
                // the values its rows use are mapped, each once.
                let v = d.values().as_string::<i32>();
                let mut per_value: Vec<Option<Option<T>>> = vec![None; v.len()];
                let keys = d.keys();
                (0..d.len())
                    .map(|i| {
                        if keys.is_null(i) {
                            return None;
                        }
                        let k = keys.value(i) as usize;
                        per_value[k]
                            .get_or_insert_with(|| (!v.is_null(k)).then(|| f(v.value(k))))
                            .clone()
                    })
                    .collect()
            }
        }
    }

    /// Maps every row through `f`, calling it once per distinct value: for a look-up in a large
    /// table, whose every call costs a trip to memory, while the batch's own distinct values
    /// stay in cache.
    pub fn lookup<T: Clone>(&self, f: impl Fn(&str) -> T) -> Vec<Option<T>> {
        match self {
            Text::Dict(_) => self.map(f),
            // A column of (nearly) unique values, like a table's own identity numbers, gains
            // nothing from the batch's dictionary: looked up row by row.
            Text::Plain(a) if mostly_distinct(a) => self.map(f),
            Text::Plain(a) => {
                let (firsts, keys) = plain_distinct(a);
                let found: Vec<T> = firsts.iter().map(|&i| f(a.value(i))).collect();
                keys.iter()
                    .map(|&k| found.get(k as usize).cloned())
                    .collect()
            }
        }
    }

    /// The batch's own dictionary: its distinct values in order of first appearance, and for
    /// each row the position of its value (`u32::MAX` for null).
    pub fn distinct(&self) -> (StringArray, Vec<u32>) {
        let mut values = StringBuilder::new();
        match self {
            Text::Plain(a) => {
                let (firsts, keys) = plain_distinct(a);
                for i in firsts {
                    values.append_value(a.value(i));
                }
                (values.finish(), keys)
            }
            Text::Dict(d) => {
                let mut keys = Vec::with_capacity(d.len());
                let v = d.values().as_string::<i32>();
                let mut local = vec![NULL; v.len()];
                let mut next = 0u32;
                let dk = d.keys();
                for i in 0..d.len() {
                    if dk.is_null(i) || v.is_null(dk.value(i) as usize) {
                        keys.push(NULL);
                        continue;
                    }
                    let k = dk.value(i) as usize;
                    if local[k] == NULL {
                        local[k] = next;
                        next += 1;
                        values.append_value(v.value(k));
                    }
                    keys.push(local[k]);
                }
                (values.finish(), keys)
            }
        }
    }

    /// Like [`Text::distinct`], except that text whose values nearly all differ (a table's own
    /// identity numbers) is kept as it is, each row its own value: finding its few repeats
    /// would cost more than it saves.
    pub fn pooled(&self) -> (StringArray, Vec<u32>) {
        match self {
            Text::Plain(a) if mostly_distinct(a) => {
                let keys = (0..a.len())
                    .map(|i| if a.is_null(i) { NULL } else { i as u32 })
                    .collect();
                (a.clone(), keys)
            }
            _ => self.distinct(),
        }
    }

    /// The text as plain strings.
    pub fn to_plain(&self) -> Result<StringArray> {
        match self {
            Text::Plain(a) => Ok(a.clone()),
            Text::Dict(d) => {
                let c = compute::cast(d, &DataType::Utf8)?;
                Ok(c.as_string::<i32>().clone())
            }
        }
    }
}

/// Plain text's distinct values: the first row of each, in order of appearance, and each row's
/// value as a position in that list (`NULL` for null).
fn plain_distinct(a: &StringArray) -> (Vec<usize>, Vec<u32>) {
    let state = ahash::RandomState::with_seeds(1, 2, 3, 4);
    let mut seen: hashbrown::HashTable<(u64, u32)> = hashbrown::HashTable::with_capacity(1024);
    let mut firsts: Vec<usize> = Vec::new();
    let mut keys = Vec::with_capacity(a.len());
    let mut last: Option<(&str, u32)> = None;
    for i in 0..a.len() {
        if a.is_null(i) {
            keys.push(NULL);
            continue;
        }
        let v = a.value(i);
        if let Some((lv, k)) = last
            && lv == v
        {
            keys.push(k);
            continue;
        }
        let h = state.hash_one(v);
        let k = match seen.find(h, |&(_, k)| a.value(firsts[k as usize]) == v) {
            Some(&(_, k)) => k,
            None => {
                let k = firsts.len() as u32;
                firsts.push(i);
                seen.insert_unique(h, (h, k), |&(h, _)| h);
                k
            }
        };
        keys.push(k);
        last = Some((v, k));
    }
    (firsts, keys)
}

/// Whether most of the first rows hold different values.
fn mostly_distinct(a: &StringArray) -> bool {
    let sample = a.len().min(2048);
    let mut seen = ahash::AHashSet::with_capacity(sample);
    for i in 0..sample {
        if !a.is_null(i) {
            seen.insert(a.value(i));
        }
    }
    seen.len() * 2 > sample
}

/// A column converted to its contract type.
#[derive(Debug, Clone)]
pub enum Typed {
    /// Text (also months, validated).
    Text(Text),
    /// Numbers, booleans, dates and timestamps, as their store types.
    Array(ArrayRef),
    /// Enum codes.
    Codes(Int8Array),
}

impl Typed {
    /// Whether the row is null.
    pub fn is_null(&self, row: usize) -> bool {
        match self {
            Typed::Text(t) => t.get(row).is_none(),
            Typed::Array(a) => a.is_null(row),
            Typed::Codes(c) => c.is_null(row),
        }
    }
}

fn shown(v: &str) -> String {
    let mut s: String = v.chars().take(60).collect();
    if v.chars().count() > 60 {
        s.push('…');
    }
    format!("{s:?}")
}

/// Brings any string-like array to [`Text`]; `None` if the type is not text.
pub fn as_text(a: &ArrayRef) -> Result<Option<Text>> {
    Ok(match a.data_type() {
        DataType::Utf8 => Some(Text::Plain(a.as_string::<i32>().clone())),
        DataType::LargeUtf8 | DataType::Utf8View => Some(Text::Plain(
            compute::cast(a, &DataType::Utf8)?
                .as_string::<i32>()
                .clone(),
        )),
        DataType::Dictionary(_, v)
            if matches!(
                v.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            let target = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            let c = compute::cast(a, &target)?;
            Some(Text::Dict(c.as_dictionary::<Int32Type>().clone()))
        }
        _ => None,
    })
}

fn type_error(file: &str, col: &ColumnDef, dt: &DataType, what: &str) -> Error {
    Error::Load(format!(
        "{file}: column {} has type {dt}, which cannot hold {what}",
        col.name
    ))
}

/// Converts one column. `input` is `None` when the file does not have the column (all null).
/// A type that cannot hold the column's values at all fails the load.
pub fn convert(
    file: &str,
    col: &ColumnDef,
    input: Option<&ArrayRef>,
    rows: usize,
) -> Result<(Typed, Vec<ValueError>)> {
    let mut errors = Vec::new();
    let input = match input {
        Some(a) => a.clone(),
        None => arrow::array::new_null_array(&DataType::Utf8, rows),
    };
    let typed = match col.ty {
        ColumnType::Text => {
            let text = match as_text(&input)? {
                Some(t) => t,
                None if input.data_type().is_integer() => Text::Plain(
                    compute::cast(&input, &DataType::Utf8)?
                        .as_string::<i32>()
                        .clone(),
                ),
                None => return Err(type_error(file, col, input.data_type(), "text")),
            };
            check_text(col, &text, &mut errors);
            Typed::Text(text)
        }
        ColumnType::Month => {
            let text = as_text(&input)?
                .ok_or_else(|| type_error(file, col, input.data_type(), "a month (YYYY-MM)"))?;
            let parsed = text.map(|s| time::parse_month(s.trim()).map(|_| ()));
            for (i, p) in parsed.iter().enumerate() {
                if let Some(Err(why)) = p {
                    let v = text.get(i).unwrap_or("");
                    errors.push((i, RejectReason::BadValue, format!("{} is {why}", shown(v))));
                }
            }
            Typed::Text(text)
        }
        ColumnType::Enum(values) => {
            let text =
                as_text(&input)?.ok_or_else(|| type_error(file, col, input.data_type(), "text"))?;
            let parsed = text.map(|s| values.iter().position(|v| *v == s.trim()));
            let mut codes = Vec::with_capacity(parsed.len());
            for (i, p) in parsed.iter().enumerate() {
                match p {
                    None => codes.push(None),
                    Some(Some(c)) => codes.push(Some(*c as i8)),
                    Some(None) => {
                        codes.push(None);
                        let v = text.get(i).unwrap_or("");
                        errors.push((
                            i,
                            RejectReason::BadEnum,
                            format!("{} is not one of {}", shown(v), values.join(", ")),
                        ));
                    }
                }
            }
            Typed::Codes(Int8Array::from(codes))
        }
        ColumnType::Int => Typed::Array(convert_int(file, col, &input, &mut errors)?),
        ColumnType::Float => Typed::Array(convert_float(file, col, &input, &mut errors)?),
        ColumnType::Bool => Typed::Array(convert_bool(file, col, &input, &mut errors)?),
        ColumnType::Date => Typed::Array(convert_date(file, col, &input, &mut errors)?),
        ColumnType::Timestamp => Typed::Array(convert_timestamp(file, col, &input, &mut errors)?),
    };
    let mut failed = vec![false; rows];
    for e in &errors {
        failed[e.0] = true;
    }
    if col.required {
        for (i, f) in failed.iter_mut().enumerate() {
            if !*f && typed.is_null(i) {
                *f = true;
                errors.push((
                    i,
                    RejectReason::MissingRequired,
                    "required value is missing".into(),
                ));
            }
        }
    }
    check_numbers(col, &typed, &failed, &mut errors);
    errors.sort_by_key(|e| e.0);
    Ok((typed, errors))
}

/// Parses text with `f`, recording a bad value per failing row.
fn parse_text<T: Copy>(
    text: &Text,
    what: &str,
    f: impl Fn(&str) -> Result<T, &'static str>,
    errors: &mut Vec<ValueError>,
) -> Vec<Option<T>> {
    let parsed = text.map(|s| f(s.trim()));
    parsed
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(why)) => {
                let v = text.get(i).unwrap_or("");
                let why = if why.is_empty() { what } else { why };
                errors.push((i, RejectReason::BadValue, format!("{} is {why}", shown(v))));
                None
            }
        })
        .collect()
}

fn lossy_cast(
    input: &ArrayRef,
    to: &DataType,
    what: &str,
    errors: &mut Vec<ValueError>,
) -> Result<ArrayRef> {
    let out = compute::cast_with_options(
        input,
        to,
        &CastOptions {
            safe: true,
            ..Default::default()
        },
    )?;
    for i in 0..input.len() {
        if out.is_null(i) && !input.is_null(i) {
            errors.push((
                i,
                RejectReason::BadValue,
                format!("value does not fit {what}"),
            ));
        }
    }
    Ok(out)
}

fn convert_int(
    file: &str,
    col: &ColumnDef,
    input: &ArrayRef,
    errors: &mut Vec<ValueError>,
) -> Result<ArrayRef> {
    if let Some(text) = as_text(input)? {
        let v = parse_text(
            &text,
            "not an integer",
            |s| s.parse::<i64>().map_err(|_| "not an integer"),
            errors,
        );
        return Ok(Arc::new(Int64Array::from(v)));
    }
    let dt = input.data_type();
    if dt.is_integer() {
        return lossy_cast(input, &DataType::Int64, "a 64-bit integer", errors);
    }
    if dt.is_floating() {
        let f = compute::cast(input, &DataType::Float64)?;
        let f = f.as_primitive::<arrow::datatypes::Float64Type>();
        let v: Vec<Option<i64>> = (0..f.len())
            .map(|i| {
                if f.is_null(i) {
                    return None;
                }
                let x = f.value(i);
                if x.fract() == 0.0 && x.abs() < 9.0e15 {
                    Some(x as i64)
                } else {
                    errors.push((i, RejectReason::BadValue, format!("{x} is not an integer")));
                    None
                }
            })
            .collect();
        return Ok(Arc::new(Int64Array::from(v)));
    }
    Err(type_error(file, col, dt, "integers"))
}

fn convert_float(
    file: &str,
    col: &ColumnDef,
    input: &ArrayRef,
    errors: &mut Vec<ValueError>,
) -> Result<ArrayRef> {
    let out: ArrayRef = if let Some(text) = as_text(input)? {
        let v = parse_text(
            &text,
            "not a number",
            |s| match s.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err("not a number"),
            },
            errors,
        );
        Arc::new(Float64Array::from(v))
    } else if input.data_type().is_numeric() {
        let c = compute::cast(input, &DataType::Float64)?;
        let f = c.as_primitive::<arrow::datatypes::Float64Type>();
        let v: Vec<Option<f64>> = (0..f.len())
            .map(|i| {
                if f.is_null(i) {
                    return None;
                }
                let x = f.value(i);
                if x.is_finite() {
                    Some(x)
                } else {
                    errors.push((i, RejectReason::BadValue, format!("{x} is not a number")));
                    None
                }
            })
            .collect();
        Arc::new(Float64Array::from(v))
    } else {
        return Err(type_error(file, col, input.data_type(), "numbers"));
    };
    Ok(out)
}

fn convert_bool(
    file: &str,
    col: &ColumnDef,
    input: &ArrayRef,
    errors: &mut Vec<ValueError>,
) -> Result<ArrayRef> {
    if let Some(text) = as_text(input)? {
        let v = parse_text(&text, "not a boolean", time::parse_bool, errors);
        return Ok(Arc::new(BooleanArray::from(v)));
    }
    match input.data_type() {
        DataType::Boolean => Ok(input.clone()),
        dt if dt.is_integer() => {
            let c = compute::cast(input, &DataType::Int64)?;
            let n = c.as_primitive::<arrow::datatypes::Int64Type>();
            let v: Vec<Option<bool>> = (0..n.len())
                .map(|i| match (n.is_null(i), n.value(i)) {
                    (true, _) => None,
                    (false, 0) => Some(false),
                    (false, 1) => Some(true),
                    (false, x) => {
                        errors.push((i, RejectReason::BadValue, format!("{x} is not a boolean")));
                        None
                    }
                })
                .collect();
            Ok(Arc::new(BooleanArray::from(v)))
        }
        dt => Err(type_error(file, col, dt, "booleans")),
    }
}

fn convert_date(
    file: &str,
    col: &ColumnDef,
    input: &ArrayRef,
    errors: &mut Vec<ValueError>,
) -> Result<ArrayRef> {
    if let Some(text) = as_text(input)? {
        let v = parse_text(&text, "not a date", time::parse_date, errors);
        return Ok(Arc::new(Date32Array::from(v)));
    }
    let dates = match input.data_type() {
        DataType::Date32 => input.clone(),
        DataType::Date64 => compute::cast(input, &DataType::Date32)?,
        dt => return Err(type_error(file, col, dt, "dates")),
    };
    // A typed date can hold any day of ±5.8 million years; the contract's dates are those
    // `YYYY-MM-DD` can write.
    let d = dates.as_primitive::<arrow::datatypes::Date32Type>();
    if d.iter().flatten().all(|v| time::date_in_range(v as i64)) {
        return Ok(dates);
    }
    let v: Vec<Option<i32>> = d
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(x) if !time::date_in_range(x as i64) => {
                errors.push((
                    i,
                    RejectReason::OutOfRange,
                    format!("{x} days from 1970-01-01 is outside the years 0000 to 9999"),
                ));
                None
            }
            other => other,
        })
        .collect();
    Ok(Arc::new(Date32Array::from(v)))
}

fn convert_timestamp(
    file: &str,
    col: &ColumnDef,
    input: &ArrayRef,
    errors: &mut Vec<ValueError>,
) -> Result<ArrayRef> {
    let values: Vec<Option<i64>> = if let Some(text) = as_text(input)? {
        parse_text(&text, "not a timestamp", time::parse_timestamp, errors)
    } else {
        match input.data_type() {
            DataType::Timestamp(unit, tz) => {
                let target = DataType::Timestamp(TimeUnit::Microsecond, tz.clone());
                let c = compute::cast(input, &target)?;
                let us = c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                // Without a zone, the reading is China Standard Time wall-clock.
                let shift = if tz.is_none() { time::CST_OFFSET } else { 0 };
                let fine = match unit {
                    TimeUnit::Nanosecond => Some(
                        input
                            .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                            .clone(),
                    ),
                    _ => None,
                };
                (0..us.len())
                    .map(|i| {
                        if us.is_null(i) {
                            return None;
                        }
                        if let Some(ns) = &fine
                            && ns.value(i) % 1000 != 0
                        {
                            errors.push((
                                i,
                                RejectReason::BadValue,
                                "timestamp is finer than a microsecond".into(),
                            ));
                            return None;
                        }
                        Some(us.value(i).saturating_sub(shift))
                    })
                    .collect()
            }
            DataType::Date32 | DataType::Date64 => {
                let d = compute::cast(input, &DataType::Date32)?;
                let d = d.as_primitive::<arrow::datatypes::Date32Type>();
                (0..d.len())
                    .map(|i| (!d.is_null(i)).then(|| time::midnight(d.value(i))))
                    .collect()
            }
            dt => return Err(type_error(file, col, dt, "timestamps")),
        }
    };
    // As for dates: instants whose day `YYYY-MM-DD` cannot write are out of range.
    let values: Vec<Option<i64>> = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(t) if !time::date_in_range(time::date_of(t) as i64) => {
                errors.push((
                    i,
                    RejectReason::OutOfRange,
                    "the timestamp is outside the years 0000 to 9999".into(),
                ));
                None
            }
            other => other,
        })
        .collect();
    Ok(Arc::new(
        TimestampMicrosecondArray::from(values).with_timezone(TZ),
    ))
}

fn check_text(col: &ColumnDef, text: &Text, errors: &mut Vec<ValueError>) {
    type Test = Box<dyn Fn(&str) -> bool>;
    let ok: Option<Test> = match col.check {
        Check::Digits(n) => Some(Box::new(move |s: &str| {
            s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
        })),
        Check::CategoryPattern => Some(Box::new(|s: &str| {
            s == "*" || ((s.len() == 2 || s.len() == 4) && s.bytes().all(|b| b.is_ascii_digit()))
        })),
        _ => None,
    };
    let Some(ok) = ok else { return };
    let want = match col.check {
        Check::Digits(n) => format!("{n} digits"),
        _ => "4 digits, 2 digits or *".to_string(),
    };
    for (i, good) in text.map(|s| ok(s)).into_iter().enumerate() {
        if good == Some(false) {
            let v = text.get(i).unwrap_or("");
            errors.push((
                i,
                RejectReason::OutOfRange,
                format!("{} is not {want}", shown(v)),
            ));
        }
    }
}

fn check_numbers(col: &ColumnDef, typed: &Typed, failed: &[bool], errors: &mut Vec<ValueError>) {
    let in_range: Box<dyn Fn(f64) -> bool> = match col.check {
        Check::GreaterThan(b) => Box::new(move |x| x > b),
        Check::AtLeast(b) => Box::new(move |x| x >= b),
        Check::Between(a, b) => Box::new(move |x| x >= a && x <= b),
        _ => return,
    };
    let range = match col.check {
        Check::GreaterThan(b) => format!("greater than {b}"),
        Check::AtLeast(b) => format!("at least {b}"),
        Check::Between(a, b) => format!("between {a} and {b}"),
        _ => String::new(),
    };
    let Typed::Array(a) = typed else { return };
    let values: Vec<Option<f64>> = if let Some(f) = a.as_any().downcast_ref::<Float64Array>() {
        f.iter().collect()
    } else if let Some(n) = a.as_any().downcast_ref::<Int64Array>() {
        n.iter().map(|v| v.map(|x| x as f64)).collect()
    } else {
        return;
    };
    for (i, v) in values.into_iter().enumerate() {
        if let Some(x) = v
            && !in_range(x)
            && !failed[i]
        {
            errors.push((
                i,
                RejectReason::OutOfRange,
                format!("{} = {x} must be {range}", col.name),
            ));
        }
    }
}
