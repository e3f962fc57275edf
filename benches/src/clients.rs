//! Concurrent HTTP clients for the benches that load a running `gridlens serve`
//! (`http-load`, `runaway`): one thread and one keep-alive connection per client, each sending
//! requests until a deadline; latencies of the good answers and the count of the others.

use serde_json::json;
use std::time::{Duration, Instant};

/// An HTTP agent that returns error statuses as answers (they are counted, not raised).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// Runs one client per item of `clients` for `seconds`; each sends `request` again and again
/// (true when the answer was good). Returns the seconds of each good request and the count of
/// the others.
pub fn run<T: Sync>(
    clients: &[T],
    seconds: f64,
    request: impl Fn(&ureq::Agent, &T) -> bool + Sync,
) -> (Vec<f64>, usize) {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let per: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .map(|c| {
                let request = &request;
                s.spawn(move || {
                    let a = agent();
                    let (mut lat, mut bad) = (Vec::new(), 0);
                    while Instant::now() < until {
                        let t = Instant::now();
                        if request(&a, c) {
                            lat.push(t.elapsed().as_secs_f64());
                        } else {
                            bad += 1;
                        }
                    }
                    (lat, bad)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    (
        per.iter().flat_map(|p| p.0.iter().copied()).collect(),
        per.iter().map(|p| p.1).sum(),
    )
}

/// The count and p50 / p90 / p99 / max (ms) of some latencies in seconds.
pub fn percentiles(mut lat: Vec<f64>) -> serde_json::Value {
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
            * 1e3
    };
    json!({"requests": lat.len(), "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
           "max_ms": pct(1.0)})
}
