//! `gridlens tasks`: run a sweep and update the persistent task lists; close a task; show a
//! worker's list.

use crate::dataset::{self, DataArgs};
use anyhow::{Result, bail};
use gridlens_engine::rules::{self, Params};
use gridlens_engine::tasks::{Outcome, Status, TaskBook, TaskOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gridlens tasks`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
    /// The state folder holding the task lists (created if new).
    #[arg(long)]
    state: PathBuf,
    /// Evaluate at this instant (default: the dataset's as_of).
    #[arg(long)]
    as_of: Option<String>,
    /// Open tasks a worker sees at most; the rest wait in the backlog.
    #[arg(long, default_value_t = 20)]
    daily_limit: usize,
    /// Close this task instead of running a sweep (with --outcome).
    #[arg(long, value_name = "TASK_ID")]
    close: Option<String>,
    /// How the task was closed: fixed, false_alarm or unreachable.
    #[arg(long)]
    outcome: Option<String>,
    /// A note for --close.
    #[arg(long)]
    note: Option<String>,
    /// Print a worker's list instead of running a sweep.
    #[arg(long, value_name = "WORKER_ID")]
    show: Option<String>,
}

/// Runs `gridlens tasks`.
pub fn run(a: Args) -> Result<ExitCode> {
    let _lock = TaskBook::lock(&a.state)?;
    let mut book = TaskBook::open(&a.state)?;
    if let Some(id) = &a.close {
        let Some(outcome) = &a.outcome else {
            bail!("--close needs --outcome (fixed, false_alarm or unreachable)");
        };
        let outcome = Outcome::parse_worker(outcome)?;
        let at = match &a.as_of {
            Some(s) => gridlens_engine::time::parse_as_of(s)
                .map_err(|why| anyhow::anyhow!("--as-of {s:?} is {why}"))?,
            None => gridlens_engine::load::now(),
        };
        let t = book.close(id, outcome, a.note.clone(), at)?.clone();
        book.save()?;
        println!(
            "closed {} ({} {}) as {}",
            t.task_id,
            t.rule,
            t.subject_id,
            outcome.as_str()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(w) = &a.show {
        let list = book.for_worker(w, None);
        println!(
            "{:<18} {:<4} {:<3} {:<8} {:<42} evidence",
            "task", "rule", "pri", "status", "subject"
        );
        for t in list.iter().filter(|t| t.status != Status::Closed) {
            println!(
                "{:<18} {:<4} {:<3} {:<8} {:<42} {}",
                t.task_id,
                t.rule,
                t.priority,
                format!("{:?}", t.status).to_lowercase(),
                t.subject_id,
                t.evidence
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The city the lists follow: the dataset with the batches ingested into this state.
    let store = dataset::load_store_of_state(&a.data, Some(&a.state))?;
    let as_of = dataset::as_of(&store, a.as_of.as_deref())?;
    let sweep = rules::sweep(&store, as_of, &[], &Params::default())?;
    let opts = TaskOptions {
        daily_limit: a.daily_limit,
        ..TaskOptions::default()
    };
    let s = book.apply(&store, &sweep, &opts)?;
    book.save()?;
    println!(
        "tasks at {}: {} new, {} still open, {} reopened, {} resolved in data, {} false alarms left closed, {} unassigned",
        s.as_of, s.new, s.still_open, s.reopened, s.resolved_in_data, s.suppressed, s.unassigned
    );
    println!(
        "{:<20} {:<16} {:>6} {:>8} {:>11}",
        "worker", "grid", "open", "backlog", "priority 1"
    );
    for w in &s.workers {
        println!(
            "{:<20} {:<16} {:>6} {:>8} {:>11}",
            w.worker_id, w.grid_code, w.open, w.backlog, w.priority_1
        );
    }
    Ok(ExitCode::SUCCESS)
}
