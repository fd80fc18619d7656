//! The webhook outbox on PostgreSQL (see `crate::store::outbox`): rows
//! written in the event's transaction; any server takes due ones with
//! `FOR UPDATE SKIP LOCKED`.

use daas_api::v1::SessionEvent;
use tokio_postgres::{GenericClient, Transaction};

use super::{Context, leases::Holder};
use crate::{
    domain::time::now_ms,
    store::{
        StoreError,
        outbox::{Delivery, Told},
    },
};

/// A delivery row per webhook in `webhooks`, for `event`, in `tx`.
pub(super) async fn insert(
    tx: &Transaction<'_>,
    webhooks: &[String],
    event: &SessionEvent,
) -> Result<(), StoreError> {
    for webhook in webhooks {
        tx.execute(
            "INSERT INTO webhook_outbox (id, webhook, session_id, seq, created_ms) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &uuid::Uuid::new_v4().to_string(),
                webhook,
                &event.session_id,
                &i64::try_from(event.sequence).unwrap_or(i64::MAX),
                &now_ms(),
            ],
        )
        .await
        .context("writing a webhook delivery")?;
    }
    Ok(())
}

/// A delivery row per webhook of `told`, for its notice about no session,
/// in `tx`.
pub(super) async fn insert_told(tx: &Transaction<'_>, told: &Told) -> Result<(), StoreError> {
    for webhook in &told.webhooks {
        tx.execute(
            "INSERT INTO webhook_outbox (id, webhook, session_id, seq, created_ms, notice) \
             VALUES ($1, $2, '', 0, $3, $4)",
            &[
                &uuid::Uuid::new_v4().to_string(),
                webhook,
                &now_ms(),
                &told.notice,
            ],
        )
        .await
        .context("writing a webhook delivery")?;
    }
    Ok(())
}

pub(super) async fn claim(
    db: &impl GenericClient,
    holder: &Holder,
    limit: usize,
    hold_ms: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let now = now_ms();
    let rows = db
        .query(
            "UPDATE webhook_outbox SET claimed_by = $1, claimed_until_ms = $2 WHERE id IN ( \
               SELECT id FROM webhook_outbox \
               WHERE claimed_until_ms IS NULL OR claimed_until_ms < $3 \
               ORDER BY created_ms LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id, webhook, session_id, seq, created_ms, notice",
            &[
                &&*holder.me,
                &(now + hold_ms),
                &now,
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
        .await
        .context("taking webhook deliveries")?;
    let mut due = Vec::with_capacity(rows.len());
    for row in rows {
        let sequence: i64 = row.try_get(3).context("reading a webhook delivery")?;
        due.push(Delivery {
            id: row.try_get(0).context("reading a webhook delivery")?,
            webhook: row.try_get(1).context("reading a webhook delivery")?,
            session_id: row.try_get(2).context("reading a webhook delivery")?,
            sequence: u64::try_from(sequence).unwrap_or(0),
            created_ms: row.try_get(4).context("reading a webhook delivery")?,
            notice: row.try_get(5).context("reading a webhook delivery")?,
        });
    }
    due.sort_by_key(|d| d.created_ms);
    Ok(due)
}

pub(super) async fn hold(
    db: &impl GenericClient,
    holder: &Holder,
    ids: &[String],
    hold_ms: i64,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE webhook_outbox SET claimed_until_ms = $3 WHERE id = ANY($1) AND claimed_by = $2",
        &[&ids, &&*holder.me, &(now_ms() + hold_ms)],
    )
    .await
    .context("holding webhook deliveries")?;
    Ok(())
}

pub(super) async fn finish(db: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    db.execute("DELETE FROM webhook_outbox WHERE id = $1", &[&id])
        .await
        .context("forgetting a webhook delivery")?;
    Ok(())
}
