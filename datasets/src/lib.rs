//! # gridlens datasets: the synthetic city
//!
//! `gridlens generate` writes a realistic Guangzhou-like city in the format of the data contract,
//! with known answers: it plants a known number of every anomaly of `rules.md` (and near-misses
//! that must not be found) and writes the ground truth beside the data.
//!
//! The city is built on the real district, street and community codes of Guangzhou, names drawn
//! from real surname and given-name weights, valid GB 11643 identity numbers whose address codes
//! come from all over China, and the real holiday calendar. At scale 1.0 it has 25,000 grids,
//! 16 million people records and 150 million door-access events (`spec/performance.md`).
//!
//! Generation is deterministic for a seed and a scale: the grids are split into chunks of
//! contiguous grids, each generated independently from its own random stream (in parallel), and
//! each chunk draws identity numbers from its own slice of the sequence-number space, so no two
//! chunks can draw the same number.
//!
//! ## Ground truth
//!
//! The normal city is generated so that no rule fires: everyone sleeps where they are registered,
//! every lease's tenant is registered, every elderly person living alone was visited, … Then
//! *scenarios* add dedicated rooms, households, people and events, each producing exactly the
//! findings it is written down for (`truth/anomalies.csv`) or none at all (`truth/near_misses.csv`,
//! e.g. 4 nights instead of 5, a lease 2 working days old, an 80-year-old who never goes out).

pub mod bad_rows;
pub mod city;
pub mod la311;
pub mod reference;
pub mod scenarios;
pub mod writer;

use gridlens_engine::time;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use writer::OutputFormat;

/// An error while generating.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A parameter is not valid.
    #[error("parameter {name}: {message}")]
    Param {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// From arrow.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// From parquet.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// From JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// From csv.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    /// An input file to import is not what it should be (the message names it).
    #[error("{0}")]
    Input(String),
}

impl GenError {
    /// An I/O error on a path.
    pub fn io(path: &Path, source: std::io::Error) -> GenError {
        GenError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A result with the generator's error.
pub type Result<T, E = GenError> = std::result::Result<T, E>;

/// Called as rows are written: how many more.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// What to generate.
#[derive(Clone)]
pub struct GenerateOptions {
    /// 1.0 ≈ Guangzhou (25,000 grids, 16 M people records); every row count scales with it.
    pub scale: f64,
    /// The random seed.
    pub seed: u64,
    /// The output folder.
    pub out: PathBuf,
    /// Parquet or CSV.
    pub format: OutputFormat,
    /// Also write deliberately bad rows (and `truth/rejects.csv`).
    pub bad_rows: bool,
    /// The reference instant of the dataset (`manifest.json`'s `as_of`).
    pub as_of: i64,
    /// Progress callback.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for GenerateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateOptions")
            .field("scale", &self.scale)
            .field("seed", &self.seed)
            .field("out", &self.out)
            .field("format", &self.format)
            .field("bad_rows", &self.bad_rows)
            .field("as_of", &time::format_timestamp(self.as_of))
            .finish()
    }
}

/// The default `as_of` of generated cities: 2026-11-01 00:00 CST.
pub fn default_as_of() -> i64 {
    time::midnight(time::ymd(2026, 11, 1).unwrap_or(0))
}

impl GenerateOptions {
    /// Options with the defaults: Parquet, no bad rows, `as_of` 2026-11-01.
    pub fn new(scale: f64, seed: u64, out: impl Into<PathBuf>) -> GenerateOptions {
        GenerateOptions {
            scale,
            seed,
            out: out.into(),
            format: OutputFormat::Parquet,
            bad_rows: false,
            as_of: default_as_of(),
            progress: None,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Rows per table.
    pub rows: Vec<(String, u64)>,
    /// Planted anomalies per rule.
    pub anomalies: Vec<(String, u64)>,
    /// Planted near-misses per rule.
    pub near_misses: Vec<(String, u64)>,
    /// Bad rows written (with `--with-bad-rows`).
    pub bad_rows: u64,
    /// Grids.
    pub grids: usize,
    /// Chunks the city was generated in.
    pub chunks: usize,
    /// Seconds taken.
    pub seconds: f64,
}

/// Generates a city into `opts.out`.
pub fn generate(opts: &GenerateOptions) -> Result<Summary> {
    city::generate(opts)
}
