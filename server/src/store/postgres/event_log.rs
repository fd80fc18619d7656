//! The `events` table, each session's numbered history: how an event is
//! numbered (under its session row's lock, so two servers never give one
//! number twice) and stored, output lines, reading a history back, and the
//! retention that prunes old output.

use daas_api::v1::{OutputLine, SessionEvent, session_event::Kind};
use prost::Message;
use tokio_postgres::{GenericClient, Transaction};

use super::{
    Context,
    leases::{self, Holder},
};
use crate::domain::time::now_ms;
use crate::store::{
    StoreError,
    event_rows::{EVENT_OUTPUT, event_from_body, event_kind, event_time_ms, in_stage},
};

/// A session's row, locked until the transaction ends.
pub(super) struct Locked {
    pub state: i32,
    pub stage_started_ms: i64,
    pub epoch: i64,
}

/// A session's state, when its current stage began and its epoch, with
/// its row locked until the transaction ends; refused while another
/// server works on it (see `crate::store::lease`).
pub(super) async fn lock_session(
    tx: &Transaction<'_>,
    holder: &Holder,
    id: &str,
) -> Result<Locked, StoreError> {
    let row = tx
        .query_opt(
            "SELECT state, stage_started_ms, owner, lease_until_ms, epoch FROM sessions \
             WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .context("reading a session")?
        .ok_or_else(|| StoreError::Missing(id.to_string()))?;
    let read = |e| StoreError::Postgres {
        context: "reading a session",
        source: e,
    };
    let owner: Option<String> = row.try_get(2).map_err(read)?;
    let locked = Locked {
        state: row.try_get(0).map_err(read)?,
        stage_started_ms: row.try_get(1).map_err(read)?,
        epoch: row.try_get(4).map_err(read)?,
    };
    let until: Option<i64> = row.try_get(3).map_err(read)?;
    leases::check(holder, id, locked.epoch, owner.as_deref(), until)?;
    Ok(locked)
}

/// A session's state and when its current stage began, locked as
/// [`lock_session`] locks it.
pub(super) async fn lock_stage(
    tx: &Transaction<'_>,
    holder: &Holder,
    id: &str,
) -> Result<(i32, i64), StoreError> {
    let locked = lock_session(tx, holder, id).await?;
    Ok((locked.state, locked.stage_started_ms))
}

/// The next number of the session's history; its row is locked.
pub(super) async fn next_sequence(tx: &Transaction<'_>, id: &str) -> Result<u64, StoreError> {
    let last: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = $1",
            &[&id],
        )
        .await
        .and_then(|row| row.try_get(0))
        .context("numbering an event")?;
    Ok(last as u64 + 1)
}

pub(super) async fn insert_event(
    tx: &Transaction<'_>,
    event: &SessionEvent,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (session_id, seq, body, kind, time_ms) VALUES ($1, $2, $3, $4, $5)",
        &[
            &event.session_id,
            &(event.sequence as i64),
            &event.encode_to_vec(),
            &event_kind(event),
            &event_time_ms(event),
        ],
    )
    .await
    .context("storing an event")?;
    Ok(())
}

/// Records a line of tool output as the session's next event.
pub(super) async fn output(
    tx: &Transaction<'_>,
    holder: &Holder,
    id: &str,
    line: OutputLine,
) -> Result<SessionEvent, StoreError> {
    let (state, stage_started) = lock_stage(tx, holder, id).await?;
    let sequence = next_sequence(tx, id).await?;
    let event = in_stage(
        id,
        sequence,
        state,
        stage_started,
        now_ms(),
        Kind::Output(line),
    );
    insert_event(tx, &event).await?;
    Ok(event)
}

/// The session's events with a sequence above `after`, in order.
pub(super) async fn events_after(
    db: &impl GenericClient,
    id: &str,
    after: u64,
) -> Result<Vec<SessionEvent>, StoreError> {
    let rows = db
        .query(
            "SELECT body FROM events WHERE session_id = $1 AND seq > $2 ORDER BY seq",
            &[&id, &(after as i64)],
        )
        .await
        .context("reading events")?;
    rows.iter()
        .map(|row| {
            let body: Vec<u8> = row.try_get(0).context("reading events")?;
            event_from_body(id, &body)
        })
        .collect()
}

/// Event `sequence` of the session, if stored.
pub(super) async fn event(
    db: &impl GenericClient,
    id: &str,
    sequence: u64,
) -> Result<Option<SessionEvent>, StoreError> {
    let row = db
        .query_opt(
            "SELECT body FROM events WHERE session_id = $1 AND seq = $2",
            &[&id, &(sequence as i64)],
        )
        .await
        .context("reading an event")?;
    match row {
        Some(row) => {
            let body: Vec<u8> = row.try_get(0).context("reading an event")?;
            event_from_body(id, &body).map(Some)
        }
        None => Ok(None),
    }
}

/// Deletes the output lines recorded before `before_ms`.
pub(super) async fn prune_output(
    db: &impl GenericClient,
    before_ms: i64,
) -> Result<usize, StoreError> {
    db.execute(
        "DELETE FROM events WHERE kind = $1 AND time_ms < $2",
        &[&EVENT_OUTPUT, &before_ms],
    )
    .await
    .map(|n| n as usize)
    .context("pruning old output lines")
}
