//! The stages of a create, each a function of its own so they can run
//! apart: the user-independent ones (PROVISIONING: the VM; BOOTING; the
//! desktop's configuration) and what makes a desktop one user's (the
//! session user and the user's access, [`PerUser`]). A create from nothing
//! runs one playbook with both; a warm pool's desktop runs all but the
//! per-user part ahead of time (`--skip-tags per_user`) and only that part
//! when a create claims it (`--tags per_user`).

use daas_api::v1::{OutputStream, SessionState, Tool};
use tokio_util::sync::CancellationToken;

use super::{
    Pipeline, StageError,
    agent_commands::ByAgent,
    ansible::{AgentVars, Ansible, Phase, PlaybookVars},
    boot,
    identity::Identity,
    terraform::{self, BootWait, ContractVars, ModuleOutputs},
    tool::SessionLog,
};
use crate::{
    config::pools::PerUserPlaybook,
    domain::password::PasswordHash,
    store::{
        SessionRecord, VmOutputs,
        nodes::{Busy, CloneTurn},
    },
};

/// How often a create waiting for a clone turn asks again.
const CLONE_TURN_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// What makes a desktop one user's.
pub(super) struct PerUser<'a> {
    pub session_user: &'a str,
    /// The session user's password hash (`$6$...`), or "".
    pub session_password_hash: &'a str,
    /// The agent's settings and its certificate for this session alone.
    pub agent: Option<AgentVars>,
}

impl Pipeline {
    /// Runs every stage of a create, QUEUED to READY (for a claimed warm
    /// desktop, the per-user part only); `stage` follows the stage reached,
    /// for the failure's record.
    pub(super) async fn run_stages(
        &self,
        record: &SessionRecord,
        password: &PasswordHash,
        log: &SessionLog,
        cancel: &CancellationToken,
        stage: &mut SessionState,
    ) -> Result<(), StageError> {
        if record.is_claimed() {
            return self
                .claim_stages(record, password, log, cancel, stage)
                .await;
        }
        let outputs = self.vm_stage(record, log, cancel, stage).await?;
        self.boot_stage(record, &outputs, log, cancel, stage)
            .await?;
        let per_user = PerUser {
            session_user: &record.session_user,
            session_password_hash: password.expose(),
            agent: self.agent_vars(&record.id)?,
        };
        let (phase, message) = match &record.pool {
            Some(pool) => (
                Phase::Base,
                format!("warm desktop of pool '{pool}': ready for a create to claim it"),
            ),
            None => (
                Phase::All,
                format!(
                    "connect with RDP to {}:{}",
                    outputs.vm.rdp_host, outputs.vm.rdp_port
                ),
            ),
        };
        self.configure_stage(record, &outputs.vm, &per_user, phase, log, cancel, stage)
            .await?;
        if phase == Phase::Base
            && per_user.agent.is_some()
            && !self.await_first_report(record, log, cancel).await?
        {
            return Err(StageError::Cancelled);
        }
        self.enter(record, stage, SessionState::Ready, message)
            .await?;
        // The desktop has the kept disk now: it is its own to keep again.
        if let Some(kept) = &record.restore_from {
            self.forget_disk(kept, log, cancel).await;
        }
        Ok(())
    }

    /// What a claimed warm desktop still needs: the per-user part of the
    /// playbook, when there is one to run (the VM, its boot and the rest
    /// of its configuration were done before anyone asked).
    async fn claim_stages(
        &self,
        record: &SessionRecord,
        password: &PasswordHash,
        log: &SessionLog,
        cancel: &CancellationToken,
        stage: &mut SessionState,
    ) -> Result<(), StageError> {
        let pool = record.pool.as_deref().unwrap_or_default();
        let by_agent = self.agent_can_claim(record)
            && self
                .claim_through_agent(record, password, log, cancel, stage)
                .await?;
        if by_agent {
            // Done: nothing of the playbook is needed.
        } else if self.claim_runs_playbook(record) {
            let per_user = PerUser {
                session_user: &record.session_user,
                session_password_hash: password.expose(),
                // Its agent reports under this session's id already.
                agent: None,
            };
            self.configure_stage(
                record,
                &record.outputs,
                &per_user,
                Phase::User,
                log,
                cancel,
                stage,
            )
            .await?;
        } else {
            let message = format!(
                "{} came configured from warm pool '{pool}'; no session user and no domain: nothing per-user to do",
                record.vm_name
            );
            self.enter(record, stage, SessionState::Configuring, message)
                .await?;
        }
        let claim_ms =
            crate::domain::time::now_ms() - record.claimed_ms.unwrap_or(record.created_ms);
        let message = format!(
            "connect with RDP to {}:{} (a warm desktop of pool '{pool}', ready {:.1} s after the request)",
            record.outputs.rdp_host,
            record.outputs.rdp_port,
            claim_ms as f64 / 1000.0
        );
        self.enter(record, stage, SessionState::Ready, message)
            .await
    }

    /// Enters CONFIGURING and has the desktop's agent do the per-user
    /// part; false when the agent declined (the playbook does it then).
    async fn claim_through_agent(
        &self,
        record: &SessionRecord,
        password: &PasswordHash,
        log: &SessionLog,
        cancel: &CancellationToken,
        stage: &mut SessionState,
    ) -> Result<bool, StageError> {
        let pool = record.pool.as_deref().unwrap_or_default();
        let message = format!(
            "making {} {}'s through its agent (the desktop came from warm pool '{pool}')",
            record.vm_name, record.username
        );
        self.enter(record, stage, SessionState::Configuring, message)
            .await?;
        match self
            .claim_by_agent(record, password.expose(), log, cancel)
            .await?
        {
            ByAgent::Done => Ok(true),
            ByAgent::Declined(why) => {
                let line = format!("{why}; running the playbook's per-user part instead");
                log.line(Tool::Agent, OutputStream::Stderr, &line).await;
                Ok(false)
            }
        }
    }

    /// Whether a claim of `record` runs the playbook's per-user part: a
    /// session user, a domain (the user's access), or a pool that asks
    /// for it always.
    pub(super) fn claim_runs_playbook(&self, record: &SessionRecord) -> bool {
        self.pool_always_runs_playbook(record) || self.claim_has_per_user_work(record)
    }

    /// Whether a claim of `record` has per-user work: a local session
    /// user, or a domain whose user must be let in.
    pub(super) fn claim_has_per_user_work(&self, record: &SessionRecord) -> bool {
        self.inner.config.ansible.joins_domain() || !record.session_user.is_empty()
    }

    /// Whether `record`'s pool asks for the playbook's per-user part at
    /// every claim (`per_user_playbook = "always"`).
    pub(super) fn pool_always_runs_playbook(&self, record: &SessionRecord) -> bool {
        record
            .pool
            .as_ref()
            .and_then(|p| self.inner.config.pools.get(p))
            .is_some_and(|p| p.per_user_playbook == PerUserPlaybook::Always)
    }

    /// Moves the session from `stage` to `to` and follows it.
    async fn enter(
        &self,
        record: &SessionRecord,
        stage: &mut SessionState,
        to: SessionState,
        message: String,
    ) -> Result<(), StageError> {
        let event = self
            .inner
            .store
            .transition(&record.id, *stage, to, message, None)
            .await?;
        self.staged(record, &event);
        *stage = to;
        Ok(())
    }

    /// PROVISIONING: the VM, with Terraform; the module's outputs.
    async fn vm_stage(
        &self,
        record: &SessionRecord,
        log: &SessionLog,
        cancel: &CancellationToken,
        stage: &mut SessionState,
    ) -> Result<ModuleOutputs, StageError> {
        let config = &self.inner.config;
        let message = format!("creating VM {} with Terraform", record.vm_name);
        self.enter(record, stage, SessionState::Provisioning, message)
            .await?;
        let identity = Identity::ensure(&self.session_dir(&record.id), &record.vm_name)?;
        let log = &log.with_secrets(identity.secret_lines());
        let size = self.size_of(record);
        let vars = ContractVars {
            vm_name: record.vm_name.clone(),
            slot: record.slot,
            ssh_public_key: self.inner.ssh_public_key.clone(),
            ssh_host_private_key: identity.ssh_host_private_key.clone(),
            ssh_host_public_key: identity.ssh_host_public_key.clone(),
            template: record.template.clone(),
            cores: size.cores,
            memory_mb: u32::try_from(size.memory_mb).unwrap_or(u32::MAX),
            disk_gb: self.disk_gb_of(record, size.disk_gb).await?,
            session_id: record.id.clone(),
            // Built for nobody yet: labelled with its pool. The claim never
            // runs Terraform again, so nothing here forces a new VM.
            username: match &record.pool {
                Some(pool) if record.is_unclaimed() => format!("pool-{pool}"),
                _ => record.username.clone(),
            },
            deployment_id: self.inner.deployment.clone(),
            target_node: record.node.clone().unwrap_or_default(),
            vm_id: config.placement.vm_id(record.slot),
            restore_from: record.restore_from.clone().unwrap_or_default(),
        };
        let tf_dir = terraform::dir_of(&self.session_dir(&record.id));
        let terraform = self.terraform();
        terraform.init(&tf_dir, &vars, log, cancel).await?;
        if let Some(kept) = &record.restore_from {
            self.restore_disk(record, kept, log, cancel).await?;
        }
        self.clone_turn(record, log, cancel).await?;
        let applied = terraform.apply(&tf_dir, log, cancel).await;
        if let Err(err) = self.inner.store.end_clone(&record.id).await {
            tracing::warn!(session = %record.id, error = %err, "could not record the end of a clone");
        }
        // Whatever the apply made, any server can now destroy.
        self.keep_terraform(&record.id, &tf_dir).await;
        let mut outputs = applied?;
        outputs.vm.rdp_cert_sha256 = identity.rdp_cert_sha256;
        self.inner
            .store
            .set_outputs(&record.id, outputs.vm.clone())
            .await?;
        Ok(outputs)
    }

    /// Waits until fewer than `[placement] max_clones_per_node` clones run
    /// on the VM's node, and fewer than `max_clones_per_storage` from its
    /// storage (parallel linked clones from one storage time out on its
    /// lock), saying once in the session's events what it waits for.
    async fn clone_turn(
        &self,
        record: &SessionRecord,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        let policy = self.inner.config.placement.policy;
        let mut told = false;
        loop {
            match self.inner.store.begin_clone(&record.id, policy).await? {
                CloneTurn::Go => return Ok(()),
                CloneTurn::Wait(busy) if !told => {
                    told = true;
                    let node = record.node.as_deref().unwrap_or_default();
                    let line = match busy {
                        Busy::Node { clones } => format!(
                            "waiting for a clone turn on {node}: {clones} clones under way there, at most {} at once",
                            policy.max_clones_per_node
                        ),
                        Busy::Storage { storage, clones } => format!(
                            "waiting for a clone turn on storage {storage}: {clones} clones from it under way, at most {} at once",
                            policy.max_clones_per_storage
                        ),
                    };
                    log.line(Tool::Terraform, OutputStream::Stdout, &line).await;
                }
                CloneTurn::Wait(_) => {}
                CloneTurn::NodeDown(state) => {
                    let node = record.node.clone().unwrap_or_default();
                    return Err(StageError::NodeDown { node, state });
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(CLONE_TURN_POLL) => {}
                _ = cancel.cancelled() => return Err(StageError::Cancelled),
            }
        }
    }

    /// BOOTING: SSH answers and cloud-init is done, unless the module
    /// declares nothing to wait for.
    async fn boot_stage(
        &self,
        record: &SessionRecord,
        outputs: &ModuleOutputs,
        log: &SessionLog,
        cancel: &CancellationToken,
        stage: &mut SessionState,
    ) -> Result<(), StageError> {
        let config = &self.inner.config;
        let vm = &outputs.vm;
        let message = match outputs.boot_wait {
            BootWait::None => "the module declares nothing to wait for".into(),
            BootWait::Ssh => format!(
                "waiting for SSH on {}:{} and for cloud-init",
                vm.ssh_host, vm.ssh_port
            ),
        };
        self.enter(record, stage, SessionState::Booting, message)
            .await?;
        if outputs.boot_wait == BootWait::None {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + config.boot.timeout;
        boot::wait_for_ssh_banner(&vm.ssh_host, vm.ssh_port, deadline, cancel).await?;
        log.line(Tool::Ssh, OutputStream::Stdout, "SSH is up").await;
        boot::wait_for_cloud_init(
            &config.ssh,
            &vm.ssh_host,
            vm.ssh_port,
            &self.session_dir(&record.id),
            &record.vm_name,
            deadline,
            log,
            cancel,
        )
        .await?;
        Ok(())
    }

    /// CONFIGURING: the desktop and what makes it the user's (`phase`
    /// says which of the two, or both), with Ansible.
    #[allow(clippy::too_many_arguments)]
    async fn configure_stage(
        &self,
        record: &SessionRecord,
        vm: &VmOutputs,
        per_user: &PerUser<'_>,
        phase: Phase,
        log: &SessionLog,
        cancel: &CancellationToken,
        stage: &mut SessionState,
    ) -> Result<(), StageError> {
        let config = &self.inner.config;
        let message = match (phase, &record.pool) {
            (Phase::User, Some(pool)) => format!(
                "making {} {}'s with Ansible (the per-user part: the desktop came from warm pool '{pool}')",
                record.vm_name, record.username
            ),
            (Phase::Base, _) => format!(
                "configuring {} with Ansible (all but the per-user part)",
                record.vm_name
            ),
            _ => format!("configuring {} with Ansible", record.vm_name),
        };
        if *stage == SessionState::Configuring {
            // A claim its agent declined: already CONFIGURING.
            log.line(Tool::Ansible, OutputStream::Stdout, &message)
                .await;
        } else {
            self.enter(record, stage, SessionState::Configuring, message)
                .await?;
        }
        let ansible = Ansible {
            config: &config.ansible,
            ssh: &config.ssh,
        };
        let identity = Identity::ensure(&self.session_dir(&record.id), &record.vm_name)?;
        // Never in an event, should a tool print the agent's or a desktop's key.
        let key_lines = per_user
            .agent
            .as_ref()
            .map(|a| a.key_pem.as_str())
            .unwrap_or_default();
        let log = &log.with_secrets(
            key_lines
                .lines()
                .filter(|l| l.len() > 16)
                .chain(identity.secret_lines()),
        );
        let playbook_vars = PlaybookVars {
            session_id: &record.id,
            username: &record.username,
            vm_name: &record.vm_name,
            session_user: per_user.session_user,
            session_password_hash: per_user.session_password_hash,
            ad_join_password: config.secrets.ad_join_password.as_ref().map(|s| s.expose()),
            vm,
            agent: per_user.agent.as_ref(),
            identity: &identity,
            phase,
            clipboard: config.catalog.clipboard(&record.template),
        };
        ansible
            .configure(&self.session_dir(&record.id), &playbook_vars, log, cancel)
            .await?;
        Ok(())
    }

    /// The agent's settings and a certificate for session `id` alone,
    /// valid a day longer than the longest a desktop may live.
    fn agent_vars(&self, id: &str) -> Result<Option<AgentVars>, StageError> {
        let config = &self.inner.config;
        let (Some(endpoint), Some(authority)) = (&config.agent.endpoint, &self.inner.agent_ca)
        else {
            return Ok(None);
        };
        let longest = config
            .policies
            .templates
            .values()
            .filter_map(|o| o.max_lifetime)
            .chain([config.policies.default.max_lifetime])
            .max()
            .unwrap_or_default();
        let days = u32::try_from(longest.as_secs() / 86_400 + 1).unwrap_or(u32::MAX);
        let issued = authority
            .ca
            .issue_agent(id, &crate::pki::Validity::days(days))?;
        let (subject, fingerprint) = issued.subject_and_fingerprint();
        self.inner.audit.spawn_record(
            crate::audit::Actor::internal("server"),
            crate::audit::Act::new("issue_certificate")
                .session(id, "")
                .detail(format!(
                    "agent certificate \"{subject}\" sha256 {fingerprint}, valid {days} days"
                )),
        );
        Ok(Some(AgentVars {
            endpoint: endpoint.clone(),
            tls_server_name: config.agent.tls_server_name.clone(),
            binary: config.agent.binary.clone(),
            // What the agent checks the server's certificate with.
            ca_pem: authority.server_ca_pem.clone(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        }))
    }
}
