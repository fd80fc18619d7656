//! What the in-VM agent reports and the reaper announces: a session's
//! activity, and the idle warning (an event, and the reaping time kept on
//! the session until its reason goes away).

use daas_api::v1::{IdleWarning, SessionEvent, session_event::Kind};
use tokio_postgres::{GenericClient, Transaction};

use super::{
    Context,
    event_log::{insert_event, lock_stage, next_sequence},
    leases::Holder,
};
use crate::domain::time::{now_ms, timestamp};
use crate::store::{StoreError, event_rows::in_stage, reports::Report};

/// Records agents' reports (one per session) in one statement.
pub(super) async fn record_activities(
    db: &impl GenericClient,
    reports: &[Report],
) -> Result<(), StoreError> {
    let mut ids = Vec::with_capacity(reports.len());
    let mut at = Vec::with_capacity(reports.len());
    let mut input = Vec::with_capacity(reports.len());
    let mut rdp = Vec::with_capacity(reports.len());
    let mut users = Vec::with_capacity(reports.len());
    let mut versions = Vec::with_capacity(reports.len());
    for r in reports {
        ids.push(r.session.as_str());
        at.push(r.at_ms);
        input.push(r.at_ms.saturating_sub(r.report.idle_ms.max(0)));
        rdp.push(i32::try_from(r.report.rdp_clients).unwrap_or(i32::MAX));
        users.push(serde_json::to_string(&r.report.users).unwrap_or_else(|_| "[]".into()));
        versions.push(r.report.agent_version.as_str());
    }
    db.execute(
        "UPDATE sessions s SET last_report_ms = r.at, last_input_ms = r.input, \
         last_connected_ms = CASE WHEN r.rdp > 0 THEN r.at ELSE s.last_connected_ms END, \
         rdp_clients = r.rdp, logged_in = r.users, agent_version = r.version \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[], $5::text[], $6::text[]) \
           AS r(id, at, input, rdp, users, version) \
         WHERE s.id = r.id",
        &[&ids, &at, &input, &rdp, &users, &versions],
    )
    .await
    .context("recording activity")?;
    Ok(())
}

/// Records an IDLE_WARNING event and remembers the announced time.
pub(super) async fn idle_warning(
    tx: &Transaction<'_>,
    holder: &Holder,
    id: &str,
    reap_at_ms: i64,
    reason: String,
) -> Result<SessionEvent, StoreError> {
    let (state, stage_started) = lock_stage(tx, holder, id).await?;
    tx.execute(
        "UPDATE sessions SET warned_reap_ms = $2 WHERE id = $1",
        &[&id, &reap_at_ms],
    )
    .await
    .context("recording a warning")?;
    let sequence = next_sequence(tx, id).await?;
    let warning = Kind::IdleWarning(IdleWarning {
        reap_at: Some(timestamp(reap_at_ms)),
        reason,
    });
    let event = in_stage(id, sequence, state, stage_started, now_ms(), warning);
    insert_event(tx, &event).await?;
    Ok(event)
}

/// Forgets the announced reaping time.
pub(super) async fn clear_warning(db: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE sessions SET warned_reap_ms = NULL WHERE id = $1",
        &[&id],
    )
    .await
    .context("clearing a warning")?;
    Ok(())
}
