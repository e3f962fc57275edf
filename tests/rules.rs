//! The twelve rules, exactly.
//!
//! - on a generated city, a sweep finds exactly the planted anomalies, rule by rule: no missing
//!   finding, no extra one, and no near-miss;
//! - on the hand-written edges fixture (`tests/fixtures/edges/`), each rule at several `as_of`
//!   instants finds exactly the records worked out by hand below;
//! - events after `as_of` change nothing: a sweep at a past instant equals the sweep of the same
//!   city without those events (the door summaries' two paths agree);
//! - `gridlens sweep` writes the anomalies as CSV, JSON and Parquet, and rejects a bad rule name
//!   or parameter with a clear message.

mod common;

use common::*;
use gridlens_datasets::OutputFormat;
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::rules::{Params, RuleId, sweep};
use gridlens_engine::store::Store;
use gridlens_engine::time::parse_as_of;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn found(store: &Store, as_of: &str, rule: RuleId) -> BTreeSet<String> {
    let s = sweep(
        store,
        parse_as_of(as_of).unwrap(),
        &[rule],
        &Params::default(),
    )
    .unwrap();
    s.anomalies.iter().map(|a| a.subject_id.clone()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn check_against_truth(dir: &Path) {
    let store = load(dir, &LoadOptions::default()).unwrap();
    let s = sweep(&store, store.as_of, &[], &Params::default()).unwrap();
    let batch = s.to_batch(&store).unwrap();
    assert_eq!(batch.num_rows(), s.anomalies.len());
    let near = truth(dir, "near_misses.csv");
    let truth = truth(dir, "anomalies.csv");
    let grids = store
        .table(gridlens_engine::contract::TableId::Grids)
        .strings("grid_code")
        .unwrap();
    let got: BTreeSet<(String, String, String)> = s
        .anomalies
        .iter()
        .map(|a| {
            (
                a.rule.code().to_string(),
                a.subject_id.clone(),
                grids.value(a.grid as usize).to_string(),
            )
        })
        .collect();
    assert_eq!(got.len(), s.anomalies.len(), "no finding is reported twice");
    for rule in RuleId::ALL {
        let g: BTreeSet<_> = got.iter().filter(|t| t.0 == rule.code()).collect();
        let t: BTreeSet<_> = truth.iter().filter(|t| t.0 == rule.code()).collect();
        let missing: Vec<_> = t.difference(&g).collect();
        let extra: Vec<_> = g.difference(&t).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{} {}: missing {missing:?}, extra {extra:?}",
            rule.code(),
            rule.name()
        );
        assert!(!t.is_empty(), "{} was planted", rule.code());
    }
    for n in &near {
        assert!(!got.contains(n), "near-miss found: {n:?}");
    }
}

#[test]
fn a_sweep_finds_exactly_the_planted_anomalies() {
    check_against_truth(&city(OutputFormat::Parquet, false));
}

#[test]
fn a_sweep_finds_exactly_the_planted_anomalies_with_other_seeds_and_scales() {
    for (scale, seed) in [(0.001, 1), (0.004, 2026)] {
        let dir = scratch(&format!("truth-{seed}"));
        let mut o = gridlens_datasets::GenerateOptions::new(scale, seed, &dir);
        o.format = OutputFormat::Csv;
        gridlens_datasets::generate(&o).unwrap();
        check_against_truth(&dir);
    }
}

/// The door rules read summaries built at load; when a building has events after `as_of`, R04
/// works its last-seen list out from the events instead. A city cut in the middle of a night is
/// swept at that instant; then every absent resident it found comes home a few days later (an
/// event after `as_of`), with other later events. Swept at the same instant, the city with the
/// later events must give exactly the same anomalies, evidence included.
#[test]
fn events_after_as_of_change_nothing() {
    use gridlens_engine::contract::TableId;
    let generated = city(OutputFormat::Csv, false);
    let text = std::fs::read_to_string(generated.join("access_events.csv")).unwrap();
    let instant = "2026-10-20 22:30:00";
    let (before, after): (Vec<&str>, Vec<&str>) =
        text.lines().skip(1).partition(|l| l[..19] <= *instant);
    assert!(
        after.len() > text.len() / 1000,
        "weeks of events come after"
    );
    let header = text.lines().next().unwrap();
    let write = |name: &str, lines: &[String]| -> PathBuf {
        let dir = scratch(name);
        copy_dataset(&generated, &dir);
        std::fs::write(
            dir.join("access_events.csv"),
            format!("{header}\n{}\n", lines.join("\n")),
        )
        .unwrap();
        dir
    };
    let as_of = parse_as_of("2026-10-20T22:30:00+08:00").unwrap();
    let rows = |store: &Store| -> Vec<(String, String, String)> {
        let s = sweep(store, as_of, &[], &Params::default()).unwrap();
        let mut v: Vec<_> = s
            .anomalies
            .iter()
            .map(|a| {
                (
                    a.rule.code().to_string(),
                    a.subject_id.clone(),
                    a.evidence.to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let mut lines: Vec<String> = before.iter().map(|l| l.to_string()).collect();
    let cut = load(&write("cut", &lines), &LoadOptions::default()).unwrap();
    let expected = rows(&cut);
    // The absent come home on 25 October, at their own building's door.
    let s = sweep(&cut, as_of, &[RuleId::R04], &Params::default()).unwrap();
    assert!(s.anomalies.len() >= 3, "R04 finds residents absent");
    let building_ids = cut
        .table(TableId::Buildings)
        .strings("building_id")
        .unwrap();
    for a in &s.anomalies {
        lines.push(format!(
            "2026-10-25 19:00:00,{},{},in,",
            building_ids.value(a.building.unwrap() as usize),
            cut.identity(a.identity.unwrap()),
        ));
    }
    lines.extend(after.iter().map(|l| l.to_string()));
    lines.sort_by(|x, y| x[..19].cmp(&y[..19]));
    let later = load(&write("later", &lines), &LoadOptions::default()).unwrap();
    assert_eq!(later.report.rejected(), 0, "{}", later.report.render());
    for rule in ["R01", "R04"] {
        assert!(
            expected.iter().any(|r| r.0 == rule),
            "{rule} finds something"
        );
    }
    assert_eq!(rows(&later), expected);
}

fn edges() -> Store {
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "tests",
        "fixtures",
        "edges",
    ]
    .iter()
    .collect();
    let store = load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(store.report.rejected(), 0, "{}", store.report.render());
    store
}

/// R01: 5 distinct nights in the 30-day window. VIS1 sleeps at B1 on the nights of 2, 9, 15, 20
/// and 31 October (20:00:00 exactly, 05:59:59 the next morning, …); VIS2 has 6 events but only 4
/// nights (06:00:00 and 19:59:59 are not night); VIS3 has 4 nights plus an event at 03:00 on
/// 2 October, which belongs to the night of 1 October. P05 lives there and is registered.
#[test]
fn r01_nights_and_window_edges() {
    let s = edges();
    assert_eq!(
        found(&s, "2026-11-01T00:00:00+08:00", RuleId::R01),
        set(&["VIS1@B1"])
    );
    // The window (2 Nov − 30 d, 2 Nov] no longer holds the night of 2 October.
    assert_eq!(
        found(&s, "2026-11-02T00:00:00+08:00", RuleId::R01),
        set(&[])
    );
    // At 31 Oct 00:00 the night of 31 October has not begun; the night of 1 October is in.
    assert_eq!(
        found(&s, "2026-10-31T00:00:00+08:00", RuleId::R01),
        set(&["VIS3@B1"])
    );
    // At 31 Oct 23:00 VIS1's 22:00 event counts; the night of 1 October (20:00) has left.
    assert_eq!(
        found(&s, "2026-10-31T23:00:00+08:00", RuleId::R01),
        set(&["VIS1@B1"])
    );
    // At 21:00 the 22:00 event has not happened yet.
    assert_eq!(
        found(&s, "2026-10-31T21:00:00+08:00", RuleId::R01),
        set(&[])
    );
    // With 4 nights enough, VIS2 and VIS3 are found too.
    let mut p = Params::default();
    p.set("r01_min_nights", "4").unwrap();
    let sw = sweep(&s, parse_as_of("2026-11-01").unwrap(), &[RuleId::R01], &p).unwrap();
    let got: BTreeSet<String> = sw.anomalies.iter().map(|a| a.subject_id.clone()).collect();
    assert_eq!(got, set(&["VIS1@B1", "VIS2@B1", "VIS3@B1"]));
    let vis1 = sw
        .anomalies
        .iter()
        .find(|a| a.subject_id == "VIS1@B1")
        .unwrap();
    assert_eq!(vis1.evidence["nights"], 5);
    assert_eq!(vis1.evidence["first"], "2026-10-02");
    assert_eq!(vis1.evidence["last"], "2026-10-31");
    assert_eq!(vis1.evidence["has_active_record"], false);
}

/// R02: L1 (TEN1 on R2) starts Wednesday 30 September 2026, before the National Day holiday;
/// its 3 working days of grace are 8 and 9 October and the make-up Saturday 10 October. L3 is a
/// second lease of the same tenant and room (one finding). L4 (ID5, registered in R1) ends on
/// 31 October. L2 and L5 are leases of registered tenants.
#[test]
fn r02_grace_period_across_the_national_day_holiday() {
    let s = edges();
    assert_eq!(
        found(&s, "2026-10-09T12:00:00+08:00", RuleId::R02),
        set(&["ID5@R2"])
    );
    assert_eq!(
        found(&s, "2026-10-10T00:00:00+08:00", RuleId::R02),
        set(&["TEN1@R2", "ID5@R2"])
    );
    assert_eq!(
        found(&s, "2026-10-31T12:00:00+08:00", RuleId::R02),
        set(&["TEN1@R2", "ID5@R2"])
    );
    assert_eq!(
        found(&s, "2026-11-01T00:00:00+08:00", RuleId::R02),
        set(&["TEN1@R2"])
    );
}

/// R03: R2 is a filed rental; R4 is let but never filed; R1 is owner-occupied with a lease.
#[test]
fn r03_let_rooms_not_filed() {
    let s = edges();
    assert_eq!(found(&s, "2026-11-01", RuleId::R03), set(&["R1", "R4"]));
    // Before any lease started, nothing is let.
    assert_eq!(found(&s, "2025-12-01", RuleId::R03), set(&[]));
}

/// R04 in B1 (door access since 2025), B3 (since 3 September 2026) and B4 (since 2 September
/// 2026). P01 turns 80 on 1 November 2026 and P02 on 2 November; P03 turns 6 on 1 November and
/// P04 on 2 November; P11 registered 2 September, P12 on 3 September; P13 is housebound; P16 was
/// last seen at exactly 2 September 00:00:00 and P17 one second later; B4's door system last
/// reported on 28 October.
#[test]
fn r04_ages_on_the_day_registration_and_door_system_edges() {
    let s = edges();
    assert_eq!(
        found(&s, "2026-11-01", RuleId::R04),
        set(&["P02", "P03", "P11", "P15", "P16"])
    );
    assert_eq!(
        found(&s, "2026-11-02", RuleId::R04),
        set(&["P03", "P04", "P11", "P12", "P14", "P15", "P16", "P17"])
    );
    // By 5 November B4 has been silent for more than 7 days: its system is not alive.
    assert_eq!(
        found(&s, "2026-11-05", RuleId::R04),
        set(&["P03", "P04", "P11", "P12", "P14", "P16", "P17"])
    );
}

#[test]
fn r05_to_r12_on_the_edges_fixture() {
    let s = edges();
    // ID5 died on 1 November.
    assert_eq!(found(&s, "2026-11-01", RuleId::R05), set(&["P05"]));
    assert_eq!(
        found(&s, "2026-10-31T23:59:59+08:00", RuleId::R05),
        set(&[])
    );
    // DUP1: P06 and P07 registered the same day, P07 (the greater person_id) is current; the
    // moved-out P24 does not count. DUP2: P20 registered later than P19.
    assert_eq!(found(&s, "2026-11-01", RuleId::R06), set(&["P06", "P19"]));
    // P21's lower-case x is accepted; P22 is a man with an even 17th digit; P23's check
    // character is wrong. Passports are not checked.
    let sw = sweep(&s, s.as_of, &[RuleId::R07], &Params::default()).unwrap();
    let checks: BTreeSet<(String, String)> = sw
        .anomalies
        .iter()
        .map(|a| {
            (
                a.subject_id.clone(),
                a.evidence["check"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        checks,
        [
            ("P22".into(), "sex".into()),
            ("P23".into(), "checksum".into())
        ]
        .into()
    );
    // R3 is vacant with exactly 50 kWh in September and October (R7 with more); no November
    // reading yet.
    assert_eq!(found(&s, "2026-11-01", RuleId::R08), set(&["R3", "R7"]));
    assert_eq!(found(&s, "2026-12-01", RuleId::R08), set(&[]));
    // R2 (9.5 m², room for 1): P10 registered, and TEN1 leasing.
    assert_eq!(found(&s, "2026-11-01", RuleId::R09), set(&["R2"]));
    // Everyone was verified on 1 October 2026.
    assert_eq!(found(&s, "2026-11-01", RuleId::R10), set(&[]));
    // A year later, all 20 active records are overdue; the moved-out P18 and P24 are not.
    assert_eq!(found(&s, "2027-10-03", RuleId::R10).len(), 20);
    // P17 lives alone and was never visited.
    assert_eq!(found(&s, "2026-11-01", RuleId::R11), set(&["P17"]));
    // H4's only member moved out.
    assert_eq!(found(&s, "2026-11-01", RuleId::R12), set(&["H4"]));
}

#[test]
fn sweep_writes_csv_json_and_parquet() {
    let dir = city(OutputFormat::Parquet, false);
    let truth = truth(&dir, "anomalies.csv");
    let n04 = truth.iter().filter(|t| t.0 == "R04").count();
    let n11 = truth.iter().filter(|t| t.0 == "R11").count();
    for ext in ["csv", "json", "parquet"] {
        let out = scratch(&format!("anomalies.{ext}"));
        let o = gridlens(&[
            "sweep",
            "--data",
            dir.to_str().unwrap(),
            "--rules",
            "R04,R11",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains(&format!("{} anomalies", n04 + n11)), "{text}");
        assert!(text.contains("ABSENT_RESIDENT"), "{text}");
        let rows = match ext {
            "csv" => read_csv(&out).len(),
            "json" => {
                serde_json::from_slice::<Vec<serde_json::Value>>(&std::fs::read(&out).unwrap())
                    .unwrap()
                    .len()
            }
            _ => {
                let f = std::fs::File::open(&out).unwrap();
                let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                    .unwrap()
                    .build()
                    .unwrap();
                r.map(|b| b.unwrap().num_rows()).sum()
            }
        };
        assert_eq!(rows, n04 + n11, "{ext}");
    }
    let o = gridlens(&[
        "sweep",
        "--data",
        dir.to_str().unwrap(),
        "--rules",
        "R13",
        "--out",
        "x.csv",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown rule \"R13\""),
        "{}",
        stderr(&o)
    );
    let o = gridlens(&[
        "sweep",
        "--data",
        dir.to_str().unwrap(),
        "--param",
        "r01_min_nights=zero",
        "--out",
        "x.csv",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("r01_min_nights"), "{}", stderr(&o));
}
