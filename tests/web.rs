//! The web app and what it stands on, against a real server: the pages and their headers,
//! sign-in to a session cookie (flags, CSRF, logout, expiry, revocation), the scope tests of
//! the trust issue repeated through the cookie the pages use, the dashboard's numbers against
//! the KPI endpoints, Excel workbooks read back by `openpyxl`, and a real browser (headless
//! Chromium through WebDriver) signing in, drilling down, being refused a neighbouring street,
//! and closing a task. Screenshots go to `target/screenshots/`.

mod common;

use common::server::{Answer, Server, add_token, token_id, with_admin};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    server: Server,
    state: PathBuf,
    data: PathBuf,
    admin: String,
    street: String,
    neighbour: String,
    leader: String,
    analyst: String,
    worker: String,
    worker_id: String,
}

fn setup(name: &str, extra: &[&str]) -> Fixture {
    let (server, state, admin, data) = with_admin(name, extra);
    let streets = server.rows(
        &admin,
        "SELECT substr(grid_code, 1, 9) AS s FROM people GROUP BY 1 ORDER BY count(*) DESC, 1",
    );
    let street = streets[0]["s"].as_str().unwrap().to_string();
    let neighbour = streets[1]["s"].as_str().unwrap().to_string();
    let leader = add_token(
        &state,
        &["--name", "wang", "--role", "leader", "--scope", &street],
    );
    let analyst = add_token(
        &state,
        &["--name", "li", "--role", "analyst", "--scope", &street],
    );
    let top = server.rows(
        &admin,
        &format!(
            "SELECT worker_id, count(*) AS n FROM tasks WHERE status = 'open' \
             AND worker_id IS NOT NULL AND grid_code LIKE '{street}%' \
             GROUP BY worker_id ORDER BY n DESC, worker_id LIMIT 1"
        ),
    );
    let worker_id = top[0]["worker_id"].as_str().unwrap().to_string();
    let worker = add_token(
        &state,
        &[
            "--name", "zhao", "--role", "worker", "--worker", &worker_id, "--scope", &street,
        ],
    );
    Fixture {
        server,
        state,
        data,
        admin,
        street,
        neighbour,
        leader,
        analyst,
        worker,
        worker_id,
    }
}

/// A signed-in browser, as the server sees it: the cookie and the CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

impl Fixture {
    fn sign_in(&self, token: &str) -> (Answer, Option<Session>) {
        let a = self.server.send(
            "POST",
            "/v1/session",
            &[],
            Some((
                "application/json",
                json!({ "token": token }).to_string().as_bytes(),
            )),
        );
        let s = (a.status == 200).then(|| Session {
            cookie: a.header("set-cookie")[0]
                .split(';')
                .next()
                .unwrap()
                .to_string(),
            csrf: a.json()["csrf"].as_str().unwrap().to_string(),
        });
        (a, s)
    }

    fn get(&self, s: &Session, path: &str) -> Answer {
        self.server
            .send("GET", path, &[("cookie", &s.cookie)], None)
    }

    /// A POST with the session cookie, with the CSRF token or without.
    fn post(&self, s: &Session, path: &str, body: &Value, csrf: Option<&str>) -> Answer {
        let mut h = vec![("cookie", s.cookie.as_str())];
        if let Some(c) = csrf {
            h.push(("x-csrf-token", c));
        }
        self.server.send(
            "POST",
            path,
            &h,
            Some(("application/json", body.to_string().as_bytes())),
        )
    }
}

/// The app's files, with the headers that keep them to this server.
#[test]
fn pages_are_served_from_the_binary() {
    let f = setup("web-pages", &[]);
    let page = f.server.get("/", None);
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    assert!(page.text().contains("/assets/app.js"));
    let csp = page.header("content-security-policy")[0];
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(page.header("x-frame-options"), vec!["DENY"]);
    assert_eq!(page.header("x-content-type-options"), vec!["nosniff"]);
    for (path, ty) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/vendor/echarts.min.js", "text/javascript"),
    ] {
        let a = f.server.get(path, None);
        assert_eq!(a.status, 200, "{path}");
        assert!(a.content_type.starts_with(ty), "{path}: {}", a.content_type);
    }
    // Nothing is fetched from anywhere else: no http(s) address in the page or the app.
    for path in ["/", "/assets/app.js", "/assets/app.css"] {
        let t = f.server.get(path, None).text();
        assert!(
            !t.contains("http://") && !t.contains("https://"),
            "{path} loads from outside"
        );
    }
    for bad in [
        "/assets/nosuch.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/index.php",
    ] {
        assert_eq!(f.server.get(bad, None).status, 404, "{bad}");
    }
}

/// Sign-in gives an HttpOnly, SameSite=Strict cookie; the cookie is the token's scope and
/// role on every endpoint; changes need the CSRF token; logout and revocation end it.
#[test]
fn sessions_hold_the_scope_and_refuse_forged_requests() {
    let f = setup("web-sessions", &[]);
    // Wrong tokens: 401, no cookie.
    for bad in ["", "glt_nobody", "glt_0000000000000000000000000000000000"] {
        let (a, s) = f.sign_in(bad);
        assert_eq!(a.status, 401, "{bad:?}");
        assert!(s.is_none() && a.header("set-cookie").is_empty());
    }
    let (a, leader) = f.sign_in(&f.leader);
    assert_eq!(a.status, 200, "{}", a.text());
    let leader = leader.unwrap();
    let cookie = a.header("set-cookie")[0].to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!a.text().contains(&f.leader), "the token is not echoed");
    let who = a.json();
    assert_eq!(who["role"], "leader");
    assert_eq!(who["scope"], f.street.as_str());
    assert_eq!(a.header("cache-control"), vec!["no-store"]);

    // The cookie is the token: the same KPI answers as the Bearer token, the same refusals.
    for path in [
        "/v1/kpis/grids?level=grid".to_string(),
        format!("/v1/kpis/incidents?group_by=community&code={}", f.street),
        "/v1/dashboard".to_string(),
    ] {
        let by_cookie = f.get(&leader, &path);
        let by_token = f.server.get(&path, Some(&f.leader));
        assert_eq!(by_cookie.status, 200, "{path}: {}", by_cookie.text());
        assert_eq!(by_cookie.json(), by_token.json(), "{path}");
    }
    for row in f.get(&leader, "/v1/kpis/grids?level=grid").json()["rows"]
        .as_array()
        .unwrap()
    {
        assert!(
            row["code"].as_str().unwrap().starts_with(&f.street),
            "{row}"
        );
    }
    for path in [
        format!("/v1/kpis/grids?level=grid&code={}", f.neighbour),
        format!("/v1/kpis/incidents?code={}", f.neighbour),
        format!("/v1/dashboard?code={}", f.neighbour),
        format!("/v1/dashboard?code={}", &f.neighbour[..6]),
    ] {
        let a = f.get(&leader, &path);
        if path.ends_with(&f.neighbour[..6]) && f.street.starts_with(&f.neighbour[..6]) {
            // The street's own district: narrowed to the street, as the KPI endpoints do.
            assert_eq!(a.status, 200, "{path}");
            assert_eq!(a.json()["code"], f.street.as_str());
        } else {
            assert_eq!(a.status, 403, "{path}: {}", a.text());
        }
    }
    // A leader's cookie runs no SQL, CSRF token or not.
    let sql = json!({"sql": "SELECT count(*) AS n FROM people"});
    assert_eq!(
        f.post(&leader, "/v1/sql", &sql, Some(&leader.csrf)).status,
        403
    );

    // The analyst: SQL with the cookie needs the CSRF token; masks hold.
    let (_, analyst) = f.sign_in(&f.analyst);
    let analyst = analyst.unwrap();
    let sql = json!({"sql": "SELECT id_number, grid_code FROM people LIMIT 20"});
    let a = f.post(&analyst, "/v1/sql", &sql, None);
    assert_eq!((a.status, a.error_code().as_str()), (403, "csrf"));
    assert_eq!(
        f.post(&analyst, "/v1/sql", &sql, Some("forged")).status,
        403
    );
    assert_eq!(
        f.post(&analyst, "/v1/sql", &sql, Some(&leader.csrf)).status,
        403
    );
    // A form another site posts (no JSON, no header): refused before anything runs.
    let a = f.server.send(
        "POST",
        "/v1/sql",
        &[("cookie", &analyst.cookie)],
        Some(("text/plain", br#"{"sql":"SELECT 1"}"#)),
    );
    assert_eq!(a.status, 403, "{}", a.text());
    let a = f.post(&analyst, "/v1/sql", &sql, Some(&analyst.csrf));
    assert_eq!(a.status, 200, "{}", a.text());
    for r in a.json()["rows"].as_array().unwrap() {
        assert!(r["grid_code"].as_str().unwrap().starts_with(&f.street));
        assert!(r["id_number"].as_str().unwrap().contains("****"), "{r}");
    }
    let a = f.post(
        &analyst,
        "/v1/sql",
        &json!({"sql": format!("SELECT count(*) AS n FROM people WHERE grid_code LIKE '{}%'", f.neighbour)}),
        Some(&analyst.csrf),
    );
    assert_eq!(a.json()["rows"][0]["n"], 0);

    // The worker: their own list only; closing needs the CSRF token.
    let (_, worker) = f.sign_in(&f.worker);
    let worker = worker.unwrap();
    let list = f.get(&worker, "/v1/tasks");
    assert_eq!(list.status, 200, "{}", list.text());
    let tasks = list.json()["tasks"].as_array().unwrap().clone();
    assert!(!tasks.is_empty());
    assert!(tasks.iter().all(|t| t["worker_id"] == f.worker_id.as_str()));
    assert_eq!(f.get(&worker, "/v1/tasks?worker_id=W-nobody").status, 403);
    assert_eq!(f.get(&worker, "/v1/dashboard").status, 403);
    let id = tasks[0]["task_id"].as_str().unwrap();
    let close = json!({"outcome": "false_alarm", "note": "checked"});
    let path = format!("/v1/tasks/{id}/close");
    assert_eq!(f.post(&worker, &path, &close, None).status, 403);
    let a = f.post(&worker, &path, &close, Some(&worker.csrf));
    assert_eq!(a.status, 200, "{}", a.text());

    // Logout: needs the CSRF token too; then the cookie is worth nothing.
    let out = |csrf: Option<&str>| {
        let mut h = vec![("cookie", leader.cookie.as_str())];
        if let Some(c) = csrf {
            h.push(("x-csrf-token", c));
        }
        f.server.send("DELETE", "/v1/session", &h, None)
    };
    assert_eq!(out(None).status, 403);
    let a = out(Some(&leader.csrf));
    assert_eq!(a.status, 204);
    let cleared = a.header("set-cookie")[0];
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("HttpOnly"),
        "{cleared}"
    );
    let a = f.get(&leader, "/v1/session");
    assert_eq!(a.status, 401, "{}", a.text());
    assert_eq!(f.get(&leader, "/v1/kpis/grids").status, 401);

    // Revoking the token ends its sessions at once.
    assert_eq!(f.get(&analyst, "/v1/session").status, 200);
    let id = token_id(&f.state, "li");
    let r = common::gridlens(&["token", "revoke", &id, "--state", f.state.to_str().unwrap()]);
    assert!(r.status.success(), "{}", common::stderr(&r));
    assert_eq!(f.get(&analyst, "/v1/session").status, 401);

    // The audit log has the sign-ins and no token.
    let audit = std::fs::read_to_string(f.state.join("audit.jsonl")).unwrap();
    for t in [&f.leader, &f.analyst, &f.worker, &f.admin] {
        assert!(!audit.contains(t.as_str()), "a token in the audit log");
    }
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"/v1/session\"") && l.contains("\"status\":401"))
    );
}

/// A session ends after its idle time.
#[test]
fn an_idle_session_expires() {
    let f = setup("web-expiry", &["--session-idle-minutes", "0.02"]);
    let (_, s) = f.sign_in(&f.leader);
    let s = s.unwrap();
    assert_eq!(f.get(&s, "/v1/session").status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let a = f.get(&s, "/v1/session");
    assert_eq!(a.status, 401);
    assert!(a.text().contains("session has ended"), "{}", a.text());
}

/// What the dashboard draws beside the KPI endpoints adds up with them.
#[test]
fn the_dashboard_agrees_with_the_kpis() {
    let f = setup("web-dashboard", &[]);
    let d = f.server.get("/v1/dashboard", Some(&f.leader));
    assert_eq!(d.status, 200, "{}", d.text());
    let d = d.json();
    assert_eq!(d["code"], f.street.as_str());
    assert_eq!(d["level"], "street");
    assert_eq!(d["child_level"], "community");
    let grids = f
        .server
        .get(
            &format!("/v1/kpis/grids?level=grid&code={}", f.street),
            Some(&f.leader),
        )
        .json();
    let grids = grids["rows"].as_array().unwrap();
    // The map: every grid of the street with coordinates, with its score and anomaly rate.
    let map = &d["map"];
    let codes = map["grid_code"].as_array().unwrap();
    assert_eq!(
        codes.len(),
        grids.len(),
        "every grid has buildings with coordinates"
    );
    for (i, c) in codes.iter().enumerate() {
        let g = grids.iter().find(|g| g["code"] == *c).unwrap();
        let near = |a: &Value, b: &Value, tol: f64| match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= tol,
            _ => a.is_null() && b.is_null(),
        };
        assert!(near(&map["grid_score"][i], &g["grid_score"], 0.005), "{c}");
        assert!(
            near(
                &map["anomalies_per_1000"][i],
                &g["anomalies_per_1000"],
                0.0005
            ),
            "{c}"
        );
        let (lon, lat) = (
            map["lon"][i].as_f64().unwrap(),
            map["lat"][i].as_f64().unwrap(),
        );
        assert!(
            (73.0..136.0).contains(&lon) && (3.0..54.0).contains(&lat),
            "{c}: {lon},{lat}"
        );
    }
    // Anomalies by rule add up to the grid KPIs' anomalies.
    let by_rule: u64 = d["anomalies_by_rule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    let anomalies: u64 = grids.iter().map(|g| g["anomalies"].as_u64().unwrap()).sum();
    assert_eq!(by_rule, anomalies);
    let sql_by_rule = f.server.rows(
        &f.admin,
        &format!(
            "SELECT rule, count(*) AS n FROM anomalies WHERE grid_code LIKE '{}%' GROUP BY 1 ORDER BY 1",
            f.street
        ),
    );
    for r in sql_by_rule {
        let on_page = d["anomalies_by_rule"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["rule"] == r["rule"])
            .unwrap();
        assert_eq!(on_page["count"], r["n"], "{r}");
    }
    // Overdue cases: as many as the incident stages say.
    let overdue = f.server.rows(
        &f.admin,
        &format!(
            "SELECT count(*) AS n FROM incident_stages WHERE state = 'overdue' AND grid_code LIKE '{}%'",
            f.street
        ),
    );
    assert_eq!(d["overdue"]["total"], overdue[0]["n"]);
    assert!(d["overdue"]["cases"].as_array().unwrap().len() <= 50);
    // Names of the level below, from the grids table.
    let names = f.server.rows(
        &f.admin,
        &format!(
            "SELECT DISTINCT community_code, community_name FROM grids WHERE street_code = '{}'",
            f.street
        ),
    );
    for n in names {
        assert_eq!(
            d["names"][n["community_code"].as_str().unwrap()],
            n["community_name"]
        );
    }
    // The way back up starts at the leader's own street.
    assert_eq!(d["path"][0]["code"], f.street.as_str());
    // A community's incident KPIs by code equal its row when grouped.
    let community = codes[0].as_str().unwrap()[..12].to_string();
    let one = f
        .server
        .get(
            &format!("/v1/kpis/incidents?code={community}"),
            Some(&f.leader),
        )
        .json();
    let grouped = f
        .server
        .get(
            &format!("/v1/kpis/incidents?group_by=community&code={}", f.street),
            Some(&f.leader),
        )
        .json();
    let row = grouped["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["community_code"] == community.as_str())
        .unwrap()
        .clone();
    let mut want = row.as_object().unwrap().clone();
    want.remove("community_code");
    assert_eq!(one["rows"][0], Value::Object(want));
    // The city's dashboard is the admin's; a bad as_of or code is a clear 400.
    let city = f.server.get("/v1/dashboard", Some(&f.admin)).json();
    assert_eq!(city["level"], "city");
    assert_eq!(city["child_level"], "district");
    let bad = f
        .server
        .get("/v1/dashboard?as_of=yesterday", Some(&f.admin));
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("as_of"), "{}", bad.text());
    assert_eq!(
        f.server
            .get("/v1/dashboard?code=999999", Some(&f.admin))
            .status,
        400
    );
}

/// Reads every sheet of a workbook with openpyxl: the sheets' names in order, and per sheet
/// its rows of cell values, row 2's number formats and fills, its frozen pane and filter.
fn read_xlsx(path: &Path) -> Value {
    let script = r#"
import json, sys, datetime, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
def v(c):
    x = c.value
    if isinstance(x, (datetime.datetime, datetime.date)):
        return x.isoformat()
    return x
out = {}
for ws in wb.worksheets:
    out[ws.title] = {
        "rows": [[v(c) for c in row] for row in ws.iter_rows()],
        "formats": [c.number_format for c in ws[2]] if ws.max_row > 1 else [],
        "freeze": ws.freeze_panes,
        "filter": ws.auto_filter.ref,
        "fills": [c.fill.fgColor.rgb for c in ws[2]] if ws.max_row > 1 else [],
    }
print(json.dumps({"order": wb.sheetnames, "sheets": out}, ensure_ascii=False))
"#;
    let o = Command::new("python3")
        .args(["-c", script, path.to_str().unwrap()])
        .output()
        .expect("python3 runs (openpyxl: .ci/run installs it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// A sheet's cells against CSV text: numbers equal as numbers, text as text, blanks as
/// nulls; the header row in Chinese where the column has a Chinese name.
fn same_as_csv(sheet: &Value, csv: &[Vec<String>], headers: &[&str]) {
    let rows = sheet["rows"].as_array().unwrap();
    assert_eq!(rows.len(), csv.len(), "rows");
    let head: Vec<&str> = rows[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(head, headers);
    for (r, (x, c)) in rows.iter().zip(csv).enumerate().skip(1) {
        let x = x.as_array().unwrap();
        assert_eq!(x.len(), c.len(), "row {r}");
        for (j, (cell, text)) in x.iter().zip(c).enumerate() {
            match cell {
                Value::Null => assert!(text.is_empty(), "row {r} col {j}: {text:?}"),
                Value::Number(n) => {
                    let want: f64 = text
                        .parse()
                        .unwrap_or_else(|_| panic!("row {r} col {j}: {text:?}"));
                    assert!(
                        (n.as_f64().unwrap() - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "row {r} col {j}"
                    );
                }
                Value::Bool(b) => assert_eq!(b.to_string(), *text),
                Value::String(s) if s.contains('T') && text.contains('T') => {
                    assert_eq!(&s[..19], &text[..19], "row {r} col {j}")
                }
                Value::String(s) => assert_eq!(s, text, "row {r} col {j}"),
                other => panic!("row {r} col {j}: {other}"),
            }
        }
    }
}

/// Excel answers read back by a real spreadsheet reader equal the CSV answers; the command
/// line's leadership workbook has one sheet per level.
#[test]
fn excel_workbooks_read_back_as_the_csv() {
    let f = setup("web-xlsx", &[]);
    let dir = common::scratch("xlsx");
    std::fs::create_dir_all(&dir).unwrap();
    // The KPI endpoints.
    for path in [
        "/v1/kpis/grids?level=community".to_string(),
        format!("/v1/kpis/incidents?group_by=grid&code={}", f.street),
    ] {
        let x = f
            .server
            .get(&format!("{path}&format=xlsx"), Some(&f.leader));
        assert_eq!(x.status, 200, "{path}: {}", x.text());
        assert!(
            x.content_type.contains("spreadsheetml"),
            "{}",
            x.content_type
        );
        assert!(x.header("content-disposition")[0].contains(".xlsx"));
        let file = dir.join("kpi.xlsx");
        std::fs::write(&file, &x.body).unwrap();
        let book = read_xlsx(&file);
        let sheet = book["sheets"][book["order"][0].as_str().unwrap()].clone();
        let csv = csv_rows(
            &f.server
                .get(&format!("{path}&format=csv"), Some(&f.leader))
                .text(),
        );
        let headers: Vec<&str> = csv[0].iter().map(|c| gridlens::xlsx::header(c)).collect();
        same_as_csv(&sheet, &csv, &headers);
        assert_eq!(sheet["freeze"], "A2");
        assert!(sheet["filter"].as_str().unwrap().starts_with("A1:"));
        // Rates as percentages, grades coloured.
        let head = &csv[0];
        if let Some(i) = head.iter().position(|h| h == "closure_rate") {
            assert_eq!(sheet["formats"][i], "0.0%");
        }
        if let Some(i) = head.iter().position(|h| h == "grade") {
            let g = sheet["rows"][1][i].as_str().unwrap_or("");
            if !g.is_empty() {
                assert_ne!(sheet["fills"][i], "00000000", "grade {g} is coloured");
            }
        }
    }
    // SQL, with dates, timestamps and masked text.
    let sql = "SELECT person_id, id_number, birth_date, grid_code FROM people ORDER BY person_id LIMIT 300";
    let ask = |format: &str| {
        f.server.post(
            "/v1/sql",
            Some(&f.analyst),
            &json!({"sql": sql, "format": format}),
        )
    };
    let x = ask("xlsx");
    assert_eq!(x.status, 200, "{}", x.text());
    let file = dir.join("sql.xlsx");
    std::fs::write(&file, &x.body).unwrap();
    let book = read_xlsx(&file);
    let sheet = &book["sheets"]["query"];
    let csv = csv_rows(&ask("csv").text());
    let rows = sheet["rows"].as_array().unwrap();
    assert_eq!(rows.len(), csv.len());
    for (x, c) in rows.iter().zip(&csv).skip(1) {
        assert_eq!(x[0].as_str().unwrap(), c[0]);
        assert_eq!(x[1].as_str().unwrap(), c[1], "the mask holds in Excel");
        assert!(c[1].contains("****"));
        assert_eq!(&x[2].as_str().unwrap()[..10], c[2], "dates are Excel dates");
    }
    assert_eq!(sheet["formats"][2], "yyyy-mm-dd");
    // The command line's leadership workbook.
    let out = dir.join("report.xlsx");
    let r = common::gridlens(&[
        "kpi",
        "--data",
        f.data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", common::stderr(&r));
    let book = read_xlsx(&out);
    assert_eq!(book["order"], json!(["市", "区", "街道", "社区", "网格"]));
    let csv_of = |args: &[&str]| {
        let file = dir.join("k.csv");
        let mut all = vec![
            "kpi",
            "--data",
            f.data.to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let r = common::gridlens(&all);
        assert!(r.status.success(), "{}", common::stderr(&r));
        csv_rows(&std::fs::read_to_string(&file).unwrap())
    };
    let districts = csv_of(&["--incidents", "--group-by", "district"]);
    let grid_districts = csv_of(&["--level", "district"]);
    let sheet = book["sheets"]["区"]["rows"].as_array().unwrap();
    assert_eq!(sheet.len(), grid_districts.len());
    let head: Vec<&str> = sheet[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == gridlens::xlsx::header(name))
            .unwrap()
    };
    for row in &sheet[1..] {
        let code = row[0].as_str().unwrap();
        let inc = districts.iter().find(|r| r[0] == code).unwrap();
        let score_at = districts[0].iter().position(|h| h == "score").unwrap();
        let grade_at = districts[0].iter().position(|h| h == "grade").unwrap();
        match row[col("score")].as_f64() {
            Some(s) => assert!((s - inc[score_at].parse::<f64>().unwrap()).abs() < 1e-9),
            None => assert!(inc[score_at].is_empty()),
        }
        assert_eq!(row[col("grade")].as_str().unwrap_or(""), inc[grade_at]);
        let g = grid_districts.iter().find(|r| r[1] == code).unwrap();
        let res_at = grid_districts[0]
            .iter()
            .position(|h| h == "residents")
            .unwrap();
        assert_eq!(
            row[col("residents")].as_f64().unwrap(),
            g[res_at].parse::<f64>().unwrap()
        );
    }
}

/// A real browser: sign in, the KPI cards equal the API's, two levels of drill-down and back,
/// a neighbouring street refused, a worker closes a task, an analyst runs a query; no token in
/// any URL or in browser storage.
#[test]
fn a_browser_signs_in_drills_down_and_closes_a_task() {
    let f = setup("web-browser", &[]);
    // The API's numbers for the street, before the browser changes the city (the worker's
    // correction makes a new version): the cards must show exactly these.
    let inc = f
        .server
        .get(
            &format!("/v1/kpis/incidents?code={}", f.street),
            Some(&f.leader),
        )
        .json()["rows"][0]
        .clone();
    let grid = f
        .server
        .get(
            &format!("/v1/kpis/grids?level=street&code={}", f.street),
            Some(&f.leader),
        )
        .json()["rows"][0]
        .clone();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser/drive.py");
    let o = Command::new("python3")
        .arg(&script)
        .env("GRIDLENS_URL", &f.server.url)
        .env("LEADER", &f.leader)
        .env("WORKER", &f.worker)
        .env("ANALYST", &f.analyst)
        .env("NEIGHBOUR", &f.neighbour)
        .env("SHOTS", &shots)
        .output()
        .expect("python3 runs (selenium, chromium and chromium-driver: .ci/run installs them)");
    assert!(
        o.status.success(),
        "the browser run failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let seen: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    let cards = seen["leader_cards"].as_object().unwrap();
    assert!(cards.len() >= 10, "{cards:?}");
    for (k, shown) in cards {
        let api = if inc.get(k).is_some() {
            &inc[k]
        } else {
            &grid[k]
        };
        let shown = shown.as_str().unwrap();
        match api {
            Value::Null => assert_eq!(shown, "", "card {k}"),
            Value::String(s) => assert_eq!(shown, s, "card {k}"),
            // The same number, as JavaScript prints it (parsers may differ in the last bit).
            v => {
                let (a, b) = (shown.parse::<f64>().unwrap(), v.as_f64().unwrap());
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "card {k}: {a} vs {b}"
                );
            }
        }
    }
    let points = seen["map_points"].as_u64().unwrap();
    let grids = f
        .server
        .get(
            &format!("/v1/kpis/grids?level=grid&code={}", f.street),
            Some(&f.leader),
        )
        .json();
    assert_eq!(points as usize, grids["rows"].as_array().unwrap().len());
    // Two levels down (community, grid), each with its own cards, and back.
    let drill = seen["drill"].as_array().unwrap();
    assert_eq!(drill.len(), 2);
    assert_eq!(drill[0]["code"].as_str().unwrap().len(), 12);
    assert_eq!(drill[1]["code"].as_str().unwrap().len(), 15);
    assert!(
        drill[1]["code"]
            .as_str()
            .unwrap()
            .starts_with(drill[0]["code"].as_str().unwrap())
    );
    let community = drill[0]["code"].as_str().unwrap();
    let inc_c = f
        .server
        .get(
            &format!("/v1/kpis/incidents?code={community}"),
            Some(&f.leader),
        )
        .json()["rows"][0]
        .clone();
    let shown = drill[0]["cards"]["closure_rate"].as_str().unwrap();
    match inc_c["closure_rate"].as_f64() {
        Some(want) => assert!((shown.parse::<f64>().unwrap() - want).abs() <= 1e-12),
        None => assert_eq!(shown, ""),
    }
    assert_eq!(seen["back_title"], seen["leader_title"]);
    // The neighbouring street: refused.
    assert_eq!(seen["neighbour"]["status"], "403", "{}", seen["neighbour"]);
    // No token in any URL, in storage, or readable as a cookie.
    for u in seen["urls"].as_array().unwrap() {
        for t in [&f.leader, &f.worker, &f.analyst] {
            assert!(!u.as_str().unwrap().contains(t.as_str()), "a token in {u}");
        }
    }
    assert_eq!(seen["storage"], json!(["", 0, 0]));
    assert_eq!(seen["page_source_has_token"], false);
    // The worker closed their first task: closed on the server, with the note.
    let id = seen["closed_task"].as_str().unwrap();
    let closed = f.server.rows(
        &f.admin,
        &format!("SELECT status, outcome, note, worker_id FROM tasks WHERE task_id = '{id}'"),
    );
    assert_eq!(closed[0]["status"], "closed");
    assert_eq!(closed[0]["outcome"], "fixed");
    assert_eq!(closed[0]["note"], "已上门核实并更新登记");
    assert_eq!(closed[0]["worker_id"], f.worker_id.as_str());
    // The closed loop from the phone: the record corrected through ingest, the task closed as
    // fixed, and the person no longer the subject of any anomaly.
    let id = seen["corrected_task"]
        .as_str()
        .expect("the worker had a person's task to close with a correction");
    let t = f.server.rows(
        &f.admin,
        &format!("SELECT subject_id, status, outcome FROM tasks WHERE task_id = '{id}'"),
    );
    assert_eq!(
        (t[0]["status"].as_str(), t[0]["outcome"].as_str()),
        (Some("closed"), Some("fixed"))
    );
    let person = t[0]["subject_id"].as_str().unwrap();
    let p = f.server.rows(
        &f.admin,
        &format!("SELECT status FROM people WHERE person_id = '{person}'"),
    );
    assert_eq!(p[0]["status"], "moved_out");
    let a = f.server.rows(
        &f.admin,
        &format!("SELECT count(*) AS n FROM anomalies WHERE subject_id = '{person}'"),
    );
    assert_eq!(a[0]["n"], 0);
    // The analyst's console showed the street's rows.
    let want = f.server.rows(
        &f.analyst,
        "SELECT grid_code, count(*) AS residents FROM people GROUP BY 1 ORDER BY 1",
    );
    let rows = seen["sql_rows"].as_array().unwrap();
    assert_eq!(rows.len(), want.len());
    for (r, w) in rows.iter().zip(&want) {
        assert_eq!(r[0], w["grid_code"]);
        assert_eq!(r[1].as_str().unwrap(), w["residents"].to_string());
    }
    for shot in [
        "1-street-dashboard",
        "4-neighbour-refused",
        "5-worker-tasks",
        "6b-worker-record-corrected",
        "7-sql-console",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}");
    }
    eprintln!(
        "street dashboard drawn in {} ms; screenshots in {}",
        seen["leader_ms"],
        shots.display()
    );
}

/// Every way in this change adds — sign-in and the session cookie, `/v1/dashboard`, the KPI
/// endpoints' CSV and Excel answers, Excel from `/v1/sql` — holds the scope and the masks of a
/// street token and of a grid token, and the roles, in every format it answers.
#[test]
fn every_new_way_holds_the_scope_for_street_and_grid_tokens() {
    let f = setup("web-ways", &[]);
    let grid = f.server.rows(
        &f.admin,
        &format!(
            "SELECT grid_code FROM people WHERE grid_code LIKE '{}%' \
             GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
            f.street
        ),
    )[0]["grid_code"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = common::scratch("ways");
    std::fs::create_dir_all(&dir).unwrap();
    for scope in [f.street.clone(), grid.clone()] {
        let leader = add_token(
            &f.state,
            &[
                "--name",
                &format!("l{scope}"),
                "--role",
                "leader",
                "--scope",
                &scope,
            ],
        );
        let analyst = add_token(
            &f.state,
            &[
                "--name",
                &format!("a{scope}"),
                "--role",
                "analyst",
                "--scope",
                &scope,
            ],
        );
        let (a, s) = f.sign_in(&leader);
        assert_eq!(a.status, 200, "{scope}: {}", a.text());
        assert_eq!(a.json()["scope"], scope.as_str());
        let s = s.unwrap();
        // The dashboard: by token and by cookie alike, only the scope's grids, overdue cases
        // and names; outside the scope 403; a wider code narrowed to the scope.
        for by_cookie in [false, true] {
            let get = |path: &str| {
                if by_cookie {
                    f.get(&s, path)
                } else {
                    f.server.get(path, Some(&leader))
                }
            };
            for path in [
                "/v1/dashboard".to_string(),
                format!("/v1/dashboard?code={}", &scope[..6]),
            ] {
                let d = get(&path);
                assert_eq!(d.status, 200, "{scope} {path}: {}", d.text());
                let d = d.json();
                assert_eq!(d["code"], scope.as_str(), "{path}");
                for g in d["map"]["grid_code"].as_array().unwrap() {
                    assert!(g.as_str().unwrap().starts_with(&scope), "{g}");
                }
                for c in d["overdue"]["cases"].as_array().unwrap() {
                    assert!(c["grid_code"].as_str().unwrap().starts_with(&scope), "{c}");
                }
                for code in d["names"].as_object().unwrap().keys() {
                    assert!(code.starts_with(&scope), "{code}");
                }
                for p in d["path"].as_array().unwrap() {
                    assert!(p["code"].as_str().unwrap().starts_with(&scope), "{p}");
                }
            }
            assert_eq!(
                get(&format!("/v1/dashboard?code={}", f.neighbour)).status,
                403
            );
            // The KPI endpoints' CSV and Excel answers hold the scope too.
            for path in [
                "/v1/kpis/grids?level=grid".to_string(),
                "/v1/kpis/incidents?group_by=grid".to_string(),
            ] {
                let csv = get(&format!("{path}&format=csv"));
                assert_eq!(csv.status, 200, "{path}");
                let rows = csv_rows(&csv.text());
                let col = rows[0]
                    .iter()
                    .position(|h| h == "code" || h == "grid_code")
                    .unwrap();
                for r in &rows[1..] {
                    assert!(r[col].starts_with(&scope), "{path}: {r:?}");
                }
                let x = get(&format!("{path}&format=xlsx"));
                assert_eq!(x.status, 200, "{path}");
                let file = dir.join("k.xlsx");
                std::fs::write(&file, &x.body).unwrap();
                let book = read_xlsx(&file);
                let sheet = &book["sheets"][book["order"][0].as_str().unwrap()];
                for r in &sheet["rows"].as_array().unwrap()[1..] {
                    assert!(r[col].as_str().unwrap().starts_with(&scope), "{path}: {r}");
                }
                for fmt in ["csv", "xlsx"] {
                    let out = get(&format!("{path}&code={}&format={fmt}", f.neighbour));
                    assert_eq!(out.status, 403, "{path} {fmt}");
                }
            }
        }
        // A leader's session runs no SQL in any format; an analyst's Excel holds scope and masks.
        for fmt in ["json", "csv", "xlsx"] {
            let body = json!({"sql": "SELECT 1", "format": fmt});
            assert_eq!(
                f.post(&s, "/v1/sql", &body, Some(&s.csrf)).status,
                403,
                "{fmt}"
            );
        }
        let (_, sa) = f.sign_in(&analyst);
        let sa = sa.unwrap();
        let sql = json!({
            "sql": "SELECT id_number, name, phone, grid_code FROM people ORDER BY person_id",
            "format": "xlsx"
        });
        for x in [
            f.post(&sa, "/v1/sql", &sql, Some(&sa.csrf)),
            f.server.post("/v1/sql", Some(&analyst), &sql),
        ] {
            assert_eq!(x.status, 200, "{}", x.text());
            let file = dir.join("q.xlsx");
            std::fs::write(&file, &x.body).unwrap();
            let rows = read_xlsx(&file)["sheets"]["query"]["rows"].clone();
            let rows = rows.as_array().unwrap();
            assert!(rows.len() > 1);
            for r in &rows[1..] {
                assert!(r[3].as_str().unwrap().starts_with(&scope), "{r}");
                assert!(r[0].as_str().unwrap().contains("****"), "{r}");
                assert!(r[1].as_str().unwrap().contains('*'), "{r}");
            }
        }
    }
    // A worker: no dashboard, no KPIs in any format, by token or cookie.
    let (_, w) = f.sign_in(&f.worker);
    let w = w.unwrap();
    for path in [
        "/v1/dashboard",
        "/v1/kpis/grids?format=xlsx",
        "/v1/kpis/incidents?format=csv",
    ] {
        assert_eq!(f.get(&w, path).status, 403, "{path}");
        assert_eq!(f.server.get(path, Some(&f.worker)).status, 403, "{path}");
    }
    // The pages themselves carry nothing of anyone's: the same bytes signed in or not.
    assert_eq!(f.server.get("/", None).body, f.get(&w, "/").body);
}
