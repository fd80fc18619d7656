//! Writing sessions: a create (its admission against the limits, the
//! lowest free slot, a fresh VM name), a claim of a warm pool's desktop,
//! the compare-and-set state moves, and what provisioning records on a
//! session (VM outputs, the tool's process group, the freed slot).

use daas_api::v1::{SessionEvent, SessionState};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Context, Holder,
    event_log::{current_stage, insert_event, next_sequence},
    leases,
    reads::{by_request_key, get_session},
};
use crate::domain::time::now_ms;
use crate::store::{
    ChildRecord, NewSession, SessionLimits, SessionRecord, StoreError, TerraformFiles, VmOutputs,
    admission::{
        Admission, check_limits, claimed_message, created_message, live_counts, random_vm_name,
    },
    event_rows::{first_event, stage_change},
    events::Hub,
    lease::holder_after,
    state_from_db,
};

/// Refuses a create that repeats an earlier one (its request key) or would
/// exceed a limit; the caller holds a write transaction.
fn admit(
    conn: &Connection,
    new: &NewSession,
    limits: SessionLimits,
    admission: Admission,
) -> Result<(), StoreError> {
    if let Some(key) = &new.request_key
        && let Some(earlier) = by_request_key(conn, key)?
    {
        return Err(StoreError::SameRequest(Box::new(earlier)));
    }
    let counts: [i64; 8] = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(username = ?1), 0), \
             COALESCE(SUM(org = ?5), 0), \
             COALESCE(SUM(CASE WHEN org = ?5 THEN cores END), 0), \
             COALESCE(SUM(CASE WHEN org = ?5 THEN memory_mb END), 0), \
             COALESCE(SUM(org = ?5 AND username = ?1), 0), \
             COALESCE(SUM(CASE WHEN org = ?5 AND username = ?1 THEN cores END), 0), \
             COALESCE(SUM(CASE WHEN org = ?5 AND username = ?1 THEN memory_mb END), 0) \
             FROM sessions WHERE state NOT IN (?2, ?3, ?4)",
            params![
                new.username,
                SessionState::Failed as i32,
                SessionState::Destroyed as i32,
                SessionState::Lost as i32,
                new.org,
            ],
            |row| {
                let mut counts = [0i64; 8];
                for (i, count) in counts.iter_mut().enumerate() {
                    *count = row.get(i)?;
                }
                Ok(counts)
            },
        )
        .context("counting live sessions")?;
    check_limits(new, limits, admission, live_counts(counts))
}

/// Records a new QUEUED session (see `SessionStore::create_session`).
pub(super) fn create(
    conn: &mut Connection,
    live: &Hub,
    holder: &Holder,
    new: NewSession,
    limits: SessionLimits,
) -> Result<(SessionRecord, SessionEvent), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting a transaction")?;
    admit(&tx, &new, limits, Admission::NewDesktop)?;
    let spot = super::nodes::place(&tx, &new)?;
    let (node, clone_storage) = spot.map(|s| (s.node, s.storage)).unzip();
    let clone_storage = clone_storage.flatten();
    let (size, cores, memory_mb, disk_gb) = crate::store::size_columns(&new);
    let mut vm_name = random_vm_name();
    for _ in 0..16 {
        let taken: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sessions WHERE vm_name = ?1)",
                [&vm_name],
                |row| row.get(0),
            )
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
        "INSERT INTO sessions (id, username, session_user, template, state, slot, \
         vm_name, created_ms, updated_ms, stage_started_ms, request_key, pool, owner, \
         lease_until_ms, epoch, password_hash, node, memory_mb, cores, clone_storage, size, \
         disk_gb, org, restore_from) \
         SELECT ?1, ?2, ?3, ?4, ?5, MIN(candidate), ?6, ?7, ?7, ?7, ?8, ?9, ?10, ?11, 1, ?12, \
           ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
           (SELECT k.id FROM snapshots k WHERE k.id = ?20 AND NOT EXISTS ( \
              SELECT 1 FROM sessions r WHERE r.restore_from = k.id \
              AND r.state NOT IN (?21, ?22, ?23))) FROM ( \
           SELECT 1 AS candidate \
           UNION ALL SELECT slot + 1 FROM sessions WHERE slot_released = 0 \
         ) WHERE candidate NOT IN (SELECT slot FROM sessions WHERE slot_released = 0)",
        params![
            id,
            new.username,
            new.session_user,
            new.template,
            SessionState::Queued as i32,
            vm_name,
            now,
            new.request_key,
            new.pool,
            &*holder.me,
            now + holder.lease_ms(),
            crate::store::queue::kept_password(&new),
            node,
            memory_mb,
            cores,
            clone_storage,
            size,
            disk_gb,
            new.org,
            new.restore_from,
            SessionState::Failed as i32,
            SessionState::Destroyed as i32,
            SessionState::Lost as i32
        ],
    )
    .context("inserting a session")?;
    let record = get_session(&tx, &id)?.ok_or_else(|| StoreError::Missing(id.clone()))?;
    let event = first_event(&id, now, created_message(&new));
    insert_event(&tx, live, &event)?;
    tx.commit().context("committing a new session")?;
    holder.held.hold(&id, 1);
    live.publish(&event);
    Ok((record, event))
}

/// Hands the longest-waiting ready desktop of warm pool `pool` to the
/// create `new` (see `SessionStore::claim`).
pub(super) fn claim(
    conn: &mut Connection,
    live: &Hub,
    holder: &Holder,
    new: NewSession,
    pool: String,
    limits: SessionLimits,
) -> Result<Option<(SessionRecord, SessionEvent)>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting a transaction")?;
    admit(&tx, &new, limits, Admission::Claim)?;
    // The desktop that has waited longest.
    let spare: Option<(String, String, i64, i64)> = tx
        .query_row(
            "SELECT id, vm_name, created_ms, COALESCE(ready_ms, created_ms) FROM sessions \
             WHERE pool = ?1 AND template = ?2 AND claimed_ms IS NULL AND state = ?3 \
             AND (node IS NULL OR node NOT IN (SELECT name FROM nodes WHERE drained)) \
             ORDER BY ready_ms, id LIMIT 1",
            params![pool, new.template, SessionState::Ready as i32],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()
        .context("finding a ready pool desktop")?;
    let Some((id, vm_name, built_ms, ready_ms)) = spare else {
        return Ok(None);
    };
    let now = now_ms();
    tx.execute(
        "UPDATE sessions SET username = ?2, session_user = ?3, request_key = ?4, \
         claimed_ms = ?5, created_ms = ?5, updated_ms = ?5, stage_started_ms = ?5, \
         ready_ms = NULL, warned_reap_ms = NULL, state = ?6, owner = ?7, lease_until_ms = ?8, \
         epoch = epoch + 1, org = ?9 WHERE id = ?1",
        params![
            id,
            new.username,
            new.session_user,
            new.request_key,
            now,
            SessionState::Queued as i32,
            &*holder.me,
            now + holder.lease_ms(),
            new.org
        ],
    )
    .context("claiming a pool desktop")?;
    // The build's history was nobody's; the session starts here.
    tx.execute("DELETE FROM events WHERE session_id = ?1", [&id])
        .context("clearing a pool desktop's build events")?;
    let record = get_session(&tx, &id)?.ok_or_else(|| StoreError::Missing(id.clone()))?;
    let event = first_event(
        &id,
        now,
        claimed_message(&new, &vm_name, &pool, built_ms, ready_ms),
    );
    insert_event(&tx, live, &event)?;
    let epoch: i64 = tx
        .query_row("SELECT epoch FROM sessions WHERE id = ?1", [&id], |row| {
            row.get(0)
        })
        .context("claiming a pool desktop")?;
    tx.commit().context("committing a claim")?;
    holder.held.hold(&id, epoch);
    live.publish(&event);
    Ok(Some((record, event)))
}

/// Moves session `id` from `from` to `to` if it is still in `from`,
/// recording the stage change as its next event; the caller has checked
/// that the state machine allows the move.
pub(super) fn transition(
    conn: &mut Connection,
    live: &Hub,
    holder: &Holder,
    id: String,
    (from, to): (SessionState, SessionState),
    message: String,
    failure: Option<(SessionState, String)>,
) -> Result<SessionEvent, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting a transaction")?;
    let (previous, stage_started) = current_stage(&tx, &id)?;
    if previous != from as i32 {
        return Err(StoreError::Conflict {
            id,
            expected: from,
            actual: state_from_db(previous),
        });
    }
    let epoch = leases::check(&tx, holder, &id)?;
    let now = now_ms();
    let (owner, lease_until) = holder_after(to, &holder.me, now, holder.lease_ms());
    // A move out of a settled state takes the session: a new epoch.
    let held = holder.held.epoch(&id);
    let epoch = if held.is_none() && to.is_in_progress() {
        epoch + 1
    } else {
        epoch
    };
    let (failure_stage, failure_reason) = failure
        .map(|(stage, reason)| (stage as i32, reason))
        .unwrap_or((0, String::new()));
    tx.execute(
        "UPDATE sessions SET state = ?2, updated_ms = ?3, stage_started_ms = ?3, \
         ready_ms = CASE WHEN ?2 = ?4 THEN ?3 ELSE ready_ms END, \
         failure_stage = ?5, failure_reason = ?6, \
         slot_released = CASE WHEN ?2 = ?7 THEN 1 ELSE slot_released END, \
         owner = ?9, lease_until_ms = ?10, epoch = ?11, password_hash = NULL, \
         clone_started_ms = NULL WHERE id = ?1 AND state = ?8",
        params![
            id,
            to as i32,
            now,
            SessionState::Ready as i32,
            failure_stage,
            failure_reason,
            SessionState::Destroyed as i32,
            from as i32,
            owner,
            lease_until,
            epoch
        ],
    )
    .context("updating a session state")?;
    let record = get_session(&tx, &id)?.ok_or_else(|| StoreError::Missing(id.clone()))?;
    let sequence = next_sequence(&tx, &id)?;
    let event = stage_change(&record, sequence, previous, stage_started, now, message);
    insert_event(&tx, live, &event)?;
    tx.commit().context("committing a stage change")?;
    if to.is_in_progress() {
        holder.held.hold(&id, epoch);
    } else {
        holder.held.release(&id);
    }
    live.publish(&event);
    Ok(event)
}

/// Stores what the Terraform module reported about the VM.
pub(super) fn set_outputs(
    conn: &Connection,
    holder: &Holder,
    id: String,
    outputs: VmOutputs,
) -> Result<(), StoreError> {
    leases::check(conn, holder, &id)?;
    conn.execute(
        "UPDATE sessions SET vm_id = ?2, ssh_host = ?3, ssh_port = ?4, rdp_host = ?5, \
         rdp_port = ?6, rdp_cert_sha256 = ?7 WHERE id = ?1",
        params![
            id,
            outputs.vm_id,
            outputs.ssh_host,
            outputs.ssh_port,
            outputs.rdp_host,
            outputs.rdp_port,
            outputs.rdp_cert_sha256
        ],
    )
    .context("storing VM outputs")?;
    Ok(())
}

/// Remembers (or forgets) the process group of the session's tool.
pub(super) fn set_child(
    conn: &Connection,
    holder: &Holder,
    id: String,
    child: Option<ChildRecord>,
) -> Result<(), StoreError> {
    leases::check(conn, holder, &id)?;
    let (pgid, identity) = child.map(|c| (c.pgid, c.identity)).unzip();
    conn.execute(
        "UPDATE sessions SET child_pgid = ?2, child_identity = ?3 WHERE id = ?1",
        params![id, pgid, identity],
    )
    .context("storing a child process group")?;
    Ok(())
}

/// Frees the session's slot.
pub(super) fn release_slot(
    conn: &Connection,
    holder: &Holder,
    id: String,
) -> Result<(), StoreError> {
    leases::check(conn, holder, &id)?;
    conn.execute(
        "UPDATE sessions SET slot_released = 1, clone_started_ms = NULL WHERE id = ?1",
        [id],
    )
    .context("releasing a slot")?;
    Ok(())
}

/// Keeps (or forgets) the session's Terraform files.
pub(super) fn set_terraform(
    conn: &Connection,
    holder: &Holder,
    id: String,
    files: Option<TerraformFiles>,
) -> Result<(), StoreError> {
    leases::check(conn, holder, &id)?;
    let (vars, state) = files.map(|f| (f.vars, f.state)).unzip();
    conn.execute(
        "UPDATE sessions SET tf_vars = ?2, tf_state = ?3 WHERE id = ?1",
        params![id, vars, state],
    )
    .context("storing Terraform files")?;
    Ok(())
}

/// The session's Terraform files, if kept.
pub(super) fn terraform(
    conn: &Connection,
    id: String,
) -> Result<Option<TerraformFiles>, StoreError> {
    let files = conn
        .query_row(
            "SELECT tf_vars, tf_state FROM sessions WHERE id = ?1 AND tf_vars IS NOT NULL",
            [id],
            |row| {
                Ok(TerraformFiles {
                    vars: row.get(0)?,
                    state: row.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(),
                })
            },
        )
        .optional()
        .context("reading Terraform files")?;
    Ok(files)
}
