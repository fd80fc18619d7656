//! What the in-VM agent reports and the reaper announces: a session's
//! activity, and the idle warning (an event, and the reaping time kept on
//! the session until its reason goes away).

use daas_api::v1::{IdleWarning, SessionEvent, session_event::Kind};
use rusqlite::{Connection, params};

use super::{
    Context,
    event_log::{current_stage, insert_event, next_sequence},
};
use crate::domain::time::{now_ms, timestamp};
use crate::store::{StoreError, event_rows::in_stage, events::Hub, reports::Report};

/// Records agents' reports (one per session) in one transaction.
pub(super) fn record_activities(
    conn: &mut Connection,
    reports: Vec<Report>,
) -> Result<(), StoreError> {
    let tx = conn.transaction().context("starting a transaction")?;
    {
        let mut update = tx
            .prepare_cached(
                "UPDATE sessions SET last_report_ms = ?2, last_input_ms = ?3, \
                 last_connected_ms = CASE WHEN ?4 > 0 THEN ?2 ELSE last_connected_ms END, \
                 rdp_clients = ?4, logged_in = ?5, agent_version = ?6 WHERE id = ?1",
            )
            .context("recording activity")?;
        for r in reports {
            let users = serde_json::to_string(&r.report.users).unwrap_or_else(|_| "[]".into());
            update
                .execute(params![
                    r.session,
                    r.at_ms,
                    r.at_ms.saturating_sub(r.report.idle_ms.max(0)),
                    r.report.rdp_clients,
                    users,
                    r.report.agent_version
                ])
                .context("recording activity")?;
        }
    }
    tx.commit().context("committing activity")?;
    Ok(())
}

/// Records an IDLE_WARNING event and remembers the announced time.
pub(super) fn idle_warning(
    conn: &mut Connection,
    live: &Hub,
    id: String,
    reap_at_ms: i64,
    reason: String,
) -> Result<SessionEvent, StoreError> {
    let tx = conn.transaction().context("starting a transaction")?;
    let (state, stage_started) = current_stage(&tx, &id)?;
    let now = now_ms();
    tx.execute(
        "UPDATE sessions SET warned_reap_ms = ?2 WHERE id = ?1",
        params![id, reap_at_ms],
    )
    .context("recording a warning")?;
    let sequence = next_sequence(&tx, &id)?;
    let warning = Kind::IdleWarning(IdleWarning {
        reap_at: Some(timestamp(reap_at_ms)),
        reason,
    });
    let event = in_stage(&id, sequence, state, stage_started, now, warning);
    insert_event(&tx, live, &event)?;
    tx.commit().context("committing a warning")?;
    live.publish(&event);
    Ok(event)
}

/// Forgets the announced reaping time.
pub(super) fn clear_warning(conn: &Connection, id: String) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET warned_reap_ms = NULL WHERE id = ?1",
        [id],
    )
    .context("clearing a warning")?;
    Ok(())
}
