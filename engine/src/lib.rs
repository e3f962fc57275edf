//! # gridlens engine
//!
//! The engine behind `gridlens`: it loads a city's population, housing and door-access records
//! (the data contract, [`contract`]) into an in-memory columnar [`store`], cross-matches them to
//! find the records that are wrong, computes incident SLAs and per-grid KPIs, and answers SQL.
//!
//! ```text
//!  dataset folder ──▶ load ──▶ Store (Arrow columns, dense keys, roaring indexes)
//!  (CSV / Parquet)    │              │
//!                     ▼              ├──▶ rules  ──▶ anomalies ──▶ task lists
//!                  load report       ├──▶ KPIs and SLA clocks
//!                  + rejects         └──▶ SQL (DataFusion)
//! ```
//!
//! ```no_run
//! use gridlens_engine::load::{load, LoadOptions};
//! let store = load(std::path::Path::new("datasets/small"), &LoadOptions::default())?;
//! println!("{}", store.report.render());
//! # Ok::<(), gridlens_engine::Error>(())
//! ```
#![deny(missing_docs)]

pub mod calendar;
pub mod city;
pub mod contract;
pub mod error;
pub mod hierarchy;
pub mod idcard;
pub mod ingest;
pub mod kpis;
pub mod load;
pub mod memory;
pub mod rules;
pub mod scope;
pub mod sla;
pub mod sql;
pub mod store;
pub mod tasks;
pub mod time;

pub use error::{Error, Result};
