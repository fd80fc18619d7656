//! A PKI directory on disk: where it keeps each file (the CA, the agents'
//! CA, the server's pair, `users/`), and writing them: private keys 0600,
//! directories 0700, never over an existing file; a certificate without
//! its key (or the reverse) is an error that names both.

use std::{
    fs::DirBuilder,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use super::{
    PkiError,
    issuing::{Ca, Issued},
};
use crate::files::write_private;

/// The files of a PKI directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(dir: &Path) -> PkiPaths {
        PkiPaths {
            dir: dir.to_path_buf(),
        }
    }
    /// The CA certificate, for clients and the server to trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The root CA's key (0600): signs the server's, the users' and the
    /// agents' CA's certificates. `init --offline-root` keeps it elsewhere.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
    /// The agents' CA (an intermediate): signs agent certificates alone.
    pub fn agents_ca(&self) -> PathBuf {
        self.dir.join("agents-ca.pem")
    }
    /// Its key (0600): the only CA key the server keeps online.
    pub fn agents_ca_key(&self) -> PathBuf {
        self.dir.join("agents-ca-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }
    /// The users' directory (0700 when created here).
    pub fn users(&self) -> PathBuf {
        self.dir.join("users")
    }
    pub fn user_cert(&self, name: &str) -> PathBuf {
        self.users().join(format!("{name}.pem"))
    }
    pub fn user_key(&self, name: &str) -> PathBuf {
        self.users().join(format!("{name}-key.pem"))
    }
}

/// Creates `dir` and its missing parents, 0700; an existing dir is left as
/// it is.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| PkiError::CreateDir {
            path: dir.to_path_buf(),
            error,
        })
}

/// Refuses, naming the first of `paths` that exists.
pub(super) fn refuse_existing(paths: &[PathBuf]) -> Result<(), PkiError> {
    match paths.iter().find(|p| p.exists()) {
        Some(path) => Err(PkiError::Exists { path: path.clone() }),
        None => Ok(()),
    }
}

/// Writes a certificate (default mode) and its key (0600), neither of which
/// may exist.
pub(super) fn write_pair(issued: &Issued, cert: &Path, key: &Path) -> Result<(), PkiError> {
    refuse_existing(&[cert.to_path_buf(), key.to_path_buf()])?;
    write_private(key, issued.key_pem.as_bytes()).map_err(|error| PkiError::Write {
        path: key.to_path_buf(),
        error,
    })?;
    std::fs::write(cert, issued.cert_pem.as_bytes()).map_err(|error| PkiError::Write {
        path: cert.to_path_buf(),
        error,
    })
}

/// What state a certificate + key pair of files is in.
pub(super) enum Pair {
    Present,
    Missing,
}

/// Whether both files of a pair are there or neither; half a pair is an
/// error naming both.
pub(super) fn pair_state(cert: &Path, key: &Path) -> Result<Pair, PkiError> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(Pair::Present),
        (false, false) => Ok(Pair::Missing),
        (true, false) => Err(PkiError::Incomplete {
            present: cert.to_path_buf(),
            missing: key.to_path_buf(),
        }),
        (false, true) => Err(PkiError::Incomplete {
            present: key.to_path_buf(),
            missing: cert.to_path_buf(),
        }),
    }
}

/// Writes a CA made here: its certificate and its key (0600), neither of
/// which may exist.
pub(super) fn write_ca(ca: &Ca, cert: &Path, key: &Path) -> Result<(), PkiError> {
    let issued = Issued {
        cert_pem: ca.cert_pem().to_string(),
        key_pem: ca.key_pem().to_string(),
    };
    write_pair(&issued, cert, key)
}
