//! Desktops that keep their disk (a `persistent` template): the disk is
//! kept (`inventory snapshot`) before the VM is destroyed, staged
//! (`inventory restore`) before the next create's apply, and forgotten
//! once that desktop is READY. A kept disk is named by the session whose
//! disk it was, so keeping it again after a crash is the same disk; it is
//! recorded before the VM is destroyed and forgotten only after the
//! desktop restored from it is READY: a failure anywhere leaves it kept.

use daas_api::v1::{OutputStream, Tool};
use tokio_util::sync::CancellationToken;

use super::{Pipeline, TeardownError, tool::SessionLog};
use crate::{
    domain::time::now_ms,
    store::{SessionRecord, snapshots::SnapshotRecord},
};

/// How many kept disks a user has of one template: the newest.
const KEEP_PER_TEMPLATE: usize = 1;

impl Pipeline {
    /// Whether destroying `record`'s VM keeps its disk first: a user's
    /// desktop of a persistent template that was READY.
    pub(super) fn keeps_disk(&self, record: &SessionRecord) -> bool {
        record.ready_ms.is_some()
            && !record.username.is_empty()
            && !record.is_unclaimed()
            && self
                .inner
                .config
                .catalog
                .get(&record.template)
                .is_some_and(|t| t.persistent)
    }

    /// Keeps `record`'s disk and records it; then forgets the user's older
    /// kept disks of the template. A failure to keep it fails the destroy
    /// (the VM stays, a destroy again retries).
    pub(super) async fn keep_disk(
        &self,
        record: &SessionRecord,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), TeardownError> {
        let line = format!(
            "keeping the disk of {} for {}'s next desktop",
            record.vm_name, record.username
        );
        log.line(Tool::Terraform, OutputStream::Stdout, &line).await;
        let size_gb = self
            .inventory()
            .snapshot(&record.vm_name, &record.id, log, cancel)
            .await?;
        let store = &self.inner.store;
        store
            .keep_snapshot(SnapshotRecord {
                id: record.id.clone(),
                username: record.username.clone(),
                template: record.template.clone(),
                size: record
                    .size
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                org: record.org.clone(),
                vm_name: record.vm_name.clone(),
                created_ms: now_ms(),
                size_gb,
                restoring: None,
            })
            .await?;
        let older: Vec<_> = store
            .snapshots(Some(record.username.clone()))
            .await?
            .into_iter()
            .filter(|s| s.template == record.template && s.restoring.is_none())
            .skip(KEEP_PER_TEMPLATE)
            .collect();
        for old in older {
            self.forget_disk(&old.id, log, cancel).await;
        }
        Ok(())
    }

    /// Stages the kept disk `record` is restored from, before its apply.
    pub(super) async fn restore_disk(
        &self,
        record: &SessionRecord,
        kept: &str,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), super::inventory::InventoryError> {
        let line = format!(
            "restoring the disk kept from session {kept} for {}",
            record.vm_name
        );
        log.line(Tool::Terraform, OutputStream::Stdout, &line).await;
        self.inventory()
            .restore(kept, &record.vm_name, log, cancel)
            .await
    }

    /// At start: refuses a persistent template when the module keeps no
    /// disks (its hook has no `snapshots`), naming the template; with none,
    /// asks nothing. A hook that cannot answer now is only logged.
    pub async fn check_kept_disks(&self) -> Result<(), String> {
        let catalog = &self.inner.config.catalog;
        let Some(template) = catalog.templates.iter().find(|t| t.persistent) else {
            return Ok(());
        };
        let log = self.log("", None);
        match self
            .inventory()
            .keeps_disks(&log, &self.shutdown_token())
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "`templates.{}.persistent`: the Terraform module cannot keep disks (its `inventory` hook has no `snapshot`, see terraform/CONTRACT.md)",
                template.name
            )),
            // Unreachable now (a hypervisor down): the destroys will say.
            Err(err) => {
                tracing::warn!(template = %template.name, error = %err, "cannot ask the module whether it keeps disks");
                Ok(())
            }
        }
    }

    /// Deletes kept disk `id` at a user's request (the server's log, not a
    /// session's): the module's, then the record.
    pub async fn delete_kept_disk(&self, id: &str) -> Result<(), TeardownError> {
        let log = self.log("", None);
        let cancel = self.shutdown_token();
        self.inventory().forget(id, &log, &cancel).await?;
        self.inner.store.forget_snapshot(id).await?;
        Ok(())
    }

    /// Forgets kept disk `id`: the module's, then the record. A failure is
    /// said in the events and leaves the record (to try again later).
    pub(super) async fn forget_disk(&self, id: &str, log: &SessionLog, cancel: &CancellationToken) {
        match self.inventory().forget(id, log, cancel).await {
            Ok(()) => {
                if let Err(err) = self.inner.store.forget_snapshot(id).await {
                    tracing::warn!(snapshot = %id, error = %err, "could not forget a kept disk's record");
                }
            }
            Err(err) => {
                let line = format!("could not delete the kept disk {id} ({err}); it stays kept");
                log.line(Tool::Terraform, OutputStream::Stderr, &line).await;
            }
        }
    }
}
