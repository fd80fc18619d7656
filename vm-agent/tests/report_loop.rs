//! The report loop against an in-process `AgentService` on loopback:
//! replies, the interval, the ending notice, retries while the server is
//! away, refusals, shutdown, and mutual TLS with `tls_server_name`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use daas_agent::{AgentConfig, RunEnd};
use daas_api::v1::agent_service_server::{AgentService, AgentServiceServer};
use daas_api::v1::{
    ReceiveCommandsRequest, ReceiveCommandsResponse, ReportActivityRequest, ReportActivityResponse,
    ReportCommandRequest, ReportCommandResponse, SessionEnding,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// Answers with the scripted replies in turn (the last one repeats) and
/// passes every request on.
struct FakeServer {
    replies: Mutex<VecDeque<Result<ReportActivityResponse, Status>>>,
    seen: mpsc::UnboundedSender<ReportActivityRequest>,
}

#[tonic::async_trait]
impl AgentService for FakeServer {
    type ReceiveCommandsStream = tokio_stream::Pending<Result<ReceiveCommandsResponse, Status>>;

    /// No commands: the stream stays open and silent.
    async fn receive_commands(
        &self,
        _: Request<ReceiveCommandsRequest>,
    ) -> Result<Response<Self::ReceiveCommandsStream>, Status> {
        Ok(Response::new(tokio_stream::pending()))
    }

    async fn report_command(
        &self,
        _: Request<ReportCommandRequest>,
    ) -> Result<Response<ReportCommandResponse>, Status> {
        Err(Status::not_found("no command was sent"))
    }

    async fn report_activity(
        &self,
        request: Request<ReportActivityRequest>,
    ) -> Result<Response<ReportActivityResponse>, Status> {
        let _ = self.seen.send(request.into_inner());
        let mut replies = self
            .replies
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        let reply = if replies.len() > 1 {
            replies.pop_front()
        } else {
            replies.front().cloned()
        };
        reply
            .unwrap_or_else(|| Ok(interval(600)))
            .map(Response::new)
    }
}

fn interval(seconds: i64) -> ReportActivityResponse {
    ReportActivityResponse {
        report_interval: Some(prost_duration(seconds)),
        ending: None,
    }
}

fn prost_duration(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

fn ending(message: &str) -> ReportActivityResponse {
    ReportActivityResponse {
        report_interval: Some(prost_duration(30)),
        ending: Some(SessionEnding {
            message: message.into(),
            at: None,
        }),
    }
}

fn due_later(message: &str) -> ReportActivityResponse {
    let in_ten_minutes = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 + 600)
        .unwrap_or(0);
    ReportActivityResponse {
        report_interval: Some(prost_duration(1)),
        ending: Some(SessionEnding {
            message: message.into(),
            at: Some(prost_types::Timestamp {
                seconds: in_ten_minutes,
                nanos: 0,
            }),
        }),
    }
}

/// A running fake server; stops when dropped.
struct Running {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<ReportActivityRequest>,
    _stop: oneshot::Sender<()>,
}

async fn serve(
    listener: TcpListener,
    replies: Vec<Result<ReportActivityResponse, Status>>,
    tls: Option<ServerTlsConfig>,
) -> Running {
    let addr = listener.local_addr().expect("local address");
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let service = AgentServiceServer::new(FakeServer {
        replies: Mutex::new(replies.into()),
        seen: seen_tx,
    });
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).expect("server TLS config");
    }
    let router = builder.add_service(service);
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        addr,
        seen,
        _stop: stop,
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback")
}

/// A configuration for `endpoint` that samples nothing of this machine's
/// displays (so no test notifies anybody's real desktop).
fn config(endpoint: String, empty_dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        endpoint,
        session_id: "session-1".into(),
        x11_socket_dir: empty_dir.to_owned(),
        ..AgentConfig::default()
    }
}

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_notice_for_later_does_not_stop_the_reports() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut server = serve(
        listener().await,
        vec![
            Ok(due_later("Destroyed at 14:05 unless used.")),
            Ok(due_later("Destroyed at 14:05 unless used.")),
            Ok(ending("bye")),
        ],
        None,
    )
    .await;
    let config = config(format!("http://{}", server.addr), dir.path());
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
    let mut reports = 0;
    while server.seen.try_recv().is_ok() {
        reports += 1;
    }
    assert_eq!(
        reports, 3,
        "the agent kept reporting after the notice for later"
    );
}

#[tokio::test]
async fn reports_at_the_servers_interval_until_the_session_ends() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut server = serve(
        listener().await,
        vec![
            Ok(interval(1)),
            Ok(interval(1)),
            Ok(ending("Ends at 14:05. Save your work.")),
        ],
        None,
    )
    .await;
    let config = config(format!("http://{}", server.addr), dir.path());
    let started = Instant::now();
    let end = tokio::time::timeout(LIMIT, daas_agent::run(config, std::future::pending()))
        .await
        .expect("run ends in time")
        .expect("run");
    assert_eq!(
        end,
        RunEnd::Ended {
            message: "Ends at 14:05. Save your work.".into()
        }
    );
    // Three reports, one second apart (the server's interval, not 30 s).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let mut requests = Vec::new();
    while let Ok(request) = server.seen.try_recv() {
        requests.push(request);
    }
    assert_eq!(requests.len(), 3);
    let first = &requests[0];
    assert_eq!(first.session_id, "session-1");
    assert_eq!(first.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(first.displays, 0);
    let boot = first.boot_time.expect("a boot time");
    assert!(boot.seconds > 1_000_000_000);
    // No display: idle since boot.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let since_boot = now.saturating_sub(u64::try_from(boot.seconds).unwrap_or_default());
    // (The first sample was taken when the run started.)
    let slack = took.as_secs() + 2;
    assert!(first.idle_seconds.abs_diff(since_boot) <= slack);
}

#[tokio::test]
async fn retries_until_the_server_comes_back() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // Reserve a port, then leave it closed: the server is away.
    let reserved = listener().await;
    let addr = reserved.local_addr().expect("local address");
    drop(reserved);
    let config = config(format!("http://{addr}"), dir.path());
    let agent = tokio::spawn(daas_agent::run(config, std::future::pending()));
    // The first tries fail (1 s, then 2 s of backoff, plus jitter).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!agent.is_finished());
    let listener = TcpListener::bind(addr)
        .await
        .expect("bind the reserved port");
    let mut server = serve(listener, vec![Ok(ending("bye"))], None).await;
    let end = tokio::time::timeout(LIMIT, agent)
        .await
        .expect("the agent reconnects in time")
        .expect("join")
        .expect("run");
    assert_eq!(
        end,
        RunEnd::Ended {
            message: "bye".into()
        }
    );
    assert!(server.seen.try_recv().is_ok());
}

#[tokio::test]
async fn a_refusal_is_retried_not_fatal_and_shutdown_stops_at_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut server = serve(
        listener().await,
        vec![Err(Status::permission_denied("session is destroyed"))],
        None,
    )
    .await;
    let config = config(format!("http://{}", server.addr), dir.path());
    let (stop, stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(daas_agent::run(config, async {
        let _ = stopped.await;
    }));
    let first = tokio::time::timeout(LIMIT, server.seen.recv()).await;
    assert!(matches!(first, Ok(Some(_))), "no report reached the server");
    // Refused: the agent waits (a minute or more) and keeps running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!agent.is_finished());
    let _ = stop.send(());
    let end = tokio::time::timeout(Duration::from_secs(2), agent)
        .await
        .expect("shutdown is prompt")
        .expect("join")
        .expect("run");
    assert_eq!(end, RunEnd::Shutdown);
    assert!(server.seen.try_recv().is_err(), "retried without waiting");
}

/// A CA, a server certificate for `localhost` and a client certificate,
/// as PEM files in `dir`.
struct Pki {
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    server: ServerTlsConfig,
}

fn pki(dir: &std::path::Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, purpose| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["agent.session-1.invalid".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    let server = ServerTlsConfig::new()
        .identity(Identity::from_pem(&server_cert, &server_key))
        .client_ca_root(Certificate::from_pem(ca_cert.pem()));
    Pki {
        ca: write("ca.pem", &ca_cert.pem()),
        cert: write("agent.pem", &client_cert),
        key: write("agent-key.pem", &client_key),
        server,
    }
}

#[tokio::test]
async fn mutual_tls_checks_the_configured_server_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pki = pki(dir.path());
    let mut server = serve(
        listener().await,
        vec![Ok(ending("tls ok"))],
        Some(pki.server.clone()),
    )
    .await;
    let tls_config = |name: Option<&str>| AgentConfig {
        ca: pki.ca.clone(),
        cert: pki.cert.clone(),
        key: pki.key.clone(),
        tls_server_name: name.map(str::to_owned),
        ..config(format!("https://{}", server.addr), dir.path())
    };

    // The certificate names localhost, not 127.0.0.1: without
    // tls_server_name the handshake fails and the agent keeps retrying.
    let (stop, stopped) = oneshot::channel::<()>();
    let agent = tokio::spawn(daas_agent::run(tls_config(None), async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!agent.is_finished());
    assert!(
        server.seen.try_recv().is_err(),
        "a report got through to the wrong name"
    );
    let _ = stop.send(());
    let end = agent.await.expect("join").expect("run");
    assert_eq!(end, RunEnd::Shutdown);

    // With the name the certificate holds, the report goes through.
    let end = tokio::time::timeout(
        LIMIT,
        daas_agent::run(tls_config(Some("localhost")), std::future::pending()),
    )
    .await
    .expect("run ends in time")
    .expect("run");
    assert_eq!(
        end,
        RunEnd::Ended {
            message: "tls ok".into()
        }
    );
    let request = server.seen.try_recv().expect("the server saw the report");
    assert_eq!(request.session_id, "session-1");
}

#[tokio::test]
async fn missing_credential_files_are_retried_not_fatal() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = AgentConfig {
        ca: dir.path().join("absent-ca.pem"),
        cert: dir.path().join("absent.pem"),
        key: dir.path().join("absent-key.pem"),
        ..config("https://127.0.0.1:9".into(), dir.path())
    };
    let result = tokio::time::timeout(
        Duration::from_millis(1500),
        daas_agent::run(config, std::future::pending()),
    )
    .await;
    assert!(result.is_err(), "run returned: {result:?}");
}
