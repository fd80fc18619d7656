//! The `schedules` table: users' schedules added within their limit,
//! listed, removed, and each run recorded once per occurrence.

use rusqlite::{Connection, Row, TransactionBehavior, params};

use super::Context;
use crate::store::{
    LimitHit, StoreError,
    schedules::{Ran, ScheduleRecord, Which},
};

const COLUMNS: &str = "id, username, at, days, timezone, template, size, org, created_ms, \
     last_due_ms, last_run_ms, last_session_id, last_error";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: row.get("id")?,
        username: row.get("username")?,
        at: row.get("at")?,
        days: row.get("days")?,
        timezone: row.get("timezone")?,
        template: row.get("template")?,
        size: row.get("size")?,
        org: row.get("org")?,
        created_ms: row.get("created_ms")?,
        last_due_ms: row.get("last_due_ms")?,
        last_run_ms: row.get("last_run_ms")?,
        last_session_id: row.get("last_session_id")?,
        last_error: row.get("last_error")?,
    })
}

pub(super) fn add(
    conn: &mut Connection,
    r: ScheduleRecord,
    max_per_user: usize,
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("adding a schedule")?;
    let count: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM schedules WHERE username = ?1",
            [&r.username],
            |row| row.get(0),
        )
        .context("counting schedules")?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= max_per_user {
        return Err(StoreError::LimitReached(LimitHit::Schedules(
            r.username,
            max_per_user,
        )));
    }
    tx.execute(
        &format!("INSERT INTO schedules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
        params![
            r.id,
            r.username,
            r.at,
            r.days,
            r.timezone,
            r.template,
            r.size,
            r.org,
            r.created_ms,
            r.last_due_ms,
            r.last_run_ms,
            r.last_session_id,
            r.last_error
        ],
    )
    .context("adding a schedule")?;
    tx.commit().context("adding a schedule")
}

pub(super) fn list(conn: &Connection, which: Which) -> Result<Vec<ScheduleRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM schedules WHERE (?1 IS NULL OR username = ?1) \
             AND (?2 IS NULL OR id = ?2) AND (?3 IS NULL OR org = ?3) ORDER BY username, at, id"
        ))
        .context("listing schedules")?;
    let rows = stmt
        .query_map(params![which.username, which.id, which.org], from_row)
        .context("listing schedules")?;
    rows.collect::<Result<Vec<_>, _>>()
        .context("listing schedules")
}

pub(super) fn remove(
    conn: &mut Connection,
    id: String,
) -> Result<Option<ScheduleRecord>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("removing a schedule")?;
    let found = {
        let mut stmt = tx
            .prepare(&format!("SELECT {COLUMNS} FROM schedules WHERE id = ?1"))
            .context("removing a schedule")?;
        let mut rows = stmt
            .query_map([&id], from_row)
            .context("removing a schedule")?;
        rows.next().transpose().context("removing a schedule")?
    };
    tx.execute("DELETE FROM schedules WHERE id = ?1", [&id])
        .context("removing a schedule")?;
    tx.commit().context("removing a schedule")?;
    Ok(found)
}

pub(super) fn ran(
    conn: &Connection,
    id: String,
    due_ms: i64,
    now_ms: i64,
    ran: Ran,
) -> Result<bool, StoreError> {
    let (session, error, told) = match ran {
        Ran::Created(session) => (session, String::new(), None),
        Ran::Refused(error, told) => (String::new(), error, Some(told)),
    };
    // The run and its webhooks' deliveries, together or not at all.
    let tx = conn
        .unchecked_transaction()
        .context("recording a schedule's run")?;
    let changed = tx
        .execute(
            "UPDATE schedules SET last_due_ms = ?2, last_run_ms = ?3, last_session_id = ?4, \
             last_error = ?5 WHERE id = ?1 AND (last_due_ms IS NULL OR last_due_ms < ?2)",
            params![id, due_ms, now_ms, session, error],
        )
        .context("recording a schedule's run")?;
    if changed == 1
        && let Some(told) = &told
    {
        super::outbox::insert_told(&tx, told)?;
    }
    tx.commit().context("recording a schedule's run")?;
    Ok(changed == 1)
}
