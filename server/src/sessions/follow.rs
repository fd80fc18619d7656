//! Following a session: its stored events after a sequence number, then the
//! live ones, until it settles or the server stops. The stream every
//! caller gets (gRPC's WatchSession and CreateSession, the portal's
//! server-sent events, REST's wait for READY).

use std::pin::Pin;

use daas_api::v1::{SessionEvent, SessionState};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;

use super::limits::StreamSlot;
use crate::{
    domain::error::Error,
    store::{Store, events::Subscription},
};

/// How long a follower waits for a live event before it looks in the store.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// A session's events; an error ends it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<SessionEvent, Error>> + Send>>;

/// Streams a session's events after `after`, then live ones, until the
/// session settles (READY, FAILED, DESTROYED) or the server stops. `slot`
/// is held while the stream is open. It subscribes to the live events
/// before it returns: whatever is published after this call is followed.
pub fn follow(
    store: Store,
    id: String,
    after: u64,
    shutdown: CancellationToken,
    slot: StreamSlot,
) -> EventStream {
    let live = store.subscribe(&id);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(err) = forward(&store, &id, live, after, &shutdown, &tx).await {
            let _ = tx.send(Err(err)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn forward(
    store: &Store,
    id: &str,
    mut live: Subscription,
    mut last: u64,
    shutdown: &CancellationToken,
    tx: &mpsc::Sender<Result<SessionEvent, Error>>,
) -> Result<(), Error> {
    // Replay what is stored; `live` was subscribed before, so nothing falls
    // between the two.
    let mut settled = None;
    for event in store.events_after(id, last).await? {
        last = event.sequence;
        settled = Some(state_of(&event).is_settled());
        if tx.send(Ok(event)).await.is_err() {
            return Ok(());
        }
    }
    if settled.is_none() {
        // Nothing after `last`: the caller has seen it all. A settled
        // session ends the stream (after whatever landed meanwhile).
        let record = store.get(id).await?;
        if record.is_some_and(|r| r.state.is_settled()) {
            for event in store.events_after(id, last).await? {
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(());
                }
            }
            return Ok(());
        }
    }
    if settled == Some(true) {
        return Ok(());
    }
    loop {
        let event = tokio::select! {
            event = live.recv() => event,
            // A live event can be missed (another server's, while the
            // notifications were down): look in the store now and then.
            _ = tokio::time::sleep(RECHECK) => Err(broadcast::error::RecvError::Lagged(0)),
            _ = shutdown.cancelled() => {
                return Err(Error::Unavailable(format!(
                    "the server is shutting down; the session goes on: follow it again with WatchSession {id}"
                )));
            }
            _ = tx.closed() => return Ok(()),
        };
        let events = match event {
            Ok(event) if event.session_id == id && event.sequence == last + 1 => vec![event],
            // One came before another that was published later (two
            // writers), or was missed: the store has them all, in order.
            Ok(event) if event.session_id == id && event.sequence > last => {
                store.events_after(id, last).await?
            }
            Ok(_) => continue,
            // Too slow for the live feed, or a recheck: catch up from the store.
            Err(broadcast::error::RecvError::Lagged(_)) => store.events_after(id, last).await?,
            Err(broadcast::error::RecvError::Closed) => {
                return Err(Error::Unavailable("the server is shutting down".into()));
            }
        };
        for event in events {
            last = event.sequence;
            let done = state_of(&event).is_settled() && event.session.is_some();
            if tx.send(Ok(event)).await.is_err() || done {
                return Ok(());
            }
        }
    }
}

fn state_of(event: &SessionEvent) -> SessionState {
    SessionState::try_from(event.state).unwrap_or(SessionState::Unspecified)
}
