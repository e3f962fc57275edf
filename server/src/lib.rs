//! `gridlens`: the command line and the HTTP API of the gridlens engine, as a library (the
//! `gridlens` binary is [`cli::run`]).
//!
//! ```text
//!  cli ──▶ serve::run(Config) ──▶ App::open ──▶ router(App) ──▶ api / observe / auth /
//!   │                                               │             session / web / dashboard / pg
//!   │                                               ▲
//!   └──▶ dataset (the --data a command works on) ───┘   xlsx: workbooks for cli kpi and the API
//! ```
//!
//! [`serve::router`] answers every endpoint for an [`serve::App`], so that the API is tested
//! with `tower::ServiceExt::oneshot` without a socket (`tests/router.rs`) as well as through a
//! real port (`tests/api.rs`, `tests/attacks.rs`).
#![deny(missing_docs)]

pub mod cli;
pub mod dataset;
pub mod progress;
pub mod serve;
pub mod xlsx;
