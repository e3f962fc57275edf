//! End to end: the real `gridlens serve` on a loopback port, driven by a real HTTP client.
//! Every endpoint and format (Arrow and Parquet answers decoded and checked), tokens and roles,
//! the audit log and metrics, limits, malformed requests, reloads that work and fail, SIGHUP,
//! graceful shutdown, and the embedded default city.

mod common;

use common::count;
use common::server::{Server, add_token, state_dir};
use gridlens_datasets::OutputFormat;
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::sql::SqlEngine;
use gridlens_engine::tasks::Status;
use std::io::{Read, Write};
use std::sync::Arc;

#[test]
fn every_endpoint_and_format() {
    let data = common::city(OutputFormat::Parquet, false);
    let state = state_dir("endpoints");
    let admin = add_token(&state, &["--name", "ada", "--role", "admin", "--pii"]);
    let server = Server::start(&[
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    // No admin token is created when one exists: nothing but the two addresses is printed.
    assert_eq!(server.printed.len(), 2, "{:?}", server.printed);
    assert!(server.printed[0].starts_with("PostgreSQL clients: postgresql://127.0.0.1:"));
    assert!(server.pg_port.is_some());

    let store = Arc::new(load(&data, &LoadOptions::default()).expect("load"));
    let engine = SqlEngine::new(store.clone());
    let people = store.table(gridlens_engine::contract::TableId::People).rows as u64;

    // health: no token needed.
    let h = server.get("/v1/health", None);
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["dataset"]["rows"]["people"].as_u64(), Some(people));
    assert_eq!(h["dataset"]["as_of"], "2026-11-01T00:00:00+08:00");

    // tables: the catalog with row counts.
    let t = server.get("/v1/tables", Some(&admin)).json();
    let tables = t["tables"].as_array().unwrap();
    let p = tables
        .iter()
        .find(|t| t["name"] == "people")
        .expect("people");
    assert_eq!(p["rows"].as_u64(), Some(people));
    assert!(
        p["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "id_number")
    );
    for name in [
        "anomalies",
        "grid_kpis",
        "incident_kpis",
        "incident_stages",
        "rejects",
        "tasks",
    ] {
        assert!(tables.iter().any(|t| t["name"] == name), "{name} listed");
    }

    // SQL in the four formats, each decoded.
    let q = "SELECT grid_code, count(*) AS n FROM people GROUP BY grid_code ORDER BY grid_code";
    let expected = engine.query_blocking(q).unwrap();
    let n_groups = expected.rows();
    let j = server.sql(&admin, q);
    assert_eq!(j.status, 200);
    assert!(j.content_type.starts_with("application/json"));
    let j = j.json();
    assert_eq!(j["row_count"].as_u64(), Some(n_groups as u64));
    assert_eq!(j["truncated"], false);
    let total: i64 = j["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .sum();
    assert_eq!(total as u64, people);

    let c = server.post(
        "/v1/sql",
        Some(&admin),
        &serde_json::json!({"sql": q, "format": "csv"}),
    );
    assert_eq!(c.status, 200);
    assert!(c.content_type.starts_with("text/csv"));
    let text = c.text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("grid_code,n"));
    assert_eq!(lines.count(), n_groups);

    let a = server.post(
        "/v1/sql",
        Some(&admin),
        &serde_json::json!({"sql": q, "format": "arrow"}),
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/vnd.apache.arrow.stream");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(a.body), None).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let got = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let want = arrow::compute::concat_batches(&expected.schema, &expected.batches).unwrap();
    assert_eq!(got.num_rows(), want.num_rows());
    assert_eq!(got.column(1).as_ref(), want.column(1).as_ref());

    let pq = server.post(
        "/v1/sql",
        Some(&admin),
        &serde_json::json!({"sql": q, "format": "parquet"}),
    );
    assert_eq!(pq.status, 200);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(pq.body),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let got = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(got.num_rows(), want.num_rows());
    assert_eq!(got.column(1).as_ref(), want.column(1).as_ref());

    // A limit truncates, and says so.
    let l = server
        .post(
            "/v1/sql",
            Some(&admin),
            &serde_json::json!({"sql": "SELECT person_id FROM people", "limit": 7}),
        )
        .json();
    assert_eq!(l["row_count"], 7);
    assert_eq!(l["truncated"], true);
    // An empty answer is still a complete document.
    let e = server
        .sql(&admin, "SELECT person_id FROM people WHERE 1 = 0")
        .json();
    assert_eq!(e["row_count"], 0);
    assert_eq!(e["rows"].as_array().unwrap().len(), 0);
    // A query error is a 400 with a message.
    let bad = server.sql(&admin, "SELECT nope FROM people");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "query_error");
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );

    // Grid KPIs at a level inside one code: every street of district 440104.
    let g = server.get("/v1/kpis/grids?level=street&code=440104", Some(&admin));
    assert_eq!(g.status, 200, "{}", g.text());
    let g = g.json();
    let rows = g["rows"].as_array().unwrap();
    let streets = count(
        &engine,
        "SELECT count(DISTINCT street_code) FROM grids WHERE district_code = '440104'",
    );
    assert_eq!(rows.len() as i64, streets);
    assert!(
        rows.iter()
            .all(|r| r["code"].as_str().unwrap().starts_with("440104"))
    );
    let sql_households = count(
        &engine,
        "SELECT CAST(sum(households) AS BIGINT) FROM grid_kpis('street', '2026-11-01', '440104')",
    );
    let api_households: i64 = rows.iter().map(|r| r["households"].as_i64().unwrap()).sum();
    assert_eq!(api_households, sql_households);
    let bad_level = server.get("/v1/kpis/grids?level=planet", Some(&admin));
    assert_eq!(bad_level.status, 400);

    // Incident KPIs grouped, over a period.
    let i = server.get(
        "/v1/kpis/incidents?group_by=district,month&from=2026-01-01&to=2026-11-01",
        Some(&admin),
    );
    assert_eq!(i.status, 200, "{}", i.text());
    let i = i.json();
    let reported: i64 = i["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reported"].as_i64().unwrap())
        .sum();
    let want_reported = count(
        &engine,
        "SELECT count(*) FROM incidents WHERE reported_at >= '2026-01-01' AND reported_at < '2026-11-01'",
    );
    assert_eq!(reported, want_reported);

    // A sweep of two rules: counts, then queryable as anomalies.
    let s = server.post(
        "/v1/sweeps",
        Some(&admin),
        &serde_json::json!({"rules": ["R05", "R07"]}),
    );
    assert_eq!(s.status, 201, "{}", s.text());
    let s = s.json();
    let truth = common::truth(&data, "anomalies.csv");
    for rule in ["R05", "R07"] {
        let planted = truth.iter().filter(|t| t.0 == rule).count();
        assert_eq!(s["counts"][rule].as_u64(), Some(planted as u64), "{rule}");
    }
    let n = server.rows(&admin, "SELECT count(*) AS n FROM anomalies");
    assert_eq!(n[0]["n"].as_u64(), s["total"].as_u64());
    // A full sweep makes anomalies whole again and updates the task lists.
    let full = server
        .post("/v1/sweeps", Some(&admin), &serde_json::json!({}))
        .json();
    assert_eq!(full["total"].as_u64(), Some(truth.len() as u64));
    assert_eq!(
        full["tasks"]["new"], 0,
        "the start-up sweep opened them already"
    );

    // Task lists: the busiest worker's list, in order, at most 20 open.
    let top = server.rows(
        &admin,
        "SELECT worker_id, count(*) AS n FROM tasks WHERE status = 'open' AND worker_id IS NOT NULL GROUP BY worker_id ORDER BY n DESC, worker_id LIMIT 1",
    );
    let worker = top[0]["worker_id"].as_str().unwrap().to_string();
    let wt = add_token(
        &state,
        &[
            "--name", "wang", "--role", "worker", "--worker", &worker, "--pii",
        ],
    );
    let list = server.get("/v1/tasks", Some(&wt));
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    let tasks = list["tasks"].as_array().unwrap();
    assert!(!tasks.is_empty() && tasks.len() <= 20);
    let prio: Vec<i64> = tasks
        .iter()
        .map(|t| t["priority"].as_i64().unwrap())
        .collect();
    assert!(
        prio.windows(2).all(|w| w[0] <= w[1]),
        "priority order: {prio:?}"
    );
    // The worker closes the first; it leaves the open list and shows as closed in SQL.
    let id = tasks[0]["task_id"].as_str().unwrap().to_string();
    let closed = server.post(
        &format!("/v1/tasks/{id}/close"),
        Some(&wt),
        &serde_json::json!({"outcome": "fixed", "note": "moved out, record updated"}),
    );
    assert_eq!(closed.status, 200, "{}", closed.text());
    assert_eq!(closed.json()["status"], "closed");
    let again = server.post(
        &format!("/v1/tasks/{id}/close"),
        Some(&wt),
        &serde_json::json!({"outcome": "fixed"}),
    );
    assert_eq!(again.status, 409);
    let after = server.get("/v1/tasks", Some(&wt)).json();
    assert!(
        after["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["task_id"] != id.as_str())
    );
    let r = server.rows(
        &admin,
        &format!("SELECT status, outcome FROM tasks WHERE task_id = '{id}'"),
    );
    assert_eq!(r[0]["status"], "closed");
    assert_eq!(r[0]["outcome"], "fixed");
    let bad_outcome = server.post(
        &format!("/v1/tasks/{id}/close"),
        Some(&wt),
        &serde_json::json!({"outcome": "bored"}),
    );
    assert_eq!(bad_outcome.status, 400);
    // The state survived on disk: the task book read from the state folder says closed.
    let saved = gridlens_engine::tasks::TaskBook::read(&state).unwrap();
    assert_eq!(
        saved.tasks[&id].note.as_deref(),
        Some("moved out, record updated")
    );
    assert_eq!(saved.tasks[&id].status, Status::Closed);

    // Metrics and the OpenAPI document.
    let m = server.get("/v1/metrics", Some(&admin));
    assert_eq!(m.status, 200);
    let m = m.text();
    assert!(
        m.contains("gridlens_requests_total{endpoint=\"/v1/sql\",status=\"200\"}"),
        "{m}"
    );
    assert!(m.contains("gridlens_query_duration_seconds_count"));
    assert!(m.contains("gridlens_resident_memory_bytes"));
    assert!(m.contains(&format!(
        "gridlens_dataset_rows{{table=\"people\"}} {people}"
    )));
    let o = server.get("/v1/openapi.json", None).json();
    assert_eq!(o["openapi"], "3.1.0");
    for path in [
        "/v1/health",
        "/v1/sql",
        "/v1/kpis/grids",
        "/v1/tasks/{task_id}/close",
        "/v1/admin/reload",
    ] {
        assert!(o["paths"][path].is_object(), "{path} documented");
    }
    assert_eq!(server.get("/v1/nowhere", Some(&admin)).status, 404);
    assert_eq!(server.get("/v1/sql", Some(&admin)).status, 405);

    // The audit log: one line per request, with the token id, role, SQL, rows and outcome.
    drop(server);
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sql_line = lines
        .iter()
        .find(|l| l["sql"] == q && l["rows"].as_u64() == Some(n_groups as u64))
        .expect("the SQL request is audited with its rows");
    assert_eq!(sql_line["role"], "admin");
    assert_eq!(sql_line["outcome"], "ok", "{sql_line}");
    assert_eq!(sql_line["endpoint"], "/v1/sql");
    assert!(sql_line["token_id"].as_str().unwrap().len() == 8);
    assert!(sql_line["duration_ms"].as_f64().is_some());
    let failed = lines
        .iter()
        .find(|l| l["sql"] == "SELECT nope FROM people")
        .unwrap();
    assert_eq!(failed["status"], 400);
    assert_eq!(failed["outcome"], "query_error");
    assert!(
        lines
            .iter()
            .any(|l| l["endpoint"] == "/v1/tasks/{task_id}/close" && l["role"] == "worker")
    );
    // The token itself is never written.
    assert!(!audit.contains(&admin) && !audit.contains(&wt));
}

#[test]
fn limits_and_malformed_requests() {
    let data = common::city(OutputFormat::Parquet, false);
    let state = state_dir("limits");
    let admin = add_token(&state, &["--name", "ada", "--role", "admin", "--pii"]);
    let server = Server::start(&[
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--query-timeout",
        "3",
        "--query-memory-mb",
        "64",
    ]);
    let url = server.url.clone();
    std::thread::scope(|s| {
        // A huge cross join runs into the time limit...
        let runaway = s.spawn(|| {
            server.sql(
                &admin,
                "SELECT sum(length(a.device_id) + length(b.name)) FROM access_events a CROSS JOIN people b",
            )
        });
        // ... while other requests are answered.
        std::thread::sleep(std::time::Duration::from_millis(500));
        for _ in 0..3 {
            assert_eq!(server.get("/v1/health", None).status, 200);
            let k = server.get("/v1/kpis/grids?level=district", Some(&admin));
            assert_eq!(k.status, 200);
            let small = server.sql(&admin, "SELECT count(*) AS n FROM grids");
            assert_eq!(small.status, 200, "{}", small.text());
        }
        let r = runaway.join().unwrap();
        assert_eq!(r.status, 408, "{}", r.text());
        assert_eq!(r.error_code(), "timeout");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limit of 3 s")
        );
    });
    // A deep recursive CTE is stopped too (time or memory, whichever first).
    let r = server.sql(
        &admin,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    );
    assert!(r.status == 408 || r.status == 400, "{}", r.text());
    assert!(
        ["timeout", "memory_limit"].contains(&r.error_code().as_str()),
        "{}",
        r.text()
    );
    // A sort of 800 million rows needs more than 64 MiB and may not spill: memory limit.
    let m = server.sql(
        &admin,
        "SELECT a.name, b.name FROM people a CROSS JOIN people b ORDER BY 1, 2",
    );
    assert_eq!(m.status, 400, "{}", m.text());
    assert_eq!(m.error_code(), "memory_limit", "{}", m.text());
    // The server is still fine.
    assert_eq!(server.sql(&admin, "SELECT 1 AS one").status, 200);

    // Malformed JSON, a wrong content type, an unknown field, a bad format.
    let a = server.post_raw("/v1/sql", Some(&admin), "application/json", b"{\"sql\": ");
    assert_eq!(a.status, 400);
    assert_eq!(a.error_code(), "bad_request");
    let a = server.post_raw("/v1/sql", Some(&admin), "text/plain", b"SELECT 1");
    assert_eq!(a.status, 415);
    assert_eq!(a.error_code(), "unsupported_media_type");
    let a = server.post(
        "/v1/sql",
        Some(&admin),
        &serde_json::json!({"sql": "SELECT 1", "fromat": "csv"}),
    );
    assert_eq!(a.status, 400);
    let a = server.post(
        "/v1/sql",
        Some(&admin),
        &serde_json::json!({"sql": "SELECT 1", "format": "xml"}),
    );
    assert_eq!(a.status, 400);
    assert!(a.text().contains("xml"));

    // A 100 MB body: refused with 413 from its declared length, before it is read.
    let addr = url.trim_start_matches("http://");
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /v1/sql HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        100 * 1024 * 1024
    );
    sock.write_all(head.as_bytes()).unwrap();
    sock.write_all(&vec![b' '; 16 * 1024]).unwrap();
    let mut buf = Vec::new();
    let _ = sock.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"payload_too_large\""), "{text}");
}

#[test]
fn reload_success_failure_and_sighup() {
    let original = common::city(OutputFormat::Parquet, false);
    let data = common::scratch("reload-city");
    let _ = std::fs::remove_dir_all(&data);
    common::copy_dataset(&original, &data);
    let state = state_dir("reload");
    let admin = add_token(&state, &["--name", "ada", "--role", "admin", "--pii"]);
    let analyst = add_token(&state, &["--name", "li", "--role", "analyst"]);
    let server = Server::start(&[
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    let first = server.get("/v1/health", None).json();
    let people = first["dataset"]["rows"]["people"].as_u64().unwrap();

    // Only an admin reloads.
    assert_eq!(
        server
            .post("/v1/admin/reload", Some(&analyst), &serde_json::json!({}))
            .status,
        403
    );
    // A reload that works swaps in a new load.
    let ok = server.post_raw("/v1/admin/reload", Some(&admin), "application/json", b"");
    assert_eq!(ok.status, 200, "{}", ok.text());
    let second = server.get("/v1/health", None).json();
    assert_ne!(
        second["dataset"]["loaded_at"],
        first["dataset"]["loaded_at"]
    );

    // Break the dataset: the people table goes missing. The reload fails, says why without
    // a server path, and the served data is untouched.
    let people_file = if data.join("people.parquet").exists() {
        data.join("people.parquet")
    } else {
        data.join("people")
    };
    let aside = common::scratch("people-aside");
    std::fs::rename(&people_file, &aside).unwrap();
    let failed = server.post_raw("/v1/admin/reload", Some(&admin), "application/json", b"");
    assert_eq!(failed.status, 409, "{}", failed.text());
    assert_eq!(failed.error_code(), "reload_failed");
    let message = failed.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("people"), "{message}");
    assert!(
        !message.contains(data.to_str().unwrap()),
        "no server path: {message}"
    );
    let third = server.get("/v1/health", None).json();
    assert_eq!(
        third["dataset"]["loaded_at"],
        second["dataset"]["loaded_at"]
    );
    assert_eq!(third["dataset"]["rows"]["people"].as_u64(), Some(people));
    let n = server.rows(&admin, "SELECT count(*) AS n FROM people");
    assert_eq!(n[0]["n"].as_u64(), Some(people));
    let m = server.get("/v1/metrics", Some(&admin)).text();
    assert!(
        m.contains("gridlens_reloads_total{outcome=\"failed\"} 1"),
        "{m}"
    );

    // Repair it and reload with SIGHUP.
    std::fs::rename(&aside, &people_file).unwrap();
    server.signal("-HUP");
    let mut reloaded = false;
    for _ in 0..600 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let h = server.get("/v1/health", None).json();
        if h["dataset"]["loaded_at"] != third["dataset"]["loaded_at"] {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "SIGHUP reloads the dataset");

    // SIGTERM: a graceful shutdown, exit 0.
    server.signal("-TERM");
    assert!(server.wait(), "a clean exit on SIGTERM");
}

#[test]
fn the_embedded_default_city() {
    let state = state_dir("default");
    let server = Server::start(&["--state", state.to_str().unwrap()]);
    // With no token file, an admin token is created and printed once.
    let token = server
        .printed
        .iter()
        .find(|l| l.starts_with("glt_"))
        .cloned()
        .expect("the admin token is printed");
    let h = server.get("/v1/health", None).json();
    assert!(
        h["dataset"]["name"]
            .as_str()
            .unwrap()
            .contains("synthetic city")
    );
    assert!(h["dataset"]["rows"]["people"].as_u64().unwrap() > 10_000);
    let r = server.rows(&token, "SELECT count(*) AS n FROM anomalies");
    assert!(r[0]["n"].as_u64().unwrap() > 100);
    let stored = std::fs::read_to_string(state.join("tokens.json")).unwrap();
    assert!(!stored.contains(&token), "only the token's hash is stored");
    drop(server);
    // The second start does not print it again.
    let again = Server::start(&["--state", state.to_str().unwrap()]);
    assert!(
        again.printed.iter().all(|l| !l.starts_with("glt_")),
        "{:?}",
        again.printed
    );
    assert_eq!(again.sql(&token, "SELECT 1 AS one").status, 200);
}
