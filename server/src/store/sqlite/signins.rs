//! The `web_signins` table: the portal's signed-in browsers, opened within
//! their limits, looked up, touched, rechecked and closed.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Context, rows::signin_from_row};
use crate::store::{
    StoreError,
    signins::{SignInLimits, SignInOpened, SignInRecord},
};

/// The sign-in whose cookie id hashes to `id_hash`, if it exists.
pub(super) fn signin_row(
    conn: &Connection,
    id_hash: &str,
) -> Result<Option<SignInRecord>, StoreError> {
    conn.query_row(
        "SELECT id_hash, user, admin, csrf, key, created_ms, last_seen_ms, checked_ms, groups \
         FROM web_signins WHERE id_hash = ?1",
        params![id_hash],
        signin_from_row,
    )
    .optional()
    .context("reading a sign-in")
}

/// Deletes the sign-ins that have ended, then records `r` unless the user
/// or the portal is full, in one write transaction.
pub(super) fn open(
    conn: &mut Connection,
    r: SignInRecord,
    limits: SignInLimits,
) -> Result<SignInOpened, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting a sign-in")?;
    tx.execute(
        "DELETE FROM web_signins WHERE last_seen_ms < ?1 OR created_ms < ?2",
        params![limits.idle_before_ms, limits.made_before_ms],
    )
    .context("deleting ended sign-ins")?;
    let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<usize, StoreError> {
        tx.query_row(sql, p, |row| row.get::<_, i64>(0))
            .context("counting sign-ins")
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    if count(
        "SELECT COUNT(*) FROM web_signins WHERE user = ?1",
        &[&r.user],
    )? >= limits.per_user
    {
        return Ok(SignInOpened::UserFull);
    }
    if count("SELECT COUNT(*) FROM web_signins", &[])? >= limits.total {
        return Ok(SignInOpened::Full);
    }
    tx.execute(
        "INSERT INTO web_signins (id_hash, user, admin, csrf, key, created_ms, \
         last_seen_ms, checked_ms, groups) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            r.id_hash,
            r.user,
            r.admin,
            r.csrf,
            r.key,
            r.created_ms,
            r.last_seen_ms,
            r.checked_ms,
            groups_json(&r.groups)
        ],
    )
    .context("recording a sign-in")?;
    tx.commit().context("committing a sign-in")?;
    Ok(SignInOpened::Opened)
}

/// Records that the sign-in was used at `last_seen_ms` (never moving back).
pub(super) fn touch(
    conn: &Connection,
    id_hash: String,
    last_seen_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE web_signins SET last_seen_ms = MAX(last_seen_ms, ?2) WHERE id_hash = ?1",
        params![id_hash, last_seen_ms],
    )
    .context("recording a sign-in's use")?;
    Ok(())
}

/// Records a recheck of the sign-in's user; returns the sign-in as it is now.
pub(super) fn recheck(
    conn: &Connection,
    id_hash: String,
    admin: bool,
    groups: Vec<String>,
    checked_ms: i64,
) -> Result<Option<SignInRecord>, StoreError> {
    conn.execute(
        "UPDATE web_signins SET admin = ?2, checked_ms = ?3, groups = ?4 WHERE id_hash = ?1",
        params![id_hash, admin, checked_ms, groups_json(&groups)],
    )
    .context("recording a recheck")?;
    signin_row(conn, &id_hash)
}

/// Deletes the sign-in; returns it as it was.
pub(super) fn close(
    conn: &Connection,
    id_hash: String,
) -> Result<Option<SignInRecord>, StoreError> {
    let found = signin_row(conn, &id_hash)?;
    conn.execute(
        "DELETE FROM web_signins WHERE id_hash = ?1",
        params![id_hash],
    )
    .context("deleting a sign-in")?;
    Ok(found)
}

/// A sign-in's groups as the column keeps them (a JSON array).
fn groups_json(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".into())
}
