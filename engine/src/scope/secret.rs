//! The server secret that keys every identifier made from personal data (a task id is made from
//! a rule and its subject, which may hold an identity number): without the key, trying every
//! possible identity behind a masked subject finds nothing.
//!
//! The secret is 32 random bytes in `STATE/secret.key` (readable by its owner only), made the
//! first time a state folder is used and kept with the task lists, so ids stay stable across
//! restarts. Identifiers are HMAC-SHA256 of their parts under it.

use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::Path;

/// The file name of the secret within a state folder.
pub const SECRET_FILE: &str = "secret.key";

/// A key for derived identifiers.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A new random secret.
    pub fn random() -> Result<Secret> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)
            .map_err(|e| Error::Internal(format!("no randomness available: {e}")))?;
        Ok(Secret(b))
    }

    /// The secret of a state folder, made (and written, owner-only, flushed to disk) if the
    /// folder has none yet.
    pub fn open_or_create(dir: &Path) -> Result<Secret> {
        let path = dir.join(SECRET_FILE);
        match std::fs::read(&path) {
            Ok(b) => {
                let bytes: [u8; 32] = hex_decode(&b).ok_or_else(|| {
                    Error::Load(format!(
                        "{}: the server secret is damaged (expected 64 hex digits); restore it \
                         from a backup (a new one would change every task id)",
                        path.display()
                    ))
                })?;
                Ok(Secret(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                let s = Secret::random()?;
                write_private(&path, hex(&s.0).as_bytes()).map_err(|e| Error::io(&path, e))?;
                Ok(s)
            }
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// A keyed identifier: `prefix` and 16 hex digits of the HMAC of the parts (each part
    /// followed by a separator, so that parts cannot run into each other).
    pub fn id(&self, prefix: &str, parts: &[&str]) -> String {
        let mut out = String::with_capacity(prefix.len() + 16);
        out.push_str(prefix);
        out.push_str(&hex(&self.digest(parts)[..8]));
        out
    }

    /// The HMAC-SHA256 of some parts.
    pub fn digest(&self, parts: &[&str]) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return [0; 32];
        };
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"\x1f");
        }
        mac.finalize().into_bytes().into()
    }

    /// A number made from some parts, for orders that must not follow personal data.
    pub fn rank(&self, parts: &[&str]) -> u64 {
        let d = self.digest(parts);
        u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

/// Writes a file readable by its owner only, atomically: a temporary file beside it, flushed to
/// disk, then renamed over it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut opts = std::fs::File::options();
    opts.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A secret of this process, for orders of masked rows (stable while the process runs).
pub fn process_secret() -> &'static Secret {
    static S: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
    S.get_or_init(|| Secret::random().unwrap_or(Secret([7; 32])))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(b: &[u8]) -> Option<[u8; 32]> {
    let t = std::str::from_utf8(b).ok()?.trim();
    if t.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_the_key_and_the_parts() {
        let dir = tempfile::tempdir().unwrap();
        let a = Secret::open_or_create(dir.path()).unwrap();
        let again = Secret::open_or_create(dir.path()).unwrap();
        assert_eq!(a.id("T", &["R01", "x"]), again.id("T", &["R01", "x"]));
        let other = Secret::random().unwrap();
        assert_ne!(a.id("T", &["R01", "x"]), other.id("T", &["R01", "x"]));
        assert_ne!(a.id("T", &["R01", "x"]), a.id("T", &["R01x", ""]));
        assert_eq!(a.id("T", &["R01", "x"]).len(), 17);
        std::fs::write(dir.path().join(SECRET_FILE), "nonsense").unwrap();
        assert!(Secret::open_or_create(dir.path()).is_err());
    }
}
