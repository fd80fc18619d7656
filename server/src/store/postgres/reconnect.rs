//! Riding out a database that restarts or fails over: a connection is
//! taken from the pool only once the database answers (a connection it
//! closed is dropped, a refused one tried again) for up to
//! [`RECONNECT_FOR`], and a write whose transaction was cut off before its
//! commit is run again. Work in progress pauses instead of failing.

use std::time::{Duration, Instant};

use deadpool_postgres::{Object, PoolError};

use super::PostgresStore;
use crate::store::StoreError;

/// How long a call waits for the database to come back.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// Whether `err` says the connection or the database went away (closed,
/// refused, shut down, starting up), not that the query was wrong.
pub(crate) fn is_transient(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        // 08: connection exception; 57P0x: shutdown, crash, starting up.
        return code.starts_with("08") || code.starts_with("57P");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

impl PostgresStore {
    /// A live connection from the pool, waiting up to [`RECONNECT_FOR`]
    /// for the database.
    pub(super) async fn client(&self) -> Result<Object, StoreError> {
        let deadline = Instant::now() + RECONNECT_FOR;
        let mut pause = Duration::from_millis(50);
        loop {
            let err = match self.pool.get().await {
                Ok(client) if !client.is_closed() => return Ok(client),
                // The database closed it (a restart): not handed out again.
                Ok(client) => {
                    let _ = Object::take(client);
                    continue;
                }
                Err(PoolError::Backend(source)) if is_transient(&source) => {
                    super::pool_error(PoolError::Backend(source))
                }
                Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Create)) => {
                    StoreError::Connect("connecting timed out".into())
                }
                Err(err) => return Err(super::pool_error(err)),
            };
            if Instant::now() + pause > deadline {
                return Err(err);
            }
            tracing::debug!(error = %err, "waiting for the database");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Runs `attempt` again while it fails because the database went away
    /// (up to [`RECONNECT_FOR`]); `attempt` must have no effect when it
    /// fails (one transaction, rolled back).
    pub(super) async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut retry = Retry::new();
        loop {
            match attempt().await {
                Err(err) if retry.again(&err).await => {}
                other => return other,
            }
        }
    }
}

/// The budget of a call that runs again while the database is away.
pub(super) struct Retry {
    deadline: Instant,
}

impl Retry {
    pub(super) fn new() -> Retry {
        Retry {
            deadline: Instant::now() + RECONNECT_FOR,
        }
    }

    /// Whether to run again after `err`: the database went away and
    /// [`RECONNECT_FOR`] has not passed (then after a pause).
    pub(super) async fn again(&mut self, err: &StoreError) -> bool {
        if !err.is_unavailable() || Instant::now() >= self.deadline {
            return false;
        }
        tracing::debug!(error = %err, "the database went away; trying again");
        tokio::time::sleep(Duration::from_millis(200)).await;
        true
    }
}
