//! The `snapshots` table: kept disks recorded once, listed newest first
//! with the live session restored from each, and forgotten.

use tokio_postgres::{GenericClient, Row};

use super::Context;
use crate::store::{
    StoreError,
    admission::NOT_LIVE,
    snapshots::{SnapshotRecord, Which},
};

fn from_row(row: &Row) -> Result<SnapshotRecord, tokio_postgres::Error> {
    let size_gb: i64 = row.try_get("size_gb")?;
    Ok(SnapshotRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        template: row.try_get("template")?,
        size: row.try_get("size")?,
        org: row.try_get("org")?,
        vm_name: row.try_get("vm_name")?,
        created_ms: row.try_get("created_ms")?,
        size_gb: u32::try_from(size_gb).unwrap_or(u32::MAX),
        restoring: row.try_get("restoring")?,
    })
}

/// `SELECT` of every column, with the live session restored from each.
fn select(filter: &str) -> String {
    let [a, b, c] = NOT_LIVE.map(|s| s as i32);
    format!(
        "SELECT id, username, template, size, org, vm_name, created_ms, size_gb, \
         (SELECT s.id FROM sessions s WHERE s.restore_from = snapshots.id \
          AND s.state NOT IN ({a}, {b}, {c}) LIMIT 1) AS restoring \
         FROM snapshots {filter}"
    )
}

pub(super) async fn keep(db: &impl GenericClient, r: &SnapshotRecord) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO snapshots (id, username, template, size, org, vm_name, created_ms, size_gb) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        &[
            &r.id,
            &r.username,
            &r.template,
            &r.size,
            &r.org,
            &r.vm_name,
            &r.created_ms,
            &i64::from(r.size_gb),
        ],
    )
    .await
    .context("keeping a disk")?;
    Ok(())
}

pub(super) async fn list(
    db: &impl GenericClient,
    which: &Which,
) -> Result<Vec<SnapshotRecord>, StoreError> {
    let sql = select(
        "WHERE ($1::TEXT IS NULL OR username = $1) AND ($2::TEXT IS NULL OR id = $2) \
         AND ($3::TEXT IS NULL OR org = $3) ORDER BY created_ms DESC, id DESC",
    );
    db.query(&sql, &[&which.username, &which.id, &which.org])
        .await
        .and_then(|rows| rows.iter().map(from_row).collect())
        .context("listing kept disks")
}

pub(super) async fn forget(
    db: &impl GenericClient,
    id: &str,
) -> Result<Option<SnapshotRecord>, StoreError> {
    let found = db
        .query_opt(&select("WHERE id = $1"), &[&id])
        .await
        .and_then(|row| row.as_ref().map(from_row).transpose())
        .context("forgetting a kept disk")?;
    db.execute("DELETE FROM snapshots WHERE id = $1", &[&id])
        .await
        .context("forgetting a kept disk")?;
    Ok(found)
}
