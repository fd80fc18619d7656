//! Webhooks against receivers on this machine: READY, DESTROYED, FAILED
//! and IDLE_WARNING arrive signed with their fields; a receiver that is
//! down, one that is slow and one that fails once hold up neither the
//! pipeline nor the other webhooks, and the metrics count how each
//! delivery ended; HTTPS with the receiver's own CA; the secret and the
//! URL's path never show in the log, the events or the metrics; a delivery
//! a crash cut off is made by the next server (the outbox).

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::common::*;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    routing::post,
};
use daas_api::v1::{DestroySessionRequest, SessionState};
use daas_server::testkit::{TestOptions, TestServer};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

const KEY: &str = "whsec-test-5d1f9c";
const HTTP_TOML: &str = "[http]\nmetrics_listen = \"127.0.0.1:0\"\n";

/// How a receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    /// Sleeps this long first.
    Slow(Duration),
    /// 500 to the first request, 200 after.
    FailOnce,
}

/// One POST a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: String,
    at_ms: i64,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// Whether `X-Daas-Signature` is the HMAC of `<timestamp>.<body>`.
    fn signed_with(&self, key: &str) -> bool {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
        let message = format!("{}.{}", self.header("x-daas-timestamp"), self.body);
        let tag = ring::hmac::sign(&key, message.as_bytes());
        self.header("x-daas-signature") == format!("sha256={}", hex::encode(tag))
    }
}

#[derive(Clone)]
struct Inbox {
    answer: Answer,
    hits: Arc<Mutex<Vec<Hit>>>,
    requests: Arc<AtomicUsize>,
}

async fn receive(
    State(inbox): State<Inbox>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = inbox.requests.fetch_add(1, Ordering::SeqCst);
    inbox.hits.lock().unwrap().push(Hit {
        path: uri.path().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
        at_ms: daas_server::domain::time::now_ms(),
    });
    match inbox.answer {
        Answer::Ok => StatusCode::OK,
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            StatusCode::OK
        }
        Answer::FailOnce if n == 0 => StatusCode::INTERNAL_SERVER_ERROR,
        Answer::FailOnce => StatusCode::NO_CONTENT,
    }
}

/// A receiver on 127.0.0.1, over TLS when given a server configuration.
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    async fn start(answer: Answer, tls: Option<rustls::ServerConfig>) -> Receiver {
        Self::start_on(0, answer, tls).await
    }

    /// The same on `port` (0: any).
    async fn start_on(port: u16, answer: Answer, tls: Option<rustls::ServerConfig>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inbox = Inbox {
            answer,
            hits: Arc::default(),
            requests: Arc::default(),
        };
        let hits = inbox.hits.clone();
        let router = Router::new()
            .route("/{*path}", post(receive))
            .with_state(inbox);
        let tls = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let service = TowerToHyperService::new(router.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        Receiver { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The first `event` of `session` received, waiting up to `within`.
    async fn wait_for(&self, event: &str, session: &str, within: Duration) -> Hit {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let found = self
                .hits()
                .into_iter()
                .find(|h| h.header("x-daas-event") == event && h.body.contains(session));
            if let Some(hit) = found {
                return hit;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {event} of {session} within {within:?}; got {:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A port nothing listens on: connections are refused.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

fn key_file(dir: &Path) -> String {
    let file = dir.join("webhook.key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&file, perms).unwrap();
    serde_json::Value::from(file.display().to_string()).to_string()
}

async fn metrics(server: &TestServer) -> String {
    let url = format!("{}/metrics", server.metrics_endpoint().unwrap());
    let (_, code, body) = curl(&url, None).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Waits until the metrics show `line` (a series and its value).
async fn wait_for_metric(server: &TestServer, line: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let body = metrics(server).await;
        if body.lines().any(|l| l == line) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {line:?} within {within:?} in {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn destroy(server: &TestServer, id: &str) {
    let mut client = server.client().await;
    client
        .destroy_session(DestroySessionRequest {
            session_id: id.into(),
        })
        .await
        .unwrap();
    watch(&mut client, id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_and_destroyed_arrive_signed_in_each_format() {
    let keys = tempfile::tempdir().unwrap();
    let (json, chat) = (
        Receiver::start(Answer::Ok, None).await,
        Receiver::start(Answer::Ok, None).await,
    );
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "{HTTP_TOML}\
             [[webhooks]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = {}\n\
             [[webhooks]]\nurl = \"{}\"\nformat = \"slack\"\nevents = [\"READY\"]\n\
             [[webhooks]]\nurl = \"{}\"\nformat = \"discord\"\nevents = [\"ready\"]\nsecret_file = {}\n",
            json.url("/in"),
            key_file(keys.path()),
            chat.url("/slack"),
            chat.url("/discord"),
            key_file(keys.path()),
        ),
        ..Default::default()
    })
    .await;
    let (id, events) = ready_session(&server, "alice").await;
    let ready_ms = entered_ms(&events, SessionState::Ready);

    let hit = json.wait_for("READY", &id, Duration::from_secs(5)).await;
    assert!(hit.signed_with(KEY), "{hit:?}");
    let delivery = hit.header("x-daas-delivery");
    assert!(uuid::Uuid::parse_str(delivery).is_ok(), "{delivery}");
    let stamp: i64 = hit.header("x-daas-timestamp").parse().unwrap();
    assert!(
        (stamp - ready_ms / 1000).abs() <= 5,
        "{stamp} vs {ready_ms}"
    );
    assert_eq!(hit.header("content-type"), "application/json");
    let body = hit.json();
    assert_eq!(body["event"], "READY");
    assert_eq!(body["delivery"], delivery);
    assert_eq!(body["session_id"], id.as_str());
    assert_eq!(body["user"], "alice");
    assert_eq!(body["template"], "debian-12-xfce");
    assert_eq!(body["state"], "READY");
    let time: jiff::Timestamp = body["time"].as_str().unwrap().parse().unwrap();
    assert_eq!(time.as_millisecond(), ready_ms);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("connect with RDP to "),
        "{body}"
    );

    let short = &id[..8];
    chat.wait_for("READY", short, Duration::from_secs(5)).await;
    for _ in 0..100 {
        if chat.hits().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let slack = chat
        .hits()
        .into_iter()
        .find(|h| h.path == "/slack")
        .expect("slack got READY");
    let text = slack.json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with(&format!(
            "Desktop {short} for alice (debian-12-xfce) is READY at "
        )),
        "{text}"
    );
    assert!(
        slack.header("x-daas-signature").is_empty(),
        "no key, no signature"
    );
    let discord = chat
        .hits()
        .into_iter()
        .find(|h| h.path == "/discord")
        .expect("discord got READY");
    assert!(discord.signed_with(KEY));
    assert_eq!(discord.json()["content"].as_str(), Some(text.as_str()));

    destroy(&server, &id).await;
    let hit = json
        .wait_for("DESTROYED", &id, Duration::from_secs(5))
        .await;
    assert!(hit.signed_with(KEY));
    assert_ne!(hit.header("x-daas-delivery"), delivery);
    let body = hit.json();
    assert_eq!(body["state"], "DESTROYED");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("destroying VM "),
        "the destroy's reason: {body}"
    );
    wait_for_metric(
        &server,
        "daas_webhook_deliveries_total{webhook=\"ops\",event=\"DESTROYED\",result=\"delivered\"} 1",
        Duration::from_secs(5),
    )
    .await;
    let text = metrics(&server).await;
    for line in [
        "daas_webhook_deliveries_total{webhook=\"ops\",event=\"READY\",result=\"delivered\"} 1",
        "daas_webhook_deliveries_total{webhook=\"1\",event=\"READY\",result=\"delivered\"} 1",
        "daas_webhook_deliveries_total{webhook=\"2\",event=\"READY\",result=\"delivered\"} 1",
        "daas_webhook_attempts_total{webhook=\"ops\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
    // The chats asked for READY only.
    assert_eq!(chat.hits().len(), 2, "{:?}", chat.hits());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_is_told_with_its_stage_and_reason() {
    let keys = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(Answer::Ok, None).await;
    let server = TestServer::start(TestOptions {
        fail_terraform: true,
        extra_toml: format!(
            "[[webhooks]]\nurl = \"{}\"\nsecret_file = {}\nevents = [\"FAILED\"]\n",
            receiver.url("/in"),
            key_file(keys.path())
        ),
        ..Default::default()
    })
    .await;
    let mut client = server.client().await;
    let events = create(&mut client, request("bob")).await;
    let session = events.last().unwrap().session.clone().unwrap();
    assert_eq!(session.state(), SessionState::Failed);
    let reason = session.failure.unwrap().reason;

    let hit = receiver
        .wait_for("FAILED", &session.id, Duration::from_secs(5))
        .await;
    assert!(hit.signed_with(KEY));
    let body = hit.json();
    assert_eq!(body["user"], "bob");
    assert_eq!(body["failed_stage"], "PROVISIONING");
    assert_eq!(body["message"].as_str(), Some(reason.as_str()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_warning_then_the_reaping_are_told() {
    let keys = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(Answer::Ok, None).await;
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "[agent]\nendpoint = \"https://10.0.2.2:50051\"\n\
             [policy]\nreaper_interval = \"200ms\"\nagent_lost_timeout = \"2s\"\nwarning = \"1s\"\n\
             [[webhooks]]\nurl = \"{}\"\nsecret_file = {}\nevents = [\"IDLE_WARNING\", \"DESTROYED\"]\n",
            receiver.url("/in"),
            key_file(keys.path())
        ),
        ..Default::default()
    })
    .await;
    // No agent ever reports: warned after 1 s, reaped after 2 s (the bounds
    // below are for a loaded machine, where a destroy takes a while).
    let (id, _) = ready_session(&server, "carol").await;
    let warning = receiver
        .wait_for("IDLE_WARNING", &id, Duration::from_secs(60))
        .await;
    assert!(warning.signed_with(KEY));
    let body = warning.json();
    assert_eq!(body["user"], "carol", "resolved from the store");
    assert_eq!(body["template"], "debian-12-xfce");
    assert_eq!(body["state"], "READY");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("agent_lost_timeout 2s"),
        "{body}"
    );
    let reap_at: jiff::Timestamp = body["reap_at"].as_str().unwrap().parse().unwrap();
    let time: jiff::Timestamp = body["time"].as_str().unwrap().parse().unwrap();
    assert!(reap_at > time, "{body}");

    let destroyed = receiver
        .wait_for("DESTROYED", &id, Duration::from_secs(90))
        .await;
    let message = destroyed.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("reaped: agent_lost_timeout 2s"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn receivers_down_slow_or_failing_once_hold_up_nothing() {
    let keys = tempfile::tempdir().unwrap();
    let key = key_file(keys.path());
    let fast = Receiver::start(Answer::Ok, None).await;
    let slow = Receiver::start(Answer::Slow(Duration::from_secs(30)), None).await;
    let flaky = Receiver::start(Answer::FailOnce, None).await;
    let down = closed_port().await;
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "{HTTP_TOML}\
             [[webhooks]]\nname = \"down\"\nurl = \"http://127.0.0.1:{down}/in\"\nsecret_file = {key}\n\
             max_attempts = 3\nretry_base = \"50ms\"\n\
             [[webhooks]]\nname = \"slow\"\nurl = \"{}\"\nsecret_file = {key}\n\
             timeout = \"500ms\"\nmax_attempts = 2\nretry_base = \"50ms\"\n\
             [[webhooks]]\nname = \"flaky\"\nurl = \"{}\"\nsecret_file = {key}\nretry_base = \"50ms\"\n\
             [[webhooks]]\nname = \"fast\"\nurl = \"{}\"\nsecret_file = {key}\n",
            slow.url("/in"),
            flaky.url("/in"),
            fast.url("/in"),
        ),
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (id, events) = ready_session(&server, "dave").await;
    let create_took = started.elapsed();
    let ready_ms = entered_ms(&events, SessionState::Ready);

    // The fast webhook is told at once, while the slow one still waits.
    let hit = fast.wait_for("READY", &id, Duration::from_secs(5)).await;
    assert!(hit.signed_with(KEY));
    assert!(
        hit.at_ms - ready_ms < 1500,
        "READY reached the fast receiver {} ms after it happened",
        hit.at_ms - ready_ms
    );
    let slow_hit = slow.wait_for("READY", &id, Duration::from_secs(5)).await;
    assert!(slow_hit.signed_with(KEY));

    // Down: three attempts, then failed; slow: two timeouts, then failed.
    wait_for_metric(
        &server,
        "daas_webhook_deliveries_total{webhook=\"down\",event=\"READY\",result=\"failed\"} 1",
        Duration::from_secs(5),
    )
    .await;
    wait_for_metric(
        &server,
        "daas_webhook_deliveries_total{webhook=\"slow\",event=\"READY\",result=\"failed\"} 1",
        Duration::from_secs(5),
    )
    .await;
    wait_for_metric(
        &server,
        "daas_webhook_deliveries_total{webhook=\"flaky\",event=\"READY\",result=\"delivered\"} 1",
        Duration::from_secs(5),
    )
    .await;
    let text = metrics(&server).await;
    for line in [
        "daas_webhook_attempts_total{webhook=\"down\"} 3",
        "daas_webhook_attempts_total{webhook=\"slow\"} 2",
        "daas_webhook_attempts_total{webhook=\"flaky\"} 2",
        "daas_webhook_deliveries_total{webhook=\"fast\",event=\"READY\",result=\"delivered\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
    assert!(!text.contains("127.0.0.1"), "a URL in the metrics: {text}");

    // The slow receiver got both attempts, as one delivery.
    let slow_hits = slow.hits();
    assert_eq!(slow_hits.len(), 2, "{slow_hits:?}");
    assert_eq!(
        slow_hits[0].header("x-daas-delivery"),
        slow_hits[1].header("x-daas-delivery")
    );
    // The flaky one: a 500, then the same delivery again, signed anew.
    let flaky_hits = flaky.hits();
    assert_eq!(flaky_hits.len(), 2, "{flaky_hits:?}");
    assert_eq!(
        flaky_hits[0].header("x-daas-delivery"),
        flaky_hits[1].header("x-daas-delivery")
    );
    assert_eq!(flaky_hits[0].body, flaky_hits[1].body);
    assert!(flaky_hits.iter().all(|h| h.signed_with(KEY)));

    // A second desktop while the slow receiver is still sleeping on the
    // first: it is as quick as the first one (not 2 x 500 ms slower per
    // event, not blocked).
    let started = std::time::Instant::now();
    let (second, _) = ready_session(&server, "erin").await;
    let second_took = started.elapsed();
    assert!(
        second_took < create_took + Duration::from_secs(5),
        "{second_took:?} vs {create_took:?}"
    );
    fast.wait_for("READY", &second, Duration::from_secs(5))
        .await;
    server.stop().await;
}

/// The test PKI's CA and a server configuration for `localhost`.
fn tls_receiver_config(dir: &Path) -> (std::path::PathBuf, rustls::ServerConfig) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    daas_server::testkit::credentials(dir, "nobody", false);
    let paths = daas_server::pki::PkiPaths {
        dir: dir.join("pki"),
    };
    let certs = CertificateDer::pem_file_iter(paths.server_cert())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(paths.server_key()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    (paths.ca(), config)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_receivers_ca_and_not_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, tls) = tls_receiver_config(dir.path());
    let receiver = Receiver::start(Answer::Ok, Some(tls)).await;
    let port = receiver.addr.port();
    let key = key_file(dir.path());
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "{HTTP_TOML}\
             [[webhooks]]\nname = \"own-ca\"\nurl = \"https://localhost:{port}/in\"\nsecret_file = {key}\n\
             ca_file = {}\nevents = [\"READY\"]\n\
             [[webhooks]]\nname = \"system-roots\"\nurl = \"https://localhost:{port}/in\"\n\
             secret_file = {key}\nevents = [\"READY\"]\nmax_attempts = 2\nretry_base = \"50ms\"\n",
            serde_json::Value::from(ca.display().to_string())
        ),
        ..Default::default()
    })
    .await;
    let (id, _) = ready_session(&server, "frank").await;
    let hit = receiver
        .wait_for("READY", &id, Duration::from_secs(5))
        .await;
    assert!(hit.signed_with(KEY));
    assert_eq!(hit.header("host"), format!("localhost:{port}"));
    wait_for_metric(
        &server,
        "daas_webhook_deliveries_total{webhook=\"system-roots\",event=\"READY\",result=\"failed\"} 1",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(receiver.hits().len(), 1, "the untrusting one sent nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_and_the_urls_path_never_show() {
    const PATH_TOKEN: &str = "T0K3N-path-7f3a";
    const DOWN_TOKEN: &str = "DOWN-tok-5e1d";
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(Answer::Ok, None).await;
    let down = closed_port().await;
    let key = key_file(dir.path());
    let config = daas_server::testkit::write_config(
        dir.path(),
        &TestOptions {
            extra_toml: format!(
                "[[webhooks]]\nurl = \"{}\"\nsecret_file = {key}\n\
                 [[webhooks]]\nurl = \"http://127.0.0.1:{down}/hooks/{DOWN_TOKEN}?t={DOWN_TOKEN}\"\n\
                 format = \"slack\"\nmax_attempts = 2\nretry_base = \"50ms\"\n",
                receiver.url(&format!("/hooks/{PATH_TOKEN}"))
            ),
            ..Default::default()
        },
    );
    // What --check prints.
    let check = tokio::process::Command::new(env!("CARGO_BIN_EXE_daas-server"))
        .arg("--check")
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(printed.contains("webhooks"), "{printed}");

    let (mut server, endpoint) = start_server(&config, &[("DAAS_LOG", "debug")]).await;
    let mut stderr = server.stderr.take().expect("stderr is piped");
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
        text
    });
    let mut client = connect(&endpoint, dir.path()).await;
    let events = create(&mut client, request("alice")).await;
    let id = events[0].session_id.clone();
    client
        .destroy_session(DestroySessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap();
    let history = watch(&mut client, &id).await;
    receiver
        .wait_for("DESTROYED", &id, Duration::from_secs(5))
        .await;
    // The failed deliveries to the closed port (2 x 50 ms) are logged by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    server.wait().await.unwrap();
    let logs = logs.await.unwrap();

    assert!(logs.contains("webhook"), "the log was captured: {logs}");
    assert!(
        logs.contains(&format!("http://127.0.0.1:{down}")),
        "the log names the failing webhook's origin: {logs}"
    );
    let received: String = receiver.hits().iter().map(|h| h.body.clone()).collect();
    for secret in [KEY, PATH_TOKEN, DOWN_TOKEN] {
        assert!(!logs.contains(secret), "the log shows {secret}");
        assert!(!printed.contains(secret), "--check shows {secret}");
        assert!(!received.contains(secret), "a payload shows {secret}");
        for event in &history {
            assert!(
                !format!("{event:?}").contains(secret),
                "an event shows {secret}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_a_crash_cut_off_is_made_after_the_restart() {
    let keys = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await;
    let config = daas_server::testkit::write_config(
        dir.path(),
        &TestOptions {
            extra_toml: format!(
                "{}lease = \"2s\"\n\
                 [[webhooks]]\nurl = \"http://127.0.0.1:{port}/in\"\nsecret_file = {}\n\
                 events = [\"READY\"]\nmax_attempts = 10\nretry_base = \"1s\"\n",
                daas_server::testkit::postgres_store_toml().await,
                key_file(keys.path())
            ),
            ..Default::default()
        },
    );
    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut client = connect(&endpoint, dir.path()).await;
    let session = ready(&create(&mut client, request("alice")).await);

    // The receiver is down: the server retries, and dies before it gets
    // through. Its delivery is in the store; the next server makes it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let receiver = Receiver::start_on(port, Answer::Ok, None).await;
    let (_server, _) = start_server(&config, &[]).await;
    let hit = receiver
        .wait_for("READY", &session.id, Duration::from_secs(60))
        .await;
    assert!(hit.signed_with(KEY));
    assert_eq!(hit.json()["user"], "alice");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.hits().len(), 1, "told once: {:?}", receiver.hits());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_scheduled_create_is_told_once_without_a_session() {
    use daas_api::v1::AddScheduleRequest;
    use daas_server::domain::time::ManualClock;

    let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let keys = tempfile::tempdir().unwrap();
    let (json, chat) = (
        Receiver::start(Answer::Ok, None).await,
        Receiver::start(Answer::Ok, None).await,
    );
    // Monday 2026-12-07, 07:45 in Paris.
    let clock = ManualClock::at(at("2026-12-07T06:45:00Z"));
    let server = TestServer::start(TestOptions {
        clock: Some(clock.clone()),
        max_sessions_per_user: 1,
        extra_toml: format!(
            "{HTTP_TOML}[schedules]\nlead = \"10m\"\ninterval = \"100ms\"\n\
             [[webhooks]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = {}\nevents = [\"SCHEDULE_REFUSED\", \"READY\"]\n\
             [[webhooks]]\nname = \"chat\"\nurl = \"{}\"\nformat = \"slack\"\nevents = [\"schedule_refused\"]\n",
            json.url("/in"),
            key_file(keys.path()),
            chat.url("/slack"),
        ),
        ..Default::default()
    })
    .await;
    // alice's one desktop: her schedule's is refused by her limit.
    let (id, _) = ready_session(&server, "alice").await;
    json.wait_for("READY", &id, Duration::from_secs(5)).await;
    let mut alice = server.client_as("alice", false).await;
    let schedule = alice
        .add_schedule(AddScheduleRequest {
            at: "08:00".into(),
            days: "mon-fri".into(),
            timezone: "Europe/Paris".into(),
            ..Default::default()
        })
        .await
        .expect("add")
        .into_inner();
    clock.set(at("2026-12-07T06:51:00Z"));

    let hit = json
        .wait_for("SCHEDULE_REFUSED", &schedule.id, Duration::from_secs(10))
        .await;
    assert!(hit.signed_with(KEY), "{hit:?}");
    let body = hit.json();
    assert_eq!(body["event"], "SCHEDULE_REFUSED");
    assert_eq!(body["delivery"], hit.header("x-daas-delivery"));
    assert_eq!(body["schedule_id"], schedule.id.as_str());
    assert_eq!(body["user"], "alice");
    assert_eq!(body["template"], "debian-12-xfce");
    assert_eq!(body["due_at"], "2026-12-07T07:00:00Z");
    assert_eq!(body["time"], "2026-12-07T06:51:00Z");
    assert!(body.get("session_id").is_none(), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("alice already has 1 live desktops"),
        "{body}"
    );
    let slack = chat
        .wait_for("SCHEDULE_REFUSED", "REFUSED", Duration::from_secs(5))
        .await;
    let text = slack.json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with(
            "The scheduled desktop of alice (debian-12-xfce) due at 07:00 UTC was REFUSED at 06:51 UTC: "
        ),
        "{text}"
    );

    // Recorded once: later passes (and the same occurrence) tell no more.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let refusals = |r: &Receiver| {
        r.hits()
            .iter()
            .filter(|h| h.header("x-daas-event") == "SCHEDULE_REFUSED")
            .count()
    };
    assert_eq!((refusals(&json), refusals(&chat)), (1, 1));
    wait_for_metric(
        &server,
        "daas_webhook_deliveries_total{webhook=\"ops\",event=\"SCHEDULE_REFUSED\",result=\"delivered\"} 1",
        Duration::from_secs(5),
    )
    .await;
    server.stop().await;
}
