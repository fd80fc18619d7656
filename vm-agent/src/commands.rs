//! The command stream: the server's work for this desktop (a claim's
//! per-user part) arrives on `ReceiveCommands`; each command is done
//! through the root helper (`daas-agent --apply`, see [`crate::apply`]) and
//! answered with `ReportCommand`. The stream is opened again when it ends
//! or fails, with backoff.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daas_api::v1::agent_command::Command;
use daas_api::v1::agent_service_client::AgentServiceClient;
use daas_api::v1::{AgentCommand, CommandOutcome, ReceiveCommandsRequest, ReportCommandRequest};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tonic::Code;
use tonic::transport::{Channel, Uri};

use crate::AGENT_VERSION;
use crate::apply::{LocalUser, Reply, Request};
use crate::channel::{
    AgentError, ConnectError, checked_uri, connect, doubling, retry_after, status_text, with_jitter,
};
use crate::config::AgentConfig;
use crate::sssd_access::DomainUser;

/// Reopening delays: 1 s doubling to 30 s, each plus up to half again of
/// jitter; back to 1 s after a stream that delivered (or lasted).
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// One exchange with the helper, connect to reply.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries at one `ReportCommand` (about half a minute in all) before the
/// stream is opened again: the server sends a command once, and its claim
/// waits for this outcome.
const REPORT_TRIES: u32 = 6;
/// The longest reply line read from the helper.
const MAX_REPLY: u64 = 64 * 1024;

/// Receives and runs commands until `shutdown` resolves. [`crate::run`]
/// runs the same beside the report loop; this is the stream alone.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let uri = checked_uri(&config)?;
    tokio::select! {
        biased;
        () = shutdown => Ok(()),
        never = command_loop(Arc::new(config), uri) => match never {},
    }
}

/// Opens the stream, runs what arrives, opens it again; forever.
pub(crate) async fn command_loop(config: Arc<AgentConfig>, uri: Uri) -> Infallible {
    let mut failures: u32 = 0;
    let mut told_unimplemented = false;
    loop {
        let opened = Instant::now();
        let mut delivered: u64 = 0;
        let result = receive(&config, &uri, &mut delivered).await;
        failures = failures_after(failures, delivered, opened.elapsed());
        let base = match &result {
            Ok(()) => backoff(failures),
            Err(failure) => failure.retry_base(failures),
        };
        let delay = with_jitter(base);
        let secs = delay.as_secs_f64();
        match result {
            Ok(()) => tracing::info!(
                "the command stream ended after {delivered} commands; reopening in {secs:.1}s"
            ),
            Err(StreamFailure::Status(status)) if status.code() == Code::Unimplemented => {
                if !told_unimplemented {
                    tracing::info!(
                        "the server sends no commands (it is older than this agent); \
                         asking again every {}s or so",
                        MAX_BACKOFF.as_secs()
                    );
                    told_unimplemented = true;
                }
            }
            Err(failure) => tracing::warn!(
                "command stream failed ({failures} in a row): {failure}; reopening in {secs:.1}s"
            ),
        }
        tokio::time::sleep(delay).await;
    }
}

/// The count of failures in a row once a stream has ended: one more, or
/// the first again after a stream that delivered or lasted.
fn failures_after(failures: u32, delivered: u64, lasted: Duration) -> u32 {
    if delivered > 0 || lasted > MAX_BACKOFF {
        1
    } else {
        failures.saturating_add(1)
    }
}

/// The reopening delay before jitter after `failures` failures in a row.
pub fn backoff(failures: u32) -> Duration {
    doubling(failures, MIN_BACKOFF, MAX_BACKOFF)
}

/// One stream: connect, open, run each command as it comes. `delivered`
/// counts the commands received.
async fn receive(
    config: &AgentConfig,
    uri: &Uri,
    delivered: &mut u64,
) -> Result<(), StreamFailure> {
    let mut client = connect(config, uri).await?;
    let request = ReceiveCommandsRequest {
        session_id: config.session_id.clone(),
        agent_version: AGENT_VERSION.to_owned(),
    };
    let mut stream = client
        .receive_commands(request)
        .await
        .map_err(StreamFailure::Status)?
        .into_inner();
    tracing::debug!("command stream open");
    while let Some(message) = stream.message().await.map_err(StreamFailure::Status)? {
        let Some(command) = message.command else {
            tracing::warn!("a message without a command on the command stream; ignored");
            continue;
        };
        *delivered += 1;
        handle(&mut client, config, command).await?;
    }
    Ok(())
}

/// Runs one command, logs it and reports what came of it.
async fn handle(
    client: &mut AgentServiceClient<Channel>,
    config: &AgentConfig,
    command: AgentCommand,
) -> Result<(), StreamFailure> {
    let id = command.id;
    let started = Instant::now();
    let kind = describe(command.command.as_ref());
    let (outcome, message) = execute(config, command.command).await;
    let took = started.elapsed().as_secs_f64();
    let word = outcome_word(outcome);
    if message.is_empty() {
        tracing::info!("command {id} {kind}: {word} in {took:.1}s");
    } else {
        tracing::info!("command {id} {kind}: {word} in {took:.1}s: {message}");
    }
    report(client, config, id, outcome, message).await
}

/// The command's kind and its target, for logs (never a secret).
fn describe(command: Option<&Command>) -> String {
    match command {
        Some(Command::CreateLocalUser(user)) => format!("create_local_user({})", user.name),
        Some(Command::AllowDomainUser(user)) => format!("allow_domain_user({})", user.name),
        None => "of an unknown kind".to_owned(),
    }
}

fn outcome_word(outcome: CommandOutcome) -> &'static str {
    match outcome {
        CommandOutcome::Done => "done",
        CommandOutcome::Failed => "failed",
        CommandOutcome::Unsupported => "unsupported",
        CommandOutcome::Unspecified => "unspecified",
    }
}

/// Does one command: its outcome and the message for the server (empty
/// when done).
pub async fn execute(config: &AgentConfig, command: Option<Command>) -> (CommandOutcome, String) {
    let request = match command {
        Some(Command::CreateLocalUser(user)) => Request::CreateLocalUser(LocalUser {
            name: user.name,
            password_hash: user.password_hash,
        }),
        Some(Command::AllowDomainUser(user)) => {
            Request::AllowDomainUser(DomainUser { name: user.name })
        }
        None => {
            return (
                CommandOutcome::Unsupported,
                format!(
                    "daas-agent {AGENT_VERSION} does not know this kind of command: \
                     the template's agent is older than the server"
                ),
            );
        }
    };
    if let Err(err) = request.validate() {
        return (CommandOutcome::Failed, err.to_string());
    }
    let secret = request.secret();
    match ask_helper(&config.helper_socket, &request, HELPER_TIMEOUT).await {
        Ok(Reply { ok: true, .. }) => (CommandOutcome::Done, String::new()),
        Ok(Reply {
            ok: false,
            error,
            unsupported,
        }) => {
            let mut error = error
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| "the helper failed without saying why".to_owned());
            // The helper never sends the hash back; masked all the same.
            if !secret.is_empty() {
                error = error.replace(secret, "<hash>");
            }
            let outcome = if unsupported {
                CommandOutcome::Unsupported
            } else {
                CommandOutcome::Failed
            };
            (outcome, error)
        }
        Err(err @ HelperError::Missing { .. }) => (CommandOutcome::Unsupported, err.to_string()),
        Err(err) => (CommandOutcome::Failed, err.to_string()),
    }
}

/// Why the helper gave no answer.
#[derive(Debug, Error)]
pub enum HelperError {
    #[error(
        "this template has no daas-agent-helper.socket ({}: {source}); \
         rebuild it with the vm-agent role",
        path.display()
    )]
    Missing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach the agent's helper at {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the exchange with the agent's helper failed: {0}")]
    Io(std::io::Error),
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    #[error("the agent's helper did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error(
        "the agent's helper closed the connection without an answer \
         (journalctl -u 'daas-agent-helper@*' says why)"
    )]
    NoReply,
    #[error("the agent's helper gave an answer that is not understood")]
    BadReply,
}

/// Sends `request` to the helper listening on `socket` and reads its
/// reply, within `timeout`.
pub async fn ask_helper(
    socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Reply, HelperError> {
    let line = request.to_line().map_err(HelperError::Encode)?;
    tokio::time::timeout(timeout, exchange(socket, &line))
        .await
        .map_err(|_| HelperError::Timeout(timeout))?
}

async fn exchange(socket: &Path, line: &str) -> Result<Reply, HelperError> {
    let mut stream = UnixStream::connect(socket).await.map_err(|source| {
        let path = socket.to_owned();
        match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                HelperError::Missing { path, source }
            }
            _ => HelperError::Connect { path, source },
        }
    })?;
    // A helper that ends before reading all (a reset) gave no answer.
    let closed = |err: std::io::Error| match err.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
            HelperError::NoReply
        }
        _ => HelperError::Io(err),
    };
    stream.write_all(line.as_bytes()).await.map_err(closed)?;
    // The request is whole: the helper may read to the end.
    stream.shutdown().await.map_err(closed)?;
    let mut reader = BufReader::new(stream.take(MAX_REPLY));
    let mut reply = Vec::new();
    reader.read_until(b'\n', &mut reply).await.map_err(closed)?;
    if reply.iter().all(u8::is_ascii_whitespace) {
        return Err(HelperError::NoReply);
    }
    serde_json::from_slice(&reply).map_err(|_| HelperError::BadReply)
}

/// Reports one outcome, with a few tries; `NOT_FOUND` (the server no
/// longer waits for it) is not a failure.
async fn report(
    client: &mut AgentServiceClient<Channel>,
    config: &AgentConfig,
    id: u64,
    outcome: CommandOutcome,
    message: String,
) -> Result<(), StreamFailure> {
    let request = ReportCommandRequest {
        session_id: config.session_id.clone(),
        command_id: id,
        outcome: outcome.into(),
        message,
    };
    let mut tries: u32 = 0;
    loop {
        tries += 1;
        let status = match client.report_command(request.clone()).await {
            Ok(_) => return Ok(()),
            Err(status) => status,
        };
        match status.code() {
            Code::NotFound => {
                tracing::info!(
                    "command {id}: the server no longer waits for it ({})",
                    status.message()
                );
                return Ok(());
            }
            Code::PermissionDenied | Code::Unauthenticated => {}
            _ if tries < REPORT_TRIES => {
                let hint = retry_after(&status, MAX_BACKOFF).unwrap_or_default();
                let delay = with_jitter(backoff(tries).max(hint));
                tracing::warn!(
                    "reporting command {id} failed: {}; again in {:.1}s",
                    status_text(&status),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            _ => {}
        }
        return Err(StreamFailure::Report { id, status });
    }
}

/// Why a stream ended other than by the server's closing it.
#[derive(Debug, Error)]
enum StreamFailure {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{}", status_text(.0))]
    Status(tonic::Status),
    #[error("cannot report command {id}: {}", status_text(.status))]
    Report { id: u64, status: tonic::Status },
}

impl StreamFailure {
    /// The delay before reopening, before jitter: a refusal (the session
    /// destroyed, a credential refused) or a server without the stream
    /// waits the longest.
    fn retry_base(&self, failures: u32) -> Duration {
        match self {
            StreamFailure::Status(status) | StreamFailure::Report { status, .. }
                if matches!(
                    status.code(),
                    Code::PermissionDenied | Code::Unauthenticated | Code::Unimplemented
                ) =>
            {
                MAX_BACKOFF
            }
            StreamFailure::Status(status) | StreamFailure::Report { status, .. }
                if status.code() == Code::ResourceExhausted =>
            {
                let hint = retry_after(status, MAX_BACKOFF).unwrap_or_default();
                backoff(failures).max(hint)
            }
            _ => backoff(failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use daas_api::v1::{AllowDomainUser, CreateLocalUser};
    use tokio::net::UnixListener;

    use super::*;

    const HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    fn create(name: &str, hash: &str) -> Option<Command> {
        Some(Command::CreateLocalUser(CreateLocalUser {
            name: name.into(),
            password_hash: hash.into(),
        }))
    }

    #[test]
    fn backoff_doubles_to_half_a_minute() {
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn a_stream_that_delivered_or_lasted_resets_the_backoff() {
        let short = Duration::from_secs(1);
        assert_eq!(failures_after(0, 0, short), 1);
        assert_eq!(failures_after(4, 0, short), 5);
        assert_eq!(failures_after(4, 1, short), 1);
        assert_eq!(failures_after(4, 0, Duration::from_secs(600)), 1);
        assert_eq!(failures_after(u32::MAX, 0, short), u32::MAX);
    }

    #[test]
    fn refusals_and_old_servers_wait_the_longest() {
        for status in [
            tonic::Status::permission_denied("destroyed"),
            tonic::Status::unimplemented("old"),
        ] {
            assert_eq!(StreamFailure::Status(status).retry_base(1), MAX_BACKOFF);
        }
        let down = StreamFailure::Status(tonic::Status::unavailable("down"));
        assert_eq!(down.retry_base(1), MIN_BACKOFF);
        let mut busy = tonic::Status::resource_exhausted("busy");
        busy.metadata_mut().insert(
            "retry-after",
            tonic::metadata::MetadataValue::from_static("7"),
        );
        assert_eq!(
            StreamFailure::Status(busy).retry_base(1),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn logs_name_the_login_not_the_hash() {
        let text = describe(create("alice", HASH).as_ref());
        assert_eq!(text, "create_local_user(alice)");
        assert_eq!(describe(None), "of an unknown kind");
    }

    /// A helper on a socket in a temp dir that answers each connection
    /// with `reply` and hands back the request lines it read.
    fn answering_helper(
        reply: &'static str,
    ) -> (
        tempfile::TempDir,
        AgentConfig,
        tokio::task::JoinHandle<String>,
    ) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("helper.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let served = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            stream.read_line(&mut line).await.expect("read the request");
            stream
                .get_mut()
                .write_all(reply.as_bytes())
                .await
                .expect("reply");
            line
        });
        let config = AgentConfig {
            helper_socket: path,
            ..AgentConfig::default()
        };
        (dir, config, served)
    }

    #[tokio::test]
    async fn a_domain_user_goes_to_the_helper_and_its_unsupported_comes_back() {
        let allow = Some(Command::AllowDomainUser(AllowDomainUser {
            name: "Alice".into(),
        }));
        assert_eq!(describe(allow.as_ref()), "allow_domain_user(Alice)");
        let (_dir, config, served) =
            answering_helper("{\"ok\":false,\"error\":\"no template\",\"unsupported\":true}\n");
        let (outcome, message) = execute(&config, allow.clone()).await;
        assert_eq!(
            (outcome, message.as_str()),
            (CommandOutcome::Unsupported, "no template")
        );
        let line = served.await.unwrap_or_default();
        assert_eq!(line, "{\"allow_domain_user\":{\"name\":\"Alice\"}}\n");
        // A failure the helper does not call unsupported fails.
        let (_dir, config, _served) =
            answering_helper("{\"ok\":false,\"error\":\"systemctl failed\"}\n");
        let (outcome, message) = execute(&config, allow).await;
        assert_eq!(
            (outcome, message.as_str()),
            (CommandOutcome::Failed, "systemctl failed")
        );
        // A bad name never reaches the helper.
        let bad = Some(Command::AllowDomainUser(AllowDomainUser {
            name: "a@b".into(),
        }));
        let (outcome, _) = execute(&AgentConfig::default(), bad).await;
        assert_eq!(outcome, CommandOutcome::Failed);
    }

    #[tokio::test]
    async fn a_bad_command_fails_before_the_helper() {
        let config = AgentConfig {
            helper_socket: "/nonexistent/helper.sock".into(),
            ..AgentConfig::default()
        };
        let (outcome, message) = execute(&config, create("root", HASH)).await;
        assert_eq!(outcome, CommandOutcome::Failed);
        assert!(message.contains("root is reserved"), "{message}");
        let (outcome, message) = execute(&config, create("alice", "secret")).await;
        assert_eq!(outcome, CommandOutcome::Failed);
        assert!(!message.contains("secret"), "{message}");
        // A good one, with no helper: unsupported.
        let (outcome, message) = execute(&config, create("alice", HASH)).await;
        assert_eq!(outcome, CommandOutcome::Unsupported);
        assert!(message.contains("no daas-agent-helper.socket"), "{message}");
        let (outcome, _) = execute(&config, None).await;
        assert_eq!(outcome, CommandOutcome::Unsupported);
    }

    #[tokio::test]
    async fn a_silent_helper_times_out_and_a_mute_one_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("helper.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let request = Request::CreateLocalUser(LocalUser {
            name: "alice".into(),
            password_hash: HASH.into(),
        });
        // Accepts and holds the connection without a word.
        let held = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (stream2, _) = listener.accept().await.expect("accept");
            drop(stream2);
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(stream);
        });
        let err = ask_helper(&path, &request, Duration::from_millis(300)).await;
        assert!(matches!(err, Err(HelperError::Timeout(_))), "{err:?}");
        // Closed without a reply.
        let err = ask_helper(&path, &request, Duration::from_secs(5)).await;
        assert!(matches!(err, Err(HelperError::NoReply)), "{err:?}");
        held.abort();
        let _ = held.await;
        // A socket file nobody listens on: refused, as if missing.
        let err = ask_helper(&path, &request, Duration::from_secs(5)).await;
        assert!(matches!(err, Err(HelperError::Missing { .. })), "{err:?}");
    }
}
