//! `gridlens`: the command line and HTTP API of the gridlens engine.
//!
//! One binary serves the three kinds of users: analysts (SQL), leadership (KPIs) and the batch
//! sweeps that feed grid workers' task lists. Every subcommand takes `--help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Loads reuse the memory they free (see gridlens_engine::memory).
    gridlens_engine::memory::keep_freed_memory();
    gridlens::cli::run()
}
