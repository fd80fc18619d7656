//! Reading sessions: one by id, VM name or request key; pages of them;
//! a warm pool's; those in progress; and the counts the metrics show.

use daas_api::v1::SessionState;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Context,
    rows::{SESSION_COLUMNS, session_from_row},
};
use crate::domain::{orgs::Amounts, time::now_ms};
use crate::store::{PageCursor, REQUEST_ID_WINDOW_MS, SessionRecord, StoreError, state_from_db};

pub(super) fn get_session(
    conn: &Connection,
    id: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
        [id],
        session_from_row,
    )
    .optional()
    .context("reading a session")
}

/// The session a request key made within the window, if any.
pub(super) fn by_request_key(
    conn: &Connection,
    key: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE request_key = ?1 AND created_ms > ?2 \
             ORDER BY created_ms DESC LIMIT 1"
        ),
        params![key, now_ms() - REQUEST_ID_WINDOW_MS],
        session_from_row,
    )
    .optional()
    .context("reading a session by request")
}

pub(super) fn by_vm_name(
    conn: &Connection,
    vm_name: String,
) -> Result<Option<SessionRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE vm_name = ?1"),
        [vm_name],
        session_from_row,
    )
    .optional()
    .context("reading a session by VM name")
}

/// The sessions placed on `node` whose slot is held (see
/// `SessionStore::placed_on`).
pub(super) fn placed_on(conn: &Connection, node: String) -> Result<Vec<SessionRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE node = ?1 AND slot_released = 0 \
             ORDER BY created_ms"
        ))
        .context("listing a node's sessions")?;
    let rows = stmt
        .query_map([node], session_from_row)
        .context("listing a node's sessions")?;
    rows.collect::<Result<Vec<_>, _>>()
        .context("listing a node's sessions")
}

/// At most `limit` sessions, newest first, after `after`, filtered by user,
/// organisation and state when given.
pub(super) fn list_page(
    conn: &Connection,
    (username, org): (Option<String>, Option<String>),
    state: Option<SessionState>,
    after: Option<PageCursor>,
    limit: u32,
) -> Result<Vec<SessionRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE (?1 IS NULL OR username = ?1) AND (?2 IS NULL OR state = ?2) \
             AND (?3 IS NULL OR created_ms < ?3 OR (created_ms = ?3 AND id < ?4)) \
             AND (?6 IS NULL OR org = ?6) \
             ORDER BY created_ms DESC, id DESC LIMIT ?5"
        ))
        .context("listing sessions")?;
    let (after_ms, after_id) = after.map(|c| (c.created_ms, c.id)).unzip();
    let rows = stmt
        .query_map(
            params![
                username,
                state.map(|s| s as i32),
                after_ms,
                after_id,
                i64::from(limit),
                org
            ],
            session_from_row,
        )
        .context("listing sessions")?;
    rows.collect::<Result<Vec<_>, _>>()
        .context("listing sessions")
}

/// What the live sessions of `org` and/or `username` hold.
pub(super) fn usage(
    conn: &Connection,
    org: Option<String>,
    username: Option<String>,
) -> Result<Amounts, StoreError> {
    let (desktops, cores, memory_mb): (i64, i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(cores), 0), COALESCE(SUM(memory_mb), 0) \
             FROM sessions WHERE state NOT IN (?1, ?2, ?3) \
             AND (?4 IS NULL OR org = ?4) AND (?5 IS NULL OR username = ?5)",
            params![
                SessionState::Failed as i32,
                SessionState::Destroyed as i32,
                SessionState::Lost as i32,
                org,
                username
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .context("counting live sessions")?;
    Ok(Amounts {
        desktops: u32::try_from(desktops).unwrap_or(u32::MAX),
        cores: u32::try_from(cores).unwrap_or(u32::MAX),
        memory_mb: u64::try_from(memory_mb).unwrap_or(u64::MAX),
    })
}

/// The sessions of warm pool `pool` that are live, or that changed or were
/// claimed at or after `since_ms`, oldest first.
pub(super) fn pool_sessions(
    conn: &Connection,
    pool: String,
    since_ms: i64,
) -> Result<Vec<SessionRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE pool = ?1 \
             AND (state NOT IN (?2, ?3) OR updated_ms >= ?4 OR claimed_ms >= ?4) \
             ORDER BY created_ms"
        ))
        .context("listing a pool's sessions")?;
    let rows = stmt
        .query_map(
            params![
                pool,
                SessionState::Failed as i32,
                SessionState::Destroyed as i32,
                since_ms
            ],
            session_from_row,
        )
        .context("listing a pool's sessions")?;
    rows.collect::<Result<Vec<_>, _>>()
        .context("listing a pool's sessions")
}

/// The sessions that are not settled, oldest first.
pub(super) fn in_progress(conn: &Connection) -> Result<Vec<SessionRecord>, StoreError> {
    // Only the sessions that are not settled: the history can be long.
    let settled = [
        SessionState::Ready,
        SessionState::Failed,
        SessionState::Destroyed,
        SessionState::Lost,
    ]
    .map(|s| s as i32);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE state NOT IN (?1, ?2, ?3, ?4) ORDER BY created_ms"
        ))
        .context("listing sessions in progress")?;
    let rows = stmt
        .query_map(
            params![settled[0], settled[1], settled[2], settled[3]],
            session_from_row,
        )
        .context("listing sessions in progress")?;
    rows.collect::<Result<Vec<_>, _>>()
        .context("listing sessions in progress")
}

/// How many sessions each (state, template) has.
pub(super) fn count_by_state(
    conn: &Connection,
) -> Result<Vec<(SessionState, String, u64)>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT state, template, COUNT(*) FROM sessions \
             GROUP BY state, template ORDER BY state, template",
        )
        .context("counting sessions")?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                state_from_db(row.get(0)?),
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?.max(0) as u64,
            ))
        })
        .context("counting sessions")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .context("counting sessions")
}
