//! Grid workers' task lists, through their whole life, on the edges fixture.
//!
//! - assignment: the grid's own worker, the B-role partner when the grid's worker is inactive,
//!   unassigned when there is neither;
//! - stable task ids, no duplicates across runs;
//! - `resolved_in_data` when an anomaly disappears; `false_alarm` not reopened for 90 days;
//!   `fixed` reopened when a later sweep still finds it;
//! - at most N open tasks a worker, in priority order, the rest in the backlog;
//! - state that survives a restart, and a crash between writing and renaming.

mod common;

use common::*;
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::rules::{Params, RuleId, sweep};
use gridlens_engine::store::Store;
use gridlens_engine::tasks::{
    Assignment, JOURNAL_FILE, Outcome, SaveStage, Status, TaskBook, TaskOptions,
};
use gridlens_engine::time::parse_as_of;
use std::path::PathBuf;

fn fixture_dir() -> PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "tests",
        "fixtures",
        "edges",
    ]
    .iter()
    .collect()
}

fn edges() -> Store {
    load(&fixture_dir(), &LoadOptions::default()).unwrap()
}

fn run(
    book: &mut TaskBook,
    store: &Store,
    as_of: &str,
    limit: usize,
) -> gridlens_engine::tasks::RunSummary {
    let s = sweep(store, parse_as_of(as_of).unwrap(), &[], &Params::default()).unwrap();
    let opts = TaskOptions {
        daily_limit: limit,
        ..TaskOptions::default()
    };
    let summary = book.apply(store, &s, &opts).unwrap();
    book.save().unwrap();
    summary
}

fn task<'a>(book: &'a TaskBook, rule: RuleId, subject: &str) -> &'a gridlens_engine::tasks::Task {
    book.tasks
        .get(&book.task_id(rule, subject))
        .unwrap_or_else(|| panic!("no task for {rule:?} {subject}"))
}

#[test]
fn assignment_own_b_role_and_unassigned() {
    let store = edges();
    let dir = scratch("tasks-assign");
    let mut book = TaskBook::open(&dir).unwrap();
    let s = run(&mut book, &store, "2026-11-01", 20);
    let total = sweep(&store, store.as_of, &[], &Params::default())
        .unwrap()
        .anomalies
        .len();
    assert_eq!(s.new, total);
    assert_eq!(book.tasks.len(), total);
    // Grid 1's own worker.
    let t = task(&book, RuleId::R12, "H4");
    assert_eq!(
        (t.worker_id.as_deref(), t.assignment),
        (Some("W1"), Assignment::Own)
    );
    // Grid 2's worker W2 is inactive: W1 covers it as B role.
    let t = task(&book, RuleId::R04, "P15");
    assert_eq!(t.grid_code, "440106001001002");
    assert_eq!(
        (t.worker_id.as_deref(), t.assignment),
        (Some("W1"), Assignment::BRole)
    );
    // Grid 3 has no worker and nobody covers it.
    let t = task(&book, RuleId::R08, "R7");
    assert_eq!(
        (t.worker_id.as_deref(), t.assignment),
        (None, Assignment::Unassigned)
    );
    assert_eq!(t.status, Status::Open);
    assert_eq!(s.unassigned, 1);
    // The same run again opens nothing new and duplicates nothing.
    let again = run(&mut book, &store, "2026-11-01", 20);
    assert_eq!(
        (again.new, again.still_open, again.resolved_in_data),
        (0, total, 0)
    );
    assert_eq!(book.tasks.len(), total);
}

#[test]
fn at_most_n_open_tasks_in_priority_order() {
    let store = edges();
    let dir = scratch("tasks-limit");
    let mut book = TaskBook::open(&dir).unwrap();
    let s = run(&mut book, &store, "2026-11-01", 3);
    let w1 = s.workers.iter().find(|w| w.worker_id == "W1").unwrap();
    assert_eq!(w1.open, 3);
    assert!(w1.backlog > 0);
    let open: Vec<(String, String)> = book
        .for_worker("W1", Some(Status::Open))
        .iter()
        .map(|t| (t.rule.clone(), t.subject_id.clone()))
        .collect();
    // Priority 1 first: R05 P05, R09 R2, R11 P17; P17 was never visited (heaviest evidence).
    let mut expected = vec![
        ("R05".to_string(), "P05".to_string()),
        ("R09".into(), "R2".into()),
        ("R11".into(), "P17".into()),
    ];
    expected.sort();
    let mut got = open.clone();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        open[0],
        ("R11".to_string(), "P17".to_string()),
        "never visited comes first"
    );
    // Closing one makes room at the next run: the best of the backlog moves up.
    let backlog_first = book.for_worker("W1", Some(Status::Backlog))[0]
        .task_id
        .clone();
    let p17 = book.task_id(RuleId::R11, "P17");
    book.close(
        &p17,
        Outcome::Fixed,
        Some("visited".into()),
        parse_as_of("2026-11-01T10:00:00+08:00").unwrap(),
    )
    .unwrap();
    run(&mut book, &store, "2026-11-01", 3);
    assert_eq!(book.tasks[&backlog_first].status, Status::Open);
    // The data (as of 1 Nov 00:00) is older than the close: the fixed task stays closed.
    assert_eq!(book.tasks[&p17].status, Status::Closed);
}

#[test]
fn resolved_in_data_false_alarm_and_reopening() {
    let store = edges();
    let dir = scratch("tasks-life");
    let mut book = TaskBook::open(&dir).unwrap();
    run(&mut book, &store, "2026-11-01", 20);
    // On 2 November VIS1 no longer has 5 nights in the window, and P02 turned 80.
    let s = run(&mut book, &store, "2026-11-02", 20);
    for (rule, subject) in [(RuleId::R01, "VIS1@B1"), (RuleId::R04, "P02")] {
        let t = task(&book, rule, subject);
        assert_eq!(
            (t.status, t.outcome),
            (Status::Closed, Some(Outcome::ResolvedInData)),
            "{subject}"
        );
        assert_eq!(t.closed_at.as_deref(), Some("2026-11-02T00:00:00+08:00"));
    }
    assert_eq!(s.resolved_in_data, 2);
    // A worker says the empty household is a false alarm, and fixes the unfiled rental R4.
    let h4 = book.task_id(RuleId::R12, "H4");
    let r4 = book.task_id(RuleId::R03, "R4");
    let at = parse_as_of("2026-11-02T15:00:00+08:00").unwrap();
    book.close(
        &h4,
        Outcome::FalseAlarm,
        Some("family abroad, keeps the hukou".into()),
        at,
    )
    .unwrap();
    book.close(&r4, Outcome::Fixed, None, at).unwrap();
    assert!(
        book.close(&h4, Outcome::Fixed, None, at).is_err(),
        "a closed task cannot be closed again"
    );
    book.save().unwrap();
    let s = run(&mut book, &store, "2026-11-03", 20);
    assert_eq!(
        book.tasks[&h4].status,
        Status::Closed,
        "false alarm not reopened"
    );
    assert_eq!(s.suppressed, 1);
    // The registry still shows R4 let and unfiled after the fix: reopened.
    assert_eq!(book.tasks[&r4].status, Status::Open);
    assert_eq!(book.tasks[&r4].reopened, 1);
    // 89 days later the false alarm stays closed; after 90 days it comes back.
    run(&mut book, &store, "2027-01-30T15:00:00+08:00", 20);
    assert_eq!(book.tasks[&h4].status, Status::Closed);
    let s = run(&mut book, &store, "2027-01-31T15:00:00+08:00", 20);
    assert_eq!(book.tasks[&h4].status, Status::Open);
    assert_eq!(book.tasks[&h4].outcome, None);
    assert!(s.reopened >= 1);
    // Re-running an older snapshot (1 November, before the task was resolved) neither reopens
    // nor duplicates it.
    let n = book.tasks.len();
    run(&mut book, &store, "2026-11-01", 20);
    assert_eq!(task(&book, RuleId::R01, "VIS1@B1").status, Status::Closed);
    assert_eq!(task(&book, RuleId::R01, "VIS1@B1").reopened, 0);
    assert_eq!(book.tasks.len(), n);
}

#[test]
fn state_survives_a_restart_and_a_crash_mid_write() {
    let store = edges();
    let dir = scratch("tasks-crash");
    let mut book = TaskBook::open(&dir).unwrap();
    run(&mut book, &store, "2026-11-01", 20);
    let before = TaskBook::open(&dir).unwrap().tasks;
    assert_eq!(
        before, book.tasks,
        "a restart reads back exactly what was saved"
    );
    // A change, then a crash after the temporary file is written and before the rename.
    let h4 = book.task_id(RuleId::R12, "H4");
    book.close(&h4, Outcome::Unreachable, None, store.as_of)
        .unwrap();
    let crashed = book.save_with(|stage| match stage {
        SaveStage::TempWritten => Err(gridlens_engine::Error::Internal("power cut".into())),
    });
    assert!(crashed.is_err());
    assert!(dir.join("tasks.json.tmp").exists());
    let after = TaskBook::open(&dir).unwrap();
    assert_eq!(after.tasks, before, "the previous state is intact");
    assert!(
        !dir.join("tasks.json.tmp").exists(),
        "the unfinished save is discarded"
    );
    // A truncated temporary file from a crash during the write is discarded too.
    std::fs::write(dir.join("tasks.json.tmp"), b"{\"version\": 1, \"tas").unwrap();
    assert_eq!(TaskBook::open(&dir).unwrap().tasks, before);

    // A close is saved as one line of the journal, and read back after a restart.
    let mut book = TaskBook::open(&dir).unwrap();
    book.close(&h4, Outcome::Unreachable, Some("gone".into()), store.as_of)
        .unwrap();
    book.save().unwrap();
    let journal_path = dir.join(JOURNAL_FILE);
    let journal = std::fs::read(&journal_path).unwrap();
    assert_eq!(
        journal.split(|&b| b == b'\n').count(),
        3,
        "a header, a line"
    );
    let closed = TaskBook::open(&dir).unwrap().tasks;
    assert_eq!(closed, book.tasks);
    assert_eq!(closed[&h4].status, Status::Closed);
    // A line cut short by a crash was never acknowledged: it is not read, a reader leaves it,
    // and a writer drops it and goes on after it.
    let mut torn = journal.clone();
    torn.extend_from_slice(b"{\"runs\":[],\"tasks\":[{\"task_id\":\"T");
    std::fs::write(&journal_path, &torn).unwrap();
    assert_eq!(TaskBook::read(&dir).unwrap().tasks, closed);
    assert_eq!(std::fs::read(&journal_path).unwrap(), torn);
    let mut book = TaskBook::open(&dir).unwrap();
    assert_eq!(book.tasks, closed);
    assert_eq!(std::fs::read(&journal_path).unwrap(), journal);
    // A line of the journal's generation is read; a journal of an earlier generation (a crash
    // between writing the book whole and starting its journal) is not.
    let mut noted = closed[&h4].clone();
    noted.note = Some("from the journal".into());
    let line = |generation: u64| {
        format!(
            "{{\"generation\":{generation}}}\n{}\n",
            serde_json::json!({"runs": [], "tasks": [&noted]})
        )
    };
    book.save_with(|_| Ok(())).unwrap();
    let generation = std::fs::read_to_string(&journal_path).unwrap();
    let generation: u64 =
        serde_json::from_str::<serde_json::Value>(generation.trim()).unwrap()["generation"]
            .as_u64()
            .unwrap();
    std::fs::write(&journal_path, line(generation)).unwrap();
    assert_eq!(TaskBook::read(&dir).unwrap().tasks[&h4], noted);
    std::fs::write(&journal_path, line(generation - 1)).unwrap();
    assert_eq!(TaskBook::read(&dir).unwrap().tasks, closed);
    assert_eq!(TaskBook::open(&dir).unwrap().tasks, closed);
    assert!(!journal_path.exists(), "the stale journal is dropped");
}

#[test]
fn the_tasks_command() {
    let state = scratch("tasks-cli");
    let data = fixture_dir();
    let o = gridlens(&[
        "tasks",
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--daily-limit",
        "5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("new,") && out.contains("1 unassigned"),
        "{out}"
    );
    assert!(out.contains("W1"), "{out}");
    let id = TaskBook::open(&state).unwrap().task_id(RuleId::R12, "H4");
    let o = gridlens(&[
        "tasks",
        "--state",
        state.to_str().unwrap(),
        "--close",
        &id,
        "--outcome",
        "false_alarm",
        "--note",
        "checked",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("as false_alarm"));
    let o = gridlens(&[
        "tasks",
        "--state",
        state.to_str().unwrap(),
        "--close",
        &id,
        "--outcome",
        "maybe",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a worker's outcome"),
        "{}",
        stderr(&o)
    );
    let o = gridlens(&["tasks", "--state", state.to_str().unwrap(), "--show", "W1"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).lines().filter(|l| l.contains(" open ")).count(),
        5,
        "{}",
        stdout(&o)
    );
}
