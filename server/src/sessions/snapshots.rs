//! Kept disks as callers meet them (a `persistent` template's desktop
//! keeps its disk when destroyed): which one a create restores, listed and
//! deleted. Keeping, restoring and forgetting them is the pipeline's
//! (`provision/kept_disks.rs`).

use daas_api::v1::{ListSnapshotsRequest, Snapshot};

use super::Sessions;
use crate::{
    audit::{Act, Actor},
    domain::{error::Error, identity::Caller, time::timestamp, validate},
    store::{
        LimitHit, NewSession, StoreError,
        snapshots::{SnapshotRecord, Which},
    },
};

fn to_proto(r: &SnapshotRecord) -> Snapshot {
    Snapshot {
        id: r.id.clone(),
        username: r.username.clone(),
        template: r.template.clone(),
        size: r.size.clone(),
        org: r.org.clone().unwrap_or_default(),
        vm_name: r.vm_name.clone(),
        created_at: Some(timestamp(r.created_ms)),
        size_gb: r.size_gb,
        restoring_session_id: r.restoring.clone().unwrap_or_default(),
    }
}

impl Sessions {
    /// The kept disk a create of `new` restores: its user's newest of the
    /// template that no live desktop is restored from (the store checks
    /// that again in the create's transaction); None for another template.
    pub(super) async fn kept_disk_for(
        &self,
        new: &NewSession,
    ) -> Result<Option<String>, StoreError> {
        let persistent = self.config.catalog.is_persistent(&new.template);
        if !persistent || new.username.is_empty() || new.pool.is_some() {
            return Ok(None);
        }
        Ok(self
            .store
            .snapshots(Which::of_user(&new.username))
            .await?
            .into_iter()
            .find(|s| s.template == new.template && s.restoring.is_none())
            .map(|s| s.id))
    }

    /// Refuses a new desktop of a persistent template (not a restore: its
    /// disk is kept already) when its organisation's kept disks fill
    /// `quota.kept_gb`: its disk could not be kept within it. A live
    /// desktop's disk is always kept, so the quota may be passed by those.
    pub(super) async fn room_to_keep(&self, new: &NewSession) -> Result<(), StoreError> {
        let persistent = self.config.catalog.is_persistent(&new.template);
        let Some(org) = new.org.as_deref().and_then(|o| self.config.orgs.get(o)) else {
            return Ok(());
        };
        if !persistent || new.restore_from.is_some() || org.quota.kept_gb.is_none() {
            return Ok(());
        }
        match org
            .quota
            .kept_full(u64::from(self.kept_gb_of(&org.name).await?))
        {
            Some(over) => Err(StoreError::LimitReached(LimitHit::Quota {
                org: org.name.clone(),
                member: None,
                over,
            })),
            None => Ok(()),
        }
    }

    /// GiB of the kept disks of organisation `org`.
    pub(super) async fn kept_gb_of(&self, org: &str) -> Result<u32, StoreError> {
        Ok(self
            .store
            .snapshots(Which::of_org(org))
            .await?
            .iter()
            .map(|s| s.size_gb)
            .sum())
    }

    /// The caller's kept disks, a user's, or everyone's for an
    /// administrator.
    pub async fn snapshots(
        &self,
        caller: &Caller,
        req: ListSnapshotsRequest,
    ) -> Result<Vec<Snapshot>, Error> {
        let username = match caller.user() {
            _ if caller.is_admin() => (!req.username.is_empty()).then_some(req.username),
            Some(me) if req.username.is_empty() || req.username == me => Some(me.to_string()),
            _ => {
                return Err(Error::PermissionDenied(
                    "you may list only your own kept disks".into(),
                ));
            }
        };
        if let Some(user) = &username {
            validate::account_name("username", user)?;
        }
        let which = username.map_or_else(Which::all, |u| Which::of_user(&u));
        let kept = self.store.snapshots(which).await?;
        Ok(kept.iter().map(to_proto).collect())
    }

    /// Deletes kept disk `id` (the caller's, or any for an administrator),
    /// recorded in the audit trail by `actor`.
    pub async fn delete_snapshot(
        &self,
        caller: &Caller,
        actor: &Actor,
        id: &str,
    ) -> Result<Snapshot, Error> {
        let mut owner = String::new();
        let result = async {
            validate::uuid_of("snapshot_id", "kept disk", id)?;
            let found = self
                .store
                .snapshots(Which::id(id))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| Error::NoSuchSnapshot(id.to_string()))?;
            owner.clone_from(&found.username);
            if !caller.may_act_for(&found.username) {
                return Err(Error::PermissionDenied(
                    "you may delete only your own kept disks".into(),
                ));
            }
            if let Some(session) = &found.restoring {
                return Err(Error::Conflict(format!(
                    "desktop {session} is being restored from kept disk {id}; delete it once that desktop is READY or gone"
                )));
            }
            self.pipeline
                .delete_kept_disk(id)
                .await
                .map_err(|err| Error::Internal(Box::new(err)))?;
            tracing::info!(snapshot = %id, user = %found.username, "kept disk deleted");
            Ok(to_proto(&found))
        }
        .await;
        let act = Act::new("delete kept disk")
            .session(id, &owner)
            .detail(format!("kept disk {id}"));
        let act = match &result {
            Ok(s) => act.org(Some(s.org.as_str()).filter(|o| !o.is_empty())),
            Err(err) => act.failed(err),
        };
        self.audit.record(actor, act).await;
        result
    }
}
