//! Helpers shared by the integration tests.

pub mod domain;

use std::{path::Path, process::Stdio, time::Duration};

use daas_api::v1::{
    AuditEntry, CreateSessionRequest, ListAuditRequest, ReportActivityRequest, Session,
    SessionEvent, SessionState, WatchSessionRequest, agent_service_client::AgentServiceClient,
    desktop_service_client::DesktopServiceClient, session_event::Kind,
};
use daas_server::testkit::{Credentials, TestServer, channel};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::Channel;

pub type Client = DesktopServiceClient<Channel>;

/// A template catalog: Debian for everyone in two sizes (medium the
/// default), a developers' template for the group daas-developers (dave's
/// in the test domain; a certificate's group in the API tests).
pub const CATALOG: &str = r#"
[templates.debian-12-xfce]
title = "Debian 12 with XFCE"
os = "Debian 12"
default_size = "medium"
[templates.debian-12-xfce.sizes.small]
cores = 1
memory_mb = 2048
disk_gb = 20
[templates.debian-12-xfce.sizes.medium]
cores = 2
memory_mb = 4096
disk_gb = 20

[templates.dev]
title = "Developer workstation"
description = "Debian 12 with compilers"
os = "Debian 12"
groups = ["daas-developers"]
clipboard = "off"
[templates.dev.sizes.large]
cores = 4
memory_mb = 8192
disk_gb = 40
"#;

/// Two organisations (`[orgs]`), by certificate group or AD group: physics
/// (7 desktops, 3 a member; its administrators: physics-admins) and maths
/// (4 vCPUs: two medium desktops of [`CATALOG`]).
pub const ORGS: &str = r#"
[orgs.physics]
title = "Physics department"
groups = ["physics"]
admin_groups = ["physics-admins"]
[orgs.physics.quota]
desktops = 7
[orgs.physics.user_quota]
desktops = 3

[orgs.maths]
groups = ["maths"]
[orgs.maths.quota]
cores = 4
"#;

/// Generous bound on any one stream in these tests, so a hang fails.
pub const STREAM_LIMIT: Duration = Duration::from_secs(240);

pub fn request(user: &str) -> CreateSessionRequest {
    CreateSessionRequest {
        username: user.into(),
        ..Default::default()
    }
}

/// Creates a session and reads its whole stream.
pub async fn create(client: &mut Client, req: CreateSessionRequest) -> Vec<SessionEvent> {
    let stream = client
        .create_session(req)
        .await
        .expect("create")
        .into_inner();
    drain(stream).await
}

/// Creates a session for `user` as the administrator and checks it is
/// READY: its id and whole stream.
pub async fn ready_session(server: &TestServer, user: &str) -> (String, Vec<SessionEvent>) {
    let mut client = server.client().await;
    let events = create(&mut client, request(user)).await;
    (ready(&events).id, events)
}

/// The session a create's last event carries (READY or FAILED).
pub fn settled(events: &[SessionEvent]) -> Session {
    events
        .last()
        .and_then(|e| e.session.clone())
        .expect("the last event carries the session")
}

/// The session a create's last event carries, checked READY.
pub fn ready(events: &[SessionEvent]) -> Session {
    let session = settled(events);
    assert_eq!(
        session.state(),
        SessionState::Ready,
        "{:?}",
        session.failure
    );
    session
}

/// A session's audit trail.
pub async fn audit_of(client: &mut Client, id: &str) -> Vec<AuditEntry> {
    client
        .list_audit(ListAuditRequest {
            session_id: id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("the audit trail")
        .into_inner()
        .entries
}

/// Creates `count` sessions at once (users user0, user1, ...), each on its
/// own connection, and returns every stream's events.
pub async fn create_many(
    server: &daas_server::testkit::TestServer,
    count: usize,
) -> Vec<Vec<SessionEvent>> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            create(&mut client, request(&format!("user{i}"))).await
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.expect("a create task"));
    }
    all
}

/// Follows a session to the end of its stream.
pub async fn watch(client: &mut Client, id: &str) -> Vec<SessionEvent> {
    watch_for(client, id, STREAM_LIMIT).await
}

/// Follows a session to the end of its stream, for at most `limit`.
pub async fn watch_for(client: &mut Client, id: &str, limit: Duration) -> Vec<SessionEvent> {
    let stream = client
        .watch_session(WatchSessionRequest {
            session_id: id.into(),
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    drain_for(stream, limit).await
}

/// Opens a create for `user` and reads it until an output line holding
/// `text`: the stream (still open) and the session's id.
pub async fn create_until_output(
    client: &mut Client,
    user: &str,
    text: &str,
) -> (tonic::Streaming<SessionEvent>, String) {
    let mut stream = client
        .create_session(request(user))
        .await
        .expect("create")
        .into_inner();
    let found = tokio::time::timeout(STREAM_LIMIT, async {
        while let Some(event) = stream.message().await.expect("stream error") {
            if matches!(&event.kind, Some(Kind::Output(line)) if line.text.contains(text)) {
                return event.session_id;
            }
        }
        panic!("the create ended before printing {text:?}");
    })
    .await
    .expect("the create did not print the line in time");
    (stream, found)
}

pub async fn drain(stream: tonic::Streaming<SessionEvent>) -> Vec<SessionEvent> {
    drain_for(stream, STREAM_LIMIT).await
}

pub async fn drain_for(
    mut stream: tonic::Streaming<SessionEvent>,
    limit: Duration,
) -> Vec<SessionEvent> {
    let mut events = Vec::new();
    tokio::time::timeout(limit, async {
        while let Some(event) = stream.message().await.expect("stream error") {
            events.push(event);
        }
    })
    .await
    .expect("the stream did not end in time");
    events
}

pub fn state(event: &SessionEvent) -> SessionState {
    SessionState::try_from(event.state).expect("a known state")
}

/// The states entered, in order (stage changes only).
pub fn stages(events: &[SessionEvent]) -> Vec<SessionState> {
    events
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::StageChange(_))))
        .map(state)
        .collect()
}

/// Output lines, as text.
pub fn output(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Output(line)) => Some(line.text.clone()),
            _ => None,
        })
        .collect()
}

/// Milliseconds since the epoch of the stage change into `to`.
pub fn entered_ms(events: &[SessionEvent], to: SessionState) -> i64 {
    let event = events
        .iter()
        .find(|e| matches!(e.kind, Some(Kind::StageChange(_))) && state(e) == to)
        .unwrap_or_else(|| panic!("no stage change to {to:?}"));
    let t = event.time.expect("events carry a time");
    t.seconds * 1000 + i64::from(t.nanos / 1_000_000)
}

pub fn assert_gap_free(events: &[SessionEvent]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "events are numbered from 1 without gaps");
}

/// Starts the binary and returns it with its endpoint (read from the line
/// it prints once listening).
pub async fn start_server(config: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_daas-server"))
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(if env.iter().any(|(k, _)| *k == "DAAS_LOG") {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .kill_on_drop(true)
        .spawn()
        .expect("start daas-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server did not start in time")
        .expect("read stdout")
        .expect("the server exited before listening");
    let addr = line
        .strip_prefix("daas-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    (child, format!("https://{addr}"))
}

pub async fn connect(endpoint: &str, dir: &Path) -> Client {
    let admin = daas_server::testkit::credentials(dir, "root", true);
    daas_server::testkit::connect(endpoint, Some(&admin))
        .await
        .expect("connect")
}

/// Command lines of running processes that contain `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    found
}

/// curl's exit code, the HTTP status and the body of `GET url`.
pub async fn curl(url: &str, creds: Option<&Credentials>) -> (i32, u16, String) {
    curl_with(url, creds, &[]).await
}

/// The same for `POST url` with a JSON body, as the old REST clients did.
pub async fn curl_post(url: &str, creds: Option<&Credentials>, json: &str) -> (i32, u16, String) {
    let args = [
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-raw",
        json,
    ];
    curl_with(url, creds, &args).await
}

async fn curl_with(url: &str, creds: Option<&Credentials>, extra: &[&str]) -> (i32, u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "60"])
        .args(["--write-out", "\n%{http_code}"])
        .args(extra);
    if let Some(c) = creds {
        cmd.arg("--cacert")
            .arg(&c.ca)
            .arg("--cert")
            .arg(&c.cert)
            .arg("--key")
            .arg(&c.key);
    }
    let out = cmd
        .arg(url.replace("127.0.0.1", "localhost"))
        .output()
        .await
        .expect("run curl (installed by scripts/setup.sh)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_string(),
    )
}

/// A client holding the certificate of session `id`'s agent.
pub async fn agent_for(server: &TestServer, id: &str) -> AgentServiceClient<Channel> {
    let creds = server.agent_credentials(id);
    AgentServiceClient::new(channel(&server.endpoint(), Some(&creds)).await.unwrap())
}

/// A report of alice at the desktop of session `id`.
pub fn report(id: &str, idle_seconds: u64, rdp_clients: u32) -> ReportActivityRequest {
    ReportActivityRequest {
        session_id: id.into(),
        idle_seconds,
        rdp_clients,
        users: vec!["alice".into()],
        agent_version: "0.1.0".into(),
        boot_time: None,
        displays: 1,
    }
}
