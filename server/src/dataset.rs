//! Loading the dataset a command works on: `--data DIR`, or the embedded default city.

use crate::progress;
use anyhow::{Context, Result};
use gridlens_datasets::GenerateOptions;
use gridlens_engine::contract::TableId;
use gridlens_engine::load::{Added, LoadOptions, append, load_next, load_with, read::Encoding};
use gridlens_engine::store::{Store, snapshot};
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
    load_store_with(args, &[])
}

/// Loads the dataset (or the default city) with files added after its own (a live city's
/// ingest log), with a progress bar on a terminal.
pub fn load_store_with(args: &DataArgs, added: &[Added]) -> Result<Store> {
    let (opts, bar) = load_options(&args.encoding)?;
    let store = match &args.data {
        Some(d) => load_with(d, added, &opts)?,
        None => {
            let dir = default_city_dir();
            eprintln!(
                "no --data given: using a small default city (scale {DEFAULT_SCALE}, seed {DEFAULT_SEED})"
            );
            generate_default(&dir)?;
            let s = load_with(&dir, added, &opts);
            let _ = std::fs::remove_dir_all(&dir);
            s?
        }
    };
    bar.finish_and_clear();
    Ok(store)
}

/// The city as a state folder's server serves it: the dataset with the ingest log's batches
/// (through the newest matching snapshot, as at a start), when the folder has a log; else the
/// dataset alone. Reads the folder without changing it (a server may be running on it).
pub fn load_store_of_state(args: &DataArgs, state: Option<&Path>) -> Result<Store> {
    let log = state.and_then(gridlens_engine::ingest::log::Log::existing);
    match (state, log) {
        (Some(state), Some(log)) if !log.segments()?.is_empty() => {
            let (store, _) = load_store_at_start(args, state, &log)?;
            Ok(store)
        }
        _ => load_store(args),
    }
}

/// The next version of a served city after a batch (the last of `added`) changed a table (see
/// [`load_next`]: door events merged into the served ones, else that table and the tables
/// referring to it loaded again); a city without a folder is loaded whole.
pub fn load_store_next(
    args: &DataArgs,
    added: &[Added],
    served: &Store,
    changed: TableId,
) -> Result<Store> {
    let Some(d) = &args.data else {
        return load_store_with(args, added);
    };
    let (opts, bar) = load_options(&args.encoding)?;
    let store = load_next(d, added, served, &[changed], &opts)?;
    bar.finish_and_clear();
    Ok(store)
}

/// Where a state folder keeps its snapshots of the served city.
pub fn snapshots_dir(state: &Path) -> PathBuf {
    state.join("snapshots")
}

/// What a snapshot must have been made from to stand for the dataset: its files and the load
/// options (see [`snapshot::fingerprint`]).
pub fn source_of(args: &DataArgs) -> Result<String> {
    let d = args
        .data
        .as_deref()
        .context("a snapshot needs a dataset folder")?;
    let (opts, _) = load_options(&args.encoding)?;
    Ok(snapshot::fingerprint(d, &format!("{opts:?}"))?)
}

/// The city a server starts with: the newest snapshot in the state folder made from this
/// dataset and a beginning of this log, with the log's later batches loaded over it (only the
/// tables they reach); else the dataset and the whole log loaded. Returns the city and the
/// version of the snapshot it came from.
pub fn load_store_at_start(
    args: &DataArgs,
    state: &Path,
    log: &gridlens_engine::ingest::log::Log,
) -> Result<(Store, Option<u64>)> {
    let added = log.added()?;
    let Some(d) = &args.data else {
        return Ok((load_store_with(args, &added)?, None));
    };
    let segments = log.segments()?;
    let names: Vec<String> = segments.iter().map(|s| s.name()).collect();
    let (opts, bar) = load_options(&args.encoding)?;
    let restored = match snapshot::read(
        &snapshots_dir(state),
        &source_of(args)?,
        &names,
        &opts.working_hours,
    ) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("the snapshot could not be read, loading the dataset: {e}");
            None
        }
    };
    let Some(r) = restored else {
        let store = load_with(d, &added, &opts)?;
        bar.finish_and_clear();
        return Ok((store, None));
    };
    tracing::info!(
        "snapshot of version {} read; {} later batches to load",
        r.version,
        segments.len() - r.segments
    );
    // The batches of door events after the snapshot are merged in, in one pass; from the first
    // batch of another kind on, the tables the rest reach are loaded again.
    let mut store = r.store;
    let mut first = r.segments;
    let events = added[first.min(added.len())..]
        .iter()
        .take_while(|b| b.table == TableId::AccessEvents && !b.file.replaces)
        .count();
    if events > 0
        && let Some(s) = append(&store, &added[first..first + events], &opts)?
    {
        store = s;
        first += events;
    }
    let mut later: Vec<TableId> = segments[first..].iter().map(|s| s.table).collect();
    later.sort();
    later.dedup();
    if !later.is_empty() {
        store = load_next(d, &added, &store, &later, &opts)?;
    }
    bar.finish_and_clear();
    Ok((store, Some(r.version)))
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

/// The embedded default city kept in a state folder (`<state>/default-city/`), generated there
/// once: a server that takes ingested rows loads it again for every new version, and after a
/// restart, without generating it again. Returns the folder to serve.
pub fn keep_default_city(state: &Path) -> Result<PathBuf> {
    let dir = state.join("default-city");
    let stamp = format!(
        "gridlens {} scale {DEFAULT_SCALE} seed {DEFAULT_SEED}\n",
        env!("CARGO_PKG_VERSION")
    );
    let marker = state.join("default-city.generated");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "no --data given: using a small default city (scale {DEFAULT_SCALE}, seed {DEFAULT_SEED}), kept in {}",
        dir.display()
    );
    generate_default(&dir)?;
    std::fs::write(&marker, stamp).with_context(|| format!("writing {}", marker.display()))?;
    Ok(dir)
}

/// Where the embedded default city is generated when a command is given no `--data`.
pub fn default_city_dir() -> PathBuf {
    std::env::temp_dir().join(format!("gridlens-default-city-{}", std::process::id()))
}
