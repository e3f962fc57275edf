//! The PostgreSQL endpoint through real clients against a real server: `tokio-postgres`
//! (prepared statements, parameters, binary results, cancel), `psql` (queries and `COPY … TO
//! STDOUT`) and Python's `psycopg` (parameters, binary results, a cancelled query, a 1 M-row
//! fetch). The scope, masking and role tests of the HTTP API are run again over the wire: a
//! street token sees the same rows and the same masks through PostgreSQL as through HTTP.

mod common;

use common::server::{Server, add_token, state_dir, token_id, with_admin};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

struct Fixture {
    server: Server,
    state: PathBuf,
    admin: String,
    analyst: String,
    leader: String,
    street: String,
    rt: tokio::runtime::Runtime,
}

fn setup(name: &str) -> Fixture {
    setup_with(name, &[])
}

fn setup_with(name: &str, extra: &[&str]) -> Fixture {
    let (server, state, admin, _) = with_admin(name, extra);
    let street = server.rows(
        &admin,
        "SELECT substr(grid_code, 1, 9) AS s FROM people GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    )[0]["s"]
        .as_str()
        .unwrap()
        .to_string();
    let analyst = add_token(
        &state,
        &["--name", "li", "--role", "analyst", "--scope", &street],
    );
    let leader = add_token(
        &state,
        &["--name", "wang", "--role", "leader", "--scope", &street],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        server,
        state,
        admin,
        analyst,
        leader,
        street,
        rt,
    }
}

impl Fixture {
    /// A fixture of a server started by hand, with only its admin token.
    fn bare(server: Server, state: PathBuf, admin: String) -> Fixture {
        Fixture {
            server,
            state,
            analyst: String::new(),
            leader: String::new(),
            street: String::new(),
            admin,
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn port(&self) -> u16 {
        self.server
            .pg_port
            .expect("the server prints its PostgreSQL address")
    }

    fn url(&self, user: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/gridlens", self.port())
    }

    /// A connection signed in with a token (or the error of signing in).
    fn connect(&self, token: &str) -> Result<Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port())
            .user("someone")
            .dbname("gridlens")
            .password(token);
        self.rt.block_on(async {
            let (client, conn) = config.connect(NoTls).await?;
            tokio::spawn(conn);
            Ok(client)
        })
    }

    /// The rows of a query through the simple protocol, as text.
    fn simple(&self, c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
        self.rt.block_on(async {
            c.simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .into_iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect()
        })
    }

    /// The SQLSTATE a statement fails with.
    fn sqlstate(&self, c: &Client, sql: &str) -> String {
        let e = self
            .rt
            .block_on(c.simple_query(sql))
            .err()
            .unwrap_or_else(|| panic!("{sql} was answered"));
        e.code()
            .unwrap_or_else(|| panic!("{sql}: no SQLSTATE in {e}"))
            .code()
            .to_string()
    }

    /// A query's rows through HTTP, each as text (null as None).
    fn http(&self, token: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let a = self.server.post(
            "/v1/sql",
            Some(token),
            &serde_json::json!({ "sql": sql, "format": "csv" }),
        );
        assert_eq!(a.status, 200, "{sql}: {}", a.text());
        let mut r = csv::ReaderBuilder::new().from_reader(a.body.as_slice());
        r.records()
            .map(|rec| {
                rec.unwrap()
                    .iter()
                    .map(|v| (!v.is_empty()).then(|| v.to_string()))
                    .collect()
            })
            .collect()
    }
}

/// Tokens sign in; the wrong ones get 28P01; a revoked token stops on an open connection.
#[test]
fn tokens_are_the_password() {
    let f = setup("pg-auth");
    let c = f.connect(&f.admin).expect("the admin token signs in");
    assert_eq!(
        f.simple(&c, "SELECT 1 AS one"),
        vec![vec![Some("1".into())]]
    );
    for bad in ["", "not-a-token", "glt_0000000000000000000000000000000000"] {
        let e = f.connect(bad).expect_err("a wrong token is refused");
        assert_eq!(e.code().map(|c| c.code()), Some("28P01"), "{bad:?}: {e}");
    }
    // Revoked while connected: the next statement is refused.
    let c = f.connect(&f.analyst).expect("the analyst signs in");
    assert_eq!(f.simple(&c, "SELECT 2"), vec![vec![Some("2".into())]]);
    let id = token_id(&f.state, "li");
    let r = common::gridlens(&["token", "revoke", &id, "--state", f.state.to_str().unwrap()]);
    assert!(r.status.success(), "{}", common::stderr(&r));
    assert_eq!(f.sqlstate(&c, "SELECT 3"), "28P01");
    assert!(f.connect(&f.analyst).is_err());
    // Every sign-in and statement is in the audit log, refused ones too.
    let audit = std::fs::read_to_string(f.state.join("audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let pg: Vec<&Value> = lines.iter().filter(|l| l["method"] == "PG").collect();
    assert!(
        pg.iter()
            .any(|l| l["endpoint"] == "pg sign-in" && l["status"] == 401),
        "a refused sign-in is audited"
    );
    assert!(
        pg.iter().any(|l| l["endpoint"] == "pg query"
            && l["sql"] == "SELECT 2"
            && l["token_id"] == id.as_str()),
        "a statement is audited with its token"
    );
    assert!(!audit.contains(&f.admin), "no token in the audit log");
}

/// The street analyst sees over PostgreSQL exactly what HTTP shows: the same rows, the same
/// masks; roles and read-only SQL hold; errors carry their SQLSTATE.
#[test]
fn the_same_scope_and_masks_as_http() {
    let f = setup("pg-scope");
    let c = f.connect(&f.analyst).unwrap();
    for sql in [
        "SELECT count(*) FROM people",
        "SELECT grid_code, count(*) FROM buildings GROUP BY 1 ORDER BY 1",
        "SELECT id_number, name, phone, birth_date FROM people ORDER BY person_id LIMIT 50",
        "SELECT count(*) FROM grids",
        "SELECT DISTINCT grid_code FROM people ORDER BY 1",
        "SELECT count(*) FROM deaths",
        "SELECT rule, count(*) FROM anomalies GROUP BY 1 ORDER BY 1",
    ] {
        assert_eq!(f.simple(&c, sql), f.http(&f.analyst, sql), "{sql}");
    }
    for r in f.simple(&c, "SELECT DISTINCT grid_code FROM people") {
        let g = r[0].clone().unwrap();
        assert!(g.starts_with(&f.street), "{g} outside {}", f.street);
    }
    for r in f.simple(&c, "SELECT id_number FROM people LIMIT 20") {
        let id = r[0].clone().unwrap();
        assert!(id.ends_with('*') && id.contains("****"), "unmasked: {id}");
    }
    // The functions DataFusion brings (sha256, md5, …) see the masked value, as every other
    // function does: a hash of an identity number is the hash of its mask.
    for r in f.http(
        &f.analyst,
        "SELECT id_number, encode(sha256(id_number), 'hex'), name, md5(name) FROM people LIMIT 20",
    ) {
        use sha2::Digest;
        let (id, name) = (r[0].clone().unwrap(), r[2].clone().unwrap());
        assert!(id.contains("****"), "{id}");
        assert_eq!(
            r[1].as_deref(),
            Some(hex::encode(sha2::Sha256::digest(id.as_bytes())).as_str())
        );
        assert_ne!(r[3].as_deref(), None);
        assert!(name.contains('*'), "{name}");
    }
    // Prepared: the mask holds for a parameterised query too.
    let rows =
        f.rt.block_on(c.query(
            "SELECT id_number FROM people WHERE grid_code LIKE $1 LIMIT 5",
            &[&format!("{}%", f.street)],
        ))
        .unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let id: String = r.get(0);
        assert!(id.contains("****"), "unmasked: {id}");
    }
    // Nothing outside the street, however asked.
    let other = f.simple(
        &f.connect(&f.admin).unwrap(),
        &format!(
            "SELECT grid_code FROM grids WHERE grid_code NOT LIKE '{}%' ORDER BY 1 LIMIT 1",
            &f.street[..6]
        ),
    )[0][0]
        .clone()
        .unwrap();
    assert_eq!(
        f.simple(
            &c,
            &format!("SELECT count(*) FROM people WHERE grid_code = '{other}'")
        ),
        vec![vec![Some("0".into())]]
    );
    // Read-only, and SQL is for analysts and admins.
    assert_eq!(f.sqlstate(&c, "DROP TABLE people"), "42501");
    assert_eq!(f.sqlstate(&c, "COPY people TO '/tmp/x.csv'"), "42501");
    let l = f.connect(&f.leader).unwrap();
    assert_eq!(f.sqlstate(&l, "SELECT 1"), "42501");
    // SQLSTATEs clients act on.
    assert_eq!(f.sqlstate(&c, "SELEC 1"), "42601");
    assert_eq!(f.sqlstate(&c, "SELECT * FROM nosuch"), "42P01");
    assert_eq!(f.sqlstate(&c, "SELECT nosuch FROM people"), "42703");
    assert_eq!(f.sqlstate(&c, "SHOW nosuch"), "42704");
}

/// What clients send at start is accepted and changes nothing; prepared statements take
/// parameters and answer every column type in binary as in text.
#[test]
fn prepared_statements_and_binary_results() {
    let f = setup("pg-types");
    let c = f.connect(&f.admin).unwrap();
    for s in [
        "SET client_encoding = 'UTF8'",
        "SET extra_float_digits = 3",
        "SET application_name = 'DBeaver 24.1'",
        "BEGIN",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "COMMIT",
        "START TRANSACTION READ ONLY",
        "ROLLBACK",
        "DISCARD ALL",
    ] {
        f.rt.block_on(c.simple_query(s))
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    assert_eq!(
        f.simple(&c, "SHOW transaction_isolation"),
        vec![vec![Some("read committed".into())]]
    );
    assert_eq!(
        f.simple(&c, "SHOW server_version_num"),
        vec![vec![Some("160000".into())]]
    );
    // A prepared statement run twice with different parameters.
    let st = f
        .rt
        .block_on(c.prepare("SELECT count(*) FROM people WHERE grid_code LIKE $1 AND sex = $2"))
        .unwrap();
    assert_eq!(st.params().len(), 2);
    for (prefix, sex) in [(f.street.as_str(), "男"), (&f.street[..6], "女")] {
        let n: i64 =
            f.rt.block_on(c.query_one(&st, &[&format!("{prefix}%"), &sex]))
                .unwrap()
                .get(0);
        let want = f.http(
            &f.admin,
            &format!(
                "SELECT count(*) FROM people WHERE grid_code LIKE '{prefix}%' AND sex = '{sex}'"
            ),
        );
        assert_eq!(Some(n.to_string()), want[0][0], "{prefix} {sex}");
    }
    // Integer, date and timestamp parameters.
    let n: i64 =
        f.rt.block_on(c.query_one(
            "SELECT count(*) FROM buildings WHERE floors >= $1",
            &[&10i64],
        ))
        .unwrap()
        .get(0);
    let want = f.http(
        &f.admin,
        "SELECT count(*) FROM buildings WHERE floors >= 10",
    );
    assert_eq!(Some(n.to_string()), want[0][0]);
    let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let n: i64 =
        f.rt.block_on(c.query_one(
            "SELECT count(*) FROM people WHERE registered_on >= $1",
            &[&day],
        ))
        .unwrap()
        .get(0);
    let want = f.http(
        &f.admin,
        "SELECT count(*) FROM people WHERE registered_on >= DATE '2026-01-01'",
    );
    assert_eq!(Some(n.to_string()), want[0][0]);
    // Every column type the store has, read in binary (tokio-postgres asks for binary).
    let sql = "SELECT building_id, floors, access_control, lat FROM buildings ORDER BY building_id LIMIT 1";
    let row = f.rt.block_on(c.query_one(sql, &[])).unwrap();
    let text = &f.http(&f.admin, sql)[0];
    let (building, floors, doors, lat): (String, i64, bool, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(Some(building), text[0].clone());
    assert_eq!(Some(floors.to_string()), text[1].clone());
    assert_eq!(Some(doors.to_string()), text[2].clone());
    assert_eq!(lat, text[3].clone().unwrap().parse::<f64>().unwrap());
    let sql = "SELECT birth_date, name FROM people ORDER BY person_id LIMIT 1";
    let row = f.rt.block_on(c.query_one(sql, &[])).unwrap();
    let text = &f.http(&f.admin, sql)[0];
    let (birth, name): (chrono::NaiveDate, String) = (row.get(0), row.get(1));
    assert_eq!(Some(birth.to_string()), text[0].clone());
    assert_eq!(Some(name), text[1].clone());
    let sql = "SELECT reported_at, category_name FROM incidents ORDER BY incident_id LIMIT 1";
    let row = f.rt.block_on(c.query_one(sql, &[])).unwrap();
    let text = &f.http(&f.admin, sql)[0];
    let (ts, category): (chrono::DateTime<chrono::Utc>, String) = (row.get(0), row.get(1));
    let http_ts =
        chrono::DateTime::parse_from_str(&text[0].clone().unwrap(), "%Y-%m-%d %H:%M:%S%:z")
            .or_else(|_| chrono::DateTime::parse_from_rfc3339(&text[0].clone().unwrap()))
            .unwrap();
    assert_eq!(ts, http_ts.with_timezone(&chrono::Utc));
    assert_eq!(Some(category), text[1].clone());
}

/// A cancel request stops the running query (SQLSTATE 57014), and the connection goes on.
#[test]
fn a_cancel_request_stops_the_query() {
    // A time limit far beyond the test's: only the cancel request can stop the query in time.
    let f = setup_with("pg-cancel", &["--query-timeout", "600"]);
    let c = f.connect(&f.admin).unwrap();
    let token = c.cancel_token();
    let slow = "SELECT sum(value) FROM generate_series(1, 100000000000)";
    let started = std::time::Instant::now();
    let code = f.rt.block_on(async {
        let q = c.simple_query(slow);
        let cancel = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            token.cancel_query(NoTls).await.unwrap();
            std::future::pending::<()>().await
        };
        tokio::select! {
            r = q => r.err().and_then(|e| e.code().map(|c| c.code().to_string())),
            _ = cancel => None,
        }
    });
    assert_eq!(code.as_deref(), Some("57014"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(f.simple(&c, "SELECT 4"), vec![vec![Some("4".into())]]);
}

/// An answer longer than `--max-rows` ends with an error (54000), never cut short silently;
/// one within it is whole.
#[test]
fn the_row_limit_is_an_error() {
    let f = setup_with("pg-rows", &["--max-rows", "10"]);
    let c = f.connect(&f.admin).unwrap();
    assert_eq!(
        f.simple(&c, "SELECT value FROM generate_series(1, 10)")
            .len(),
        10
    );
    assert_eq!(
        f.sqlstate(&c, "SELECT value FROM generate_series(1, 11)"),
        "54000"
    );
    let e =
        f.rt.block_on(c.query("SELECT value FROM generate_series(1, 11)", &[]))
            .expect_err("past the limit");
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("more than 10 rows")),
        "{e}: {message:?}"
    );
}

/// psql: a query, and `COPY (…) TO STDOUT` as CSV equal to the HTTP API's CSV.
#[test]
fn psql_queries_and_copies() {
    let f = setup("pg-psql");
    let psql = |token: &str, args: &[&str]| {
        let o = Command::new("psql")
            .arg(f.url("ada"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .env("PGPASSWORD", token)
            .output()
            .expect("psql runs (Debian's postgresql-client; .ci/run installs it)");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let sql = "SELECT grid_code, count(*) AS people FROM people GROUP BY 1 ORDER BY 1";
    let (ok, out, err) = psql(&f.analyst, &["-A", "-t", "-F", ",", "-c", sql]);
    assert!(ok, "{err}");
    let want: Vec<String> = f
        .http(&f.analyst, sql)
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(Option::unwrap_or_default)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    let copy =
        "SELECT person_id, id_number, name, grid_code FROM people ORDER BY person_id LIMIT 100";
    let (ok, out, err) = psql(
        &f.analyst,
        &[
            "-c",
            &format!("COPY ({copy}) TO STDOUT WITH (FORMAT csv, HEADER)"),
        ],
    );
    assert!(ok, "{err}");
    let a = f.server.post(
        "/v1/sql",
        Some(&f.analyst),
        &serde_json::json!({ "sql": copy, "format": "csv" }),
    );
    assert_eq!(out, a.text());
    // A wrong password: psql's own message, and a failure.
    let (ok, _, err) = psql("nope", &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
}

/// Python's psycopg: parameters, binary results, a cancelled query, and a 1 M-row fetch.
#[test]
fn python_psycopg() {
    let f = setup_with("pg-python", &["--query-timeout", "600"]);
    let script = r#"
import sys, threading, time
import psycopg
url, street = sys.argv[1], sys.argv[2]
with psycopg.connect(url) as conn:
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM people WHERE grid_code LIKE %s", (street + "%",))
    print("street", cur.fetchone()[0])
    cur = conn.cursor(binary=True)
    cur.execute("SELECT floors, access_control, lat, building_id FROM buildings ORDER BY building_id LIMIT 1")
    print("binary", *[type(v).__name__ for v in cur.fetchone()])
    cur = conn.cursor(name=None)
    t = threading.Timer(0.5, conn.cancel)
    t.start()
    try:
        cur.execute("SELECT sum(value) FROM generate_series(1, 100000000000)")
        print("cancel", "not cancelled")
    except psycopg.errors.QueryCanceled:
        print("cancel", "57014")
    conn.rollback()
    cur = conn.cursor()
    cur.execute("SELECT value FROM generate_series(1, 1000000)")
    n, s = 0, 0
    while True:
        rows = cur.fetchmany(100000)
        if not rows:
            break
        n += len(rows)
        s += sum(r[0] for r in rows)
    print("fetched", n, s)
"#;
    let url = format!(
        "postgresql://ada:{}@127.0.0.1:{}/gridlens",
        f.admin,
        f.port()
    );
    let o = Command::new("python3")
        .args(["-c", script, &url, &f.street])
        .output()
        .expect("python3 runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "psycopg (pip install 'psycopg[binary]'; .ci/run installs it): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let want = f.http(
        &f.admin,
        &format!(
            "SELECT count(*) FROM people WHERE grid_code LIKE '{}%'",
            f.street
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("street {}", want[0][0].clone().unwrap()));
    assert_eq!(lines[1], "binary int bool float str");
    assert_eq!(lines[2], "cancel 57014");
    assert_eq!(lines[3], "fetched 1000000 500000500000");
}

/// TLS: with `--tls-cert` / `--tls-key`, psql connects with `sslmode=require` from another
/// address of the machine and is served; without TLS, a password from an address that is not
/// loopback is refused before it is sent.
#[test]
fn tls_and_the_unencrypted_password() {
    let dir = state_dir("pg-tls-files");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=gridlens",
            "-addext",
            "subjectAltName=DNS:gridlens,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // An address of this machine that is not loopback (the route to the outside world's).
    let ip = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("8.8.8.8:53").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .expect("a non-loopback address");
    assert!(!ip.is_loopback(), "{ip}");
    let psql = |f: &Fixture, mode: &str| {
        Command::new("psql")
            .arg(format!(
                "postgresql://ada@{ip}:{}/gridlens?sslmode={mode}",
                f.port()
            ))
            .args(["-X", "-A", "-t", "-c", "SELECT 6"])
            .env("PGPASSWORD", &f.admin)
            .output()
            .expect("psql runs")
    };
    // With TLS on, both endpoints speak it: HTTPS for the API and the web app (whose session
    // cookie is then Secure), TLS for PostgreSQL clients.
    let (server, state, admin, _) = with_admin(
        "pg-tls",
        &[
            "--pg-listen",
            "0.0.0.0:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let curl = |args: &[&str]| {
        let o = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .args(args)
            .output()
            .expect("curl runs");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let https = server.url.clone();
    let port = https.rsplit(':').next().unwrap().to_string();
    let (ok, body) = curl(&[&format!("{https}/v1/health")]);
    assert!(ok && body.contains("\"status\":\"ok\""), "{body}");
    let (ok, head) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "content-type: application/json",
        "-d",
        &format!("{{\"token\":\"{admin}\"}}"),
        &format!("{https}/v1/session"),
    ]);
    assert!(ok, "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{head}"));
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Plain HTTP to the HTTPS port gets nothing.
    let (ok, _) = curl(&["-m", "5", &format!("http://127.0.0.1:{port}/v1/health")]);
    assert!(!ok, "plain HTTP is not served beside HTTPS");
    let tls = Fixture::bare(server, state, admin);
    let o = psql(&tls, "require");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "6");
    let plain = setup_with("pg-plain", &["--pg-listen", "0.0.0.0:0"]);
    let o = psql(&plain, "disable");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("connect with TLS"), "{err}");
}

/// Runs one query prepared (the extended protocol, text results) and prints its rows as JSON
/// lists of text (null as null).
const EXTENDED_TEXT: &str = r#"
import json, sys, psycopg
with psycopg.connect(sys.argv[1]) as c:
    cur = c.cursor()
    cur.execute(sys.argv[2], prepare=True)
    print(json.dumps([[None if v is None else str(v) for v in r] for r in cur.fetchall()]))
"#;

/// Every way a statement enters over PostgreSQL — the simple protocol, the extended protocol
/// with text and with binary results, a parameterised prepared statement, and `COPY … TO
/// STDOUT` in text and CSV — holds the scope and the masks of a street token and of a grid
/// token exactly as HTTP does; a leader and a worker are refused on each of them.
#[test]
fn every_way_in_holds_the_scope_for_street_and_grid_tokens() {
    let f = setup("pg-ways");
    let admin = f.connect(&f.admin).unwrap();
    let grid = f.simple(
        &admin,
        &format!(
            "SELECT grid_code FROM people WHERE grid_code LIKE '{}%' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
            f.street
        ),
    )[0][0]
        .clone()
        .unwrap();
    let worker_id = f.simple(
        &admin,
        &format!("SELECT worker_id FROM workers WHERE grid_code = '{grid}' ORDER BY 1 LIMIT 1"),
    )[0][0]
        .clone()
        .unwrap();
    let grid_analyst = add_token(
        &f.state,
        &["--name", "zhao", "--role", "analyst", "--scope", &grid],
    );
    let worker = add_token(
        &f.state,
        &[
            "--name", "chen", "--role", "worker", "--worker", &worker_id, "--scope", &grid,
        ],
    );
    let queries = [
        "SELECT count(*) AS n FROM people",
        "SELECT grid_code, count(*) AS n FROM rooms GROUP BY 1 ORDER BY 1",
        "SELECT person_id, id_number, name, phone, birth_date FROM people ORDER BY person_id LIMIT 30",
        "SELECT e.id_number, count(*) AS n FROM access_events e GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
        "SELECT subject_id, rule, grid_code FROM anomalies ORDER BY 1, 2 LIMIT 20",
        // Worked out once per key over every grid and month (`per_key`, `date_trunc_days`).
        "SELECT substr(grid_code, 1, 9) || ' ' || grid_code AS g, count(*) AS n FROM rooms GROUP BY 1 ORDER BY 1",
        "SELECT CAST(date_trunc('month', registered_on) AS DATE) AS m, count(*) AS n FROM people GROUP BY 1 ORDER BY 1",
    ];
    for (token, scope) in [(&f.analyst, &f.street), (&grid_analyst, &grid)] {
        let c = f.connect(token).unwrap();
        for sql in queries {
            let http = f.http(token, sql);
            // Simple protocol (text).
            assert_eq!(f.simple(&c, sql), http, "simple: {sql} for {scope}");
            // Extended protocol, text results (psycopg, prepared).
            let o = Command::new("python3")
                .args([
                    "-c",
                    EXTENDED_TEXT,
                    &format!("postgresql://x:{token}@127.0.0.1:{}/gridlens", f.port()),
                    sql,
                ])
                .output()
                .expect("python3 runs");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let rows: Vec<Vec<Option<String>>> =
                serde_json::from_slice(&o.stdout).expect("rows as JSON");
            assert_eq!(rows, http, "extended text: {sql} for {scope}");
            let st = f.rt.block_on(c.prepare(sql)).unwrap();
            // Extended protocol, binary results (tokio-postgres reads binary): as text.
            let got: Vec<Vec<Option<String>>> =
                f.rt.block_on(c.query(&st, &[]))
                    .unwrap()
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| match r.columns()[i].type_().name() {
                                "int8" => r.get::<_, Option<i64>>(i).map(|v| v.to_string()),
                                "date" => r
                                    .get::<_, Option<chrono::NaiveDate>>(i)
                                    .map(|v| v.to_string()),
                                _ => r.get::<_, Option<String>>(i),
                            })
                            .collect()
                    })
                    .collect();
            assert_eq!(got, http, "binary: {sql} for {scope}");
            // COPY, text and CSV.
            let copied = |opts: &str| -> String {
                let o = Command::new("psql")
                    .arg(f.url("x"))
                    .args(["-X", "-q", "-c", &format!("COPY ({sql}) TO STDOUT {opts}")])
                    .env("PGPASSWORD", token)
                    .output()
                    .expect("psql runs");
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                String::from_utf8_lossy(&o.stdout).into_owned()
            };
            let csv_body = f.server.post(
                "/v1/sql",
                Some(token),
                &serde_json::json!({ "sql": sql, "format": "csv" }),
            );
            assert_eq!(
                copied("WITH (FORMAT csv, HEADER)"),
                csv_body.text(),
                "COPY csv: {sql}"
            );
            let text: Vec<Vec<Option<String>>> = copied("")
                .lines()
                .map(|l| {
                    l.split('\t')
                        .map(|v| (v != "\\N").then(|| v.to_string()))
                        .collect()
                })
                .collect();
            assert_eq!(text, http, "COPY text: {sql} for {scope}");
        }
        // A function worked out per key fails on the first grid it meets: one of the scope's.
        let e =
            f.rt.block_on(c.simple_query(
                "SELECT count(*) FROM rooms WHERE CAST(grid_code || ' x' AS INT) = 1",
            ))
            .unwrap_err();
        let message = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        let named = message
            .split(|ch: char| !ch.is_ascii_digit())
            .find(|t| t.len() >= 9)
            .unwrap_or_else(|| panic!("no grid in {message:?}"));
        assert!(named.starts_with(scope.as_str()), "{message} for {scope}");
        // Nothing of the scope's outside, and masks in every result.
        for r in f.simple(&c, "SELECT DISTINCT grid_code FROM people") {
            assert!(r[0].as_deref().unwrap().starts_with(scope.as_str()));
        }
        for r in f.simple(&c, "SELECT id_number FROM people") {
            let id = r[0].clone().unwrap();
            assert!(id.contains("****"), "unmasked over PostgreSQL: {id}");
        }
    }
    // A leader and a worker: refused on every way in, SQLSTATE 42501.
    for token in [&f.leader, &worker] {
        let c = f.connect(token).unwrap();
        assert_eq!(f.sqlstate(&c, "SELECT count(*) FROM people"), "42501");
        let e =
            f.rt.block_on(c.prepare("SELECT count(*) FROM people WHERE grid_code LIKE $1"))
                .err()
                .and_then(|e| e.code().map(|c| c.code().to_string()));
        assert_eq!(e.as_deref(), Some("42501"));
        assert_eq!(
            f.sqlstate(&c, "COPY (SELECT * FROM people) TO STDOUT"),
            "42501"
        );
    }
}

/// psql's catalog commands (`\dt`, `\d people`, `\df`, `\dn`, `\l`) answer from a
/// `pg_catalog` that lists every table an SQL caller has, for a street token as for the city,
/// with no row counts.
#[test]
fn psql_describes_the_tables() {
    let f = setup("pg-catalog");
    let psql = |token: &str, cmd: &str| {
        let o = Command::new("psql")
            .arg(f.url("li"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-P",
                "pager=off",
                "-c",
                cmd,
            ])
            .env("PGPASSWORD", token)
            .output()
            .expect("psql runs");
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert!(o.status.success(), "{cmd}: {err}");
        assert!(!err.contains("ERROR"), "{cmd}: {err}");
        out
    };
    // The loaded tables are tables (\dt); the engine's (anomalies, grid_kpis, …) are views (\dv).
    let tables: Vec<(String, String)> = f
        .http(
            &f.admin,
            "SELECT table_name, table_type FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
        )
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert!(
        tables
            .iter()
            .any(|(t, k)| t == "people" && k == "BASE TABLE"),
        "{tables:?}"
    );
    assert!(
        tables.iter().any(|(t, k)| t == "anomalies" && k == "VIEW"),
        "{tables:?}"
    );
    for token in [&f.admin, &f.analyst] {
        let (dt, dv) = (psql(token, r"\dt"), psql(token, r"\dv"));
        for (t, kind) in &tables {
            let (out, cmd) = if kind == "VIEW" {
                (&dv, "dv")
            } else {
                (&dt, "dt")
            };
            assert!(
                out.lines()
                    .any(|l| l.split('|').nth(1).map(str::trim) == Some(t)),
                "\\{cmd} lists {t}: {out}"
            );
        }
        assert!(dt.contains("public"), "{dt}");
        // \d people: every column with its PostgreSQL type.
        let out = psql(token, r"\d people");
        let columns = f.http(
            &f.admin,
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = 'people' ORDER BY ordinal_position",
        );
        for c in &columns {
            let name = c[0].clone().unwrap();
            let line = out
                .lines()
                .find(|l| l.split('|').next().map(str::trim) == Some(name.as_str()))
                .unwrap_or_else(|| panic!("\\d people shows {name}: {out}"));
            let ty = line.split('|').nth(1).unwrap().trim().to_string();
            let want = match c[1].as_deref().unwrap() {
                t if t.contains("Utf8") => "text",
                "Date32" => "date",
                "Int64" => "bigint",
                "Int32" => "integer",
                "Int16" | "Int8" => "smallint",
                "Float64" => "double precision",
                "Boolean" => "boolean",
                other if other.starts_with("Timestamp") => "timestamp with time zone",
                other => panic!("{name}: a type the test does not know: {other}"),
            };
            assert_eq!(ty, want, "{name}: {line}");
        }
        for cmd in [r"\df", r"\dn", r"\l", r"\dt people", r"\d rooms", r"\dv"] {
            psql(token, cmd);
        }
    }
    // The catalog holds no row count a street token could read the city's size from.
    let c = f.connect(&f.analyst).unwrap();
    let rows = f.simple(
        &c,
        "SELECT relname, reltuples, relpages FROM pg_catalog.pg_class \
         WHERE relname IN ('people', 'rooms') ORDER BY 1",
    );
    assert_eq!(
        rows,
        vec![
            vec![Some("people".into()), Some("0".into()), Some("1".into())],
            vec![Some("rooms".into()), Some("0".into()), Some("1".into())],
        ]
    );
    // An oid stays the same from one query to the next (psql asks by oid).
    let oid = |c: &Client| {
        f.simple(
            c,
            "SELECT oid FROM pg_catalog.pg_class WHERE relname = 'people'",
        )[0][0]
            .clone()
    };
    let first = oid(&c);
    f.simple(&c, "SELECT count(*) FROM pg_catalog.pg_attribute");
    assert_eq!(oid(&f.connect(&f.admin).unwrap()), first);
}

/// What DBeaver, Metabase and Grafana send when they connect, browse the schema and build a
/// query: each statement answered without an error, and the tables and columns they list are
/// the ones HTTP lists.
#[test]
fn dbeaver_metabase_and_grafana_start_and_browse() {
    let f = setup("pg-clients");
    let c = f.connect(&f.analyst).unwrap();
    let public = f.simple(
        &c,
        "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'public'",
    )[0][0]
        .clone()
        .unwrap();
    let people = f.simple(
        &c,
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
         ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = 'people'",
    )[0][0]
        .clone()
        .unwrap();
    for (client, sql) in CLIENT_STATEMENTS {
        let sql = sql
            .replace("{public}", &public)
            .replace("{people}", &people);
        let r = f.rt.block_on(c.simple_query(&sql));
        assert!(r.is_ok(), "{client}: {sql}\n{:?}", r.err());
    }
    // What they list is what HTTP lists.
    let tables: Vec<Option<String>> = f
        .http(
            &f.analyst,
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
        )
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect();
    let listed = |sql: &str| -> Vec<Option<String>> {
        let mut v: Vec<_> = f
            .simple(&c, sql)
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        listed(
            "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n \
             ON c.relnamespace = n.oid WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v')"
        ),
        tables,
        "Metabase's table list"
    );
    let columns = |rows: Vec<Vec<Option<String>>>| -> Vec<Option<String>> {
        rows.into_iter().map(|mut r| r.remove(0)).collect()
    };
    assert_eq!(
        columns(f.simple(
            &c,
            "SELECT a.attname FROM pg_catalog.pg_attribute a WHERE a.attrelid = (SELECT c.oid \
             FROM pg_catalog.pg_class c WHERE c.relname = 'people') AND a.attnum > 0 \
             ORDER BY a.attnum"
        )),
        columns(f.http(
            &f.analyst,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'people' \
             ORDER BY ordinal_position"
        )),
        "DBeaver's column list"
    );
    assert_eq!(
        f.simple(
            &c,
            "SELECT current_setting('server_version_num')::int / 100"
        )[0][0]
            .as_deref(),
        Some("1600"),
        "Grafana's version check"
    );
    assert!(
        f.simple(&c, "SELECT version()")[0][0]
            .as_deref()
            .is_some_and(|v| v.starts_with("PostgreSQL 16")),
    );
    assert_eq!(
        f.simple(&c, "SELECT current_database(), current_schema()"),
        vec![vec![Some("gridlens".into()), Some("public".into())]]
    );
}

/// Statements DBeaver, Metabase and Grafana send on connecting, browsing and building a
/// query (as their PostgreSQL drivers write them; `{public}` and `{people}` stand for the oids
/// the client has just read).
const CLIENT_STATEMENTS: &[(&str, &str)] = &[
    ("DBeaver", "SET extra_float_digits = 3"),
    (
        "DBeaver",
        "SET application_name = 'DBeaver 24.3.0 - Main <gridlens>'",
    ),
    ("DBeaver", "SELECT current_schema(),session_user"),
    (
        "DBeaver",
        "SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n \
         LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 \
         AND d.classoid='pg_namespace'::regclass ORDER BY nspname",
    ),
    ("DBeaver", "SHOW search_path"),
    (
        "DBeaver",
        "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname='gridlens'",
    ),
    ("DBeaver", "SELECT version()"),
    (
        "DBeaver",
        "SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as \
         partition_expr, pg_catalog.pg_get_partkeydef(c.oid) as partition_key \
         FROM pg_catalog.pg_class c LEFT OUTER JOIN pg_catalog.pg_description d \
         ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass \
         WHERE c.relnamespace={public} AND c.relkind not in ('i','I','c')",
    ),
    (
        "DBeaver",
        "SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,\
         dsc.description,dep.objid FROM pg_catalog.pg_attribute a \
         INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid) \
         LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum) \
         LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid) \
         LEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' \
         and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid \
         WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid={people} \
         ORDER BY a.attnum",
    ),
    (
        "DBeaver",
        "SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) as \
         base_type_name, d.description FROM pg_catalog.pg_type t \
         LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem \
         LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid \
         LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid \
         WHERE t.typname IS NOT NULL AND (c.relkind IS NULL OR c.relkind = 'c') \
         AND (et.typcategory IS NULL OR et.typcategory <> 'C')",
    ),
    ("DBeaver", "SELECT * FROM people LIMIT 200"),
    ("Metabase", "SET extra_float_digits = 2"),
    ("Metabase", "SHOW TRANSACTION ISOLATION LEVEL"),
    (
        "Metabase",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
    ),
    (
        "Metabase",
        "SELECT nspname AS \"TABLE_SCHEM\", current_database() AS \"TABLE_CATALOG\" \
         FROM pg_catalog.pg_namespace WHERE nspname <> 'pg_toast' \
         AND (nspname !~ '^pg_temp_' OR nspname = (pg_catalog.current_schemas(true))[1]) \
         AND (nspname !~ '^pg_toast_temp_' OR nspname = \
         replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_')) \
         ORDER BY \"TABLE_SCHEM\"",
    ),
    (
        "Metabase",
        "SELECT \"n\".\"nspname\" AS \"schema\", \"c\".\"relname\" AS \"name\", \
         CASE \"c\".\"relkind\" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' \
         WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' \
         ELSE NULL END AS \"type\", \"d\".\"description\" AS \"description\" \
         FROM \"pg_catalog\".\"pg_class\" AS \"c\" \
         INNER JOIN \"pg_catalog\".\"pg_namespace\" AS \"n\" ON \"c\".\"relnamespace\" = \"n\".\"oid\" \
         LEFT JOIN \"pg_catalog\".\"pg_description\" AS \"d\" ON (\"c\".\"oid\" = \"d\".\"objoid\") \
         AND (\"d\".\"objsubid\" = 0) AND (\"d\".\"classoid\" = 'pg_class'::regclass) \
         WHERE (\"n\".\"nspname\" !~ '^pg_') AND (\"n\".\"nspname\" <> 'information_schema') \
         AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND (\"n\".\"nspname\" IN ('public')) \
         ORDER BY \"type\" ASC, \"schema\" ASC, \"name\" ASC",
    ),
    (
        "Metabase",
        "SELECT c.column_name AS name, c.data_type AS database_type, \
         c.ordinal_position - 1 AS database_position, c.table_schema AS table_schema, \
         c.table_name AS table_name, c.is_nullable = 'YES' AS nullable \
         FROM information_schema.columns c WHERE c.table_schema = 'public' \
         AND c.table_name = 'people' ORDER BY c.ordinal_position",
    ),
    ("Metabase", "show timezone"),
    (
        "Metabase",
        "SELECT \"public\".\"people\".\"grid_code\" AS \"grid_code\", count(*) AS \"count\" \
         FROM \"public\".\"people\" GROUP BY \"public\".\"people\".\"grid_code\" \
         ORDER BY \"public\".\"people\".\"grid_code\" ASC LIMIT 2000",
    ),
    (
        "Grafana",
        "SELECT current_setting('server_version_num')::int / 100 AS version",
    ),
    (
        "Grafana",
        "SELECT quote_ident(table_name) AS \"table\" FROM information_schema.tables \
         WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog', \
         '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_internal', \
         '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental') \
         AND table_type = 'BASE TABLE' ORDER BY 1",
    ),
    (
        "Grafana",
        "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" \
         FROM information_schema.columns WHERE quote_ident(table_name) = 'people'",
    ),
    (
        "Grafana",
        "SELECT date_trunc('day', ts) AS \"time\", count(*) AS \"entries\" \
         FROM access_events WHERE ts BETWEEN '2026-10-01T00:00:00Z' AND '2026-10-08T00:00:00Z' \
         GROUP BY 1 ORDER BY 1",
    ),
];
