//! One lock per session, taken by everything that changes a session's VM:
//! the provisioning task (with its failure cleanup), destroy, recovery after
//! a restart, and the sweeper. An entry lives only while someone holds or
//! waits for it, so the map holds no settled session.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::OwnedMutexGuard;

type Entries = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

/// Per-session async locks. Cheap to clone.
#[derive(Clone, Default)]
pub struct SessionLocks {
    entries: Arc<Mutex<Entries>>,
}

/// Holds a session's lock; dropping it releases the lock and forgets the
/// entry when nobody else wants it.
pub struct SessionGuard {
    entries: Arc<Mutex<Entries>>,
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl SessionLocks {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for session `id`'s lock.
    pub async fn lock(&self, id: &str) -> SessionGuard {
        let mutex = self.entries().entry(id.to_string()).or_default().clone();
        let guard = mutex.lock_owned().await;
        SessionGuard {
            entries: self.entries.clone(),
            id: id.to_string(),
            guard: Some(guard),
        }
    }

    /// How many sessions have an entry (held or waited for).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The map's own reference is the last one: nobody holds or waits.
        if entries
            .get(&self.id)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            entries.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_entries_are_pruned() {
        let locks = SessionLocks::default();
        let first = locks.lock("a").await;
        let other = locks.lock("b").await;
        assert_eq!(locks.len(), 2);
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _second = locks.lock("a").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the second holder waits");
        drop(first);
        waiter.await.unwrap();
        drop(other);
        assert!(locks.is_empty(), "no entry outlives its holders");
    }
}
