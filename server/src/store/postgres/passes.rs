//! A pass held by this server (see `store/pass.rs`): a transaction of its
//! own holding `pg_try_advisory_xact_lock` on the pass's id, kept alive
//! every third of the lease while the pass runs. The transaction may sit
//! idle for one lease: a server frozen or cut off holding a pass loses it
//! then, and the database lets the lock go with the transaction.

use std::time::Duration;

use deadpool_postgres::Object;
use tokio::sync::oneshot;

use super::{Context, PostgresStore};
use crate::store::{StoreError, pass::Pass, pass::lock_id};

impl PostgresStore {
    /// The pass named `name`, unless another server (or this one) runs it.
    pub(super) async fn try_pass(&self, name: &str) -> Result<Option<Pass>, StoreError> {
        let client = match self.pass_pool.get().await {
            Ok(client) => client,
            // Every pass connection is busy: the next round.
            Err(deadpool_postgres::PoolError::Timeout(_)) => return Ok(None),
            Err(err) => return Err(super::pool_error(err)),
        };
        let lease_ms = self
            .lease_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1_000);
        // SET cannot take a parameter; the number is ours.
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {lease_ms}"
            ))
            .await
            .context("starting a pass")?;
        let taken: bool = match client
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&lock_id(name)])
            .await
        {
            Ok(row) => row.try_get(0).context("reading a pass's lock")?,
            Err(source) => {
                let _ = Object::take(client);
                return Err(StoreError::Postgres {
                    context: "taking a pass",
                    source,
                });
            }
        };
        if !taken {
            end(client, "ROLLBACK").await;
            return Ok(None);
        }
        let (release, released) = oneshot::channel();
        let every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1_000));
        tokio::spawn(hold(client, name.to_string(), every, released));
        Ok(Some(Pass::shared(release)))
    }
}

/// Keeps the pass's transaction alive until the pass is let go, then ends
/// it.
async fn hold(client: Object, name: String, every: Duration, mut released: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut released => break,
            _ = tokio::time::sleep(every) => {
                if let Err(err) = client.simple_query("SELECT 1").await {
                    tracing::warn!(pass = %name, error = %super::describe(&err), "lost the lock of a pass; another server may run it too");
                    let _ = Object::take(client);
                    return;
                }
            }
        }
    }
    end(client, "COMMIT").await;
}

/// Ends the pass's transaction; a connection that cannot is closed, not
/// handed back in a transaction.
async fn end(client: Object, how: &str) {
    if client.batch_execute(how).await.is_err() {
        let _ = Object::take(client);
    }
}
