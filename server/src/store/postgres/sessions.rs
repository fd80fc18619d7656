//! Writing sessions: a create (its admission against the limits, the
//! lowest free slot, a fresh VM name), a claim of a warm pool's desktop,
//! the compare-and-set state moves, and what provisioning records on a
//! session (VM outputs, the tool's process group, the freed slot).
//!
//! A create and a claim run under one advisory lock: the limits and the
//! slots hold whichever server the creates come to.

use daas_api::v1::{SessionEvent, SessionState};
use tokio_postgres::{GenericClient, Transaction};

use super::{
    Context,
    event_log::{insert_event, lock_session, next_sequence},
    leases::{self, Holder},
    locks,
    reads::{by_request_key, get_session},
};
use crate::domain::time::now_ms;
use crate::store::{
    ChildRecord, NewSession, SessionLimits, SessionRecord, StoreError, TerraformFiles, VmOutputs,
    admission::{
        Admission, NOT_LIVE, check_limits, claimed_message, created_message, live_counts,
        random_vm_name,
    },
    event_rows::{first_event, stage_change},
    lease::holder_after,
    state_from_db,
};

/// Takes the admission lock, then refuses a create that repeats an earlier
/// one (its request key) or would exceed a limit.
async fn admit(
    tx: &Transaction<'_>,
    new: &NewSession,
    limits: SessionLimits,
    admission: Admission,
) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::ADMISSION])
        .await
        .context("waiting for the admission lock")?;
    if let Some(key) = &new.request_key
        && let Some(earlier) = by_request_key(tx, key).await?
    {
        return Err(StoreError::SameRequest(Box::new(earlier)));
    }
    let not_live: Vec<i32> = NOT_LIVE.iter().map(|s| *s as i32).collect();
    let row = tx
        .query_one(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE username = $1), \
             COUNT(*) FILTER (WHERE org = $3), \
             COALESCE(SUM(cores) FILTER (WHERE org = $3), 0)::BIGINT, \
             COALESCE(SUM(memory_mb) FILTER (WHERE org = $3), 0)::BIGINT, \
             COUNT(*) FILTER (WHERE org = $3 AND username = $1), \
             COALESCE(SUM(cores) FILTER (WHERE org = $3 AND username = $1), 0)::BIGINT, \
             COALESCE(SUM(memory_mb) FILTER (WHERE org = $3 AND username = $1), 0)::BIGINT \
             FROM sessions WHERE state <> ALL($2)",
            &[&new.username, &not_live, &new.org],
        )
        .await
        .context("counting live sessions")?;
    let mut counts = [0i64; 8];
    for (i, count) in counts.iter_mut().enumerate() {
        *count = row.try_get(i).context("counting live sessions")?;
    }
    check_limits(new, limits, admission, live_counts(counts))
}

/// Records a new QUEUED session (see `SessionStore::create_session`).
pub(super) async fn create(
    tx: &Transaction<'_>,
    holder: &Holder,
    new: NewSession,
    limits: SessionLimits,
) -> Result<(SessionRecord, SessionEvent), StoreError> {
    admit(tx, &new, limits, Admission::NewDesktop).await?;
    let spot = super::nodes::place(tx, &new).await?;
    let not_live: Vec<i32> = NOT_LIVE.iter().map(|s| *s as i32).collect();
    let (node, clone_storage) = spot.map(|s| (s.node, s.storage)).unzip();
    let clone_storage = clone_storage.flatten();
    let (size, cores, memory_mb, disk_gb) = crate::store::size_columns(&new);
    let mut vm_name = random_vm_name();
    for _ in 0..16 {
        let taken: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE vm_name = $1)",
                &[&vm_name],
            )
            .await
            .and_then(|row| row.try_get(0))
            .context("checking VM names")?;
        if !taken {
            break;
        }
        vm_name = random_vm_name();
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    // The lowest slot from 1 up that no live session holds.
    tx.execute(
        "INSERT INTO sessions (id, username, login_user, template, state, slot, \
         vm_name, created_ms, updated_ms, stage_started_ms, request_key, pool, owner, \
         lease_until_ms, epoch, password_hash, node, memory_mb, cores, clone_storage, size, \
         disk_gb, org, restore_from) \
         SELECT $1, $2, $3, $4, $5, MIN(candidate), $6, $7, $7, $7, $8, $9, $10, $11, 1, $12, \
           $13, $14, $15, $16, $17, $18, $19, \
           (SELECT k.id FROM snapshots k WHERE k.id = $20 AND NOT EXISTS ( \
              SELECT 1 FROM sessions r WHERE r.restore_from = k.id \
              AND r.state <> ALL($21))) FROM ( \
           SELECT 1 AS candidate \
           UNION ALL SELECT slot + 1 FROM sessions WHERE NOT slot_released \
         ) AS candidates \
         WHERE candidate NOT IN (SELECT slot FROM sessions WHERE NOT slot_released)",
        &[
            &id,
            &new.username,
            &new.session_user,
            &new.template,
            &(SessionState::Queued as i32),
            &vm_name,
            &now,
            &new.request_key,
            &new.pool,
            &&*holder.me,
            &(now + holder.lease_ms),
            &crate::store::queue::kept_password(&new),
            &node,
            &memory_mb,
            &cores,
            &clone_storage,
            &size,
            &disk_gb,
            &new.org,
            &new.restore_from,
            &not_live,
        ],
    )
    .await
    .context("inserting a session")?;
    holder.held.hold(&id, 1);
    let record = get_session(tx, &id)
        .await?
        .ok_or_else(|| StoreError::Missing(id.clone()))?;
    let event = first_event(&id, now, created_message(&new));
    insert_event(tx, &event).await?;
    Ok((record, event))
}

/// Hands the longest-waiting ready desktop of warm pool `pool` to the
/// create `new` (see `SessionStore::claim`).
pub(super) async fn claim(
    tx: &Transaction<'_>,
    holder: &Holder,
    new: NewSession,
    pool: &str,
    limits: SessionLimits,
) -> Result<Option<(SessionRecord, SessionEvent)>, StoreError> {
    admit(tx, &new, limits, Admission::Claim).await?;
    // The desktop that has waited longest, unless a server is moving it
    // (destroying it, say) right now.
    let spare = tx
        .query_opt(
            "SELECT id, vm_name, created_ms, COALESCE(ready_ms, created_ms) FROM sessions \
             WHERE pool = $1 AND template = $2 AND claimed_ms IS NULL AND state = $3 \
             AND (node IS NULL OR node NOT IN (SELECT name FROM nodes WHERE drained)) \
             ORDER BY ready_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&pool, &new.template, &(SessionState::Ready as i32)],
        )
        .await
        .context("finding a ready pool desktop")?;
    let Some(spare) = spare else {
        return Ok(None);
    };
    let (id, vm_name, built_ms, ready_ms): (String, String, i64, i64) = (|| {
        Ok::<_, tokio_postgres::Error>((
            spare.try_get(0)?,
            spare.try_get(1)?,
            spare.try_get(2)?,
            spare.try_get(3)?,
        ))
    })()
    .context("finding a ready pool desktop")?;
    let now = now_ms();
    let row = tx
        .query_one(
            "UPDATE sessions SET username = $2, login_user = $3, request_key = $4, \
         claimed_ms = $5, created_ms = $5, updated_ms = $5, stage_started_ms = $5, \
         ready_ms = NULL, warned_reap_ms = NULL, state = $6, owner = $7, lease_until_ms = $8, \
         epoch = epoch + 1, org = $9 WHERE id = $1 RETURNING epoch",
            &[
                &id,
                &new.username,
                &new.session_user,
                &new.request_key,
                &now,
                &(SessionState::Queued as i32),
                &&*holder.me,
                &(now + holder.lease_ms),
                &new.org,
            ],
        )
        .await
        .context("claiming a pool desktop")?;
    let epoch: i64 = row.try_get(0).context("claiming a pool desktop")?;
    holder.held.hold(&id, epoch);
    // The build's history was nobody's; the session starts here.
    tx.execute("DELETE FROM events WHERE session_id = $1", &[&id])
        .await
        .context("clearing a pool desktop's build events")?;
    let record = get_session(tx, &id)
        .await?
        .ok_or_else(|| StoreError::Missing(id.clone()))?;
    let message = claimed_message(&new, &vm_name, pool, built_ms, ready_ms);
    let event = first_event(&id, now, message);
    insert_event(tx, &event).await?;
    Ok(Some((record, event)))
}

/// Moves session `id` from `from` to `to` if it is still in `from`,
/// recording the stage change as its next event; the caller has checked
/// that the state machine allows the move.
pub(super) async fn transition(
    tx: &Transaction<'_>,
    holder: &Holder,
    id: &str,
    from: SessionState,
    to: SessionState,
    message: String,
    failure: Option<(SessionState, String)>,
) -> Result<SessionEvent, StoreError> {
    let locked = lock_session(tx, holder, id).await?;
    let (previous, stage_started) = (locked.state, locked.stage_started_ms);
    if previous != from as i32 {
        return Err(StoreError::Conflict {
            id: id.to_string(),
            expected: from,
            actual: state_from_db(previous),
        });
    }
    let now = now_ms();
    let (owner, lease_until) = holder_after(to, &holder.me, now, holder.lease_ms);
    // A move out of a settled state takes the session: a new epoch.
    let epoch = if holder.held.epoch(id).is_none() && to.is_in_progress() {
        locked.epoch + 1
    } else {
        locked.epoch
    };
    let (failure_stage, failure_reason) = failure
        .map(|(stage, reason)| (stage as i32, reason))
        .unwrap_or((0, String::new()));
    tx.execute(
        "UPDATE sessions SET state = $2::INTEGER, updated_ms = $3, stage_started_ms = $3, \
         ready_ms = CASE WHEN $2::INTEGER = $4::INTEGER THEN $3 ELSE ready_ms END, \
         failure_stage = $5, failure_reason = $6, \
         slot_released = slot_released OR $2::INTEGER = $7::INTEGER, \
         owner = $8, lease_until_ms = $9, epoch = $10, password_hash = NULL, \
         clone_started_ms = NULL WHERE id = $1",
        &[
            &id,
            &(to as i32),
            &now,
            &(SessionState::Ready as i32),
            &failure_stage,
            &failure_reason,
            &(SessionState::Destroyed as i32),
            &owner,
            &lease_until,
            &epoch,
        ],
    )
    .await
    .context("updating a session state")?;
    if to.is_in_progress() {
        holder.held.hold(id, epoch);
    } else {
        holder.held.release(id);
    }
    let record = get_session(tx, id)
        .await?
        .ok_or_else(|| StoreError::Missing(id.to_string()))?;
    let sequence = next_sequence(tx, id).await?;
    let event = stage_change(&record, sequence, previous, stage_started, now, message);
    insert_event(tx, &event).await?;
    Ok(event)
}

/// Stores what the Terraform module reported about the VM.
pub(super) async fn set_outputs(
    db: &impl GenericClient,
    holder: &Holder,
    id: &str,
    outputs: VmOutputs,
) -> Result<(), StoreError> {
    leases::check_row(db, holder, id).await?;
    db.execute(
        "UPDATE sessions SET vm_id = $2, ssh_host = $3, ssh_port = $4, rdp_host = $5, \
         rdp_port = $6, rdp_cert_sha256 = $7 WHERE id = $1",
        &[
            &id,
            &outputs.vm_id,
            &outputs.ssh_host,
            &i32::from(outputs.ssh_port),
            &outputs.rdp_host,
            &i32::from(outputs.rdp_port),
            &outputs.rdp_cert_sha256,
        ],
    )
    .await
    .context("storing VM outputs")?;
    Ok(())
}

/// Remembers (or forgets) the process group of the session's tool.
pub(super) async fn set_child(
    db: &impl GenericClient,
    holder: &Holder,
    id: &str,
    child: Option<ChildRecord>,
) -> Result<(), StoreError> {
    leases::check_row(db, holder, id).await?;
    let (pgid, identity) = child.map(|c| (c.pgid, c.identity)).unzip();
    db.execute(
        "UPDATE sessions SET child_pgid = $2, child_identity = $3 WHERE id = $1",
        &[&id, &pgid, &identity],
    )
    .await
    .context("storing a child process group")?;
    Ok(())
}

/// Frees the session's slot.
pub(super) async fn release_slot(
    db: &impl GenericClient,
    holder: &Holder,
    id: &str,
) -> Result<(), StoreError> {
    leases::check_row(db, holder, id).await?;
    db.execute(
        "UPDATE sessions SET slot_released = TRUE, clone_started_ms = NULL WHERE id = $1",
        &[&id],
    )
    .await
    .context("releasing a slot")?;
    Ok(())
}

/// Keeps (or forgets) the session's Terraform files.
pub(super) async fn set_terraform(
    db: &impl GenericClient,
    holder: &Holder,
    id: &str,
    files: Option<TerraformFiles>,
) -> Result<(), StoreError> {
    leases::check_row(db, holder, id).await?;
    let (vars, state) = files.map(|f| (f.vars, f.state)).unzip();
    db.execute(
        "UPDATE sessions SET tf_vars = $2, tf_state = $3 WHERE id = $1",
        &[&id, &vars, &state],
    )
    .await
    .context("storing Terraform files")?;
    Ok(())
}

/// The session's Terraform files, if kept.
pub(super) async fn terraform(
    db: &impl GenericClient,
    id: &str,
) -> Result<Option<TerraformFiles>, StoreError> {
    let row = db
        .query_opt(
            "SELECT tf_vars, tf_state FROM sessions WHERE id = $1",
            &[&id],
        )
        .await
        .context("reading Terraform files")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let vars: Option<Vec<u8>> = row.try_get(0).context("reading Terraform files")?;
    let state: Option<Vec<u8>> = row.try_get(1).context("reading Terraform files")?;
    Ok(vars.map(|vars| TerraformFiles {
        vars,
        state: state.unwrap_or_default(),
    }))
}
