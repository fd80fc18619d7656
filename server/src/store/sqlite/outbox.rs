//! The webhook outbox on SQLite (see `crate::store::outbox`).

use daas_api::v1::SessionEvent;
use rusqlite::{Connection, params};

use super::{Context, Holder};
use crate::{
    domain::time::now_ms,
    store::{
        StoreError,
        outbox::{Delivery, Told},
    },
};

/// A delivery row per webhook in `webhooks`, for `event`, in the caller's
/// transaction.
pub(super) fn insert(
    conn: &Connection,
    webhooks: &[String],
    event: &SessionEvent,
) -> Result<(), StoreError> {
    for webhook in webhooks {
        conn.execute(
            "INSERT INTO webhook_outbox (id, webhook, session_id, seq, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                uuid::Uuid::new_v4().to_string(),
                webhook,
                event.session_id,
                event.sequence as i64,
                now_ms()
            ],
        )
        .context("writing a webhook delivery")?;
    }
    Ok(())
}

/// A delivery row per webhook of `told`, for its notice about no session,
/// in the caller's transaction.
pub(super) fn insert_told(conn: &Connection, told: &Told) -> Result<(), StoreError> {
    for webhook in &told.webhooks {
        conn.execute(
            "INSERT INTO webhook_outbox (id, webhook, session_id, seq, created_ms, notice) \
             VALUES (?1, ?2, '', 0, ?3, ?4)",
            params![
                uuid::Uuid::new_v4().to_string(),
                webhook,
                now_ms(),
                told.notice
            ],
        )
        .context("writing a webhook delivery")?;
    }
    Ok(())
}

pub(super) fn claim(
    conn: &mut Connection,
    holder: &Holder,
    limit: usize,
    hold_ms: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let now = now_ms();
    let tx = conn.transaction().context("starting a transaction")?;
    let due = {
        let mut query = tx
            .prepare(
                "SELECT id, webhook, session_id, seq, created_ms, notice FROM webhook_outbox \
                 WHERE claimed_until_ms IS NULL OR claimed_until_ms < ?1 \
                 ORDER BY created_ms LIMIT ?2",
            )
            .context("finding webhook deliveries")?;
        query
            .query_map(params![now, limit as i64], |row| {
                Ok(Delivery {
                    id: row.get(0)?,
                    webhook: row.get(1)?,
                    session_id: row.get(2)?,
                    sequence: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                    created_ms: row.get(4)?,
                    notice: row.get(5)?,
                })
            })
            .context("finding webhook deliveries")?
            .collect::<Result<Vec<_>, _>>()
            .context("finding webhook deliveries")?
    };
    for delivery in &due {
        tx.execute(
            "UPDATE webhook_outbox SET claimed_by = ?2, claimed_until_ms = ?3 WHERE id = ?1",
            params![delivery.id, &*holder.me, now + hold_ms],
        )
        .context("taking a webhook delivery")?;
    }
    tx.commit().context("taking webhook deliveries")?;
    Ok(due)
}

pub(super) fn hold(
    conn: &mut Connection,
    holder: &Holder,
    ids: Vec<String>,
    hold_ms: i64,
) -> Result<(), StoreError> {
    let until = now_ms() + hold_ms;
    let tx = conn.transaction().context("starting a transaction")?;
    for id in ids {
        tx.execute(
            "UPDATE webhook_outbox SET claimed_until_ms = ?3 WHERE id = ?1 AND claimed_by = ?2",
            params![id, &*holder.me, until],
        )
        .context("holding a webhook delivery")?;
    }
    tx.commit().context("holding webhook deliveries")
}

pub(super) fn finish(conn: &Connection, id: String) -> Result<(), StoreError> {
    conn.execute("DELETE FROM webhook_outbox WHERE id = ?1", [id])
        .context("forgetting a webhook delivery")?;
    Ok(())
}
