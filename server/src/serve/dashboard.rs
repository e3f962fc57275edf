//! `GET /v1/dashboard?code=&as_of=`: what the leadership dashboard draws beside the KPI
//! endpoints' own numbers — the map of the scope (one point per grid, at the mean of its
//! buildings' coordinates, with its score and anomaly rate), anomalies by rule, the overdue
//! cases, the names of the level below and the way back up.
//!
//! The server aggregates, so a browser never receives 600,000 buildings: a city's map is one
//! point per grid. Answers hold no personal data and are the same for every caller who may see
//! the code, so they are kept per (`as_of`, code) for the dataset served; the caller's scope
//! is checked before one is looked up (a code outside it is 403, as on the KPI endpoints).

use super::App;
use super::api::Caller;
use super::auth::Role;
use super::observe::ApiError;
use arrow::array::{Array, Float64Array, StringArray};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use gridlens_engine::contract::TableId;
use gridlens_engine::hierarchy::{self, Level};
use gridlens_engine::store::{NONE, Store};
use gridlens_engine::time;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Overdue cases listed at most (the oldest deadlines first); the total is always given.
const OVERDUE_LISTED: usize = 50;
/// Answers kept at most (per dataset served).
const KEPT: usize = 256;

/// The dashboards made for the dataset served.
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The store the entries are of (its address); another one empties the cache.
    store: usize,
    facts: Option<Arc<Facts>>,
    answers: HashMap<(i64, String), Arc<Vec<u8>>>,
}

/// What does not change with `as_of`: the names of codes and where each grid lies.
#[derive(Debug)]
struct Facts {
    names: HashMap<String, String>,
    /// Per grid row: the mean (lon, lat) of its buildings, if any has coordinates.
    centres: Vec<Option<(f64, f64)>>,
}

impl Facts {
    fn of(store: &Store) -> Facts {
        let grids = store.table(TableId::Grids);
        let mut names = HashMap::new();
        for (code_col, name_col) in [
            ("grid_code", "grid_name"),
            ("community_code", "community_name"),
            ("street_code", "street_name"),
            ("district_code", "district_name"),
        ] {
            if let (Ok(codes), Ok(ns)) = (grids.strings(code_col), grids.strings(name_col)) {
                for i in 0..codes.len() {
                    if !ns.is_null(i) && !codes.is_null(i) {
                        names
                            .entry(codes.value(i).to_string())
                            .or_insert_with(|| ns.value(i).to_string());
                    }
                }
            }
        }
        let mut sums = vec![(0.0f64, 0.0f64, 0u32); grids.rows];
        let b = store.table(TableId::Buildings);
        if let (Ok(g), Ok(lon), Ok(lat)) = (b.keys("grid_code"), b.floats("lon"), b.floats("lat")) {
            for i in 0..g.len() {
                if g[i] != NONE && !lon.is_null(i) && !lat.is_null(i) {
                    let s = &mut sums[g[i] as usize];
                    s.0 += lon.value(i);
                    s.1 += lat.value(i);
                    s.2 += 1;
                }
            }
        }
        let centres = sums
            .into_iter()
            .map(|(x, y, n)| (n > 0).then(|| (x / n as f64, y / n as f64)))
            .collect();
        Facts { names, centres }
    }
}

/// `GET /v1/dashboard?code=&as_of=` (admin, analyst, leader).
pub async fn dashboard(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Analyst, Role::Leader], "the dashboard")?;
    let served = app.served();
    let as_of = super::api::parse_instant("as_of", q.get("as_of").filter(|s| !s.is_empty()))?
        .unwrap_or(served.store.as_of);
    let asked = q
        .get("code")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty() && *c != "city");
    if let Some(c) = asked
        && !hierarchy::is_known(&served.store, c)
    {
        return Err(ApiError::bad_request(format!(
            "code {c} is not a district, street, community or grid of this city"
        )));
    }
    let code = caller.scope.narrow(asked).map_err(ApiError::from_engine)?;
    let key = (as_of, code.clone().unwrap_or_else(|| "city".into()));
    let store_addr = Arc::as_ptr(&served.store) as usize;
    let facts = {
        let mut c = app.dashboards.inner.lock().map_err(ApiError::internal)?;
        if c.store != store_addr {
            *c = Inner {
                store: store_addr,
                ..Inner::default()
            };
        }
        if let Some(a) = c.answers.get(&key) {
            return Ok(answer(a.as_ref().clone()));
        }
        c.facts.clone()
    };
    let scope_code = caller.scope.code().map(str::to_string);
    let made = tokio::task::spawn_blocking(move || {
        let facts = facts.unwrap_or_else(|| Arc::new(Facts::of(&served.store)));
        let body = make(
            &served,
            &facts,
            as_of,
            code.as_deref(),
            scope_code.as_deref(),
        )?;
        Ok::<_, ApiError>((
            facts,
            Arc::new(serde_json::to_vec(&body).map_err(ApiError::internal)?),
        ))
    })
    .await
    .map_err(ApiError::internal)??;
    let (facts, body) = made;
    if let Ok(mut c) = app.dashboards.inner.lock()
        && c.store == store_addr
    {
        if c.answers.len() >= KEPT {
            c.answers.clear();
        }
        c.facts = Some(facts);
        c.answers.insert(key, body.clone());
    }
    Ok(answer(body.as_ref().clone()))
}

fn answer(body: Vec<u8>) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The dashboard of one code (`None`: the city), for a caller whose scope is `top`.
fn make(
    served: &super::Served,
    facts: &Facts,
    as_of: i64,
    code: Option<&str>,
    top: Option<&str>,
) -> Result<Value, ApiError> {
    let store = &served.store;
    let level = code.and_then(Level::of_code).unwrap_or(Level::City);
    let child = match level {
        Level::City => Some(Level::District),
        Level::District => Some(Level::Street),
        Level::Street => Some(Level::Community),
        Level::Community => Some(Level::Grid),
        Level::Grid => None,
    };
    let within = code.map(|c| hierarchy::grids_within(store, c));
    let inside = |g: u32| within.as_ref().is_none_or(|w| w.contains(g));
    let name = |c: &str| facts.names.get(c).cloned();

    // The way back up, from the caller's own scope down to this code.
    let mut path = Vec::new();
    if top.is_none() {
        path.push(json!({"code": "city", "level": "city", "name": served.name}));
    }
    if let Some(c) = code {
        for l in [
            Level::District,
            Level::Street,
            Level::Community,
            Level::Grid,
        ] {
            let Some(n) = l.code_len().filter(|&n| n <= c.len()) else {
                continue;
            };
            let part = &c[..n];
            if top.is_none_or(|t| part.len() >= t.len()) {
                path.push(json!({"code": part, "level": l.name(), "name": name(part)}));
            }
        }
    }

    // The names of the level below.
    let mut names = BTreeMap::new();
    if let Some(cl) = child {
        for g in 0..store.table(TableId::Grids).rows as u32 {
            if inside(g) {
                let c = hierarchy::code_at(store, g, cl);
                if let Some(n) = name(&c) {
                    names.insert(c, n);
                }
            }
        }
    }

    // The map: one point per grid with coordinates.
    let kpis = served
        .city
        .grid_kpis(as_of, Level::Grid, code)
        .map_err(ApiError::from_engine)?;
    let col = |n: &str| kpis.column_by_name(n).cloned();
    let codes = col("code").and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned());
    let score = col("grid_score").and_then(|a| a.as_any().downcast_ref::<Float64Array>().cloned());
    let rate =
        col("anomalies_per_1000").and_then(|a| a.as_any().downcast_ref::<Float64Array>().cloned());
    let (Some(codes), Some(score), Some(rate)) = (codes, score, rate) else {
        return Err(ApiError::internal(
            "grid KPIs without code, grid_score or anomalies_per_1000",
        ));
    };
    let row_of: HashMap<&str, usize> = (0..codes.len()).map(|i| (codes.value(i), i)).collect();
    let mut map = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for g in 0..store.table(TableId::Grids).rows as u32 {
        let (Some((lon, lat)), true) = (facts.centres[g as usize], inside(g)) else {
            continue;
        };
        let c = hierarchy::grid_code(store, g);
        let Some(&i) = row_of.get(c) else { continue };
        map.0.push(c.to_string());
        map.1.push(name(c));
        map.2.push(round(lon, 5));
        map.3.push(round(lat, 5));
        map.4
            .push((!score.is_null(i)).then(|| round(score.value(i), 2)));
        map.5
            .push((!rate.is_null(i)).then(|| round(rate.value(i), 3)));
    }

    // Anomalies by rule, of the sweep the grid KPIs count.
    let sweep = served
        .city
        .sweep(as_of, &[])
        .map_err(ApiError::from_engine)?;
    let mut by_rule: BTreeMap<&str, usize> =
        sweep.runs.iter().map(|r| (r.rule.code(), 0)).collect();
    for a in &sweep.anomalies {
        if a.grid != NONE && inside(a.grid) {
            *by_rule.entry(a.rule.code()).or_default() += 1;
        }
    }

    // Overdue cases: stages past their deadline and still open.
    let overdue = overdue(served, as_of, within.as_ref())?;

    Ok(json!({
        "code": code.unwrap_or("city"),
        "level": level.name(),
        "name": code.map_or_else(|| Some(served.name.clone()), name),
        "child_level": child.map(Level::name),
        "as_of": time::format_timestamp(as_of),
        "path": path,
        "names": names,
        "map": {
            "grid_code": map.0, "name": map.1, "lon": map.2, "lat": map.3,
            "grid_score": map.4, "anomalies_per_1000": map.5,
        },
        "anomalies_by_rule": by_rule.into_iter()
            .map(|(rule, count)| json!({"rule": rule, "count": count}))
            .collect::<Vec<_>>(),
        "overdue": overdue,
    }))
}

/// The overdue stages inside some grids: how many, and the oldest deadlines first.
fn overdue(
    served: &super::Served,
    as_of: i64,
    within: Option<&roaring::RoaringBitmap>,
) -> Result<Value, ApiError> {
    let (total, first) = served
        .city
        .overdue(as_of, within, OVERDUE_LISTED)
        .map_err(ApiError::from_engine)?;
    let t = served.store.table(TableId::Incidents);
    let ids = t.strings("incident_id").map_err(ApiError::from_engine)?;
    let grids = t.keys("grid_code").map_err(ApiError::from_engine)?;
    let cases: Vec<Value> = first
        .into_iter()
        .map(|(i, stage, deadline)| {
            let g = grids[i];
            json!({
                "incident_id": ids.value(i),
                "grid_code": (g != NONE).then(|| hierarchy::grid_code(&served.store, g)),
                "stage": stage.name(),
                "deadline": (deadline != gridlens_engine::sla::NO_TIME)
                    .then(|| time::format_timestamp(deadline)),
            })
        })
        .collect();
    Ok(json!({"total": total, "cases": cases}))
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}
