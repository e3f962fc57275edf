//! The PostgreSQL endpoint: psql, DBeaver, Metabase, Grafana and Python reach the same SQL as
//! `POST /v1/sql`.
//!
//! The wire protocol is [`pgwire`]'s; results are encoded from Arrow by [`arrow_pg`]. Nothing
//! here decides what a caller may see: a connection signs in with a person's token as its
//! password ([`session`]), and every statement it sends runs through [`App::engine`] for that
//! caller — the same scope, masks, role check, query slots, time and memory limits, row limit
//! and audit line as the HTTP API ([`query`]). The token is checked again before each
//! statement, so a revoked token stops working on open connections too.

pub mod query;
pub mod session;

use super::App;
use super::observe::ApiError;
use anyhow::{Context, Result};
use gridlens_engine::sql::control::QueryControl;
use pgwire::api::PgWireServerHandlers;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::cancel::CancelRequest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What a cancel request names a connection by: its process id and secret key.
pub type ConnectionKey = (i32, Vec<u8>);

/// The queries running on each connection, by the key a cancel request names them with.
#[derive(Debug, Default)]
pub struct Running(Mutex<HashMap<ConnectionKey, Arc<QueryControl>>>);

impl Running {
    /// Records the query a connection runs now (replacing its last one).
    pub fn start(&self, key: ConnectionKey, control: Arc<QueryControl>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, control);
        }
    }

    /// Forgets a connection's query once it has ended.
    pub fn end(&self, key: &ConnectionKey, control: &Arc<QueryControl>) {
        if let Ok(mut m) = self.0.lock()
            && m.get(key).is_some_and(|c| Arc::ptr_eq(c, control))
        {
            m.remove(key);
        }
    }

    fn cancel(&self, key: &ConnectionKey) {
        let control = self.0.lock().ok().and_then(|m| m.get(key).cloned());
        if let Some(c) = control {
            c.stop(gridlens_engine::sql::control::Stop::Cancelled);
        }
    }
}

/// Everything a PostgreSQL connection is served by.
pub struct Handlers {
    startup: Arc<session::TokenStartup>,
    queries: Arc<query::Queries>,
    cancels: Arc<Cancels>,
}

impl Handlers {
    /// Handlers over the server's shared state.
    pub fn new(app: Arc<App>) -> Handlers {
        let running = Arc::new(Running::default());
        Handlers {
            startup: Arc::new(session::TokenStartup::new(app.clone())),
            queries: Arc::new(query::Queries::new(app, running.clone())),
            cancels: Arc::new(Cancels(running)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancels.clone()
    }
}

/// Cancel requests: they stop the query of the connection they name, as a timeout would.
pub struct Cancels(Arc<Running>);

#[async_trait::async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, r: CancelRequest) {
        self.0.cancel(&(r.pid, r.secret_key.to_bytes().to_vec()));
    }
}

/// Binds the PostgreSQL address (a clear error when it is taken).
pub async fn bind(listen: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--pg-listen {listen}: cannot listen there"))
}

/// Answers PostgreSQL clients on a bound listener until the runtime ends.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) {
    let handlers = Arc::new(Handlers::new(app));
    loop {
        let (socket, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("PostgreSQL endpoint: accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let (handlers, tls) = (handlers.clone(), tls.clone());
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                tracing::debug!("PostgreSQL connection from {peer}: {e}");
            }
        });
    }
}

/// An error as a PostgreSQL client reads it: severity, SQLSTATE and the API's sentence.
pub fn pg_error(e: &ApiError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        sqlstate(e).into(),
        e.message.clone(),
    )))
}

/// The SQLSTATE of an API error.
pub fn sqlstate(e: &ApiError) -> &'static str {
    match e.code {
        "query_error" => query_sqlstate(&e.message),
        "forbidden" => "42501",
        "unauthorized" => "28P01",
        "query_too_complex" => "54001",
        "memory_limit" => "53200",
        "busy" => "53300",
        "too_many_requests" => "53300",
        "too_many_rows" => "54000",
        "timeout" | "cancelled" => "57014",
        "bad_request" => "22023",
        "not_found" => "42704",
        _ => "XX000",
    }
}

/// The SQLSTATE of a query the engine refused, from what its sentence says.
fn query_sqlstate(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.starts_with("the sql does not parse") {
        "42601"
    } else if m.contains("table") && m.contains("not found") {
        "42P01"
    } else if m.contains("no field named") || m.contains("column") && m.contains("not found") {
        "42703"
    } else if m.contains("invalid function") || m.contains("function") && m.contains("not found") {
        "42883"
    } else if m.contains("cannot be cast") || m.contains("cast") && m.contains("error") {
        "22P02"
    } else if m.contains("division by zero") || m.contains("divide by zero") {
        "22012"
    } else {
        "42000"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates() {
        let q = |m: &str| {
            sqlstate(&ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "query_error",
                m,
            ))
        };
        assert_eq!(
            q("the SQL does not parse: Expected: an expression, found: EOF"),
            "42601"
        );
        assert_eq!(q("table 'datafusion.public.nosuch' not found"), "42P01");
        assert_eq!(q("Schema error: No field named nope."), "42703");
        assert_eq!(q("Invalid function 'nosuch'."), "42883");
        assert_eq!(q("Divide by zero error"), "22012");
        let e = |code: &'static str| {
            sqlstate(&ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                code,
                "x",
            ))
        };
        assert_eq!(e("forbidden"), "42501");
        assert_eq!(e("timeout"), "57014");
        assert_eq!(e("cancelled"), "57014");
        assert_eq!(e("memory_limit"), "53200");
        assert_eq!(e("internal"), "XX000");
    }
}
