//! What every backend decides the same way when a create comes: whether it
//! repeats an earlier one or fits the limits (the backend counts, in its
//! write transaction), the VM name it gets, and what its first event says.

use daas_api::v1::SessionState;
use rand::Rng;

use crate::domain::orgs::Amounts;
use crate::domain::time::clock_time;
use crate::store::{LimitHit, LiveCounts, NewSession, SessionLimits, StoreError};

/// What a create asks of the server's desktops.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A desktop more: the server's limit applies (and the user's, unless
    /// it is a warm pool's desktop, built for nobody).
    NewDesktop,
    /// A pool's desktop that counts already: the user's limit alone.
    Claim,
}

/// The states whose sessions count against the limits: all but these.
pub(crate) const NOT_LIVE: [SessionState; 3] = [
    SessionState::Failed,
    SessionState::Destroyed,
    SessionState::Lost,
];

/// Refuses a create that would exceed a limit, given what the live
/// sessions hold: the server's, the user's, then the organisation's quota
/// and its member's.
pub(crate) fn check_limits(
    new: &NewSession,
    limits: SessionLimits,
    admission: Admission,
    live: LiveCounts,
) -> Result<(), StoreError> {
    if admission == Admission::NewDesktop && live.total >= limits.max_sessions {
        return Err(StoreError::LimitReached(LimitHit::Server(
            limits.max_sessions,
        )));
    }
    let for_nobody = admission == Admission::NewDesktop && new.pool.is_some();
    if !for_nobody && live.of_user >= limits.max_per_user {
        return Err(StoreError::LimitReached(LimitHit::User(
            new.username.clone(),
            limits.max_per_user,
        )));
    }
    if let (Some(org), Some(quotas)) = (&new.org, limits.org) {
        let needs = needs(new);
        let hit = |member: Option<String>, over| {
            StoreError::LimitReached(LimitHit::Quota {
                org: org.clone(),
                member,
                over,
            })
        };
        if let Some(over) = quotas.org.exceeded(live.org, needs) {
            return Err(hit(None, over));
        }
        if let Some(over) = quotas.member.exceeded(live.user_in_org, needs) {
            return Err(hit(Some(new.username.clone()), over));
        }
    }
    Ok(())
}

/// The live counts as a backend's query gives them: all sessions, the
/// user's, the organisation's (desktops, cores, memory) and the user's in it.
pub(crate) fn live_counts(c: [i64; 8]) -> LiveCounts {
    let count = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
    let amounts = |desktops: i64, cores: i64, memory_mb: i64| Amounts {
        desktops: u32::try_from(desktops).unwrap_or(u32::MAX),
        cores: u32::try_from(cores).unwrap_or(u32::MAX),
        memory_mb: u64::try_from(memory_mb).unwrap_or(u64::MAX),
    };
    LiveCounts {
        total: count(c[0]),
        of_user: count(c[1]),
        org: amounts(c[2], c[3], c[4]),
        user_in_org: amounts(c[5], c[6], c[7]),
    }
}

/// What one more desktop of `new`'s size holds.
pub(crate) fn needs(new: &NewSession) -> Amounts {
    Amounts {
        desktops: 1,
        cores: new.size.as_ref().map_or(0, |s| s.cores),
        memory_mb: new.size.as_ref().map_or(0, |s| s.memory_mb),
    }
}

/// A fresh VM name: the contract's prefix and six random characters.
pub(crate) fn random_vm_name() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{}{suffix}", crate::domain::contract::VM_NAME_PREFIX)
}

/// What a new session's first event says.
pub(crate) fn created_message(new: &NewSession) -> String {
    match (&new.pool, &new.note) {
        (Some(pool), _) => {
            format!("a desktop for warm pool '{pool}'; waiting for a provisioning slot")
        }
        (None, Some(note)) => format!("{note}; waiting for a provisioning slot"),
        (None, None) => "waiting for a provisioning slot".into(),
    }
}

/// What a claimed desktop's first event says: where it came from (after
/// the create's `note`).
pub(crate) fn claimed_message(
    new: &NewSession,
    vm_name: &str,
    pool: &str,
    built_ms: i64,
    ready_ms: i64,
) -> String {
    let note = new
        .note
        .as_deref()
        .map(|n| format!("{n}; "))
        .unwrap_or_default();
    format!(
        "{note}claimed warm desktop {vm_name} from pool '{pool}' (built in {}, ready since {})",
        humantime::format_duration(std::time::Duration::from_secs(
            u64::try_from((ready_ms - built_ms) / 1000).unwrap_or(0)
        )),
        clock_time(ready_ms)
    )
}
