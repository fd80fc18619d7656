//! Limits on what callers may ask for: a create rate per user and a
//! report rate per agent (token buckets), and the number of event streams
//! open at once. Session counts are
//! checked by the store, atomically with the insert.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::error::Error;

/// Token buckets, one per key: `per_minute` tokens a minute, at most
/// `burst` saved.
pub struct Buckets {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Buckets {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Buckets {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How many tokens a minute.
    pub fn per_minute(&self) -> f64 {
        (self.per_second * 60.0).round()
    }

    /// Takes one token of `key`, or says how long until one is free.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Full buckets carry no information: forget them.
        if buckets.len() > 10_000 {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - bucket.tokens) / self.per_second,
        ))
    }
}

/// Each user's create rate, kept in the store (it holds across servers
/// sharing it: `store::create_rate`).
pub struct CreateRate(crate::store::create_rate::Rate);

impl CreateRate {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        CreateRate(crate::store::create_rate::Rate { per_minute, burst })
    }

    /// Takes one create for `user`, or says how long until one is free.
    pub async fn take(&self, store: &crate::store::Store, user: &str) -> Result<(), Error> {
        match store.take_create(user, self.0).await? {
            None => Ok(()),
            Some(wait_ms) => Err(self.exhausted(user, Duration::from_millis(wait_ms))),
        }
    }

    fn exhausted(&self, user: &str, wait: Duration) -> Error {
        Error::ResourceExhausted {
            message: format!(
                "{user} may start {} creates a minute and has used them; try again in {} s",
                self.0.per_minute.max(1),
                wait.as_secs().max(1)
            ),
            retry_after: Some(wait),
        }
    }
}

/// Event streams (CreateSession, WatchSession, and the portal's, which
/// are WatchSession) open at once, in all and per user.
#[derive(Clone)]
pub struct StreamSlots {
    all: Arc<Semaphore>,
    per_user: usize,
    by_user: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream, counted until dropped.
pub struct StreamSlot {
    _all: OwnedSemaphorePermit,
    user: String,
    by_user: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut map = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

impl StreamSlots {
    pub fn new(max: usize, per_user: usize) -> Self {
        StreamSlots {
            all: Arc::new(Semaphore::new(max)),
            per_user,
            by_user: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A slot for one of `user`'s streams, held as long as it is open.
    pub fn open(&self, user: &str) -> Result<StreamSlot, Error> {
        let mut map = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        let mine = map.get(user).copied().unwrap_or(0);
        if mine >= self.per_user {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "{user} has {mine} event streams open, the most one user may: close one (a `daas watch`, a page of the portal) and try again"
                ),
                retry_after: Some(Duration::from_secs(5)),
            });
        }
        let all = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::ResourceExhausted {
                message: "the server has too many event streams open; try again shortly".into(),
                retry_after: Some(Duration::from_secs(5)),
            })?;
        map.insert(user.to_string(), mine + 1);
        Ok(StreamSlot {
            _all: all,
            user: user.to_string(),
            by_user: self.by_user.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_gets_a_burst_then_the_rate_and_is_told_when() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("db.sqlite3")).unwrap();
        let rate = CreateRate::new(6, 2); // one every 10 s
        assert!(rate.take(&store, "alice").await.is_ok());
        assert!(rate.take(&store, "alice").await.is_ok());
        let Err(Error::ResourceExhausted {
            message,
            retry_after,
        }) = rate.take(&store, "alice").await
        else {
            panic!("the third create at once was allowed");
        };
        let wait = retry_after.expect("a Retry-After");
        assert_eq!(wait.as_secs_f64().round(), 10.0, "one every 10 s");
        let said = format!("try again in {} s", wait.as_secs().max(1));
        assert!(message.contains(&said), "{message}");
        assert!(
            rate.take(&store, "bob").await.is_ok(),
            "buckets are per user"
        );
    }

    #[test]
    fn stream_slots_are_returned_when_dropped() {
        let slots = StreamSlots::new(1, 10);
        let first = slots.open("alice").unwrap();
        assert!(slots.open("bob").is_err());
        drop(first);
        assert!(slots.open("bob").is_ok());
    }

    #[test]
    fn one_user_cannot_take_every_stream() {
        let slots = StreamSlots::new(10, 2);
        let a = slots.open("alice").unwrap();
        let _b = slots.open("alice").unwrap();
        let Err(Error::ResourceExhausted { message, .. }) = slots.open("alice") else {
            panic!("a third stream for alice");
        };
        assert!(
            message.contains("alice has 2 event streams open"),
            "{message}"
        );
        assert!(slots.open("bob").is_ok(), "others still may");
        drop(a);
        assert!(slots.open("alice").is_ok());
    }
}
