//! SQL tests as files, sqllogictest style (as DataFusion's own): `tests/sql/*.slt`.
//!
//! The file name says which dataset a file runs on: `sla_*.slt` on the hand-written SLA fixture
//! (`tests/fixtures/sla/`), `edges_*.slt` on the edges fixture, `city_*.slt` on the generated
//! city (scale 0.002, seed 42). Each file runs through the same path as `gridlens sql`:
//! [`SqlEngine::query`], with its named-argument rewriting and its read-only check.

mod common;

use common::*;
use gridlens_datasets::OutputFormat;
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::sql::SqlEngine;
use sqllogictest::{DBOutput, DefaultColumnType};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Db {
    engine: SqlEngine,
    rt: tokio::runtime::Runtime,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

fn cell(a: &dyn arrow::array::Array, row: usize) -> String {
    if a.is_null(row) {
        return "NULL".into();
    }
    let opts = arrow::util::display::FormatOptions::default();
    let f = arrow::util::display::ArrayFormatter::try_new(a, &opts).unwrap();
    let s = f.value(row).to_string();
    if s.is_empty() { "(empty)".into() } else { s }
}

impl sqllogictest::DB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let r = self
            .rt
            .block_on(self.engine.query(sql))
            .map_err(|e| DbError(e.to_string()))?;
        let types = r
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                t if t.is_floating() => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        // A multi-line cell (an EXPLAIN plan) becomes one row per line, numbered, with its
        // indentation shown as dashes, as in DataFusion's own .slt files.
        let mut rows: Vec<Vec<String>> = Vec::new();
        for b in &r.batches {
            for i in 0..b.num_rows() {
                let cells: Vec<String> = b.columns().iter().map(|c| cell(c.as_ref(), i)).collect();
                match cells.iter().position(|c| c.contains('\n')) {
                    None => rows.push(cells),
                    Some(k) => {
                        let lines: Vec<&str> =
                            cells[k].lines().filter(|l| !l.trim().is_empty()).collect();
                        for (j, line) in lines.iter().enumerate() {
                            let indent = line.len() - line.trim_start().len();
                            let mut row = cells.clone();
                            row[k] =
                                format!("{:02}){}{}", j + 1, "-".repeat(indent), line.trim_start());
                            rows.push(row);
                        }
                    }
                }
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }
}

fn dataset_for(file: &Path) -> PathBuf {
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    if name.starts_with("sla_") {
        fixtures.join("sla")
    } else if name.starts_with("edges_") {
        fixtures.join("edges")
    } else if name.starts_with("city_") {
        city(OutputFormat::Parquet, false)
    } else {
        panic!("{name}: an .slt file's name starts with sla_, edges_ or city_")
    }
}

#[test]
fn sql_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the .slt files in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for file in &files {
        let store = Arc::new(load(&dataset_for(file), &LoadOptions::default()).unwrap());
        let engine = SqlEngine::new(store);
        let mut runner = sqllogictest::Runner::new(move || {
            let engine = engine.clone();
            async move {
                Ok(Db {
                    engine,
                    rt: tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap(),
                })
            }
        });
        // `GRIDLENS_SLT_UPDATE=1 cargo test --test sql` rewrites the expected results with what
        // the engine answers (after a deliberate change, e.g. to the generator; check the diff).
        if std::env::var_os("GRIDLENS_SLT_UPDATE").is_some() {
            futures::executor::block_on(runner.update_test_file(
                file,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            continue;
        }
        if let Err(e) = runner.run_file(file) {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs a query's physical plan to the end and returns, for each `StoreScan` (in plan order),
/// its table, the rows it produced and the rows the joins' dynamic filters dropped.
fn scans_after_run(engine: &SqlEngine, sql: &str) -> (Vec<(String, usize, usize)>, String) {
    use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ctx = engine.context().unwrap();
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        fn walk(p: &Arc<dyn ExecutionPlan>, out: &mut Vec<(String, usize, usize)>) {
            if p.name() == "StoreScan" {
                let m = p.metrics().unwrap();
                let shown = displayable(p.as_ref()).one_line().to_string();
                let table = shown
                    .split("table=")
                    .nth(1)
                    .and_then(|s| s.split(',').next())
                    .unwrap()
                    .to_string();
                let dropped = m
                    .sum_by_name("dynamic_filtered_rows")
                    .map_or(0, |v| v.as_usize());
                out.push((table, m.output_rows().unwrap_or(0), dropped));
            }
            for c in p.children() {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(&plan, &mut out);
        (out, displayable(plan.as_ref()).indent(false).to_string())
    })
}

/// The joins' dynamic filters reach the scans and are filled in: joined to one street's
/// buildings, the rooms and people scans produce only that street's rows, and drop the rest
/// as they read. The join order puts the street's buildings first (the smallest input).
#[test]
fn dynamic_filters_narrow_the_scans() {
    let engine = city_engine();
    let street = "440104012";
    let rooms_in_street = count(
        &engine,
        &format!("SELECT count(*) FROM rooms WHERE grid_code LIKE '{street}%'"),
    ) as usize;
    let people_in_street = count(
        &engine,
        &format!(
            "SELECT count(*) FROM people WHERE grid_code LIKE '{street}%' AND status = 'active'"
        ),
    ) as usize;
    let rooms = count(&engine, "SELECT count(*) FROM rooms") as usize;
    let active = count(
        &engine,
        "SELECT count(*) FROM people WHERE status = 'active'",
    ) as usize;
    assert!(rooms_in_street > 0 && rooms_in_street < rooms);
    assert!(people_in_street > 0 && people_in_street < active);

    let (scans, plan) = scans_after_run(
        &engine,
        &format!(
            "SELECT count(*) FROM people p JOIN rooms r ON p.room_id = r.room_id \
             JOIN buildings b ON r.building_id = b.building_id \
             WHERE b.grid_code LIKE '{street}%' AND p.status = 'active'"
        ),
    );
    let (_, rooms_out, rooms_dropped) = find_in(&scans, "rooms");
    let (_, people_out, people_dropped) = find_in(&scans, "people");
    assert_eq!(
        (rooms_out, rooms_dropped),
        (rooms_in_street, rooms - rooms_in_street),
        "{plan}"
    );
    assert_eq!(
        (people_out, people_dropped),
        (people_in_street, active - people_in_street),
        "{plan}"
    );
    // Buildings are read first: the first scan of the plan is the street's buildings.
    assert_eq!(scans[0].0, "buildings", "{plan}");

    // Door events narrowed through their building, by value (the buildings' pool).
    let events_in_street = count(
        &engine,
        &format!("SELECT count(*) FROM access_events WHERE grid_code LIKE '{street}%'"),
    ) as usize;
    let events = count(&engine, "SELECT count(*) FROM access_events") as usize;
    let (scans, plan) = scans_after_run(
        &engine,
        &format!(
            "SELECT e.building_id, count(*) FROM access_events e \
             JOIN buildings b ON e.building_id = b.building_id \
             WHERE b.grid_code LIKE '{street}%' GROUP BY e.building_id"
        ),
    );
    let (_, out, dropped) = find_in(&scans, "access_events");
    assert_eq!(
        (out, dropped),
        (events_in_street, events - events_in_street),
        "{plan}"
    );

    // Joined to every room, every person passes: the scan reads them all and drops none.
    let sql = "SELECT count(*) FROM people p JOIN rooms r ON p.room_id = r.room_id \
               WHERE p.status = 'active'";
    let (scans, plan) = scans_after_run(&engine, sql);
    let (_, out, dropped) = find_in(&scans, "people");
    assert_eq!((out, dropped), (active, 0), "{plan}");
    let joined = count(&engine, sql) as usize;
    assert!(joined > 0 && joined <= active);
}

/// A scan gives its thread back once a [`SLICE`] has gone by since it last did: polled then,
/// it wakes its own task and returns `Pending`, and the next poll goes on where it stopped (so
/// that a query's other partition, woken meanwhile on the same thread, can be taken by an idle
/// one). Polled that way to the end, every partition gives exactly the rows it gives unpolled.
#[test]
fn scans_give_their_thread_back() {
    use datafusion::physical_plan::displayable;
    use futures::StreamExt;
    use gridlens_engine::sql::control::SLICE;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};

    struct Wakes(AtomicUsize);
    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let engine = city_engine();
    let sql = "SELECT room_id, id_number FROM people WHERE status = 'active'";
    let want = count(
        &engine,
        "SELECT count(*) FROM people WHERE status = 'active'",
    ) as usize;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ctx = engine.context().unwrap();
    let plan = rt.block_on(async {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    });
    let mut scan = plan.clone();
    while scan.name() != "StoreScan" {
        scan = scan.children()[0].clone();
    }
    let shown = displayable(plan.as_ref()).indent(false).to_string();
    let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
    let waker = futures::task::waker(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let (mut rows, mut batches, mut pending, mut after_slice) = (0, 0, 0, 0);
    let partitions = scan.properties().partitioning.partition_count();
    assert!(partitions >= 2, "{shown}");
    for p in 0..partitions {
        let mut stream = scan.execute(p, ctx.task_ctx()).unwrap();
        let mut woken = false;
        loop {
            if !woken {
                // A slice of other work between two reads: the next poll gives the thread back.
                std::thread::sleep(SLICE * 2);
                after_slice += 1;
            }
            match stream.poll_next_unpin(&mut cx) {
                Poll::Pending => {
                    if !woken {
                        pending += 1;
                    }
                    woken = true;
                }
                Poll::Ready(Some(b)) => {
                    assert!(
                        woken,
                        "a poll a slice after the last gave no thread back: {shown}"
                    );
                    rows += b.unwrap().num_rows();
                    batches += 1;
                    woken = false;
                }
                Poll::Ready(None) => {
                    assert!(woken, "{shown}");
                    break;
                }
            }
        }
    }
    assert_eq!(rows, want, "{shown}");
    assert!(batches >= 2, "{shown}");
    assert_eq!(pending, after_slice, "{shown}");
    assert!(wakes.0.load(Ordering::SeqCst) >= pending);
}

/// A join's dynamic filter that keeps most of the rows it tests (people joined to themselves
/// on their identity numbers) is given up after its first rows, and the answer is the same as
/// counted another way; one that drops most rows (a street's) is kept to the end.
#[test]
fn dynamic_filters_keeping_most_rows_are_given_up() {
    let engine = city_engine();
    let sql = "SELECT count(*) FROM people a JOIN people b ON a.id_number = b.id_number";
    let want = count(
        &engine,
        "SELECT sum(n * n) FROM (SELECT count(*) AS n FROM people WHERE id_number IS NOT NULL \
         GROUP BY id_number) t",
    );
    assert_eq!(count(&engine, sql), want);
    let analyzed = |sql: &str| {
        common::row_lines(
            &engine
                .query_blocking(&format!("EXPLAIN ANALYZE {sql}"))
                .unwrap(),
        )
        .join("\n")
    };
    let given_up = |plan: &str| -> usize {
        plan.split("dynamic_filters_given_up=")
            .skip(1)
            .map(|s| {
                s.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<usize>()
                    .unwrap_or(0)
            })
            .sum()
    };
    let plan = analyzed(sql);
    assert!(given_up(&plan) >= 1, "{plan}");
    let plan = analyzed("SELECT count(*) FROM people a JOIN deaths d ON a.id_number = d.id_number");
    assert_eq!(given_up(&plan), 0, "{plan}");
}

/// `CAST(date_trunc(unit, d) AS DATE)` over a date is worked out on day numbers
/// (`date_trunc_days`): each month's and week's count equals the count of its range of days,
/// nulls stay null, and the names and types are the query's own.
#[test]
fn dates_truncated_on_day_numbers() {
    let engine = city_engine();
    for (unit, step) in [("month", "1 month"), ("week", "7 days"), ("year", "1 year")] {
        let sql = format!(
            "SELECT CAST(date_trunc('{unit}', registered_on) AS DATE) AS start, count(*) AS n \
             FROM people GROUP BY 1 ORDER BY 1"
        );
        let r = engine.query_blocking(&sql).unwrap();
        assert_eq!(
            r.schema.field(0).data_type(),
            &arrow::datatypes::DataType::Date32
        );
        assert_eq!(r.schema.field(0).name(), "start");
        let lines = common::row_lines(&r);
        assert!(lines.len() > 1, "{unit}: {lines:?}");
        let mut total = 0;
        for line in &lines {
            let (start, n) = line.split_once('|').unwrap();
            let n: i64 = n.parse().unwrap();
            total += n;
            let want = if start == "NULL" {
                count(
                    &engine,
                    "SELECT count(*) FROM people WHERE registered_on IS NULL",
                )
            } else {
                count(
                    &engine,
                    &format!(
                        "SELECT count(*) FROM people WHERE registered_on >= DATE '{start}' \
                         AND registered_on < DATE '{start}' + INTERVAL '{step}'"
                    ),
                )
            };
            assert_eq!(n, want, "{unit} starting {start}");
        }
        assert_eq!(total, count(&engine, "SELECT count(*) FROM people"));
        let plan = common::row_lines(&engine.query_blocking(&format!("EXPLAIN {sql}")).unwrap())
            .join("\n");
        assert!(plan.contains("date_trunc_days"), "{plan}");
    }
}

/// The generated city loaded, and its engine.
fn city_engine() -> SqlEngine {
    SqlEngine::new(Arc::new(
        load(&city(OutputFormat::Parquet, false), &LoadOptions::default()).unwrap(),
    ))
}

/// The generated city loaded, its engine, the engine of a caller scoped to its first street
/// (without `pii`), and that street's code.
fn city_and_street() -> (
    Arc<gridlens_engine::store::Store>,
    SqlEngine,
    SqlEngine,
    String,
) {
    use gridlens_engine::scope::Scope;
    let store =
        Arc::new(load(&city(OutputFormat::Parquet, false), &LoadOptions::default()).unwrap());
    let engine = SqlEngine::new(store.clone());
    let street = text(&engine, "SELECT min(street_code) FROM grids");
    let scoped = engine
        .clone()
        .scoped(Scope::parse(&street, false).unwrap())
        .unwrap();
    (store, engine, scoped, street)
}

/// The door events' times as loaded, and the same sorted.
fn event_times(
    store: &gridlens_engine::store::Store,
) -> (arrow::array::TimestampMicrosecondArray, Vec<i64>) {
    let ts = store
        .table(gridlens_engine::contract::TableId::AccessEvents)
        .timestamps("ts")
        .unwrap()
        .clone();
    let mut sorted: Vec<i64> = ts.values().to_vec();
    sorted.sort_unstable();
    (ts, sorted)
}

/// The scan of a table among those [`scans_after_run`] found.
fn find_in(scans: &[(String, usize, usize)], t: &str) -> (String, usize, usize) {
    scans.iter().find(|s| s.0 == t).unwrap().clone()
}

/// Which instants a condition keeps.
type Keep = Box<dyn Fn(i64) -> bool>;

/// Door events' time ranges are answered from the store's building-and-time order: for every
/// comparison, at instants that events hold (inclusive and exclusive edges) and between them,
/// the count equals a count over the raw column, for the city and for one street; the scan
/// reads only the rows in the range, and `EXPLAIN` names the filter it answered.
#[test]
fn door_event_time_ranges_from_the_index() {
    use arrow::array::Array;
    let (store, engine, scoped, street) = city_and_street();
    let (ts, sorted) = event_times(&store);
    assert!(ts.len() > 1000 && ts.null_count() == 0);
    let pick = |q: usize| sorted[(sorted.len() - 1) * q / 100];
    let lit = |v: i64| {
        let t = chrono::DateTime::from_timestamp_micros(v)
            .unwrap()
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
        format!("'{}'", t.format("%Y-%m-%d %H:%M:%S%.6f%:z"))
    };
    let instants = [
        pick(0),
        pick(13),
        pick(50),
        pick(87),
        pick(100),
        pick(50) + 1,
        sorted[0] - 1,
    ];
    for &a in &instants {
        for &b in &instants {
            let cases: [(String, Keep); 6] = [
                (format!("ts < {}", lit(a)), Box::new(move |v| v < a)),
                (format!("ts <= {}", lit(a)), Box::new(move |v| v <= a)),
                (format!("ts > {}", lit(a)), Box::new(move |v| v > a)),
                (format!("ts >= {}", lit(a)), Box::new(move |v| v >= a)),
                (format!("ts = {}", lit(a)), Box::new(move |v| v == a)),
                (
                    format!("ts >= {} AND ts < {}", lit(a), lit(b)),
                    Box::new(move |v| v >= a && v < b),
                ),
            ];
            for (cond, keep) in cases {
                let want = ts.values().iter().filter(|&&v| keep(v)).count() as i64;
                let sql = format!("SELECT count(*) FROM access_events WHERE {cond}");
                assert_eq!(count(&engine, &sql), want, "{sql}");
                let in_street = format!(
                    "SELECT count(*) FROM access_events WHERE grid_code LIKE '{street}%' AND {cond}"
                );
                assert_eq!(
                    count(&scoped, &sql),
                    count(&engine, &in_street),
                    "{sql} for {street}"
                );
            }
        }
    }
    // Only the day's rows are read, and EXPLAIN says the index answered.
    let (a, b) = (pick(40), pick(45));
    let sql = format!(
        "SELECT building_id, count(*) FROM access_events WHERE ts >= {} AND ts < {} GROUP BY 1",
        lit(a),
        lit(b)
    );
    let (scans, plan) = scans_after_run(&engine, &sql);
    let (_, out, _) = find_in(&scans, "access_events");
    let want = ts.values().iter().filter(|&&v| v >= a && v < b).count();
    assert_eq!(out, want, "{plan}");
    assert!(out < ts.len() / 2, "{plan}");
    assert!(plan.contains("index=[ts >="), "{plan}");
}

/// A timestamp without time zone written with an offset means the city's wall-clock time of
/// the instant it names (as in DuckDB, and as PostgreSQL reads `+08:00`): every way of writing
/// one instant counts the same door events as the raw column, in `WHERE` and in the select list.
#[test]
fn timestamps_written_with_an_offset_mean_that_instant() {
    let (store, engine, _, _) = city_and_street();
    let (ts, sorted) = event_times(&store);
    for q in [10, 50, 90] {
        let a = sorted[(sorted.len() - 1) * q / 100];
        let want = ts.values().iter().filter(|&&v| v >= a).count() as i64;
        let at = chrono::DateTime::from_timestamp_micros(a).unwrap();
        let city = at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
        let forms = [
            format!("'{}'", city.format("%Y-%m-%d %H:%M:%S%.6f%:z")),
            format!("TIMESTAMP '{}'", city.format("%Y-%m-%d %H:%M:%S%.6f%:z")),
            format!("TIMESTAMP '{}'", city.format("%Y-%m-%dT%H:%M:%S%.6f%:z")),
            format!("TIMESTAMP '{}'", city.format("%Y-%m-%d %H:%M:%S%.6f")),
            format!("TIMESTAMP '{}'", at.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            format!(
                "CAST('{}' AS TIMESTAMP)",
                at.format("%Y-%m-%d %H:%M:%S%.6f+00:00")
            ),
            format!(
                "'{}'::timestamp",
                city.format("%Y-%m-%d %H:%M:%S%.6f+08:00")
            ),
        ];
        for f in &forms {
            let sql = format!("SELECT count(*) FROM access_events WHERE ts >= {f}");
            assert_eq!(count(&engine, &sql), want, "{sql}");
            let sql =
                format!("SELECT sum(CASE WHEN ts >= {f} THEN 1 ELSE 0 END) FROM access_events");
            assert_eq!(count(&engine, &sql), want, "{sql}");
        }
    }
    // The literal itself shows the city's wall clock, under the name the query gave it.
    assert_eq!(
        text(
            &engine,
            "SELECT CAST(TIMESTAMP '2026-10-01 00:00:00+08:00' AS VARCHAR) AS t"
        ),
        "2026-10-01T00:00:00"
    );
}

/// A filter that needs a value in a column mostly null reads only the rows holding one: the
/// scan narrows to them (`care_tags IS NOT NULL` among its index filters) and the filter is
/// applied above it. Every filter counts what the same condition counts when worked out on
/// every row (a `CASE` in the select list, which nothing pushes down), for the city and for a
/// street caller without `pii`; `IS NULL` and `IS NOT NULL` are answered from the rows holding
/// values, against counts of the raw column, but never for a column the caller sees masked.
#[test]
fn sparse_columns_read_only_rows_holding_values() {
    use arrow::array::Array;
    use gridlens_engine::contract::TableId;
    let (store, engine, scoped, _) = city_and_street();
    let people = store.table(TableId::People);
    let care = people.strings("care_tags").unwrap();
    let tagged = care.len() - care.null_count();
    assert!(
        tagged > 0 && tagged * 4 < people.rows,
        "care_tags must be sparse"
    );
    let tag = text(&engine, "SELECT min(care_tags) FROM people");
    let conditions = [
        "care_tags LIKE '%elderly_alone%'".to_string(),
        format!("care_tags = '{tag}'"),
        format!("care_tags <> '{tag}'"),
        format!("care_tags NOT IN ('{tag}', 'none')"),
        "care_tags BETWEEN 'a' AND 'h'".to_string(),
        "care_tags NOT LIKE '%a%'".to_string(),
        format!("(care_tags LIKE 'e%' OR care_tags = '{tag}') AND status = 'active'"),
        "care_tags IS NOT NULL".to_string(),
        "care_tags IS NULL".to_string(),
        // Not narrowed: the column may be null where these pass.
        "NOT (care_tags LIKE '%a%')".to_string(),
        "care_tags LIKE '%a%' OR phone IS NULL".to_string(),
        "coalesce(care_tags, 'x') = 'x'".to_string(),
        "care_tags IS NULL OR care_tags LIKE 'e%'".to_string(),
        "phone IS NULL".to_string(),
        "phone IS NOT NULL AND care_tags IS NULL".to_string(),
    ];
    for cond in &conditions {
        for e in [&engine, &scoped] {
            let filtered = count(e, &format!("SELECT count(*) FROM people WHERE {cond}"));
            let every_row = count(
                e,
                &format!("SELECT coalesce(sum(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) FROM people"),
            );
            assert_eq!(filtered, every_row, "{cond}");
        }
    }
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM people WHERE care_tags IS NOT NULL"
        ) as usize,
        tagged
    );
    assert_eq!(
        count(
            &engine,
            "SELECT count(*) FROM people WHERE care_tags IS NULL"
        ) as usize,
        care.null_count()
    );
    // The scan reads the tagged rows only.
    let (scans, plan) = scans_after_run(
        &engine,
        "SELECT count(*) FROM people WHERE care_tags LIKE '%elderly_alone%'",
    );
    assert_eq!(find_in(&scans, "people").1, tagged, "{plan}");
    assert!(plan.contains("index=[care_tags IS NOT NULL]"), "{plan}");
    // A column null in most rows is not narrowed by a filter that may pass its nulls.
    let (scans, plan) = scans_after_run(
        &engine,
        "SELECT count(*) FROM people WHERE coalesce(care_tags, 'x') = 'x'",
    );
    assert_eq!(find_in(&scans, "people").1, people.rows, "{plan}");
    // IS NULL of a column the caller sees masked is worked out on what the caller sees.
    let explain = |e: &SqlEngine, sql: &str| cells(e, &format!("EXPLAIN {sql}"))[1][1].clone();
    let sql = "SELECT max(status) FROM people WHERE phone IS NULL";
    assert!(
        explain(&engine, sql)
            .unwrap()
            .contains("index=[phone IS NULL]"),
        "{:?}",
        explain(&engine, sql)
    );
    assert!(
        !explain(&scoped, sql).unwrap().contains("phone IS NULL]"),
        "{:?}",
        explain(&scoped, sql)
    );
}
