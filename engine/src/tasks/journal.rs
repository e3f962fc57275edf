//! The task book on disk: `tasks.json`, the whole book as of a generation, and
//! `tasks.journal`, the changes saved since, one line per save.
//!
//! - A save that changes a few tasks (a batch's sweep in the grids it touched, a worker's
//!   close) appends one line holding those tasks whole and the runs recorded, and flushes it
//!   to disk before it returns: a line is the unit of a save, and a line cut short by a crash
//!   was never acknowledged and is dropped.
//! - A save that changes much of the book, or finds the journal grown past the whole book,
//!   writes the book whole at the next generation (a temporary file flushed to disk, then
//!   renamed) and starts a new journal of that generation. A journal whose first line names
//!   another generation is stale (a crash came between the two steps) and is not read.
//! - Readers (the SQL `tasks` table) read without changing anything; a writer opening the
//!   book drops what a crash left (a temporary file, a stale journal, a line cut short).

use super::{RunSummaryRecord, Task};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::Path;

/// The whole book's file name within the state folder.
pub const STATE_FILE: &str = "tasks.json";
/// The journal's file name within the state folder.
pub const JOURNAL_FILE: &str = "tasks.journal";
const TEMP_FILE: &str = "tasks.json.tmp";
const JOURNAL_TEMP: &str = "tasks.journal.tmp";

/// The whole book: read with owned runs and tasks, written borrowing them (a city's book holds
/// 150,000 tasks).
#[derive(Debug, Serialize, Deserialize)]
struct StateFile<R = Vec<RunSummaryRecord>, T = Task> {
    version: u32,
    /// The generation: the journal of the same generation follows it.
    #[serde(default)]
    generation: u64,
    updated_at: String,
    runs: R,
    tasks: Vec<T>,
}

/// A journal's first line.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    generation: u64,
}

/// One save in the journal: the tasks it changed, whole, and the runs it recorded.
#[derive(Debug, Serialize, Deserialize)]
struct Entry<R = Vec<RunSummaryRecord>, T = Vec<Task>> {
    runs: R,
    tasks: T,
}

/// What a crash may have left in a journal, for a writer to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leftover {
    /// Nothing.
    None,
    /// A journal of another generation.
    Stale,
    /// A last line cut short: the journal's good bytes.
    Torn(u64),
}

/// The book as read from disk.
#[derive(Debug)]
pub(super) struct OnDisk {
    /// The whole file's format version.
    pub version: u32,
    /// The generation.
    pub generation: u64,
    /// Runs, the journal's after the file's.
    pub runs: Vec<RunSummaryRecord>,
    /// The whole file's tasks (their ids as stored).
    pub tasks: Vec<Task>,
    /// The journal's tasks, in the order saved (later ones replace earlier).
    pub changed: Vec<Task>,
    /// Bytes of the whole file.
    pub base_bytes: u64,
    /// Good bytes of the journal (0 without one of this generation).
    pub journal_bytes: u64,
    /// What a crash left.
    pub leftover: Leftover,
}

fn io(path: &Path, e: impl Into<std::io::Error>) -> Error {
    Error::io(path, e.into())
}

/// Reads the book of a state folder (`None`: no book yet). A reader racing a writer's new
/// generation reads again.
pub(super) fn read(dir: &Path) -> Result<Option<OnDisk>> {
    for _ in 0..3 {
        let Some(d) = read_once(dir)? else {
            return Ok(None);
        };
        if d.leftover != Leftover::Stale || journal_gen(dir)?.is_none_or(|g| g < d.generation) {
            return Ok(Some(d));
        }
    }
    read_once(dir)
}

fn journal_gen(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(JOURNAL_FILE);
    let Ok(f) = File::open(&path) else {
        return Ok(None);
    };
    let mut first = String::new();
    std::io::BufReader::new(f)
        .read_line(&mut first)
        .map_err(|e| io(&path, e))?;
    Ok(serde_json::from_str::<Header>(first.trim_end())
        .ok()
        .map(|h| h.generation))
}

fn read_once(dir: &Path) -> Result<Option<OnDisk>> {
    let path = dir.join(STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path, e)),
    };
    let state: StateFile = serde_json::from_slice(&text).map_err(|e| {
        Error::Load(format!(
            "{}: the task state is not readable: {e}",
            path.display()
        ))
    })?;
    let mut d = OnDisk {
        version: state.version,
        generation: state.generation,
        runs: state.runs,
        tasks: state.tasks,
        changed: Vec::new(),
        base_bytes: text.len() as u64,
        journal_bytes: 0,
        leftover: Leftover::None,
    };
    let jpath = dir.join(JOURNAL_FILE);
    let bytes = match std::fs::read(&jpath) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(d)),
        Err(e) => return Err(io(&jpath, e)),
    };
    let mut lines = bytes.split_inclusive(|&b| b == b'\n');
    let header = lines
        .next()
        .filter(|l| l.ends_with(b"\n"))
        .and_then(|l| serde_json::from_slice::<Header>(l).ok());
    if header.is_none_or(|h| h.generation != d.generation) {
        d.leftover = Leftover::Stale;
        return Ok(Some(d));
    }
    let mut good = bytes.len() - lines.clone().map(<[u8]>::len).sum::<usize>();
    for (n, line) in lines.enumerate() {
        let entry = if line.ends_with(b"\n") {
            serde_json::from_slice::<Entry>(line).ok()
        } else {
            None
        };
        match entry {
            Some(e) => {
                d.runs.extend(e.runs);
                d.changed.extend(e.tasks);
                good += line.len();
            }
            None => {
                // Only the last line can be cut short by a crash; anything else is damage.
                if good + line.len() < bytes.len() {
                    return Err(Error::Load(format!(
                        "{}: line {} is not readable, and lines follow it",
                        jpath.display(),
                        n + 2
                    )));
                }
                d.leftover = Leftover::Torn(good as u64);
                break;
            }
        }
    }
    d.journal_bytes = good as u64;
    Ok(Some(d))
}

/// Drops what a crash left: a temporary file, a stale journal, a line cut short.
pub(super) fn clean(dir: &Path, leftover: Leftover) -> Result<()> {
    let tmp = dir.join(TEMP_FILE);
    if tmp.exists() {
        tracing::warn!("discarding {}: a save that did not finish", tmp.display());
        let _ = std::fs::remove_file(&tmp);
    }
    let jpath = dir.join(JOURNAL_FILE);
    match leftover {
        Leftover::None => {}
        Leftover::Stale => {
            tracing::warn!("discarding {}: of an earlier generation", jpath.display());
            std::fs::remove_file(&jpath).map_err(|e| io(&jpath, e))?;
        }
        Leftover::Torn(len) => {
            tracing::warn!("{}: dropping a last line cut short", jpath.display());
            let f = File::options()
                .write(true)
                .open(&jpath)
                .map_err(|e| io(&jpath, e))?;
            f.set_len(len).map_err(|e| io(&jpath, e))?;
            f.sync_all().map_err(|e| io(&jpath, e))?;
        }
    }
    Ok(())
}

/// The stages of writing the book whole, for tests that simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveStage {
    /// The temporary file is written and flushed to disk.
    TempWritten,
}

/// Writes `path` through `tmp`: written, flushed to disk, renamed, the rename made durable.
fn replace(
    dir: &Path,
    tmp: &str,
    path: &str,
    write: impl FnOnce(&mut dyn Write) -> std::result::Result<(), std::io::Error>,
    hook: impl Fn(SaveStage) -> Result<()>,
) -> Result<u64> {
    let tmp = dir.join(tmp);
    let bytes = {
        let f = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        write(&mut w).map_err(|e| io(&tmp, e))?;
        let f = w.into_inner().map_err(|e| io(&tmp, e.into_error()))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        f.metadata().map_err(|e| io(&tmp, e))?.len()
    };
    hook(SaveStage::TempWritten)?;
    let path = dir.join(path);
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(bytes)
}

/// Writes the book whole at generation `generation` and starts its journal: the whole file's bytes
/// and the journal's.
pub(super) fn write_whole<'a>(
    dir: &Path,
    generation: u64,
    version: u32,
    updated_at: String,
    runs: &[RunSummaryRecord],
    tasks: impl Iterator<Item = &'a Task>,
    hook: impl Fn(SaveStage) -> Result<()>,
) -> Result<(u64, u64)> {
    let state = StateFile {
        version,
        generation,
        updated_at,
        runs,
        tasks: tasks.collect(),
    };
    let base = replace(
        dir,
        TEMP_FILE,
        STATE_FILE,
        |w| serde_json::to_writer(w, &state).map_err(std::io::Error::other),
        hook,
    )?;
    Ok((base, start(dir, generation)?))
}

/// Starts the journal of a generation: its first line alone.
fn start(dir: &Path, generation: u64) -> Result<u64> {
    replace(
        dir,
        JOURNAL_TEMP,
        JOURNAL_FILE,
        |w| {
            serde_json::to_writer(&mut *w, &Header { generation })
                .map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        },
        |_| Ok(()),
    )
}

/// One save as a journal line.
pub(super) fn entry_line(runs: &[RunSummaryRecord], tasks: Vec<&Task>) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&Entry { runs, tasks })?;
    line.push(b'\n');
    Ok(line)
}

/// Appends a line to the journal of a generation (started if there is none: a book written
/// before journals, or one whose stale journal was dropped) and flushes it to disk; the bytes
/// the journal grew by.
pub(super) fn append(dir: &Path, generation: u64, line: &[u8]) -> Result<u64> {
    let path = dir.join(JOURNAL_FILE);
    let started = if path.exists() {
        0
    } else {
        start(dir, generation)?
    };
    let mut f = File::options()
        .append(true)
        .open(&path)
        .map_err(|e| io(&path, e))?;
    f.write_all(line).map_err(|e| io(&path, e))?;
    f.sync_data().map_err(|e| io(&path, e))?;
    Ok(started + line.len() as u64)
}

/// The tasks of a book read, by id: the journal's over the whole file's.
pub(super) fn tasks_by_id(
    tasks: Vec<Task>,
    changed: Vec<Task>,
    id: impl Fn(&Task) -> String,
) -> BTreeMap<String, Task> {
    let mut out: BTreeMap<String, Task> = tasks.into_iter().map(|t| (id(&t), t)).collect();
    for t in changed {
        out.insert(t.task_id.clone(), t);
    }
    out
}
