//! `gridlens import`: turn another system's export into a dataset folder.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// The exports gridlens can import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The Los Angeles 311 service-request log (MyLA311 CSV export).
    La311,
}

/// Arguments of `gridlens import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What kind of export it is.
    #[arg(long = "from", value_enum)]
    from: Source,
    /// The exported file.
    #[arg(long)]
    source: PathBuf,
    /// The dataset folder to write.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `gridlens import`.
pub fn run(a: Args) -> Result<ExitCode> {
    match a.from {
        Source::La311 => {
            let s = gridlens_datasets::la311::import_la311(&a.source, &a.out)
                .with_context(|| format!("importing {}", a.source.display()))?;
            println!(
                "imported {} requests in {} neighbourhood councils (grids) into {}; as_of {}",
                s.read,
                s.grids,
                a.out.display(),
                s.as_of
            );
            if s.without_grid > 0 {
                println!(
                    "{} requests have no neighbourhood council: `gridlens check` lists them as rejected",
                    s.without_grid
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
