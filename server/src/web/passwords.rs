//! Sign in once (`web.pass_through_credentials`): the password each
//! browser signed in with, in this server's memory only, for the gateway
//! to log its user in to xrdp. Never written to the store, a log or an
//! event; zeroed when its sign-in ends (sign-out, a recheck that signs it
//! out) and when the sign-in's longest life (`web.session_max`) has passed.
//! A restart forgets them all: the desktop then asks for the password, as
//! without the option; so does a desktop opened through another replica.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use zeroize::Zeroizing;

struct Held {
    password: Zeroizing<String>,
    until: Instant,
}

/// The passwords of this server's sign-ins, by sign-in key.
pub struct Passwords {
    held: Mutex<HashMap<String, Held>>,
    /// How long one is kept at most.
    max: Duration,
}

impl Passwords {
    pub fn new(max: Duration) -> Passwords {
        Passwords {
            held: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `password` for sign-in `key`; forgets those past their time.
    pub fn keep(&self, key: &str, password: &str) {
        let now = Instant::now();
        let mut held = self.lock();
        held.retain(|_, h| h.until > now);
        held.insert(
            key.to_string(),
            Held {
                password: Zeroizing::new(password.to_string()),
                until: now + self.max,
            },
        );
    }

    /// The password of sign-in `key`, if this server holds it.
    pub fn get(&self, key: &str) -> Option<Zeroizing<String>> {
        let now = Instant::now();
        self.lock()
            .get(key)
            .filter(|h| h.until > now)
            .map(|h| h.password.clone())
    }

    /// Whether this server holds the password of sign-in `key`.
    pub fn holds(&self, key: &str) -> bool {
        let now = Instant::now();
        self.lock().get(key).is_some_and(|h| h.until > now)
    }

    /// Forgets (and zeroes) the password of sign-in `key`.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// How many are held (expired ones until the next keep).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_until_forgotten_or_past_their_time() {
        let passwords = Passwords::new(Duration::from_secs(3600));
        passwords.keep("k1", "alice's");
        passwords.keep("k2", "bob's");
        assert_eq!(
            passwords.get("k1").as_deref().map(String::as_str),
            Some("alice's")
        );
        assert!(passwords.holds("k1") && !passwords.holds("k3"));
        passwords.forget("k1");
        assert_eq!(passwords.get("k1"), None);
        assert!(!passwords.holds("k1"));
        assert_eq!(passwords.len(), 1);

        let short = Passwords::new(Duration::from_millis(20));
        short.keep("k1", "alice's");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(short.get("k1"), None, "past its time");
        assert!(!short.holds("k1"));
        short.keep("k2", "bob's");
        assert_eq!(short.len(), 1, "the old one is dropped at the next keep");
    }
}
