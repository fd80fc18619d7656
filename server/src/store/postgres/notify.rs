//! Events across servers: a server that stores an event notifies the
//! channel `daas_events` in the same transaction (so the notification goes
//! out when the event is committed, and never for one rolled back); every
//! server listens on a connection of its own and hands the events of the
//! sessions watched there to their watchers. A notification lost (the
//! listening connection dropped, the database restarted) costs a watcher
//! only a delay: followers look in the store when an event is missing or
//! when none came for a while (`crate::sessions::follow`).

use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::{StreamExt, stream};
use tokio_postgres::{AsyncMessage, Transaction};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Context, event_log};
use crate::store::{StoreError, events::Hub};

/// The channel every server listens on.
const CHANNEL: &str = "daas_events";

/// Tells every server that `session_id` has event `sequence`, once the
/// transaction commits. `server` names the writer (it publishes its own
/// events itself).
pub(super) async fn notify(
    tx: &Transaction<'_>,
    server: &str,
    session_id: &str,
    sequence: u64,
) -> Result<(), StoreError> {
    let payload = format!("{server} {sequence} {session_id}");
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .context("notifying the other servers")?;
    Ok(())
}

/// What listening needs: how to connect, the pool to read events with,
/// this server's name and its watchers.
pub(super) struct Listener {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub pool: Pool,
    pub server: String,
    pub hub: Hub,
    /// Told each time the listening starts.
    pub listening: std::sync::Arc<tokio::sync::Notify>,
}

impl Listener {
    /// Listens until the task is aborted, connecting again (after a pause)
    /// whenever the connection is lost.
    pub async fn run(self) {
        loop {
            if let Err(err) = self.listen().await {
                tracing::warn!(error = %err, "not listening for other servers' events; retrying in 1s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn listen(&self) -> Result<(), StoreError> {
        let (client, mut connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .context("connecting to listen")?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(())
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .context("listening")?;
        self.listening.notify_one();
        while let Some(payload) = rx.recv().await {
            self.deliver(&payload).await;
        }
        drop(client);
        match driver.await {
            Ok(Err(source)) => Err(StoreError::Postgres {
                context: "listening",
                source,
            }),
            _ => Err(StoreError::Connect("the listening connection ended".into())),
        }
    }

    /// Hands another server's event to its watchers here, if any.
    async fn deliver(&self, payload: &str) {
        let mut parts = payload.splitn(3, ' ');
        let (Some(server), Some(sequence), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Ok(sequence) = sequence.parse::<u64>() else {
            return;
        };
        if server == self.server || !self.hub.is_watched(id) {
            return;
        }
        let event = match self.pool.get().await {
            Ok(client) => event_log::event(&**client, id, sequence).await,
            Err(err) => Err(StoreError::Connect(err.to_string())),
        };
        match event {
            Ok(Some(event)) => self.hub.publish_to_watchers(&event),
            // Gone already (a claim's build history, say).
            Ok(None) => {}
            // The watcher finds it in the store on its own.
            Err(err) => tracing::debug!(error = %err, "reading another server's event"),
        }
    }
}
