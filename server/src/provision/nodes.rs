//! The node watcher: at start and every `[placement] refresh_interval`,
//! asks the module's `inventory nodes` for the cluster's nodes and records
//! them in the store, where creates place their desktops. A module that
//! does not report nodes (no hook, or the hook exits 2) places its VMs
//! itself: the store forgets its nodes and creates place nothing. A hook
//! that fails changes nothing: the last report stays.

use std::sync::atomic::Ordering;

use crate::{provision::Pipeline, provision::inventory::InventoryError, store::StoreError};

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
