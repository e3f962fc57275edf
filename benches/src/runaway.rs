//! `gridlens-bench runaway`: what a runaway query does to everyone else, measured against a
//! running `gridlens serve` (spec/performance.md: small queries of other callers keep p99 ≤ 100
//! ms while a runaway is being stopped; the runaway's CPU is released ≤ 1 s after its limit).
//!
//! 1. The runaway alone: its answer (408 at the server's `--query-timeout`), and how long after
//!    that answer the server's CPU use (from `/proc/PID/stat`) falls back to idle.
//! 2. Small queries alone: `clients` threads, each with its own token, for `seconds`.
//! 3. The same small queries while one more client sends the runaway again and again.

use crate::clients::{self, agent, percentiles};
use anyhow::{Context, Result};
use serde_json::json;
use std::time::{Duration, Instant};

/// What to run.
pub struct Runaway {
    /// e.g. http://127.0.0.1:8080
    pub url: String,
    /// The server's process id (its CPU is read from /proc).
    pub pid: u32,
    /// The token of the runaway query.
    pub runaway_token: String,
    /// The tokens of the small queries, one per client.
    pub small_tokens: Vec<String>,
    /// The runaway query.
    pub runaway_sql: String,
    /// The small query.
    pub small_sql: String,
    /// Seconds each phase of small queries lasts.
    pub seconds: f64,
}

/// CPU time of a process so far, in seconds (user + system).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    Ok(ticks / 100.0)
}

/// Posts one query; its status and seconds.
fn post(agent: &ureq::Agent, url: &str, token: &str, sql: &str) -> (u16, f64) {
    let t = Instant::now();
    let body = json!({"sql": sql}).to_string();
    let status = match agent
        .post(format!("{url}/v1/sql"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
    {
        Ok(mut r) => {
            let s = r.status().as_u16();
            let _ = r.body_mut().read_to_vec();
            s
        }
        Err(_) => 0,
    };
    (status, t.elapsed().as_secs_f64())
}

/// The small queries of every client for `seconds`; latencies of the 200s and the count of
/// other answers.
fn small_load(r: &Runaway, seconds: f64) -> (Vec<f64>, usize) {
    clients::run(&r.small_tokens, seconds, |a, tok| {
        post(a, &r.url, tok, &r.small_sql).0 == 200
    })
}

/// Runs the three phases and prints one JSON line.
pub fn run(r: &Runaway) -> Result<()> {
    // 1. The runaway alone, and the CPU after its answer.
    let idle_before = {
        let c0 = cpu_seconds(r.pid)?;
        std::thread::sleep(Duration::from_millis(500));
        (cpu_seconds(r.pid)? - c0) / 0.5
    };
    let cpu0 = cpu_seconds(r.pid)?;
    let (status, secs) = post(&agent(), &r.url, &r.runaway_token, &r.runaway_sql);
    let cpu_at_answer = cpu_seconds(r.pid)?;
    // CPU is released when a 100 ms window uses less than 10 % of one core.
    let answered = Instant::now();
    let mut released_after = None;
    let mut last = cpu_seconds(r.pid)?;
    while answered.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        let now = cpu_seconds(r.pid)?;
        if now - last < 0.01 {
            released_after = Some(answered.elapsed().as_secs_f64() - 0.1);
            break;
        }
        last = now;
    }
    let cpu_after = cpu_seconds(r.pid)? - cpu_at_answer;
    // 2. Small queries alone.
    let (alone, alone_bad) = small_load(r, r.seconds);
    // 3. The same, beside the runaway sent again and again.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let ((during, during_bad), runaway_answers) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let a = agent();
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                answers.push(post(&a, &r.url, &r.runaway_token, &r.runaway_sql));
            }
            answers
        });
        // Let the first runaway start before measuring.
        std::thread::sleep(Duration::from_millis(300));
        let small = small_load(r, r.seconds);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (small, h.join().unwrap_or_default())
    });
    println!(
        "{}",
        json!({
            "job": "runaway",
            "runaway": {"status": status, "seconds": secs,
                        "cpu_seconds_until_answer": cpu_at_answer - cpu0,
                        "cpu_released_after_answer_s": released_after,
                        "cpu_seconds_after_answer": cpu_after,
                        "idle_cores_before": idle_before},
            "clients": r.small_tokens.len(),
            "small_alone": percentiles(alone),
            "small_alone_failed": alone_bad,
            "small_during_runaway": percentiles(during),
            "small_during_runaway_failed": during_bad,
            "runaways_during": runaway_answers.len(),
            "runaway_statuses": runaway_answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        })
    );
    Ok(())
}
