//! Creates that wait for a provisioning permit wait in the store (see
//! `crate::store::queue`): on servers sharing a store, a server with a free
//! permit takes the create another server has kept waiting longest, and a
//! server that takes over the sessions of a dead one gives the creates it
//! had not started back to the queue instead of failing them.

use std::time::Duration;

use daas_api::v1::SessionState;

use super::Pipeline;
use crate::{domain::password::PasswordHash, store::SessionRecord};

/// How long a create waits on its server before another may take it: its
/// own server starts it at once when it has a free permit.
const TAKE_AFTER: Duration = Duration::from_secs(1);
/// Leases a server stays up before it takes other servers' creates.
const STAY_UP: u32 = 3;
/// How often a server with a free permit looks for a waiting create.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How often a waiting create checks that it is still this server's.
const STILL_MINE_EVERY: Duration = Duration::from_secs(1);

impl Pipeline {
    /// Until shutdown (a shared store only): whenever this server could
    /// start a user's create at once, takes the one another server has kept
    /// waiting longest and runs it. Not in its first [`STAY_UP`] leases: a
    /// server that crashes again soon after its start (a crash loop) would
    /// fail the creates it took from servers that stay up.
    pub(super) async fn take_waiting_creates(self, lease: Duration) {
        let shutdown = self.shutdown_token();
        tokio::select! {
            _ = tokio::time::sleep(lease * STAY_UP) => {}
            _ = shutdown.cancelled() => return,
        }
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            while self.inner.permits.free_for_user() && !shutdown.is_cancelled() {
                let taken = self
                    .inner
                    .store
                    .take_queued(i64::try_from(TAKE_AFTER.as_millis()).unwrap_or(i64::MAX))
                    .await;
                match taken {
                    Ok(Some((record, password))) => {
                        tracing::info!(session = %record.id, user = %record.username, "took a create another server kept waiting");
                        self.start(record, password);
                        // Let the task take its permit before looking again.
                        tokio::task::yield_now().await;
                    }
                    Ok(None) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, "could not look for creates waiting on other servers");
                        break;
                    }
                }
            }
        }
    }

    /// Resolves once `record`'s create is no longer waiting here (another
    /// server took it, or it moved on); never on the embedded store, nor
    /// for a warm pool's desktop.
    pub(super) async fn moved_elsewhere(&self, record: &SessionRecord) {
        if !self.inner.store.is_shared() || record.pool.is_some() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(STILL_MINE_EVERY).await;
            match self.inner.store.get(&record.id).await {
                Ok(Some(now)) if now.state == SessionState::Queued => {}
                Ok(_) => return,
                Err(err) => {
                    tracing::debug!(session = %record.id, error = %err, "cannot check a waiting create");
                }
            }
        }
    }

    /// Runs a create a stopped server left QUEUED: on the embedded store,
    /// here (this is its server, started again); on a shared one, it goes
    /// back to the queue, for whichever server has a free permit first (a
    /// server just started, maybe in a crash loop, takes none).
    pub(super) async fn run_left_waiting(&self, record: SessionRecord, password: PasswordHash) {
        let store = &self.inner.store;
        if !store.is_shared() {
            tracing::info!(session = %record.id, "running a create left waiting by the previous process");
            self.start(record, password);
            return;
        }
        match store.release_queued(&record.id).await {
            Ok(true) => {
                tracing::info!(session = %record.id, "a create a stopped server left waiting is back in the queue");
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(session = %record.id, error = %err, "could not give a create back to the queue; running it here");
                self.start(record, password);
            }
        }
    }

    /// The password hash a QUEUED create kept, if it can run here (not a
    /// warm pool's desktop; kept by a server that keeps them).
    pub(super) async fn waiting_password(&self, record: &SessionRecord) -> Option<PasswordHash> {
        if record.pool.is_some() {
            return None;
        }
        match self.inner.store.queued_password(&record.id).await {
            Ok(password) => password,
            Err(err) => {
                tracing::warn!(session = %record.id, error = %err, "cannot read a waiting create; failing it");
                None
            }
        }
    }
}
