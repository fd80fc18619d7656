//! `daas.v1.AgentService`: reports from the agents inside desktops, and
//! the work the server asks of them (`crate::provision::agent_commands`).
//! Each agent's certificate names its session; a call about any other
//! session, or about a session that is gone, is refused and logged.

use std::{pin::Pin, sync::Arc, time::Duration};

use daas_api::v1::{
    AgentCommand, CommandOutcome, ReceiveCommandsRequest, ReceiveCommandsResponse,
    ReportActivityRequest, ReportActivityResponse, ReportCommandRequest, ReportCommandResponse,
    SessionEnding, SessionState, agent_service_server::AgentService,
};
use futures_util::Stream;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::{
    api::grpc::auth,
    config::Config,
    domain::error::Error,
    domain::identity::Caller,
    domain::time::{clock_time, now_ms, timestamp},
    domain::validate,
    sessions::limits::Buckets,
    store::{AgentReport, Store, reports::Reports},
};

/// Most users a report may list, and the longest name or version.
const MAX_USERS: usize = 64;
const MAX_TEXT: usize = 64;

/// The gRPC service agents call.
pub struct AgentApi {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Reports per session: an agent (or whoever holds its credential in
    /// the desktop) cannot make the server write as fast as it can ask.
    pub reports: Buckets,
    /// Writes the reports, many in one write under load.
    pub writer: Reports,
}

impl AgentApi {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> AgentApi {
        // Four times the rate agents are told, at least 6 a minute, and a
        // burst for an agent restarting.
        let interval = config.agent.report_interval.as_secs().max(1);
        let per_minute = u32::try_from((4 * 60 / interval).max(6)).unwrap_or(u32::MAX);
        AgentApi {
            reports: Buckets::new(per_minute, REPORT_BURST),
            writer: Reports::start(store.clone()),
            config,
            store,
            metrics,
        }
    }
}

/// Reports a session's agent may send at once before the rate applies.
const REPORT_BURST: u32 = 10;

/// How often a command stream looks in the store when no event of its
/// session came. A claim's command wakes it at once, through the claim's
/// CONFIGURING event (from any server: see `store::postgres::notify`); this
/// is for a notification lost, and long enough that a thousand idle
/// desktops' streams cost the store little.
const COMMAND_POLL: Duration = Duration::from_secs(10);

/// The longest message an agent's command report may carry.
const MAX_MESSAGE: usize = 1024;

/// The stream of commands an agent receives.
pub type CommandStream =
    Pin<Box<dyn Stream<Item = Result<ReceiveCommandsResponse, Status>> + Send>>;

impl AgentApi {
    /// The session an agent's call is about, once its caller may make it:
    /// its own certificate's session, existing and not over, within the
    /// session's rate.
    async fn own_session(
        &self,
        caller: &Caller,
        id: &str,
        what: &str,
    ) -> Result<crate::store::SessionRecord, Status> {
        match caller {
            Caller::Agent { session_id } if session_id == id => {}
            Caller::Local => {}
            _ => {
                tracing::warn!(
                    ?caller,
                    session = id,
                    what,
                    "refused an agent call for another session"
                );
                return Err(Error::PermissionDenied(
                    "this agent certificate is for another session".into(),
                )
                .into());
            }
        }
        validate::session_id(id)?;
        if let Err(wait) = self.reports.take(id) {
            return Err(Error::ResourceExhausted {
                message: format!(
                    "session {id}'s agent calls more often than {} times a minute; try again in {} s",
                    self.reports.per_minute(),
                    wait.as_secs().max(1)
                ),
                retry_after: Some(wait),
            }
            .into());
        }
        let refuse = |why: &str| {
            tracing::warn!(session = id, why, what, "refused an agent call");
            Status::from(Error::PermissionDenied(format!("session {id} {why}")))
        };
        let record = self
            .store
            .get(id)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| refuse("does not exist"))?;
        if matches!(record.state, SessionState::Destroyed | SessionState::Failed) {
            return Err(refuse(
                "is destroyed; this agent credential is no longer valid",
            ));
        }
        Ok(record)
    }
}

/// Sends session `id`'s commands as they come, until the agent goes away
/// or the session is over.
fn command_stream(store: crate::store::Store, id: String) -> CommandStream {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut events = store.subscribe(&id);
        loop {
            let taken = match store.take_commands(&id).await {
                Ok(taken) => taken,
                Err(err) => {
                    let _ = tx.send(Err(Status::from(Error::from(err)))).await;
                    return;
                }
            };
            for command in taken {
                let Ok(mut decoded) = AgentCommand::decode(command.body.as_slice()) else {
                    tracing::error!(session = %id, command = command.id, "a stored agent command is corrupt");
                    continue;
                };
                decoded.id = u64::try_from(command.id).unwrap_or_default();
                tracing::info!(session = %id, command = command.id, "sent a command to the agent");
                let message = ReceiveCommandsResponse {
                    command: Some(decoded),
                };
                if tx.send(Ok(message)).await.is_err() {
                    // The agent went away after the take: the claim waits
                    // for an outcome that does not come, and gives up.
                    tracing::warn!(session = %id, command = command.id, "the agent's stream closed before a command reached it");
                    return;
                }
            }
            tokio::select! {
                () = tx.closed() => return,
                event = tokio::time::timeout(COMMAND_POLL, events.recv()) => match event {
                    Ok(Ok(event)) if matches!(event.state(), SessionState::Destroyed | SessionState::Failed) => return,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
                    _ => {}
                },
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type ReceiveCommandsStream = CommandStream;

    async fn receive_commands(
        &self,
        request: Request<ReceiveCommandsRequest>,
    ) -> Result<Response<CommandStream>, Status> {
        let caller = auth::caller(&request)?;
        let open = request.into_inner();
        let id = open.session_id;
        self.own_session(&caller, &id, "receive commands").await?;
        tracing::debug!(session = %id, agent_version = %open.agent_version.chars().take(MAX_TEXT).collect::<String>(), "an agent opened its command stream");
        Ok(Response::new(command_stream(self.store.clone(), id)))
    }

    async fn report_command(
        &self,
        request: Request<ReportCommandRequest>,
    ) -> Result<Response<ReportCommandResponse>, Status> {
        let caller = auth::caller(&request)?;
        let report = request.into_inner();
        let id = report.session_id.as_str();
        self.own_session(&caller, id, "report a command").await?;
        let outcome = match CommandOutcome::try_from(report.outcome) {
            Ok(CommandOutcome::Unspecified) | Err(_) => {
                return Err(Error::InvalidArgument {
                    field: "outcome",
                    why: "must be DONE, FAILED or UNSUPPORTED".into(),
                }
                .into());
            }
            Ok(outcome) => outcome,
        };
        let message: String = report.message.chars().take(MAX_MESSAGE).collect();
        let command = i64::try_from(report.command_id).unwrap_or(i64::MAX);
        let found = self
            .store
            .finish_command(id, command, outcome, &message)
            .await
            .map_err(Error::from)?;
        if !found {
            return Err(Error::NotFound(format!(
                "session {id} has no command {} waiting for an outcome (withdrawn, or reported already)",
                report.command_id
            ))
            .into());
        }
        tracing::info!(
            session = id,
            command,
            outcome = outcome.as_str_name(),
            "the agent reported a command"
        );
        Ok(Response::new(ReportCommandResponse {}))
    }

    async fn report_activity(
        &self,
        request: Request<ReportActivityRequest>,
    ) -> Result<Response<ReportActivityResponse>, Status> {
        let caller = auth::caller(&request)?;
        let report = request.into_inner();
        let id = report.session_id.as_str();
        let record = self.own_session(&caller, id, "report activity").await?;
        if report.users.len() > MAX_USERS
            || report.users.iter().any(|u| u.chars().count() > MAX_TEXT)
            || report.agent_version.chars().count() > MAX_TEXT
        {
            return Err(Error::InvalidArgument {
                field: "users",
                why: format!(
                    "lists more than {MAX_USERS} users or a name over {MAX_TEXT} characters"
                ),
            }
            .into());
        }
        let idle_ms = i64::try_from(report.idle_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.writer
            .record(
                id,
                AgentReport {
                    idle_ms,
                    rdp_clients: report.rdp_clients,
                    users: report.users,
                    agent_version: report.agent_version,
                },
            )
            .await
            .map_err(Error::from)?;
        self.metrics.agent_report();
        let ending = match (record.state, record.activity.warned_reap_ms) {
            (SessionState::Destroying, _) => Some(SessionEnding {
                message: "This desktop is being destroyed now.".into(),
                at: Some(timestamp(now_ms())),
            }),
            (_, Some(at)) => Some(SessionEnding {
                message: format!(
                    "This desktop will be destroyed at {} unless it is used. Save your work.",
                    clock_time(at)
                ),
                at: Some(timestamp(at)),
            }),
            _ => None,
        };
        Ok(Response::new(ReportActivityResponse {
            report_interval: Some(duration(self.config.agent.report_interval)),
            ending,
        }))
    }
}
