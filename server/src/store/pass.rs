//! Passes that one server at a time runs: a warm pool's reconcile, the
//! reaper's pass, the sweeper's, retention. Every server runs each loop;
//! before a pass it asks the store for the pass by name and skips the pass
//! when another server holds it. No leader is elected: a server that dies
//! or freezes holding a pass loses it within its lease, and the next
//! server's loop runs it. The pass re-reads the store once it holds it, so
//! what it decides on includes everything the previous holder did.
//!
//! On PostgreSQL a pass is `pg_try_advisory_xact_lock` in a transaction of
//! its own, kept alive while the pass runs; with the embedded store (one
//! server) it is an in-process lock, so a pass still never overlaps itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;

/// Holding a pass; dropping it (or [`Pass::end`]) lets another server (or
/// this one's next loop) run it.
#[must_use = "the pass is held until this is dropped"]
pub struct Pass {
    _held: Held,
}

enum Held {
    Local {
        _guard: tokio::sync::OwnedMutexGuard<()>,
    },
    /// Ends the transaction holding the advisory lock when dropped.
    Shared { _release: oneshot::Sender<()> },
}

impl Pass {
    pub(crate) fn local(guard: tokio::sync::OwnedMutexGuard<()>) -> Pass {
        Pass {
            _held: Held::Local { _guard: guard },
        }
    }

    pub(crate) fn shared(release: oneshot::Sender<()>) -> Pass {
        Pass {
            _held: Held::Shared { _release: release },
        }
    }

    /// Lets the pass go.
    pub fn end(self) {}
}

/// The embedded store's passes: one lock per name.
#[derive(Default)]
pub(crate) struct LocalPasses {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalPasses {
    /// The pass named `name`, unless it is running.
    pub(crate) fn try_take(&self, name: &str) -> Option<Pass> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(name.to_string()).or_default().clone()
        };
        lock.try_lock_owned().ok().map(Pass::local)
    }
}

/// The advisory lock id of the pass named `name`: FNV-1a (64 bits) of
/// "daas pass " and the name, so every server computes the same id.
pub(crate) fn lock_id(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"daas pass ".iter().chain(name.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_pass_is_held_once_until_dropped() {
        let passes = LocalPasses::default();
        let held = passes.try_take("reaper").expect("a free pass");
        assert!(passes.try_take("reaper").is_none(), "held already");
        assert!(passes.try_take("pool lab").is_some(), "another pass");
        held.end();
        assert!(passes.try_take("reaper").is_some(), "free again");
    }

    #[test]
    fn lock_ids_differ_by_name_and_are_stable() {
        assert_ne!(lock_id("reaper"), lock_id("sweeper"));
        assert_eq!(lock_id("pool lab"), lock_id("pool lab"));
    }
}
