//! The command stream against an in-process `AgentService` on loopback and
//! a fake helper listening on a Unix socket in a temp folder: a command is
//! run and reported, a template without the helper, a helper's refusal, an
//! unknown command, the stream opened again after the server ends it or
//! fails, and the stream stopping when the session ends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use daas_agent::apply::{LocalUser, Request as HelperRequest};
use daas_agent::{AgentConfig, RunEnd};
use daas_api::v1::agent_command::Command;
use daas_api::v1::agent_service_server::{AgentService, AgentServiceServer};
use daas_api::v1::{
    AgentCommand, CommandOutcome, CreateLocalUser, ReceiveCommandsRequest, ReceiveCommandsResponse,
    ReportActivityRequest, ReportActivityResponse, ReportCommandRequest, ReportCommandResponse,
    SessionEnding,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

const HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
const LIMIT: Duration = Duration::from_secs(20);

/// What one `ReceiveCommands` call sends.
struct Script {
    items: Vec<Result<ReceiveCommandsResponse, Status>>,
    /// After the items: stay open (silent) rather than end the stream.
    stay_open: bool,
}

type CommandStream = Pin<Box<dyn Stream<Item = Result<ReceiveCommandsResponse, Status>> + Send>>;

/// Plays the scripts in turn (then streams that stay open and silent),
/// passes every request on; reports are accepted, activity reports get the
/// scripted replies (the last repeats).
struct FakeServer {
    scripts: Mutex<VecDeque<Script>>,
    activity: Mutex<VecDeque<ReportActivityResponse>>,
    /// `ReportCommand` calls to refuse (UNAVAILABLE) before accepting.
    report_failures: Mutex<u32>,
    opened: mpsc::UnboundedSender<ReceiveCommandsRequest>,
    reported: mpsc::UnboundedSender<ReportCommandRequest>,
}

#[tonic::async_trait]
impl AgentService for FakeServer {
    type ReceiveCommandsStream = CommandStream;

    async fn receive_commands(
        &self,
        request: Request<ReceiveCommandsRequest>,
    ) -> Result<Response<CommandStream>, Status> {
        let _ = self.opened.send(request.into_inner());
        let script = self
            .scripts
            .lock()
            .map_err(|_| Status::internal("poisoned"))?
            .pop_front()
            .unwrap_or(Script {
                items: Vec::new(),
                stay_open: true,
            });
        let items = tokio_stream::iter(script.items);
        let stream: CommandStream = if script.stay_open {
            Box::pin(tokio_stream::StreamExt::chain(
                items,
                tokio_stream::pending(),
            ))
        } else {
            Box::pin(items)
        };
        Ok(Response::new(stream))
    }

    async fn report_command(
        &self,
        request: Request<ReportCommandRequest>,
    ) -> Result<Response<ReportCommandResponse>, Status> {
        {
            let mut failures = self
                .report_failures
                .lock()
                .map_err(|_| Status::internal("poisoned"))?;
            if *failures > 0 {
                *failures -= 1;
                return Err(Status::unavailable("the store is busy"));
            }
        }
        let _ = self.reported.send(request.into_inner());
        Ok(Response::new(ReportCommandResponse {}))
    }

    async fn report_activity(
        &self,
        _: Request<ReportActivityRequest>,
    ) -> Result<Response<ReportActivityResponse>, Status> {
        let mut replies = self
            .activity
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        let reply = if replies.len() > 1 {
            replies.pop_front()
        } else {
            replies.front().cloned()
        };
        Ok(Response::new(reply.unwrap_or_else(|| interval(600))))
    }
}

fn interval(seconds: i64) -> ReportActivityResponse {
    ReportActivityResponse {
        report_interval: Some(prost_types::Duration { seconds, nanos: 0 }),
        ending: None,
    }
}

fn create_user(id: u64, name: &str) -> Result<ReceiveCommandsResponse, Status> {
    Ok(ReceiveCommandsResponse {
        command: Some(AgentCommand {
            id,
            command: Some(Command::CreateLocalUser(CreateLocalUser {
                name: name.into(),
                password_hash: HASH.into(),
            })),
        }),
    })
}

/// A running fake server; stops when dropped.
struct Running {
    addr: SocketAddr,
    opened: mpsc::UnboundedReceiver<ReceiveCommandsRequest>,
    reported: mpsc::UnboundedReceiver<ReportCommandRequest>,
    _stop: oneshot::Sender<()>,
}

async fn serve(scripts: Vec<Script>, activity: Vec<ReportActivityResponse>) -> Running {
    serve_failing_reports(scripts, activity, 0).await
}

async fn serve_failing_reports(
    scripts: Vec<Script>,
    activity: Vec<ReportActivityResponse>,
    report_failures: u32,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let (opened_tx, opened) = mpsc::unbounded_channel();
    let (reported_tx, reported) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let service = AgentServiceServer::new(FakeServer {
        scripts: Mutex::new(scripts.into()),
        activity: Mutex::new(activity.into()),
        report_failures: Mutex::new(report_failures),
        opened: opened_tx,
        reported: reported_tx,
    });
    let router = Server::builder().add_service(service);
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        addr,
        opened,
        reported,
        _stop: stop,
    }
}

/// A helper on a Unix socket: passes on each request line, answers with
/// `reply`.
struct FakeHelper {
    path: PathBuf,
    lines: mpsc::UnboundedReceiver<String>,
}

fn fake_helper(dir: &Path, reply: &'static str) -> FakeHelper {
    let path = dir.join("helper.sock");
    let listener = UnixListener::bind(&path).expect("bind the helper's socket");
    let (tx, lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let _ = BufReader::new(read).read_line(&mut line).await;
            let _ = tx.send(line);
            let _ = write.write_all(reply.as_bytes()).await;
        }
    });
    FakeHelper { path, lines }
}

fn config(addr: SocketAddr, helper_socket: PathBuf, dir: &Path) -> AgentConfig {
    AgentConfig {
        endpoint: format!("http://{addr}"),
        session_id: "session-1".into(),
        helper_socket,
        // No display of this machine is sampled or notified.
        x11_socket_dir: dir.to_owned(),
        ..AgentConfig::default()
    }
}

/// Runs the command stream alone until the returned sender fires.
fn start(config: AgentConfig) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let run = daas_agent::commands::run(config, async {
            let _ = stopped.await;
        });
        assert!(run.await.is_ok(), "the command stream did not start");
    });
    (stop, task)
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    match tokio::time::timeout(LIMIT, rx.recv()).await {
        Ok(Some(item)) => item,
        _ => panic!("no {what} in time"),
    }
}

async fn stop(stop: oneshot::Sender<()>, task: tokio::task::JoinHandle<()>) {
    let _ = stop.send(());
    let joined = tokio::time::timeout(Duration::from_secs(2), task).await;
    assert!(matches!(joined, Ok(Ok(()))), "shutdown is not prompt");
}

#[tokio::test]
async fn a_command_is_done_through_the_helper_and_reported() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut helper = fake_helper(dir.path(), "{\"ok\":true}\n");
    let mut server = serve(
        vec![Script {
            items: vec![create_user(7, "alice")],
            stay_open: true,
        }],
        Vec::new(),
    )
    .await;
    let (stopper, task) = start(config(server.addr, helper.path.clone(), dir.path()));

    let opened = next(&mut server.opened, "ReceiveCommands").await;
    assert_eq!(opened.session_id, "session-1");
    assert_eq!(opened.agent_version, env!("CARGO_PKG_VERSION"));
    let line = next(&mut helper.lines, "request to the helper").await;
    assert!(line.ends_with('\n'), "{line:?}");
    let request: Result<HelperRequest, _> = serde_json::from_str(&line);
    assert_eq!(
        request.ok(),
        Some(HelperRequest::CreateLocalUser(LocalUser {
            name: "alice".into(),
            password_hash: HASH.into(),
        }))
    );
    let report = next(&mut server.reported, "ReportCommand").await;
    assert_eq!(report.session_id, "session-1");
    assert_eq!(report.command_id, 7);
    assert_eq!(report.outcome(), CommandOutcome::Done);
    assert_eq!(report.message, "");
    stop(stopper, task).await;
    // One stream, kept open: not reopened.
    assert!(server.opened.try_recv().is_err());
}

#[tokio::test]
async fn a_report_the_server_cannot_take_is_tried_again() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let helper = fake_helper(dir.path(), "{\"ok\":true}\n");
    let mut server = serve_failing_reports(
        vec![Script {
            items: vec![create_user(12, "gina")],
            stay_open: true,
        }],
        Vec::new(),
        2,
    )
    .await;
    let (stopper, task) = start(config(server.addr, helper.path.clone(), dir.path()));
    let report = next(&mut server.reported, "ReportCommand").await;
    assert_eq!(
        (report.command_id, report.outcome()),
        (12, CommandOutcome::Done)
    );
    // Tried again on the same stream, not by reopening it.
    let mut opens = 0;
    while server.opened.try_recv().is_ok() {
        opens += 1;
    }
    assert_eq!(opens, 1);
    stop(stopper, task).await;
}

#[tokio::test]
async fn a_template_without_the_helper_says_unsupported() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut server = serve(
        vec![Script {
            items: vec![create_user(8, "bob")],
            stay_open: true,
        }],
        Vec::new(),
    )
    .await;
    let absent = dir.path().join("absent.sock");
    let (stopper, task) = start(config(server.addr, absent, dir.path()));
    let report = next(&mut server.reported, "ReportCommand").await;
    assert_eq!(report.command_id, 8);
    assert_eq!(report.outcome(), CommandOutcome::Unsupported);
    assert!(
        report.message.contains("no daas-agent-helper.socket"),
        "{}",
        report.message
    );
    stop(stopper, task).await;
}

#[tokio::test]
async fn the_helpers_refusal_is_a_failure_with_its_message() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut helper = fake_helper(
        dir.path(),
        "{\"ok\":false,\"error\":\"carol is a system account (uid 5): choose another session user\"}\n",
    );
    let mut server = serve(
        vec![Script {
            items: vec![create_user(9, "carol")],
            stay_open: true,
        }],
        Vec::new(),
    )
    .await;
    let (stopper, task) = start(config(server.addr, helper.path.clone(), dir.path()));
    let report = next(&mut server.reported, "ReportCommand").await;
    assert_eq!(report.command_id, 9);
    assert_eq!(report.outcome(), CommandOutcome::Failed);
    assert_eq!(
        report.message,
        "carol is a system account (uid 5): choose another session user"
    );
    assert!(helper.lines.try_recv().is_ok(), "the helper was not asked");
    stop(stopper, task).await;
}

#[tokio::test]
async fn an_unknown_command_is_unsupported_and_a_bad_one_failed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut helper = fake_helper(dir.path(), "{\"ok\":true}\n");
    let unknown = Ok(ReceiveCommandsResponse {
        command: Some(AgentCommand {
            id: 10,
            command: None,
        }),
    });
    let mut server = serve(
        vec![Script {
            items: vec![unknown, create_user(11, "root")],
            stay_open: true,
        }],
        Vec::new(),
    )
    .await;
    let (stopper, task) = start(config(server.addr, helper.path.clone(), dir.path()));
    let report = next(&mut server.reported, "ReportCommand").await;
    assert_eq!(report.command_id, 10);
    assert_eq!(report.outcome(), CommandOutcome::Unsupported);
    let report = next(&mut server.reported, "ReportCommand").await;
    assert_eq!(report.command_id, 11);
    assert_eq!(report.outcome(), CommandOutcome::Failed);
    assert!(
        report.message.contains("root is reserved"),
        "{}",
        report.message
    );
    assert!(!report.message.contains(HASH));
    assert!(helper.lines.try_recv().is_err(), "the helper was asked");
    stop(stopper, task).await;
}

#[tokio::test]
async fn the_stream_is_opened_again_after_the_server_ends_it_or_fails() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut helper = fake_helper(dir.path(), "{\"ok\":true}\n");
    let mut server = serve(
        vec![
            // Ends after one command.
            Script {
                items: vec![create_user(1, "dave")],
                stay_open: false,
            },
            // Fails at once.
            Script {
                items: vec![Err(Status::unavailable("restarting"))],
                stay_open: false,
            },
            Script {
                items: vec![create_user(2, "erin")],
                stay_open: true,
            },
        ],
        Vec::new(),
    )
    .await;
    let (stopper, task) = start(config(server.addr, helper.path.clone(), dir.path()));
    let first = next(&mut server.reported, "the first ReportCommand").await;
    assert_eq!(
        (first.command_id, first.outcome()),
        (1, CommandOutcome::Done)
    );
    let second = next(&mut server.reported, "the second ReportCommand").await;
    assert_eq!(
        (second.command_id, second.outcome()),
        (2, CommandOutcome::Done)
    );
    let mut opens = 0;
    while server.opened.try_recv().is_ok() {
        opens += 1;
    }
    assert_eq!(opens, 3);
    let mut names = Vec::new();
    while let Ok(line) = helper.lines.try_recv() {
        names.push(line.contains("\"dave\"") || line.contains("\"erin\""));
    }
    assert_eq!(names, [true, true]);
    stop(stopper, task).await;
}

#[tokio::test]
async fn commands_run_beside_the_reports_and_stop_when_the_session_ends() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut helper = fake_helper(dir.path(), "{\"ok\":true}\n");
    let mut server = serve(
        vec![Script {
            items: vec![create_user(3, "frank")],
            stay_open: true,
        }],
        vec![
            interval(1),
            interval(1),
            ReportActivityResponse {
                report_interval: None,
                ending: Some(SessionEnding {
                    message: "bye".into(),
                    at: None,
                }),
            },
        ],
    )
    .await;
    let config = config(server.addr, helper.path.clone(), dir.path());
    let end = tokio::time::timeout(LIMIT, daas_agent::run(config, std::future::pending()))
        .await
        .expect("run ends in time")
        .expect("run");
    assert_eq!(
        end,
        RunEnd::Ended {
            message: "bye".into()
        }
    );
    let report = server
        .reported
        .try_recv()
        .expect("the command was reported");
    assert_eq!(
        (report.command_id, report.outcome()),
        (3, CommandOutcome::Done)
    );
    assert!(helper.lines.try_recv().is_ok());
}
