//! The engine's one error type.
//!
//! Every message is a sentence a person can act on: it names the file, row, column or parameter
//! at fault.

use std::path::PathBuf;

/// An error from the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dataset could not be loaded at all (missing table, unreadable file, missing column,
    /// wrong encoding). Nothing of it is served.
    #[error("{0}")]
    Load(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A parameter given by the user is not valid.
    #[error("parameter {name}: {message}")]
    Param {
        /// The parameter.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A query could not be planned or run.
    #[error("{0}")]
    Query(String),
    /// A limit was reached (time, memory, rows).
    #[error("{0}")]
    ResourcesExhausted(String),
    /// A query is larger or nests deeper than the server accepts.
    #[error("{0}")]
    TooComplex(String),
    /// The server is busy (what a request needs is taken by others just now); try again.
    #[error("{0}")]
    Busy(String),
    /// A query ran past its time limit and was stopped.
    #[error("the query ran longer than its time limit and was stopped")]
    Timeout,
    /// A query was cancelled (its caller went away or asked).
    #[error("the query was cancelled")]
    Cancelled,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Something that should not happen; a bug.
    #[error("internal error: {0}")]
    Internal(String),
    /// From arrow.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// From parquet.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// From DataFusion.
    #[error("{0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),
    /// From JSON.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::DataFusion(Box::new(e))
    }
}

impl Error {
    /// An I/O error on a file.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid parameter.
    pub fn param(name: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Param {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// A result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
