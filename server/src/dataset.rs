//! Loading the dataset a command works on: `--data DIR`, or the embedded default city.

use crate::progress;
use anyhow::{Context, Result};
use gridlens_datasets::GenerateOptions;
use gridlens_engine::load::{LoadOptions, load, read::Encoding};
use gridlens_engine::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The scale of the embedded default city.
pub const DEFAULT_SCALE: f64 = 0.002;
/// The seed of the embedded default city.
pub const DEFAULT_SEED: u64 = 42;

/// Where the data comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// The dataset folder. Without it, a small default city is generated and used.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Encoding of CSV files: auto (UTF-8, else GB18030), utf-8 or gb18030.
    #[arg(long, default_value = "auto")]
    pub encoding: String,
}

/// Generates the embedded default city into a folder.
pub fn generate_default(dir: &Path) -> Result<()> {
    gridlens_datasets::generate(&GenerateOptions::new(DEFAULT_SCALE, DEFAULT_SEED, dir))
        .with_context(|| format!("generating the default city in {}", dir.display()))?;
    Ok(())
}

/// Load options for a CSV encoding, with a progress bar (shown on a terminal) that counts the
/// rows read.
pub fn load_options(encoding: &str) -> Result<(LoadOptions, indicatif::ProgressBar)> {
    let encoding: Encoding = encoding.parse()?;
    let bar = progress::rows("loading", None);
    let b = bar.clone();
    let opts = LoadOptions {
        encoding,
        progress: Some(Arc::new(move |_t, n| b.inc(n))),
        ..LoadOptions::default()
    };
    Ok((opts, bar))
}

/// Loads the dataset (or the default city), with a progress bar on a terminal.
pub fn load_store(args: &DataArgs) -> Result<Store> {
    let (opts, bar) = load_options(&args.encoding)?;
    let store = match &args.data {
        Some(d) => load(d, &opts)?,
        None => {
            let dir = default_city_dir();
            eprintln!(
                "no --data given: using a small default city (scale {DEFAULT_SCALE}, seed {DEFAULT_SEED})"
            );
            generate_default(&dir)?;
            let s = load(&dir, &opts);
            let _ = std::fs::remove_dir_all(&dir);
            s?
        }
    };
    bar.finish_and_clear();
    Ok(store)
}

/// The instant to evaluate at: `--as-of`, else the dataset's.
pub fn as_of(store: &Store, given: Option<&str>) -> Result<i64> {
    match given {
        Some(s) => gridlens_engine::time::parse_as_of(s).map_err(|why| {
            anyhow::anyhow!(
                "--as-of {s:?} is {why} (expected e.g. 2026-11-01 or 2026-11-01T00:00:00+08:00)"
            )
        }),
        None => Ok(store.as_of),
    }
}

/// Where the embedded default city is generated when a command is given no `--data`.
pub fn default_city_dir() -> PathBuf {
    std::env::temp_dir().join(format!("gridlens-default-city-{}", std::process::id()))
}
