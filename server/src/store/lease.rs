//! Who works on a session: the server that holds its lease. A server takes
//! the lease when it starts working on a session (a create, a claim, a move
//! into a state in progress), renews it while it works (a heartbeat for
//! all its sessions at once), and gives it up when the session settles.
//! A session whose lease ran out (its server died, froze or lost the
//! database) is taken over by another server. Fencing: a server that does
//! not hold a session's lease, while another's still runs, writes nothing
//! to it (its moves, output and records are refused).
//!
//! Each take of a session (a create, a claim, a move out of a settled
//! state, a takeover) gives it a new epoch, and the server remembers the
//! epoch of each session it works on ([`Held`]): its writes carry that
//! epoch in their compare-and-set, so a server that wakes up after
//! another took its session over (and maybe settled it) writes nothing.

/// The states a server works in (and holds a lease for), as stored.
pub(crate) fn in_progress_states() -> Vec<i32> {
    [
        daas_api::v1::SessionState::Queued,
        daas_api::v1::SessionState::Provisioning,
        daas_api::v1::SessionState::Booting,
        daas_api::v1::SessionState::Configuring,
        daas_api::v1::SessionState::Destroying,
    ]
    .iter()
    .map(|s| *s as i32)
    .collect()
}

/// How long a lease runs unless renewed, by default.
pub const DEFAULT_LEASE_MS: i64 = 30_000;

/// Whether `me` may write to a session whose lease `owner` holds until
/// `until_ms`, at `now_ms`: nobody holds it, `me` does, or it ran out.
pub(crate) fn may_write(owner: Option<&str>, until_ms: Option<i64>, me: &str, now_ms: i64) -> bool {
    match owner {
        None => true,
        Some(owner) => owner == me || until_ms.is_none_or(|until| until < now_ms),
    }
}

/// The epochs of the sessions this server works on.
#[derive(Clone, Default)]
pub(crate) struct Held(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The epoch this server took session `id` at, if it works on it.
    pub fn epoch(&self, id: &str) -> Option<i64> {
        self.lock().get(id).copied()
    }

    /// This server works on `id` from `epoch` on.
    pub fn hold(&self, id: &str, epoch: i64) {
        self.lock().insert(id.to_string(), epoch);
    }

    /// This server no longer works on `id`.
    pub fn release(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// Whether this server may write to a session at `epoch` whose lease
/// `owner` holds until `until_ms`: with the epoch it took the session at,
/// if it works on it (`held`); else as [`may_write`] says.
pub(crate) fn may_write_at(
    held: Option<i64>,
    epoch: i64,
    owner: Option<&str>,
    until_ms: Option<i64>,
    me: &str,
    now_ms: i64,
) -> bool {
    match held {
        Some(held) => held == epoch,
        None => may_write(owner, until_ms, me, now_ms),
    }
}

/// The server that works on a session moving into `to`, and until when:
/// `me` while it is in progress, nobody once it settles.
pub(crate) fn holder_after(
    to: daas_api::v1::SessionState,
    me: &str,
    now_ms: i64,
    lease_ms: i64,
) -> (Option<String>, Option<i64>) {
    if to.is_in_progress() {
        (Some(me.to_string()), Some(now_ms + lease_ms))
    } else {
        (None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daas_api::v1::SessionState;

    #[test]
    fn only_the_holder_writes_while_the_lease_runs() {
        assert!(may_write(None, None, "a", 10));
        assert!(may_write(Some("a"), Some(20), "a", 10));
        assert!(!may_write(Some("b"), Some(20), "a", 10));
        assert!(may_write(Some("b"), Some(9), "a", 10), "b's lease ran out");
        assert!(may_write(Some("b"), None, "a", 10));
    }

    #[test]
    fn a_server_that_works_on_a_session_writes_only_at_its_epoch() {
        assert!(may_write_at(Some(3), 3, Some("a"), Some(20), "a", 10));
        assert!(
            !may_write_at(Some(3), 4, None, None, "a", 10),
            "taken and settled"
        );
        assert!(may_write_at(None, 4, None, None, "a", 10));
        let held = Held::default();
        held.hold("s", 2);
        assert_eq!(held.epoch("s"), Some(2));
        held.release("s");
        assert_eq!(held.epoch("s"), None);
    }

    #[test]
    fn a_settled_session_has_no_holder() {
        assert_eq!(
            holder_after(SessionState::Provisioning, "a", 10, 5),
            (Some("a".into()), Some(15))
        );
        assert_eq!(holder_after(SessionState::Ready, "a", 10, 5), (None, None));
    }
}
