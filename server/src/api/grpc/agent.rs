//! `daas.v1.AgentService`: reports from the agents inside desktops. Each
//! agent's certificate names its session; a report about any other session,
//! or about a session that is gone, is refused and logged.

use std::{sync::Arc, time::Duration};

use daas_api::v1::{
    ReportActivityRequest, ReportActivityResponse, SessionEnding, SessionState,
    agent_service_server::AgentService,
};
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

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn report_activity(
        &self,
        request: Request<ReportActivityRequest>,
    ) -> Result<Response<ReportActivityResponse>, Status> {
        let caller = auth::caller(&request)?;
        let report = request.into_inner();
        let id = report.session_id.as_str();
        match &caller {
            Caller::Agent { session_id } if session_id == id => {}
            Caller::Local => {}
            _ => {
                tracing::warn!(
                    ?caller,
                    session = id,
                    "refused a report for another session"
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
                    "session {id}'s agent reports more often than {} times a minute; try again in {} s",
                    self.reports.per_minute(),
                    wait.as_secs().max(1)
                ),
                retry_after: Some(wait),
            }
            .into());
        }
        let refuse = |why: &str| {
            tracing::warn!(session = id, why, "refused an agent report");
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
