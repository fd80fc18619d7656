//! Session states and the moves between them, in one place. The store
//! refuses any other move, and every move is a compare-and-set from the
//! state the caller saw, so no path can write FAILED after DESTROYED or
//! READY after DESTROYING.
//!
//! ```text
//! QUEUED -> PROVISIONING -> BOOTING -> CONFIGURING -> READY
//!    \           \             \            \          |
//!     +-----------+-------------+------------+--> FAILED (provisioning failed, cleaned up)
//!                                                      |
//! any of the above (and DESTROYING after a restart) -> DESTROYING -> DESTROYED
//!                                                          \-> FAILED (the destroy failed)
//!
//! QUEUED -> CONFIGURING -> READY: a desktop claimed from a warm pool
//!
//! READY -> LOST: its cluster node went offline; then DESTROYING (a destroy
//! once the node is back) or DESTROYED (the sweeper destroyed its VM, or
//! the node came back without it)
//! ```
//!
//! A warm pool's desktop that a create claims is made QUEUED again by the
//! claim itself (one store transaction, not a move of this machine).

use daas_api::v1::SessionState;

/// Whether a session may move from `from` to `to`.
pub fn allowed(from: SessionState, to: SessionState) -> bool {
    use SessionState::*;
    match (from, to) {
        // Provisioning, one stage after the other.
        (Queued, Provisioning)
        | (Provisioning, Booting)
        | (Booting, Configuring)
        | (Configuring, Ready) => true,
        // A desktop claimed from a warm pool: only its per-user part.
        (Queued, Configuring) => true,
        // A failed stage (or a restart during it) after its cleanup.
        (Queued | Provisioning | Booting | Configuring, Failed) => true,
        // A destroy may start from anywhere but the end; DESTROYING to
        // DESTROYING is a destroy taken up again after a restart.
        (
            Queued | Provisioning | Booting | Configuring | Ready | Failed | Destroying,
            Destroying,
        ) => true,
        (Destroying, Destroyed | Failed) => true,
        // Its node went offline; the VM goes when the node is back.
        (Ready, Lost) | (Lost, Destroying | Destroyed) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionState::*;

    const ALL: [SessionState; 10] = [
        Unspecified,
        Queued,
        Provisioning,
        Booting,
        Configuring,
        Ready,
        Failed,
        Destroying,
        Destroyed,
        Lost,
    ];

    #[test]
    fn nothing_leaves_destroyed_and_nothing_enters_queued() {
        for state in ALL {
            assert!(!allowed(Destroyed, state), "DESTROYED -> {state:?}");
            assert!(!allowed(state, Queued), "{state:?} -> QUEUED");
            assert!(!allowed(state, Unspecified), "{state:?} -> UNSPECIFIED");
        }
    }

    #[test]
    fn the_races_of_the_old_store_are_refused() {
        assert!(!allowed(Destroyed, Failed));
        assert!(!allowed(Destroying, Ready));
        assert!(!allowed(Ready, Failed));
        assert!(!allowed(Lost, Ready), "a lost desktop is not trusted again");
        assert!(
            !allowed(Configuring, Lost),
            "a create under way fails instead"
        );
        assert!(!allowed(Failed, Ready));
        assert!(!allowed(Provisioning, Ready), "no stage is skipped");
        assert!(
            !allowed(Queued, Ready),
            "a claimed desktop is configured first"
        );
    }

    #[test]
    fn every_in_progress_state_can_fail_or_be_destroyed() {
        for state in [Queued, Provisioning, Booting, Configuring] {
            assert!(allowed(state, Failed));
            assert!(allowed(state, Destroying));
        }
        assert!(allowed(Ready, Destroying));
        assert!(allowed(Failed, Destroying));
        assert!(allowed(Destroying, Destroyed));
    }
}
