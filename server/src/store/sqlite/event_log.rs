//! The `events` table, each session's numbered history: how an event is
//! numbered and stored, output lines, reading a history back, and the
//! retention that prunes old output.

use daas_api::v1::{OutputLine, SessionEvent, session_event::Kind};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Context, Holder, leases};
use crate::domain::time::now_ms;
use crate::store::{
    StoreError,
    event_rows::{EVENT_OUTPUT, event_from_body, event_kind, event_time_ms, in_stage},
    events::Hub,
};

/// A session's state and when its current stage began.
pub(super) fn current_stage(conn: &Connection, id: &str) -> Result<(i32, i64), StoreError> {
    conn.query_row(
        "SELECT state, stage_started_ms FROM sessions WHERE id = ?1",
        [id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .context("reading a session")?
    .ok_or_else(|| StoreError::Missing(id.to_string()))
}

pub(super) fn next_sequence(conn: &Connection, id: &str) -> Result<u64, StoreError> {
    let last: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = ?1",
            [id],
            |row| row.get(0),
        )
        .context("numbering an event")?;
    Ok(last as u64 + 1)
}

/// Stores `event`, and a webhook delivery for each webhook that wants it
/// (`live`'s outbox).
pub(super) fn insert_event(
    conn: &Connection,
    live: &Hub,
    event: &SessionEvent,
) -> Result<(), StoreError> {
    super::outbox::insert(conn, &live.outbox_for(event), event)?;
    conn.execute(
        "INSERT INTO events (session_id, seq, body, kind, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            event.session_id,
            event.sequence as i64,
            event.encode_to_vec(),
            event_kind(event),
            event_time_ms(event)
        ],
    )
    .context("storing an event")?;
    Ok(())
}

/// Records a line of tool output as the session's next event.
pub(super) fn output(
    conn: &mut Connection,
    live: &Hub,
    holder: &Holder,
    id: String,
    line: OutputLine,
) -> Result<SessionEvent, StoreError> {
    let tx = conn.transaction().context("starting a transaction")?;
    leases::check(&tx, holder, &id)?;
    let (state, stage_started) = current_stage(&tx, &id)?;
    let now = now_ms();
    let sequence = next_sequence(&tx, &id)?;
    let event = in_stage(&id, sequence, state, stage_started, now, Kind::Output(line));
    insert_event(&tx, live, &event)?;
    tx.commit().context("committing an output line")?;
    live.publish(&event);
    Ok(event)
}

/// The session's events with a sequence above `after`, in order.
pub(super) fn events_after(
    conn: &Connection,
    id: String,
    after: u64,
) -> Result<Vec<SessionEvent>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT body FROM events WHERE session_id = ?1 AND seq > ?2 ORDER BY seq")
        .context("reading events")?;
    let bodies = stmt
        .query_map(params![id, after as i64], |row| row.get::<_, Vec<u8>>(0))
        .context("reading events")?
        .collect::<Result<Vec<_>, _>>()
        .context("reading events")?;
    bodies
        .into_iter()
        .map(|body| event_from_body(&id, &body))
        .collect()
}

/// Deletes the output lines recorded before `before_ms`.
pub(super) fn prune_output(conn: &Connection, before_ms: i64) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM events WHERE kind = ?1 AND time_ms < ?2",
        params![EVENT_OUTPUT, before_ms],
    )
    .context("pruning old output lines")
}
