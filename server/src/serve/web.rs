//! The web app's files (`server/web/`), embedded in the binary: `/` is the app, `/assets/…` its
//! scripts, styles and the charting library (Apache ECharts, shipped inside: a city's network
//! is closed). Every page goes out with a content security policy that lets it load and call
//! nothing but this server, and may not be framed by another site.

use super::observe::ApiError;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Files;

/// The policy every page and file is served under.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /` and `GET /assets/{path}`: the app's files.
pub async fn page(uri: Uri) -> Result<Response, ApiError> {
    let path = uri.path().trim_start_matches('/');
    let name = match path {
        "" => "index.html",
        p => p.strip_prefix("assets/").unwrap_or(p),
    };
    let Some(file) = Files::get(name).filter(|_| !name.contains("..")) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no file {path} in the web app"),
        ));
    };
    let mime = file.metadata.mimetype();
    let mut resp = file.data.into_owned().into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(
            &if mime.starts_with("text/") || mime.ends_with("javascript") {
                format!("{mime}; charset=utf-8")
            } else {
                mime.to_string()
            },
        )
        .map_err(ApiError::internal)?,
    );
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // The app's files change with the binary: the page is always asked again, the rest kept
    // for a day.
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(if name == "index.html" {
            "no-cache"
        } else {
            "max-age=86400"
        }),
    );
    Ok(resp)
}
