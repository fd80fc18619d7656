//! Gateway tickets on PostgreSQL (see `crate::store::tickets`): issued
//! under an advisory lock, so the limits hold across servers.

use tokio_postgres::{GenericClient, Transaction};

use super::{Context, locks};
use crate::{
    domain::time::now_ms,
    store::{
        StoreError,
        tickets::{Issued, TicketLimits, TicketRecord},
    },
};

pub(super) async fn issue(
    tx: &Transaction<'_>,
    ticket: TicketRecord,
    limits: TicketLimits,
) -> Result<Issued, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::TICKETS])
        .await
        .context("waiting to issue a ticket")?;
    tx.execute(
        "DELETE FROM web_tickets WHERE expires_ms <= $1",
        &[&now_ms()],
    )
    .await
    .context("forgetting expired tickets")?;
    let row = tx
        .query_one(
            "SELECT COUNT(*) FILTER (WHERE username = $1), COUNT(*) FROM web_tickets",
            &[&ticket.user],
        )
        .await
        .context("counting tickets")?;
    let mine: i64 = row.try_get(0).context("counting tickets")?;
    let all: i64 = row.try_get(1).context("counting tickets")?;
    let reached = |n: i64, limit: usize| usize::try_from(n).unwrap_or(usize::MAX) >= limit;
    if reached(mine, limits.per_user) {
        return Ok(Issued::UserFull);
    }
    if reached(all, limits.total) {
        return Ok(Issued::Full);
    }
    tx.execute(
        "INSERT INTO web_tickets (hash, session_id, username, expires_ms) VALUES ($1, $2, $3, $4)",
        &[
            &ticket.hash,
            &ticket.session_id,
            &ticket.user,
            &ticket.expires_ms,
        ],
    )
    .await
    .context("keeping a ticket")?;
    Ok(Issued::Issued)
}

pub(super) async fn redeem(
    db: &impl GenericClient,
    hash: &str,
) -> Result<Option<TicketRecord>, StoreError> {
    let row = db
        .query_opt(
            "DELETE FROM web_tickets WHERE hash = $1 \
             RETURNING hash, session_id, username, expires_ms",
            &[&hash],
        )
        .await
        .context("redeeming a ticket")?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(TicketRecord {
        hash: row.try_get(0).context("reading a ticket")?,
        session_id: row.try_get(1).context("reading a ticket")?,
        user: row.try_get(2).context("reading a ticket")?,
        expires_ms: row.try_get(3).context("reading a ticket")?,
    }))
}
