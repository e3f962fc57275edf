//! SLA clocks and KPIs beyond the `.slt` files: a dataset's own calendar and working hours move
//! the deadlines, and `gridlens kpi` / `gridlens sql` write the figures worked out by hand in
//! `tests/fixtures/sla/README.md`.

mod common;

use common::*;
use gridlens_engine::calendar::WorkingHours;
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::sla::{self, Stage, State};
use gridlens_engine::time::{format_timestamp, parse_as_of};
use std::path::{Path, PathBuf};

fn sla_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sla")
}

/// The deadline and state of a stage of an incident.
fn stage(dir: &Path, opts: &LoadOptions, incident: &str, s: Stage) -> (String, Option<State>) {
    let store = load(dir, opts).unwrap();
    let clocks = sla::clocks(&store, store.as_of).unwrap();
    let ids = store
        .table(gridlens_engine::contract::TableId::Incidents)
        .strings("incident_id")
        .unwrap();
    let row = (0..arrow::array::Array::len(ids))
        .find(|&i| ids.value(i) == incident)
        .unwrap();
    (
        format_timestamp(clocks.stages[s as usize].deadline[row]),
        clocks.state(s, row),
    )
}

#[test]
fn calendar_table_overrides_the_default() {
    let dir = scratch("sla-calendar");
    copy_dataset(&sla_fixture(), &dir);
    let defaults = LoadOptions::default();
    assert_eq!(
        stage(&dir, &defaults, "I01", Stage::Accept),
        ("2026-11-09T15:00:00+08:00".into(), Some(State::Met))
    );
    // Monday 9 November declared a day off: the Friday-night case's 4 working hours now run on
    // Tuesday, and the close deadline moves one working day later.
    std::fs::write(
        dir.join("calendar.csv"),
        "date,is_workday\n2026-11-09,false\n",
    )
    .unwrap();
    assert_eq!(
        stage(&dir, &defaults, "I01", Stage::Accept),
        ("2026-11-10T15:00:00+08:00".into(), Some(State::Met))
    );
    assert_eq!(
        stage(&dir, &defaults, "I01", Stage::Close).0,
        "2026-11-19T00:00:00+08:00"
    );
    // A Saturday declared a working day counts.
    std::fs::write(
        dir.join("calendar.csv"),
        "date,is_workday\n2026-11-07,true\n",
    )
    .unwrap();
    assert_eq!(
        stage(&dir, &defaults, "I01", Stage::Accept),
        ("2026-11-07T15:00:00+08:00".into(), Some(State::Missed))
    );
}

#[test]
fn working_hours_are_configurable() {
    let opts = LoadOptions {
        working_hours: WorkingHours::parse("08:30-12:00,13:30-17:30").unwrap(),
        ..LoadOptions::default()
    };
    // 3.5 hours on Monday morning, the last half hour after lunch.
    assert_eq!(
        stage(&sla_fixture(), &opts, "I01", Stage::Accept),
        ("2026-11-09T14:00:00+08:00".into(), Some(State::Missed))
    );
    // Reported 11:30 on Monday: half an hour before lunch, 3.5 after.
    assert_eq!(
        stage(&sla_fixture(), &opts, "I04", Stage::Accept).0,
        "2026-11-09T17:00:00+08:00"
    );
}

#[test]
fn as_of_decides_overdue() {
    let store = load(&sla_fixture(), &LoadOptions::default()).unwrap();
    let row = 6; // I08: dispatched 4 Nov 13:00, never handled; handle deadline 10 Nov 00:00.
    let at = |t: &str| sla::clocks(&store, parse_as_of(t).unwrap()).unwrap();
    assert_eq!(
        at("2026-11-10T00:00:00+08:00").state(Stage::Handle, row),
        Some(State::Pending)
    );
    assert_eq!(
        at("2026-11-10T00:00:01+08:00").state(Stage::Handle, row),
        Some(State::Overdue)
    );
    // Before it was dispatched, the handle stage had not started.
    assert_eq!(
        at("2026-11-04T12:00:00+08:00").state(Stage::Handle, row),
        None
    );
}

#[test]
fn kpi_command_writes_hand_computed_figures() {
    let data = sla_fixture();
    let data = data.to_str().unwrap();
    let out = scratch("kpi-cli").join("city.csv");
    let o = gridlens(&[
        "kpi",
        "--data",
        data,
        "--incidents",
        "--level",
        "city",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = read_csv(&out);
    assert_eq!(
        rows,
        vec![vec![
            "11",
            "9",
            "0.8181818181818182",
            "8",
            "7",
            "0.75",
            "0.375",
            "8",
            "0.75",
            "0.125",
            "2",
            "161.0",
            "412.0",
            "4.25",
            "66.25",
            "C"
        ]]
    );
    // Grid KPIs of one street, as JSON on standard output.
    let o = gridlens(&[
        "kpi",
        "--data",
        data,
        "--level",
        "grid",
        "--code",
        "440106001",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let ranks: Vec<(String, i64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_string(),
                r["rank_in_street"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ranks,
        vec![
            ("440106001001001".into(), 3),
            ("440106001001002".into(), 1),
            ("440106001001003".into(), 1)
        ]
    );
    for (args, message) in [
        (vec!["--level", "ward"], "level"),
        (vec!["--group-by", "grid"], "--incidents"),
        (vec!["--incidents", "--group-by", "weather"], "weather"),
        (vec!["--incidents", "--from", "yesterday"], "--from"),
    ] {
        let mut a = vec!["kpi", "--data", data];
        a.extend(args);
        let o = gridlens(&a);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(message), "{}", stderr(&o));
    }
}

#[test]
fn sql_command_formats_and_errors() {
    let data = sla_fixture();
    let data = data.to_str().unwrap();
    let q = "SELECT grid_code, reported FROM incident_kpis(group_by => 'grid') ORDER BY 1";
    let o = gridlens(&["sql", "--data", data, "--format", "csv", q]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "grid_code,reported\n440106001001001,6\n440106002001001,5\n"
    );
    let dir = scratch("sql-cli");
    for ext in ["parquet", "arrow", "json"] {
        let out = dir.join(format!("r.{ext}"));
        let o = gridlens(&["sql", "--data", data, "--out", out.to_str().unwrap(), q]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(std::fs::metadata(&out).unwrap().len() > 20);
    }
    let o = gridlens(&["sql", "--data", data, "SELECT nope FROM grids"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    let o = gridlens(&["sql", "--data", data, "DROP TABLE grids"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));
}
