//! Gateway tickets on SQLite (see `crate::store::tickets`).

use rusqlite::{Connection, OptionalExtension, params};

use super::Context;
use crate::{
    domain::time::now_ms,
    store::{
        StoreError,
        tickets::{Issued, TicketLimits, TicketRecord},
    },
};

pub(super) fn issue(
    conn: &mut Connection,
    ticket: TicketRecord,
    limits: TicketLimits,
) -> Result<Issued, StoreError> {
    let tx = conn.transaction().context("starting a transaction")?;
    tx.execute("DELETE FROM web_tickets WHERE expires_ms <= ?1", [now_ms()])
        .context("forgetting expired tickets")?;
    let count = |sql: &str, user: Option<&str>| -> Result<usize, StoreError> {
        let n: i64 = match user {
            Some(user) => tx.query_row(sql, [user], |row| row.get(0)),
            None => tx.query_row(sql, [], |row| row.get(0)),
        }
        .context("counting tickets")?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    };
    let mine = count(
        "SELECT COUNT(*) FROM web_tickets WHERE username = ?1",
        Some(&ticket.user),
    )?;
    if mine >= limits.per_user {
        return Ok(Issued::UserFull);
    }
    if count("SELECT COUNT(*) FROM web_tickets", None)? >= limits.total {
        return Ok(Issued::Full);
    }
    tx.execute(
        "INSERT INTO web_tickets (hash, session_id, username, expires_ms) VALUES (?1, ?2, ?3, ?4)",
        params![
            ticket.hash,
            ticket.session_id,
            ticket.user,
            ticket.expires_ms
        ],
    )
    .context("keeping a ticket")?;
    tx.commit().context("committing a ticket")?;
    Ok(Issued::Issued)
}

pub(super) fn redeem(conn: &Connection, hash: String) -> Result<Option<TicketRecord>, StoreError> {
    conn.query_row(
        "DELETE FROM web_tickets WHERE hash = ?1 RETURNING hash, session_id, username, expires_ms",
        [hash],
        |row| {
            Ok(TicketRecord {
                hash: row.get(0)?,
                session_id: row.get(1)?,
                user: row.get(2)?,
                expires_ms: row.get(3)?,
            })
        },
    )
    .optional()
    .context("redeeming a ticket")
}
