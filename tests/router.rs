//! The API's router on an `App`, without a socket (`tower::ServiceExt::oneshot`, as axum's
//! `examples/testing`): the same answers as the real server for health, the caller's scope,
//! roles, and a shared sweep. `tests/api.rs` and `tests/attacks.rs` drive a real port.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::server::state_dir;
use gridlens::dataset::DataArgs;
use gridlens::serve::auth::{NewToken, Role, TokenFile};
use gridlens::serve::{App, Config, router};
use gridlens_datasets::OutputFormat;
use gridlens_engine::scope::Scope;
use std::sync::Arc;
use tower::ServiceExt;

struct Harness {
    app: Arc<App>,
    rt: tokio::runtime::Runtime,
    _query_rt: tokio::runtime::Runtime,
}

impl Harness {
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("Content-Type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.rt.block_on(async {
            let resp = router(self.app.clone()).oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 30)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        })
    }
}

#[test]
fn the_router_answers_without_a_socket() {
    let data = common::city(OutputFormat::Parquet, false);
    let state = state_dir("router");
    let mut config = Config::new(
        DataArgs {
            data: Some(data.clone()),
            encoding: "auto".into(),
        },
        state.clone(),
    );
    config.query_timeout = std::time::Duration::from_secs(10);
    // Tokens, made with the same file the command line writes.
    let mut file = TokenFile::load(&config.tokens).unwrap();
    let mut issue = |role: Role, scope: Scope| {
        let (t, _) = file
            .issue(
                NewToken {
                    name: "t".into(),
                    role,
                    scope,
                    worker_id: None,
                },
                "2026-11-29T00:00:00+08:00",
            )
            .unwrap();
        t
    };
    let store = gridlens_engine::load::load(&data, &Default::default()).unwrap();
    let full = gridlens_engine::sql::SqlEngine::new(Arc::new(store));
    let street = common::text(
        &full,
        "SELECT substr(grid_code, 1, 9) FROM people GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    );
    let admin = issue(Role::Admin, Scope::full());
    let analyst = issue(Role::Analyst, Scope::parse(&street, false).unwrap());
    let leader = issue(Role::Leader, Scope::parse(&street, false).unwrap());
    file.save(&config.tokens).unwrap();

    let query_rt = gridlens_engine::sql::query_runtime(Some(2)).unwrap();
    let (app, made) = App::open(&config, query_rt.handle().clone()).unwrap();
    assert!(made.is_none(), "an admin token exists: none is made");
    let h = Harness {
        app: Arc::new(app),
        rt: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
        _query_rt: query_rt,
    };
    let (s, body) = h.call("GET", "/v1/health", None, None);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let sql = |token: &str, q: &str| {
        h.call(
            "POST",
            "/v1/sql",
            Some(token),
            Some(serde_json::json!({"sql": q})),
        )
    };
    assert_eq!(sql("glt_nobody", "SELECT 1").0, StatusCode::UNAUTHORIZED);
    let (s, body) = sql(&analyst, "SELECT count(*) AS n FROM people");
    assert_eq!(s, StatusCode::OK, "{body}");
    let in_street = common::count(
        &full,
        &format!("SELECT count(*) FROM people WHERE grid_code LIKE '{street}%'"),
    );
    assert_eq!(body["rows"][0]["n"].as_i64(), Some(in_street));
    assert_eq!(sql(&leader, "SELECT 1").0, StatusCode::FORBIDDEN);
    let sweep = serde_json::json!({"rules": ["R07"]});
    assert_eq!(
        h.call("POST", "/v1/sweeps", Some(&analyst), Some(sweep.clone()))
            .0,
        StatusCode::FORBIDDEN
    );
    let (s, body) = h.call("POST", "/v1/sweeps", Some(&admin), Some(sweep));
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // Every one of those requests is in the audit log.
    let audit = std::fs::read_to_string(&config.audit).unwrap();
    assert_eq!(audit.lines().count(), 6, "{audit}");
}
