//! Rows capped per user and in all (sign-ins, gateway tickets): the ended
//! ones deleted, the rest counted and the new one inserted under one
//! advisory lock, so the caps hold across servers.

use tokio_postgres::{Transaction, types::ToSql};

use super::Context;
use crate::store::StoreError;

/// A table whose rows are capped.
pub(super) struct Capped<'a> {
    /// The advisory lock the count and the insert hold.
    pub lock: i64,
    pub table: &'static str,
    /// What each step was doing, for errors: taking the lock, deleting
    /// the ended rows, counting.
    pub contexts: [&'static str; 3],
    /// The condition of the rows that have ended, and its parameters.
    pub ended: &'static str,
    pub ended_params: &'a [&'a (dyn ToSql + Sync)],
    pub per_user: usize,
    pub total: usize,
}

/// Whether one more row fits.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Room {
    Free,
    UserFull,
    Full,
}

impl Capped<'_> {
    /// Takes the lock (held until `tx` ends), deletes the ended rows and
    /// tells whether one more of `user`'s fits.
    pub(super) async fn room(&self, tx: &Transaction<'_>, user: &str) -> Result<Room, StoreError> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock])
            .await
            .context(self.contexts[0])?;
        let purge = format!("DELETE FROM {} WHERE {}", self.table, self.ended);
        tx.execute(&purge, self.ended_params)
            .await
            .context(self.contexts[1])?;
        let count = format!(
            "SELECT COUNT(*) FILTER (WHERE username = $1), COUNT(*) FROM {}",
            self.table
        );
        let row = tx
            .query_one(&count, &[&user])
            .await
            .context(self.contexts[2])?;
        let reached = |i: usize, limit: usize| -> Result<bool, StoreError> {
            let n: i64 = row.try_get(i).context(self.contexts[2])?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX) >= limit)
        };
        Ok(if reached(0, self.per_user)? {
            Room::UserFull
        } else if reached(1, self.total)? {
            Room::Full
        } else {
            Room::Free
        })
    }
}
