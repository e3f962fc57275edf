//! Loading a city's files: the generator, the loader, the load report and `gridlens check`.
//!
//! - the generator is deterministic, and its ground truth names subjects that exist;
//! - a generated city loads with zero rejects, from Parquet and from CSV;
//! - the bad-rows variant yields exactly the planted rejects, with the right reasons;
//! - a GB18030 CSV loads identically to its UTF-8 twin;
//! - a broken dataset fails with a message naming the file and the problem;
//! - typed Parquet dates beyond the years 0000–9999 are rejected rows, not a panic.

mod common;

use arrow::array::Array;
use common::*;
use gridlens_datasets::{GenerateOptions, OutputFormat};
use gridlens_engine::contract::TableId;
use gridlens_engine::load::{LoadOptions, load, read::Encoding};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walk(dir) {
        let rel = e.strip_prefix(dir).unwrap().display().to_string();
        if rel != "manifest.json" {
            out.insert(rel, std::fs::read(&e).unwrap());
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn the_generator_is_deterministic() {
    for format in [OutputFormat::Parquet, OutputFormat::Csv] {
        let a = scratch(&format!("det-a-{}", format.ext()));
        let b = scratch(&format!("det-b-{}", format.ext()));
        for d in [&a, &b] {
            let mut o = GenerateOptions::new(0.001, 7, d);
            o.format = format;
            gridlens_datasets::generate(&o).unwrap();
        }
        let (fa, fb) = (files_of(&a), files_of(&b));
        assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
        for (name, bytes) in &fa {
            assert!(
                bytes == &fb[name],
                "{name} differs between two runs with the same seed"
            );
        }
        // Another seed gives another city.
        let c = scratch(&format!("det-c-{}", format.ext()));
        let mut o = GenerateOptions::new(0.001, 8, &c);
        o.format = format;
        gridlens_datasets::generate(&o).unwrap();
        assert_ne!(
            files_of(&c)["truth/anomalies.csv"],
            fa["truth/anomalies.csv"]
        );
    }
}

#[test]
fn a_generated_city_loads_with_zero_rejects() {
    for format in [OutputFormat::Parquet, OutputFormat::Csv] {
        let dir = city(format, false);
        let store = load(&dir, &LoadOptions::default()).unwrap();
        let r = &store.report;
        assert_eq!(r.rejected(), 0, "{}", r.render());
        assert!(r.reconciles());
        for t in [
            "grids",
            "workers",
            "buildings",
            "rooms",
            "households",
            "people",
            "leases",
            "access_events",
            "utility_readings",
            "deaths",
            "visits",
            "incidents",
        ] {
            let tr = r.tables.iter().find(|x| x.table == t).unwrap();
            assert!(tr.loaded > 0, "{t} is empty");
        }
        assert_eq!(
            r.tables.iter().find(|x| x.table == "grids").unwrap().loaded,
            50
        );
        assert_eq!(store.rejects.num_rows(), 0);
        assert_eq!(
            gridlens_engine::time::format_timestamp(store.as_of),
            "2026-11-01T00:00:00+08:00"
        );
    }
}

#[test]
fn parquet_and_csv_cities_hold_the_same_rows() {
    let p = load(&city(OutputFormat::Parquet, false), &LoadOptions::default()).unwrap();
    let c = load(&city(OutputFormat::Csv, false), &LoadOptions::default()).unwrap();
    for t in TableId::ALL {
        let (tp, tc) = (p.table(t), c.table(t));
        let bp = p.batch(tp, None, None).unwrap();
        let bc = c.batch(tc, None, None).unwrap();
        assert_eq!(
            bp,
            bc,
            "{} differs between the Parquet and the CSV city",
            t.name()
        );
    }
}

fn expected_rejects(dir: &Path) -> BTreeSet<(String, String, u64, String, String)> {
    read_csv(&dir.join("truth/rejects.csv"))
        .into_iter()
        .map(|r| {
            (
                r[0].clone(),
                r[1].clone(),
                r[2].parse().unwrap(),
                r[3].clone(),
                r[4].clone(),
            )
        })
        .collect()
}

#[test]
fn the_bad_rows_variant_yields_exactly_the_planted_rejects() {
    for format in [OutputFormat::Csv, OutputFormat::Parquet] {
        let dir = city(format, true);
        let expected = expected_rejects(&dir);
        assert!(expected.len() >= 30, "{} bad rows", expected.len());
        let store = load(&dir, &LoadOptions::default()).unwrap();
        let mut got = BTreeSet::new();
        for t in &store.report.tables {
            for reason in &t.reasons {
                assert!(reason.examples.len() <= 3);
            }
        }
        let b = &store.rejects;
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap()
                .clone()
        };
        let rows = b
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::UInt64Array>()
            .unwrap()
            .clone();
        let (table, file, column, reason, raw) = (col(0), col(1), col(3), col(4), col(6));
        for i in 0..b.num_rows() {
            got.insert((
                table.value(i).to_string(),
                file.value(i).to_string(),
                rows.value(i),
                if column.is_null(i) {
                    String::new()
                } else {
                    column.value(i).to_string()
                },
                reason.value(i).to_string(),
            ));
            assert!(!raw.value(i).is_empty(), "every reject keeps its raw row");
        }
        assert_eq!(got, expected, "{}", store.report.render());
        // Nothing else was lost: the rest of the city is as without bad rows.
        let clean = load(&city(format, false), &LoadOptions::default()).unwrap();
        assert!(store.report.reconciles());
        assert_eq!(store.report.loaded(), clean.report.loaded());
        assert_eq!(
            store.report.read(),
            clean.report.read() + expected.len() as u64
        );
    }
}

#[test]
fn check_prints_the_report_and_exits_1_on_rejects() {
    let dir = city(OutputFormat::Csv, true);
    let o = gridlens(&["check", "--data", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("people.csv"), "{out}");
    assert!(out.contains("duplicate_key"), "{out}");
    assert!(
        out.contains("\"1990-02-30\" is not a real calendar date"),
        "{out}"
    );
    let o = gridlens(&[
        "check",
        "--data",
        city(OutputFormat::Parquet, false).to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tables"][0]["table"], "grids");
    assert_eq!(v["tables"][0]["rejected"], 0);
}

/// A UTF-8 CSV dataset and its twin saved as GB18030 (as office software in China does).
#[test]
fn a_gb18030_csv_loads_identically_to_its_utf8_twin() {
    let utf8 = city(OutputFormat::Csv, false);
    let gb = scratch("gb18030");
    copy_dataset(&utf8, &gb);
    for name in [
        "people.csv",
        "grids.csv",
        "buildings.csv",
        "workers.csv",
        "incidents.csv",
    ] {
        let text = std::fs::read_to_string(utf8.join(name)).unwrap();
        assert!(
            text.chars().any(|c| c as u32 > 0x4e00),
            "{name} has Chinese text"
        );
        let (bytes, _, unmappable) = encoding_rs::GB18030.encode(&text);
        assert!(!unmappable);
        assert!(
            std::str::from_utf8(&bytes).is_err(),
            "the twin is not UTF-8"
        );
        std::fs::write(gb.join(name), &bytes).unwrap();
    }
    // A byte-order mark on a UTF-8 file is allowed too.
    let rooms = std::fs::read(utf8.join("rooms.csv")).unwrap();
    std::fs::write(
        gb.join("rooms.csv"),
        [b"\xEF\xBB\xBF".as_slice(), &rooms].concat(),
    )
    .unwrap();
    let a = load(&utf8, &LoadOptions::default()).unwrap();
    let b = load(&gb, &LoadOptions::default()).unwrap();
    assert_eq!(b.report.encodings["people.csv"], "GB18030");
    assert_eq!(b.report.encodings["rooms.csv"], "UTF-8");
    for t in TableId::ALL {
        assert_eq!(
            a.batch(a.table(t), None, None).unwrap(),
            b.batch(b.table(t), None, None).unwrap(),
            "{}",
            t.name()
        );
    }
    // Forcing UTF-8 on the GB18030 twin fails, naming the file.
    let opts = LoadOptions {
        encoding: Encoding::Utf8,
        ..LoadOptions::default()
    };
    let e = load(&gb, &opts).unwrap_err().to_string();
    assert!(
        e.contains("grids.csv: not valid UTF-8") && e.contains("--encoding gb18030"),
        "{e}"
    );
}

fn broken(name: &str, f: impl FnOnce(&Path)) -> String {
    let dir = scratch(&format!("broken-{name}"));
    copy_dataset(&city(OutputFormat::Csv, false), &dir);
    f(&dir);
    let before = load(&city(OutputFormat::Csv, false), &LoadOptions::default()).unwrap();
    let e = load(&dir, &LoadOptions::default()).unwrap_err().to_string();
    // The CLI says the same, with exit status 2.
    let o = gridlens(&["check", "--data", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{name}: {}", stdout(&o));
    assert!(stderr(&o).contains(&e), "{name}: {}", stderr(&o));
    drop(before);
    e
}

#[test]
fn a_broken_dataset_fails_with_a_message_naming_the_file() {
    let e = broken("missing-table", |d| {
        std::fs::remove_file(d.join("grids.csv")).unwrap()
    });
    assert!(e.contains("required table grids is missing"), "{e}");

    let e = broken("missing-column", |d| {
        let text = std::fs::read_to_string(d.join("people.csv")).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            // Drop the second field (id_number); no field before it is quoted.
            let mut f: Vec<&str> = line.splitn(3, ',').collect();
            f.remove(1);
            out.push_str(&f.join(","));
            out.push('\n');
        }
        std::fs::write(d.join("people.csv"), out).unwrap();
    });
    assert!(
        e.contains("people.csv: required column id_number is missing"),
        "{e}"
    );

    let e = broken("unreadable-parquet", |d| {
        std::fs::remove_file(d.join("rooms.csv")).unwrap();
        std::fs::write(d.join("rooms.parquet"), b"this is not parquet").unwrap();
    });
    assert!(
        e.contains("rooms.parquet: not a readable Parquet file"),
        "{e}"
    );

    let e = broken("wrong-encoding", |d| {
        let mut bytes = std::fs::read(d.join("deaths.csv")).unwrap();
        bytes.extend_from_slice(b"\xff\xfe\xff,2026-01-01,x\n");
        std::fs::write(d.join("deaths.csv"), bytes).unwrap();
    });
    assert!(
        e.contains("deaths.csv: the text is not valid UTF-8 at line 403"),
        "{e}"
    );
    // Invalid bytes deep in a UTF-8 file with Chinese text are named at their own line, not
    // where the text first fails as GB18030.
    let e = broken("bad-bytes-late", |d| {
        let text = std::fs::read_to_string(d.join("grids.csv")).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut bytes = Vec::new();
        for (i, l) in lines.iter_mut().enumerate() {
            bytes.extend_from_slice(l.as_bytes());
            if i == 30 {
                bytes.extend_from_slice(b"\xff");
            }
            bytes.push(b'\n');
        }
        std::fs::write(d.join("grids.csv"), bytes).unwrap();
    });
    assert!(
        e.contains("grids.csv: the text is not valid UTF-8 at line 31"),
        "{e}"
    );

    let e = broken("given-twice", |d| {
        std::fs::create_dir_all(d.join("visits")).unwrap();
        std::fs::copy(d.join("visits.csv"), d.join("visits/part-1.csv")).unwrap();
    });
    assert!(e.contains("table visits is given twice"), "{e}");

    let e = broken("bad-manifest", |d| {
        std::fs::write(d.join("manifest.json"), "{ as_of: ").unwrap()
    });
    assert!(e.contains("manifest.json: not valid JSON"), "{e}");

    let e = load(Path::new("/nonexistent/city"), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/city does not exist"), "{e}");
}

#[test]
fn extra_columns_are_kept_and_column_order_is_free() {
    let dir = scratch("extra-columns");
    copy_dataset(&city(OutputFormat::Csv, false), &dir);
    // Reverse the column order of grids.csv and add a column of our own.
    let text = std::fs::read_to_string(dir.join("grids.csv")).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut f: Vec<&str> = line.split(',').collect();
        f.reverse();
        let extra = if i == 0 {
            "note".to_string()
        } else {
            format!("n{i}")
        };
        out.push_str(&format!("{},{extra}\n", f.join(",")));
    }
    std::fs::write(dir.join("grids.csv"), out).unwrap();
    let a = load(&city(OutputFormat::Csv, false), &LoadOptions::default()).unwrap();
    let b = load(&dir, &LoadOptions::default()).unwrap();
    let g = b.table(TableId::Grids);
    assert_eq!(g.schema.fields().last().unwrap().name(), "note");
    let ba = a.batch(a.table(TableId::Grids), None, None).unwrap();
    let bb = b.batch(g, None, None).unwrap();
    assert_eq!(ba.columns(), &bb.columns()[..ba.num_columns()]);
    assert_eq!(b.report.tables[0].extra_columns, vec!["note".to_string()]);
}

/// Regression (issue 15): a folder table whose second part adds a column loaded, then every
/// `SELECT *` of it panicked in SQL. The column is kept, null for the rows of the first part,
/// and queryable by name, through the engine and the command line.
#[test]
fn a_folder_table_whose_second_part_adds_a_column() {
    let dir = scratch("extra-in-second-part");
    copy_dataset(&city(OutputFormat::Csv, false), &dir);
    let text = std::fs::read_to_string(dir.join("people.csv")).unwrap();
    std::fs::remove_file(dir.join("people.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (head, rows) = (lines[0], &lines[1..]);
    let half = rows.len() / 2;
    std::fs::create_dir_all(dir.join("people")).unwrap();
    let mut first = format!("{head}\n");
    for l in &rows[..half] {
        first.push_str(&format!("{l}\n"));
    }
    let mut second = format!("{head},wechat\n");
    for (i, l) in rows[half..].iter().enumerate() {
        second.push_str(&format!("{l},wx{i}\n"));
    }
    std::fs::write(dir.join("people/part-0001.csv"), first).unwrap();
    std::fs::write(dir.join("people/part-0002.csv"), second).unwrap();
    let store = std::sync::Arc::new(load(&dir, &LoadOptions::default()).unwrap());
    assert_eq!(store.table(TableId::People).rows, rows.len());
    let engine = gridlens_engine::sql::SqlEngine::new(store);
    assert_eq!(
        count(&engine, "SELECT count(wechat) FROM people"),
        (rows.len() - half) as i64
    );
    let all = engine.query_blocking("SELECT * FROM people").unwrap();
    assert_eq!(all.rows(), rows.len());
    assert!(all.schema.index_of("wechat").is_ok());
    let o = gridlens(&[
        "sql",
        "--data",
        dir.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT * FROM people WHERE wechat = 'wx0'",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
}

#[test]
fn the_ground_truth_names_subjects_that_exist_in_their_grids() {
    let dir = city(OutputFormat::Parquet, false);
    let store = load(&dir, &LoadOptions::default()).unwrap();
    let truth = read_csv(&dir.join("truth/anomalies.csv"));
    let near = read_csv(&dir.join("truth/near_misses.csv"));
    // Every rule is planted, and every scenario at least once.
    let rules: BTreeSet<&str> = truth.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(rules.len(), 12, "{rules:?}");
    let near_rules: BTreeSet<&str> = near.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(near_rules.len(), 12, "{near_rules:?}");
    // Subjects are unique, and never both a finding and a near-miss.
    let t: BTreeSet<(String, String)> =
        truth.iter().map(|r| (r[0].clone(), r[2].clone())).collect();
    assert_eq!(t.len(), truth.len());
    for r in &near {
        assert!(!t.contains(&(r[0].clone(), r[2].clone())), "{r:?}");
    }
    // Each subject exists, in the grid the truth says.
    let people = store.table(TableId::People);
    let rooms = store.table(TableId::Rooms);
    let households = store.table(TableId::Households);
    let buildings = store.table(TableId::Buildings);
    let grid_of_building = |b: usize| -> String {
        let g = buildings.keys("grid_code").unwrap()[b] as usize;
        store
            .table(TableId::Grids)
            .strings("grid_code")
            .unwrap()
            .value(g)
            .to_string()
    };
    let grid_of_room = |r: usize| grid_of_building(rooms.keys("building_id").unwrap()[r] as usize);
    let find = |t: &gridlens_engine::store::StoredTable, key: &str, v: &str| -> usize {
        let s = t.strings(key).unwrap();
        t.key_index()
            .unwrap()
            .get(s, v)
            .unwrap_or_else(|| panic!("{v} not in {}", t.id.name())) as usize
    };
    for r in truth.iter().chain(&near) {
        let (rule, subject, grid) = (r[0].as_str(), r[2].as_str(), r[3].as_str());
        let actual = match rule {
            "R01" | "R02" => {
                let (_, place) = subject.split_once('@').unwrap();
                if rule == "R01" {
                    grid_of_building(find(buildings, "building_id", place))
                } else {
                    grid_of_room(find(rooms, "room_id", place))
                }
            }
            "R03" | "R08" | "R09" => grid_of_room(find(rooms, "room_id", subject)),
            "R12" => grid_of_room(
                households.keys("room_id").unwrap()[find(households, "household_id", subject)]
                    as usize,
            ),
            _ => grid_of_room(
                people.keys("room_id").unwrap()[find(people, "person_id", subject)] as usize,
            ),
        };
        assert_eq!(actual, grid, "{r:?}");
    }
}

#[test]
fn pooled_text_and_identities_keep_only_the_values_of_loaded_rows() {
    // Door devices and billing months are held as keys into their column's distinct values.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/edges");
    let dir = scratch("pooled-text");
    copy_dataset(&fixture, &dir);
    let append = |file: &str, rows: &str| {
        let mut text = std::fs::read_to_string(dir.join(file)).unwrap();
        text.push_str(rows);
        std::fs::write(dir.join(file), text).unwrap();
    };
    // A door event of an unknown building is rejected, and its device and identity with it; a
    // new device and a new identity of a loaded row are kept.
    append(
        "access_events.csv",
        "2026-10-21 21:00:00,NO-SUCH-BUILDING,ID-REJECTED,in,D-REJECTED\n\
         2026-10-21 22:00:00,B1,ID-LOADED,in,D9\n",
    );
    // A person whose record repeats P01's is rejected once the keys are checked, after the
    // batch was converted: the identity is not pooled either.
    append(
        "people.csv",
        "P01,ID-REPEATED,passport,甲一,F,1946-11-01,H1,R1,hukou,2000-01-01,2026-10-01,active,,\n",
    );
    // Months are kept as YYYY-MM, without the spaces around: " 2026-09" repeats R3's 2026-09
    // and is rejected; "2026-08 " is kept as 2026-08.
    append(
        "utility_readings.csv",
        "R3,\" 2026-09\",50,1\nR7,\"2026-08 \",5,1\n",
    );
    let store = load(&dir, &LoadOptions::default()).unwrap();
    let report = |t: &str| {
        store
            .report
            .tables
            .iter()
            .find(|r| r.table == t)
            .unwrap()
            .clone()
    };
    assert_eq!(report("access_events").rejected, 1);
    assert_eq!(report("people").rejected, 1);
    let identities: Vec<&str> = store.identities.iter().flatten().collect();
    assert!(identities.contains(&"ID-LOADED"));
    assert!(!identities.contains(&"ID-REJECTED"), "{identities:?}");
    assert!(!identities.contains(&"ID-REPEATED"), "{identities:?}");
    let fixture_ids = load(&fixture, &LoadOptions::default()).unwrap().identities;
    assert_eq!(identities.len(), fixture_ids.len() + 1);
    assert_eq!(report("utility_readings").rejected, 1);
    let reasons: Vec<String> = (0..store.rejects.num_rows())
        .map(|i| {
            let col = |n: &str| {
                let a = store.rejects.column_by_name(n).unwrap();
                arrow::util::display::array_value_to_string(a, i).unwrap()
            };
            format!("{} {}", col("table_name"), col("reason"))
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            "people duplicate_key".to_string(),
            "access_events unknown_reference".to_string(),
            "utility_readings duplicate_key".to_string()
        ]
    );

    let events = store.table(TableId::AccessEvents);
    let (keys, devices) = events.pooled("device_id").unwrap();
    let mut values: Vec<&str> = devices.iter().flatten().collect();
    values.sort();
    let fixture_store = load(&fixture, &LoadOptions::default()).unwrap();
    let (_, before) = fixture_store
        .table(TableId::AccessEvents)
        .pooled("device_id")
        .unwrap();
    let mut expected: Vec<&str> = before.iter().flatten().chain(["D9"]).collect();
    expected.sort();
    assert_eq!(values, expected, "no D-REJECTED, D9 added once");
    assert_eq!(keys.len(), events.rows);
    assert!(keys.iter().all(|&k| (k as usize) < devices.len()));

    let readings = store.table(TableId::UtilityReadings);
    let (keys, months) = readings.pooled("month").unwrap();
    let rooms = readings.keys("room_id").unwrap();
    let room_ids = store.table(TableId::Rooms).strings("room_id").unwrap();
    let r7: Vec<&str> = (0..readings.rows)
        .filter(|&i| room_ids.value(rooms[i] as usize) == "R7")
        .map(|i| months.value(keys[i] as usize))
        .collect();
    assert!(r7.contains(&"2026-08"), "{r7:?}");
    assert!(months.iter().flatten().all(|m| m.len() == 7), "{months:?}");
}

/// Rewrites one column of the first row of a Parquet file.
fn set_first(path: &Path, column: &str, value: arrow::array::ArrayRef) {
    use parquet::arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder};
    let f = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let i = schema.index_of(column).unwrap();
    let old = all.column(i);
    let rest = old.slice(1, old.len() - 1);
    let value = arrow::compute::cast(&value, old.data_type()).unwrap();
    let mut columns = all.columns().to_vec();
    columns[i] = arrow::compute::concat(&[value.as_ref(), rest.as_ref()]).unwrap();
    let out = arrow::record_batch::RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&out).unwrap();
    w.close().unwrap();
}

/// A typed Parquet date or timestamp can hold years `YYYY-MM-DD` cannot write (a damaged file
/// held one and the load panicked): such a row is rejected as out of range, and the rest loads.
#[test]
fn parquet_dates_beyond_year_9999_are_rejected_rows() {
    use arrow::array::{Date32Array, TimestampMicrosecondArray};
    let dir = scratch("far-dates");
    copy_dataset(&city(OutputFormat::Parquet, false), &dir);
    let clean = load(&dir, &LoadOptions::default()).unwrap();
    set_first(
        &dir.join("people.parquet"),
        "birth_date",
        std::sync::Arc::new(Date32Array::from(vec![6_600_000])),
    );
    set_first(
        &dir.join("incidents.parquet"),
        "reported_at",
        std::sync::Arc::new(
            TimestampMicrosecondArray::from(vec![i64::MAX - 5]).with_timezone("+08:00"),
        ),
    );
    let store = load(&dir, &LoadOptions::default()).unwrap();
    let b = &store.rejects;
    let text = |c: usize, i: usize| {
        let a = b
            .column(c)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>();
        a.map_or(String::new(), |a| a.value(i).to_string())
    };
    let got: BTreeSet<(String, String, String)> = (0..b.num_rows())
        .map(|i| (text(0, i), text(3, i), text(4, i)))
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("people", "birth_date", "out_of_range"),
        ("incidents", "reported_at", "out_of_range"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want, "{}", store.report.render());
    assert_eq!(store.report.loaded() + 2, clean.report.loaded());
}
