//! Per-person tokens (一人一密码): issued once, stored only as their SHA-256, each with a role, a
//! scope and the `pii` permission. The token file is JSON, written atomically (temporary file,
//! fsync, rename) and re-read by the server whenever it changes, so a revoked token stops
//! working at once.

use anyhow::{Context, Result, bail};
use gridlens_engine::scope::Scope;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything; reloads data.
    Admin,
    /// SQL, KPIs, anomalies and sweeps.
    Analyst,
    /// KPIs only.
    Leader,
    /// Their own task list only.
    Worker,
    /// A feeding system (door access, the registry, the hotline): ingest only, within its scope.
    Feeder,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Analyst => "analyst",
            Role::Leader => "leader",
            Role::Worker => "worker",
            Role::Feeder => "feeder",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Role> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "admin" => Role::Admin,
            "analyst" => Role::Analyst,
            "leader" => Role::Leader,
            "worker" => Role::Worker,
            "feeder" => Role::Feeder,
            _ => bail!("role {s:?} is not one of admin, analyst, leader, worker, feeder"),
        })
    }
}

/// One issued token (without the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Public id (8 hex digits), shown in lists and the audit log.
    pub id: String,
    /// The person it was issued to.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Scope: `city`, or a district / street / community / grid code. A token without one
    /// (`null`, as files of earlier versions wrote for the city and for blank scopes alike) is
    /// refused when used, never taken as the city.
    pub scope: Option<String>,
    /// Whether personal columns are shown unmasked.
    pub pii: bool,
    /// For a worker: their `worker_id`.
    pub worker_id: Option<String>,
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// When it was issued.
    pub created_at: String,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

/// The token file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenFile {
    /// Every token ever issued (revoked ones stay, marked).
    pub tokens: Vec<TokenEntry>,
}

/// What a new token is for.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The person.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Scope and the `pii` permission.
    pub scope: Scope,
    /// For a worker: their id.
    pub worker_id: Option<String>,
}

impl TokenEntry {
    /// What the token grants: its scope (refused if it has none or it is malformed).
    pub fn scope(&self) -> Result<Scope> {
        match &self.scope {
            Some(s) => Ok(Scope::parse(s, self.pii)?),
            None => bail!(
                "token {} has no scope recorded (it was issued by an earlier version); issue a \
                 new one",
                self.id
            ),
        }
    }
}

/// The codes a scope may name: one per line, written by the server for the city it serves
/// (`STATE/known-scopes.txt`), so that `gridlens token add` can check a scope before the token
/// exists.
pub const KNOWN_SCOPES: &str = "known-scopes.txt";

/// Checks that a scope names a part of the city: against `codes` (every district, street,
/// community and grid code of the city).
pub fn check_known(scope: &Scope, codes: &std::collections::BTreeSet<String>) -> Result<()> {
    match scope.code() {
        Some(c) if !codes.contains(c) => bail!(
            "scope {c} is not a district, street, community or grid of the city (check the code, \
             e.g. in the grids table)"
        ),
        _ => Ok(()),
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    Ok(hex::encode(b))
}

impl TokenFile {
    /// Reads a token file (empty if it does not exist).
    pub fn load(path: &Path) -> Result<TokenFile> {
        if !path.exists() {
            return Ok(TokenFile::default());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("the token file {} is not valid", path.display()))
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the folder {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        gridlens_engine::scope::secret::write_private(path, text.as_bytes())
            .with_context(|| format!("writing the token file {}", path.display()))
    }

    /// Issues a token: returns it (the only time it is seen) and records its hash.
    pub fn issue(&mut self, t: NewToken, now: &str) -> Result<(String, TokenEntry)> {
        if t.name.trim().is_empty() {
            bail!("a token needs the name of the person it is for (--name)");
        }
        if t.role == Role::Worker && t.worker_id.is_none() {
            bail!("a worker token needs the worker's id (--worker)");
        }
        if t.role != Role::Worker && t.worker_id.is_some() {
            bail!("--worker is only for worker tokens");
        }
        let id = loop {
            let id = random_hex(4)?;
            if !self.tokens.iter().any(|e| e.id == id) {
                break id;
            }
        };
        let token = format!("glt_{id}_{}", random_hex(24)?);
        let entry = TokenEntry {
            id,
            name: t.name,
            role: t.role,
            scope: Some(t.scope.label().to_string()),
            pii: t.scope.pii(),
            worker_id: t.worker_id,
            hash: hash(&token),
            created_at: now.to_string(),
            revoked_at: None,
        };
        self.tokens.push(entry.clone());
        Ok((token, entry))
    }

    /// Revokes a token by id.
    pub fn revoke(&mut self, id: &str, now: &str) -> Result<&TokenEntry> {
        let Some(e) = self.tokens.iter_mut().find(|e| e.id == id) else {
            bail!("there is no token with id {id:?} (see gridlens token list)");
        };
        if e.revoked_at.is_none() {
            e.revoked_at = Some(now.to_string());
        }
        Ok(e)
    }

    /// The active entry of a token, if it is valid.
    pub fn authenticate(&self, token: &str) -> Option<&TokenEntry> {
        let h = hash(token);
        self.tokens
            .iter()
            .find(|e| e.revoked_at.is_none() && e.hash == h)
    }

    /// Whether an active admin token with a valid scope exists.
    pub fn has_admin(&self) -> bool {
        self.tokens
            .iter()
            .any(|e| e.role == Role::Admin && e.revoked_at.is_none() && e.scope().is_ok())
    }
}

/// The token file as the server reads it: reloaded when it changes on disk.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    cache: std::sync::Mutex<(Option<SystemTime>, TokenFile)>,
}

impl Tokens {
    /// Over a token file.
    pub fn new(path: PathBuf) -> Result<Tokens> {
        let file = TokenFile::load(&path)?;
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Ok(Tokens {
            path,
            cache: std::sync::Mutex::new((mtime, file)),
        })
    }

    /// The active entry of a token (re-reading the file if it changed).
    pub fn authenticate(&self, token: &str) -> Option<TokenEntry> {
        self.with_file(|f| f.authenticate(token).cloned())
    }

    /// Reads the token file as it is now (re-reading it if it changed on disk).
    fn with_file<T>(&self, read: impl FnOnce(&TokenFile) -> Option<T>) -> Option<T> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut cache = self.cache.lock().ok()?;
        if mtime != cache.0 {
            match TokenFile::load(&self.path) {
                Ok(f) => *cache = (mtime, f),
                Err(e) => {
                    // Keep serving with the last good file rather than locking everyone out;
                    // but a missing file means no token is valid.
                    tracing::error!("{e:#}");
                    if mtime.is_none() {
                        *cache = (None, TokenFile::default());
                    }
                }
            }
        }
        read(&cache.1)
    }

    /// The active entry with a token id (re-reading the file if it changed): how a signed-in
    /// browser session finds its token again, so that a revoked token ends its sessions too.
    pub fn active_by_id(&self, id: &str) -> Option<TokenEntry> {
        self.with_file(|f| {
            f.tokens
                .iter()
                .find(|e| e.revoked_at.is_none() && e.id == id)
                .cloned()
        })
    }
}
