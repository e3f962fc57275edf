//! The real `gridlens serve` on a loopback port, and a real HTTP client for it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The PostgreSQL endpoint's port, when it has one.
    pub pg_port: Option<u16>,
    /// What it printed before it was ready.
    pub printed: Vec<String>,
    agent: ureq::Agent,
}

/// An answer: status, content type and body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// Every header, names in lower case, in order.
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The values of a header (name in lower case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The error code of an error answer.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", self.text()))
            .to_string()
    }
}

/// A server on the test city (Parquet) with a fresh state folder and an admin token (with
/// `pii`), started with `extra` arguments: the server, the state folder, the admin token and
/// the city's folder.
pub fn with_admin(name: &str, extra: &[&str]) -> (Server, PathBuf, String, PathBuf) {
    let data = super::city(gridlens_datasets::OutputFormat::Parquet, false);
    let state = state_dir(name);
    let admin = add_token(&state, &["--name", "ada", "--role", "admin", "--pii"]);
    let mut args = vec![
        "--data",
        data.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (Server::start(&args), state, admin, data)
}

/// Issues a token with `gridlens token add` and returns it. Without `--scope`, the token is
/// for the whole city; a code scope is checked against the test city unless `--data` is given.
pub fn add_token(state: &Path, args: &[&str]) -> String {
    let mut all = vec!["token", "add", "--state", state.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    if !args.contains(&"--scope") {
        all.extend_from_slice(&["--scope", "city"]);
    }
    let city = super::city(gridlens_datasets::OutputFormat::Parquet, false);
    let city = city.to_str().expect("utf-8").to_string();
    if !args.contains(&"--data") {
        all.extend_from_slice(&["--data", &city]);
    }
    let o = super::gridlens(&all);
    assert!(
        o.status.success(),
        "token add failed: {}",
        super::stderr(&o)
    );
    let t = super::stdout(&o).trim().to_string();
    assert!(t.starts_with("glt_"), "a token: {t}");
    t
}

/// The id of the token issued to `name` (as `gridlens token list` shows it, which never shows
/// the tokens themselves).
pub fn token_id(state: &Path, name: &str) -> String {
    let list = super::gridlens(&["token", "list", "--state", state.to_str().expect("utf-8")]);
    let out = super::stdout(&list);
    out.lines()
        .find(|l| l.contains(&format!(" {name} ")))
        .unwrap_or_else(|| panic!("no token of {name} in {out}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

impl Server {
    /// Starts `gridlens serve` with the given arguments (plus `--listen 127.0.0.1:0`, and
    /// `--pg-listen 127.0.0.1:0` unless they name one) and waits until it listens.
    pub fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridlens"));
        cmd.arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"]);
        if !args.contains(&"--pg-listen") {
            cmd.args(["--pg-listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gridlens serve starts");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let mut printed = Vec::new();
        let mut pg_port = None;
        let url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(300))
                .expect("the server prints its address");
            printed.push(line.clone());
            if let Some(rest) = line.split("postgresql://").nth(1) {
                pg_port = rest
                    .split('/')
                    .next()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse().ok());
            }
            if let Some(i) = line.find(" on http") {
                break line[i + 4..].trim().to_string();
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .build()
            .into();
        Server {
            child,
            url,
            pg_port,
            printed,
            agent,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn answer(mut r: ureq::http::Response<ureq::Body>) -> Answer {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let body = r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("the body reads");
        Answer {
            status,
            content_type,
            body,
            headers,
        }
    }

    /// Any request: a method, headers, and a body (with its content type) or none.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Answer {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = match body {
            Some((ct, b)) => self
                .agent
                .run(req.header("content-type", ct).body(b.to_vec()).unwrap()),
            None => self.agent.run(req.body(()).unwrap()),
        };
        Self::answer(r.expect("the request is answered"))
    }

    /// GET with an optional token.
    pub fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let call = || {
            let mut req = self.agent.get(format!("{}{path}", self.url));
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            req.call()
        };
        // A GET may be retried once, as HTTP clients do, when the pooled connection it went out
        // on was closed by the server after an earlier answer (a refusal sent before its body
        // was read); a server that is down fails the second time too.
        let r = call().or_else(|_| call());
        Self::answer(r.expect("the request is answered"))
    }

    /// POST a JSON value with an optional token.
    pub fn post(&self, path: &str, token: Option<&str>, body: &serde_json::Value) -> Answer {
        self.post_raw(path, token, "application/json", body.to_string().as_bytes())
    }

    /// POST raw bytes with a content type.
    pub fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Answer {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Self::answer(req.send(body).expect("the request is answered"))
    }

    /// POST /v1/sql without any Authorization header.
    pub fn sql_without_token(&self) -> Answer {
        self.post("/v1/sql", None, &serde_json::json!({ "sql": "SELECT 1" }))
    }

    /// Runs SQL (JSON answer).
    pub fn sql(&self, token: &str, sql: &str) -> Answer {
        self.post("/v1/sql", Some(token), &serde_json::json!({ "sql": sql }))
    }

    /// Runs SQL and returns its rows (panics unless 200).
    pub fn rows(&self, token: &str, sql: &str) -> Vec<serde_json::Value> {
        let a = self.sql(token, sql);
        assert_eq!(a.status, 200, "{sql}: {}", a.text());
        a.json()["rows"].as_array().cloned().expect("rows")
    }

    /// Sends a signal with `kill`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
    }

    /// Waits for the process to end, returning whether it exited successfully.
    pub fn wait(mut self) -> bool {
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh state folder.
pub fn state_dir(name: &str) -> PathBuf {
    let d = super::scratch(&format!("state-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("state folder");
    d
}
