//! Helpers shared by the end-to-end tests: generated cities (made once per test binary), the
//! `gridlens` binary, and reading the ground truth.
#![allow(dead_code)]

use gridlens_datasets::{GenerateOptions, OutputFormat};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The scale tests run at: 50 grids, about 28,000 people records.
pub const SCALE: f64 = 0.002;
/// The seed tests use.
pub const SEED: u64 = 42;

/// A folder under the target directory that lives as long as the test process.
pub fn scratch(name: &str) -> PathBuf {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let root = ROOT.get_or_init(|| tempfile::tempdir().expect("a temporary folder"));
    root.path().join(name)
}

/// Generates a city (once per process for the same arguments) and returns its folder.
pub fn city(format: OutputFormat, bad_rows: bool) -> PathBuf {
    static CITIES: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> =
        OnceLock::new();
    let key = format!("{}-{}", format.ext(), bad_rows);
    let map = CITIES.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    let dir = scratch(&format!("city-{key}"));
    let mut opts = GenerateOptions::new(SCALE, SEED, &dir);
    opts.format = format;
    opts.bad_rows = bad_rows;
    gridlens_datasets::generate(&opts).expect("the generator runs");
    map.insert(key, dir.clone());
    dir
}

/// Runs the `gridlens` binary.
pub fn gridlens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridlens"))
        .args(args)
        .output()
        .expect("gridlens runs")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads a CSV file of the ground truth into its records (header dropped).
pub fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.records()
        .map(|x| x.expect("a record").iter().map(str::to_string).collect())
        .collect()
}

/// `(rule, subject_id, grid_code)` of a truth file.
pub fn truth(dir: &Path, file: &str) -> BTreeSet<(String, String, String)> {
    read_csv(&dir.join("truth").join(file))
        .into_iter()
        .map(|r| (r[0].clone(), r[2].clone(), r[3].clone()))
        .collect()
}

/// Copies a folder (not recursively into `truth/`).
pub fn copy_dataset(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            if e.file_name() != "truth" {
                copy_dataset(&p, &to.join(e.file_name()));
            }
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// The single integer a query answers (its first column of the first row), computed by a
/// full-access engine: the figure the server's answers are checked against.
pub fn count(engine: &gridlens_engine::sql::SqlEngine, sql: &str) -> i64 {
    let r = engine
        .query_blocking(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let b = &r.batches[0];
    arrow::array::cast::as_primitive_array::<arrow::datatypes::Int64Type>(b.column(0)).value(0)
}

/// Every row a query answers, cells cast to text (`None` for null).
pub fn cells(engine: &gridlens_engine::sql::SqlEngine, sql: &str) -> Vec<Vec<Option<String>>> {
    use arrow::array::{Array, AsArray};
    let r = engine
        .query_blocking(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in &r.batches {
        let cols: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        (!s.is_null(i)).then(|| s.value(i).to_string())
                    })
                    .collect(),
            );
        }
    }
    out
}

/// The first value a query answers, as text, computed by a full-access engine.
pub fn text(engine: &gridlens_engine::sql::SqlEngine, sql: &str) -> String {
    let r = engine
        .query_blocking(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let c =
        arrow::compute::cast(r.batches[0].column(0), &arrow::datatypes::DataType::Utf8).unwrap();
    arrow::array::cast::as_string_array(&c).value(0).to_string()
}

pub mod leaks;
pub mod server;

/// A query's rows as text, one line a row (cells joined by `|`, nulls as `NULL`), in the order
/// answered: for comparing two answers cell by cell.
pub fn row_lines(r: &gridlens_engine::sql::QueryResult) -> Vec<String> {
    let opts = arrow::util::display::FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in &r.batches {
        let f: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        out.extend((0..b.num_rows()).map(|i| {
            f.iter()
                .map(|x| x.value(i).to_string())
                .collect::<Vec<_>>()
                .join("|")
        }));
    }
    out
}
