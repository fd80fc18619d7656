//! The embedded default store: one SQLite file holding sessions and their
//! events (WAL mode). Every event is committed before it is published to
//! live watchers, and published while the connection is still held, so
//! watchers see a session's events in sequence order.
//!
//! This file opens the database. The schema is in `migrations/` (applied
//! by `migrate.rs`), rows become records in `rows.rs`, and the
//! `SessionStore` methods (`session_store.rs`) run the queries of
//! `sessions.rs`, `reads.rs`, `event_log.rs`, `activity.rs`, `audit.rs`
//! and `signins.rs`.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;
use crate::store::events::Hub;

mod activity;
mod audit;
mod commands;
mod create_rate;
mod event_log;
mod leases;
mod migrate;
mod nodes;
mod outbox;
mod reads;
mod rows;
mod schedules;
mod session_store;
mod sessions;
mod signins;
mod snapshots;
#[cfg(test)]
mod tests;
mod tickets;

/// Names the operation a SQLite error came from.
trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { context, source })
    }
}

/// The embedded default store: one SQLite file.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    hub: Hub,
    /// This server, as it holds leases (see `crate::store::lease`).
    holder: Holder,
    /// The passes this server runs (see `crate::store::pass`).
    passes: crate::store::pass::LocalPasses,
}

/// The server a store writes for: its name and how long its leases run.
#[derive(Clone)]
pub(super) struct Holder {
    pub me: Arc<str>,
    pub lease_ms: Arc<std::sync::atomic::AtomicI64>,
    /// The sessions this server works on, and their epochs.
    pub held: crate::store::lease::Held,
}

impl Holder {
    fn new() -> Holder {
        Holder {
            me: uuid::Uuid::new_v4().simple().to_string().into(),
            lease_ms: Arc::new(crate::store::lease::DEFAULT_LEASE_MS.into()),
            held: Default::default(),
        }
    }

    pub fn lease_ms(&self) -> i64 {
        self.lease_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).context("opening the database")?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context("enabling WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context("setting synchronous")?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .context("enabling foreign keys")?;
        conn.busy_timeout(Duration::from_secs(5))
            .context("setting the busy timeout")?;
        migrate::migrate(&mut conn)?;

        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            hub: Hub::default(),
            holder: Holder::new(),
            passes: Default::default(),
        })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Hub) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_holder(move |conn, live, _| f(conn, live)).await
    }

    /// Like `with`, for a write that takes, keeps or checks a lease.
    async fn with_holder<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Hub, &Holder) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let live = self.hub.clone();
        let holder = self.holder.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn, &live, &holder)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Proves the connection takes writes: a write transaction that rewrites
/// the schema version unchanged.
fn check_writable(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting a write transaction")?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context("reading the schema version")?;
    tx.pragma_update(None, "user_version", version)
        .context("writing the schema version")?;
    tx.commit().context("committing a write")
}
