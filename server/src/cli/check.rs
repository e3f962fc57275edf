//! `gridlens check`: load a dataset and print the load report.

use anyhow::Result;
use gridlens_datasets::GenerateOptions;
use gridlens_engine::load::load;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridlens check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The dataset folder. Without it, a small city is generated and checked.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Encoding of CSV files: auto (UTF-8, else GB18030), utf-8 or gb18030.
    #[arg(long, default_value = "auto")]
    encoding: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `gridlens check`: exit 0 if every row loaded, 1 if some were rejected, 2 if the load
/// failed.
pub fn run(a: Args) -> Result<ExitCode> {
    let (opts, bar) = crate::dataset::load_options(&a.encoding)?;
    let (dir, _cleanup) = match a.data {
        Some(d) => (d, None),
        None => {
            let dir = crate::dataset::default_city_dir();
            eprintln!(
                "no --data given: checking a small city generated in {}",
                dir.display()
            );
            gridlens_datasets::generate(&GenerateOptions::new(0.002, 42, &dir))?;
            (dir.clone(), Some(TempDir(dir)))
        }
    };
    let store = match load(&dir, &opts) {
        Ok(s) => s,
        Err(e) => {
            bar.finish_and_clear();
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    bar.finish_and_clear();
    let report = &store.report;
    if a.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        if let Some(name) = &store.manifest.name {
            println!("dataset: {name}");
        }
        println!(
            "as_of: {}",
            gridlens_engine::time::format_timestamp(store.as_of)
        );
        print!("{}", report.render());
        println!(
            "loaded in {:.2} s; {} MiB in memory",
            report.seconds,
            store.memory() / (1 << 20)
        );
    }
    Ok(if report.rejected() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Removes a generated default city when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
