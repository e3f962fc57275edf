//! A `gridlens serve` inside the bench's process, for timing the same queries in process and
//! through the HTTP API in turn, on the same loaded city in the same minutes.
//!
//! It is started as the `gridlens` binary starts it ([`gridlens::serve::run`]): a query runtime
//! of one thread a core, [`App::open`] over the dataset with a fresh state folder (which makes
//! an admin token), and the server's own [`gridlens::serve::serve`] on an HTTP runtime of one
//! thread a core, on a free port of 127.0.0.1. The snapshot a first start writes is stopped: it
//! would write 10 GB beside the queries at scale 1.0.

use anyhow::{Context, Result};
use gridlens::dataset::DataArgs;
use gridlens::serve::{App, Config, serve};
use gridlens_engine::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A server running in this process until it is dropped.
pub struct Served {
    /// Its address, `http://127.0.0.1:port`.
    pub url: String,
    /// Its admin token.
    pub token: String,
    /// The city it serves.
    pub store: Arc<Store>,
    state: PathBuf,
    _runtimes: (tokio::runtime::Runtime, tokio::runtime::Runtime),
}

impl Served {
    /// Loads the dataset at `data` and serves it.
    pub fn start(data: &Path) -> Result<Served> {
        let state =
            std::env::temp_dir().join(format!("gridlens-bench-served-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut config = Config::new(
            DataArgs {
                data: Some(data.to_path_buf()),
                encoding: "auto".into(),
            },
            state.clone(),
        );
        config.listen = format!("127.0.0.1:{port}");
        config.snapshot_every = None;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let query_rt = gridlens_engine::sql::query_runtime(Some(cores))?;
        let (app, made) = App::open(&config, query_rt.handle().clone())?;
        app.snapshots.stop();
        // A first start fills the task lists from a sweep, on a thread holding them: done when
        // they can be taken.
        drop(app.tasks.lock());
        let token = made
            .and_then(|m| m.lines().last().map(str::to_string))
            .context("the server made no admin token")?;
        let store = app.served().store.clone();
        let http_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("gridlens-http")
            .enable_all()
            .build()?;
        let app = Arc::new(app);
        http_rt.spawn(async move {
            if let Err(e) = serve(app, &config).await {
                eprintln!("the bench's server stopped: {e:#}");
            }
        });
        let url = format!("http://127.0.0.1:{port}");
        let agent = crate::clients::agent();
        let until = Instant::now() + Duration::from_secs(60);
        while !agent
            .get(&format!("{url}/v1/health"))
            .call()
            .is_ok_and(|r| r.status() == 200)
        {
            anyhow::ensure!(
                Instant::now() < until,
                "the bench's server did not answer on {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Served {
            url,
            token,
            store,
            state,
            _runtimes: (query_rt, http_rt),
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
