//! Revoked certificates: a text file, `revoked.txt` beside the CA (or
//! `tls.revoked`), one entry a line: `sha256:HEX` (the certificate's
//! SHA-256 fingerprint) or `serial:HEX` (its serial number, as `openssl x509
//! -serial` prints it), then an optional `# comment`. `daas-server pki
//! revoke` appends to it. The server reads it at start (a malformed file
//! stops it) and again whenever it changes, at most once a second, so a
//! revocation takes effect on the next call without a restart; a file that
//! cannot be read then keeps the list it had (and says so in the log).

use std::{
    collections::HashSet,
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use super::PkiError;

/// The file's name beside the CA.
pub const FILE_NAME: &str = "revoked.txt";
/// How often the file is looked at, at most.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// What one line revokes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revoked {
    Fingerprint(String),
    Serial(String),
}

impl Revoked {
    /// The line's first field (`sha256:...` or `serial:...`).
    pub fn to_field(&self) -> String {
        match self {
            Revoked::Fingerprint(hex) => format!("sha256:{hex}"),
            Revoked::Serial(hex) => format!("serial:{hex}"),
        }
    }

    /// A SHA-256 fingerprint, in hex (colons allowed, any case).
    pub fn fingerprint(text: &str) -> Result<Revoked, String> {
        let hex = normal_hex(text);
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Revoked::Fingerprint(hex))
        } else {
            Err(format!(
                "not a SHA-256 fingerprint (64 hex digits): {text:?}"
            ))
        }
    }

    /// A serial number, in hex (colons allowed, any case, leading zeros
    /// ignored).
    pub fn serial(text: &str) -> Result<Revoked, String> {
        let hex = normal_hex(text);
        let hex = hex.trim_start_matches('0');
        let hex = if hex.is_empty() { "0" } else { hex };
        if hex.len() <= 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Revoked::Serial(hex.to_string()))
        } else {
            Err(format!(
                "not a serial number (at most 40 hex digits): {text:?}"
            ))
        }
    }
}

fn normal_hex(text: &str) -> String {
    text.trim().replace(':', "").to_ascii_lowercase()
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<HashSet<Revoked>, String> {
    let mut revoked = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        let parsed = match entry.split_once(':') {
            Some(("sha256", hex)) => Revoked::fingerprint(hex),
            Some(("serial", hex)) => Revoked::serial(hex),
            _ => Err(format!("expected sha256:HEX or serial:HEX, not {entry:?}")),
        };
        revoked.insert(parsed.map_err(|why| format!("line {}: {why}", n + 1))?);
    }
    Ok(revoked)
}

/// Appends `entry` with `comment` to the file at `path` (made 0644 if
/// missing).
pub fn append(path: &Path, entry: &Revoked, comment: &str) -> Result<(), PkiError> {
    let write_error = |error| PkiError::Write {
        path: path.to_path_buf(),
        error,
    };
    let comment = comment.replace(['\n', '\r'], " ");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(write_error)?;
    writeln!(file, "{}  # {comment}", entry.to_field()).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

/// The list the server checks every client certificate against.
#[derive(Debug)]
pub struct RevocationList {
    path: Option<PathBuf>,
    state: Mutex<Loaded>,
}

#[derive(Debug, Default)]
struct Loaded {
    looked: Option<Instant>,
    /// The file's modification time and length when read.
    version: Option<(SystemTime, u64)>,
    revoked: HashSet<Revoked>,
}

impl RevocationList {
    /// Nothing revoked, ever (no TLS, or tests).
    pub fn none() -> RevocationList {
        RevocationList {
            path: None,
            state: Mutex::new(Loaded::default()),
        }
    }

    /// Reads the file at `path` now; a missing file revokes nothing.
    pub fn open(path: &Path) -> Result<RevocationList, PkiError> {
        let list = RevocationList {
            path: Some(path.to_path_buf()),
            state: Mutex::new(Loaded::default()),
        };
        {
            let mut state = list.state.lock().unwrap_or_else(|e| e.into_inner());
            list.reload(&mut state)?;
        }
        Ok(list)
    }

    /// Whether the certificate with this fingerprint and serial (hex) is
    /// revoked, reading the file again if it changed.
    pub fn is_revoked(&self, fingerprint: &str, serial: &str) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = state.looked.is_none_or(|t| t.elapsed() >= LOOK_EVERY);
        if due && let Err(err) = self.reload(&mut state) {
            tracing::error!(error = %err, "could not read the revocation list again; the last one read stays in force");
        }
        let by_fingerprint = Revoked::fingerprint(fingerprint)
            .map(|f| state.revoked.contains(&f))
            .unwrap_or(false);
        let by_serial = Revoked::serial(serial)
            .map(|s| state.revoked.contains(&s))
            .unwrap_or(false);
        by_fingerprint || by_serial
    }

    fn reload(&self, state: &mut Loaded) -> Result<(), PkiError> {
        state.looked = Some(Instant::now());
        let Some(path) = &self.path else {
            return Ok(());
        };
        let read_error = |error| PkiError::Read {
            path: path.clone(),
            error,
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if !state.revoked.is_empty() {
                    tracing::warn!(path = %path.display(), "the revocation list is gone: nothing is revoked now");
                }
                state.revoked.clear();
                state.version = None;
                return Ok(());
            }
            Err(err) => return Err(read_error(err)),
        };
        let version = (meta.modified().map_err(read_error)?, meta.len());
        if state.version == Some(version) {
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let revoked = parse(&text).map_err(|why| PkiError::Revocations {
            path: path.clone(),
            why,
        })?;
        if state.version.is_some() {
            tracing::info!(path = %path.display(), entries = revoked.len(), "read the revocation list again");
        }
        state.revoked = revoked;
        state.version = Some(version);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "3f0c1d8e8a554c1e9a321b8f7e0c2d113f0c1d8e8a554c1e9a321b8f7e0c2d11";

    #[test]
    fn lines_are_fingerprints_or_serials_with_comments() {
        let text = format!(
            "# revoked by the admins\n\nsha256:{}  # alice's laptop\nserial:00:1A:2b # bob\n",
            FP.to_uppercase()
        );
        let revoked = parse(&text).unwrap();
        assert!(revoked.contains(&Revoked::Fingerprint(FP.into())));
        assert!(revoked.contains(&Revoked::Serial("1a2b".into())));
        for bad in ["sha256:abc", "serial:xyz", "alice", "md5:00"] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with("line 1: "), "{err}");
        }
    }

    #[test]
    fn the_list_follows_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let list = RevocationList::open(&path).unwrap();
        assert!(!list.is_revoked(FP, "1a2b"));
        append(&path, &Revoked::serial("1A:2B").unwrap(), "bob\nlost").unwrap();
        std::thread::sleep(LOOK_EVERY);
        assert!(
            list.is_revoked(FP, "001a2b"),
            "a new entry is read without a restart"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "serial:1a2b  # bob lost\n");
        // A malformed file afterwards keeps the list in force.
        std::fs::write(&path, "garbage and more garbage\n").unwrap();
        std::thread::sleep(LOOK_EVERY);
        assert!(list.is_revoked(FP, "1a2b"));
        // At start, it stops the server.
        assert!(RevocationList::open(&path).is_err());
    }
}
