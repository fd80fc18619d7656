//! Brings a database to the current schema: the numbered files of
//! `migrations/`, each in its own transaction, counted by
//! `PRAGMA user_version` (a database at version n has had the first n).
//! A step that needs Rust (decoding stored events) runs right after the
//! SQL of its number.

use prost::Message;
use rusqlite::{Connection, params};

use super::Context;
use crate::store::{
    StoreError,
    event_rows::{event_kind, event_time_ms},
};
use daas_api::v1::SessionEvent;

/// The schema migrations, numbered from 1, in the order they apply; the
/// database's `user_version` is the number of the last one applied.
pub(super) const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_sessions_and_events.sql")),
    (2, include_str!("migrations/0002_agent_activity.sql")),
    (
        3,
        include_str!("migrations/0003_child_identity_and_unique_slots.sql"),
    ),
    (
        4,
        include_str!("migrations/0004_event_kinds_and_request_keys.sql"),
    ),
    (5, include_str!("migrations/0005_warm_pools.sql")),
    (6, include_str!("migrations/0006_audit.sql")),
    (7, include_str!("migrations/0007_rdp_cert_pin.sql")),
    (8, include_str!("migrations/0008_web_signins.sql")),
    (9, include_str!("migrations/0009_terraform_files.sql")),
    (10, include_str!("migrations/0010_leases.sql")),
    (11, include_str!("migrations/0011_webhook_outbox.sql")),
    (12, include_str!("migrations/0012_web_tickets.sql")),
    (13, include_str!("migrations/0013_deployment.sql")),
    (14, include_str!("migrations/0014_create_rates.sql")),
    (15, include_str!("migrations/0015_queued_password.sql")),
    (16, include_str!("migrations/0016_deployment_secrets.sql")),
    (17, include_str!("migrations/0017_nodes.sql")),
    (18, include_str!("migrations/0018_clone_storage.sql")),
    (19, include_str!("migrations/0019_catalog.sql")),
    (20, include_str!("migrations/0020_orgs.sql")),
    (21, include_str!("migrations/0021_schedules.sql")),
    (22, include_str!("migrations/0022_snapshots.sql")),
    (23, include_str!("migrations/0023_outbox_notice.sql")),
    (24, include_str!("migrations/0024_agent_commands.sql")),
];

/// A migration step written in Rust.
type RustStep = fn(&mut Connection) -> Result<(), StoreError>;

/// Rust work that follows the SQL migration of the same number, when that
/// migration is applied (not when the database already had it).
const RUST_STEPS: &[(u32, RustStep)] = &[(4, classify_old_events)];

/// Applies the migrations the database does not have yet.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context("reading the schema version")?;
    for &(number, sql) in MIGRATIONS.iter().skip(version) {
        let tx = conn.transaction().context("starting a migration")?;
        tx.execute_batch(sql).context("migrating the schema")?;
        tx.pragma_update(None, "user_version", number)
            .context("recording the schema version")?;
        tx.commit().context("committing a migration")?;
        for &(_, step) in RUST_STEPS.iter().filter(|(after, _)| *after == number) {
            step(conn)?;
        }
    }
    Ok(())
}

/// Events stored before migration 4 get their kind and time from their body.
fn classify_old_events(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction().context("classifying old events")?;
    let rows = {
        let mut stmt = tx
            .prepare("SELECT session_id, seq, body FROM events WHERE kind = 0")
            .context("classifying old events")?;
        stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })
        .context("classifying old events")?
        .collect::<Result<Vec<_>, _>>()
        .context("classifying old events")?
    };
    for (id, seq, body) in rows {
        let Ok(event) = SessionEvent::decode(body.as_slice()) else {
            continue;
        };
        tx.execute(
            "UPDATE events SET kind = ?3, time_ms = ?4 WHERE session_id = ?1 AND seq = ?2",
            params![id, seq, event_kind(&event), event_time_ms(&event)],
        )
        .context("classifying old events")?;
    }
    tx.commit().context("classifying old events")
}
