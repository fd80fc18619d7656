//! Failed sign-ins, counted per user name and per address: after
//! `max` failures within `window` either key is refused (429) until the
//! oldest failure leaves the window. A success clears the user's count.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Keys kept at most (the oldest are forgotten first).
const MAX_KEYS: usize = 100_000;

pub struct Throttle {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    pub fn new(max: u32, window: Duration) -> Throttle {
        Throttle {
            max: max as usize,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// None when a sign-in for `user` from `addr` may be tried; else how
    /// long to wait.
    pub fn check(&self, user: &str, addr: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        [user_key(user), addr_key(addr)]
            .iter()
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

    /// Counts a failed sign-in.
    pub fn failed(&self, user: &str, addr: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        for key in [user_key(user), addr_key(addr)] {
            let times = map.entry(key).or_default();
            times.push_back(now);
            while times.len() > self.max {
                times.pop_front();
            }
        }
    }

    /// A sign-in of `user` succeeded.
    pub fn succeeded(&self, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&user_key(user));
    }
}

/// User names compare case-insensitively, as AD's do.
fn user_key(user: &str) -> String {
    format!("user:{}", user.to_lowercase())
}

fn addr_key(addr: &str) -> String {
    format!("addr:{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_limit_are_refused_per_user_and_per_address() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(throttle.check("alice", "10.0.0.1").is_none());
            throttle.failed("alice", "10.0.0.1");
        }
        let wait = throttle
            .check("ALICE", "10.0.0.9")
            .expect("alice is throttled");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(50));
        // The address too, whatever the user.
        assert!(throttle.check("carol", "10.0.0.1").is_some());
        assert!(throttle.check("carol", "10.0.0.2").is_none());
        throttle.succeeded("alice");
        assert!(throttle.check("alice", "10.0.0.2").is_none());
    }

    #[test]
    fn failures_leave_the_window() {
        let throttle = Throttle::new(1, Duration::from_millis(50));
        throttle.failed("bob", "a");
        assert!(throttle.check("bob", "b").is_some());
        std::thread::sleep(Duration::from_millis(70));
        assert!(throttle.check("bob", "b").is_none());
    }
}
