//! A leak detector for answers of any format: what a caller with a given scope and without
//! `pii` must never see, looked up token by token in the answer's text.
//!
//! From the full city it knows every record key (of every table that lies in grids) with its
//! grid, every street, community and grid code, and every identity number, name and phone
//! number. An answer leaks when one of its tokens (a maximal run of letters and digits) is
//! - the key of a record, or a street / community / grid code, outside the scope (and not a
//!   unit the scope lies in);
//! - without `pii`: a real identity number, full name or phone number.
//!
//! Tokens the request itself carried (a code the attacker typed) are not counted: echoing the
//! caller's own words back is not a leak.

use arrow::array::RecordBatch;
use gridlens_engine::sql::SqlEngine;
use std::collections::{HashMap, HashSet};

/// What must not be seen.
pub struct Secrets {
    /// Record key → the code of its grid.
    records: HashMap<String, String>,
    /// Street, community and grid codes of the city.
    codes: HashSet<String>,
    /// A worker's partner grid (shown by design with the worker) → the workers' own grids.
    partners: HashMap<String, Vec<String>>,
    identities: HashSet<String>,
    names: HashSet<String>,
    phones: HashSet<String>,
}

fn strings(engine: &SqlEngine, sql: &str) -> Vec<Vec<String>> {
    super::cells(engine, sql)
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap_or_default).collect())
        .collect()
}

/// The tokens of a text: maximal runs of letters and digits (CJK characters are letters).
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

impl Secrets {
    /// Read from a full-access engine over the city.
    pub fn of(full: &SqlEngine) -> Secrets {
        let mut records = HashMap::new();
        for (t, k) in [
            ("workers", "worker_id"),
            ("buildings", "building_id"),
            ("rooms", "room_id"),
            ("households", "household_id"),
            ("people", "person_id"),
            ("leases", "lease_id"),
            ("visits", "visit_id"),
            ("incidents", "incident_id"),
        ] {
            for r in strings(full, &format!("SELECT {k}, grid_code FROM {t}")) {
                records.insert(r[0].clone(), r[1].clone());
            }
        }
        let mut codes = HashSet::new();
        for r in strings(
            full,
            "SELECT grid_code, community_code, street_code FROM grids",
        ) {
            codes.extend(r);
        }
        let mut partners: HashMap<String, Vec<String>> = HashMap::new();
        for r in strings(
            full,
            "SELECT partner_grid_code, grid_code FROM workers WHERE partner_grid_code IS NOT NULL",
        ) {
            partners.entry(r[0].clone()).or_default().push(r[1].clone());
        }
        let mut identities = HashSet::new();
        for sql in [
            "SELECT id_number FROM people",
            "SELECT id_number FROM access_events WHERE id_number IS NOT NULL",
            "SELECT tenant_id_number FROM leases",
            "SELECT owner_id_number FROM rooms WHERE owner_id_number IS NOT NULL",
            "SELECT head_id_number FROM households WHERE head_id_number IS NOT NULL",
            "SELECT id_number FROM deaths",
            "SELECT id_number FROM visits WHERE id_number IS NOT NULL",
        ] {
            identities.extend(strings(full, sql).into_iter().map(|r| r[0].clone()));
        }
        // Names (two characters or more), unless the same text is also something that is not
        // personal (a place name): the detector must not cry wolf.
        let mut public: HashSet<String> = HashSet::new();
        for r in strings(
            full,
            "SELECT grid_name, community_name, street_name, district_name FROM grids",
        ) {
            for v in r {
                public.extend(tokens(&v).map(str::to_string));
            }
        }
        let names: HashSet<String> = strings(
            full,
            "SELECT name FROM people UNION SELECT name FROM workers",
        )
        .into_iter()
        .map(|r| r[0].clone())
        .filter(|n| n.chars().count() >= 2 && !public.contains(n))
        .collect();
        let phones = strings(full, "SELECT phone FROM people WHERE phone IS NOT NULL")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        Secrets {
            records,
            codes,
            partners,
            identities,
            names,
            phones,
        }
    }

    /// The grid code of a record key, if it is one.
    pub fn grid_of(&self, key: &str) -> Option<&str> {
        self.records.get(key).map(String::as_str)
    }

    /// What a text leaks to a caller with `scope` (`None`: the city) and `pii`: one line per
    /// leaking token. `asked` is the request, whose own tokens are not counted.
    pub fn leaks(&self, text: &str, scope: Option<&str>, pii: bool, asked: &str) -> Vec<String> {
        let asked: HashSet<&str> = tokens(asked).collect();
        let mut out = Vec::new();
        let inside = |code: &str| {
            scope.is_none_or(|s| code.starts_with(s) || (s.starts_with(code) && !code.is_empty()))
        };
        for t in tokens(text) {
            if asked.contains(t) {
                continue;
            }
            if let Some(g) = self.records.get(t)
                && !inside(g)
            {
                out.push(format!("record {t} of grid {g}"));
            }
            let partner_of_inside = self
                .partners
                .get(t)
                .is_some_and(|own| own.iter().any(|g| inside(g)));
            if self.codes.contains(t) && !inside(t) && !partner_of_inside {
                out.push(format!("code {t}"));
            }
            if !pii {
                if self.identities.contains(t) {
                    out.push(format!("identity number {t}"));
                }
                if self.names.contains(t) {
                    out.push(format!("name {t}"));
                }
                if self.phones.contains(t) {
                    out.push(format!("phone {t}"));
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Batches as CSV text (how Arrow and Parquet answers are searched).
pub fn batches_text(batches: &[RecordBatch]) -> String {
    let mut buf = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buf);
        for b in batches {
            w.write(b).expect("csv");
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The text of an answer in any format (`json`, `csv`, `arrow`, `parquet`).
pub fn answer_text(format: &str, body: &[u8]) -> String {
    match format {
        "arrow" => {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
                    .unwrap_or_else(|e| {
                        panic!(
                            "not an Arrow stream ({e}): {}",
                            String::from_utf8_lossy(body)
                        )
                    });
            let batches: Vec<RecordBatch> = reader.map(|b| b.expect("a batch")).collect();
            batches_text(&batches)
        }
        "parquet" => {
            let bytes = bytes::Bytes::copy_from_slice(body);
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap_or_else(|e| {
                        panic!("not Parquet ({e}): {}", String::from_utf8_lossy(body))
                    })
                    .build()
                    .expect("a reader");
            let batches: Vec<RecordBatch> = reader.map(|b| b.expect("a batch")).collect();
            batches_text(&batches)
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}
