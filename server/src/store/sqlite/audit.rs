//! The `audit` table: appending to the trail, reading it a page at a time
//! (newest first), and the retention that prunes old entries.

use rusqlite::{Connection, params};

use super::{Context, rows::audit_from_row};
use crate::store::{
    StoreError,
    audit_records::{AuditFilter, AuditRecord},
};

/// Appends an entry; returns its id.
pub(super) fn append(conn: &Connection, r: AuditRecord) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO audit (time_ms, actor, subject, fingerprint, peer, action, \
         session_id, owner, result, detail, org) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            r.time_ms,
            r.actor,
            r.subject,
            r.fingerprint,
            r.peer,
            r.action,
            r.session_id,
            r.owner,
            r.result,
            r.detail,
            r.org
        ],
    )
    .context("appending to the audit trail")?;
    Ok(conn.last_insert_rowid())
}

/// The entries matching `f`, newest first.
pub(super) fn page(conn: &Connection, f: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, time_ms, actor, subject, fingerprint, peer, action, session_id, \
             owner, result, detail, org FROM audit \
             WHERE (?1 IS NULL OR actor = ?1 OR owner = ?1) AND (?7 IS NULL OR org = ?7) \
             AND (?2 IS NULL OR session_id = ?2) AND (?3 IS NULL OR time_ms >= ?3) \
             AND (?4 IS NULL OR time_ms < ?4 OR (time_ms = ?4 AND id < ?5)) \
             ORDER BY time_ms DESC, id DESC LIMIT ?6",
        )
        .context("reading the audit trail")?;
    let (before_ms, before_id) = f.before.unzip();
    let rows = stmt
        .query_map(
            params![
                f.username,
                f.session_id,
                f.since_ms,
                before_ms,
                before_id,
                i64::from(f.limit),
                f.org
            ],
            audit_from_row,
        )
        .context("reading the audit trail")?;
    rows.collect::<Result<Vec<_>, _>>()
        .context("reading the audit trail")
}

/// Deletes the entries recorded before `before_ms`; returns how many.
pub(super) fn prune(conn: &Connection, before_ms: i64) -> Result<usize, StoreError> {
    conn.execute("DELETE FROM audit WHERE time_ms < ?1", params![before_ms])
        .context("pruning old audit entries")
}
