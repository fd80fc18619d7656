//! The cluster's nodes in the embedded store (see `crate::store::nodes`):
//! recording a report, reading them with their desktops, draining, the
//! placement inside a create's write transaction and the per-node clone
//! turns. Every write runs in an IMMEDIATE transaction: one at a time.

use daas_api::v1::SessionState;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::Context;
use crate::domain::placement::{Capacity, ListedNode, NodeState, Policy};
use crate::domain::time::now_ms;
use crate::store::{
    NewSession, StoreError,
    nodes::{
        Busy, CloneTurn, NodeRecord, Placed, Placing, Spot, choose, map_from_json, map_json,
        names_from_json, names_json, state_from_text,
    },
};

/// The nodes' columns, as [`listed_from_row`] reads them.
const NODE_COLUMNS: &str = "name, state, cpus, memory_mb, used_memory_mb, configured_memory_mb, \
     configured_cores, templates, vms, listed, drained, seen_ms, offline_since_ms, template_storage";

/// A node's row: as reported, then listed, drained, seen and offline since.
type NodeRow = (ListedNode, bool, bool, i64, Option<i64>);

fn listed_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRow> {
    let number = |i: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(i)?).unwrap_or(0))
    };
    let listed = ListedNode {
        node: row.get(0)?,
        state: state_from_text(&row.get::<_, String>(1)?),
        capacity: Capacity {
            cpus: u32::try_from(number(2)?).unwrap_or(u32::MAX),
            memory_mb: number(3)?,
            used_memory_mb: number(4)?,
            configured_memory_mb: number(5)?,
            configured_cores: u32::try_from(number(6)?).unwrap_or(u32::MAX),
        },
        templates: names_from_json(&row.get::<_, String>(7)?),
        vms: names_from_json(&row.get::<_, String>(8)?),
        template_storage: map_from_json(&row.get::<_, String>(13)?),
    };
    Ok((
        listed,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
    ))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// See `SessionStore::record_nodes`.
pub(super) fn record(
    conn: &mut Connection,
    listed: Option<Vec<ListedNode>>,
) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting a transaction")?;
    let now = now_ms();
    match listed {
        None => {
            tx.execute("DELETE FROM nodes", [])
                .context("forgetting the nodes")?;
        }
        Some(nodes) => {
            tx.execute(
                "UPDATE nodes SET listed = 0, state = 'offline', updated_ms = ?1, \
                 offline_since_ms = COALESCE(offline_since_ms, ?1)",
                [now],
            )
            .context("recording the nodes")?;
            for node in nodes {
                let c = node.capacity;
                tx.execute(
                    "INSERT INTO nodes (name, state, cpus, memory_mb, used_memory_mb, \
                     configured_memory_mb, configured_cores, templates, vms, listed, seen_ms, \
                     updated_ms, offline_since_ms, template_storage) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                     ?7, ?8, ?9, 1, ?10, ?10, CASE WHEN ?2 = 'offline' THEN ?10 END, ?11) \
                     ON CONFLICT (name) DO UPDATE SET state = excluded.state, \
                     cpus = excluded.cpus, memory_mb = excluded.memory_mb, \
                     used_memory_mb = excluded.used_memory_mb, \
                     configured_memory_mb = excluded.configured_memory_mb, \
                     configured_cores = excluded.configured_cores, \
                     templates = excluded.templates, vms = excluded.vms, listed = 1, \
                     template_storage = excluded.template_storage, \
                     seen_ms = excluded.seen_ms, updated_ms = excluded.updated_ms, \
                     offline_since_ms = CASE WHEN excluded.state = 'offline' \
                       THEN COALESCE(nodes.offline_since_ms, excluded.seen_ms) END",
                    params![
                        node.node,
                        node.state.as_str(),
                        c.cpus,
                        clamp(c.memory_mb),
                        clamp(c.used_memory_mb),
                        clamp(c.configured_memory_mb),
                        c.configured_cores,
                        names_json(&node.templates),
                        names_json(&node.vms),
                        now,
                        map_json(&node.template_storage)
                    ],
                )
                .context("recording a node")?;
            }
        }
    }
    tx.commit().context("committing the nodes")?;
    Ok(())
}

/// See `SessionStore::nodes`.
pub(super) fn list(conn: &Connection) -> Result<Vec<NodeRecord>, StoreError> {
    let mut stmt = conn
        .prepare(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"))
        .context("reading the nodes")?;
    let rows = stmt
        .query_map([], listed_from_row)
        .context("reading the nodes")?
        .collect::<Result<Vec<_>, _>>()
        .context("reading the nodes")?;
    let mut counts = conn
        .prepare(
            "SELECT \
               COALESCE(SUM(state NOT IN (?2, ?3, ?4) AND (pool IS NULL OR claimed_ms IS NOT NULL)), 0), \
               COALESCE(SUM(state NOT IN (?2, ?3, ?4) AND pool IS NOT NULL AND claimed_ms IS NULL), 0), \
               COALESCE(SUM(clone_started_ms IS NOT NULL), 0) \
             FROM sessions WHERE node = ?1",
        )
        .context("counting desktops by node")?;
    let mut nodes = Vec::with_capacity(rows.len());
    for (listed, present, drained, seen_ms, offline_since_ms) in rows {
        let (desktops, pool_desktops, clones): (u32, u32, u32) = counts
            .query_row(
                params![
                    listed.node,
                    SessionState::Failed as i32,
                    SessionState::Destroyed as i32,
                    SessionState::Lost as i32
                ],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .context("counting desktops by node")?;
        nodes.push(NodeRecord {
            listed,
            present,
            drained,
            seen_ms,
            offline_since_ms,
            desktops,
            pool_desktops,
            clones,
        });
    }
    Ok(nodes)
}

/// See `SessionStore::set_drained`.
pub(super) fn set_drained(
    conn: &Connection,
    name: String,
    drained: bool,
) -> Result<bool, StoreError> {
    let changed = conn
        .execute(
            "UPDATE nodes SET drained = ?2, updated_ms = ?3 WHERE name = ?1",
            params![name, drained, now_ms()],
        )
        .context("draining a node")?;
    Ok(changed == 1)
}

/// Where the create `new` goes, inside its write transaction: None when it
/// places nothing.
pub(super) fn place(conn: &Connection, new: &NewSession) -> Result<Option<Spot>, StoreError> {
    let Some(placing) = Placing::of(new) else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare(&format!("SELECT {NODE_COLUMNS} FROM nodes"))
        .context("reading the nodes")?;
    let nodes = stmt
        .query_map([], |row| {
            listed_from_row(row).map(|(listed, _, drained, ..)| (listed, drained))
        })
        .context("reading the nodes")?
        .collect::<Result<Vec<_>, _>>()
        .context("reading the nodes")?;
    let mut stmt = conn
        .prepare(
            "SELECT node, vm_name, memory_mb, cores FROM sessions \
             WHERE node IS NOT NULL AND slot_released = 0",
        )
        .context("reading placed sessions")?;
    let placed = stmt
        .query_map([], |row| {
            Ok(Placed {
                node: row.get(0)?,
                vm_name: row.get(1)?,
                memory_mb: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                cores: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            })
        })
        .context("reading placed sessions")?
        .collect::<Result<Vec<_>, _>>()
        .context("reading placed sessions")?;
    choose(nodes, &placed, &new.template, &placing).map(Some)
}

/// See `SessionStore::begin_clone`.
pub(super) fn begin_clone(
    conn: &mut Connection,
    id: String,
    policy: Policy,
) -> Result<CloneTurn, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("starting a transaction")?;
    let (node, storage): (Option<String>, Option<String>) = tx
        .query_row(
            "SELECT node, clone_storage FROM sessions WHERE id = ?1",
            [&id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .context("reading a session's node")?
        .ok_or_else(|| StoreError::Missing(id.clone()))?;
    let Some(node) = node else {
        return Ok(CloneTurn::Go);
    };
    let state: Option<String> = tx
        .query_row("SELECT state FROM nodes WHERE name = ?1", [&node], |row| {
            row.get(0)
        })
        .optional()
        .context("reading a node's state")?;
    match state.map(|s| state_from_text(&s)) {
        Some(NodeState::Online) | None => {}
        Some(down) => return Ok(CloneTurn::NodeDown(down)),
    }
    let count = |column: &str, key: &str| -> Result<u32, StoreError> {
        tx.query_row(
            &format!(
                "SELECT COUNT(*) FROM sessions \
                 WHERE {column} = ?1 AND clone_started_ms IS NOT NULL AND id <> ?2"
            ),
            params![key, id],
            |row| row.get(0),
        )
        .context("counting clones")
    };
    let clones = count("node", &node)?;
    if clones >= policy.max_clones_per_node {
        return Ok(CloneTurn::Wait(Busy::Node { clones }));
    }
    if let Some(storage) = storage {
        let clones = count("clone_storage", &storage)?;
        if clones >= policy.max_clones_per_storage {
            return Ok(CloneTurn::Wait(Busy::Storage { storage, clones }));
        }
    }
    tx.execute(
        "UPDATE sessions SET clone_started_ms = ?2 WHERE id = ?1",
        params![id, now_ms()],
    )
    .context("starting a clone")?;
    tx.commit().context("committing a clone's start")?;
    Ok(CloneTurn::Go)
}

/// See `SessionStore::end_clone`.
pub(super) fn end_clone(conn: &Connection, id: String) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET clone_started_ms = NULL WHERE id = ?1",
        [id],
    )
    .context("ending a clone")?;
    Ok(())
}
