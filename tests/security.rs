//! Who may see what, attacked through the real server: a street-scoped analyst without the
//! `pii` permission tries, in over thirty ways, to see rows outside the street or personal data
//! unmasked; leaders, workers, revoked tokens and callers without a token try what their role
//! does not allow. Every attempt must get nothing it should not.

mod common;

use arrow::array::Array;
use common::server::{Answer, Server, add_token, state_dir};
use common::{count, text};
use gridlens_datasets::OutputFormat;
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::sql::SqlEngine;
use serde_json::Value;
use std::sync::Arc;

struct Fixture {
    server: Server,
    full: SqlEngine,
    /// The street the analyst is scoped to.
    street: String,
    /// Another district (outside the street).
    other_grid: String,
    analyst: String,
    admin: String,
}

fn setup(name: &str) -> Fixture {
    let data = common::city(OutputFormat::Parquet, false);
    let state = state_dir(name);
    let store = Arc::new(load(&data, &LoadOptions::default()).expect("load"));
    let full = SqlEngine::new(store);
    let street = text(
        &full,
        "SELECT substr(grid_code, 1, 9) FROM people GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    );
    let other_grid = text(
        &full,
        &format!(
            "SELECT grid_code FROM grids WHERE grid_code NOT LIKE '{}%' ORDER BY 1 LIMIT 1",
            &street[..6]
        ),
    );
    let admin = add_token(&state, &["--name", "ada", "--role", "admin", "--pii"]);
    let analyst = add_token(
        &state,
        &["--name", "li", "--role", "analyst", "--scope", &street],
    );
    let server = Server::start(&[
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    Fixture {
        server,
        full,
        street,
        other_grid,
        analyst,
        admin,
    }
}

impl Fixture {
    fn rows(&self, sql: &str) -> Vec<Value> {
        self.server.rows(&self.analyst, sql)
    }
    fn one(&self, sql: &str) -> i64 {
        let r = self.rows(sql);
        r[0].as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_i64()
            .unwrap()
    }
    /// Every value of a column lies in the street.
    fn all_in_street(&self, rows: &[Value], col: &str) {
        for r in rows {
            let v = r[col].as_str().unwrap_or_else(|| panic!("{col} in {r}"));
            assert!(
                v.starts_with(&self.street),
                "{col} {v} is outside {}",
                self.street
            );
        }
    }
    fn refused(&self, sql: &str) -> Answer {
        let a = self.server.sql(&self.analyst, sql);
        assert!(
            a.status == 400 || a.status == 403,
            "{sql} was answered: {}",
            a.text()
        );
        a
    }
}

/// A masked identity number: its six-digit region code and stars (or stars only).
fn masked_id(v: &str) -> bool {
    let c: Vec<char> = v.chars().collect();
    let keep = if c.len() >= 6 && c[..6].iter().all(char::is_ascii_digit) {
        6
    } else {
        0
    };
    c[keep..].iter().all(|&x| x == '*')
}

/// Whether a text holds anything that looks like an unmasked 18-character identity number.
fn has_clear_id(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |i: usize| b.get(i).is_some_and(u8::is_ascii_alphanumeric);
    (0..b.len().saturating_sub(17)).any(|i| {
        (i == 0 || !alnum(i - 1))
            && b[i..i + 17].iter().all(u8::is_ascii_digit)
            && (b[i + 17].is_ascii_digit() || b[i + 17] == b'X')
            && !alnum(i + 18)
    })
}

#[test]
fn a_street_scoped_analyst_sees_only_the_street_and_masked_personal_data() {
    let f = setup("scoped");
    let s = f.street.clone();
    let in_street = |table: &str| {
        count(
            &f.full,
            &format!("SELECT count(*) FROM {table} WHERE grid_code LIKE '{s}%'"),
        )
    };

    // 1. A plain count is the street's, not the city's.
    assert_eq!(f.one("SELECT count(*) FROM people"), in_street("people"));
    // 2. Every grid code seen lies in the street.
    let rows = f.rows("SELECT DISTINCT grid_code FROM people");
    f.all_in_street(&rows, "grid_code");
    // 3. Joins through rooms and buildings stay inside.
    let rows = f.rows("SELECT DISTINCT b.grid_code FROM people p JOIN rooms r ON p.room_id = r.room_id JOIN buildings b ON r.building_id = b.building_id");
    f.all_in_street(&rows, "grid_code");
    // 4. A subquery cannot widen it.
    assert_eq!(
        f.one("SELECT count(*) FROM people WHERE room_id IN (SELECT room_id FROM rooms)"),
        in_street("people")
    );
    // 5. Nor a CTE.
    let rows =
        f.rows("WITH everyone AS (SELECT * FROM people) SELECT DISTINCT grid_code FROM everyone");
    f.all_in_street(&rows, "grid_code");
    // 6. Nor a UNION.
    let rows = f.rows("SELECT grid_code FROM people UNION SELECT grid_code FROM buildings UNION SELECT grid_code FROM incidents");
    f.all_in_street(&rows, "grid_code");
    // 7. Asking for another grid by name gives nothing.
    assert_eq!(
        f.one(&format!(
            "SELECT count(*) FROM people WHERE grid_code = '{}'",
            f.other_grid
        )),
        0
    );
    // 8. Nor by prefix of another district.
    assert_eq!(
        f.one(&format!(
            "SELECT count(*) FROM buildings WHERE grid_code LIKE '{}%'",
            &f.other_grid[..6]
        )),
        0
    );
    // 9. The grids table itself holds only the street's grids.
    assert_eq!(f.one("SELECT count(*) FROM grids"), in_street("grids"));
    // 10. Workers of other grids are not visible.
    let rows = f.rows("SELECT grid_code FROM workers");
    f.all_in_street(&rows, "grid_code");
    // 11. Door events, readings, leases, households, visits: all inside.
    for t in [
        "access_events",
        "utility_readings",
        "leases",
        "households",
        "visits",
        "rooms",
        "incidents",
    ] {
        assert_eq!(
            f.one(&format!("SELECT count(*) FROM {t}")),
            in_street(t),
            "{t}"
        );
    }
    // 12. Deaths: only those of people inside the street.
    let deaths_in = count(
        &f.full,
        &format!(
            "SELECT count(*) FROM deaths d WHERE d.id_number IN (SELECT id_number FROM people WHERE grid_code LIKE '{s}%')"
        ),
    );
    assert_eq!(f.one("SELECT count(*) FROM deaths"), deaths_in);
    // 13. Tables without a grid are empty below city scope.
    assert_eq!(f.one("SELECT count(*) FROM calendar"), 0);
    assert_eq!(f.one("SELECT count(*) FROM sla_rules"), 0);
    // 14. Rejected rows (raw input) are not shown.
    assert_eq!(f.one("SELECT count(*) FROM rejects"), 0);
    // 15. The anomalies table: inside, with identity numbers masked everywhere.
    let a = f.server.sql(
        &f.analyst,
        "SELECT grid_code, id_number, subject_id, evidence FROM anomalies",
    );
    assert_eq!(a.status, 200);
    let rows = a.json()["rows"].as_array().cloned().unwrap();
    assert!(!rows.is_empty());
    f.all_in_street(&rows, "grid_code");
    assert!(
        !has_clear_id(&a.text()),
        "no identity number in clear: {}",
        a.text()
    );
    let want = count(
        &f.full,
        &format!("SELECT count(*) FROM anomalies WHERE grid_code LIKE '{s}%'"),
    );
    assert_eq!(rows.len() as i64, want);
    // 16. The sweep table function too.
    let a = f.server.sql(
        &f.analyst,
        "SELECT grid_code, subject_id FROM sweep('2026-11-01')",
    );
    f.all_in_street(&a.json()["rows"].as_array().cloned().unwrap(), "grid_code");
    assert!(!has_clear_id(&a.text()));
    // 17. Grid KPIs at the district level: the district is wider than the street, so nothing.
    assert_eq!(f.one("SELECT count(*) FROM grid_kpis('district')"), 0);
    // 18. Grid KPIs at grid level: only the street's grids.
    let rows = f.rows("SELECT code FROM grid_kpis('grid')");
    f.all_in_street(&rows, "code");
    assert_eq!(rows.len() as i64, in_street("grids"));
    // 19. Incident KPIs by category count only the street's incidents.
    assert_eq!(
        f.one("SELECT CAST(sum(reported) AS BIGINT) FROM incident_kpis('category')"),
        count(
            &f.full,
            &format!(
                "SELECT count(*) FROM incidents WHERE grid_code LIKE '{s}%' AND reported_at <= '2026-11-01'"
            )
        )
    );
    // 20. Incident stages: inside.
    let rows = f.rows("SELECT DISTINCT grid_code FROM incident_stages");
    f.all_in_street(&rows, "grid_code");
    // 21. The task lists: inside.
    let rows = f.rows("SELECT DISTINCT grid_code FROM tasks");
    f.all_in_street(&rows, "grid_code");
    // 22. Identity numbers, names and phones are masked.
    let rows = f.rows("SELECT id_number, name, phone FROM people");
    for r in &rows {
        assert!(masked_id(r["id_number"].as_str().unwrap()), "{r}");
        let name: Vec<char> = r["name"].as_str().unwrap().chars().collect();
        assert!(name[1..].iter().all(|&c| c == '*'), "{r}");
        if let Some(p) = r["phone"].as_str() {
            assert!(p.contains("****"), "{r}");
        }
    }
    // 23. A real identity number of the street matches nothing: filters see masked values.
    let real = text(
        &f.full,
        &format!("SELECT id_number FROM people WHERE grid_code LIKE '{s}%' LIMIT 1"),
    );
    assert_eq!(
        f.one(&format!(
            "SELECT count(*) FROM people WHERE id_number = '{real}'"
        )),
        0
    );
    // 24. Substrings of the masked part are stars.
    let rows = f.rows("SELECT DISTINCT substr(id_number, 7, 8) AS birth FROM people");
    assert!(
        rows.iter()
            .all(|r| r["birth"].as_str().unwrap().chars().all(|c| c == '*')),
        "{rows:?}"
    );
    // 25. Guessing digit by digit finds nothing.
    assert_eq!(
        f.one("SELECT count(*) FROM people WHERE substr(id_number, 7, 1) IN ('1', '2')"),
        0
    );
    // 26. Casts and string functions cannot undo the mask.
    let rows = f.rows("SELECT CAST(id_number AS BYTEA) AS b, replace(id_number, '*', '') AS r, length(id_number) AS l FROM people LIMIT 5");
    for r in &rows {
        // At most the six kept characters remain; the bytes are those of the masked text.
        assert!(r["r"].as_str().unwrap().len() <= 6, "{r}");
        assert!(r["b"].as_str().unwrap().contains("2a2a2a2a"), "{r}");
    }
    // 27. Owner, tenant and head identity numbers too.
    for (t, c) in [
        ("rooms", "owner_id_number"),
        ("leases", "tenant_id_number"),
        ("households", "head_id_number"),
    ] {
        let a = f.server.sql(
            &f.analyst,
            &format!("SELECT {c} FROM {t} WHERE {c} IS NOT NULL LIMIT 50"),
        );
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(!has_clear_id(&a.text()), "{t}.{c} masked: {}", a.text());
    }
    // 28. A scalar subquery over the whole table is still masked and scoped.
    let a = f.server.sql(
        &f.analyst,
        "SELECT (SELECT max(id_number) FROM people) AS m, (SELECT count(*) FROM people) AS n",
    );
    assert!(!has_clear_id(&a.text()));
    assert_eq!(a.json()["rows"][0]["n"].as_i64(), Some(in_street("people")));
    // 29. The Arrow answer is masked the same.
    let a = f.server.post(
        "/v1/sql",
        Some(&f.analyst),
        &serde_json::json!({"sql": "SELECT id_number FROM people", "format": "arrow"}),
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(a.body), None).unwrap();
    for b in reader {
        let b = b.unwrap();
        let ids = arrow::array::cast::as_string_array(b.column(0));
        assert!(ids.iter().flatten().all(masked_id));
    }
    // 30. EXPLAIN shows the street's rows only, never the city's total.
    let city_people = count(&f.full, "SELECT count(*) FROM people");
    let plan = f
        .server
        .sql(&f.analyst, "EXPLAIN SELECT * FROM people")
        .text();
    assert!(
        plan.contains(&format!("rows={n} of {n}", n = in_street("people"))),
        "{plan}"
    );
    assert!(plan.contains(&format!("scope={s}")), "{plan}");
    assert!(!plan.contains(&format!("of {city_people}")), "{plan}");
    // 31. EXPLAIN ANALYZE runs the scoped plan.
    let plan = f
        .server
        .sql(&f.analyst, "EXPLAIN ANALYZE SELECT count(*) FROM people")
        .text();
    assert!(
        !plan.contains(&format!("output_rows={city_people}")),
        "{plan}"
    );
    // 32. information_schema lists tables, and its statistics-free catalog shows no rows.
    let rows =
        f.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'");
    assert!(rows.iter().any(|r| r["table_name"] == "people"));
    // 33. Writing or reading files, changing settings, DDL and DML: all refused.
    for sql in [
        "CREATE TABLE x AS SELECT * FROM people",
        "CREATE VIEW v AS SELECT 1",
        "INSERT INTO people SELECT * FROM people",
        "DROP TABLE people",
        "COPY people TO '/tmp/gridlens-leak.csv'",
        "SET datafusion.execution.time_zone = 'UTC'",
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'",
    ] {
        f.refused(sql);
    }
    assert!(!std::path::Path::new("/tmp/gridlens-leak.csv").exists());
    // 34. File-reading functions do not exist.
    f.refused("SELECT * FROM read_csv('/etc/passwd')");
    f.refused("SELECT * FROM read_parquet('/etc/passwd')");
    // 35. Two statements in one request are refused.
    f.refused("SELECT 1; SELECT count(*) FROM people");
    // 36. KPIs over HTTP: a code outside the scope is 403; the district level is empty.
    let k = f.server.get(
        &format!("/v1/kpis/grids?level=grid&code={}", f.other_grid),
        Some(&f.analyst),
    );
    assert_eq!(k.status, 403);
    let k = f
        .server
        .get("/v1/kpis/grids?level=district", Some(&f.analyst))
        .json();
    assert_eq!(k["rows"].as_array().unwrap().len(), 0);
    let k = f
        .server
        .get(
            &format!("/v1/kpis/grids?level=grid&code={}", &s[..6]),
            Some(&f.analyst),
        )
        .json();
    f.all_in_street(k["rows"].as_array().unwrap(), "code");
    // 37. Incident KPIs over HTTP count only the street's incidents.
    let k = f
        .server
        .get("/v1/kpis/incidents?group_by=category", Some(&f.analyst))
        .json();
    let reported: i64 = k["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reported"].as_i64().unwrap())
        .sum();
    assert_eq!(
        reported,
        f.one("SELECT CAST(sum(reported) AS BIGINT) FROM incident_kpis('category')")
    );
    // 38. A shared sweep is for an admin of the whole city: an analyst is refused, and asks
    // sweep() in SQL instead, which counts the street's findings only.
    let sw = f.server.post(
        "/v1/sweeps",
        Some(&f.analyst),
        &serde_json::json!({"rules": ["R07"]}),
    );
    assert_eq!(sw.status, 403, "{}", sw.text());
    let want = count(
        &f.full,
        &format!("SELECT count(*) FROM sweep('2026-11-01', 'R07') WHERE grid_code LIKE '{s}%'"),
    );
    assert_eq!(
        f.one("SELECT count(*) FROM sweep(as_of => '2026-11-01', rules => 'R07')"),
        want
    );
    // 39. Another worker's task list (outside the street) is not found.
    let outside_worker = text(
        &f.full,
        &format!("SELECT worker_id FROM workers WHERE grid_code NOT LIKE '{s}%' LIMIT 1"),
    );
    let t = f.server.get(
        &format!("/v1/tasks?worker_id={outside_worker}"),
        Some(&f.analyst),
    );
    assert_eq!(t.status, 404);
    // 40. The catalog counts rows inside the scope.
    let cat = f.server.get("/v1/tables", Some(&f.analyst)).json();
    let p = cat["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "people")
        .unwrap()
        .clone();
    assert_eq!(p["rows"].as_i64(), Some(in_street("people")));
    // The admin with pii sees everything, unmasked (the same queries are not vacuous).
    let all = f.server.rows(&f.admin, "SELECT count(*) AS n FROM people");
    assert_eq!(all[0]["n"].as_i64(), Some(city_people));
    let a = f
        .server
        .sql(&f.admin, "SELECT id_number FROM people LIMIT 5");
    assert!(has_clear_id(&a.text()));
}

#[test]
fn roles_and_tokens() {
    let f = setup("roles");
    let state = common::scratch("state-roles");
    let leader = add_token(
        &state,
        &[
            "--name",
            "zhao",
            "--role",
            "leader",
            "--scope",
            &f.street[..6],
        ],
    );
    let worker_row = f
        .full
        .query_blocking(&format!(
            "SELECT worker_id FROM workers WHERE grid_code LIKE '{}%' ORDER BY worker_id LIMIT 2",
            f.street
        ))
        .unwrap();
    let ids = arrow::array::cast::as_string_array(worker_row.batches[0].column(0));
    let (w1, w2) = (
        ids.value(0).to_string(),
        ids.value(1.min(ids.len() - 1)).to_string(),
    );
    let worker = add_token(
        &state,
        &[
            "--name", "wang", "--role", "worker", "--worker", &w1, "--scope", &f.street,
        ],
    );

    // A leader: KPIs yes, SQL no, sweeps no, tasks no.
    assert_eq!(
        f.server
            .get(
                &format!("/v1/kpis/grids?level=street&code={}", &f.street[..6]),
                Some(&leader)
            )
            .status,
        200
    );
    let a = f.server.sql(&leader, "SELECT count(*) FROM people");
    assert_eq!(a.status, 403);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("leader")
    );
    assert_eq!(
        f.server
            .post("/v1/sweeps", Some(&leader), &serde_json::json!({}))
            .status,
        403
    );
    assert_eq!(
        f.server
            .get(&format!("/v1/tasks?worker_id={w1}"), Some(&leader))
            .status,
        403
    );
    // The leader's catalog lists the KPI tables only.
    let cat = f.server.get("/v1/tables", Some(&leader)).json();
    assert!(
        cat["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["name"].as_str().unwrap().ends_with("_kpis"))
    );
    // A worker: SQL no, KPIs no, own tasks yes, someone else's no.
    assert_eq!(f.server.sql(&worker, "SELECT 1").status, 403);
    assert_eq!(f.server.get("/v1/kpis/grids", Some(&worker)).status, 403);
    assert_eq!(f.server.get("/v1/tasks", Some(&worker)).status, 200);
    if w2 != w1 {
        assert_eq!(
            f.server
                .get(&format!("/v1/tasks?worker_id={w2}"), Some(&worker))
                .status,
            403
        );
    }
    // Closing a task that is not theirs: not found, and it stays open.
    let admin_list = f
        .server
        .get(
            &format!("/v1/tasks?worker_id={w2}&status=all"),
            Some(&f.admin),
        )
        .json();
    if let Some(t) = admin_list["tasks"]
        .as_array()
        .and_then(|l| l.first())
        .filter(|_| w2 != w1)
    {
        let id = t["task_id"].as_str().unwrap();
        let c = f.server.post(
            &format!("/v1/tasks/{id}/close"),
            Some(&worker),
            &serde_json::json!({"outcome": "fixed"}),
        );
        assert_eq!(c.status, 404, "{}", c.text());
    }
    // Metrics and reloads are for admins.
    assert_eq!(f.server.get("/v1/metrics", Some(&f.analyst)).status, 403);
    assert_eq!(
        f.server
            .post_raw(
                "/v1/admin/reload",
                Some(&f.analyst),
                "application/json",
                b""
            )
            .status,
        403
    );
    // No token, a malformed header, an unknown token: 401.
    assert_eq!(f.server.sql_without_token().status, 401);
    let a = f.server.get("/v1/tables", Some("not-a-token"));
    assert_eq!(a.status, 401);
    assert_eq!(a.error_code(), "unauthorized");
    // A revoked token stops working at once.
    assert_eq!(f.server.sql(&f.analyst, "SELECT 1").status, 200);
    let list = common::gridlens(&["token", "list", "--state", state.to_str().unwrap()]);
    assert!(
        !common::stdout(&list).contains(&f.analyst),
        "list never shows tokens"
    );
    let id = common::server::token_id(&state, "li");
    let r = common::gridlens(&["token", "revoke", &id, "--state", state.to_str().unwrap()]);
    assert!(r.status.success(), "{}", common::stderr(&r));
    let a = f.server.sql(&f.analyst, "SELECT 1");
    assert_eq!(a.status, 401);
    // Bad token arguments are one clear sentence.
    let bad = common::gridlens(&[
        "token",
        "add",
        "--state",
        state.to_str().unwrap(),
        "--name",
        "x",
        "--role",
        "analyst",
        "--scope",
        "4401",
    ]);
    assert!(!bad.status.success());
    assert!(
        common::stderr(&bad).contains("scope: \"4401\""),
        "{}",
        common::stderr(&bad)
    );
}
