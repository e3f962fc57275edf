//! Browser sessions: a person signs in on the web app with their token once, and the browser
//! holds only a session cookie from then on — the token never lands in a URL, in browser
//! storage or in a page.
//!
//! - `POST /v1/session {"token": "…"}` checks the token as every endpoint does
//!   ([`Caller::of_token`]) and answers with `Set-Cookie: gridlens_session=…; HttpOnly;
//!   SameSite=Strict; Path=/; Max-Age=…` and, in the body, who the caller is and the session's
//!   CSRF token.
//! - `GET /v1/session`: who the caller is (and the CSRF token again, for a reloaded page).
//! - `DELETE /v1/session`: signs out (the session ends on the server, the cookie is cleared).
//!
//! A request carrying the cookie is the session's token's request: the token is looked up by
//! id on every request, so revoking it ends its sessions at once. Every request but `GET` /
//! `HEAD` made with the cookie must carry the session's CSRF token in `X-CSRF-Token` (a page of
//! another site cannot read it), or it is refused with 403. A session ends after `ttl` from
//! sign-in, or `idle` without a request, whichever comes first. Sessions are held in memory
//! under the SHA-256 of their id: a restart signs everyone out.

use super::App;
use super::api::{ApiJson, Caller};
use super::observe::ApiError;
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "gridlens_session";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// At most this many sessions are held; signing in past it ends the oldest.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    token_id: String,
    csrf: String,
    started: Instant,
    seen: Instant,
}

/// The sessions of the server.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    idle: Duration,
    secure: bool,
}

/// A session found for a request.
#[derive(Debug, Clone)]
pub struct Found {
    /// The token it was opened with.
    pub token_id: String,
    /// Its CSRF token.
    pub csrf: String,
}

impl Sessions {
    /// Sessions that last `ttl` from sign-in and end after `idle` without a request; their
    /// cookie is `Secure` when the server speaks HTTPS.
    pub fn new(ttl: Duration, idle: Duration, secure: bool) -> Sessions {
        Sessions {
            map: Mutex::default(),
            ttl,
            idle,
            secure,
        }
    }

    /// Opens a session for a token: its id (for the cookie) and its CSRF token.
    pub fn open(&self, token_id: &str) -> Result<(String, String), ApiError> {
        let (id, csrf) = (random()?, random()?);
        let now = Instant::now();
        let mut map = self.map.lock().map_err(ApiError::internal)?;
        map.retain(|_, s| self.alive(s, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            digest(&id),
            Session {
                token_id: token_id.to_string(),
                csrf: csrf.clone(),
                started: now,
                seen: now,
            },
        );
        Ok((id, csrf))
    }

    /// The live session with an id (its idle clock restarted), if there is one.
    pub fn find(&self, id: &str) -> Option<Found> {
        let now = Instant::now();
        let mut map = self.map.lock().ok()?;
        let key = digest(id);
        let s = map.get_mut(&key)?;
        if !self.alive(s, now) {
            map.remove(&key);
            return None;
        }
        s.seen = now;
        Some(Found {
            token_id: s.token_id.clone(),
            csrf: s.csrf.clone(),
        })
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&digest(id));
        }
    }

    fn alive(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.started) < self.ttl && now.duration_since(s.seen) < self.idle
    }

    /// The `Set-Cookie` value that gives a browser a session.
    fn cookie(&self, id: &str) -> String {
        cookie::Cookie::build((COOKIE_NAME, id.to_string()))
            .http_only(true)
            .secure(self.secure)
            .same_site(cookie::SameSite::Strict)
            .path("/")
            .max_age(cookie::time::Duration::seconds(self.ttl.as_secs() as i64))
            .build()
            .to_string()
    }

    /// The `Set-Cookie` value that clears it.
    fn cleared(&self) -> String {
        cookie::Cookie::build((COOKIE_NAME, ""))
            .http_only(true)
            .secure(self.secure)
            .same_site(cookie::SameSite::Strict)
            .path("/")
            .max_age(cookie::time::Duration::ZERO)
            .build()
            .to_string()
    }
}

/// The session id a request's cookies carry, if any.
pub fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE_NAME)
        .map(|c| c.value().to_string())
}

/// The token id of a request made with a session cookie: 401 if the session has ended, 403 if
/// a request that changes something lacks the session's CSRF token.
pub fn token_of_session(app: &App, parts: &Parts, id: &str) -> Result<String, ApiError> {
    let found = app.sessions.find(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "your session has ended; sign in again",
        )
    })?;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !sent.is_some_and(|s| constant_eq(s.as_bytes(), found.csrf.as_bytes())) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "this request needs the session's X-CSRF-Token header (a page of another site \
                 cannot send it)",
            ));
        }
    }
    Ok(found.token_id)
}

/// The body of `POST /v1/session`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    token: String,
}

/// `POST /v1/session`: signs in with a token.
pub async fn sign_in(
    State(app): State<Arc<App>>,
    audit: Option<axum::Extension<Arc<super::observe::Audit>>>,
    ApiJson(req): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let caller = Caller::of_token(&app, req.token.trim(), audit.as_deref().map(|a| a.as_ref()))?;
    let (id, csrf) = app.sessions.open(&caller.token_id)?;
    let mut resp = axum::Json(who(&app, &caller, Some(&csrf))).into_response();
    set_cookie(&mut resp, &app.sessions.cookie(&id))?;
    Ok(resp)
}

/// `GET /v1/session`: who the caller is.
pub async fn current(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let csrf = cookie_of(&headers)
        .and_then(|id| app.sessions.find(&id))
        .map(|f| f.csrf);
    Ok(axum::Json(who(&app, &caller, csrf.as_deref())).into_response())
}

/// `DELETE /v1/session`: signs out.
pub async fn sign_out(
    State(app): State<Arc<App>>,
    // Signed in, and for a cookie the CSRF check: another site cannot sign a person out.
    _caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = cookie_of(&headers) {
        app.sessions.close(&id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut resp, &app.sessions.cleared())?;
    Ok(resp)
}

/// What the web app is told about its caller.
fn who(app: &App, caller: &Caller, csrf: Option<&str>) -> serde_json::Value {
    let served = app.served();
    serde_json::json!({
        "token_id": caller.token_id,
        "name": caller.name,
        "role": caller.role.as_str(),
        "scope": caller.scope.label(),
        "level": caller.scope.level().name(),
        "pii": caller.scope.pii(),
        "worker_id": caller.worker_id,
        "csrf": csrf,
        "city": served.name,
        "as_of": gridlens_engine::time::format_timestamp(served.store.as_of),
    })
}

fn set_cookie(resp: &mut Response, value: &str) -> Result<(), ApiError> {
    let v = HeaderValue::from_str(value).map_err(ApiError::internal)?;
    resp.headers_mut().append(SET_COOKIE, v);
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(())
}

fn random() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(ApiError::internal)?;
    Ok(hex::encode(b))
}

fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
