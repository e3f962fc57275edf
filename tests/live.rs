//! The live city against a real server: ingest in every format (appends and upserts), rejects
//! named row by row, versions served atomically and replayed after a restart, the feeder role
//! and its scope, the closed loop (a task closed as fixed with its correction), the offline
//! `gridlens ingest`, restarts from snapshots, and SIGKILL at random moments during ingest.

mod common;

use common::server::{Server, add_token, with_admin};
use common::{gridlens, stderr, stdout};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn one(server: &Server, token: &str, sql: &str) -> Value {
    let r = server.rows(token, sql);
    assert_eq!(r.len(), 1, "{sql}: {r:?}");
    r[0].clone()
}

fn count(server: &Server, token: &str, sql: &str) -> i64 {
    one(server, token, sql)["n"]
        .as_i64()
        .unwrap_or_else(|| panic!("{sql}: no n"))
}

/// Queries whose answers must not depend on how a version was built.
const FINGERPRINT: [&str; 7] = [
    "SELECT rule, subject_id, grid_code, CAST(evidence AS VARCHAR) AS e FROM anomalies ORDER BY rule, subject_id",
    "SELECT count(*) AS n, count(DISTINCT id_number) AS ids, count(DISTINCT device_id) AS devices FROM access_events",
    "SELECT table_name, source_file, row_number, reason FROM rejects ORDER BY 1, 2, 3, 4",
    "SELECT status, residence_kind, count(*) AS n FROM people GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT * FROM grid_kpis ORDER BY code",
    "SELECT room_id, area_m2, grid_code FROM rooms WHERE area_m2 < 10 ORDER BY room_id",
    "SELECT visit_id, worker_id, grid_code FROM visits ORDER BY visit_id",
];

fn fingerprint(server: &Server, token: &str) -> Vec<Vec<Value>> {
    FINGERPRINT.iter().map(|q| server.rows(token, q)).collect()
}

fn status_of(server: &Server, token: &str, person: &str) -> String {
    one(
        server,
        token,
        &format!("SELECT status FROM people WHERE person_id = '{person}'"),
    )["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ingest(server: &Server, token: &str, table: &str, ct: &str, body: &[u8]) -> (u16, Value) {
    let a = server.send(
        "POST",
        &format!("/v1/ingest/{table}"),
        &[("authorization", &format!("Bearer {token}"))],
        Some((ct, body)),
    );
    let v = serde_json::from_slice(&a.body).unwrap_or_else(|_| json!({"text": a.text()}));
    (a.status, v)
}

fn arrow_stream(batch: &arrow::array::RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

#[test]
fn ingest_appends_and_upserts_in_every_format_and_survives_a_restart() {
    let (server, state, admin, data) = with_admin("live-ingest", &["--max-ingest-mb", "1"]);
    let b = one(
        &server,
        &admin,
        "SELECT building_id FROM buildings ORDER BY building_id LIMIT 1",
    );
    let building = b["building_id"].as_str().unwrap().to_string();
    let events = count(&server, &admin, "SELECT count(*) AS n FROM access_events");
    let health = server.get("/v1/health", None).json();
    assert_eq!(health["dataset"]["version"], 0);

    // CSV appends: three good rows and one with a bad timestamp, named by its place.
    let csv = format!(
        "ts,building_id,id_number,direction,device_id\n\
         2026-11-30 08:00:00,{building},,in,dev-live\n\
         2026-11-30T08:01:00+08:00,{building},,out,dev-live\n\
         2026-11-30 08:02:00,{building},,in,dev-live\n\
         yesterday,{building},,in,dev-live\n"
    );
    let (status, r) = ingest(&server, &admin, "access_events", "text/csv", csv.as_bytes());
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["kind"], "append");
    assert_eq!(
        (r["received"].as_u64(), r["accepted"].as_u64()),
        (Some(4), Some(3))
    );
    assert_eq!(r["rejects"][0]["row"], 4, "{r}");
    assert_eq!(r["rejects"][0]["column"], "ts");
    assert_eq!(r["rejects"][0]["reason"], "bad_value");
    assert_eq!(r["version"], 1);
    assert_eq!(
        count(&server, &admin, "SELECT count(*) AS n FROM access_events"),
        events + 3
    );
    assert_eq!(
        count(
            &server,
            &admin,
            "SELECT count(*) AS n FROM access_events WHERE device_id = 'dev-live'"
        ),
        3
    );
    // The rejected row is in the rejects table, under the log's file.
    assert_eq!(
        count(
            &server,
            &admin,
            "SELECT count(*) AS n FROM rejects WHERE source_file = 'ingest/000000000001.access_events.csv'"
        ),
        1
    );

    // NDJSON upsert: a person moves out; the record is replaced, not added.
    let people = count(&server, &admin, "SELECT count(*) AS n FROM people");
    let p = one(
        &server,
        &admin,
        "SELECT person_id, id_number, doc_type, name, sex, CAST(birth_date AS VARCHAR) AS birth_date, household_id, room_id, residence_kind, CAST(registered_on AS VARCHAR) AS registered_on FROM people WHERE status = 'active' ORDER BY person_id LIMIT 1",
    );
    let mut row = p.as_object().unwrap().clone();
    row.insert("status".into(), json!("moved_out"));
    let line = serde_json::to_string(&row).unwrap() + "\n";
    let (status, r) = ingest(
        &server,
        &admin,
        "people",
        "application/x-ndjson",
        line.as_bytes(),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["kind"].as_str(), r["accepted"].as_u64()),
        (Some("upsert"), Some(1))
    );
    let pid = p["person_id"].as_str().unwrap();
    assert_eq!(
        count(&server, &admin, "SELECT count(*) AS n FROM people"),
        people
    );
    assert_eq!(status_of(&server, &admin, pid), "moved_out");

    // Arrow IPC appends: a visit by a worker, typed columns.
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let w = one(
        &server,
        &admin,
        "SELECT worker_id FROM workers ORDER BY worker_id LIMIT 1",
    );
    let worker = w["worker_id"].as_str().unwrap().to_string();
    let schema = Arc::new(Schema::new(vec![
        Field::new("visit_id", DataType::Utf8, false),
        Field::new("worker_id", DataType::Utf8, false),
        Field::new(
            "visited_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+08:00".into())),
            false,
        ),
        Field::new("kind", DataType::Utf8, false),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["V-LIVE-1", "V-LIVE-2"])),
            Arc::new(StringArray::from(vec![worker.as_str(), "W-NOBODY"])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_764_460_800_000_000, 1_764_460_800_000_000])
                    .with_timezone("+08:00"),
            ),
            Arc::new(StringArray::from(vec!["patrol", "patrol"])),
        ],
    )
    .unwrap();
    let (status, r) = ingest(
        &server,
        &admin,
        "visits",
        "application/vnd.apache.arrow.stream",
        &arrow_stream(&batch),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(r["rejects"][0]["row"], 2);
    assert_eq!(r["rejects"][0]["reason"], "unknown_reference", "{r}");
    assert_eq!(r["version"], 3);
    assert_eq!(
        one(
            &server,
            &admin,
            "SELECT CAST(visited_at AS VARCHAR) AS t FROM visits WHERE visit_id = 'V-LIVE-1'"
        )["t"],
        "2025-11-30T08:00:00+08:00"
    );

    // A rooms upsert (a room found much smaller than registered): a change every table that
    // refers to rooms follows, so the next version loads them again and shares the rest.
    let mut room = one(
        &server,
        &admin,
        "SELECT r.* FROM rooms r JOIN (SELECT room_id, count(*) AS n FROM people WHERE status = 'active' GROUP BY room_id) p USING (room_id) WHERE p.n >= 3 ORDER BY room_id LIMIT 1",
    )
    .as_object()
    .unwrap()
    .clone();
    room.remove("grid_code");
    room.insert("area_m2".into(), json!(6.5));
    let line = serde_json::to_string(&room).unwrap() + "\n";
    let (status, r) = ingest(
        &server,
        &admin,
        "rooms",
        "application/x-ndjson",
        line.as_bytes(),
    );
    assert_eq!((status, r["accepted"].as_u64()), (200, Some(1)), "{r}");
    assert_eq!(r["version"], 4);
    let rid = room["room_id"].as_str().unwrap();
    assert_eq!(
        count(
            &server,
            &admin,
            &format!(
                "SELECT count(*) AS n FROM anomalies WHERE rule = 'R09' AND room_id = '{rid}'"
            )
        ),
        1,
        "the room is now overcrowded"
    );

    // What ingest refuses, in one sentence each; the city stays at version 4.
    let (s, r) = ingest(&server, &admin, "grids", "text/csv", b"grid_code\nx\n");
    assert_eq!(s, 400, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("reload"),
        "{r}"
    );
    let (s, _) = ingest(&server, &admin, "nonsense", "text/csv", b"a\n1\n");
    assert_eq!(s, 400);
    let (s, r) = ingest(&server, &admin, "visits", "text/plain", b"a\n1\n");
    assert_eq!(s, 415, "{r}");
    let (s, r) = ingest(
        &server,
        &admin,
        "visits",
        "application/x-ndjson",
        b"{\"visit_id\": \n",
    );
    assert_eq!(s, 400, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("line 1"),
        "{r}"
    );
    // Every row rejected: 422, nothing written.
    let (s, r) = ingest(
        &server,
        &admin,
        "access_events",
        "text/csv",
        b"ts,building_id,direction\nnot-a-time,B-NONE,in\n",
    );
    assert_eq!(s, 422, "{r}");
    assert_eq!(r["version"], 4);
    // A missing required column is a file-level fault: refused whole, served data untouched.
    let (s, r) = ingest(
        &server,
        &admin,
        "access_events",
        "text/csv",
        b"ts\n2026-11-30 08:00:00\n",
    );
    assert_eq!(s, 400, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("building_id") && !msg.contains(state.to_str().unwrap()),
        "{msg}"
    );
    assert_eq!(
        server.get("/v1/health", None).json()["dataset"]["version"],
        4
    );
    // A value over two lines moves the rows after it down a line of the log's file: rejects
    // are named by their place as sent, whether the batch is loaded from its rows as parsed
    // (all of one length) or read back from the file (a row of the wrong length); after the
    // restart below, the rejects table names the same lines of the same files. Each batch
    // has one row accepted.
    let rejected = |body: &str| -> Vec<(u64, String)> {
        let (s, r) = ingest(
            &server,
            &admin,
            "access_events",
            "text/csv",
            body.as_bytes(),
        );
        assert_eq!((s, r["accepted"].as_u64()), (200, Some(1)), "{r}");
        r["rejects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["row"].as_u64().unwrap(),
                    x["reason"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let two_lines = format!(
        "ts,building_id,id_number,direction,device_id\n\
         2026-11-30 09:00:00,{building},,in,\"dev\nlive\"\n\
         never,{building},,in,dev-live\n"
    );
    assert_eq!(rejected(&two_lines), vec![(2, "bad_value".to_string())]);
    let ragged = format!(
        "ts,building_id,id_number,direction,device_id\n\
         2026-11-30 09:01:00,{building},,in,\"dev\nlive\"\n\
         2026-11-30 09:02:00,{building},in\n\
         never,{building},,in,dev-live\n"
    );
    assert_eq!(
        rejected(&ragged),
        vec![
            (2, "wrong_field_count".to_string()),
            (3, "bad_value".to_string())
        ]
    );
    assert_eq!(
        server.rows(
            &admin,
            "SELECT source_file, row_number FROM rejects \
             WHERE source_file >= 'ingest/000000000005' ORDER BY 1, 2"
        ),
        vec![
            json!({"source_file": "ingest/000000000005.access_events.csv", "row_number": 4}),
            json!({"source_file": "ingest/000000000006.access_events.csv", "row_number": 4}),
            json!({"source_file": "ingest/000000000006.access_events.csv", "row_number": 5}),
        ]
    );
    assert_eq!(
        count(
            &server,
            &admin,
            "SELECT count(*) AS n FROM access_events WHERE device_id = 'dev\nlive'"
        ),
        2
    );
    let segments = std::fs::read_dir(state.join("ingest")).unwrap().count();
    assert_eq!(segments, 6, "only committed batches are in the log");
    // What the versions built from the served one hold, to compare with a whole load.
    let seen = fingerprint(&server, &admin);

    // A restart without snapshots replays the log, loading everything: the same rows,
    // anomalies, rejects, KPIs.
    drop(server);
    std::fs::remove_dir_all(state.join("snapshots")).unwrap_or_default();
    let server = Server::start(&[
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(
        server.get("/v1/health", None).json()["dataset"]["version"],
        6
    );
    let whole = fingerprint(&server, &admin);
    for (q, (a, b)) in FINGERPRINT.iter().zip(seen.iter().zip(&whole)) {
        assert_eq!(
            a, b,
            "{q}: the version built on the served one differs from a whole load"
        );
    }
    assert_eq!(
        count(&server, &admin, "SELECT count(*) AS n FROM access_events"),
        events + 5
    );
    assert_eq!(
        count(&server, &admin, "SELECT count(*) AS n FROM people"),
        people
    );
    assert_eq!(status_of(&server, &admin, pid), "moved_out");
    assert_eq!(
        count(
            &server,
            &admin,
            "SELECT count(*) AS n FROM visits WHERE visit_id = 'V-LIVE-1'"
        ),
        1
    );
    // The load report reconciles: the replaced record is counted as superseded.
    let m = server.get("/v1/metrics", Some(&admin)).text();
    assert!(m.contains("gridlens_reloads_total"), "{m}");
}

#[test]
fn a_feeder_ingests_within_its_scope_and_nothing_else() {
    let (server, state, admin, _data) = with_admin("live-feeder", &[]);
    let streets = server.rows(
        &admin,
        "SELECT DISTINCT street_code FROM grids ORDER BY street_code LIMIT 2",
    );
    let (mine, other) = (
        streets[0]["street_code"].as_str().unwrap().to_string(),
        streets[1]["street_code"].as_str().unwrap().to_string(),
    );
    let building_in = |street: &str| {
        one(
            &server,
            &admin,
            &format!(
                "SELECT b.building_id FROM buildings b JOIN grids g ON b.grid_code = g.grid_code WHERE g.street_code = '{street}' ORDER BY b.building_id LIMIT 1"
            ),
        )["building_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (b_mine, b_other) = (building_in(&mine), building_in(&other));
    let feeder = add_token(
        &state,
        &["--name", "doors", "--role", "feeder", "--scope", &mine],
    );
    let csv = format!(
        "ts,building_id,direction,device_id\n\
         2026-11-30 09:00:00,{b_mine},in,dev-feed\n\
         2026-11-30 09:00:01,{b_other},in,dev-feed\n\
         2026-11-30 09:00:02,B-NOWHERE,in,dev-feed\n"
    );
    let (s, r) = ingest(
        &server,
        &feeder,
        "access_events",
        "text/csv",
        csv.as_bytes(),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["accepted"], 1, "{r}");
    let reasons: Vec<(u64, &str)> = r["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["row"].as_u64().unwrap(), x["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, vec![(2, "outside_scope"), (3, "outside_scope")]);
    // The reject names no place outside the scope.
    assert!(!r.to_string().contains(&other), "{r}");
    assert_eq!(
        count(
            &server,
            &admin,
            "SELECT count(*) AS n FROM access_events WHERE device_id = 'dev-feed'"
        ),
        1
    );
    // An upsert of a record outside the scope is refused, even when the row says a room inside.
    let outside = one(
        &server,
        &admin,
        &format!(
            "SELECT p.person_id, p.id_number, p.doc_type, p.name, p.sex, CAST(p.birth_date AS VARCHAR) AS birth_date, p.room_id, p.residence_kind, CAST(p.registered_on AS VARCHAR) AS registered_on, p.status FROM people p JOIN grids g ON p.grid_code = g.grid_code WHERE g.street_code = '{other}' ORDER BY p.person_id LIMIT 1"
        ),
    );
    let room_mine = one(
        &server,
        &admin,
        &format!(
            "SELECT r.room_id FROM rooms r JOIN grids g ON r.grid_code = g.grid_code WHERE g.street_code = '{mine}' ORDER BY r.room_id LIMIT 1"
        ),
    )["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut moved = outside.as_object().unwrap().clone();
    moved.insert("room_id".into(), json!(room_mine));
    let (s, r) = ingest(
        &server,
        &feeder,
        "people",
        "application/x-ndjson",
        (serde_json::to_string(&moved).unwrap() + "\n").as_bytes(),
    );
    assert_eq!(s, 422, "{r}");
    assert_eq!(r["rejects"][0]["reason"], "outside_scope");
    // A visit whose id is taken by a visit outside the scope: rejected as a repeat, without
    // saying where the other one is.
    let (taken, my_worker) = (
        one(
            &server,
            &admin,
            &format!("SELECT v.visit_id FROM visits v JOIN workers w USING (worker_id) JOIN grids g ON w.grid_code = g.grid_code WHERE g.street_code = '{other}' ORDER BY v.visit_id LIMIT 1"),
        )["visit_id"]
            .as_str()
            .unwrap()
            .to_string(),
        one(
            &server,
            &admin,
            &format!("SELECT w.worker_id FROM workers w JOIN grids g ON w.grid_code = g.grid_code WHERE g.street_code = '{mine}' ORDER BY w.worker_id LIMIT 1"),
        )["worker_id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let csv = format!(
        "visit_id,worker_id,visited_at,kind\n{taken},{my_worker},2026-11-30 10:00:00,patrol\n"
    );
    let (s, r) = ingest(&server, &feeder, "visits", "text/csv", csv.as_bytes());
    assert_eq!(
        (s, r["rejects"][0]["reason"].as_str()),
        (422, Some("duplicate_key")),
        "{r}"
    );
    let detail = r["rejects"][0]["detail"].as_str().unwrap();
    assert!(
        !detail.contains("repeats") && !detail.contains(".parquet") && !detail.contains(".csv"),
        "{detail}"
    );
    // Deaths have no grid: a street feeder may not send them; a city feeder may.
    let (s, r) = ingest(
        &server,
        &feeder,
        "deaths",
        "text/csv",
        b"id_number,died_on\n110101199001011237,2026-11-01\n",
    );
    assert_eq!(
        (s, r["rejects"][0]["reason"].as_str()),
        (422, Some("outside_scope"))
    );
    let city_feeder = add_token(&state, &["--name", "registry", "--role", "feeder"]);
    let (s, r) = ingest(
        &server,
        &city_feeder,
        "deaths",
        "text/csv",
        b"id_number,died_on,source\n110101199001011237,2026-11-01,hospital\n",
    );
    assert_eq!((s, r["accepted"].as_u64()), (200, Some(1)), "{r}");
    // A feeder does nothing but ingest; no one but admins and feeders ingests.
    for (path, what) in [
        ("/v1/tables", "catalog"),
        ("/v1/kpis/grids", "kpis"),
        ("/v1/tasks", "tasks"),
        ("/v1/dashboard", "dashboard"),
    ] {
        assert_eq!(server.get(path, Some(&feeder)).status, 403, "{what}");
    }
    assert_eq!(server.sql(&feeder, "SELECT 1").status, 403);
    let analyst = add_token(&state, &["--name", "ana", "--role", "analyst"]);
    let leader = add_token(&state, &["--name", "lee", "--role", "leader"]);
    for t in [&analyst, &leader] {
        let (s, _) = ingest(&server, t, "access_events", "text/csv", csv.as_bytes());
        assert_eq!(s, 403);
    }
    let (s, _) = ingest(
        &server,
        "glt_not-a-token",
        "access_events",
        "text/csv",
        csv.as_bytes(),
    );
    assert_eq!(s, 401);
    // With PostgreSQL: a feeder's token is not a way into SQL either.
    let pg = server.pg_port.unwrap();
    let conn = format!("host=127.0.0.1 port={pg} user=doors password={feeder} dbname=gridlens");
    let o = std::process::Command::new("psql")
        .args([&conn, "-c", "SELECT 1"])
        .output();
    if let Ok(o) = o {
        assert!(
            !o.status.success(),
            "psql as a feeder: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn a_worker_closes_a_task_with_its_correction_and_the_anomaly_is_gone() {
    let (server, state, admin, _data) = with_admin("live-loop", &[]);
    // A dead person still registered (R05), in a grid with a worker.
    let t = one(
        &server,
        &admin,
        "SELECT task_id, subject_id, worker_id FROM tasks WHERE rule = 'R05' AND status = 'open' AND worker_id IS NOT NULL ORDER BY task_id LIMIT 1",
    );
    let (task, person, worker) = (
        t["task_id"].as_str().unwrap().to_string(),
        t["subject_id"].as_str().unwrap().to_string(),
        t["worker_id"].as_str().unwrap().to_string(),
    );
    let grid = one(
        &server,
        &admin,
        &format!("SELECT grid_code FROM workers WHERE worker_id = '{worker}'"),
    )["grid_code"]
        .as_str()
        .unwrap()
        .to_string();
    let wt = add_token(
        &state,
        &[
            "--name", "wu", "--role", "worker", "--worker", &worker, "--scope", &grid, "--pii",
        ],
    );
    let before = count(
        &server,
        &admin,
        &format!(
            "SELECT count(*) AS n FROM anomalies WHERE rule = 'R05' AND subject_id = '{person}'"
        ),
    );
    assert_eq!(before, 1);
    // The worker sends what they corrected; the rest of the record is the record's own.
    let fields = "person_id, id_number, name, sex, CAST(birth_date AS VARCHAR) AS b, room_id, household_id, CAST(registered_on AS VARCHAR) AS r, last_verified_on, care_tags";
    let record = |pid: &str| {
        one(
            &server,
            &admin,
            &format!("SELECT {fields} FROM people WHERE person_id = '{pid}'"),
        )
    };
    let before_record = record(&person);
    let row = json!({"person_id": person, "status": "deceased"})
        .as_object()
        .unwrap()
        .clone();
    // A correction with a bad row is refused whole: nothing written, the task still open.
    let mut bad = row.clone();
    bad.insert("sex".into(), json!("unknown-sex"));
    let r = server.post(
        &format!("/v1/tasks/{task}/close"),
        Some(&wt),
        &json!({"outcome": "fixed", "correction": {"table": "people", "rows": [bad]}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("nothing was written"), "{}", r.text());
    assert_eq!(
        server.get("/v1/health", None).json()["dataset"]["version"],
        0
    );
    // A correction with another outcome is refused.
    let r = server.post(
        &format!("/v1/tasks/{task}/close"),
        Some(&wt),
        &json!({"outcome": "unreachable", "correction": {"table": "people", "rows": [row]}}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // The correction, with fixed: recorded as deceased; the task is closed as fixed; the next
    // evaluation no longer finds the anomaly.
    let r = server.post(
        &format!("/v1/tasks/{task}/close"),
        Some(&wt),
        &json!({"outcome": "fixed", "note": "家属确认已故", "correction": {"table": "people", "rows": [row]}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = r.json();
    assert_eq!(r["status"], "closed");
    assert_eq!(r["correction"]["accepted"], 1, "{r}");
    assert_eq!(r["correction"]["version"], 1);
    let after = count(
        &server,
        &admin,
        &format!(
            "SELECT count(*) AS n FROM anomalies WHERE rule = 'R05' AND subject_id = '{person}'"
        ),
    );
    assert_eq!(after, 0);
    assert_eq!(status_of(&server, &admin, &person), "deceased");
    assert_eq!(record(&person), before_record, "only the status changed");
    // A full sweep of the new version agrees.
    let full = server.post("/v1/sweeps", Some(&admin), &json!({}));
    assert_eq!(full.status, 201, "{}", full.text());
    assert_eq!(
        count(
            &server,
            &admin,
            &format!(
                "SELECT count(*) AS n FROM anomalies WHERE rule = 'R05' AND subject_id = '{person}'"
            ),
        ),
        0
    );
    let s = one(
        &server,
        &admin,
        &format!("SELECT status, outcome FROM tasks WHERE task_id = '{task}'"),
    );
    assert_eq!(
        (s["status"].as_str(), s["outcome"].as_str()),
        (Some("closed"), Some("fixed"))
    );
    // A worker's correction outside their grid is refused whole.
    let elsewhere = one(
        &server,
        &admin,
        &format!(
            "SELECT person_id FROM people WHERE grid_code <> '{grid}' AND status = 'active' ORDER BY person_id LIMIT 1"
        ),
    );
    let e = json!({"person_id": elsewhere["person_id"], "status": "moved_out"});
    let other = one(
        &server,
        &admin,
        &format!(
            "SELECT task_id FROM tasks WHERE worker_id = '{worker}' AND status = 'open' ORDER BY task_id LIMIT 1"
        ),
    );
    if let Some(id) = other["task_id"].as_str() {
        let r = server.post(
            &format!("/v1/tasks/{id}/close"),
            Some(&wt),
            &json!({"outcome": "fixed", "correction": {"table": "people", "rows": [e]}}),
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("outside"), "{}", r.text());
    }
}

#[test]
fn gridlens_ingest_adds_to_a_stopped_servers_log() {
    let data = common::city(gridlens_datasets::OutputFormat::Parquet, false);
    let state = common::server::state_dir("live-cli");
    let admin = add_token(&state, &["--name", "ada", "--role", "admin"]);
    let file = common::scratch("live-cli-rows.csv");
    let b = {
        let s = Server::start(&[
            "--data",
            data.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ]);
        let b = one(
            &s,
            &admin,
            "SELECT building_id FROM buildings ORDER BY building_id LIMIT 1",
        );
        b["building_id"].as_str().unwrap().to_string()
    };
    std::fs::write(
        &file,
        format!("ts,building_id,direction,device_id\n2026-11-30 10:00:00,{b},in,dev-cli\n2026-11-30 10:00:00,{b},sideways,dev-cli\n"),
    )
    .unwrap();
    let args = [
        "ingest",
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--table",
        "access_events",
        file.to_str().unwrap(),
    ];
    let o = gridlens(&args);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("1 accepted, 1 rejected; the city is now version 1"),
        "{out}"
    );
    assert!(out.contains("row 2 (direction): bad_enum"), "{out}");
    let o = gridlens(&[
        "ingest",
        "--state",
        state.to_str().unwrap(),
        "--table",
        "grids",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("reload"), "{}", stderr(&o));
    let s = Server::start(&[
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(
        count(
            &s,
            &admin,
            "SELECT count(*) AS n FROM access_events WHERE device_id = 'dev-cli'"
        ),
        1
    );
    // With the server running, the command refuses and names the endpoint.
    let o = gridlens(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("POST /v1/ingest/access_events"),
        "{}",
        stderr(&o)
    );
    // `gridlens sql` with the state folder sees the city as its server serves it, beside the
    // running server; without it, the dataset alone.
    let sql = |with_state: bool| {
        let q = "SELECT count(*) AS n FROM access_events WHERE device_id = 'dev-cli'";
        let mut args = vec!["sql", "--data", data.to_str().unwrap(), "--format", "csv"];
        if with_state {
            args.extend(["--state", state.to_str().unwrap()]);
        }
        args.push(q);
        let o = gridlens(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(sql(true).trim(), "n\n1");
    assert_eq!(sql(false).trim(), "n\n0");
    assert_eq!(
        count(
            &s,
            &admin,
            "SELECT count(*) AS n FROM access_events WHERE device_id = 'dev-cli'"
        ),
        1,
        "the server is untouched by the reader"
    );
    // `gridlens sweep` and `gridlens kpi` with the state folder likewise: a death ingested into
    // the server is found by R05 with it, not without it.
    // (The identity number read unmasked from the dataset, as a death registry would send it.)
    let o = gridlens(&[
        "sql",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT person_id, id_number FROM people WHERE status = 'active' ORDER BY person_id LIMIT 1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let (person, id) = out
        .lines()
        .nth(1)
        .and_then(|l| l.split_once(','))
        .map(|(p, i)| (p.to_string(), i.to_string()))
        .unwrap();
    let (status, r) = ingest(
        &s,
        &admin,
        "deaths",
        "text/csv",
        format!("id_number,died_on,source\n{id},2026-01-01,hospital\n").as_bytes(),
    );
    assert_eq!(status, 200, "{r}");
    let swept = |with_state: bool| {
        let out = common::scratch(&format!("live-cli-sweep-{with_state}.csv"));
        let mut args = vec![
            "sweep",
            "--data",
            data.to_str().unwrap(),
            "--rules",
            "R05",
            "--out",
            out.to_str().unwrap(),
        ];
        if with_state {
            args.extend(["--state", state.to_str().unwrap()]);
        }
        let o = gridlens(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        std::fs::read_to_string(&out).unwrap()
    };
    assert!(swept(true).contains(&person), "R05 with the state folder");
    assert!(!swept(false).contains(&person), "R05 without it");
    let o = gridlens(&[
        "kpi",
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--level",
        "city",
        "--format",
        "csv",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));
}

/// Door events in batches while the server is killed with SIGKILL at random moments: after each
/// restart every acknowledged batch is there whole, and no batch is there in part.
#[test]
fn sigkill_during_ingest_loses_no_acknowledged_row() {
    let (server, state, admin, data) = with_admin("live-crash", &[]);
    let building = one(
        &server,
        &admin,
        "SELECT building_id FROM buildings ORDER BY building_id LIMIT 1",
    )["building_id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(server);
    const ROWS: usize = 50;
    let mut acked: Vec<String> = Vec::new();
    let mut sent: Vec<String> = Vec::new();
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let start = || {
        Server::start(&[
            "--data",
            data.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--pg-listen",
            "off",
        ])
    };
    for round in 0..20 {
        let server = Arc::new(start());
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = {
            let (server, stop, admin, building) = (
                server.clone(),
                stop.clone(),
                admin.clone(),
                building.clone(),
            );
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut sent = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("r{round}b{n}");
                    n += 1;
                    let mut csv = String::from("ts,building_id,direction,device_id,batch\n");
                    for i in 0..ROWS {
                        csv += &format!(
                            "2026-11-30 11:{:02}:{:02},{building},in,crash,{id}\n",
                            i / 60,
                            i % 60
                        );
                    }
                    sent.push(id.clone());
                    let url = format!("{}/v1/ingest/access_events", server.url);
                    let r = ureq::post(&url)
                        .header("authorization", &format!("Bearer {admin}"))
                        .header("content-type", "text/csv")
                        .send(csv.as_bytes());
                    match r {
                        Ok(resp) if resp.status() == 200 => acked.push(id),
                        _ => break,
                    }
                }
                (acked, sent)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(1500 + next() % 3000));
        server.signal("-KILL");
        stop.store(true, Ordering::Relaxed);
        let (a, s) = feeder.join().unwrap();
        acked.extend(a);
        sent.extend(s);
        drop(server);
    }
    let server = start();
    let rows = server.rows(
        &admin,
        "SELECT batch, count(*) AS n FROM access_events WHERE batch IS NOT NULL GROUP BY batch",
    );
    let found: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| {
            (
                r["batch"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect();
    eprintln!(
        "batches acknowledged: {} of {} sent",
        acked.len(),
        sent.len()
    );
    assert!(acked.len() >= 20, "batches acknowledged: {}", acked.len());
    for id in &acked {
        assert_eq!(
            found.get(id),
            Some(&(ROWS as i64)),
            "acknowledged batch {id}"
        );
    }
    for (id, n) in &found {
        assert_eq!(*n, ROWS as i64, "batch {id} is there in part");
        assert!(sent.contains(id), "batch {id} was never sent");
    }
    // The anomalies served after the last restart are a full sweep of the same rows.
    let served = count(&server, &admin, "SELECT count(*) AS n FROM anomalies");
    let full = server.post("/v1/sweeps", Some(&admin), &json!({})).json();
    assert_eq!(full["total"].as_i64(), Some(served));
}

/// Every format of `POST /v1/ingest` holds the sender's scope, for street and grid feeders
/// alike: a row in the scope is taken, a row in the next grid of the street or in another
/// street is rejected `outside_scope`, and no answer names a place outside the scope.
#[test]
fn ingest_holds_the_scope_for_street_and_grid_feeders_in_every_format() {
    let (server, state, admin, _data) = with_admin("live-ways", &[]);
    let places = server.rows(
        &admin,
        "SELECT b.building_id, g.grid_code, g.street_code FROM buildings b JOIN grids g ON b.grid_code = g.grid_code ORDER BY g.street_code, g.grid_code, b.building_id",
    );
    let text = |r: &Value, k: &str| r[k].as_str().unwrap().to_string();
    let first = &places[0];
    let (street, grid) = (text(first, "street_code"), text(first, "grid_code"));
    let b_grid = text(first, "building_id");
    let b_next = places
        .iter()
        .find(|r| text(r, "street_code") == street && text(r, "grid_code") != grid)
        .map(|r| text(r, "building_id"))
        .expect("a street with two grids");
    let b_away = places
        .iter()
        .find(|r| text(r, "street_code") != street)
        .map(|r| text(r, "building_id"))
        .expect("a second street");
    for scope in [street.clone(), grid.clone()] {
        let feeder = add_token(
            &state,
            &[
                "--name",
                &format!("f{scope}"),
                "--role",
                "feeder",
                "--scope",
                &scope,
            ],
        );
        let wanted: Vec<u64> = if scope == street { vec![3] } else { vec![2, 3] };
        for format in ["csv", "ndjson", "arrow"] {
            let device = format!("dev-{scope}-{format}");
            let buildings = [b_grid.as_str(), b_next.as_str(), b_away.as_str()];
            let (ct, body): (&str, Vec<u8>) = match format {
                "csv" => (
                    "text/csv",
                    buildings
                        .iter()
                        .fold("ts,building_id,direction,device_id\n".to_string(), |s, b| {
                            s + &format!("2026-11-30 12:00:00,{b},in,{device}\n")
                        })
                        .into_bytes(),
                ),
                "ndjson" => (
                    "application/x-ndjson",
                    buildings
                        .iter()
                        .map(|b| {
                            json!({"ts": "2026-11-30 12:00:00", "building_id": b, "direction": "in", "device_id": device})
                                .to_string()
                                + "\n"
                        })
                        .collect::<String>()
                        .into_bytes(),
                ),
                _ => {
                    use arrow::array::StringArray;
                    use arrow::datatypes::{DataType, Field, Schema};
                    let schema = Arc::new(Schema::new(
                        ["ts", "building_id", "direction", "device_id"]
                            .map(|n| Field::new(n, DataType::Utf8, false))
                            .to_vec(),
                    ));
                    let col = |v: Vec<&str>| Arc::new(StringArray::from(v)) as arrow::array::ArrayRef;
                    let batch = arrow::array::RecordBatch::try_new(
                        schema,
                        vec![
                            col(vec!["2026-11-30 12:00:00"; 3]),
                            col(buildings.to_vec()),
                            col(vec!["in"; 3]),
                            col(vec![device.as_str(); 3]),
                        ],
                    )
                    .unwrap();
                    ("application/vnd.apache.arrow.stream", arrow_stream(&batch))
                }
            };
            let (s, r) = ingest(&server, &feeder, "access_events", ct, &body);
            assert_eq!(s, 200, "{scope} {format}: {r}");
            let rejected: Vec<(u64, &str)> = r["rejects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (x["row"].as_u64().unwrap(), x["reason"].as_str().unwrap()))
                .collect();
            let want: Vec<(u64, &str)> = wanted.iter().map(|&n| (n, "outside_scope")).collect();
            assert_eq!(rejected, want, "{scope} {format}");
            let answer = r.to_string();
            for outside in std::iter::once(&b_away).chain((scope == grid).then_some(&b_next)) {
                assert!(
                    !answer.contains(outside.as_str()),
                    "{scope} {format}: {answer}"
                );
            }
            assert_eq!(
                count(
                    &server,
                    &admin,
                    &format!(
                        "SELECT count(*) AS n FROM access_events WHERE device_id = '{device}'"
                    )
                ),
                3 - wanted.len() as i64,
                "{scope} {format}"
            );
        }
        // Its token opens nothing else, in any way in: SQL, KPIs, tasks, the dashboard, the
        // web app's session.
        assert_eq!(server.sql(&feeder, "SELECT 1").status, 403);
        for path in [
            "/v1/kpis/incidents",
            "/v1/tasks",
            &format!("/v1/dashboard?code={scope}"),
        ] {
            assert_eq!(server.get(path, Some(&feeder)).status, 403, "{path}");
        }
    }
}

/// Waits up to a minute for a file to appear.
fn wait_for(path: &std::path::Path) {
    let t = std::time::Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A copy of the small city and a state folder (`name`) with an admin token, and the
/// arguments that serve them with a snapshot every `every` seconds.
fn snapshotting(
    name: &str,
    every: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String, Vec<String>) {
    let data = common::scratch(&format!("{name}-city"));
    common::copy_dataset(
        &common::city(gridlens_datasets::OutputFormat::Parquet, false),
        &data,
    );
    let state = common::server::state_dir(name);
    let admin = add_token(&state, &["--name", "ada", "--role", "admin", "--pii"]);
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--snapshot-every",
        every,
    ]
    .map(String::from)
    .to_vec();
    (data, state, admin, args)
}

/// A server started with `args` that serves `version` from the snapshot `snapshot` (`null`:
/// from the dataset), as its health says.
fn serving(args: &[String], snapshot: Value, version: u64) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    let h = server.get("/v1/health", None).json();
    assert_eq!(h["dataset"]["snapshot"], snapshot, "{h}");
    assert_eq!(h["dataset"]["version"], version, "{h}");
    server
}

/// A restart reads the newest snapshot made from the same dataset and log, loads only the
/// batches after it, and serves exactly what was served; an unfinished snapshot is ignored, and
/// a snapshot of a dataset that has changed since is not used.
#[test]
fn a_restart_reads_the_snapshot_and_loads_only_the_batches_after_it() {
    let (data, state, admin, args) = snapshotting("live-snapshot", "3600");
    let snap = |v: u64| state.join("snapshots").join(format!("{v:012}"));
    let server = serving(&args, Value::Null, 0);
    // The first start writes a snapshot of what it loaded, in the background.
    wait_for(&snap(0).join("meta.json"));

    // Two batches after it (not snapshotted: the next is due in an hour).
    let b = one(
        &server,
        &admin,
        "SELECT building_id FROM buildings ORDER BY building_id LIMIT 1 OFFSET 3",
    )["building_id"]
        .as_str()
        .unwrap()
        .to_string();
    let csv = format!(
        "ts,building_id,id_number,direction,device_id\n2026-10-30 21:00:00,{b},,in,dev-snap\n"
    );
    let (status, r) = ingest(&server, &admin, "access_events", "text/csv", csv.as_bytes());
    assert_eq!(status, 200, "{r}");
    let dead = one(
        &server,
        &admin,
        "SELECT min(id_number) AS id FROM people WHERE status = 'active'",
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let csv = format!("id_number,died_on,source\n{dead},2026-10-20,hospital\n");
    let (status, r) = ingest(&server, &admin, "deaths", "text/csv", csv.as_bytes());
    assert_eq!(status, 200, "{r}");
    let seen = fingerprint(&server, &admin);
    assert!(!snap(2).exists());

    // Restart: the snapshot of version 0 and the two batches after it.
    drop(server);
    std::fs::create_dir_all(snap(9)).unwrap(); // an unfinished snapshot (no meta.json)
    std::fs::write(snap(9).join("people.arrow"), b"half written").unwrap();
    let server = serving(&args, 0.into(), 2);
    for (q, (a, b)) in FINGERPRINT
        .iter()
        .zip(seen.iter().zip(&fingerprint(&server, &admin)))
    {
        assert_eq!(
            a, b,
            "{q}: the snapshot and the batches after it differ from the city served"
        );
    }
    // That start writes a snapshot of version 2 and removes the older and unfinished ones.
    wait_for(&snap(2).join("meta.json"));
    let t = std::time::Instant::now();
    while snap(0).exists() || snap(9).exists() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "old snapshots stay"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Restart: the snapshot alone.
    drop(server);
    let server = serving(&args, 2.into(), 2);
    assert_eq!(fingerprint(&server, &admin), seen);

    // The dataset changes (a file rewritten): the snapshot no longer stands for it.
    drop(server);
    let manifest = data.join("manifest.json");
    let text = std::fs::read(&manifest).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&manifest, text).unwrap();
    let server = serving(&args, Value::Null, 2);
    assert_eq!(fingerprint(&server, &admin), seen);
}

/// A server gone quiet after batches that came too soon after its last snapshot writes one of
/// what it serves once `--snapshot-every` has passed (on its timer, no batch needed), so that a
/// restart reads it instead of replaying the batches.
#[test]
fn a_quiet_server_snapshots_what_it_serves() {
    let (_data, state, admin, args) = snapshotting("live-quiet", "3");
    let snap = |v: u64| state.join("snapshots").join(format!("{v:012}"));
    let server = serving(&args, Value::Null, 0);
    wait_for(&snap(0).join("meta.json"));
    let b = one(
        &server,
        &admin,
        "SELECT building_id FROM buildings ORDER BY building_id LIMIT 1",
    )["building_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Two batches in a row: at most the first is snapshotted after it (the second comes less
    // than three seconds after that snapshot began).
    for minute in ["10", "11"] {
        let csv = format!(
            "ts,building_id,id_number,direction,device_id\n2026-10-30 21:{minute}:00,{b},,in,dev-quiet\n"
        );
        let (status, r) = ingest(&server, &admin, "access_events", "text/csv", csv.as_bytes());
        assert_eq!(status, 200, "{r}");
    }
    let seen = fingerprint(&server, &admin);
    // No more batches: the timer writes a snapshot of version 2.
    wait_for(&snap(2).join("meta.json"));
    drop(server);
    let server = serving(&args, 2.into(), 2);
    assert_eq!(fingerprint(&server, &admin), seen);
}
