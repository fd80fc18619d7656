//! The gateway's relays open now, each tied to the sign-in that opened
//! it: a user has at most `web.max_relays_per_user` at once, and signing
//! out ends that sign-in's.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio_util::sync::CancellationToken;

/// Why a relay may not open.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "you have {0} desktops open in the browser already, the most one user may: close one first"
)]
pub struct TooManyRelays(pub usize);

struct Open {
    user: String,
    sign_in: String,
    stop: CancellationToken,
}

pub struct Relays {
    per_user: usize,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
}

/// An open relay, forgotten when dropped; `stop` ends it.
pub struct Relay {
    relays: Arc<Relays>,
    id: u64,
    pub stop: CancellationToken,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let mut open = self.relays.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&self.id);
    }
}

impl Relays {
    pub fn new(per_user: usize) -> Relays {
        Relays {
            per_user,
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A relay for `user`'s sign-in `sign_in` (its key), if they have room.
    pub fn open(self: &Arc<Self>, user: &str, sign_in: &str) -> Result<Relay, TooManyRelays> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.values().filter(|o| o.user == user).count() >= self.per_user {
            return Err(TooManyRelays(self.per_user));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let stop = CancellationToken::new();
        open.insert(
            id,
            Open {
                user: user.to_string(),
                sign_in: sign_in.to_string(),
                stop: stop.clone(),
            },
        );
        Ok(Relay {
            relays: self.clone(),
            id,
            stop,
        })
    }

    /// Ends the relays sign-in `sign_in` opened; returns how many.
    pub fn close_sign_in(&self, sign_in: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine: Vec<&Open> = open.values().filter(|o| o.sign_in == sign_in).collect();
        for relay in &mine {
            relay.stop.cancel();
        }
        mine.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_are_bounded_per_user_and_end_with_their_sign_in() {
        let relays = Arc::new(Relays::new(2));
        let a = relays.open("alice", "tab-1").unwrap();
        let b = relays.open("alice", "tab-2").unwrap();
        assert_eq!(relays.open("alice", "tab-1").err(), Some(TooManyRelays(2)));
        let c = relays.open("bob", "tab-3").unwrap();
        assert_eq!(relays.close_sign_in("tab-1"), 1);
        assert!(a.stop.is_cancelled());
        assert!(!b.stop.is_cancelled() && !c.stop.is_cancelled());
        drop(a);
        assert!(relays.open("alice", "tab-2").is_ok());
    }
}
