//! `gridlens-bench`: times whole jobs and reports them as JSON, with peak memory.
//!
//! ```text
//! gridlens-bench generate --scale 1.0 --out /data/city1   # time and peak memory of the generator
//! gridlens-bench load --data /data/city1                   # load time, store size, peak memory
//! gridlens-bench sweep --data /data/city1 --repeat 5       # full sweep and each rule, medians
//! gridlens-bench queries --data /data/city1 --api-in-turn  # analyst SQL in process and API, in turn
//! benches/runaway.sh /data/city1                            # a runaway beside small queries
//! ```

mod clients;
mod runaway;
mod served;

use anyhow::Result;
use clap::{Parser, Subcommand};
use clients::percentiles;
use gridlens_benches::{median, peak_rss, reset_peak, rss};
use gridlens_engine::load::{LoadOptions, load};
use gridlens_engine::rules::{Params, RuleId, sweep};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "gridlens-bench", about = "Times gridlens jobs and prints JSON")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a city (Parquet) and report time and peak memory.
    Generate {
        #[arg(long)]
        scale: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Load a city and report time, store size and peak memory.
    Load {
        #[arg(long)]
        data: PathBuf,
    },
    /// Load a city, then sweep it `repeat` times; report medians per rule and in all, the peak
    /// memory of the sweep, and write the anomalies (rule, subject_id, grid_code) as CSV.
    Sweep {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[arg(long)]
        anomalies: Option<PathBuf>,
    },
    /// Load a city, sweep it once (not timed here), then time the SLA clocks, incident KPIs
    /// (city and per grid) and grid KPIs at every level, `repeat` times; report medians.
    Kpis {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Write the answers here as CSV (incident KPIs for the city and per grid, city grid KPIs),
        /// for the comparison to check.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Load a city, then run each `.sql` file of a folder through the SQL engine `repeat`
    /// times; report medians and write each result as CSV into `--results`. With `--url`, the
    /// queries go to a running `gridlens serve` instead (`POST /v1/sql`, CSV answers), timed
    /// from the request to the last byte of the answer. With `--api-in-turn`, the loaded city
    /// is also served in this process as `gridlens serve` serves it, and each run in process is
    /// followed by the same query through its API: both paths timed on the same memory in the
    /// same minutes (reported as `api`, answers written into `--api-results`).
    Queries {
        #[arg(long, required_unless_present = "url")]
        data: Option<PathBuf>,
        /// e.g. http://127.0.0.1:8080
        #[arg(long)]
        url: Option<String>,
        /// A token allowed to run SQL (with `--url`).
        #[arg(long, env = "GRIDLENS_TOKEN")]
        token: Option<String>,
        /// Run on the columns' values throughout instead of the store's keys (in process).
        #[arg(long)]
        on_values: bool,
        #[arg(long, default_value = "benches/queries")]
        queries: PathBuf,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        #[arg(long)]
        results: Option<PathBuf>,
        /// Also time every query through the API of a server in this process, in turn.
        #[arg(long, requires = "data", conflicts_with = "url")]
        api_in_turn: bool,
        /// Where the answers through the API go (with `--api-in-turn`).
        #[arg(long)]
        api_results: Option<PathBuf>,
    },
    /// What a runaway query does to a running `gridlens serve`: when its CPU stops after its
    /// time limit, and the p50 / p99 of small queries from other tokens while it runs.
    Runaway {
        /// e.g. http://127.0.0.1:8080
        #[arg(long)]
        url: String,
        /// The server's process id.
        #[arg(long)]
        pid: u32,
        /// The runaway's token.
        #[arg(long)]
        runaway_token: String,
        /// A file of tokens for the small queries, one per line: one client each.
        #[arg(long)]
        small_tokens: PathBuf,
        #[arg(
            long,
            default_value = "SELECT count(*) FROM people a, people b WHERE a.name < b.name"
        )]
        runaway_sql: String,
        #[arg(long)]
        small_sql: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Load-test a running `gridlens serve`: `clients` concurrent clients (one thread and one
    /// keep-alive connection each) GET `path` for `seconds`; report p50 / p99 latency and
    /// requests per second. Every answer must be 200.
    HttpLoad {
        /// e.g. http://127.0.0.1:8080
        #[arg(long)]
        url: String,
        /// e.g. /v1/kpis/grids?level=grid&code=440104001
        #[arg(long)]
        path: String,
        /// A token allowed to call the path.
        #[arg(long, env = "GRIDLENS_TOKEN")]
        token: String,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
}

fn main() -> Result<()> {
    // As the gridlens binary does: loads reuse the memory they free.
    gridlens_engine::memory::keep_freed_memory();
    // GRIDLENS_LOG=info shows where a load spends its time.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("GRIDLENS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    match Cli::parse().cmd {
        Cmd::Runaway {
            url,
            pid,
            runaway_token,
            small_tokens,
            runaway_sql,
            small_sql,
            seconds,
        } => {
            let small_tokens = std::fs::read_to_string(&small_tokens)?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            runaway::run(&runaway::Runaway {
                url,
                pid,
                runaway_token,
                small_tokens,
                runaway_sql,
                small_sql,
                seconds,
            })?
        }
        Cmd::HttpLoad {
            url,
            path,
            token,
            clients,
            seconds,
        } => http_load(&url, &path, &token, clients, seconds)?,
        Cmd::Generate { scale, seed, out } => {
            let t = Instant::now();
            let s = gridlens_datasets::generate(&gridlens_datasets::GenerateOptions::new(
                scale, seed, &out,
            ))?;
            let rows: u64 = s.rows.iter().map(|r| r.1).sum();
            println!(
                "{}",
                json!({"job": "generate", "scale": scale, "seconds": t.elapsed().as_secs_f64(),
                       "rows": rows, "tables": s.rows, "peak_rss_bytes": peak_rss()})
            );
        }
        Cmd::Load { data } => {
            let t = Instant::now();
            let store = load(&data, &LoadOptions::default())?;
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"job": "load", "seconds": secs, "rows": store.report.loaded(),
                       "rejected": store.report.rejected(), "store_bytes": store.memory(),
                       "rss_bytes": rss(), "peak_rss_bytes": peak_rss()})
            );
        }
        Cmd::Sweep {
            data,
            repeat,
            anomalies,
        } => {
            let store = load(&data, &LoadOptions::default())?;
            let after_load = rss();
            reset_peak();
            let params = Params::default();
            let mut totals = Vec::new();
            let mut per_rule: Vec<Vec<f64>> = vec![Vec::new(); 12];
            let mut last = None;
            for _ in 0..repeat.max(1) {
                let s = sweep(&store, store.as_of, &[], &params)?;
                totals.push(s.seconds);
                for r in &s.runs {
                    per_rule[r.rule as usize].push(r.seconds);
                }
                last = Some(s);
            }
            let s = last.ok_or_else(|| anyhow::anyhow!("no sweep"))?;
            if let Some(path) = anomalies {
                let grids = store
                    .table(gridlens_engine::contract::TableId::Grids)
                    .strings("grid_code")?;
                let mut w = csv::Writer::from_path(&path)?;
                w.write_record(["rule", "subject_id", "grid_code"])?;
                for a in &s.anomalies {
                    w.write_record([a.rule.code(), &a.subject_id, grids.value(a.grid as usize)])?;
                }
                w.flush()?;
            }
            let peak = peak_rss();
            // In a sweep the rules share the cores; each rule is also timed on its own.
            let mut rules = Vec::new();
            for r in RuleId::ALL {
                let mut alone = Vec::new();
                for _ in 0..repeat.max(1) {
                    alone.push(sweep(&store, store.as_of, &[r], &params)?.seconds);
                }
                let mut shared = per_rule[r as usize].clone();
                rules.push(json!({"rule": r.code(),
                    "found": s.runs.iter().find(|x| x.rule == r).map(|x| x.count),
                    "median_seconds_alone": median(&mut alone),
                    "median_seconds_in_sweep": median(&mut shared)}));
            }
            println!(
                "{}",
                json!({"job": "sweep", "repeat": repeat, "median_seconds": median(&mut totals),
                       "anomalies": s.anomalies.len(), "rules": rules,
                       "rss_after_load_bytes": after_load, "peak_rss_during_sweep_bytes": peak})
            );
        }
        Cmd::Kpis { data, repeat, out } => kpis(&data, repeat, out)?,
        Cmd::Queries {
            data,
            url,
            token,
            on_values,
            queries,
            repeat,
            results,
            api_in_turn,
            api_results,
        } => {
            let in_process = |store| -> Result<Runner> {
                Ok(Runner::InProcess {
                    engine: Box::new(
                        gridlens_engine::sql::SqlEngine::new(store).on_keys(!on_values),
                    ),
                    rt: gridlens_engine::sql::query_runtime(None)?,
                })
            };
            let http = |url: String, token: String| Runner::Http {
                url,
                token,
                agent: clients::agent(),
            };
            match (url, data) {
                (Some(url), _) => {
                    let token = token.ok_or_else(|| anyhow::anyhow!("--url needs --token"))?;
                    run_queries(&[(http(url, token), results)], &queries, repeat)?
                }
                (None, Some(data)) if api_in_turn => {
                    let served = served::Served::start(&data)?;
                    let runners = [
                        (in_process(served.store.clone())?, results),
                        (http(served.url.clone(), served.token.clone()), api_results),
                    ];
                    run_queries(&runners, &queries, repeat)?
                }
                (None, Some(data)) => {
                    let store = std::sync::Arc::new(load(&data, &LoadOptions::default())?);
                    run_queries(&[(in_process(store)?, results)], &queries, repeat)?
                }
                (None, None) => anyhow::bail!("give --data or --url"),
            }
        }
    }
    Ok(())
}

fn kpis(data: &std::path::Path, repeat: usize, out: Option<PathBuf>) -> Result<()> {
    use gridlens_engine::kpis::{self, GridQuery, GroupBy, IncidentQuery, KpiParams, Level};
    use gridlens_engine::sla;
    let store = load(data, &LoadOptions::default())?;
    let params = KpiParams::default();
    let sw = sweep(&store, store.as_of, &[], &Params::default())?;
    let (mut clocks_t, mut inc_city_t, mut inc_grid_t, mut grid_t, mut incident_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let clocks = sla::clocks(&store, store.as_of)?;
        clocks_t.push(t.elapsed().as_secs_f64());
        let q = |g: Vec<GroupBy>| IncidentQuery {
            group_by: g,
            from: None,
            to: None,
            within: None,
            params: params.clone(),
        };
        let t1 = Instant::now();
        let city = kpis::incident_kpis(&store, &clocks, &q(Vec::new()))?;
        inc_city_t.push(t1.elapsed().as_secs_f64());
        let t2 = Instant::now();
        let by_grid = kpis::incident_kpis(&store, &clocks, &q(vec![GroupBy::Level(Level::Grid)]))?;
        inc_grid_t.push(t2.elapsed().as_secs_f64());
        incident_total.push(t.elapsed().as_secs_f64());
        let t3 = Instant::now();
        let counts = kpis::grid_counts(&store, &sw, &clocks, &params)?;
        let mut rows = 0;
        let mut levels = Vec::new();
        for level in Level::ALL {
            let b = kpis::grid_kpis(
                &counts,
                &store,
                &GridQuery {
                    level,
                    within: None,
                    params: params.clone(),
                },
            )?;
            rows += b.num_rows();
            levels.push(b);
        }
        grid_t.push(t3.elapsed().as_secs_f64());
        last = Some((city, by_grid, levels, rows));
    }
    let (city, by_grid, levels, rows) = last.ok_or_else(|| anyhow::anyhow!("no run"))?;
    if let Some(dir) = out {
        // The answers as CSV, for comparing with another engine.
        std::fs::create_dir_all(&dir)?;
        let mut answers = vec![
            ("incident_city".to_string(), &city),
            ("incident_grid".to_string(), &by_grid),
        ];
        for (level, batch) in Level::ALL.iter().zip(&levels) {
            answers.push((format!("grid_kpis_{}", level.name()), batch));
        }
        for (name, batch) in answers {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::fs::File::create(dir.join(format!("{name}.csv")))?);
            w.write(batch)?;
        }
    }
    println!(
        "{}",
        json!({"job": "kpis", "repeat": repeat,
               "incidents": store.table(gridlens_engine::contract::TableId::Incidents).rows,
               "grids": store.table(gridlens_engine::contract::TableId::Grids).rows,
               "sla_clocks_median_seconds": median(&mut clocks_t),
               "incident_kpis_city_median_seconds": median(&mut inc_city_t),
               "incident_kpis_by_grid_median_seconds": median(&mut inc_grid_t),
               "incident_kpis_total_median_seconds": median(&mut incident_total),
               "incident_groups_by_grid": by_grid.num_rows(),
               "grid_kpis_all_levels_median_seconds": median(&mut grid_t),
               "grid_kpi_rows_all_levels": rows,
               "sweep_seconds_not_included": sw.seconds})
    );
    Ok(())
}

/// Where the bench's queries run.
enum Runner {
    /// In this process, on a loaded store.
    InProcess {
        engine: Box<gridlens_engine::sql::SqlEngine>,
        rt: tokio::runtime::Runtime,
    },
    /// Through a running server's `POST /v1/sql`.
    Http {
        url: String,
        token: String,
        agent: ureq::Agent,
    },
}

impl Runner {
    /// Runs one query; its answer as CSV and its row count.
    fn run(&self, sql: &str) -> Result<(Vec<u8>, usize)> {
        match self {
            Runner::InProcess { engine, rt } => {
                // On the runtime's threads, as `SqlEngine::query_blocking` and the server run
                // a query (not on this thread beside them).
                let (engine, sql) = (engine.as_ref().clone(), sql.to_string());
                let r = rt.block_on(rt.spawn(async move { engine.query(&sql).await }))??;
                let mut out = Vec::new();
                {
                    let mut w = arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut out);
                    for b in &r.batches {
                        w.write(b)?;
                    }
                }
                Ok((out, r.rows()))
            }
            Runner::Http { url, token, agent } => {
                let mut resp = agent
                    .post(&format!("{url}/v1/sql"))
                    .header("Authorization", &format!("Bearer {token}"))
                    .send_json(json!({"sql": sql, "format": "csv"}))?;
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(u64::MAX)
                    .read_to_vec()?;
                if resp.status() != 200 {
                    anyhow::bail!("{}: {}", resp.status(), String::from_utf8_lossy(&body));
                }
                let rows = csv::Reader::from_reader(body.as_slice()).records().count();
                Ok((body, rows))
            }
        }
    }
}

/// Runs each `.sql` file of `dir` once untimed, then `repeat` times on every runner in turn (a
/// run on the first, then on the second, …) and prints the times as JSON: the first runner's at the top of each
/// query, a second's under `api`. Each runner's last answers go into its folder, if it has one.
fn run_queries(
    runners: &[(Runner, Option<PathBuf>)],
    dir: &std::path::Path,
    repeat: usize,
) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    for (_, results) in runners {
        if let Some(r) = results {
            std::fs::create_dir_all(r)?;
        }
    }
    let mut out = Vec::new();
    for f in files {
        let sql = std::fs::read_to_string(&f)?;
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        // Once untimed first, on the first runner: what a query builds on first use (an index
        // of rows per key, a column's bitmap of values) is then in place for every timed run.
        runners[0]
            .0
            .run(&sql)
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let mut times = vec![Vec::new(); runners.len()];
        let mut last = vec![None; runners.len()];
        for _ in 0..repeat.max(1) {
            for (i, (runner, _)) in runners.iter().enumerate() {
                let t = Instant::now();
                let r = runner
                    .run(&sql)
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                times[i].push(t.elapsed().as_secs_f64());
                last[i] = Some(r);
            }
        }
        let mut each = Vec::new();
        for (i, (_, results)) in runners.iter().enumerate() {
            let (csv, rows) = last[i].take().ok_or_else(|| anyhow::anyhow!("no run"))?;
            if let Some(dir) = results {
                std::fs::write(dir.join(format!("{name}.csv")), csv)?;
            }
            let m = median(&mut times[i]);
            each.push(json!({"rows": rows, "median_seconds": m, "times": times[i]}));
        }
        let line: Vec<String> = each
            .iter()
            .map(|e| {
                format!(
                    "{:9.1} ms",
                    e["median_seconds"].as_f64().unwrap_or(0.0) * 1e3
                )
            })
            .collect();
        eprintln!("{name:<40} {}  {:>7} rows", line.join(" "), each[0]["rows"]);
        let mut q = each[0].clone();
        q["query"] = json!(name);
        if let Some(api) = each.get(1) {
            q["api"] = api.clone();
        }
        out.push(q);
    }
    println!(
        "{}",
        json!({"job": "queries", "repeat": repeat, "queries": out})
    );
    Ok(())
}

/// Runs the HTTP load test and prints its figures as JSON.
fn http_load(url: &str, path: &str, token: &str, clients: usize, seconds: f64) -> Result<()> {
    let target = format!("{url}{path}");
    let auth = format!("Bearer {token}");
    let start = Instant::now();
    let (lat, failed) = clients::run(&vec![(); clients], seconds, |agent, _| {
        match agent.get(&target).header("Authorization", &auth).call() {
            Ok(mut r) => r.status() == 200 && r.body_mut().read_to_vec().is_ok(),
            Err(_) => false,
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut out = json!({"job": "http-load", "path": path, "clients": clients,
                         "seconds": elapsed, "failed": failed,
                         "rps": lat.len() as f64 / elapsed});
    if let (Some(o), serde_json::Value::Object(p)) = (out.as_object_mut(), percentiles(lat)) {
        o.extend(p);
    }
    println!("{out}");
    if failed > 0 {
        anyhow::bail!("{failed} requests failed");
    }
    Ok(())
}
