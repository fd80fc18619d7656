//! Brings the database to the current schema: the numbered files of
//! `migrations/`, recorded in `daas_schema`, all in one transaction under
//! an advisory lock, so that replicas starting together migrate once (the
//! others wait, then find nothing to do).

use deadpool_postgres::Object;

use super::{Context, locks};
use crate::store::StoreError;

/// The schema migrations, numbered from 1, in the order they apply.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_schema.sql")),
    (2, include_str!("migrations/0002_terraform_files.sql")),
    (3, include_str!("migrations/0003_leases.sql")),
    (4, include_str!("migrations/0004_webhook_outbox.sql")),
    (5, include_str!("migrations/0005_web_tickets.sql")),
    (6, include_str!("migrations/0006_deployment.sql")),
    (7, include_str!("migrations/0007_create_rates.sql")),
    (8, include_str!("migrations/0008_queued_password.sql")),
    (9, include_str!("migrations/0009_deployment_secrets.sql")),
    (10, include_str!("migrations/0010_nodes.sql")),
    (11, include_str!("migrations/0011_clone_storage.sql")),
    (12, include_str!("migrations/0012_catalog.sql")),
    (13, include_str!("migrations/0013_orgs.sql")),
    (14, include_str!("migrations/0014_schedules.sql")),
    (15, include_str!("migrations/0015_snapshots.sql")),
    (16, include_str!("migrations/0016_outbox_notice.sql")),
    (17, include_str!("migrations/0017_agent_commands.sql")),
];

/// Applies the migrations the database does not have yet.
pub(super) async fn migrate(client: &mut Object) -> Result<(), StoreError> {
    let tx = client.transaction().await.context("starting a migration")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::MIGRATE])
        .await
        .context("waiting for another server's migration")?;
    // (No notice that the table exists: it does, but for the first start.)
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning; \
         CREATE TABLE IF NOT EXISTS daas_schema (version INTEGER NOT NULL)",
    )
    .await
    .context("recording the schema version")?;
    let version: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM daas_schema", &[])
        .await
        .and_then(|row| row.try_get(0))
        .context("reading the schema version")?;
    let known = MIGRATIONS.last().map_or(0, |(number, _)| *number);
    if version > known {
        return Err(StoreError::Connect(format!(
            "the database's schema is version {version}, newer than this server's {known}: \
             upgrade this server (another, newer one migrated the database)"
        )));
    }
    for &(number, sql) in MIGRATIONS.iter().filter(|(n, _)| *n > version) {
        tx.batch_execute(sql)
            .await
            .context("migrating the schema")?;
        tx.execute("INSERT INTO daas_schema (version) VALUES ($1)", &[&number])
            .await
            .context("recording the schema version")?;
    }
    tx.commit().await.context("committing a migration")
}
