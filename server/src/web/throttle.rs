//! Sign-in attempts, limited per user name and per address: after `max`
//! failures within `window` either key is refused (429) until the oldest
//! failure leaves the window. An attempt is counted as a failure before
//! the directory is asked, and taken back when it succeeds, so parallel
//! attempts cannot pass the limit; one attempt per user name and per
//! address is at the directory at a time (the next waits for it), and at
//! most [`MAX_BINDS`] in all.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Keys kept at most (the oldest are forgotten first).
const MAX_KEYS: usize = 100_000;
/// Sign-ins at the directory at once, whoever asks.
pub const MAX_BINDS: usize = 16;
/// How often a waiting attempt looks again.
const POLL: Duration = Duration::from_millis(25);
/// The key of every user name that is not an account name (such a name
/// never reaches the directory, and must not grow the table).
const INVALID_NAME: &str = "user:(not an account name)";

pub struct Throttle {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// The keys of the attempts at the directory now.
    busy: Mutex<HashSet<String>>,
    binds: Arc<Semaphore>,
    /// Refusals per user and address: when the last was audited, and how
    /// many were not since.
    refusals: Mutex<HashMap<String, (Instant, u64)>>,
}

/// Why an attempt may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures: wait this long.
    TooMany(Duration),
    /// Other attempts held the directory for longer than the wait allowed.
    Busy,
}

/// A sign-in under way, counted as a failure until [`Attempt::succeeded`].
pub struct Attempt {
    keys: Reserved,
    at: Instant,
    _bind: OwnedSemaphorePermit,
}

/// An attempt's keys, marked busy until dropped.
struct Reserved {
    throttle: Arc<Throttle>,
    keys: [String; 2],
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut busy = self.throttle.busy.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            busy.remove(key);
        }
    }
}

impl Throttle {
    pub fn new(max: u32, window: Duration) -> Throttle {
        Throttle {
            max: max as usize,
            window,
            failures: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
            binds: Arc::new(Semaphore::new(MAX_BINDS)),
            refusals: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a refusal of `user` from `addr` goes in the audit trail: the
    /// first of a burst does, with how many the previous burst left out;
    /// the others within `window` of it do not (None).
    pub fn audit_refusal(&self, user: &str, addr: &str) -> Option<u64> {
        let key = format!("{}\n{}", user_key(user), addr_key(addr));
        let now = Instant::now();
        let mut map = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, (at, _)| now.duration_since(*at) < self.window);
        }
        match map.get_mut(&key) {
            Some((at, left_out)) if now.duration_since(*at) < self.window => {
                *left_out += 1;
                None
            }
            Some((at, left_out)) => {
                let before = *left_out;
                *at = now;
                *left_out = 0;
                Some(before)
            }
            None => {
                map.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    /// Starts a sign-in of `user` from `addr`, waiting at most `wait` for
    /// an attempt of the same name or address, or for a free bind.
    pub async fn begin(
        self: &Arc<Self>,
        user: &str,
        addr: &str,
        wait: Duration,
    ) -> Result<Attempt, Refusal> {
        let keys = [user_key(user), addr_key(addr)];
        if let Some(left) = self.refused(&keys) {
            return Err(Refusal::TooMany(left));
        }
        let deadline = Instant::now() + wait;
        let reserved = loop {
            {
                let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
                if keys.iter().all(|k| !busy.contains(k)) {
                    busy.extend(keys.iter().cloned());
                    break Reserved {
                        throttle: self.clone(),
                        keys,
                    };
                }
            }
            if Instant::now() >= deadline {
                return Err(Refusal::Busy);
            }
            tokio::time::sleep(POLL).await;
        };
        // Checked again: the attempt waited for may have failed.
        if let Some(left) = self.refused(&reserved.keys) {
            return Err(Refusal::TooMany(left));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let bind = tokio::time::timeout(left, self.binds.clone().acquire_owned())
            .await
            .map_err(|_| Refusal::Busy)?
            .map_err(|_| Refusal::Busy)?;
        let at = self.count(&reserved.keys);
        Ok(Attempt {
            keys: reserved,
            at,
            _bind: bind,
        })
    }

    /// How long `keys` must wait, if either has `max` failures in the window.
    fn refused(&self, keys: &[String; 2]) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|key| {
                let times = map.get_mut(key)?;
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    times.pop_front();
                }
                (times.len() >= self.max)
                    .then(|| times.front().map(|t| self.window - now.duration_since(*t)))
                    .flatten()
            })
            .max()
    }

    /// Counts a failure of `keys` now; returns its time.
    fn count(&self, keys: &[String; 2]) -> Instant {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        for key in keys {
            let times = map.entry(key.clone()).or_default();
            times.push_back(now);
            while times.len() > self.max {
                times.pop_front();
            }
        }
        now
    }
}

impl Attempt {
    /// The sign-in succeeded: the user's failures are forgotten, and this
    /// attempt no longer counts against the address.
    pub fn succeeded(self) {
        self.take_back(true);
    }

    /// The attempt proved nothing (the directory did not answer): it no
    /// longer counts, and the failures before it still do.
    pub fn void(self) {
        self.take_back(false);
    }

    fn take_back(&self, forget_user: bool) {
        let mut map = self
            .keys
            .throttle
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let [user, addr] = &self.keys.keys;
        if forget_user {
            map.remove(user);
        }
        for key in [user, addr] {
            if let Some(times) = map.get_mut(key)
                && let Some(i) = times.iter().rposition(|t| *t == self.at)
            {
                times.remove(i);
            }
        }
    }
}

/// User names compare case-insensitively, as AD's do; a name that is not
/// an account name shares one key with every other such name.
fn user_key(user: &str) -> String {
    if crate::domain::validate::account_name("username", user).is_ok() {
        format!("user:{}", user.to_lowercase())
    } else {
        INVALID_NAME.to_string()
    }
}

fn addr_key(addr: &str) -> String {
    // An address is at most 45 characters (IPv6 with an IPv4 tail).
    let addr: String = addr.chars().take(45).collect();
    format!("addr:{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn failures_past_the_limit_are_refused_per_user_and_per_address() {
        let throttle = Arc::new(Throttle::new(3, Duration::from_secs(60)));
        for _ in 0..3 {
            // Dropped without success: a failure.
            throttle.begin("alice", "10.0.0.1", WAIT).await.unwrap();
        }
        let Err(Refusal::TooMany(wait)) = throttle.begin("ALICE", "10.0.0.9", WAIT).await else {
            panic!("alice is throttled");
        };
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        // The address too, whatever the user.
        assert!(throttle.begin("carol", "10.0.0.1", WAIT).await.is_err());
        throttle
            .begin("carol", "10.0.0.2", WAIT)
            .await
            .unwrap()
            .succeeded();
        // A success takes its attempt back: carol's address is clean.
        for _ in 0..5 {
            throttle
                .begin("dave", "10.0.0.2", WAIT)
                .await
                .unwrap()
                .succeeded();
        }
    }

    #[tokio::test]
    async fn an_attempt_the_directory_did_not_answer_clears_nothing() {
        let throttle = Arc::new(Throttle::new(2, Duration::from_secs(60)));
        drop(throttle.begin("ivan", "10.4.0.1", WAIT).await.unwrap());
        for _ in 0..5 {
            throttle
                .begin("ivan", "10.4.0.2", WAIT)
                .await
                .unwrap()
                .void();
        }
        drop(throttle.begin("ivan", "10.4.0.3", WAIT).await.unwrap());
        assert!(
            matches!(
                throttle.begin("ivan", "10.4.0.4", WAIT).await,
                Err(Refusal::TooMany(_))
            ),
            "voided attempts cleared the failures before them"
        );
    }

    #[tokio::test]
    async fn failures_leave_the_window() {
        let throttle = Arc::new(Throttle::new(1, Duration::from_millis(50)));
        drop(throttle.begin("bob", "a", WAIT).await.unwrap());
        assert!(throttle.begin("bob", "b", WAIT).await.is_err());
        tokio::time::sleep(Duration::from_millis(70)).await;
        assert!(throttle.begin("bob", "b", WAIT).await.is_ok());
    }

    #[tokio::test]
    async fn parallel_attempts_cannot_pass_the_limit() {
        let throttle = Arc::new(Throttle::new(3, Duration::from_secs(60)));
        // Ten at once for one user from ten addresses: one at a time at the
        // directory, and three failures refuse the rest.
        let mut tasks = Vec::new();
        for i in 0..10 {
            let throttle = throttle.clone();
            tasks.push(tokio::spawn(async move {
                let attempt = throttle.begin("eve", &format!("10.1.0.{i}"), WAIT).await;
                if attempt.is_ok() {
                    // The bind takes a while; the others wait meanwhile.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                attempt.is_ok()
            }));
        }
        let mut tried = 0;
        for task in tasks {
            tried += usize::from(task.await.unwrap());
        }
        assert_eq!(tried, 3, "only max attempts reach the directory");
    }

    #[tokio::test]
    async fn one_attempt_per_name_at_a_time_and_the_rest_wait() {
        let throttle = Arc::new(Throttle::new(100, Duration::from_secs(60)));
        let first = throttle.begin("frank", "10.2.0.1", WAIT).await.unwrap();
        let short = Duration::from_millis(100);
        assert_eq!(
            throttle.begin("FRANK", "10.2.0.2", short).await.err(),
            Some(Refusal::Busy)
        );
        assert_eq!(
            throttle.begin("grace", "10.2.0.1", short).await.err(),
            Some(Refusal::Busy)
        );
        assert!(throttle.begin("grace", "10.2.0.3", short).await.is_ok());
        let waiting = {
            let throttle = throttle.clone();
            tokio::spawn(async move { throttle.begin("frank", "10.2.0.4", WAIT).await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        first.succeeded();
        assert!(waiting.await.unwrap(), "the second went on after the first");
    }

    #[test]
    fn refusals_are_audited_once_a_burst() {
        let throttle = Throttle::new(3, Duration::from_millis(100));
        assert_eq!(throttle.audit_refusal("alice", "10.0.0.1"), Some(0));
        for _ in 0..50 {
            assert_eq!(throttle.audit_refusal("Alice", "10.0.0.1"), None);
        }
        assert_eq!(throttle.audit_refusal("alice", "10.0.0.2"), Some(0));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(throttle.audit_refusal("alice", "10.0.0.1"), Some(50));
    }

    #[tokio::test]
    async fn odd_names_share_one_key() {
        let throttle = Arc::new(Throttle::new(2, Duration::from_secs(60)));
        for i in 0..2 {
            let name = format!("{}{i}", "x".repeat(5000));
            drop(
                throttle
                    .begin(&name, &format!("10.3.0.{i}"), WAIT)
                    .await
                    .unwrap(),
            );
        }
        assert!(matches!(
            throttle.begin("a,b", "10.3.0.9", WAIT).await,
            Err(Refusal::TooMany(_))
        ));
        assert!(
            throttle
                .failures
                .lock()
                .unwrap()
                .keys()
                .all(|k| k.len() < 100)
        );
    }
}
