//! Signed-in browsers: state in the store keyed by the SHA-256 of a random
//! id that the cookie carries with its HMAC (a forged or altered cookie is
//! refused before any lookup; see [`super::cookie_keys`]), a CSRF token per
//! sign-in, an idle and an absolute lifetime, and sign-out. The keys and
//! the store outlive the process: a restart signs nobody out, and servers
//! sharing both share the sign-ins.

use std::time::Duration;

use rand::RngCore;
use ring::digest;

use super::cookie_keys::CookieKeys;
use crate::domain::time::{ms, now_ms};
use crate::store::{
    Store, StoreError,
    signins::{SignInLimits, SignInOpened, SignInRecord},
};

/// The cookie's name: `__Host-` makes browsers require Secure, Path=/ and
/// no Domain.
pub const COOKIE: &str = "__Host-daas";

/// Signed-in browsers at most.
const MAX_SIGNED_IN: usize = 10_000;
/// Signed-in browsers of one user at most.
pub const MAX_SIGN_INS_PER_USER: usize = 16;
/// A use is written to the store at most this often (or a quarter of the
/// idle time, if shorter).
const TOUCH_EVERY: Duration = Duration::from_secs(15);

/// Why a sign-in was not opened (the password was right).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "you are signed in from {MAX_SIGN_INS_PER_USER} browsers already: sign out from one, or wait until one has been unused long enough to sign out by itself"
    )]
    UserFull,
    #[error("too many browsers are signed in to the portal: try again later")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// When the user's groups were last read from the directory.
    checked_ms: i64,
    /// Their groups among those the catalog's templates name.
    pub groups: Vec<String>,
}

impl SignedIn {
    /// Whether the user's groups were read longer than `every` ago.
    pub fn recheck_due(&self, every: Duration) -> bool {
        now_ms().saturating_sub(self.checked_ms) >= ms(every)
    }
}

impl From<SignInRecord> for SignedIn {
    fn from(r: SignInRecord) -> SignedIn {
        SignedIn {
            user: r.user,
            admin: r.admin,
            csrf: r.csrf,
            key: r.key,
            checked_ms: r.checked_ms,
            groups: r.groups,
        }
    }
}

/// Every signed-in browser.
pub struct SignIns {
    keys: CookieKeys,
    store: Store,
    idle: Duration,
    max: Duration,
}

impl SignIns {
    pub fn new(keys: CookieKeys, store: Store, idle: Duration, max: Duration) -> SignIns {
        SignIns {
            keys,
            store,
            idle,
            max,
        }
    }

    /// Signs `user` in: the cookie's value and the state.
    pub async fn open(
        &self,
        user: &str,
        admin: bool,
        groups: Vec<String>,
    ) -> Result<(String, SignedIn), OpenError> {
        let id = random_hex();
        let now = now_ms();
        let record = SignInRecord {
            id_hash: id_hash(&id),
            user: user.to_string(),
            admin,
            csrf: random_hex(),
            key: random_hex(),
            created_ms: now,
            last_seen_ms: now,
            checked_ms: now,
            groups,
        };
        let limits = SignInLimits {
            per_user: MAX_SIGN_INS_PER_USER,
            total: MAX_SIGNED_IN,
            idle_before_ms: now - ms(self.idle),
            made_before_ms: now - ms(self.max),
        };
        match self.store.open_signin(record.clone(), limits).await? {
            SignInOpened::Opened => Ok((self.keys.sign(&id), record.into())),
            SignInOpened::UserFull => Err(OpenError::UserFull),
            SignInOpened::Full => Err(OpenError::Full),
        }
    }

    /// The browser a cookie value names, if it is signed in; `touch` marks
    /// it used now (not for the page's own periodic refresh, so an open
    /// tab alone does not keep a sign-in alive).
    pub async fn find(&self, cookie: &str, touch: bool) -> Result<Option<SignedIn>, StoreError> {
        let Some(id) = self.keys.verify(cookie) else {
            return Ok(None);
        };
        let hash = id_hash(id);
        let Some(record) = self.store.signin(&hash).await? else {
            return Ok(None);
        };
        let now = now_ms();
        if now - record.last_seen_ms >= ms(self.idle) || now - record.created_ms >= ms(self.max) {
            self.store.close_signin(&hash).await?;
            return Ok(None);
        }
        if touch && now - record.last_seen_ms >= ms(TOUCH_EVERY.min(self.idle / 4)) {
            self.store.touch_signin(&hash, now).await?;
        }
        Ok(Some(record.into()))
    }

    /// Records a recheck of the browser's user: their role and groups now;
    /// the sign-in as it is then.
    pub async fn rechecked(
        &self,
        cookie: &str,
        admin: bool,
        groups: Vec<String>,
    ) -> Result<Option<SignedIn>, StoreError> {
        let Some(id) = self.keys.verify(cookie) else {
            return Ok(None);
        };
        let found = self
            .store
            .recheck_signin(&id_hash(id), admin, groups, now_ms())
            .await?;
        Ok(found.map(SignedIn::from))
    }

    /// Signs the browser out; returns the sign-in it was.
    pub async fn close(&self, cookie: &str) -> Result<Option<SignedIn>, StoreError> {
        let Some(id) = self.keys.verify(cookie) else {
            return Ok(None);
        };
        Ok(self
            .store
            .close_signin(&id_hash(id))
            .await?
            .map(SignedIn::from))
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
}

/// What the store knows a cookie's id by.
fn id_hash(id: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, id.as_bytes()))
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

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        keys: std::path::PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.db")).unwrap();
        let keys = dir.path().join("keys");
        Fixture {
            _dir: dir,
            store,
            keys,
        }
    }

    impl Fixture {
        fn signins(&self, idle: Duration, max: Duration) -> SignIns {
            let keys = CookieKeys::open(&self.keys).unwrap();
            SignIns::new(keys, self.store.clone(), idle, max)
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_cookie_opens_its_sign_in_and_nothing_else() {
        let f = fixture();
        let signins = f.signins(MINUTE, 10 * MINUTE);
        let (cookie, signed) = signins.open("alice", false, Vec::new()).await.unwrap();
        let found = signins
            .find(&cookie, true)
            .await
            .unwrap()
            .expect("signed in");
        assert_eq!(found.user, "alice");
        assert!(csrf_matches(&found, &signed.csrf));
        assert!(!csrf_matches(&found, "x"));
        // Altered id or tag, another server's key, junk.
        let (id, tag) = cookie.split_once('.').expect("id.tag");
        let other = CookieKeys::open(&f.keys.with_extension("other")).unwrap();
        for bad in [
            format!("{id}x.{tag}"),
            format!("{id}.{}", &tag[1..]),
            other.sign(id),
            String::new(),
            "no-dot".into(),
        ] {
            assert!(signins.find(&bad, true).await.unwrap().is_none(), "{bad}");
        }
        signins.close(&cookie).await.unwrap();
        assert!(signins.find(&cookie, true).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_restarted_server_knows_every_sign_in_and_every_sign_out() {
        let f = fixture();
        let first = f.signins(MINUTE, 10 * MINUTE);
        let (kept, _) = first.open("alice", true, Vec::new()).await.unwrap();
        let (ended, _) = first.open("bob", false, Vec::new()).await.unwrap();
        first.close(&ended).await.unwrap();
        drop(first);
        // The same key file and store: a restart, or another replica.
        let second = f.signins(MINUTE, 10 * MINUTE);
        let found = second
            .find(&kept, true)
            .await
            .unwrap()
            .expect("still signed in");
        assert_eq!((found.user.as_str(), found.admin), ("alice", true));
        assert!(second.find(&ended, true).await.unwrap().is_none());
        // The store holds no cookie id.
        let id = kept.split_once('.').unwrap().0;
        assert!(f.store.signin(id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sign_ins_expire_when_idle_and_at_their_maximum() {
        let f = fixture();
        let signins = f.signins(Duration::from_millis(50), 10 * MINUTE);
        let (cookie, _) = signins.open("alice", false, Vec::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(signins.find(&cookie, true).await.unwrap().is_none());
        let signins = f.signins(MINUTE, Duration::from_millis(50));
        let (cookie, _) = signins.open("alice", false, Vec::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(signins.find(&cookie, true).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_page_refreshing_itself_is_no_activity() {
        let f = fixture();
        let signins = f.signins(Duration::from_millis(300), 10 * MINUTE);
        let (cookie, _) = signins.open("alice", false, Vec::new()).await.unwrap();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(40)).await;
            // The page's timer: seen, not used.
            assert!(signins.find(&cookie, false).await.unwrap().is_some());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            signins.find(&cookie, false).await.unwrap().is_none(),
            "kept alive by refreshes"
        );
        // Used: kept alive, past the idle time.
        let signins = f.signins(Duration::from_secs(1), 10 * MINUTE);
        let (cookie, _) = signins.open("alice", false, Vec::new()).await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert!(signins.find(&cookie, true).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn one_user_has_a_bounded_number_of_sign_ins() {
        let f = fixture();
        let signins = f.signins(MINUTE, 10 * MINUTE);
        let mut cookies = Vec::new();
        for _ in 0..MAX_SIGN_INS_PER_USER {
            cookies.push(signins.open("alice", false, Vec::new()).await.unwrap().0);
        }
        assert!(matches!(
            signins.open("alice", false, Vec::new()).await,
            Err(OpenError::UserFull)
        ));
        assert!(signins.open("bob", false, Vec::new()).await.is_ok());
        assert_eq!(
            signins.close(&cookies[0]).await.unwrap().map(|s| s.user),
            Some("alice".into())
        );
        assert!(signins.open("alice", false, Vec::new()).await.is_ok());
    }

    #[test]
    fn cookies_are_read_from_the_header() {
        let header = "a=1; __Host-daas=abc.def;b=2";
        assert_eq!(cookie_value(header, COOKIE), Some("abc.def"));
        assert_eq!(cookie_value(header, "c"), None);
        let f = fixture();
        let set = f
            .signins(Duration::from_secs(1), Duration::from_secs(3600))
            .set_cookie("v");
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
