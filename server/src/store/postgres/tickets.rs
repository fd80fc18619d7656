//! Gateway tickets on PostgreSQL (see `crate::store::tickets`): issued
//! under an advisory lock, so the limits hold across servers.

use tokio_postgres::{GenericClient, Transaction};

use super::{
    Context,
    capped::{Capped, Room},
    locks,
};
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
    let now = now_ms();
    let capped = Capped {
        lock: locks::TICKETS,
        table: "web_tickets",
        contexts: [
            "waiting to issue a ticket",
            "forgetting expired tickets",
            "counting tickets",
        ],
        ended: "expires_ms <= $1",
        ended_params: &[&now],
        per_user: limits.per_user,
        total: limits.total,
    };
    match capped.room(tx, &ticket.user).await? {
        Room::Free => {}
        Room::UserFull => return Ok(Issued::UserFull),
        Room::Full => return Ok(Issued::Full),
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
