//! The portal's sign-ins as the store keeps them, so a restarted server
//! (or another one on the same store) knows every signed-in browser. The
//! cookie's id is never stored: only its SHA-256.

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRecord {
    /// SHA-256 (hex) of the id the cookie carries.
    pub id_hash: String,
    pub user: String,
    pub admin: bool,
    /// Sent back in `X-CSRF-Token` by every state-changing call.
    pub csrf: String,
    /// Names this sign-in (not the cookie): its relays are closed with it.
    pub key: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    /// When the user's groups were last read from the directory.
    pub checked_ms: i64,
    /// Their groups among those the catalog's templates name.
    pub groups: Vec<String>,
}

/// What opening a sign-in did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInOpened {
    Opened,
    /// The user has `per_user` sign-ins already.
    UserFull,
    /// The portal has `total` sign-ins already.
    Full,
}

/// The limits an open checks, and which sign-ins have ended: those unused
/// since `idle_before_ms` or made before `made_before_ms` are deleted first.
#[derive(Debug, Clone, Copy)]
pub struct SignInLimits {
    pub per_user: usize,
    pub total: usize,
    pub idle_before_ms: i64,
    pub made_before_ms: i64,
}
