//! Criterion benches of the in-process pieces, on a city generated once at
//! `GRIDLENS_BENCH_SCALE` (default 0.02 = 500 grids, about 300,000 people records):
//! loading, building the indexes, the full sweep, and each rule.
//!
//! `cargo bench -p gridlens-benches --bench engine`

use criterion::{Criterion, criterion_group, criterion_main};
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::rules::{Params, RuleId, sweep};
use std::hint::black_box;

fn city() -> (tempfile::TempDir, std::path::PathBuf) {
    let scale: f64 = std::env::var("GRIDLENS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.02);
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("city");
    gridlens_datasets::generate(&gridlens_datasets::GenerateOptions::new(scale, 42, &path))
        .expect("generate");
    (dir, path)
}

fn benches(c: &mut Criterion) {
    let (_keep, path) = city();
    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("load_parquet", |b| {
        b.iter(|| black_box(load(&path, &LoadOptions::default()).expect("load")))
    });
    g.finish();
    let store = load(&path, &LoadOptions::default()).expect("load");
    let params = Params::default();
    let mut g = c.benchmark_group("sweep");
    g.sample_size(20);
    g.bench_function("all_rules", |b| {
        b.iter(|| black_box(sweep(&store, store.as_of, &[], &params).expect("sweep")))
    });
    for rule in RuleId::ALL {
        g.bench_function(rule.code(), |b| {
            b.iter(|| black_box(sweep(&store, store.as_of, &[rule], &params).expect("sweep")))
        });
    }
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
