//! `[store]`: where sessions live. The embedded SQLite file (`database`)
//! by default; a PostgreSQL database when `url` is set, which several
//! servers share. The password is a secret (`secrets.store_password_*`),
//! never part of the URL.

use std::path::PathBuf;

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use super::raw::given;

/// `[store]` as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=...]`; empty: SQLite.
    #[serde(default)]
    pub url: String,
    /// The CA the database's certificate must chain to, beside the system's.
    #[serde(default)]
    pub ca_file: Option<RelativePathBuf>,
    /// Connections this server opens at most.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a server's hold on a session it works on lasts unless
    /// renewed: another server takes a session over this long after its
    /// server stopped answering.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: std::time::Duration,
}

fn default_lease() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

fn default_max_connections() -> usize {
    16
}

impl Default for StoreSpec {
    fn default() -> Self {
        StoreSpec {
            url: String::new(),
            ca_file: None,
            max_connections: default_max_connections(),
            lease: default_lease(),
        }
    }
}

/// A PostgreSQL store, checked.
#[derive(Debug, Clone)]
pub struct Postgres {
    /// The URL as written (no password in it).
    pub url: String,
    pub ca_file: Option<PathBuf>,
    pub max_connections: usize,
}

impl Postgres {
    /// Which database, for messages: the URL (it holds no secret).
    pub fn describe(&self) -> &str {
        &self.url
    }
}

/// Checks `[store]`.
pub fn check(spec: &StoreSpec) -> Result<Option<Postgres>, String> {
    if spec.url.is_empty() {
        return Ok(None);
    }
    let invalid = |why: &str| format!("`store.url`: {why}");
    if !(spec.url.starts_with("postgres://") || spec.url.starts_with("postgresql://")) {
        return Err(invalid(
            "give a postgres:// URL, e.g. \"postgres://daas@db.example.org/daas?sslmode=require\"",
        ));
    }
    if spec.url.contains("sslmode=verify-") {
        return Err(invalid(
            "use sslmode=require: the server's certificate is always verified (against the \
             system's roots and store.ca_file, and it must name the host)",
        ));
    }
    let parsed: tokio_postgres::Config = spec
        .url
        .parse()
        .map_err(|e| invalid(&format!("not a PostgreSQL URL ({e})")))?;
    if parsed.get_password().is_some() {
        return Err(invalid(
            "the password must not be in the URL: put it in a file named by \
             secrets.store_password_file (or a variable named by secrets.store_password_env)",
        ));
    }
    if spec.lease < std::time::Duration::from_secs(1) {
        return Err("`store.lease`: at least 1s".into());
    }
    if spec.max_connections < 2 {
        return Err("`store.max_connections`: at least 2".into());
    }
    Ok(Some(Postgres {
        url: spec.url.clone(),
        ca_file: given(&spec.ca_file),
        max_connections: spec.max_connections,
    }))
}
