//! A claim's per-user part through the desktop's agent, instead of SSH and
//! Ansible: the claim pushes a command to the store, the agent's
//! `ReceiveCommands` stream (on whichever server holds it) takes it, the
//! agent does it through its root helper and reports. An agent that does
//! not take the command within [`PICKUP`] (none connected, an old agent)
//! or that cannot do it (UNSUPPORTED: a template without the helper) lets
//! the claim run the playbook's per-user part as before.

use std::time::{Duration, Instant};

use daas_api::v1::{
    AgentCommand, AllowDomainUser, CommandOutcome, CreateLocalUser, OutputStream, Tool,
    agent_command,
};
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::{Pipeline, tool::SessionLog};
use crate::store::{
    SessionRecord, StoreError,
    commands::{CommandState, DropIf},
};

/// How long a command may wait for an agent to take it.
pub const PICKUP: Duration = Duration::from_secs(5);
/// How long a taken command may run before the claim gives up on it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the claim looks at the command.
const POLL: Duration = Duration::from_millis(100);

/// Why the agent did not do a command it took.
#[derive(Debug, thiserror::Error)]
pub enum AgentCommandError {
    #[error("the desktop's agent could not set up {user}: {message}")]
    Failed { user: String, message: String },
    #[error(
        "the desktop's agent took the set-up of {user} but reported nothing in {} s; destroy the desktop and create another",
        RUN_TIMEOUT.as_secs()
    )]
    Timeout { user: String },
    #[error("the set-up of {user} was dropped from the store before its outcome was read")]
    Vanished { user: String },
    #[error("cancelled while the desktop's agent set up {user}")]
    Cancelled { user: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What came of asking the agent.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ByAgent {
    Done,
    /// Not done, and never will be: the playbook does it (why).
    Declined(String),
}

impl Pipeline {
    /// Whether a claim of `record` can be done by its agent: agents are
    /// on, the claim has per-user work (a local session user, or a domain
    /// user to let in), and the pool does not ask for the playbook always.
    pub(super) fn agent_can_claim(&self, record: &SessionRecord) -> bool {
        self.inner.agent_ca.is_some()
            && !self.pool_always_runs_playbook(record)
            && self.claim_has_per_user_work(record)
    }

    /// Waits for the first report of a warm pool's new desktop's agent, so
    /// that a claim right after READY finds its command stream open (the
    /// agent starts at the end of the playbook). Past
    /// `agent.first_report_wait` the desktop is READY anyway: its claim will use the playbook if the
    /// agent is still away. False: cancelled.
    pub(super) async fn await_first_report(
        &self,
        record: &SessionRecord,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<bool, StoreError> {
        let wait = self.inner.config.agent.first_report_wait;
        if wait.is_zero() {
            return Ok(true);
        }
        let started = Instant::now();
        loop {
            let reported = self
                .inner
                .store
                .get(&record.id)
                .await?
                .is_some_and(|r| r.activity.last_report_ms.is_some());
            if reported {
                let line = format!(
                    "the agent of {} reported after {:.1} s: a claim goes through it",
                    record.vm_name,
                    started.elapsed().as_secs_f64()
                );
                log.line(Tool::Agent, OutputStream::Stdout, &line).await;
                return Ok(true);
            }
            if started.elapsed() >= wait {
                let line = format!(
                    "the agent of {} has not reported in {} s; a claim runs the playbook's per-user part unless it comes",
                    record.vm_name,
                    wait.as_secs()
                );
                log.line(Tool::Agent, OutputStream::Stderr, &line).await;
                return Ok(true);
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(false),
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Has the desktop's agent do the claim's per-user part, one command
    /// after the other: the domain user let in, then the local login. The
    /// first declined one leaves the rest to the playbook, which does all
    /// of it again (each step is idempotent).
    pub(super) async fn claim_by_agent(
        &self,
        record: &SessionRecord,
        password_hash: &str,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<ByAgent, AgentCommandError> {
        let joins_domain = self.inner.config.ansible.joins_domain();
        for step in claim_commands(record, joins_domain, password_hash) {
            let command = AgentCommand {
                id: 0, // set when sent
                command: Some(step.command),
            };
            let started = Instant::now();
            match self
                .run_command(record, command, &step.user, &step.ask, log, cancel)
                .await?
            {
                ByAgent::Done => {
                    let line = format!(
                        "the agent {} in {:.1} s",
                        step.done,
                        started.elapsed().as_secs_f64()
                    );
                    log.line(Tool::Agent, OutputStream::Stdout, &line).await;
                }
                declined @ ByAgent::Declined(_) => return Ok(declined),
            }
        }
        Ok(ByAgent::Done)
    }

    /// Pushes `command` (`what` it asks of `user`, for the events), wakes
    /// the agent's stream and waits for the outcome.
    async fn run_command(
        &self,
        record: &SessionRecord,
        command: AgentCommand,
        user: &str,
        what: &str,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<ByAgent, AgentCommandError> {
        let store = &self.inner.store;
        let id = &record.id;
        let user = user.to_owned();
        // The stream names the command by its row's id when it sends it.
        let seq = store.push_command(id, command.encode_to_vec()).await?;
        // This event wakes the stream (on whichever server holds it).
        let line = format!("asked the agent of {} to {what}", record.vm_name);
        log.line(Tool::Agent, OutputStream::Stdout, &line).await;
        let started = Instant::now();
        let mut taken = false;
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    store.drop_command(id, seq, DropIf::Any).await?;
                    return Err(AgentCommandError::Cancelled { user });
                }
                () = tokio::time::sleep(POLL) => {}
            }
            match store.command_state(id, seq).await? {
                Some(CommandState::Waiting) if started.elapsed() >= PICKUP => {
                    if store.drop_command(id, seq, DropIf::Waiting).await? {
                        return Ok(ByAgent::Declined(format!(
                            "no agent of {} took the request to {what} within {} s",
                            record.vm_name,
                            PICKUP.as_secs()
                        )));
                    }
                }
                Some(CommandState::Waiting) => {}
                Some(CommandState::Sent) => {
                    taken = true;
                    if started.elapsed() >= RUN_TIMEOUT {
                        store.drop_command(id, seq, DropIf::Any).await?;
                        return Err(AgentCommandError::Timeout { user });
                    }
                }
                Some(CommandState::Done { outcome, message }) => {
                    store.drop_command(id, seq, DropIf::Any).await?;
                    return match outcome {
                        CommandOutcome::Done => Ok(ByAgent::Done),
                        CommandOutcome::Unsupported => Ok(ByAgent::Declined(format!(
                            "the agent of {} cannot: {message}",
                            record.vm_name
                        ))),
                        _ => Err(AgentCommandError::Failed { user, message }),
                    };
                }
                None => {
                    tracing::warn!(session = %id, command = seq, taken, "an agent command vanished");
                    return Err(AgentCommandError::Vanished { user });
                }
            }
        }
    }
}

/// One piece of a claim's per-user work.
struct ClaimStep {
    /// Whom it is for.
    user: String,
    /// What is asked ("create the local login student").
    ask: String,
    /// What was done ("created the local login student").
    done: String,
    command: agent_command::Command,
}

/// The per-user work of a claim of `record`, in order: on a desktop joined
/// to a domain, the requesting user let in (SSSD's access filter), then
/// the local session login when there is one. Empty: nothing per-user.
fn claim_commands(
    record: &SessionRecord,
    joins_domain: bool,
    password_hash: &str,
) -> Vec<ClaimStep> {
    let mut steps = Vec::new();
    if joins_domain {
        let name = record.username.clone();
        steps.push(ClaimStep {
            ask: format!("let the domain user {name} log in"),
            done: format!("let the domain user {name} log in"),
            user: name.clone(),
            command: agent_command::Command::AllowDomainUser(AllowDomainUser { name }),
        });
    }
    if !record.session_user.is_empty() {
        let name = record.session_user.clone();
        steps.push(ClaimStep {
            ask: format!("create the local login {name}"),
            done: format!("created the local login {name}"),
            user: name.clone(),
            command: agent_command::Command::CreateLocalUser(CreateLocalUser {
                name,
                password_hash: password_hash.to_string(),
            }),
        });
    }
    steps
}
