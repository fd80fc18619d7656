//! Reading sessions: one by id, VM name or request key; pages of them;
//! a warm pool's; those in progress; and the counts the metrics show.

use daas_api::v1::SessionState;
use tokio_postgres::GenericClient;

use super::{
    Context,
    rows::{SESSION_COLUMNS, session_from_row},
};
use crate::domain::{orgs::Amounts, time::now_ms};
use crate::store::{
    PageCursor, REQUEST_ID_WINDOW_MS, SessionRecord, StoreError, admission::NOT_LIVE, state_from_db,
};

/// The sessions a query selected with [`SESSION_COLUMNS`].
fn sessions(
    rows: Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
    context: &'static str,
) -> Result<Vec<SessionRecord>, StoreError> {
    rows.and_then(|rows| rows.iter().map(session_from_row).collect())
        .context(context)
}

/// The one session a query selected with [`SESSION_COLUMNS`], if any.
fn session(
    row: Result<Option<tokio_postgres::Row>, tokio_postgres::Error>,
    context: &'static str,
) -> Result<Option<SessionRecord>, StoreError> {
    row.and_then(|row| row.as_ref().map(session_from_row).transpose())
        .context(context)
}

pub(super) async fn get_session(
    db: &impl GenericClient,
    id: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
    session(db.query_opt(&sql, &[&id]).await, "reading a session")
}

/// The session a request key made within the window, if any.
pub(super) async fn by_request_key(
    db: &impl GenericClient,
    key: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE request_key = $1 AND created_ms > $2 \
         ORDER BY created_ms DESC LIMIT 1"
    );
    let since = now_ms() - REQUEST_ID_WINDOW_MS;
    session(
        db.query_opt(&sql, &[&key, &since]).await,
        "reading a session by request",
    )
}

pub(super) async fn by_vm_name(
    db: &impl GenericClient,
    vm_name: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE vm_name = $1");
    session(
        db.query_opt(&sql, &[&vm_name]).await,
        "reading a session by VM name",
    )
}

/// The sessions placed on `node` whose slot is held (see
/// `SessionStore::placed_on`).
pub(super) async fn placed_on(
    db: &impl GenericClient,
    node: &str,
) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE node = $1 AND NOT slot_released \
         ORDER BY created_ms"
    );
    sessions(db.query(&sql, &[&node]).await, "listing a node's sessions")
}

/// At most `limit` sessions, newest first, after `after`, filtered by user,
/// organisation and state when given.
pub(super) async fn list_page(
    db: &impl GenericClient,
    (username, org): (Option<String>, Option<String>),
    state: Option<SessionState>,
    after: Option<PageCursor>,
    limit: u32,
) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions \
         WHERE ($1::TEXT IS NULL OR username = $1) AND ($2::INTEGER IS NULL OR state = $2) \
         AND ($3::BIGINT IS NULL OR created_ms < $3 OR (created_ms = $3 AND id < $4)) \
         AND ($6::TEXT IS NULL OR org = $6) \
         ORDER BY created_ms DESC, id DESC LIMIT $5"
    );
    let (after_ms, after_id) = after.map(|c| (c.created_ms, c.id)).unzip();
    let state = state.map(|s| s as i32);
    sessions(
        db.query(
            &sql,
            &[
                &username,
                &state,
                &after_ms,
                &after_id,
                &i64::from(limit),
                &org,
            ],
        )
        .await,
        "listing sessions",
    )
}

/// What the live sessions of `org` and/or `username` hold.
pub(super) async fn usage(
    db: &impl GenericClient,
    org: Option<String>,
    username: Option<String>,
) -> Result<Amounts, StoreError> {
    let not_live: Vec<i32> = NOT_LIVE.iter().map(|s| *s as i32).collect();
    let row = db
        .query_one(
            "SELECT COUNT(*), COALESCE(SUM(cores), 0)::BIGINT, \
             COALESCE(SUM(memory_mb), 0)::BIGINT FROM sessions WHERE state <> ALL($1) \
             AND ($2::TEXT IS NULL OR org = $2) AND ($3::TEXT IS NULL OR username = $3)",
            &[&not_live, &org, &username],
        )
        .await
        .context("counting live sessions")?;
    let get =
        |i: usize| -> Result<i64, StoreError> { row.try_get(i).context("counting live sessions") };
    Ok(Amounts {
        desktops: u32::try_from(get(0)?).unwrap_or(u32::MAX),
        cores: u32::try_from(get(1)?).unwrap_or(u32::MAX),
        memory_mb: u64::try_from(get(2)?).unwrap_or(u64::MAX),
    })
}

/// The sessions of warm pool `pool` that are live, or that changed or were
/// claimed at or after `since_ms`, oldest first.
pub(super) async fn pool_sessions(
    db: &impl GenericClient,
    pool: &str,
    since_ms: i64,
) -> Result<Vec<SessionRecord>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE pool = $1 \
         AND (state NOT IN ($2, $3) OR updated_ms >= $4 OR claimed_ms >= $4) \
         ORDER BY created_ms"
    );
    let (failed, destroyed) = (SessionState::Failed as i32, SessionState::Destroyed as i32);
    sessions(
        db.query(&sql, &[&pool, &failed, &destroyed, &since_ms])
            .await,
        "listing a pool's sessions",
    )
}

/// The sessions that are not settled, oldest first.
pub(super) async fn in_progress(db: &impl GenericClient) -> Result<Vec<SessionRecord>, StoreError> {
    let settled: Vec<i32> = [
        SessionState::Ready,
        SessionState::Failed,
        SessionState::Destroyed,
        SessionState::Lost,
    ]
    .iter()
    .map(|s| *s as i32)
    .collect();
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE state <> ALL($1) ORDER BY created_ms"
    );
    sessions(
        db.query(&sql, &[&settled]).await,
        "listing sessions in progress",
    )
}

/// How many sessions each (state, template) has.
pub(super) async fn count_by_state(
    db: &impl GenericClient,
) -> Result<Vec<(SessionState, String, u64)>, StoreError> {
    let rows = db
        .query(
            "SELECT state, template, COUNT(*) FROM sessions \
             GROUP BY state, template ORDER BY state, template",
            &[],
        )
        .await
        .context("counting sessions")?;
    rows.iter()
        .map(|row| {
            Ok((
                state_from_db(row.try_get(0)?),
                row.try_get::<_, String>(1)?,
                row.try_get::<_, i64>(2)?.max(0) as u64,
            ))
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .context("counting sessions")
}
