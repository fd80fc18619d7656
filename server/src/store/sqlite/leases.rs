//! Leases on the embedded store (see `crate::store::lease`): checking one
//! before a write, renewing this server's, taking over a session.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Context, Holder};
use crate::domain::time::now_ms;
use crate::store::{
    StoreError,
    lease::{in_progress_states, may_write_at},
};

/// Refuses a write to session `id` while another server works on it, or
/// after another took it over from this one; returns its epoch.
pub(super) fn check(conn: &Connection, holder: &Holder, id: &str) -> Result<i64, StoreError> {
    let row: Option<(Option<String>, Option<i64>, i64)> = conn
        .query_row(
            "SELECT owner, lease_until_ms, epoch FROM sessions WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .context("reading a lease")?;
    match row {
        Some((owner, until, epoch)) => {
            let held = holder.held.epoch(id);
            if may_write_at(held, epoch, owner.as_deref(), until, &holder.me, now_ms()) {
                Ok(epoch)
            } else {
                Err(StoreError::Fenced { id: id.to_string() })
            }
        }
        None => Ok(0),
    }
}

/// Renews every lease this server holds.
pub(super) fn renew(conn: &Connection, holder: &Holder) -> Result<u64, StoreError> {
    conn.execute(
        "UPDATE sessions SET lease_until_ms = ?2 WHERE owner = ?1",
        params![&*holder.me, now_ms() + holder.lease_ms()],
    )
    .map(|n| n as u64)
    .context("renewing leases")
}

/// Takes over session `id` (see `SessionStore::take_over`).
pub(super) fn take_over(
    conn: &Connection,
    holder: &Holder,
    id: String,
    force: bool,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let taken = conn
        .execute(
            "UPDATE sessions SET owner = ?2, lease_until_ms = ?3, epoch = epoch + 1 WHERE id = ?1 \
             AND state IN (SELECT value FROM json_each(?5)) \
             AND (owner IS NULL OR owner <> ?2) \
             AND (?4 OR owner IS NULL OR lease_until_ms IS NULL OR lease_until_ms < ?6) \
             AND (?4 OR owner IS NOT NULL OR password_hash IS NULL)",
            params![
                id,
                &*holder.me,
                now + holder.lease_ms(),
                force,
                in_progress_json(),
                now
            ],
        )
        .context("taking over a session")?;
    if taken == 1 {
        let epoch: i64 = conn
            .query_row("SELECT epoch FROM sessions WHERE id = ?1", [&id], |row| {
                row.get(0)
            })
            .context("taking over a session")?;
        holder.held.hold(&id, epoch);
    }
    Ok(taken == 1)
}

/// The states a lease is held in, as a JSON array for `json_each`.
fn in_progress_json() -> String {
    let states: Vec<String> = in_progress_states().iter().map(i32::to_string).collect();
    format!("[{}]", states.join(","))
}

/// Takes over every expired session (see
/// `SessionStore::take_over_expired`).
pub(super) fn take_over_expired(
    conn: &Connection,
    holder: &Holder,
) -> Result<Vec<String>, StoreError> {
    let now = now_ms();
    let mut query = conn
        .prepare(
            "SELECT id FROM sessions WHERE state IN (SELECT value FROM json_each(?2)) \
             AND (owner IS NULL OR owner <> ?1) \
             AND (owner IS NULL OR lease_until_ms IS NULL OR lease_until_ms < ?3) \
             AND (owner IS NOT NULL OR password_hash IS NULL)",
        )
        .context("finding expired sessions")?;
    let ids = query
        .query_map(params![&*holder.me, in_progress_json(), now], |row| {
            row.get::<_, String>(0)
        })
        .context("finding expired sessions")?
        .collect::<Result<Vec<_>, _>>()
        .context("finding expired sessions")?;
    let mut taken = Vec::new();
    for id in ids {
        if take_over(conn, holder, id.clone(), false)? {
            taken.push(id);
        }
    }
    Ok(taken)
}

/// Takes the QUEUED create that waited longest (see
/// `SessionStore::take_queued`): its id and the hash it kept.
pub(super) fn take_queued(
    conn: &Connection,
    holder: &Holder,
    waited_ms: i64,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    let now = now_ms();
    let row: Option<(String, i64, Option<String>)> = conn
        .query_row(
            "UPDATE sessions SET owner = ?1, lease_until_ms = ?2, epoch = epoch + 1 WHERE id = ( \
               SELECT id FROM sessions WHERE state = ?3 AND pool IS NULL \
               AND password_hash IS NOT NULL AND (owner IS NULL OR owner <> ?1) \
               AND stage_started_ms <= ?4 \
               ORDER BY created_ms, id LIMIT 1) \
             RETURNING id, epoch, password_hash",
            params![
                &*holder.me,
                now + holder.lease_ms(),
                daas_api::v1::SessionState::Queued as i32,
                now - waited_ms
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .context("taking a waiting create")?;
    let Some((id, epoch, kept)) = row else {
        return Ok(None);
    };
    holder.held.hold(&id, epoch);
    Ok(Some((id, kept)))
}

/// The hash QUEUED session `id` kept, if any.
pub(super) fn queued_password(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    conn.query_row(
        "SELECT password_hash FROM sessions WHERE id = ?1 AND state = ?2",
        params![id, daas_api::v1::SessionState::Queued as i32],
        |row| row.get::<_, Option<String>>(0),
    )
    .optional()
    .context("reading a waiting create")
    .map(Option::flatten)
}

/// Gives QUEUED session `id`, held by this server, back to the queue (see
/// `SessionStore::release_queued`).
pub(super) fn release_queued(
    conn: &Connection,
    holder: &Holder,
    id: &str,
) -> Result<bool, StoreError> {
    let released = conn
        .execute(
            "UPDATE sessions SET owner = NULL, lease_until_ms = NULL, epoch = epoch + 1 \
             WHERE id = ?1 AND state = ?2 AND owner = ?3 AND password_hash IS NOT NULL",
            params![id, daas_api::v1::SessionState::Queued as i32, &*holder.me],
        )
        .context("giving a create back to the queue")?;
    holder.held.release(id);
    Ok(released == 1)
}
