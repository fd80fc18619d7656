//! The sweeper: reconciles the store against the hypervisor itself. At
//! start and every `terraform.sweep_interval`, it asks the module's
//! inventory which VMs exist and destroys each one whose session is settled
//! (FAILED, DESTROYED) or unknown: what a power cut or a lost Terraform
//! state would otherwise leave running forever. VMs of sessions in progress
//! or READY are left alone, and so are the VMs the module lists with
//! another deployment's id (another store's servers sweep those); a VM
//! listed with no deployment is judged by its name, as before. Before it
//! destroys the VM of a session Ansible may have configured, it runs the
//! teardown playbook (the computer account leaves the domain too). A VM
//! on a cluster node that is not online waits for the node (its destroy
//! could only fail); a LOST desktop's VM is destroyed once its node is
//! back, and the session is then DESTROYED.

use daas_api::v1::SessionState;

use crate::{
    domain::placement::NodeState, provision::Pipeline, provision::inventory::InventoryError,
    store::StoreError,
};

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// VMs the inventory listed.
    pub listed: usize,
    /// Those of other deployments, left alone.
    pub others: usize,
    /// VMs destroyed, by name.
    pub destroyed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the sweeper until the pipeline shuts down: a pass at once, then
/// one every `terraform.sweep_interval`.
pub async fn run(pipeline: Pipeline, interval: std::time::Duration) {
    if !pipeline.inventory().exists() {
        tracing::warn!(
            "the Terraform module has no `inventory` hook: VMs that a crash or power cut leaves behind cannot be found"
        );
        return;
    }
    let shutdown = pipeline.shutdown_token();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(err) = pipeline
            .expire_kept_disks(crate::domain::time::now_ms())
            .await
        {
            tracing::warn!(error = %err, "could not read the kept disks to expire them");
        }
        match sweep(&pipeline).await {
            Ok(swept) if !swept.destroyed.is_empty() => {
                tracing::warn!(listed = swept.listed, destroyed = ?swept.destroyed, "the sweeper destroyed VMs no session owned");
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "the sweeper could not finish a pass"),
        }
    }
}

/// A session whose VM nothing else will destroy: FAILED, DESTROYED or LOST.
fn is_over(state: SessionState) -> bool {
    matches!(
        state,
        SessionState::Failed | SessionState::Destroyed | SessionState::Lost
    )
}

/// One pass: list, then destroy every VM nothing else will; nothing when
/// another server runs the pass now.
pub async fn sweep(pipeline: &Pipeline) -> Result<Swept, SweepError> {
    // One server at a time: a VM is destroyed once.
    let Some(_pass) = pipeline.store().try_pass("sweeper").await? else {
        return Ok(Swept::default());
    };
    let inventory = pipeline.inventory();
    let cancel = pipeline.shutdown_token();
    let server_log = pipeline.log("", None);
    let listing = inventory.list(&server_log, &cancel).await?;
    let mut swept = Swept {
        listed: listing.ours.len() + listing.others.len(),
        others: listing.others.len(),
        ..Swept::default()
    };
    if !listing.others.is_empty() {
        let others: Vec<String> = listing
            .others
            .iter()
            .map(|vm| format!("{} ({})", vm.vm_name, vm.deployment))
            .collect();
        tracing::debug!(vms = ?others, "the sweeper leaves alone the VMs of other deployments");
    }
    let store = pipeline.store();
    let down: Vec<String> = store
        .nodes()
        .await?
        .into_iter()
        .filter(|n| n.listed.state != NodeState::Online)
        .map(|n| n.listed.node)
        .collect();
    for vm in listing.ours {
        let Some(record) = store.by_vm_name(&vm.vm_name).await? else {
            tracing::warn!(vm = %vm.vm_name, session = %vm.session_id, "destroying a VM of no known session");
            inventory.destroy(&vm.vm_name, &server_log, &cancel).await?;
            swept.destroyed.push(vm.vm_name);
            continue;
        };
        if !is_over(record.state) {
            continue;
        }
        // Again under the session's lock, in case a destroy is under way.
        let _guard = pipeline.lock(&record.id).await;
        let Some(record) = store.get(&record.id).await? else {
            continue;
        };
        if !is_over(record.state) {
            continue;
        }
        if let Some(node) = record.node.as_ref().filter(|n| down.contains(n)) {
            tracing::debug!(vm = %vm.vm_name, node = %node, "the sweeper waits for the VM's node to be online");
            continue;
        }
        tracing::warn!(vm = %vm.vm_name, session = %record.id, state = record.state.label(), "destroying a VM whose session is over");
        if crate::provision::was_configured(&record) {
            // Its computer account leaves the domain with it.
            pipeline
                .unconfigure_swept(&record, &server_log, &cancel)
                .await;
        }
        inventory.destroy(&vm.vm_name, &server_log, &cancel).await?;
        // Its Terraform state, if any, describes a VM that is gone: a later
        // `terraform destroy` there could only do harm (a slot's VM id is
        // reused by the next session).
        let session_dir = pipeline.session_dir(&record.id);
        if session_dir.exists()
            && let Err(err) = std::fs::remove_dir_all(&session_dir)
        {
            tracing::warn!(session = %record.id, error = %err, "could not remove a swept session's folder");
        }
        if record.state == SessionState::Lost {
            let node = record.node.clone().unwrap_or_default();
            let why = format!("node {node} is back: the lost desktop's VM was destroyed");
            match store
                .transition(
                    &record.id,
                    SessionState::Lost,
                    SessionState::Destroyed,
                    why,
                    None,
                )
                .await
            {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        store.release_slot(&record.id).await?;
        swept.destroyed.push(vm.vm_name);
    }
    Ok(swept)
}
