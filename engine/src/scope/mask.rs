//! Masks of personal data (`spec/interfaces.md`, "Who may see what"), applied to values, arrays
//! and batches. Which column gets which mask is declared once: in the contract for loaded tables
//! ([`crate::contract::ColumnDef::mask`]), beside their schemas for the engine's own tables.
//!
//! A mask keeps nothing that, combined with other columns, could rebuild the value: an identity
//! number keeps only its region code (its birth date and sequence are gone, and the birth date
//! column itself keeps only the year).

use crate::contract::Mask;
use arrow::array::{Array, ArrayRef, AsArray, Date32Array, StringArray};
use arrow::compute;
use arrow::datatypes::DataType;
use std::sync::Arc;

/// Masks one text value.
pub fn mask_text(v: &str, m: Mask) -> String {
    match m {
        Mask::Identity => mask_identity(v),
        Mask::Name => mask_name(v),
        Mask::Phone => mask_phone(v),
        Mask::IdentitiesInText => mask_identities_in_text(v),
        // Dates and withheld columns have no text form; text is starred whole.
        Mask::BirthDate | Mask::Withheld => "*".repeat(v.chars().count()),
    }
}

/// `440104199001011234` → `440104************`: a resident identity number (15 or 18
/// characters, starting with its 6-digit region code) keeps only that code; anything else
/// (passports, malformed numbers) is starred whole.
pub fn mask_identity(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len();
    let keep = if (n == 15 || n == 18) && chars[..6].iter().all(char::is_ascii_digit) {
        6
    } else {
        0
    };
    chars[..keep]
        .iter()
        .copied()
        .chain(std::iter::repeat_n('*', n - keep))
        .collect()
}

/// `张三` → `张*`, `欧阳娜娜` → `欧***`: the first character stays.
pub fn mask_name(v: &str) -> String {
    let mut chars = v.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

/// `13812345678` → `138****5678`: the first three and last four characters stay; anything
/// shorter than 8 characters is masked whole.
pub fn mask_phone(v: &str) -> String {
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len();
    if n < 8 {
        return "*".repeat(n);
    }
    chars[..3]
        .iter()
        .copied()
        .chain(std::iter::repeat_n('*', n - 7))
        .chain(chars[n - 4..].iter().copied())
        .collect()
}

/// A birth date (days since the epoch) → January 1 of its year.
pub fn mask_birth_date(days: i32) -> i32 {
    let (y, _, _) = crate::time::civil(days as i64);
    crate::time::ymd(y as i32, 1, 1).unwrap_or(days)
}

/// Masks personal data inside a text: a subject `<identity>@<place>` has its identity part
/// masked; elsewhere, every standalone run of 17 digits and a check character (digit or `X`)
/// is masked as an identity number and every standalone run of 11 digits starting with `1` as
/// a mobile phone number (runs not touching other letters or digits). Codes of the grid
/// hierarchy (6 to 15 digits, none of 11 starting with `1`) and record ids (`P…`, `B…`) are
/// left as they are.
pub fn mask_identities_in_text(v: &str) -> String {
    if let Some((who, place)) = v.split_once('@')
        && !who.is_empty()
        && !who.contains(['{', '"', ' '])
    {
        return format!("{}@{place}", mask_identity(who));
    }
    let chars: Vec<char> = v.chars().collect();
    let alnum = |i: usize| chars.get(i).is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(v.len());
    let mut i = 0;
    while i < chars.len() {
        let standalone_start = i == 0 || !alnum(i - 1);
        let is_id = standalone_start
            && i + 18 <= chars.len()
            && chars[i..i + 17].iter().all(char::is_ascii_digit)
            && (chars[i + 17].is_ascii_digit() || matches!(chars[i + 17], 'X' | 'x'))
            && !alnum(i + 18);
        let is_phone = !is_id
            && standalone_start
            && i + 11 <= chars.len()
            && chars[i] == '1'
            && chars[i..i + 11].iter().all(char::is_ascii_digit)
            && !alnum(i + 11)
            // Not part of a decimal number.
            && (i == 0 || chars[i - 1] != '.')
            && !(chars.get(i + 11) == Some(&'.')
                && chars.get(i + 12).is_some_and(char::is_ascii_digit));
        if is_id {
            let id: String = chars[i..i + 18].iter().collect();
            out.push_str(&mask_identity(&id));
            i += 18;
        } else if is_phone {
            let phone: String = chars[i..i + 11].iter().collect();
            out.push_str(&mask_phone(&phone));
            i += 11;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Masks an array (text of any string or dictionary type, or a date for [`Mask::BirthDate`]);
/// the result has the same type. [`Mask::Withheld`] gives nulls.
pub fn mask_array(a: &ArrayRef, m: Mask) -> arrow::error::Result<ArrayRef> {
    let ty = a.data_type().clone();
    if m == Mask::Withheld {
        return Ok(arrow::array::new_null_array(&ty, a.len()));
    }
    if m == Mask::BirthDate || ty == DataType::Date32 {
        let dates = compute::cast(a, &DataType::Date32)?;
        let dates = dates.as_primitive::<arrow::datatypes::Date32Type>();
        let masked: Date32Array = dates.iter().map(|d| d.map(mask_birth_date)).collect();
        let masked: ArrayRef = Arc::new(masked);
        return if ty == DataType::Date32 {
            Ok(masked)
        } else {
            compute::cast(&masked, &ty)
        };
    }
    if !matches!(
        ty,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)
    ) {
        // A personal column that is not text (an extra column read as numbers): withheld.
        return Ok(arrow::array::new_null_array(&ty, a.len()));
    }
    let text = compute::cast(a, &DataType::Utf8)?;
    let masked: StringArray = text
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(|v| mask_text(v, m)))
        .collect();
    let masked: ArrayRef = Arc::new(masked);
    if ty == DataType::Utf8 {
        Ok(masked)
    } else {
        compute::cast(&masked, &ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_what_the_spec_allows() {
        assert_eq!(mask_identity("440104199001011234"), "440104************");
        assert_eq!(mask_identity("44010419900101123X"), "440104************");
        assert_eq!(mask_identity("440104900101123"), "440104*********");
        assert_eq!(mask_identity("E12345678"), "*********");
        assert_eq!(mask_identity("4401041990010112"), "****************");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("12345"), "*****");
        let d = crate::time::ymd(1990, 5, 17).unwrap();
        assert_eq!(mask_birth_date(d), crate::time::ymd(1990, 1, 1).unwrap());
        assert_eq!(
            mask_identities_in_text("440104199001011234@B0001"),
            "440104************@B0001"
        );
        assert_eq!(
            mask_identities_in_text(r#"{"id":"44010419900101123X","n":5}"#),
            r#"{"id":"440104************","n":5}"#
        );
        assert_eq!(
            mask_identities_in_text("room 12345 of 2026"),
            "room 12345 of 2026"
        );
        assert_eq!(
            mask_identities_in_text("called 13812345678, id 44010419900101123X twice"),
            "called 138****5678, id 440104************ twice"
        );
        assert_eq!(
            mask_identities_in_text("grid 440104012009001, kWh 12345678901.5"),
            "grid 440104012009001, kWh 12345678901.5"
        );
        assert_eq!(
            mask_identities_in_text(
                r#"{"grid_code":"440113017204002","person_id":"P4401141082070020556"}"#
            ),
            r#"{"grid_code":"440113017204002","person_id":"P4401141082070020556"}"#
        );
    }

    #[test]
    fn arrays_keep_their_type() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("440104199001011234"), None]));
        let m = mask_array(&a, Mask::Identity).unwrap();
        assert_eq!(m.data_type(), &DataType::Utf8);
        assert_eq!(m.as_string::<i32>().value(0), "440104************");
        assert!(m.is_null(1));
        let w = mask_array(&a, Mask::Withheld).unwrap();
        assert_eq!(w.null_count(), 2);
        let d: ArrayRef = Arc::new(Date32Array::from(vec![Some(
            crate::time::ymd(2001, 12, 31).unwrap(),
        )]));
        let m = mask_array(&d, Mask::BirthDate).unwrap();
        assert_eq!(
            m.as_primitive::<arrow::datatypes::Date32Type>().value(0),
            crate::time::ymd(2001, 1, 1).unwrap()
        );
    }
}
