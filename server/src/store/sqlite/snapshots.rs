//! The `snapshots` table: kept disks recorded once, listed newest first
//! with the live session restored from each, and forgotten.

use rusqlite::{Connection, Row, params};

use super::Context;
use crate::store::{
    StoreError,
    admission::NOT_LIVE,
    snapshots::{SnapshotRecord, Which},
};

fn from_row(row: &Row<'_>) -> rusqlite::Result<SnapshotRecord> {
    Ok(SnapshotRecord {
        id: row.get("id")?,
        username: row.get("username")?,
        template: row.get("template")?,
        size: row.get("size")?,
        org: row.get("org")?,
        vm_name: row.get("vm_name")?,
        created_ms: row.get("created_ms")?,
        size_gb: row.get("size_gb")?,
        restoring: row.get("restoring")?,
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

pub(super) fn keep(conn: &Connection, r: SnapshotRecord) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO snapshots (id, username, template, size, org, vm_name, created_ms, size_gb) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
        params![
            r.id,
            r.username,
            r.template,
            r.size,
            r.org,
            r.vm_name,
            r.created_ms,
            r.size_gb
        ],
    )
    .context("keeping a disk")?;
    Ok(())
}

pub(super) fn list(conn: &Connection, which: Which) -> Result<Vec<SnapshotRecord>, StoreError> {
    let sql = select(
        "WHERE (?1 IS NULL OR username = ?1) AND (?2 IS NULL OR id = ?2) \
         AND (?3 IS NULL OR org = ?3) ORDER BY created_ms DESC, id DESC",
    );
    let mut stmt = conn.prepare(&sql).context("listing kept disks")?;
    let rows = stmt
        .query_map(params![which.username, which.id, which.org], from_row)
        .context("listing kept disks")?;
    rows.collect::<Result<Vec<_>, _>>()
        .context("listing kept disks")
}

pub(super) fn forget(conn: &Connection, id: String) -> Result<Option<SnapshotRecord>, StoreError> {
    let sql = select("WHERE id = ?1");
    let found = {
        let mut stmt = conn.prepare(&sql).context("forgetting a kept disk")?;
        let mut rows = stmt
            .query_map([&id], from_row)
            .context("forgetting a kept disk")?;
        rows.next().transpose().context("forgetting a kept disk")?
    };
    conn.execute("DELETE FROM snapshots WHERE id = ?1", [&id])
        .context("forgetting a kept disk")?;
    Ok(found)
}
