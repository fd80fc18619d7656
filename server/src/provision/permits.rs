//! Provisioning permits (`limits.max_parallel_provisions`), users first:
//! a warm pool's build takes a free permit only while no user's create is
//! waiting for one, so pool work never delays a user.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// How often a waiting pool build looks again, besides being woken.
const BACKGROUND_POLL: Duration = Duration::from_millis(500);

pub struct Permits {
    semaphore: Semaphore,
    /// Users' creates waiting for a permit.
    users_waiting: AtomicUsize,
    /// Woken when a permit is returned.
    returned: Notify,
}

/// A permit; returning it wakes the waiting pool builds.
pub struct Permit<'a> {
    _permit: SemaphorePermit<'a>,
    returned: &'a Notify,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.returned.notify_waiters();
    }
}

/// Decrements the waiting count however the wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Permits {
    pub fn new(count: usize) -> Self {
        Permits {
            semaphore: Semaphore::new(count),
            users_waiting: AtomicUsize::new(0),
            returned: Notify::new(),
        }
    }

    /// A permit for a user's create, in arrival order.
    pub async fn user(&self) -> Option<Permit<'_>> {
        self.users_waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.users_waiting);
        let permit = self.semaphore.acquire().await.ok()?;
        Some(Permit {
            _permit: permit,
            returned: &self.returned,
        })
    }

    /// Whether a user's create would get a permit now: one is free and no
    /// user's create waits here.
    pub fn free_for_user(&self) -> bool {
        self.semaphore.available_permits() > 0 && self.users_waiting.load(Ordering::SeqCst) == 0
    }

    /// A permit for pool work: only when one is free and no user waits.
    pub async fn background(&self) -> Option<Permit<'_>> {
        loop {
            let returned = self.returned.notified();
            if self.users_waiting.load(Ordering::SeqCst) == 0 {
                match self.semaphore.try_acquire() {
                    Ok(permit) => {
                        return Some(Permit {
                            _permit: permit,
                            returned: &self.returned,
                        });
                    }
                    Err(tokio::sync::TryAcquireError::Closed) => return None,
                    Err(tokio::sync::TryAcquireError::NoPermits) => {}
                }
            }
            let _ = tokio::time::timeout(BACKGROUND_POLL, returned).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_user_goes_before_pool_work() {
        let permits = std::sync::Arc::new(Permits::new(1));
        let held = permits.user().await.expect("a permit");
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let background = {
            let (permits, order) = (permits.clone(), order.clone());
            tokio::spawn(async move {
                let _p = permits.background().await.expect("a permit");
                order.lock().expect("lock").push("pool");
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let user = {
            let (permits, order) = (permits.clone(), order.clone());
            tokio::spawn(async move {
                let _p = permits.user().await.expect("a permit");
                order.lock().expect("lock").push("user");
                tokio::time::sleep(Duration::from_millis(50)).await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        user.await.expect("user task");
        background.await.expect("pool task");
        assert_eq!(*order.lock().expect("lock"), ["user", "pool"]);
    }
}
