//! Who may see what: a caller's scope (a code of the grid hierarchy) and whether personal data
//! is shown or masked.
//!
//! The restriction is applied below SQL: a scoped [`super::SqlEngine`] registers tables that
//! already hold only the rows inside the scope (through the bitmap indexes) and whose personal
//! columns are already masked, so no query, however written, can reach outside.

use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute;
use arrow::datatypes::DataType;
use std::sync::Arc;

/// The columns that hold personal data (masked unless the caller has the `pii` permission).
pub const PII_COLUMNS: &[&str] = &[
    "id_number",
    "name",
    "phone",
    "owner_id_number",
    "tenant_id_number",
    "head_id_number",
];

/// Columns of derived tables whose text may embed identity numbers (e.g. an R01 subject is
/// `<id_number>@<building_id>`); identity numbers inside them are masked.
pub const TEXT_WITH_IDS: &[&str] = &["subject_id", "evidence"];

/// What a caller may see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Access {
    /// The scope: `None` for the whole city, else a district (6 digits), street (9), community
    /// (12) or grid (15) code; only rows whose grid code starts with it are visible.
    pub scope: Option<String>,
    /// Whether personal columns are shown unmasked.
    pub pii: bool,
}

impl Access {
    /// Everything, unmasked (the command line, an admin with city scope and `pii`).
    pub fn full() -> Access {
        Access {
            scope: None,
            pii: true,
        }
    }

    /// Whether nothing is restricted.
    pub fn is_full(&self) -> bool {
        self.scope.is_none() && self.pii
    }

    /// Whether the caller sees the whole city.
    pub fn is_city(&self) -> bool {
        self.scope.is_none()
    }

    /// Whether a grid (or other hierarchy) code lies inside the scope.
    pub fn contains(&self, code: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| code.starts_with(s))
    }

    /// Keeps the rows of a batch whose `column` (a code of the grid hierarchy) lies inside the
    /// scope, and masks its personal columns. Rows with a null code are kept only with city
    /// scope.
    pub fn restrict(&self, batch: RecordBatch, column: &str) -> arrow::error::Result<RecordBatch> {
        let batch = match (&self.scope, batch.schema().index_of(column)) {
            (Some(scope), Ok(i)) => {
                let codes = compute::cast(batch.column(i), &DataType::Utf8)?;
                let codes = codes.as_string::<i32>();
                let keep: BooleanArray = codes
                    .iter()
                    .map(|c| Some(c.is_some_and(|c| c.starts_with(scope.as_str()))))
                    .collect();
                compute::filter_record_batch(&batch, &keep)?
            }
            (Some(_), Err(_)) => batch.slice(0, 0),
            (None, _) => batch,
        };
        self.mask(batch)
    }

    /// Masks the personal columns of a batch (unless the caller has `pii`).
    pub fn mask(&self, batch: RecordBatch) -> arrow::error::Result<RecordBatch> {
        if self.pii {
            return Ok(batch);
        }
        let schema = batch.schema();
        let mut columns = batch.columns().to_vec();
        let mut changed = false;
        for (i, f) in schema.fields().iter().enumerate() {
            if let Some(m) = masker(f.name()) {
                columns[i] = mask_array(&columns[i], m)?;
                changed = true;
            }
        }
        if !changed {
            return Ok(batch);
        }
        RecordBatch::try_new(schema, columns)
    }
}

/// How a column is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masker {
    /// An identity number: `440104********1234`.
    IdNumber,
    /// A name: `张*`.
    Name,
    /// A phone number: `138****5678`.
    Phone,
    /// Free text: identity numbers inside it are masked.
    Text,
}

/// The masker of a column, if it holds personal data.
pub fn masker(column: &str) -> Option<Masker> {
    match column {
        "id_number" | "owner_id_number" | "tenant_id_number" | "head_id_number" => {
            Some(Masker::IdNumber)
        }
        "name" => Some(Masker::Name),
        "phone" => Some(Masker::Phone),
        c if TEXT_WITH_IDS.contains(&c) => Some(Masker::Text),
        _ => None,
    }
}

/// Masks a string column (of any string or dictionary type); the result is of the same type.
pub fn mask_array(a: &ArrayRef, m: Masker) -> arrow::error::Result<ArrayRef> {
    let ty = a.data_type().clone();
    let text = compute::cast(a, &DataType::Utf8)?;
    let masked: StringArray = text
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(|v| mask_value(v, m)))
        .collect();
    let masked: ArrayRef = Arc::new(masked);
    if ty == DataType::Utf8 {
        Ok(masked)
    } else {
        compute::cast(&masked, &ty)
    }
}

/// Masks one value.
pub fn mask_value(v: &str, m: Masker) -> String {
    match m {
        Masker::IdNumber => mask_id_number(v),
        Masker::Name => mask_name(v),
        Masker::Phone => mask_phone(v),
        Masker::Text => mask_ids_in_text(v),
    }
}

/// `440104199001011234` → `440104********1234`: the address code and the last four characters
/// stay; anything shorter than 11 characters is masked whole.
pub fn mask_id_number(v: &str) -> String {
    keep_ends(v, 6, 4, 11)
}

/// Keeps the first `head` and last `tail` characters and stars the rest; a value shorter
/// than `min` characters is starred whole.
fn keep_ends(v: &str, head: usize, tail: usize, min: usize) -> String {
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len();
    if n < min {
        return "*".repeat(n);
    }
    chars[..head]
        .iter()
        .chain(std::iter::repeat_n(&'*', n - head - tail))
        .chain(&chars[n - tail..])
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
    keep_ends(v, 3, 4, 8)
}

/// Masks identity numbers inside a text: a subject `<identity>@<place>` has its identity part
/// masked; elsewhere, every standalone run of 17 digits and a check character (digit or `X`)
/// not touching other letters or digits. Codes of the grid hierarchy (15 digits or fewer) and
/// record ids (`P…`, `B…`) are left as they are.
pub fn mask_ids_in_text(v: &str) -> String {
    if let Some((who, place)) = v.split_once('@')
        && !who.is_empty()
        && !who.contains(['{', '"', ' '])
    {
        return format!("{}@{place}", mask_id_number(who));
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
        if is_id {
            let id: String = chars[i..i + 18].iter().collect();
            out.push_str(&mask_id_number(&id));
            i += 18;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_id_number("440104199001011234"), "440104********1234");
        assert_eq!(mask_id_number("44010419900101123X"), "440104********123X");
        assert_eq!(mask_id_number("440104900101123"), "440104*****1123");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("12345"), "*****");
        assert_eq!(
            mask_ids_in_text("440104199001011234@B0001"),
            "440104********1234@B0001"
        );
        assert_eq!(
            mask_ids_in_text(r#"{"id":"44010419900101123X","n":5}"#),
            r#"{"id":"440104********123X","n":5}"#
        );
        assert_eq!(mask_ids_in_text("room 12345 of 2026"), "room 12345 of 2026");
        assert_eq!(
            mask_ids_in_text(
                r#"{"grid_code":"440113017204002","person_id":"P4401141082070020556"}"#
            ),
            r#"{"grid_code":"440113017204002","person_id":"P4401141082070020556"}"#
        );
        assert_eq!(
            mask_ids_in_text("B4401141082270030002"),
            "B4401141082270030002"
        );
    }

    #[test]
    fn scope() {
        let a = Access {
            scope: Some("440104".into()),
            pii: false,
        };
        assert!(a.contains("440104001001001"));
        assert!(!a.contains("440105001001001"));
        assert!(Access::full().contains("x"));
    }
}
