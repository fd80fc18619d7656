//! Signed-in browsers: server-side state keyed by a random id that the
//! cookie carries with its HMAC (a forged or altered cookie is refused
//! before any lookup), a CSRF token per sign-in, an idle and an absolute
//! lifetime, and sign-out. The key is made at start: a restart signs every
//! browser out (their desktops live on).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::RngCore;
use ring::hmac;

/// The cookie's name: `__Host-` makes browsers require Secure, Path=/ and
/// no Domain.
pub const COOKIE: &str = "__Host-daas";

/// Signed-in browsers at most.
const MAX_SIGNED_IN: usize = 10_000;
/// Signed-in browsers of one user at most.
pub const MAX_SIGN_INS_PER_USER: usize = 16;

/// Why a sign-in was not opened (the password was right).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "you are signed in from {MAX_SIGN_INS_PER_USER} browsers already: sign out from one, or wait until one has been unused long enough to sign out by itself"
    )]
    UserFull,
    #[error("too many browsers are signed in to the portal: try again later")]
    Full,
}

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: String,
    pub admin: bool,
    /// Sent back in `X-CSRF-Token` by every state-changing call.
    pub csrf: String,
    /// Names this sign-in (not the cookie): its relays are closed with it.
    pub key: String,
    created: Instant,
    last_seen: Instant,
    /// When the user's groups were last read from the directory.
    checked: Instant,
}

impl SignedIn {
    /// Whether the user's groups were read longer than `every` ago.
    pub fn recheck_due(&self, every: Duration) -> bool {
        self.checked.elapsed() >= every
    }
}

/// Every signed-in browser.
pub struct SignIns {
    key: hmac::Key,
    idle: Duration,
    max: Duration,
    by_id: Mutex<HashMap<String, SignedIn>>,
}

impl SignIns {
    pub fn new(idle: Duration, max: Duration) -> SignIns {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        SignIns {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            idle,
            max,
            by_id: Mutex::new(HashMap::new()),
        }
    }

    /// Signs `user` in: the cookie's value and the state.
    pub fn open(&self, user: &str, admin: bool) -> Result<(String, SignedIn), OpenError> {
        let id = random_hex();
        let now = Instant::now();
        let signed = SignedIn {
            user: user.to_string(),
            admin,
            csrf: random_hex(),
            key: random_hex(),
            created: now,
            last_seen: now,
            checked: now,
        };
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| self.alive(s, now));
        if map.values().filter(|s| s.user == user).count() >= MAX_SIGN_INS_PER_USER {
            return Err(OpenError::UserFull);
        }
        if map.len() >= MAX_SIGNED_IN {
            return Err(OpenError::Full);
        }
        map.insert(id.clone(), signed.clone());
        Ok((self.sign(&id), signed))
    }

    /// The browser a cookie value names, if it is signed in; `touch` marks
    /// it used now (not for the page's own periodic refresh, so an open
    /// tab alone does not keep a sign-in alive).
    pub fn find(&self, cookie: &str, touch: bool) -> Option<SignedIn> {
        let id = self.verify(cookie)?;
        let now = Instant::now();
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let alive = map.get(id).is_some_and(|s| self.alive(s, now));
        if !alive {
            map.remove(id);
            return None;
        }
        let signed = map.get_mut(id)?;
        if touch {
            signed.last_seen = now;
        }
        Some(signed.clone())
    }

    /// Records a recheck of the browser's user: their role now; the sign-in
    /// as it is then.
    pub fn rechecked(&self, cookie: &str, admin: bool) -> Option<SignedIn> {
        let id = self.verify(cookie)?;
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let signed = map.get_mut(id)?;
        signed.admin = admin;
        signed.checked = Instant::now();
        Some(signed.clone())
    }

    /// Signs the browser out; returns the sign-in it was.
    pub fn close(&self, cookie: &str) -> Option<SignedIn> {
        let id = self.verify(cookie)?;
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id)
    }

    /// The `Set-Cookie` value that carries `value`.
    pub fn set_cookie(&self, value: &str) -> String {
        format!(
            "{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            self.max.as_secs()
        )
    }

    /// The `Set-Cookie` value that removes it.
    pub fn clear_cookie() -> String {
        format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    fn alive(&self, s: &SignedIn, now: Instant) -> bool {
        now.duration_since(s.last_seen) < self.idle && now.duration_since(s.created) < self.max
    }

    fn sign(&self, id: &str) -> String {
        format!("{id}.{}", hex::encode(hmac::sign(&self.key, id.as_bytes())))
    }

    fn verify<'a>(&self, cookie: &'a str) -> Option<&'a str> {
        let (id, tag) = cookie.split_once('.')?;
        let tag = hex::decode(tag).ok()?;
        hmac::verify(&self.key, id.as_bytes(), &tag).ok()?;
        Some(id)
    }
}

/// Whether `given` is the sign-in's CSRF token (in constant time).
pub fn csrf_matches(signed: &SignedIn, given: &str) -> bool {
    let (a, b) = (signed.csrf.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// 256 random bits, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_opens_its_sign_in_and_nothing_else() {
        let signins = SignIns::new(Duration::from_secs(60), Duration::from_secs(600));
        let (cookie, signed) = signins.open("alice", false).unwrap();
        let found = signins.find(&cookie, true).expect("signed in");
        assert_eq!(found.user, "alice");
        assert!(csrf_matches(&found, &signed.csrf));
        assert!(!csrf_matches(&found, "x"));
        // Altered id or tag, another server's key, junk.
        let (id, tag) = cookie.split_once('.').expect("id.tag");
        let other = SignIns::new(Duration::from_secs(60), Duration::from_secs(600));
        for bad in [
            format!("{id}x.{tag}"),
            format!("{id}.{}", &tag[1..]),
            other.sign(id),
            String::new(),
            "no-dot".into(),
        ] {
            assert!(signins.find(&bad, true).is_none(), "{bad}");
        }
        signins.close(&cookie);
        assert!(signins.find(&cookie, true).is_none());
    }

    #[test]
    fn sign_ins_expire_when_idle_and_at_their_maximum() {
        let signins = SignIns::new(Duration::from_millis(50), Duration::from_secs(600));
        let (cookie, _) = signins.open("alice", false).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        assert!(signins.find(&cookie, true).is_none());
        let signins = SignIns::new(Duration::from_secs(60), Duration::from_millis(50));
        let (cookie, _) = signins.open("alice", false).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        assert!(signins.find(&cookie, true).is_none());
    }

    #[test]
    fn a_page_refreshing_itself_is_no_activity() {
        let signins = SignIns::new(Duration::from_millis(300), Duration::from_secs(600));
        let (cookie, _) = signins.open("alice", false).unwrap();
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(40));
            // The page's timer: seen, not used.
            assert!(signins.find(&cookie, false).is_some());
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            signins.find(&cookie, false).is_none(),
            "kept alive by refreshes"
        );
    }

    #[test]
    fn one_user_has_a_bounded_number_of_sign_ins() {
        let signins = SignIns::new(Duration::from_secs(60), Duration::from_secs(600));
        let cookies: Vec<String> = (0..MAX_SIGN_INS_PER_USER)
            .map(|_| signins.open("alice", false).unwrap().0)
            .collect();
        assert_eq!(
            signins.open("alice", false).err(),
            Some(OpenError::UserFull)
        );
        assert!(signins.open("bob", false).is_ok());
        assert_eq!(
            signins.close(&cookies[0]).map(|s| s.user),
            Some("alice".into())
        );
        assert!(signins.open("alice", false).is_ok());
    }

    #[test]
    fn cookies_are_read_from_the_header() {
        let header = "a=1; __Host-daas=abc.def;b=2";
        assert_eq!(cookie_value(header, COOKIE), Some("abc.def"));
        assert_eq!(cookie_value(header, "c"), None);
        let set = SignIns::new(Duration::from_secs(1), Duration::from_secs(3600)).set_cookie("v");
        for attr in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(set.contains(attr), "{set}");
        }
    }
}
