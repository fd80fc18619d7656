//! Users' schedules as the store keeps them: a desktop of a template and
//! size READY at a time of day on some days, in a time zone, and what its
//! last run did. Which occurrence is due is `domain::recurrence`'s; acting
//! on it is `schedules::run`'s.

/// One schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// A UUID.
    pub id: String,
    pub username: String,
    /// "HH:MM", the days and the IANA time zone, as given (checked).
    pub at: String,
    pub days: String,
    pub timezone: String,
    pub template: String,
    pub size: String,
    /// The organisation its desktops count against.
    pub org: Option<String>,
    pub created_ms: i64,
    /// The occurrence (when a desktop was due READY) last acted on.
    pub last_due_ms: Option<i64>,
    /// When that was, the session it made, and why its create was refused.
    pub last_run_ms: Option<i64>,
    pub last_session_id: String,
    pub last_error: String,
}

pub use super::which::Which;

/// What one run of a schedule did, for [`ScheduleRecord`]'s `last_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    Created(String),
    /// Why, and the webhooks to tell (in the same transaction).
    Refused(String, super::outbox::Told),
}

/// The most schedules one user may have.
pub const MAX_PER_USER: usize = 10;
