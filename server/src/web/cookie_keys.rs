//! The keys that sign the portal's cookies: a file (`web.cookie_keys`,
//! default `DATA_DIR/web-cookie-keys`) of 64-hex-digit keys, one a line
//! (`#` comments allowed). The first line signs; every line verifies, so a
//! rotation (`daas-server cookie-key rotate`: a new key first, the previous
//! one kept) signs nobody out. Made once, 0600, when missing: a restart
//! keeps every browser signed in, and servers sharing the file (and the
//! store) share the sign-ins. Read again when it changes, at most once a
//! second; a file that turns unreadable or malformed keeps the keys read
//! before (and says so in the log).

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use rand::RngCore;
use ring::hmac;

/// The file's name in the data folder, by default.
pub const FILE_NAME: &str = "web-cookie-keys";
/// How often the file is looked at, at most.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Keys a rotation keeps: the new one and the one before.
const KEEP: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum CookieKeyError {
    #[error("cannot use the portal's cookie key file {path}: {error}")]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("the portal's cookie key file {path} is malformed: {why}")]
    Malformed { path: PathBuf, why: String },
    #[error(
        "the portal's cookie key file {path} may be read by others (mode {mode:o}): chmod 600 it"
    )]
    Exposed { path: PathBuf, mode: u32 },
}

/// The keys, as last read.
pub struct CookieKeys {
    path: PathBuf,
    state: Mutex<Loaded>,
}

struct Loaded {
    looked: Instant,
    version: (SystemTime, u64),
    keys: Vec<hmac::Key>,
}

impl CookieKeys {
    /// Reads the file at `path`, making it with one new key if missing.
    pub fn open(path: &Path) -> Result<CookieKeys, CookieKeyError> {
        if !path.exists() {
            write_keys(path, &[new_key()])?;
            tracing::info!(path = %path.display(), "made the portal's cookie key");
        }
        let (version, keys) = read(path)?;
        Ok(CookieKeys {
            path: path.to_path_buf(),
            state: Mutex::new(Loaded {
                looked: Instant::now(),
                version,
                keys,
            }),
        })
    }

    /// `value.TAG`, signed with the first key.
    pub fn sign(&self, value: &str) -> String {
        let keys = self.current();
        let tag = keys
            .first()
            .map(|key| hex::encode(hmac::sign(key, value.as_bytes())))
            .unwrap_or_default();
        format!("{value}.{tag}")
    }

    /// The value of `signed` when one of the keys signed it.
    pub fn verify<'a>(&self, signed: &'a str) -> Option<&'a str> {
        let (value, tag) = signed.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        self.current()
            .iter()
            .any(|key| hmac::verify(key, value.as_bytes(), &tag).is_ok())
            .then_some(value)
    }

    /// The keys, read again if the file changed.
    fn current(&self) -> Vec<hmac::Key> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.looked.elapsed() >= LOOK_EVERY {
            state.looked = Instant::now();
            let changed = std::fs::metadata(&self.path)
                .map(|m| m.modified().ok().map(|t| (t, m.len())) != Some(state.version))
                .unwrap_or(true);
            if changed {
                match read(&self.path) {
                    Ok((version, keys)) => {
                        tracing::info!(path = %self.path.display(), keys = keys.len(), "read the portal's cookie keys again");
                        state.version = version;
                        state.keys = keys;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "the portal's cookie keys read before stay in force");
                    }
                }
            }
        }
        state.keys.clone()
    }
}

/// Puts a new key first in the file at `path` (made if missing) and keeps
/// the one that signed until now, so cookies it signed stay valid; older
/// keys go. Returns how many keys the file holds.
pub fn rotate(path: &Path) -> Result<usize, CookieKeyError> {
    let mut lines = vec![new_key()];
    if path.exists() {
        read(path)?;
        let text = std::fs::read_to_string(path).map_err(|error| io(path, error))?;
        lines.extend(key_lines(&text).take(KEEP - 1).map(str::to_string));
    }
    write_keys(path, &lines)?;
    Ok(lines.len())
}

fn new_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    hex::encode(key)
}

fn key_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
}

fn read(path: &Path) -> Result<((SystemTime, u64), Vec<hmac::Key>), CookieKeyError> {
    let meta = std::fs::metadata(path).map_err(|error| io(path, error))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CookieKeyError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    let version = (
        meta.modified().map_err(|error| io(path, error))?,
        meta.len(),
    );
    let text = std::fs::read_to_string(path).map_err(|error| io(path, error))?;
    let malformed = |why: String| CookieKeyError::Malformed {
        path: path.to_path_buf(),
        why,
    };
    let mut keys = Vec::new();
    for (n, line) in key_lines(&text).enumerate() {
        let bytes = hex::decode(line)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| malformed(format!("key {} is not 64 hex digits", n + 1)))?;
        keys.push(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
    }
    if keys.is_empty() {
        return Err(malformed("no key in it".into()));
    }
    Ok((version, keys))
}

/// Writes `lines` to `path` through a 0600 temporary file renamed over it.
fn write_keys(path: &Path, lines: &[String]) -> Result<(), CookieKeyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|error| io(dir, error))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|error| io(&tmp, error))?;
    let text = format!(
        "# The portal's cookie keys: the first signs, all verify (daas-server cookie-key rotate).\n{}\n",
        lines.join("\n")
    );
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| io(&tmp, error))?;
    // A rotation run as root keeps the file the server's.
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()));
    }
    std::fs::rename(&tmp, path).map_err(|error| io(path, error))
}

fn io(path: &Path, error: std::io::Error) -> CookieKeyError {
    CookieKeyError::Io {
        path: path.to_path_buf(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for_a_new_look() {
        std::thread::sleep(LOOK_EVERY + Duration::from_millis(50));
    }

    #[test]
    fn the_key_is_made_once_private_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let keys = CookieKeys::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let cookie = keys.sign("id-1");
        assert_eq!(keys.verify(&cookie), Some("id-1"));
        // Another process on the same file (a restart, a replica).
        let again = CookieKeys::open(&path).unwrap();
        assert_eq!(again.verify(&cookie), Some("id-1"));
        // Another file: another key.
        let other = CookieKeys::open(&dir.path().join("other")).unwrap();
        assert_eq!(other.verify(&cookie), None);
        for bad in ["id-1", "id-1.00", "id-2.", &format!("x{cookie}")] {
            assert_eq!(keys.verify(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_rotation_signs_nobody_out_and_the_next_one_ends_the_oldest_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let keys = CookieKeys::open(&path).unwrap();
        let before = keys.sign("old");
        assert_eq!(rotate(&path).unwrap(), 2);
        wait_for_a_new_look();
        let after = keys.sign("new");
        assert_ne!(after.split_once('.'), before.split_once('.'));
        assert_eq!(
            keys.verify(&before),
            Some("old"),
            "the previous key verifies"
        );
        assert_eq!(keys.verify(&after), Some("new"));
        assert_eq!(rotate(&path).unwrap(), 2);
        wait_for_a_new_look();
        assert_eq!(keys.verify(&before), None, "two rotations end a key");
        assert_eq!(keys.verify(&after), Some("new"));
    }

    #[test]
    fn a_bad_file_is_refused_at_start_and_ignored_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let keys = CookieKeys::open(&path).unwrap();
        let cookie = keys.sign("id");
        std::fs::write(&path, "not-hex\n").unwrap();
        let err = CookieKeys::open(&path).err().unwrap().to_string();
        assert!(err.contains("key 1 is not 64 hex digits"), "{err}");
        wait_for_a_new_look();
        assert_eq!(
            keys.verify(&cookie),
            Some("id"),
            "the keys read before stay"
        );
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CookieKeys::open(&path).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
