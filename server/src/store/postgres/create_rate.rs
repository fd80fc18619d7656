//! Users' create rates on PostgreSQL (see `crate::store::create_rate`):
//! the user's row is locked while its bucket is read and written, so
//! servers taking creates at once never take the same token.

use tokio_postgres::Transaction;

use super::Context;
use crate::{
    domain::time::now_ms,
    store::{
        StoreError,
        create_rate::{Bucket, Rate},
    },
};

pub(super) async fn take(
    tx: &Transaction<'_>,
    user: &str,
    rate: Rate,
) -> Result<Option<u64>, StoreError> {
    let now = now_ms();
    let full = rate.full(now);
    tx.execute(
        "INSERT INTO create_rates (username, tokens, updated_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (username) DO NOTHING",
        &[&user, &full.tokens, &full.updated_ms],
    )
    .await
    .context("making a create rate")?;
    let row = tx
        .query_one(
            "SELECT tokens, updated_ms FROM create_rates WHERE username = $1 FOR UPDATE",
            &[&user],
        )
        .await
        .context("reading a create rate")?;
    let stored = Bucket {
        tokens: row.try_get(0).context("reading a create rate")?,
        updated_ms: row.try_get(1).context("reading a create rate")?,
    };
    let (bucket, wait) = rate.take(stored, now);
    tx.execute(
        "UPDATE create_rates SET tokens = $2, updated_ms = $3 WHERE username = $1",
        &[&user, &bucket.tokens, &bucket.updated_ms],
    )
    .await
    .context("writing a create rate")?;
    Ok(wait)
}
