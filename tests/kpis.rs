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

/// The LA 311 import's KPIs, against a computation of `kpis.md` written here from the source file
/// alone: its own calendar (the US federal holidays of the period, listed by hand), its own
/// working-day deadlines and its own nearest-rank percentiles.
#[test]
fn la311_kpis_match_an_independent_computation() {
    use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/la311/MyLA311_Service_Request_Data_2017_Subset.csv");
    let out = scratch("la311");
    let _ = std::fs::remove_dir_all(&out);
    let o = gridlens(&[
        "import",
        "--from",
        "la311",
        "--source",
        source.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("9999 requests"), "{}", stdout(&o));

    // The load: 100 requests without a council and 11 more that close before they open.
    let o = gridlens(&["check", "--data", out.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let report = stdout(&o);
    assert!(report.contains("stage_order"), "{report}");

    // Independently: read the source, apply the mapping and the definitions.
    let holidays: Vec<NaiveDate> = [
        "2017-12-25",
        "2018-01-01",
        "2018-01-15",
        "2018-02-19",
        "2018-05-28",
        "2018-07-04",
        "2018-09-03",
        "2018-10-08",
        "2018-11-12",
        "2018-11-22",
        "2018-12-25",
    ]
    .iter()
    .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap())
    .collect();
    let workday = |d: NaiveDate| d.weekday().num_days_from_monday() < 5 && !holidays.contains(&d);
    // End (24:00) of the n-th working day after the date of t.
    let deadline = |t: NaiveDateTime, n: u32| {
        let mut d = t.date();
        let mut left = n;
        while left > 0 {
            d += Duration::days(1);
            if workday(d) {
                left -= 1;
            }
        }
        (d + Duration::days(1)).and_hms_opt(0, 0, 0).unwrap()
    };
    let as_of = NaiveDate::from_ymd_opt(2018, 10, 14)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let parse = |s: &str| NaiveDateTime::parse_from_str(s, "%m/%d/%Y %I:%M:%S %p").ok();
    let mut rdr = csv::Reader::from_path(&source).unwrap();
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (c_nc, c_created, c_closed, c_status) = (
        col("NC"),
        col("CreatedDate"),
        col("ClosedDate"),
        col("Status"),
    );
    let (mut reported, mut due, mut closed, mut closed_due, mut met, mut handle_met, mut overdue) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut hours: Vec<f64> = Vec::new();
    for r in rdr.records() {
        let r = r.unwrap();
        if r[c_nc].trim().is_empty() {
            continue;
        }
        let created = parse(&r[c_created]).unwrap();
        let close = parse(&r[c_closed]);
        if close.is_some_and(|c| c < created) {
            continue;
        }
        reported += 1;
        if let Some(c) = close {
            closed += 1;
            hours.push((c - created).num_seconds() as f64 / 3600.0);
        }
        if &r[c_status] == "Cancelled" {
            continue; // rejected: no stage is evaluated
        }
        let close_deadline = deadline(created, 7);
        let is_overdue = close.is_none() && as_of > close_deadline;
        if close.is_some() || is_overdue {
            due += 1;
            closed_due += close.is_some() as u64;
            met += close.is_some_and(|c| c <= close_deadline) as u64;
            handle_met += close.is_some_and(|c| c <= deadline(created, 3)) as u64;
        }
        overdue += is_overdue as u64;
    }
    hours.sort_by(f64::total_cmp);
    let rank = |p: f64| hours[((p * hours.len() as f64).ceil() as usize).max(1) - 1];

    let kpi = scratch("la311-kpi").join("city.csv");
    let o = gridlens(&[
        "kpi",
        "--data",
        out.to_str().unwrap(),
        "--incidents",
        "--level",
        "city",
        "--out",
        kpi.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let row = &read_csv(&kpi)[0];
    let f = |i: usize| row[i].parse::<f64>().unwrap();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert_eq!(row[0], reported.to_string(), "reported");
    assert_eq!(
        row[1],
        reported.to_string(),
        "accepted: every SR is accepted when created"
    );
    assert_eq!(row[3], due.to_string(), "due");
    assert_eq!(row[4], closed.to_string(), "closed");
    assert!(close(f(5), closed_due as f64 / due as f64), "closure_rate");
    assert!(close(f(6), met as f64 / due as f64), "on_time_closure_rate");
    assert_eq!(row[7], due.to_string(), "handle_due equals due here");
    assert!(
        close(f(8), handle_met as f64 / due as f64),
        "on_time_handling_rate"
    );
    assert_eq!(row[10], overdue.to_string(), "overdue_open");
    assert!(close(f(11), rank(0.5)), "median {} vs {}", f(11), rank(0.5));
    assert!(close(f(12), rank(0.9)), "p90 {} vs {}", f(12), rank(0.9));
    // Sanity of the figures themselves: a real log, mostly on time.
    assert_eq!(reported, 9888);
    assert!(met > due / 2 && overdue > 0);
}
