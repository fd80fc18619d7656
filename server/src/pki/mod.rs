//! A small certificate authority for mutual TLS: the CA, the server's
//! certificate, user certificates (CN = AD account name, optional admin
//! role) and agent certificates (bound to one session), and reading who a
//! verified client certificate names.
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM; `ring` is the only crypto provider.
//!
//! One concern per file, each reached as `crate::pki::X` through the
//! re-exports below:
//! - `issuing`: the CA (made or loaded) and the certificates it signs;
//! - `identity`: who a client certificate names (read on every call), and
//!   the names and URIs that say it;
//! - `certificate`: the facts the audit trail and the checks read from a
//!   certificate's bytes (fingerprint, serial, subject, issuer);
//! - `disk`: where a PKI directory keeps each file, and writing them;
//! - `init`: what `daas-server pki init` / `pki issue` and the dev mode
//!   make in that directory;
//! - `revoked`: the revocation list;
//! - `roots`: the roots the server's own TLS clients trust.

use std::path::PathBuf;

mod certificate;
mod disk;
mod identity;
mod init;
mod issuing;
pub mod revoked;
pub mod roots;

pub use certificate::{
    fingerprint, fingerprint_and_serial, issuer_of, pem_to_der, subject_and_fingerprint, subject_of,
};
pub use disk::PkiPaths;
pub use identity::{ADMIN_ROLE_URI, agent_uri, identity_of};
pub use init::{ensure_dev, init, issue_user_files, localhost_names};
pub use issuing::{AgentAuthority, Ca, Issued, Validity};

/// What can go wrong; every message names the file or the name involved.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot create the directory {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{} does not exist; create the CA first with `daas-server pki init`",
        path.display()
    )]
    NoCa { path: PathBuf },
    #[error(
        "the root CA's key {} is not there (kept offline?): pass --ca-key with its path",
        path.display()
    )]
    OfflineRoot { path: PathBuf },
    #[error("certificate {subject} {why}")]
    WrongIssuer { subject: String, why: String },
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error(
        "{} exists but {} does not; restore it or remove both",
        present.display(),
        missing.display()
    )]
    Incomplete { present: PathBuf, missing: PathBuf },
    #[error("cannot use {}: {why}", path.display())]
    BadFile { path: PathBuf, why: String },
    #[error("invalid user name {name:?}: {why}")]
    InvalidUser { name: String, why: String },
    #[error(
        "invalid group name {name:?}: a group in a certificate is 1-64 letters, digits, '.', '_' and '-'"
    )]
    InvalidGroup { name: String },
    #[error("invalid session id {id:?}: {why}")]
    InvalidSession { id: String, why: String },
    #[error("invalid server name {name:?}: {why}")]
    InvalidServerName { name: String, why: String },
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerName,
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    #[error("cannot make {what}: {error}")]
    Generate { what: String, error: rcgen::Error },
    #[error("client certificate {subject}: {why}")]
    BadCertificate { subject: String, why: String },
    #[error("the revocation list {}: {why}", path.display())]
    Revocations { path: PathBuf, why: String },
    #[error(
        "client certificate sha256 {fingerprint} is revoked (daas-server pki revoke): ask an administrator for a new one"
    )]
    Revoked { fingerprint: String },
}
