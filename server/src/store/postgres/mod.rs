//! The store several servers share: one PostgreSQL database. Every server
//! (replica) is equal; the database is the only state they share, and its
//! transactions coordinate them: a create's admission runs under one
//! advisory lock (the limits hold across replicas), a session's events are
//! numbered under its row's lock, and the schema is migrated under another
//! (replicas starting together migrate once).
//!
//! This file connects. The schema is in `migrations/` (applied by
//! `migrate.rs`), rows become records in `rows.rs`, and the `SessionStore`
//! methods (`session_store.rs`) run the queries of `sessions.rs`,
//! `reads.rs`, `event_log.rs` and `records.rs`.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::RootCertStore;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;
use crate::store::events::Hub;

mod activity;
mod capped;
mod commands;
mod create_rate;
mod event_log;
mod leases;
mod migrate;
mod nodes;
mod notify;
mod outbox;
mod passes;
mod reads;
mod reconnect;
mod records;
mod rows;
mod schedules;
mod session_store;
mod sessions;
mod snapshots;
#[cfg(any(test, feature = "testkit"))]
pub mod test_cluster;
#[cfg(test)]
mod tests;
mod tickets;

/// How long a transaction of this server may sit idle before the database
/// ends it (every transaction here lasts milliseconds).
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(5);

/// Advisory lock ids (`pg_advisory_xact_lock`), one per thing serialised;
/// the high half spells "daas".
mod locks {
    /// Schema migrations.
    pub const MIGRATE: i64 = 0x6461_6173_0000_0001;
    /// A create's or a claim's admission (limits, slot, request key).
    pub const ADMISSION: i64 = 0x6461_6173_0000_0002;
    /// Opening a portal sign-in (its limits).
    pub const SIGNIN: i64 = 0x6461_6173_0000_0003;
    /// Issuing a gateway ticket (its limits).
    pub const TICKETS: i64 = 0x6461_6173_0000_0004;
    /// Starting a clone on a node (`max_clones_per_node`).
    pub const CLONES: i64 = 0x6461_6173_0000_0005;
    /// Adding a schedule (the most a user may have).
    pub const SCHEDULES: i64 = 0x6461_6173_0000_0006;
}

/// The message of a PostgreSQL error: the server's own words when it said
/// something, else the client's with its cause.
pub(crate) use reconnect::is_transient;

pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(err) {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    }
}

/// Names the operation a PostgreSQL error came from.
trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Postgres { context, source })
    }
}

/// How to reach the database.
pub struct Connection {
    /// Host, port, user, database and options; the password too, from the
    /// server's secrets (never from its config file).
    pub config: tokio_postgres::Config,
    /// The roots a TLS connection's server certificate must chain to.
    pub roots: RootCertStore,
    /// The most connections this server opens.
    pub max_connections: usize,
}

impl Connection {
    /// The connection `[store]` and the server's secrets describe: the
    /// URL, the password, the system's roots and `ca_file`.
    pub fn from_config(
        postgres: &crate::config::store::Postgres,
        password: Option<&crate::config::Secret>,
    ) -> Result<Connection, StoreError> {
        let mut config: tokio_postgres::Config = postgres
            .url
            .parse()
            .map_err(|e| StoreError::Connect(format!("store.url: {e}")))?;
        if let Some(password) = password {
            config.password(password.expose());
        }
        config.application_name("daas-server");
        let roots =
            crate::pki::roots::system_roots_and(postgres.ca_file.as_deref()).map_err(|why| {
                let path = postgres.ca_file.as_ref().map(|p| p.display().to_string());
                StoreError::Connect(format!("store.ca_file {}: {why}", path.unwrap_or_default()))
            })?;
        Ok(Connection {
            config,
            roots,
            max_connections: postgres.max_connections,
        })
    }
}

/// The store on PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    /// Connections for passes (`passes.rs`).
    pass_pool: Pool,
    hub: Hub,
    /// Names this server in its notifications and its leases.
    server: Arc<str>,
    /// How long the leases this server takes run.
    lease_ms: std::sync::atomic::AtomicI64,
    /// The sessions this server works on, and their epochs.
    held: crate::store::lease::Held,
    /// Hands other servers' events to the watchers here.
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connects, and brings the schema up to date (once, whatever the
    /// number of servers starting together).
    pub async fn connect(connection: Connection) -> Result<PostgresStore, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Connect(e.to_string()))?
            .with_root_certificates(connection.roots)
            .with_no_client_auth();
        let mut config = connection.config;
        // A server frozen in the middle of a transaction (SIGSTOP, a VM
        // paused) must not keep its row locks: the database ends such a
        // transaction, so that another server can take the session over.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={}",
            config.get_options().unwrap_or_default(),
            IDLE_IN_TRANSACTION.as_millis()
        );
        config.options(options.trim());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let tls = MakeRustlsConnect::new(tls);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // A quarter of the connections for passes, which hold theirs while
        // they run: they never starve the requests.
        let (queries, passes) = split_connections(connection.max_connections);
        let pool = Pool::builder(manager)
            .max_size(queries)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        let pass_manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // A pass that finds none free waits for the next round.
        let pass_pool = Pool::builder(pass_manager)
            .max_size(passes)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(1)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        let mut client = pool.get().await.map_err(pool_error)?;
        migrate::migrate(&mut client).await?;
        drop(client);
        let hub = Hub::default();
        let server: Arc<str> = uuid::Uuid::new_v4().simple().to_string().into();
        let listening = Arc::new(tokio::sync::Notify::new());
        let listener = tokio::spawn(
            notify::Listener {
                config,
                tls,
                pool: pool.clone(),
                server: server.to_string(),
                hub: hub.clone(),
                listening: listening.clone(),
            }
            .run(),
        );
        // Watchers here see other servers' events from the start (failing
        // that, they find them in the store: see `notify.rs`).
        if tokio::time::timeout(Duration::from_secs(10), listening.notified())
            .await
            .is_err()
        {
            tracing::warn!("not yet listening for other servers' events; watchers will poll");
        }
        Ok(PostgresStore {
            pool,
            pass_pool,
            hub,
            server,
            lease_ms: crate::store::lease::DEFAULT_LEASE_MS.into(),
            held: Default::default(),
            listener,
        })
    }

    /// This server, as it holds leases.
    fn holder(&self) -> leases::Holder {
        leases::Holder {
            me: self.server.clone(),
            lease_ms: self.lease_ms.load(std::sync::atomic::Ordering::Relaxed),
            held: self.held.clone(),
        }
    }
}

/// `max_connections` split between queries and passes: a quarter (at
/// least one) for passes, the rest (at least one) for queries.
fn split_connections(max_connections: usize) -> (usize, usize) {
    let passes = (max_connections / 4).max(1);
    (max_connections.saturating_sub(passes).max(1), passes)
}

fn pool_error(err: deadpool_postgres::PoolError) -> StoreError {
    match err {
        deadpool_postgres::PoolError::Backend(source) => StoreError::Postgres {
            context: "connecting",
            source,
        },
        other => StoreError::Connect(other.to_string()),
    }
}
