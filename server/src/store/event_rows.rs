//! How every backend stores a session's events: the encoded protobuf, with
//! the kind and time retention looks at as columns; and the events every
//! backend makes the same way (a session's first, a stage change).

use daas_api::v1::{SessionEvent, SessionState, StageChange, session_event::Kind};
use prost::Message;

use crate::domain::time::{duration, timestamp};
use crate::store::{SessionRecord, StoreError};

/// The `events.kind` column: which events retention may prune.
const EVENT_UNKNOWN: i32 = 0;
const EVENT_STAGE_CHANGE: i32 = 1;
pub(crate) const EVENT_OUTPUT: i32 = 2;
const EVENT_IDLE_WARNING: i32 = 3;

pub(crate) fn event_kind(event: &SessionEvent) -> i32 {
    match event.kind {
        Some(Kind::StageChange(_)) => EVENT_STAGE_CHANGE,
        Some(Kind::Output(_)) => EVENT_OUTPUT,
        Some(Kind::IdleWarning(_)) => EVENT_IDLE_WARNING,
        None => EVENT_UNKNOWN,
    }
}

/// The `events.time_ms` column: the event's time in milliseconds (0 when
/// it has none).
pub(crate) fn event_time_ms(event: &SessionEvent) -> i64 {
    event
        .time
        .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
        .unwrap_or(0)
}

/// An `events.body` of session `id`, decoded.
pub(crate) fn event_from_body(id: &str, body: &[u8]) -> Result<SessionEvent, StoreError> {
    SessionEvent::decode(body).map_err(|_| StoreError::CorruptEvent(id.to_string()))
}

/// The first event of a session: QUEUED at `now_ms`, saying `message`.
pub(crate) fn first_event(id: &str, now_ms: i64, message: String) -> SessionEvent {
    SessionEvent {
        session_id: id.to_string(),
        sequence: 1,
        time: Some(timestamp(now_ms)),
        state: SessionState::Queued as i32,
        stage_elapsed: Some(duration(0)),
        kind: Some(Kind::StageChange(StageChange {
            previous: SessionState::Unspecified as i32,
            previous_duration: Some(duration(0)),
            message,
        })),
        session: None,
    }
}

/// The event of a move to `record.state` from `previous` (whose stage
/// began at `stage_started_ms`), numbered `sequence`, at `now_ms`; a
/// settled session's event carries the session.
pub(crate) fn stage_change(
    record: &SessionRecord,
    sequence: u64,
    previous: i32,
    stage_started_ms: i64,
    now_ms: i64,
    message: String,
) -> SessionEvent {
    SessionEvent {
        session_id: record.id.clone(),
        sequence,
        time: Some(timestamp(now_ms)),
        state: record.state as i32,
        stage_elapsed: Some(duration(0)),
        kind: Some(Kind::StageChange(StageChange {
            previous,
            previous_duration: Some(duration(now_ms - stage_started_ms)),
            message,
        })),
        session: record.state.is_settled().then(|| record.to_proto()),
    }
}

/// An event of the current stage (`state`, begun at `stage_started_ms`):
/// an output line or an idle warning.
pub(crate) fn in_stage(
    id: &str,
    sequence: u64,
    state: i32,
    stage_started_ms: i64,
    now_ms: i64,
    kind: Kind,
) -> SessionEvent {
    SessionEvent {
        session_id: id.to_string(),
        sequence,
        time: Some(timestamp(now_ms)),
        state,
        stage_elapsed: Some(duration(now_ms - stage_started_ms)),
        kind: Some(kind),
        session: None,
    }
}
