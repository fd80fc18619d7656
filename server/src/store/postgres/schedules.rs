//! The `schedules` table: users' schedules added within their limit (under
//! an advisory lock: any server may add), listed, removed, and each run
//! recorded once per occurrence, whichever server runs it.

use tokio_postgres::{GenericClient, Row, Transaction};

use super::{Context, locks};
use crate::store::{
    LimitHit, StoreError,
    schedules::{Ran, ScheduleRecord, Which},
};

const COLUMNS: &str = "id, username, at, days, timezone, template, size, org, created_ms, \
     last_due_ms, last_run_ms, last_session_id, last_error";

fn from_row(row: &Row) -> Result<ScheduleRecord, tokio_postgres::Error> {
    Ok(ScheduleRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        at: row.try_get("at")?,
        days: row.try_get("days")?,
        timezone: row.try_get("timezone")?,
        template: row.try_get("template")?,
        size: row.try_get("size")?,
        org: row.try_get("org")?,
        created_ms: row.try_get("created_ms")?,
        last_due_ms: row.try_get("last_due_ms")?,
        last_run_ms: row.try_get("last_run_ms")?,
        last_session_id: row.try_get("last_session_id")?,
        last_error: row.try_get("last_error")?,
    })
}

pub(super) async fn add(
    tx: &Transaction<'_>,
    r: ScheduleRecord,
    max_per_user: usize,
) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::SCHEDULES])
        .await
        .context("waiting for the schedules lock")?;
    let count: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM schedules WHERE username = $1",
            &[&r.username],
        )
        .await
        .and_then(|row| row.try_get(0))
        .context("counting schedules")?;
    if usize::try_from(count).unwrap_or(usize::MAX) >= max_per_user {
        return Err(StoreError::LimitReached(LimitHit::Schedules(
            r.username,
            max_per_user,
        )));
    }
    tx.execute(
        &format!(
            "INSERT INTO schedules ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ),
        &[
            &r.id,
            &r.username,
            &r.at,
            &r.days,
            &r.timezone,
            &r.template,
            &r.size,
            &r.org,
            &r.created_ms,
            &r.last_due_ms,
            &r.last_run_ms,
            &r.last_session_id,
            &r.last_error,
        ],
    )
    .await
    .context("adding a schedule")?;
    Ok(())
}

pub(super) async fn list(
    db: &impl GenericClient,
    which: &Which,
) -> Result<Vec<ScheduleRecord>, StoreError> {
    db.query(
        &format!(
            "SELECT {COLUMNS} FROM schedules WHERE ($1::TEXT IS NULL OR username = $1) \
             AND ($2::TEXT IS NULL OR id = $2) AND ($3::TEXT IS NULL OR org = $3) \
             ORDER BY username, at, id"
        ),
        &[&which.username, &which.id, &which.org],
    )
    .await
    .and_then(|rows| rows.iter().map(from_row).collect())
    .context("listing schedules")
}

pub(super) async fn remove(
    db: &impl GenericClient,
    id: &str,
) -> Result<Option<ScheduleRecord>, StoreError> {
    db.query_opt(
        &format!("DELETE FROM schedules WHERE id = $1 RETURNING {COLUMNS}"),
        &[&id],
    )
    .await
    .and_then(|row| row.as_ref().map(from_row).transpose())
    .context("removing a schedule")
}

/// In `tx`: the run and its webhooks' deliveries, together or not at all.
pub(super) async fn ran(
    tx: &Transaction<'_>,
    id: &str,
    due_ms: i64,
    now_ms: i64,
    ran: &Ran,
) -> Result<bool, StoreError> {
    let (session, error, told) = match ran {
        Ran::Created(session) => (session.as_str(), "", None),
        Ran::Refused(error, told) => ("", error.as_str(), Some(told)),
    };
    let changed = tx
        .execute(
            "UPDATE schedules SET last_due_ms = $2, last_run_ms = $3, last_session_id = $4, \
             last_error = $5 WHERE id = $1 AND (last_due_ms IS NULL OR last_due_ms < $2)",
            &[&id, &due_ms, &now_ms, &session, &error],
        )
        .await
        .context("recording a schedule's run")?;
    if changed == 1
        && let Some(told) = told
    {
        super::outbox::insert_told(tx, told).await?;
    }
    Ok(changed == 1)
}
