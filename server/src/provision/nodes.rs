//! The node watcher: at start and every `[placement] refresh_interval`,
//! asks the module's `inventory nodes` for the cluster's nodes and records
//! them in the store, where creates place their desktops. A module that
//! does not report nodes (no hook, or the hook exits 2) places its VMs
//! itself: the store forgets its nodes and creates place nothing. A hook
//! that fails changes nothing: the last report stays (also at start, when
//! the store holds one).
//!
//! After each report: the READY desktops of a node offline for `[placement]
//! lost_after` are LOST (their users are told: an event, the webhooks); a
//! LOST desktop whose node is back without its VM (no node lists it) is
//! DESTROYED and its slot freed. A VM that is still there is the
//! sweeper's, once its node is online.

use std::{collections::HashSet, sync::atomic::Ordering};

use daas_api::v1::SessionState;

use crate::{
    domain::placement::NodeState,
    domain::time::{clock_time, now_ms},
    provision::Pipeline,
    provision::inventory::InventoryError,
    store::{StoreError, nodes::NodeRecord},
};

#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the watcher until the pipeline shuts down (the first pass is the
/// caller's, before the server serves).
pub async fn run(pipeline: Pipeline) {
    let interval = pipeline.inner.config.placement.refresh_interval;
    let shutdown = pipeline.shutdown_token();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(err) = refresh(&pipeline).await {
            tracing::warn!(error = %err, "could not read the cluster's nodes; placing with the last report");
        }
    }
}

/// One pass: the nodes the module reports, recorded; how many (None: the
/// module places its VMs itself).
pub async fn refresh(pipeline: &Pipeline) -> Result<Option<usize>, NodesError> {
    let log = pipeline.log("", None);
    let listed = pipeline
        .inventory()
        .nodes(&log, &pipeline.shutdown_token())
        .await?;
    let count = listed.as_ref().map(Vec::len);
    pipeline.inner.store.record_nodes(listed).await?;
    if count.is_some() {
        let nodes = pipeline.inner.store.nodes().await?;
        settle_lost(pipeline, &nodes).await?;
    }
    let places = count.is_some();
    if pipeline.inner.places.swap(places, Ordering::Relaxed) != places {
        match count {
            Some(n) => tracing::info!(
                nodes = n,
                "the module reports its nodes: the server places each desktop"
            ),
            None => tracing::info!("the module reports no nodes: it places its VMs itself"),
        }
    }
    Ok(count)
}

/// After a first pass that failed (the cluster could not be read at
/// start): nodes in the store come from a module that reports them (this
/// server's last report before a restart, or another server's), so creates
/// place with that report until a pass succeeds; none: they place nothing.
/// How many nodes the store holds.
pub async fn place_with_last_report(pipeline: &Pipeline) -> Result<usize, StoreError> {
    let known = pipeline.inner.store.nodes().await?.len();
    if known > 0 {
        pipeline.inner.places.store(true, Ordering::Relaxed);
    }
    Ok(known)
}

/// LOST for the READY desktops of nodes offline too long; DESTROYED for
/// the LOST ones whose node is back without their VM.
async fn settle_lost(pipeline: &Pipeline, nodes: &[NodeRecord]) -> Result<(), StoreError> {
    let store = &pipeline.inner.store;
    let lost_after =
        i64::try_from(pipeline.inner.config.placement.lost_after.as_millis()).unwrap_or(i64::MAX);
    let now = now_ms();
    let listed: HashSet<&str> = nodes
        .iter()
        .filter(|n| n.listed.state != NodeState::Offline)
        .flat_map(|n| n.listed.vms.iter().map(String::as_str))
        .collect();
    for node in nodes {
        let name = &node.listed.node;
        let (from, to, why) = match (node.listed.state, node.offline_since_ms) {
            (NodeState::Offline, Some(since)) if now.saturating_sub(since) >= lost_after => (
                SessionState::Ready,
                SessionState::Lost,
                format!(
                    "node {name} is offline since {}: the desktop cannot be reached; its VM is destroyed when the node is back",
                    clock_time(since)
                ),
            ),
            (NodeState::Online, _) => (
                SessionState::Lost,
                SessionState::Destroyed,
                format!("node {name} is back without the desktop's VM"),
            ),
            _ => continue,
        };
        for record in store.placed_on(name).await? {
            if record.state != from
                || (to == SessionState::Destroyed && listed.contains(record.vm_name.as_str()))
            {
                continue;
            }
            let failure = (to == SessionState::Lost).then(|| (SessionState::Ready, why.clone()));
            match store
                .transition(&record.id, from, to, why.clone(), failure)
                .await
            {
                Ok(_) => {
                    tracing::warn!(session = %record.id, user = %record.username, node = %name, state = to.label(), "{why}");
                    if to == SessionState::Destroyed {
                        store.release_slot(&record.id).await?;
                    }
                }
                // Another server (or a destroy) moved it first.
                Err(StoreError::Conflict { .. }) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}
