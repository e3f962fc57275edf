//! The ingest log: every accepted batch, one CSV file a batch under `<state>/ingest/`, named
//! by its sequence number and table (`000000000042.people.csv`), replayed in order on top of
//! the dataset at every load.
//!
//! A batch is written to a temporary file and flushed to disk ([`Log::stage`]); once the new
//! version of the city built with it has loaded, the file is renamed into place and the folder
//! flushed ([`Log::commit`]) — only then is the batch acknowledged. A crash before the rename
//! leaves a temporary file, removed when the log is next opened: a batch is in the log whole or
//! not at all.

use super::Kind;
use crate::contract::TableId;
use crate::error::{Error, Result};
use crate::load::Added;
use crate::load::read::{Format, SourceFile};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The log's folder inside the state folder.
pub const FOLDER: &str = "ingest";

/// One committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its place in the log, from 1.
    pub seq: u64,
    /// Its table.
    pub table: TableId,
    /// Its file.
    pub path: PathBuf,
}

impl Segment {
    /// The file's name as load reports and rejects show it (`ingest/000000000042.people.csv`).
    pub fn name(&self) -> String {
        format!("{FOLDER}/{}", file_name(self.seq, self.table))
    }

    /// The segment as a file for the loader.
    pub fn added(&self, path: &Path) -> Result<Added> {
        let kind = Kind::of(self.table).ok_or_else(|| {
            Error::Load(format!(
                "{}: the log holds rows of {}, which does not take ingested rows",
                self.name(),
                self.table.name()
            ))
        })?;
        Ok(Added {
            table: self.table,
            file: SourceFile {
                path: path.to_path_buf(),
                name: self.name(),
                format: Format::Csv,
                replaces: kind == Kind::Upsert,
                read: None,
            },
        })
    }
}

fn file_name(seq: u64, table: TableId) -> String {
    format!("{seq:012}.{}.csv", table.name())
}

/// A batch's place in the log, its file written and flushed ([`Staged::write`]) but not yet
/// committed.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The segment it becomes.
    pub segment: Segment,
    tmp: PathBuf,
}

impl Staged {
    /// The staged batch as a file for the loader (read from its temporary file).
    pub fn added(&self) -> Result<Added> {
        self.segment.added(&self.tmp)
    }

    /// The staged batch as a file for the loader, its rows taken as `rows` holds them (what
    /// the file holds once written): nothing is read back from the disk.
    pub fn added_from(&self, rows: &super::Rows) -> Result<Added> {
        let mut a = self.added()?;
        let batch_rows = crate::load::LoadOptions::default().batch_rows;
        a.file.read = rows.read_back(batch_rows).map(Arc::new);
        Ok(a)
    }

    /// Writes the batch's CSV to its temporary file and flushes it to disk.
    pub fn write(&self, csv: &[u8]) -> Result<()> {
        let mut f = File::create(&self.tmp).map_err(io(&self.tmp))?;
        f.write_all(csv)
            .and_then(|_| f.sync_all())
            .map_err(io(&self.tmp))
    }
}

/// The ingest log of a state folder.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Flushes a folder's entries (a rename in it) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Log {
    /// The log of a state folder as it stands, for a reader (a command beside a running
    /// server): nothing is created or cleaned; `None` without a log.
    pub fn existing(state: &Path) -> Option<Log> {
        let dir = state.join(FOLDER);
        dir.is_dir().then_some(Log { dir })
    }

    /// Opens (creating) the log of a state folder, removing what a crash left half written.
    pub fn open(state: &Path) -> Result<Log> {
        let dir = state.join(FOLDER);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let p = e.map_err(io(&dir))?.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
        Ok(Log { dir })
    }

    /// The committed batches, in order.
    pub fn segments(&self) -> Result<Vec<Segment>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let p = e.map_err(io(&self.dir))?.path();
            let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let mut parts = name.splitn(3, '.');
            let (Some(seq), Some(table), Some("csv")) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(seq), Some(table)) = (seq.parse::<u64>(), TableId::from_name(table)) else {
                continue;
            };
            out.push(Segment {
                seq,
                table,
                path: p,
            });
        }
        out.sort_by_key(|s| s.seq);
        Ok(out)
    }

    /// The committed batches as files for the loader, in order.
    pub fn added(&self) -> Result<Vec<Added>> {
        self.segments()?.iter().map(|s| s.added(&s.path)).collect()
    }

    /// The sequence number of the last committed batch (0: none) — the city's version.
    pub fn version(&self) -> Result<u64> {
        Ok(self.segments()?.last().map_or(0, |s| s.seq))
    }

    /// The next batch's place in the log, nothing written yet: [`Staged::write`] writes it.
    pub fn next(&self, table: TableId) -> Result<Staged> {
        let seq = self.version()? + 1;
        let segment = Segment {
            seq,
            table,
            path: self.dir.join(file_name(seq, table)),
        };
        let tmp = self.dir.join(format!("{}.tmp", file_name(seq, table)));
        Ok(Staged { segment, tmp })
    }

    /// Writes a batch's CSV to a temporary file and flushes it to disk.
    pub fn stage(&self, table: TableId, csv: &[u8]) -> Result<Staged> {
        let staged = self.next(table)?;
        staged.write(csv)?;
        Ok(staged)
    }

    /// Commits a staged batch: renamed into place and the folder flushed. From here on it is
    /// part of the city, across crashes and restarts.
    pub fn commit(&self, staged: Staged) -> Result<Segment> {
        std::fs::rename(&staged.tmp, &staged.segment.path).map_err(io(&staged.tmp))?;
        sync_dir(&self.dir)?;
        Ok(staged.segment)
    }

    /// Drops a staged batch that will not be committed.
    pub fn discard(&self, staged: Staged) {
        let _ = std::fs::remove_file(&staged.tmp);
    }
}
