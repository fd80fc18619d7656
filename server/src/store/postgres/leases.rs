//! Leases on PostgreSQL (see `crate::store::lease`): checking one before a
//! write, renewing this server's, taking over a session.

use tokio_postgres::GenericClient;

use super::Context;
use crate::domain::time::now_ms;
use crate::store::{
    StoreError,
    lease::{in_progress_states, may_write_at},
};

/// The server a store writes for: its name and how long its leases run.
#[derive(Clone)]
pub(super) struct Holder {
    pub me: std::sync::Arc<str>,
    pub lease_ms: i64,
    /// The sessions this server works on, and their epochs.
    pub held: crate::store::lease::Held,
}

/// Refuses a write to session `id` (at `epoch`, its lease held by `owner`
/// until `until`) while another server works on it, or after another took
/// it over from this one.
pub(super) fn check(
    holder: &Holder,
    id: &str,
    epoch: i64,
    owner: Option<&str>,
    until: Option<i64>,
) -> Result<(), StoreError> {
    let held = holder.held.epoch(id);
    if may_write_at(held, epoch, owner, until, &holder.me, now_ms()) {
        Ok(())
    } else {
        Err(StoreError::Fenced { id: id.to_string() })
    }
}

/// Reads session `id`'s lease and refuses the write as [`check`] does.
pub(super) async fn check_row(
    db: &impl GenericClient,
    holder: &Holder,
    id: &str,
) -> Result<(), StoreError> {
    let row = db
        .query_opt(
            "SELECT owner, lease_until_ms, epoch FROM sessions WHERE id = $1",
            &[&id],
        )
        .await
        .context("reading a lease")?;
    match row {
        Some(row) => {
            let owner: Option<String> = row.try_get(0).context("reading a lease")?;
            let until: Option<i64> = row.try_get(1).context("reading a lease")?;
            let epoch: i64 = row.try_get(2).context("reading a lease")?;
            check(holder, id, epoch, owner.as_deref(), until)
        }
        None => Ok(()),
    }
}

/// Renews every lease this server holds.
pub(super) async fn renew(db: &impl GenericClient, holder: &Holder) -> Result<u64, StoreError> {
    db.execute(
        "UPDATE sessions SET lease_until_ms = $2 WHERE owner = $1",
        &[&&*holder.me, &(now_ms() + holder.lease_ms)],
    )
    .await
    .context("renewing leases")
}

/// Takes over session `id` (see `SessionStore::take_over`).
pub(super) async fn take_over(
    db: &impl GenericClient,
    holder: &Holder,
    id: &str,
    force: bool,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let taken = db
        .query_opt(
            // A row another server has locked (frozen mid-write) is left
            // for a later pass: renewing this server's leases must not wait.
            "UPDATE sessions SET owner = $2, lease_until_ms = $3, epoch = epoch + 1 WHERE id = ( \
               SELECT id FROM sessions WHERE id = $1 \
               AND state = ANY($5) AND (owner IS NULL OR owner <> $2) \
               AND ($4 OR owner IS NULL OR lease_until_ms IS NULL OR lease_until_ms < $6) \
               AND ($4 OR owner IS NOT NULL OR password_hash IS NULL) \
               FOR UPDATE SKIP LOCKED) RETURNING epoch",
            &[
                &id,
                &&*holder.me,
                &(now + holder.lease_ms),
                &force,
                &in_progress_states(),
                &now,
            ],
        )
        .await
        .context("taking over a session")?;
    match taken {
        Some(row) => {
            let epoch: i64 = row.try_get(0).context("taking over a session")?;
            holder.held.hold(id, epoch);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Takes over every expired session (see
/// `SessionStore::take_over_expired`); rows locked by a write elsewhere
/// wait for a later pass.
pub(super) async fn take_over_expired(
    db: &impl GenericClient,
    holder: &Holder,
) -> Result<Vec<String>, StoreError> {
    let now = now_ms();
    let rows = db
        .query(
            "UPDATE sessions SET owner = $1, lease_until_ms = $2, epoch = epoch + 1 WHERE id IN ( \
               SELECT id FROM sessions WHERE state = ANY($3) \
               AND (owner IS NULL OR owner <> $1) \
               AND (owner IS NULL OR lease_until_ms IS NULL OR lease_until_ms < $4) \
               AND (owner IS NOT NULL OR password_hash IS NULL) \
               FOR UPDATE SKIP LOCKED) RETURNING id, epoch",
            &[
                &&*holder.me,
                &(now + holder.lease_ms),
                &in_progress_states(),
                &now,
            ],
        )
        .await
        .context("taking over expired sessions")?;
    let mut taken = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get(0).context("taking over expired sessions")?;
        let epoch: i64 = row.try_get(1).context("taking over expired sessions")?;
        holder.held.hold(&id, epoch);
        taken.push(id);
    }
    Ok(taken)
}

/// Takes the QUEUED create that waited longest (see
/// `SessionStore::take_queued`): its id and the hash it kept.
pub(super) async fn take_queued(
    db: &impl GenericClient,
    holder: &Holder,
    waited_ms: i64,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    let now = now_ms();
    let row = db
        .query_opt(
            "UPDATE sessions SET owner = $1, lease_until_ms = $2, epoch = epoch + 1 WHERE id = ( \
               SELECT id FROM sessions WHERE state = $3 AND pool IS NULL \
               AND password_hash IS NOT NULL AND (owner IS NULL OR owner <> $1) \
               AND stage_started_ms <= $4 \
               ORDER BY created_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, epoch, password_hash",
            &[
                &&*holder.me,
                &(now + holder.lease_ms),
                &(daas_api::v1::SessionState::Queued as i32),
                &(now - waited_ms),
            ],
        )
        .await
        .context("taking a waiting create")?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.try_get(0).context("taking a waiting create")?;
    let epoch: i64 = row.try_get(1).context("taking a waiting create")?;
    let kept: Option<String> = row.try_get(2).context("taking a waiting create")?;
    holder.held.hold(&id, epoch);
    Ok(Some((id, kept)))
}

/// The hash QUEUED session `id` kept, if any.
pub(super) async fn queued_password(
    db: &impl GenericClient,
    id: &str,
) -> Result<Option<String>, StoreError> {
    let row = db
        .query_opt(
            "SELECT password_hash FROM sessions WHERE id = $1 AND state = $2",
            &[&id, &(daas_api::v1::SessionState::Queued as i32)],
        )
        .await
        .context("reading a waiting create")?;
    match row {
        Some(row) => row.try_get(0).context("reading a waiting create"),
        None => Ok(None),
    }
}

/// Gives QUEUED session `id`, held by this server, back to the queue (see
/// `SessionStore::release_queued`).
pub(super) async fn release_queued(
    db: &impl GenericClient,
    holder: &Holder,
    id: &str,
) -> Result<bool, StoreError> {
    let released = db
        .execute(
            "UPDATE sessions SET owner = NULL, lease_until_ms = NULL, epoch = epoch + 1 \
             WHERE id = $1 AND state = $2 AND owner = $3 AND password_hash IS NOT NULL",
            &[
                &id,
                &(daas_api::v1::SessionState::Queued as i32),
                &&*holder.me,
            ],
        )
        .await
        .context("giving a create back to the queue")?;
    holder.held.release(id);
    Ok(released == 1)
}
