//! The cluster's nodes in PostgreSQL (see `crate::store::nodes`):
//! recording a report, reading them with their desktops, draining, the
//! placement inside a create's transaction (under the admission lock, so
//! placements of all servers are serial) and the per-node clone turns
//! (under their own lock).

use tokio_postgres::{GenericClient, Row, Transaction};

use super::{Context, locks};
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

fn listed_from_row(row: &Row) -> Result<NodeRow, tokio_postgres::Error> {
    let number = |i: usize| -> Result<u64, tokio_postgres::Error> {
        Ok(u64::try_from(row.try_get::<_, i64>(i)?).unwrap_or(0))
    };
    let listed = ListedNode {
        node: row.try_get(0)?,
        state: state_from_text(row.try_get(1)?),
        capacity: Capacity {
            cpus: u32::try_from(number(2)?).unwrap_or(u32::MAX),
            memory_mb: number(3)?,
            used_memory_mb: number(4)?,
            configured_memory_mb: number(5)?,
            configured_cores: u32::try_from(number(6)?).unwrap_or(u32::MAX),
        },
        templates: names_from_json(row.try_get(7)?),
        vms: names_from_json(row.try_get(8)?),
        template_storage: map_from_json(row.try_get(13)?),
    };
    Ok((
        listed,
        row.try_get(9)?,
        row.try_get(10)?,
        row.try_get(11)?,
        row.try_get(12)?,
    ))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// See `SessionStore::record_nodes`.
pub(super) async fn record(
    tx: &Transaction<'_>,
    listed: &Option<Vec<ListedNode>>,
) -> Result<(), StoreError> {
    let now = now_ms();
    let Some(nodes) = listed else {
        tx.execute("DELETE FROM nodes", &[])
            .await
            .context("forgetting the nodes")?;
        return Ok(());
    };
    tx.execute(
        "UPDATE nodes SET listed = FALSE, state = 'offline', updated_ms = $1, \
         offline_since_ms = COALESCE(offline_since_ms, $1)",
        &[&now],
    )
    .await
    .context("recording the nodes")?;
    for node in nodes {
        let c = node.capacity;
        tx.execute(
            "INSERT INTO nodes (name, state, cpus, memory_mb, used_memory_mb, \
             configured_memory_mb, configured_cores, templates, vms, listed, seen_ms, \
             updated_ms, offline_since_ms, template_storage) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, TRUE, $10, $10, CASE WHEN $2 = 'offline' THEN $10::BIGINT END, $11) \
             ON CONFLICT (name) DO UPDATE SET state = excluded.state, \
             cpus = excluded.cpus, memory_mb = excluded.memory_mb, \
             used_memory_mb = excluded.used_memory_mb, \
             configured_memory_mb = excluded.configured_memory_mb, \
             configured_cores = excluded.configured_cores, \
             templates = excluded.templates, vms = excluded.vms, listed = TRUE, \
             template_storage = excluded.template_storage, \
             seen_ms = excluded.seen_ms, updated_ms = excluded.updated_ms, \
             offline_since_ms = CASE WHEN excluded.state = 'offline' \
               THEN COALESCE(nodes.offline_since_ms, excluded.seen_ms) END",
            &[
                &node.node,
                &node.state.as_str(),
                &i64::from(c.cpus),
                &clamp(c.memory_mb),
                &clamp(c.used_memory_mb),
                &clamp(c.configured_memory_mb),
                &i64::from(c.configured_cores),
                &names_json(&node.templates),
                &names_json(&node.vms),
                &now,
                &map_json(&node.template_storage),
            ],
        )
        .await
        .context("recording a node")?;
    }
    Ok(())
}

/// See `SessionStore::nodes`.
pub(super) async fn list(db: &impl GenericClient) -> Result<Vec<NodeRecord>, StoreError> {
    let rows = db
        .query(
            &format!(
                "SELECT {NODE_COLUMNS}, \
                   (SELECT COUNT(*) FROM sessions s WHERE s.node = n.name \
                      AND s.state <> ALL($1) AND (s.pool IS NULL OR s.claimed_ms IS NOT NULL)), \
                   (SELECT COUNT(*) FROM sessions s WHERE s.node = n.name \
                      AND s.state <> ALL($1) AND s.pool IS NOT NULL AND s.claimed_ms IS NULL), \
                   (SELECT COUNT(*) FROM sessions s WHERE s.node = n.name \
                      AND s.clone_started_ms IS NOT NULL) \
                 FROM nodes n ORDER BY name"
            ),
            &[&crate::store::admission::NOT_LIVE
                .iter()
                .map(|s| *s as i32)
                .collect::<Vec<i32>>()],
        )
        .await
        .context("reading the nodes")?;
    let count = |row: &Row, i: usize| -> Result<u32, tokio_postgres::Error> {
        Ok(u32::try_from(row.try_get::<_, i64>(i)?).unwrap_or(u32::MAX))
    };
    rows.iter()
        .map(|row| {
            let (listed, present, drained, seen_ms, offline_since_ms) = listed_from_row(row)?;
            Ok(NodeRecord {
                listed,
                present,
                drained,
                seen_ms,
                offline_since_ms,
                desktops: count(row, 14)?,
                pool_desktops: count(row, 15)?,
                clones: count(row, 16)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .context("reading the nodes")
}

/// See `SessionStore::set_drained`.
pub(super) async fn set_drained(
    db: &impl GenericClient,
    name: &str,
    drained: bool,
) -> Result<bool, StoreError> {
    let changed = db
        .execute(
            "UPDATE nodes SET drained = $2, updated_ms = $3 WHERE name = $1",
            &[&name, &drained, &now_ms()],
        )
        .await
        .context("draining a node")?;
    Ok(changed == 1)
}

/// Where the create `new` goes, inside its transaction (which holds the
/// admission lock): None when it places nothing.
pub(super) async fn place(
    tx: &Transaction<'_>,
    new: &NewSession,
) -> Result<Option<Spot>, StoreError> {
    let Some(placing) = Placing::of(new) else {
        return Ok(None);
    };
    let nodes = tx
        .query(&format!("SELECT {NODE_COLUMNS} FROM nodes"), &[])
        .await
        .context("reading the nodes")?
        .iter()
        .map(|row| listed_from_row(row).map(|(listed, _, drained, ..)| (listed, drained)))
        .collect::<Result<Vec<_>, _>>()
        .context("reading the nodes")?;
    let placed = tx
        .query(
            "SELECT node, vm_name, memory_mb, cores FROM sessions \
             WHERE node IS NOT NULL AND NOT slot_released",
            &[],
        )
        .await
        .context("reading placed sessions")?
        .iter()
        .map(|row| {
            Ok(Placed {
                node: row.try_get(0)?,
                vm_name: row.try_get(1)?,
                memory_mb: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
                cores: u32::try_from(row.try_get::<_, i64>(3)?).unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .context("reading placed sessions")?;
    choose(nodes, &placed, &new.template, &placing).map(Some)
}

/// See `SessionStore::begin_clone`.
pub(super) async fn begin_clone(
    tx: &Transaction<'_>,
    id: &str,
    policy: Policy,
) -> Result<CloneTurn, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&locks::CLONES])
        .await
        .context("waiting for the clone lock")?;
    let row = tx
        .query_opt(
            "SELECT node, clone_storage FROM sessions WHERE id = $1",
            &[&id],
        )
        .await
        .context("reading a session's node")?
        .ok_or_else(|| StoreError::Missing(id.to_string()))?;
    let node: Option<String> = row.try_get(0).context("reading a session's node")?;
    let storage: Option<String> = row.try_get(1).context("reading a session's node")?;
    let Some(node) = node else {
        return Ok(CloneTurn::Go);
    };
    let state = tx
        .query_opt("SELECT state FROM nodes WHERE name = $1", &[&node])
        .await
        .context("reading a node's state")?;
    if let Some(row) = state {
        let state: String = row.try_get(0).context("reading a node's state")?;
        match state_from_text(&state) {
            NodeState::Online => {}
            down => return Ok(CloneTurn::NodeDown(down)),
        }
    }
    let count = |column: &'static str, key: String| async move {
        tx.query_one(
            &format!(
                "SELECT COUNT(*) FROM sessions \
                 WHERE {column} = $1 AND clone_started_ms IS NOT NULL AND id <> $2"
            ),
            &[&key, &id],
        )
        .await
        .and_then(|row| row.try_get::<_, i64>(0))
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .context("counting clones")
    };
    let clones = count("node", node).await?;
    if clones >= policy.max_clones_per_node {
        return Ok(CloneTurn::Wait(Busy::Node { clones }));
    }
    if let Some(storage) = storage {
        let clones = count("clone_storage", storage.clone()).await?;
        if clones >= policy.max_clones_per_storage {
            return Ok(CloneTurn::Wait(Busy::Storage { storage, clones }));
        }
    }
    tx.execute(
        "UPDATE sessions SET clone_started_ms = $2 WHERE id = $1",
        &[&id, &now_ms()],
    )
    .await
    .context("starting a clone")?;
    Ok(CloneTurn::Go)
}

/// See `SessionStore::end_clone`.
pub(super) async fn end_clone(db: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE sessions SET clone_started_ms = NULL WHERE id = $1",
        &[&id],
    )
    .await
    .context("ending a clone")?;
    Ok(())
}
