//! Users' create rates on SQLite (see `crate::store::create_rate`).

use rusqlite::{Connection, OptionalExtension, params};

use super::Context;
use crate::{
    domain::time::now_ms,
    store::{
        StoreError,
        create_rate::{Bucket, Rate},
    },
};

pub(super) fn take(
    conn: &mut Connection,
    user: String,
    rate: Rate,
) -> Result<Option<u64>, StoreError> {
    let now = now_ms();
    let tx = conn.transaction().context("starting a transaction")?;
    let stored = tx
        .query_row(
            "SELECT tokens, updated_ms FROM create_rates WHERE username = ?1",
            [&user],
            |row| {
                Ok(Bucket {
                    tokens: row.get(0)?,
                    updated_ms: row.get(1)?,
                })
            },
        )
        .optional()
        .context("reading a create rate")?;
    let (bucket, wait) = rate.take(stored.unwrap_or_else(|| rate.full(now)), now);
    tx.execute(
        "INSERT INTO create_rates (username, tokens, updated_ms) VALUES (?1, ?2, ?3) \
         ON CONFLICT (username) DO UPDATE SET tokens = ?2, updated_ms = ?3",
        params![user, bucket.tokens, bucket.updated_ms],
    )
    .context("writing a create rate")?;
    tx.commit().context("committing a create rate")?;
    Ok(wait)
}
