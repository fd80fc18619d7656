//! The audit trail's records: who did what to which session, from where,
//! and how it ended. Appended by `crate::audit`, read by `ListAudit`.

/// One entry of the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// Row id; 0 for an entry not yet stored.
    pub id: i64,
    pub time_ms: i64,
    /// The certificate's user, `agent`, `local`, `server`, `reaper`, or
    /// empty when no certificate was shown.
    pub actor: String,
    pub subject: String,
    pub fingerprint: String,
    pub peer: String,
    pub action: String,
    pub session_id: String,
    pub owner: String,
    /// `OK` or a gRPC code name (`PERMISSION_DENIED`).
    pub result: String,
    pub detail: String,
    /// The organisation of the session or the caller; empty: none.
    pub org: String,
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries whose actor or owner is this user.
    pub username: Option<String>,
    pub session_id: Option<String>,
    /// Entries of this organisation.
    pub org: Option<String>,
    /// At or after this time.
    pub since_ms: Option<i64>,
    /// After this entry of the previous page: (time_ms, id).
    pub before: Option<(i64, i64)>,
    pub limit: u32,
}
