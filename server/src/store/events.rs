//! Live events, one channel per watched session (as mini-redis keeps one
//! per key): publishing a line of one session wakes only that session's
//! watchers, and a session nobody watches has no channel at all. Taps
//! (the webhooks) see every session's events, with no channel.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use daas_api::v1::SessionEvent;
use tokio::sync::broadcast;

/// Events a slow watcher may fall behind by before it catches up from the
/// store. A channel keeps this many slots from the start, so they hold an
/// `Arc` each, not an event (about 0.6 KiB).
const CHANNEL_CAPACITY: usize = 64;

type Channels = HashMap<String, broadcast::Sender<Arc<SessionEvent>>>;

/// Sees every event of every session as it is published (after it is
/// stored), in the order of publication. It runs while the store holds its
/// connection, so it must not block: hand the event to a bounded queue
/// (`try_send`) and return.
pub type Tap = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// Names the webhooks that want to be told about an event: the store
/// writes a delivery for each in the event's transaction (see
/// `store::outbox`). It runs inside the write, so it must be quick.
pub type Outbox = Arc<dyn Fn(&SessionEvent) -> Vec<String> + Send + Sync>;

/// The live side of the event log. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hub {
    channels: Arc<Mutex<Channels>>,
    /// Store-wide observers (webhooks), unlike a session's watchers.
    taps: Arc<RwLock<Vec<Tap>>>,
    /// Which webhooks want which event.
    outbox: Arc<RwLock<Option<Outbox>>>,
}

/// One watcher's feed of a session's live events; its channel goes away
/// with its last subscription.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<SessionEvent>>,
    channels: Arc<Mutex<Channels>>,
    id: String,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Live events of session `id` from now on.
    pub fn subscribe(&self, id: &str) -> Subscription {
        let rx = self
            .lock()
            .entry(id.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription {
            rx,
            channels: self.channels.clone(),
            id: id.to_string(),
        }
    }

    /// Sets which webhooks want which event.
    pub fn set_outbox(&self, outbox: Outbox) {
        *self
            .outbox
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(outbox);
    }

    /// The webhooks that want `event`.
    pub fn outbox_for(&self, event: &SessionEvent) -> Vec<String> {
        let outbox = self
            .outbox
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        outbox
            .as_ref()
            .map(|wants| wants(event))
            .unwrap_or_default()
    }

    /// Sends `event` to its session's watchers, if any, and to every tap.
    pub fn publish(&self, event: &SessionEvent) {
        if let Some(sender) = self.lock().get(&event.session_id) {
            let _ = sender.send(Arc::new(event.clone()));
        }
        let taps = self
            .taps
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for tap in taps.iter() {
            tap(event);
        }
    }

    /// Sends `event`, which another server stored, to its session's
    /// watchers here, if any; taps see only this server's events.
    pub fn publish_to_watchers(&self, event: &SessionEvent) {
        if let Some(sender) = self.lock().get(&event.session_id) {
            let _ = sender.send(Arc::new(event.clone()));
        }
    }

    /// Whether session `id` has a watcher here.
    pub fn is_watched(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Adds a store-wide observer of every event published from now on.
    pub fn tap(&self, tap: Tap) {
        self.taps
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(tap);
    }

    /// Sessions with at least one watcher.
    pub fn watched(&self) -> usize {
        self.lock().len()
    }
}

impl Subscription {
    /// The next live event; `Lagged` when this watcher fell behind.
    pub async fn recv(&mut self) -> Result<SessionEvent, broadcast::error::RecvError> {
        self.rx.recv().await.map(Arc::unwrap_or_clone)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // This subscription is the last receiver.
        if channels
            .get(&self.id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            channels.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, sequence: u64) -> SessionEvent {
        SessionEvent {
            session_id: id.into(),
            sequence,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn watchers_get_only_their_session_and_channels_go_with_them() {
        let hub = Hub::default();
        let mut a1 = hub.subscribe("a");
        let mut a2 = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.publish(&event("a", 1));
        hub.publish(&event("c", 1)); // nobody watches c: no channel made
        assert_eq!(hub.watched(), 2);
        assert_eq!(a1.recv().await.unwrap().sequence, 1);
        assert_eq!(a2.recv().await.unwrap().sequence, 1);
        assert!(b.rx.try_recv().is_err(), "b is not woken for a");
        drop(a1);
        assert_eq!(hub.watched(), 2, "a still has a watcher");
        drop(a2);
        drop(b);
        assert_eq!(hub.watched(), 0);
    }

    #[test]
    fn a_tap_sees_every_session_without_watchers() {
        let hub = Hub::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        hub.tap(Arc::new(move |e: &SessionEvent| {
            into.lock()
                .unwrap()
                .push((e.session_id.clone(), e.sequence))
        }));
        hub.publish(&event("a", 1));
        hub.publish(&event("b", 1));
        assert_eq!(hub.watched(), 0, "a tap makes no channel");
        assert_eq!(*seen.lock().unwrap(), [("a".into(), 1), ("b".into(), 1)]);
    }
}
