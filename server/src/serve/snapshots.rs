//! Snapshots of the served city, written in the background (see
//! [`gridlens_engine::store::snapshot`]): after a start that did not come from a snapshot of the
//! version served, after a reload, and after an ingested batch when the last one is older than
//! `--snapshot-every` — or, when no batch follows, once it is, on a timer. One is written at a time; a version replaced by a reload or by a batch
//! that loads tables again stops its snapshot first, so that no whole version outlives its turn
//! in memory; one replaced by merged door events (which shares all else with the next) lets it
//! finish.

use super::Served;
use crate::dataset::{self, DataArgs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The snapshot writer of a server.
#[derive(Debug)]
pub struct Snapshots {
    data: DataArgs,
    state: PathBuf,
    /// The time between snapshots after batches (`None`: only at start and reload).
    every: Option<Duration>,
    /// Set to stop the snapshot being written.
    stop: Arc<AtomicBool>,
    /// True while one is written.
    busy: Arc<AtomicBool>,
    /// When the last one began.
    last: Mutex<Option<Instant>>,
    /// The version of the last one begun, or read at start.
    of: Mutex<Option<u64>>,
}

impl Snapshots {
    /// A writer for a state folder's snapshots of a dataset.
    pub fn new(data: DataArgs, state: PathBuf, every: Option<Duration>) -> Snapshots {
        Snapshots {
            data,
            state,
            every,
            stop: Arc::default(),
            busy: Arc::default(),
            last: Mutex::default(),
            of: Mutex::default(),
        }
    }

    /// Notes that the snapshot of a version is on disk already (the one a start read).
    pub fn mark(&self, version: u64) {
        if let Ok(mut o) = self.of.lock() {
            *o = Some(version);
        }
    }

    /// How often a server looks whether its served version needs a snapshot (see
    /// [`Snapshots::write_if_stale`]); `None` when snapshots follow only starts and reloads.
    pub fn tick(&self) -> Option<Duration> {
        self.every
            .map(|e| (e / 2).clamp(Duration::from_millis(100), Duration::from_secs(10)))
    }

    /// Whether a version has no snapshot begun or read (see [`Snapshots::write_if_stale`]).
    pub fn is_stale(&self, version: u64) -> bool {
        self.of.lock().map(|o| *o != Some(version)).unwrap_or(false)
    }

    /// Writes one of the served version if it has none and the last is older than
    /// `--snapshot-every`: called on a timer, so that a server gone quiet after a burst of
    /// batches (whose last ones came too soon after a snapshot) still gets a snapshot of what
    /// it serves, and a restart need not replay them.
    pub fn write_if_stale(&self, served: &Arc<Served>, segments: Vec<String>) {
        if self.is_stale(served.version) {
            self.write_if_due(served, segments);
        }
    }

    /// Writes a snapshot of a version in the background, unless one is being written.
    pub fn write(&self, served: &Arc<Served>, segments: Vec<String>) {
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        if let Ok(mut l) = self.last.lock() {
            *l = Some(Instant::now());
        }
        self.mark(served.version);
        let (store, version) = (served.store.clone(), served.version);
        let (data, state) = (self.data.clone(), self.state.clone());
        let (stop, busy) = (self.stop.clone(), self.busy.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let done = dataset::source_of(&data)
                .map_err(|e| format!("{e:#}"))
                .and_then(|source| {
                    gridlens_engine::store::snapshot::write(
                        &store,
                        &dataset::snapshots_dir(&state),
                        &source,
                        version,
                        segments,
                        &stop,
                    )
                    .map_err(|e| e.to_string())
                });
            match done {
                Ok(true) => tracing::info!(
                    version,
                    seconds = t.elapsed().as_secs_f64(),
                    "snapshot written"
                ),
                Ok(false) => tracing::info!(version, "snapshot stopped: a new version is served"),
                Err(e) => tracing::warn!(version, "the snapshot was not written: {e}"),
            }
            drop(store);
            busy.store(false, Ordering::Release);
        });
    }

    /// Writes one after a batch if the last is older than `--snapshot-every`.
    pub fn write_if_due(&self, served: &Arc<Served>, segments: Vec<String>) {
        let Some(every) = self.every else { return };
        let due = self
            .last
            .lock()
            .map(|l| l.is_none_or(|t| t.elapsed() >= every))
            .unwrap_or(false);
        if due {
            self.write(served, segments);
        }
    }

    /// Stops the snapshot being written, if any, and waits until it has let go of its version
    /// (at most the time of one file; blocking: call off the async threads).
    pub fn stop(&self) {
        if !self.busy.load(Ordering::Acquire) {
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        while self.busy.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(false, Ordering::Relaxed);
    }
}
