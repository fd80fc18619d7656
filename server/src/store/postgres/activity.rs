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
use crate::store::{AgentReport, StoreError, event_rows::in_stage};

/// Records an agent's report: the activity, and that it came now.
pub(super) async fn record_activity(
    db: &impl GenericClient,
    id: &str,
    report: AgentReport,
) -> Result<(), StoreError> {
    let now = now_ms();
    let users = serde_json::to_string(&report.users).unwrap_or_else(|_| "[]".into());
    let rdp_clients = i32::try_from(report.rdp_clients).unwrap_or(i32::MAX);
    db.execute(
        "UPDATE sessions SET last_report_ms = $2, last_input_ms = $3, \
         last_connected_ms = CASE WHEN $4 > 0 THEN $2 ELSE last_connected_ms END, \
         rdp_clients = $4, logged_in = $5, agent_version = $6 WHERE id = $1",
        &[
            &id,
            &now,
            &now.saturating_sub(report.idle_ms.max(0)),
            &rdp_clients,
            &users,
            &report.agent_version,
        ],
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
