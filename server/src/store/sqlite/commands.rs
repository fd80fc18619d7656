//! Agent commands on SQLite (see `crate::store::commands`).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::Context;
use crate::{
    domain::time::now_ms,
    store::{
        StoreError,
        commands::{CommandState, DropIf, FORGET_AFTER_MS, TakenCommand},
    },
};

pub(super) fn push(
    conn: &mut Connection,
    session_id: &str,
    body: &[u8],
) -> Result<i64, StoreError> {
    let now = now_ms();
    let tx = conn.transaction().context("starting a transaction")?;
    tx.execute(
        "DELETE FROM agent_commands WHERE created_ms < ?1",
        [now - FORGET_AFTER_MS],
    )
    .context("forgetting old agent commands")?;
    tx.execute(
        "INSERT INTO agent_commands (session_id, body, state, created_ms) \
         VALUES (?1, ?2, 'waiting', ?3)",
        params![session_id, body, now],
    )
    .context("keeping an agent command")?;
    let id = tx.last_insert_rowid();
    tx.commit().context("committing an agent command")?;
    Ok(id)
}

pub(super) fn take(
    conn: &mut Connection,
    session_id: &str,
) -> Result<Vec<TakenCommand>, StoreError> {
    // Most looks find nothing: no write transaction for them.
    let waiting: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM agent_commands WHERE session_id = ?1 AND state = 'waiting')",
            [session_id],
            |row| row.get(0),
        )
        .context("looking for agent commands")?;
    if !waiting {
        return Ok(Vec::new());
    }
    // Read, then cleared (RETURNING would give the cleared body), in one
    // write transaction: two servers never take the same command.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting a transaction")?;
    let taken = {
        let mut stmt = tx
            .prepare(
                "SELECT id, body FROM agent_commands \
                 WHERE session_id = ?1 AND state = 'waiting' ORDER BY id",
            )
            .context("taking agent commands")?;
        stmt.query_map([session_id], |row| {
            Ok(TakenCommand {
                id: row.get(0)?,
                body: row.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(),
            })
        })
        .context("taking agent commands")?
        .collect::<Result<Vec<_>, _>>()
        .context("reading agent commands")?
    };
    tx.execute(
        "UPDATE agent_commands SET state = 'sent', body = NULL \
         WHERE session_id = ?1 AND state = 'waiting'",
        [session_id],
    )
    .context("taking agent commands")?;
    tx.commit().context("committing taken agent commands")?;
    Ok(taken)
}

pub(super) fn finish(
    conn: &Connection,
    session_id: &str,
    id: i64,
    outcome: i32,
    message: &str,
) -> Result<bool, StoreError> {
    let changed = conn
        .execute(
            "UPDATE agent_commands SET state = 'done', outcome = ?3, message = ?4 \
             WHERE session_id = ?1 AND id = ?2 AND state = 'sent'",
            params![session_id, id, outcome, message],
        )
        .context("recording an agent command's outcome")?;
    Ok(changed == 1)
}

pub(super) fn state(
    conn: &Connection,
    session_id: &str,
    id: i64,
) -> Result<Option<CommandState>, StoreError> {
    conn.query_row(
        "SELECT state, outcome, message FROM agent_commands WHERE session_id = ?1 AND id = ?2",
        params![session_id, id],
        |row| {
            let state: String = row.get(0)?;
            Ok(CommandState::from_row(&state, row.get(1)?, row.get(2)?))
        },
    )
    .optional()
    .context("reading an agent command")
}

pub(super) fn drop(
    conn: &Connection,
    session_id: &str,
    id: i64,
    when: DropIf,
) -> Result<bool, StoreError> {
    let sql = match when {
        DropIf::Waiting => {
            "DELETE FROM agent_commands WHERE session_id = ?1 AND id = ?2 AND state = 'waiting'"
        }
        DropIf::Any => "DELETE FROM agent_commands WHERE session_id = ?1 AND id = ?2",
    };
    let changed = conn
        .execute(sql, params![session_id, id])
        .context("dropping an agent command")?;
    Ok(changed == 1)
}
