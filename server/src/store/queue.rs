//! Creates wait in the store, not in a server: a QUEUED create keeps its
//! session user's password hash (nothing else it needs lives outside its
//! row), so that a server with a free provisioning permit takes over a
//! create another server has kept waiting ([`SessionStore::take_queued`],
//! the oldest first, `FOR UPDATE SKIP LOCKED` on PostgreSQL), and a server
//! that takes over the QUEUED create of a dead one gives it back to the
//! queue ([`SessionStore::release_queued`]: held by no server, it is taken,
//! not taken over) instead of failing it. The hash is forgotten at the session's first move (every
//! transition clears it). Warm pools' desktops keep none and are not
//! taken: their pool's reconcile builds them.
//!
//! [`SessionStore::take_queued`]: crate::store::SessionStore::take_queued
//! [`SessionStore::release_queued`]: crate::store::SessionStore::release_queued

use crate::{domain::password::PasswordHash, store::NewSession};

/// What the row keeps for `new`: its hash ("" without a session user), or
/// NULL for a warm pool's desktop.
pub(crate) fn kept_password(new: &NewSession) -> Option<String> {
    new.pool
        .is_none()
        .then(|| new.password.expose().to_string())
}

/// The hash a row kept, if it is one (a value that is not a SHA-512 crypt
/// hash is treated as none kept: the create cannot be run elsewhere).
pub(crate) fn password_of(kept: Option<String>) -> Option<PasswordHash> {
    match kept.as_deref() {
        None => None,
        Some("") => Some(PasswordHash::none()),
        Some(text) => PasswordHash::from_crypt(text),
    }
}
