//! Agent commands on PostgreSQL (see `crate::store::commands`). Taking is
//! one UPDATE, so two servers never send the same command.

use tokio_postgres::{GenericClient, Transaction};

use super::Context;
use crate::{
    domain::time::now_ms,
    store::{
        StoreError,
        commands::{CommandState, DropIf, FORGET_AFTER_MS, TakenCommand},
    },
};

pub(super) async fn push(
    tx: &Transaction<'_>,
    session_id: &str,
    body: &[u8],
) -> Result<i64, StoreError> {
    let now = now_ms();
    tx.execute(
        "DELETE FROM agent_commands WHERE created_ms < $1",
        &[&(now - FORGET_AFTER_MS)],
    )
    .await
    .context("forgetting old agent commands")?;
    let row = tx
        .query_one(
            "INSERT INTO agent_commands (session_id, body, state, created_ms) \
             VALUES ($1, $2, 'waiting', $3) RETURNING id",
            &[&session_id, &body, &now],
        )
        .await
        .context("keeping an agent command")?;
    row.try_get(0).context("reading an agent command's id")
}

pub(super) async fn take(
    db: &impl GenericClient,
    session_id: &str,
) -> Result<Vec<TakenCommand>, StoreError> {
    // The body is read before it is cleared: RETURNING gives the new row.
    let rows = db
        .query(
            "UPDATE agent_commands AS c SET state = 'sent', body = NULL \
             FROM (SELECT id, body FROM agent_commands \
                   WHERE session_id = $1 AND state = 'waiting' FOR UPDATE) AS old \
             WHERE c.id = old.id RETURNING c.id, old.body",
            &[&session_id],
        )
        .await
        .context("taking agent commands")?;
    let mut taken = rows
        .iter()
        .map(|row| {
            Ok(TakenCommand {
                id: row.try_get(0).context("reading an agent command")?,
                body: row
                    .try_get::<_, Option<Vec<u8>>>(1)
                    .context("reading an agent command")?
                    .unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    taken.sort_by_key(|c| c.id);
    Ok(taken)
}

pub(super) async fn finish(
    db: &impl GenericClient,
    session_id: &str,
    id: i64,
    outcome: i32,
    message: &str,
) -> Result<bool, StoreError> {
    let changed = db
        .execute(
            "UPDATE agent_commands SET state = 'done', outcome = $3, message = $4 \
             WHERE session_id = $1 AND id = $2 AND state = 'sent'",
            &[&session_id, &id, &outcome, &message],
        )
        .await
        .context("recording an agent command's outcome")?;
    Ok(changed == 1)
}

pub(super) async fn state(
    db: &impl GenericClient,
    session_id: &str,
    id: i64,
) -> Result<Option<CommandState>, StoreError> {
    let row = db
        .query_opt(
            "SELECT state, outcome, message FROM agent_commands WHERE session_id = $1 AND id = $2",
            &[&session_id, &id],
        )
        .await
        .context("reading an agent command")?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get(0).context("reading an agent command")?;
    Ok(Some(CommandState::from_row(
        &state,
        row.try_get(1).context("reading an agent command")?,
        row.try_get(2).context("reading an agent command")?,
    )))
}

pub(super) async fn drop(
    db: &impl GenericClient,
    session_id: &str,
    id: i64,
    when: DropIf,
) -> Result<bool, StoreError> {
    let sql = match when {
        DropIf::Waiting => {
            "DELETE FROM agent_commands WHERE session_id = $1 AND id = $2 AND state = 'waiting'"
        }
        DropIf::Any => "DELETE FROM agent_commands WHERE session_id = $1 AND id = $2",
    };
    let changed = db
        .execute(sql, &[&session_id, &id])
        .await
        .context("dropping an agent command")?;
    Ok(changed == 1)
}
