//! SQL tests as files, sqllogictest style (as DataFusion's own): `tests/sql/*.slt`.
//!
//! The file name says which dataset a file runs on: `sla_*.slt` on the hand-written SLA fixture
//! (`tests/fixtures/sla/`), `edges_*.slt` on the edges fixture, `city_*.slt` on the generated
//! city (scale 0.002, seed 42). Each file runs through the same path as `gridlens sql`:
//! [`SqlEngine::query`], with its named-argument rewriting and its read-only check.

mod common;

use common::*;
use gridlens_datasets::OutputFormat;
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::sql::SqlEngine;
use sqllogictest::{DBOutput, DefaultColumnType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Db {
    engine: SqlEngine,
    rt: tokio::runtime::Runtime,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

fn cell(a: &dyn arrow::array::Array, row: usize) -> String {
    if a.is_null(row) {
        return "NULL".into();
    }
    let opts = arrow::util::display::FormatOptions::default();
    let f = arrow::util::display::ArrayFormatter::try_new(a, &opts).unwrap();
    let s = f.value(row).to_string();
    if s.is_empty() { "(empty)".into() } else { s }
}

impl sqllogictest::DB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let r = self
            .rt
            .block_on(self.engine.query(sql))
            .map_err(|e| DbError(e.to_string()))?;
        let types = r
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                t if t.is_floating() => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        // A multi-line cell (an EXPLAIN plan) becomes one row per line, numbered, with its
        // indentation shown as dashes, as in DataFusion's own .slt files.
        let mut rows: Vec<Vec<String>> = Vec::new();
        for b in &r.batches {
            for i in 0..b.num_rows() {
                let cells: Vec<String> = b.columns().iter().map(|c| cell(c.as_ref(), i)).collect();
                match cells.iter().position(|c| c.contains('\n')) {
                    None => rows.push(cells),
                    Some(k) => {
                        let lines: Vec<&str> =
                            cells[k].lines().filter(|l| !l.trim().is_empty()).collect();
                        for (j, line) in lines.iter().enumerate() {
                            let indent = line.len() - line.trim_start().len();
                            let mut row = cells.clone();
                            row[k] =
                                format!("{:02}){}{}", j + 1, "-".repeat(indent), line.trim_start());
                            rows.push(row);
                        }
                    }
                }
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }
}

fn dataset_for(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    if name.starts_with("sla_") {
        fixtures.join("sla")
    } else if name.starts_with("edges_") {
        fixtures.join("edges")
    } else if name.starts_with("city_") {
        city(OutputFormat::Parquet, false)
    } else {
        panic!("{name}: an .slt file's name starts with sla_, edges_ or city_")
    }
}

#[test]
fn sql_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the .slt files in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for file in &files {
        let store = Arc::new(load(&dataset_for(file), &LoadOptions::default()).unwrap());
        let engine = SqlEngine::new(store);
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move {
                Ok(Db {
                    engine,
                    rt: tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap(),
                })
            }
        });
        if let Err(e) = runner.run_file(file) {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
