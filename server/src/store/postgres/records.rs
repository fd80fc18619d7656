//! The `audit` trail (appended, read a page at a time newest first,
//! pruned) and the `web_signins` table (the portal's signed-in browsers,
//! opened within their limits, looked up, touched, rechecked and closed).

use tokio_postgres::{GenericClient, Transaction};

use super::{
    Context,
    capped::{Capped, Room},
    locks,
    rows::{SIGNIN_COLUMNS, audit_from_row, signin_from_row},
};
use crate::store::{
    StoreError,
    audit_records::{AuditFilter, AuditRecord},
    signins::{SignInLimits, SignInOpened, SignInRecord},
};

/// Appends an entry; returns its id.
pub(super) async fn append_audit(
    db: &impl GenericClient,
    r: AuditRecord,
) -> Result<i64, StoreError> {
    db.query_one(
        "INSERT INTO audit (time_ms, actor, subject, fingerprint, peer, action, \
         session_id, owner, result, detail, org) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        &[
            &r.time_ms,
            &r.actor,
            &r.subject,
            &r.fingerprint,
            &r.peer,
            &r.action,
            &r.session_id,
            &r.owner,
            &r.result,
            &r.detail,
            &r.org,
        ],
    )
    .await
    .and_then(|row| row.try_get(0))
    .context("appending to the audit trail")
}

/// The entries matching `f`, newest first.
pub(super) async fn audit_page(
    db: &impl GenericClient,
    f: AuditFilter,
) -> Result<Vec<AuditRecord>, StoreError> {
    let (before_ms, before_id) = f.before.unzip();
    db.query(
        "SELECT id, time_ms, actor, subject, fingerprint, peer, action, session_id, \
         owner, result, detail, org FROM audit \
         WHERE ($1::TEXT IS NULL OR actor = $1 OR owner = $1) AND ($7::TEXT IS NULL OR org = $7) \
         AND ($2::TEXT IS NULL OR session_id = $2) AND ($3::BIGINT IS NULL OR time_ms >= $3) \
         AND ($4::BIGINT IS NULL OR time_ms < $4 OR (time_ms = $4 AND id < $5)) \
         ORDER BY time_ms DESC, id DESC LIMIT $6",
        &[
            &f.username,
            &f.session_id,
            &f.since_ms,
            &before_ms,
            &before_id,
            &i64::from(f.limit),
            &f.org,
        ],
    )
    .await
    .and_then(|rows| rows.iter().map(audit_from_row).collect())
    .context("reading the audit trail")
}

/// Deletes the entries recorded before `before_ms`; returns how many.
pub(super) async fn prune_audit(
    db: &impl GenericClient,
    before_ms: i64,
) -> Result<usize, StoreError> {
    db.execute("DELETE FROM audit WHERE time_ms < $1", &[&before_ms])
        .await
        .map(|n| n as usize)
        .context("pruning old audit entries")
}

/// The sign-in whose cookie id hashes to `id_hash`, if it exists.
pub(super) async fn signin(
    db: &impl GenericClient,
    id_hash: &str,
) -> Result<Option<SignInRecord>, StoreError> {
    let sql = format!("SELECT {SIGNIN_COLUMNS} FROM web_signins WHERE id_hash = $1");
    db.query_opt(&sql, &[&id_hash])
        .await
        .and_then(|row| row.as_ref().map(signin_from_row).transpose())
        .context("reading a sign-in")
}

/// Deletes the sign-ins that have ended, then records `r` unless the user
/// or the portal is full, under the sign-in lock.
pub(super) async fn open_signin(
    tx: &Transaction<'_>,
    r: SignInRecord,
    limits: SignInLimits,
) -> Result<SignInOpened, StoreError> {
    let capped = Capped {
        lock: locks::SIGNIN,
        table: "web_signins",
        contexts: [
            "waiting for the sign-in lock",
            "deleting ended sign-ins",
            "counting sign-ins",
        ],
        ended: "last_seen_ms < $1 OR created_ms < $2",
        ended_params: &[&limits.idle_before_ms, &limits.made_before_ms],
        per_user: limits.per_user,
        total: limits.total,
    };
    match capped.room(tx, &r.user).await? {
        Room::Free => {}
        Room::UserFull => return Ok(SignInOpened::UserFull),
        Room::Full => return Ok(SignInOpened::Full),
    }
    tx.execute(
        "INSERT INTO web_signins (id_hash, username, admin, csrf, key, created_ms, \
         last_seen_ms, checked_ms, groups) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &r.id_hash,
            &r.user,
            &r.admin,
            &r.csrf,
            &r.key,
            &r.created_ms,
            &r.last_seen_ms,
            &r.checked_ms,
            &serde_json::to_string(&r.groups).unwrap_or_else(|_| "[]".into()),
        ],
    )
    .await
    .context("recording a sign-in")?;
    Ok(SignInOpened::Opened)
}

/// Records that the sign-in was used at `last_seen_ms` (never moving back).
pub(super) async fn touch_signin(
    db: &impl GenericClient,
    id_hash: &str,
    last_seen_ms: i64,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE web_signins SET last_seen_ms = GREATEST(last_seen_ms, $2) WHERE id_hash = $1",
        &[&id_hash, &last_seen_ms],
    )
    .await
    .context("recording a sign-in's use")?;
    Ok(())
}

/// Records a recheck of the sign-in's user; returns the sign-in as it is now.
pub(super) async fn recheck_signin(
    db: &impl GenericClient,
    id_hash: &str,
    admin: bool,
    groups: &[String],
    checked_ms: i64,
) -> Result<Option<SignInRecord>, StoreError> {
    let sql = format!(
        "UPDATE web_signins SET admin = $2, checked_ms = $3, groups = $4 WHERE id_hash = $1 \
         RETURNING {SIGNIN_COLUMNS}"
    );
    let groups = serde_json::to_string(groups).unwrap_or_else(|_| "[]".into());
    db.query_opt(&sql, &[&id_hash, &admin, &checked_ms, &groups])
        .await
        .and_then(|row| row.as_ref().map(signin_from_row).transpose())
        .context("recording a recheck")
}

/// Deletes the sign-in; returns it as it was.
pub(super) async fn close_signin(
    db: &impl GenericClient,
    id_hash: &str,
) -> Result<Option<SignInRecord>, StoreError> {
    let sql = format!("DELETE FROM web_signins WHERE id_hash = $1 RETURNING {SIGNIN_COLUMNS}");
    db.query_opt(&sql, &[&id_hash])
        .await
        .and_then(|row| row.as_ref().map(signin_from_row).transpose())
        .context("deleting a sign-in")
}
