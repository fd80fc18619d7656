//! The provisioning pipeline: one task per session, QUEUED -> PROVISIONING
//! (terraform) -> BOOTING (SSH, cloud-init) -> CONFIGURING (ansible) ->
//! READY (the stages: `stages.rs`), with a limit on how many run at once. A
//! failure at any stage destroys what was made before the session is marked
//! FAILED. Destroys go through [`Pipeline::destroy`], the one path for every
//! teardown; recovery after a restart and the sweeper ([`sweeper`]) make
//! sure no VM outlives its session.

mod agent_commands;
pub mod ansible;
pub mod ansible_vars;
pub mod boot;
pub mod identity;
pub mod inventory;
mod kept_disks;
pub mod locks;
pub mod nodes;
mod permits;
pub mod sshkey;
mod stages;
pub mod sweeper;
pub mod terraform;
pub mod tool;
mod waiting;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use daas_api::v1::{OutputStream, SessionState, Tool};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::domain::catalog::Size;
use crate::{
    config::Config,
    domain::error::Error,
    domain::password::PasswordHash,
    provision::ansible::{Ansible, AnsibleError, PlaybookVars},
    provision::boot::BootError,
    provision::inventory::{Inventory, InventoryError},
    provision::locks::{SessionGuard, SessionLocks},
    provision::terraform::{Terraform, TerraformError},
    provision::tool::{SessionLog, ToolError},
    store::{SessionRecord, Store, StoreError},
};

/// How the reason of a session failed by a restart begins (a warm pool
/// does not count it as a failed build).
pub const RESTARTED: &str = "server restarted";

/// Why a stage did not complete.
#[derive(Debug, thiserror::Error)]
enum StageError {
    #[error(transparent)]
    Terraform(#[from] TerraformError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Ansible(#[from] AnsibleError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot issue the agent's certificate: {0}")]
    AgentCredential(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    AgentCommand(#[from] agent_commands::AgentCommandError),
    #[error(
        "could not restore the kept disk: {0}; `daas snapshot delete` makes the next desktop start blank"
    )]
    Restore(#[from] InventoryError),
    #[error("cancelled while waiting for a clone turn or the agent's first report")]
    Cancelled,
    #[error(
        "node {node} is {state} now: no VM was made there; create the desktop again to place it on another node"
    )]
    NodeDown {
        node: String,
        state: crate::domain::placement::NodeState,
    },
}

impl StageError {
    fn is_cancel(&self) -> bool {
        matches!(
            self,
            StageError::Terraform(TerraformError::Tool(ToolError::Cancelled { .. }))
                | StageError::Ansible(AnsibleError::Tool(ToolError::Cancelled { .. }))
                | StageError::Boot(BootError::Tool(ToolError::Cancelled { .. }))
                | StageError::Boot(BootError::Cancelled)
                | StageError::Cancelled
                | StageError::AgentCommand(agent_commands::AgentCommandError::Cancelled { .. })
        )
    }
}

/// Runs and tears down sessions.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    store: Store,
    /// The store's deployment id: given to every Terraform run and to the
    /// inventory hook; the sweeper destroys no other deployment's VM.
    deployment: String,
    ssh_public_key: String,
    /// Signs per-session agent certificates; None: no agents.
    agent_ca: Option<crate::pki::AgentAuthority>,
    metrics: Arc<crate::metrics::Metrics>,
    audit: crate::audit::Audit,
    permits: permits::Permits,
    /// Cancels the provisioning task of a session.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Taken by provisioning (with its cleanup), destroy, recovery and the
    /// sweeper: one of them at a time works on a session.
    locks: SessionLocks,
    /// One `terraform init` at a time fills the plugin cache.
    init_lock: tokio::sync::Mutex<()>,
    /// Whether the server places VMs on nodes: the module's `inventory
    /// nodes` answered (see [`nodes`]).
    places: std::sync::atomic::AtomicBool,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        deployment: String,
        ssh_public_key: String,
        agent_ca: Option<crate::pki::AgentAuthority>,
        metrics: Arc<crate::metrics::Metrics>,
        audit: crate::audit::Audit,
    ) -> Self {
        let permits = permits::Permits::new(config.limits.max_parallel_provisions);
        Pipeline {
            inner: Arc::new(Inner {
                config,
                store,
                deployment,
                ssh_public_key,
                agent_ca,
                metrics,
                audit,
                permits,
                running: Mutex::new(HashMap::new()),
                locks: SessionLocks::default(),
                init_lock: tokio::sync::Mutex::new(()),
                places: std::sync::atomic::AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// How a new desktop is placed: on a node the store picks, when the
    /// module reports its nodes; None: the module places VMs itself.
    pub fn placing(&self) -> Option<crate::domain::placement::Policy> {
        self.inner
            .places
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(self.inner.config.placement.policy)
    }

    /// The size session `record` is built at: its own, or `[vm]`'s for a
    /// session an older server made.
    pub fn size_of(&self, record: &crate::store::SessionRecord) -> Size {
        record
            .size
            .clone()
            .unwrap_or_else(|| crate::config::catalog::standard(&self.inner.config.vm))
    }

    /// The default size of `template` in the catalog (a pool's desktops
    /// are built at it), else `[vm]`'s.
    pub fn default_size(&self, template: &str) -> Size {
        self.inner
            .config
            .catalog
            .choose(template, "", &[], true)
            .map(|choice| choice.size)
            .unwrap_or_else(|_| crate::config::catalog::standard(&self.inner.config.vm))
    }

    /// Fires when the server stops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Stops every tool run (their sessions are cleaned up at the next
    /// start) and waits for the tasks to end, at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some provisioning tasks did not stop in time");
        }
    }

    /// Starts provisioning a QUEUED session in the background. The task
    /// outlives the request that started it. `password` is the session
    /// user's, hashed: the password itself never reaches the pipeline.
    pub fn start(&self, record: SessionRecord, password: PasswordHash) {
        let cancel = self.inner.shutdown.child_token();
        self.lock_running()
            .insert(record.id.clone(), cancel.clone());
        let this = self.clone();
        // Inside the request's span when a request started it.
        let span = tracing::info_span!("session", session = %record.id, user = %record.username);
        self.inner.tasks.spawn(
            async move {
                let id = record.id.clone();
                this.provision(record, password, cancel).await;
                this.lock_running().remove(&id);
            }
            .instrument(span),
        );
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn session_dir(&self, id: &str) -> PathBuf {
        self.inner.config.session_dir(id)
    }

    fn terraform(&self) -> Terraform<'_> {
        Terraform {
            config: &self.inner.config.terraform,
            secrets: &self.inner.config.secrets,
            init_lock: &self.inner.init_lock,
        }
    }

    /// The module's inventory hook, run in the data dir.
    pub(crate) fn inventory(&self) -> Inventory<'_> {
        Inventory {
            config: &self.inner.config.terraform,
            secrets: &self.inner.config.secrets,
            work_dir: &self.inner.config.data_dir,
            deployment: &self.inner.deployment,
        }
    }

    /// A stage change of `record`'s session that the store recorded as
    /// `event`: counted in the metrics, and logged.
    pub(crate) fn staged(&self, record: &SessionRecord, event: &daas_api::v1::SessionEvent) {
        self.inner.metrics.stage_change(record, event);
        if let Some(daas_api::v1::session_event::Kind::StageChange(change)) = &event.kind {
            let to = SessionState::try_from(event.state).unwrap_or(SessionState::Unspecified);
            tracing::info!(
                session = %record.id,
                from = change.previous().label(),
                to = to.label(),
                detail = %change.message,
                "stage"
            );
        }
    }

    pub(crate) fn audit(&self) -> &crate::audit::Audit {
        &self.inner.audit
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) async fn lock(&self, id: &str) -> SessionGuard {
        self.inner.locks.lock(id).await
    }

    /// A session's log, masking the config's secrets and `extra`; with an
    /// empty `id`, the server's log.
    pub(crate) fn log(&self, id: &str, extra: Option<&str>) -> SessionLog {
        let mut secrets = self.inner.config.secrets.values();
        secrets.extend(extra.map(str::to_string));
        SessionLog::new(self.inner.store.clone(), id.to_string(), secrets)
            .with_metrics(self.inner.metrics.clone())
    }

    async fn provision(
        &self,
        record: SessionRecord,
        password: PasswordHash,
        cancel: CancellationToken,
    ) {
        let id = record.id.clone();
        let log = self.log(&id, Some(password.expose()));
        let _guard = tokio::select! {
            guard = self.lock(&id) => guard,
            _ = cancel.cancelled() => return,
        };
        // A claimed desktop takes a permit only if it runs a tool (its
        // agent's work is none; should the agent decline, the playbook
        // runs without one); a pool's build gives way to every user.
        let needs_permit = !record.is_claimed()
            || (self.claim_runs_playbook(&record) && !self.agent_can_claim(&record));
        let permit = if !needs_permit {
            None
        } else if record.is_unclaimed() {
            tokio::select! {
                permit = self.inner.permits.background() => permit,
                _ = cancel.cancelled() => return,
            }
        } else {
            tokio::select! {
                permit = self.inner.permits.user() => permit,
                _ = cancel.cancelled() => return,
                () = self.moved_elsewhere(&record) => {
                    tracing::info!(session = %id, "another server with a free permit took this create");
                    return;
                }
            }
        };
        if needs_permit && permit.is_none() {
            return;
        }
        let mut stage = SessionState::Queued;
        let result = self
            .run_stages(&record, &password, &log, &cancel, &mut stage)
            .await;
        match result {
            Ok(()) => {}
            Err(err) if err.is_cancel() || cancel.is_cancelled() => {
                // Destroy or shutdown took over; the destroy path (now or at
                // the next start) cleans up.
                tracing::info!(session = %id, "provisioning stopped");
            }
            Err(StageError::Store(err @ StoreError::Conflict { .. })) => {
                tracing::warn!(session = %id, error = %err, "provisioning stopped: the session moved on");
            }
            Err(StageError::Store(StoreError::Fenced { .. })) if stage == SessionState::Queued => {
                // Nothing was made yet.
                tracing::info!(session = %id, "another server with a free permit took this create");
            }
            Err(StageError::Store(err @ StoreError::Fenced { .. })) => {
                tracing::warn!(session = %id, error = %err, "provisioning stopped: another server took this session over (this one stopped answering for longer than its lease); destroying what this server made");
                self.abandon(&id, &cancel).await;
            }
            Err(err) => {
                let reason = err.to_string();
                tracing::warn!(session = %id, stage = stage.label(), %reason, "provisioning failed");
                self.fail(&record, stage, reason, &log).await;
            }
        }
    }

    /// Destroys what this server made for a session another server took
    /// over, writing nothing to the store (this server no longer holds the
    /// session): `terraform destroy` in its folder, then the folder.
    async fn abandon(&self, id: &str, cancel: &CancellationToken) {
        let session_dir = self.session_dir(id);
        let tf_dir = terraform::dir_of(&session_dir);
        if tf_dir.exists() {
            // No session's events: the server's log.
            let secrets = self.inner.config.secrets.values();
            let log = SessionLog::new(self.inner.store.clone(), String::new(), secrets);
            if let Err(err) = self.terraform().destroy(&tf_dir, &log, cancel).await {
                tracing::error!(session = %id, error = %err, "could not destroy what this server made for a session it lost; the sweeper will find it");
                return;
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&session_dir) {
            tracing::warn!(session = %id, error = %err, "could not remove a lost session's folder");
        }
    }

    /// Destroys what a failed stage left, then marks the session FAILED.
    /// The caller holds the session's lock.
    async fn fail(
        &self,
        record: &SessionRecord,
        stage: SessionState,
        reason: String,
        log: &SessionLog,
    ) {
        let store = &self.inner.store;
        let id = &record.id;
        log.line(
            Tool::Terraform,
            OutputStream::Stdout,
            "cleaning up: destroying what was created",
        )
        .await;
        let cleanup = self
            .teardown(
                record,
                stage == SessionState::Configuring,
                log,
                &self.inner.shutdown.child_token(),
            )
            .await;
        let (message, reason) = match cleanup {
            Ok(()) => (
                "provisioning failed; nothing was left behind".to_string(),
                reason,
            ),
            Err(err) => (
                "provisioning failed and the cleanup failed too".to_string(),
                format!(
                    "{reason}; the cleanup failed as well ({err}): run `daas destroy {id}` to retry"
                ),
            ),
        };
        // From the state the store holds now (the lock keeps it still);
        // while the database is away, again until it is back or the server
        // stops (a session left in progress would be renewed for ever).
        let shutdown = self.inner.shutdown.clone();
        loop {
            let result = match store.get(id).await {
                Ok(Some(now)) if now.state.is_in_progress() => store
                    .transition(
                        id,
                        now.state,
                        SessionState::Failed,
                        message.clone(),
                        Some((stage, reason.clone())),
                    )
                    .await
                    .map(|event| self.staged(&now, &event)),
                Ok(_) => return,
                Err(err) => Err(err),
            };
            match result {
                Ok(()) => return,
                Err(err) if err.is_unavailable() && !shutdown.is_cancelled() => {
                    tracing::warn!(session = %id, error = %err, "cannot record a failure yet; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                Err(err) => {
                    tracing::error!(session = %id, error = %err, "could not record a failure");
                    return;
                }
            }
        }
    }

    /// The teardown playbook (for a configured VM), `terraform destroy`,
    /// removal of the session's directory, then the module's inventory is
    /// asked whether the VM is really gone (a create Terraform never
    /// recorded, a state lost to a crash) and destroys it if not; frees the
    /// slot once the VM is known to be gone.
    async fn teardown(
        &self,
        record: &SessionRecord,
        configured: bool,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), TeardownError> {
        let id = &record.id;
        let session_dir = self.session_dir(id);
        let tf_dir = terraform::dir_of(&session_dir);
        if !session_dir.exists()
            && let Some(files) = self.inner.store.terraform(id).await?
        {
            // Another server made the VM: its Terraform files are in the store.
            self.terraform()
                .restore(&tf_dir, &files, log, cancel)
                .await?;
            adopt_host_key(&session_dir, &files);
        }
        if configured && session_dir.exists() {
            self.unconfigure(id, &session_dir, log, cancel).await;
        }
        // Before the VM goes: a disk that cannot be kept stops the destroy.
        if session_dir.exists() && self.keeps_disk(record) {
            self.keep_disk(record, log, cancel).await?;
        }
        if session_dir.exists() {
            let destroyed = self.terraform().destroy(&tf_dir, log, cancel).await;
            self.keep_terraform(id, &tf_dir).await;
            destroyed?;
            std::fs::remove_dir_all(&session_dir).map_err(|source| TerraformError::Dir {
                path: session_dir.display().to_string(),
                source,
            })?;
        }
        let inventory = self.inventory();
        if inventory.exists() {
            // Another deployment's VM of the same name is not ours to destroy.
            let listed = inventory.list(log, cancel).await?;
            if listed.ours.iter().any(|vm| vm.vm_name == record.vm_name) {
                let line = format!(
                    "the module's inventory still lists {} after terraform destroy; destroying it",
                    record.vm_name
                );
                log.line(Tool::Terraform, OutputStream::Stdout, &line).await;
                inventory.destroy(&record.vm_name, log, cancel).await?;
            }
        }
        if let Err(err) = self.inner.store.set_terraform(id, None).await {
            tracing::warn!(session = %id, error = %err, "could not forget Terraform files");
        }
        if let Err(err) = self.inner.store.release_slot(id).await {
            tracing::warn!(session = %id, error = %err, "could not release a slot");
        }
        Ok(())
    }

    /// Keeps the Terraform files of `tf_dir` in the store, for any server
    /// to destroy the session's VM; a failure is logged (this server
    /// still has them).
    async fn keep_terraform(&self, id: &str, tf_dir: &std::path::Path) {
        let Some(files) = Terraform::saved(tf_dir) else {
            return;
        };
        if let Err(err) = self.inner.store.set_terraform(id, Some(files)).await {
            tracing::warn!(session = %id, error = %err, "could not keep Terraform files in the store");
        }
    }

    /// Runs the teardown playbook for a VM the sweeper is about to destroy,
    /// from whichever server: without the session's folder (another server
    /// made the VM), the VM's host key comes from the Terraform variables
    /// kept in the store. The caller holds the session's lock.
    pub(crate) async fn unconfigure_swept(
        &self,
        record: &SessionRecord,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) {
        let session_dir = self.session_dir(&record.id);
        match self.inner.store.terraform(&record.id).await {
            Ok(Some(files)) => adopt_host_key(&session_dir, &files),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(session = %record.id, error = %err, "could not read the kept Terraform files; the teardown playbook may not reach the VM");
            }
        }
        self.unconfigure(&record.id, &session_dir, log, cancel)
            .await;
    }

    /// Runs the teardown playbook against a configured VM. A failure is
    /// reported in the events and does not stop the destroy: a VM must not
    /// outlive its session because, say, the domain controller is down.
    async fn unconfigure(
        &self,
        id: &str,
        session_dir: &std::path::Path,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) {
        let config = &self.inner.config;
        if config.ansible.teardown_playbook.is_none() {
            return;
        }
        let record = match self.inner.store.get(id).await {
            Ok(Some(record)) => record,
            _ => return,
        };
        let ansible = Ansible {
            config: &config.ansible,
            ssh: &config.ssh,
        };
        let identity = match identity::Identity::ensure(session_dir, &record.vm_name) {
            Ok(identity) => identity,
            Err(err) => {
                let line =
                    format!("the teardown playbook cannot run ({err}); destroying the VM anyway");
                log.line(Tool::Ansible, OutputStream::Stderr, &line).await;
                return;
            }
        };
        let log = &log.with_secrets(identity.secret_lines());
        let vars = PlaybookVars {
            session_id: id,
            username: &record.username,
            vm_name: &record.vm_name,
            session_user: &record.session_user,
            session_password_hash: "",
            ad_join_password: config.secrets.ad_join_password.as_ref().map(|s| s.expose()),
            vm: &record.outputs,
            agent: None,
            identity: &identity,
            phase: crate::provision::ansible::Phase::All,
            clipboard: config.catalog.clipboard(&record.template),
        };
        if let Err(err) = ansible.teardown(session_dir, &vars, log, cancel).await {
            let line = format!("the teardown playbook failed ({err}); destroying the VM anyway");
            log.line(Tool::Ansible, OutputStream::Stderr, &line).await;
        }
    }

    /// Destroys a session: stops its provisioning, runs `terraform destroy`,
    /// removes its directory. Idempotent; concurrent calls run one after
    /// the other, the later ones finding the session destroyed. Runs in its
    /// own task, so a caller that goes away does not stop it.
    pub async fn destroy(&self, id: &str) -> Result<SessionRecord, Error> {
        self.destroy_in_task(id, None).await
    }

    /// Destroys a warm pool's desktop unless a create has claimed it
    /// (then it is that user's, and left alone); `reason` goes in the
    /// DESTROYING event. Returns whether it destroyed it.
    pub async fn destroy_unclaimed(&self, id: &str, reason: String) -> Result<bool, Error> {
        let this = self.clone();
        let id = id.to_string();
        let task = self.inner.tasks.spawn(async move {
            // The token of a build under way; a claim's task would register
            // a new one, which this never cancels.
            let running = this.lock_running().get(&id).cloned();
            let still_spare = |r: &Option<SessionRecord>| {
                r.as_ref().is_some_and(|r| {
                    r.is_unclaimed()
                        && !matches!(
                            r.state,
                            SessionState::Failed
                                | SessionState::Destroying
                                | SessionState::Destroyed
                        )
                })
            };
            if !still_spare(&this.inner.store.get(&id).await?) {
                return Ok(false);
            }
            if let Some(cancel) = running {
                cancel.cancel();
            }
            let _guard = this.lock(&id).await;
            let record = this.inner.store.get(&id).await?;
            if !still_spare(&record) {
                return Ok(false);
            }
            // A claim between the read and the move makes the move a
            // conflict: the desktop stays the user's.
            match this.destroy_locked(&id, Some(reason)).await {
                Ok(_) => Ok(true),
                Err(Error::Conflict(_)) => Ok(false),
                Err(err) => Err(err),
            }
        });
        task.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Like [`Pipeline::destroy`], recording `reason` (e.g. the reaper's)
    /// in the DESTROYING event.
    pub async fn destroy_because(&self, id: &str, reason: String) -> Result<SessionRecord, Error> {
        self.destroy_in_task(id, Some(reason)).await
    }

    async fn destroy_in_task(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> Result<SessionRecord, Error> {
        let this = self.clone();
        let id = id.to_string();
        let span = tracing::info_span!("session", session = %id, user = tracing::field::Empty);
        let task = self.inner.tasks.spawn(
            async move {
                // Provisioning gives way (and releases the lock) first.
                let running = this.lock_running().get(&id).cloned();
                if let Some(cancel) = running {
                    cancel.cancel();
                }
                let _guard = this.lock(&id).await;
                this.destroy_locked(&id, reason).await
            }
            .instrument(span),
        );
        task.await.map_err(|_| Error::ShuttingDown)?
    }

    /// The destroy itself; the caller holds the session's lock.
    async fn destroy_locked(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> Result<SessionRecord, Error> {
        let store = &self.inner.store;
        let record = store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        tracing::Span::current().record("user", record.username.as_str());
        if record.state == SessionState::Destroyed {
            return Ok(record);
        }
        let event = store
            .transition(
                id,
                record.state,
                SessionState::Destroying,
                reason.unwrap_or_else(|| format!("destroying VM {}", record.vm_name)),
                None,
            )
            .await?;
        self.staged(&record, &event);
        let log = self.log(id, None);
        let cancel = self.inner.shutdown.child_token();
        match self
            .teardown(&record, was_configured(&record), &log, &cancel)
            .await
        {
            Ok(()) => {
                let event = store
                    .transition(
                        id,
                        SessionState::Destroying,
                        SessionState::Destroyed,
                        "the VM is gone".into(),
                        None,
                    )
                    .await?;
                self.staged(&record, &event);
            }
            Err(err) => {
                let reason = err.to_string();
                let event = store
                    .transition(
                        id,
                        SessionState::Destroying,
                        SessionState::Failed,
                        "the destroy failed".into(),
                        Some((SessionState::Destroying, reason.clone())),
                    )
                    .await?;
                self.staged(&record, &event);
                return Err(Error::DestroyFailed {
                    id: id.to_string(),
                    reason,
                });
            }
        }
        store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Cleans up sessions a previous server process left in progress:
    /// adopts the tools it left running (a Terraform run is left to finish,
    /// others are stopped), destroys what was made, and marks each FAILED
    /// ("server restarted during STAGE"), or DESTROYED when it was being
    /// destroyed. READY sessions are left alone. Returns the tasks' count.
    ///
    /// With a store shared by several servers, only the sessions whose
    /// server's lease ran out are taken (see `crate::store::lease`); the
    /// embedded store's sessions are all this server's.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let store = &self.inner.store;
        let taken = if store.is_shared() {
            store.take_over_expired().await?
        } else {
            // The embedded store's one server: whatever a previous process
            // held is this one's now.
            let mut taken = Vec::new();
            for record in store.in_progress().await? {
                if store.take_over(&record.id, true).await? {
                    taken.push(record.id);
                }
            }
            taken
        };
        let count = taken.len();
        for id in taken {
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                this.recover_one(id).await;
            });
        }
        Ok(count)
    }

    /// Until shutdown: renews this server's leases a few times per lease,
    /// and takes over the sessions of servers whose lease ran out (a store
    /// shared by several servers only).
    pub async fn keep_leases(self, lease: Duration) {
        let shutdown = self.shutdown_token();
        // Renewing on its own, so that taking sessions over never delays it.
        let renewing = {
            let store = self.inner.store.clone();
            let shutdown = shutdown.clone();
            let mut tick = tokio::time::interval(lease / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.cancelled() => return,
                    }
                    if let Err(err) = store.renew_leases().await {
                        tracing::error!(error = %err, "could not renew this server's leases; other servers may take its sessions over");
                    }
                }
            })
        };
        if !self.inner.store.is_shared() {
            let _ = renewing.await;
            return;
        }
        tokio::spawn(self.clone().take_waiting_creates(lease));
        let mut tick = tokio::time::interval(lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match self.recover().await {
                Ok(0) => {}
                Ok(taken) => tracing::warn!(
                    sessions = taken,
                    "took over sessions of a server that stopped answering"
                ),
                Err(err) => {
                    tracing::error!(error = %err, "could not look for sessions to take over")
                }
            }
        }
    }

    async fn recover_one(&self, id: String) {
        let _guard = self.lock(&id).await;
        // A destroy may have come first.
        let record = match self.inner.store.get(&id).await {
            Ok(Some(record)) if record.state.is_in_progress() => record,
            Ok(_) => return,
            Err(err) => {
                tracing::error!(session = %id, error = %err, "cannot read a session to recover");
                return;
            }
        };
        // The tool it recorded, and any it started but had no time to
        // record: Terraform finishes, the others stop.
        let wait = self.inner.config.terraform.apply_timeout;
        let found = tool::tools_in(&self.session_dir(&id));
        for child in record.child.iter().chain(&found) {
            let adopted = tool::adopt(child, wait).await;
            if adopted != tool::Adopted::Gone {
                tracing::info!(session = %id, pgid = child.pgid, ?adopted, "took over a tool a previous server left running");
            }
        }
        if record.child.is_some()
            && let Err(err) = self.inner.store.set_child(&id, None).await
        {
            tracing::warn!(session = %id, error = %err, "could not forget a child process");
        }
        tracing::info!(session = %id, state = record.state.label(), "cleaning up after a restart");
        if record.state == SessionState::Destroying {
            if let Err(err) = self.destroy_locked(&id, None).await {
                tracing::warn!(session = %id, error = %err, "destroy after restart failed");
            }
            return;
        }
        // A create that had not started: it runs (nothing was made).
        if record.state == SessionState::Queued
            && let Some(password) = self.waiting_password(&record).await
        {
            drop(_guard);
            self.run_left_waiting(record, password).await;
            return;
        }
        let log = self.log(&id, None);
        let reason = if self.inner.store.is_shared() {
            format!(
                "{RESTARTED} during {} (or stopped answering for longer than its lease); \
                 create a new session",
                record.state.label()
            )
        } else {
            format!(
                "{RESTARTED} during {}; create a new session",
                record.state.label()
            )
        };
        self.fail(&record, record.state, reason, &log).await;
    }
}

/// Whether Ansible may have configured the session's VM (joined it to the
/// domain): what decides that its teardown runs the teardown playbook.
pub(crate) fn was_configured(record: &SessionRecord) -> bool {
    match record.state {
        SessionState::Ready
        | SessionState::Configuring
        | SessionState::Destroying
        | SessionState::Lost => true,
        SessionState::Failed => matches!(
            record.failure,
            Some((SessionState::Configuring | SessionState::Destroying, _))
        ),
        _ => false,
    }
}

/// Puts the VM's host key kept with `files` in `session_dir` (see
/// [`identity::Identity::adopt_host_key`]); a failure is logged: the
/// teardown playbook then cannot reach the VM, and the destroy goes on.
fn adopt_host_key(session_dir: &std::path::Path, files: &crate::store::TerraformFiles) {
    let Some(key) = terraform::host_key_of(files) else {
        return;
    };
    if let Err(err) = identity::Identity::adopt_host_key(session_dir, &key) {
        tracing::warn!(dir = %session_dir.display(), error = %err, "could not adopt the VM's host key");
    }
}

/// Why a teardown did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    Terraform(#[from] TerraformError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
