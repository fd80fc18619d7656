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
    store::{
        SessionRecord, StoreError,
        snapshots::{SnapshotRecord, Which},
    },
};

/// How long a kept disk of a template no longer persistent stays.
const DEFAULT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

impl Pipeline {
    /// Whether destroying `record`'s VM keeps its disk first: a user's
    /// desktop of a persistent template that was READY.
    pub(super) fn keeps_disk(&self, record: &SessionRecord) -> bool {
        record.ready_ms.is_some()
            && !record.username.is_empty()
            && !record.is_unclaimed()
            && self.inner.config.catalog.is_persistent(&record.template)
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
        let keep = self
            .inner
            .config
            .catalog
            .get(&record.template)
            .map_or(1, |t| t.keep);
        let older: Vec<_> = store
            .snapshots(Which::of_user(&record.username))
            .await?
            .into_iter()
            .filter(|s| s.template == record.template && s.restoring.is_none())
            .skip(usize::try_from(keep).unwrap_or(usize::MAX))
            .collect();
        for old in older {
            self.forget_disk(&old.id, log, cancel).await;
        }
        Ok(())
    }

    /// Deletes the kept disks older than their template's `max_age` (and
    /// those of a template no longer persistent, after the default's),
    /// unless a desktop is being restored from one; their ids.
    pub async fn expire_kept_disks(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let catalog = &self.inner.config.catalog;
        let log = self.log("", None);
        let cancel = self.shutdown_token();
        let mut expired = Vec::new();
        for kept in self.inner.store.snapshots(Which::all()).await? {
            let max_age = catalog
                .get(&kept.template)
                .filter(|t| t.persistent)
                .map_or(DEFAULT_MAX_AGE, |t| t.max_age);
            let age_ms = now_ms.saturating_sub(kept.created_ms);
            if kept.restoring.is_some()
                || u128::try_from(age_ms).unwrap_or(0) <= max_age.as_millis()
            {
                continue;
            }
            tracing::info!(snapshot = %kept.id, user = %kept.username, template = %kept.template, "a kept disk is past its max_age: deleting it");
            self.forget_disk(&kept.id, &log, &cancel).await;
            expired.push(kept.id);
        }
        Ok(expired)
    }

    /// The disk size a desktop of `size_gb` gets: never below the kept
    /// disk it is restored from (a module would make a smaller disk anew,
    /// empty, or fail).
    pub(super) async fn disk_gb_of(
        &self,
        record: &SessionRecord,
        size_gb: u32,
    ) -> Result<u32, StoreError> {
        let Some(kept) = &record.restore_from else {
            return Ok(size_gb);
        };
        let kept_gb = self
            .inner
            .store
            .snapshots(Which::id(kept))
            .await?
            .first()
            .map_or(0, |s| s.size_gb);
        Ok(size_gb.max(kept_gb))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{audit::Audit, config::Config, metrics::Metrics, store::Store};

    const DAY: i64 = 24 * 3600 * 1000;

    #[tokio::test]
    async fn kept_disks_past_their_max_age_are_deleted_unless_in_use() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let markers = dir.path().join("markers");
        std::fs::create_dir_all(markers.join("snapshots")).expect("markers");
        let module = crate::testkit::workspace_root().join("terraform/test");
        let config = format!(
            "data_dir = \"data\"\n[terraform]\nmodule_dir = {module:?}\n\
             [terraform.variables]\nmarker_dir = {markers:?}\n\
             [ansible]\nplaybook = \"play.yml\"\n[tls]\nplaintext = true\n\
             [vm]\ntemplate = \"notes\"\n\
             [templates.notes]\npersistent = true\nmax_age = \"7d\"\n\
             [templates.short]\npersistent = true\nmax_age = \"1d\"\n"
        );
        std::fs::write(dir.path().join("play.yml"), "---\n").expect("playbook");
        let file = dir.path().join("daas.toml");
        std::fs::write(&file, config).expect("config");
        let config = Arc::new(Config::load(Some(&file)).expect("a valid config"));
        let store = Store::open(&config.database).expect("a store");
        let audit = Audit::open(store.clone(), None).expect("an audit");
        let pipeline = Pipeline::new(
            config,
            store.clone(),
            "0123456789ab".into(),
            String::new(),
            None,
            Arc::new(Metrics::new()),
            audit,
        );
        let now = 100 * DAY;
        for (id, template, age_days) in [
            ("a1", "notes", 3),
            ("a2", "notes", 8),
            ("a3", "short", 2),
            ("a4", "gone", 40),
            ("a5", "notes", 9),
        ] {
            std::fs::write(markers.join(format!("snapshots/{id}.disk")), "x").expect("disk");
            store
                .keep_snapshot(SnapshotRecord {
                    id: id.into(),
                    username: "alice".into(),
                    template: template.into(),
                    created_ms: now - age_days * DAY,
                    ..SnapshotRecord::default()
                })
                .await
                .expect("keep");
        }
        // A desktop being restored from a5: it stays, however old.
        let restoring = crate::store::NewSession {
            username: "alice".into(),
            template: "notes".into(),
            restore_from: Some("a5".into()),
            ..crate::store::NewSession::default()
        };
        let limits = crate::store::SessionLimits {
            max_sessions: 10,
            max_per_user: 10,
            org: None,
        };
        store
            .create_session(restoring, limits)
            .await
            .expect("a session restored from a5");
        let mut expired = pipeline.expire_kept_disks(now).await.expect("expire");
        expired.sort();
        assert_eq!(expired, ["a2", "a3", "a4"]);
        let left: Vec<String> = store
            .snapshots(Which::all())
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(left, ["a1", "a5"], "newest first");
        assert!(markers.join("snapshots/a1.disk").exists());
        assert!(!markers.join("snapshots/a2.disk").exists());
    }
}
