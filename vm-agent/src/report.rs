//! The report loop: sample, send `ReportActivity`, sleep the interval the
//! server chose; retry with backoff when the server is away; stop when the
//! server says the session is ending.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use daas_api::v1::agent_service_client::AgentServiceClient;
use daas_api::v1::{ReportActivityRequest, ReportActivityResponse};
use thiserror::Error;
use tonic::Code;
use tonic::transport::{Channel, Uri};

pub use crate::channel::{AgentError, with_jitter};
use crate::channel::{ConnectError, checked_uri, connect, doubling, retry_after, status_text};
use crate::config::AgentConfig;
use crate::sample::{Activity, sample, sample_without_x};
use crate::{AGENT_VERSION, commands, notify};

/// The interval before the server has chosen one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// Bounds on the interval the server chooses.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_INTERVAL: Duration = Duration::from_secs(600);
/// Retry delays: 1 s doubling to 60 s, each plus up to half again of
/// random jitter (so desktops do not come back all at once).
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// One sample; past it the agent reports without the X displays.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(15);

/// How [`run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The `shutdown` future resolved.
    Shutdown,
    /// The server said the session is ending; the users were notified and
    /// reporting stopped.
    Ended { message: String },
}

/// Reports until `shutdown` resolves or the server says the session is
/// ending (then notifies the users and returns `Ok(RunEnd::Ended)`).
/// Beside it, the command stream ([`commands`]) runs until either happens.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunEnd, AgentError> {
    let uri = checked_uri(&config)?;
    let config = Arc::new(config);
    tokio::select! {
        biased;
        () = shutdown => Ok(RunEnd::Shutdown),
        end = report_loop(Arc::clone(&config), uri.clone()) => Ok(end),
        never = commands::command_loop(config, uri) => match never {},
    }
}

/// Reports forever, or until the session ends.
async fn report_loop(config: Arc<AgentConfig>, uri: Uri) -> RunEnd {
    let mut client = None;
    let mut interval = DEFAULT_INTERVAL;
    let mut failures: u32 = 0;
    let mut displays: Option<u32> = None;
    // The last notice shown to the users, so it is shown once.
    let mut notice: Option<String> = None;
    tracing::info!(
        "daas-agent {AGENT_VERSION}: reporting session {} to {}",
        config.session_id,
        config.endpoint
    );
    loop {
        let activity = take_sample(&config).await;
        if displays != Some(activity.displays) {
            // Once per change, so an idle time "since boot" is explained.
            tracing::info!(
                "X displays answering: {} (DAAS_AGENT_LOG=debug shows why one does not)",
                activity.displays
            );
            displays = Some(activity.displays);
        }
        match report(&mut client, &config, &uri, &activity).await {
            Ok(reply) => {
                if failures > 0 {
                    tracing::info!("report accepted after {failures} failed attempts");
                }
                failures = 0;
                let chosen = reply
                    .report_interval
                    .and_then(|d| Duration::try_from(d).ok())
                    .map(clamp_interval);
                if let Some(chosen) = chosen.filter(|c| *c != interval) {
                    tracing::info!("report interval: {}s", chosen.as_secs());
                    interval = chosen;
                }
                tracing::debug!(
                    idle = activity.idle_seconds,
                    rdp_clients = activity.rdp_clients,
                    users = ?activity.users,
                    displays = activity.displays,
                    "reported"
                );
                match reply.ending {
                    // Being destroyed now: say so, then stop reporting.
                    Some(ending) if !in_future(ending.at.as_ref()) => {
                        tracing::warn!("the session is ending: {}", ending.message);
                        notify::notify_users(&config, &ending.message).await;
                        return RunEnd::Ended {
                            message: ending.message,
                        };
                    }
                    // Due later: warn once, keep reporting (input cancels it).
                    Some(ending) => {
                        if notice.as_deref() != Some(ending.message.as_str()) {
                            tracing::warn!("the session is due to end: {}", ending.message);
                            notify::notify_users(&config, &ending.message).await;
                            notice = Some(ending.message);
                        }
                    }
                    None => notice = None,
                }
                tokio::time::sleep(interval).await;
            }
            Err(failure) => {
                client = None;
                failures = failures.saturating_add(1);
                let delay = with_jitter(failure.retry_base(failures));
                tracing::warn!(
                    "report failed ({failures} in a row): {failure}; next try in {:.1}s",
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Whether `at` is more than a second ahead (a missing time is "now").
fn in_future(at: Option<&prost_types::Timestamp>) -> bool {
    let Some(at) = at else { return false };
    let Ok(secs) = u64::try_from(at.seconds) else {
        return false;
    };
    let at = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    at.duration_since(std::time::SystemTime::now())
        .is_ok_and(|ahead| ahead > Duration::from_secs(1))
}

/// A sample taken off the async threads, bounded in time.
async fn take_sample(config: &Arc<AgentConfig>) -> Activity {
    let shared = Arc::clone(config);
    let task = tokio::task::spawn_blocking(move || sample(&shared));
    match tokio::time::timeout(SAMPLE_TIMEOUT, task).await {
        Ok(Ok(activity)) => activity,
        Ok(Err(err)) => {
            tracing::warn!("sampling failed ({err}); reporting without the X displays");
            sample_without_x(config)
        }
        Err(_) => {
            tracing::warn!(
                "sampling took more than {}s; reporting without the X displays",
                SAMPLE_TIMEOUT.as_secs()
            );
            sample_without_x(config)
        }
    }
}

/// The request for `activity`.
pub fn request(config: &AgentConfig, activity: &Activity) -> ReportActivityRequest {
    ReportActivityRequest {
        session_id: config.session_id.clone(),
        idle_seconds: activity.idle_seconds,
        rdp_clients: activity.rdp_clients,
        users: activity.users.clone(),
        agent_version: AGENT_VERSION.to_owned(),
        boot_time: Some(prost_types::Timestamp::from(activity.boot_time)),
        displays: activity.displays,
    }
}

/// `interval` within [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
pub fn clamp_interval(interval: Duration) -> Duration {
    interval.clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// The retry delay before jitter after `failures` failures in a row.
pub fn backoff(failures: u32) -> Duration {
    doubling(failures, MIN_BACKOFF, MAX_BACKOFF)
}

/// Sends one report, connecting first when there is no connection.
async fn report(
    client: &mut Option<AgentServiceClient<Channel>>,
    config: &AgentConfig,
    uri: &Uri,
    activity: &Activity,
) -> Result<ReportActivityResponse, Failure> {
    let mut connected = match client.take() {
        Some(connected) => connected,
        None => connect(config, uri).await?,
    };
    let reply = connected
        .report_activity(request(config, activity))
        .await
        .map_err(Failure::Status)?;
    *client = Some(connected);
    Ok(reply.into_inner())
}

/// Why one report did not go through.
#[derive(Debug, Error)]
enum Failure {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", status_text(.0))]
    Status(tonic::Status),
}

impl Failure {
    /// The delay before the next try, before jitter. A refusal (the
    /// session destroyed, or a credential the server does not accept)
    /// waits the longest: the session may be in recovery, or the files
    /// about to be replaced.
    fn retry_base(&self, failures: u32) -> Duration {
        match self {
            Failure::Status(status)
                if matches!(
                    status.code(),
                    Code::PermissionDenied | Code::Unauthenticated
                ) =>
            {
                MAX_BACKOFF
            }
            Failure::Status(status) if status.code() == Code::ResourceExhausted => {
                backoff(failures).max(retry_after(status, MAX_INTERVAL).unwrap_or_default())
            }
            _ => backoff(failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0), MIN_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn refusals_wait_the_longest() {
        let denied = Failure::Status(tonic::Status::permission_denied("session destroyed"));
        assert_eq!(denied.retry_base(1), MAX_BACKOFF);
        let unauthenticated = Failure::Status(tonic::Status::unauthenticated("no"));
        assert_eq!(unauthenticated.retry_base(1), MAX_BACKOFF);
        let unavailable = Failure::Status(tonic::Status::unavailable("down"));
        assert_eq!(unavailable.retry_base(1), MIN_BACKOFF);
        let mut busy = tonic::Status::resource_exhausted("busy");
        busy.metadata_mut().insert(
            "retry-after",
            tonic::metadata::MetadataValue::from_static("7"),
        );
        assert_eq!(Failure::Status(busy).retry_base(1), Duration::from_secs(7));
    }

    #[test]
    fn intervals_are_clamped() {
        assert_eq!(clamp_interval(Duration::ZERO), MIN_INTERVAL);
        assert_eq!(
            clamp_interval(Duration::from_secs(45)),
            Duration::from_secs(45)
        );
        assert_eq!(clamp_interval(Duration::from_secs(86_400)), MAX_INTERVAL);
    }

    #[test]
    fn the_request_carries_the_sample() {
        let config = AgentConfig {
            session_id: "s-1".into(),
            ..AgentConfig::default()
        };
        let boot = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let activity = Activity {
            idle_seconds: 42,
            rdp_clients: 2,
            users: vec!["alice".into()],
            displays: 1,
            boot_time: boot,
        };
        let request = request(&config, &activity);
        assert_eq!(request.session_id, "s-1");
        assert_eq!(request.idle_seconds, 42);
        assert_eq!(request.rdp_clients, 2);
        assert_eq!(request.users, ["alice"]);
        assert_eq!(request.displays, 1);
        assert_eq!(request.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(request.boot_time.map(|t| t.seconds), Some(1_700_000_000));
    }

    #[tokio::test]
    async fn bad_configurations_are_errors_at_start() {
        let base = AgentConfig {
            endpoint: "https://127.0.0.1:1".into(),
            session_id: "s".into(),
            ..AgentConfig::default()
        };
        let run_with = |config| run(config, std::future::pending::<()>());
        let err = run_with(AgentConfig {
            endpoint: "nonsense".into(),
            ..base.clone()
        })
        .await;
        assert!(matches!(err, Err(AgentError::BadEndpoint { .. })));
        let err = run_with(base.clone()).await;
        assert!(matches!(
            err,
            Err(AgentError::MissingCredential { key: "ca", .. })
        ));
        let err = run_with(AgentConfig {
            session_id: String::new(),
            ..base
        })
        .await;
        assert!(matches!(err, Err(AgentError::NoSessionId)));
    }
}
