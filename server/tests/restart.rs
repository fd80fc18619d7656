//! The real `daas-server` binary killed with SIGKILL mid-provisioning and
//! started again: nothing lost, the half-made session cleaned up.

mod common;

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use daas_api::v1::{
    GetSessionRequest, SessionState, desktop_service_client::DesktopServiceClient,
    session_event::Kind,
};
use daas_server::testkit::{TestOptions, write_config};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Starts the binary and returns it with its endpoint (read from the line
/// it prints once listening).
async fn start_server(config: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_daas-server"))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
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
    (child, format!("http://{addr}"))
}

async fn connect(endpoint: &str) -> Client {
    DesktopServiceClient::connect(endpoint.to_string())
        .await
        .expect("connect")
}

fn processes_mentioning(needle: &str) -> Vec<String> {
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

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_provisioning_cleans_up_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &TestOptions {
            create_delay_secs: 4,
            ..Default::default()
        },
    );
    let (mut server, endpoint) = start_server(&config).await;
    let mut client = connect(&endpoint).await;

    // One session that completes, and must survive the crash as it is.
    let ready = create(&mut client, request("alice")).await;
    let ready_session = ready.last().unwrap().session.clone().unwrap();
    assert_eq!(ready_session.state(), SessionState::Ready);

    // Another, killed in the middle of `terraform apply`.
    let mut stream = client
        .create_session(request("bob"))
        .await
        .unwrap()
        .into_inner();
    let mut id = String::new();
    let mut vm_name = String::new();
    while let Some(event) = stream.message().await.unwrap() {
        id = event.session_id.clone();
        if let Some(Kind::Output(line)) = &event.kind
            && let Some(rest) = line.text.split("(local-exec): creating ").nth(1)
        {
            vm_name = rest.split(' ').next().unwrap_or_default().to_string();
            break;
        }
    }
    assert!(vm_name.starts_with("desktop-"));
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    drop(stream);

    let (mut server, endpoint) = start_server(&config).await;
    let mut client = connect(&endpoint).await;
    let history = watch(&mut client, &id).await;
    assert_gap_free(&history);
    let last = history.last().unwrap();
    assert_eq!(state(last), SessionState::Failed);
    let failure = last.session.clone().unwrap().failure.unwrap();
    assert_eq!(failure.stage(), SessionState::Provisioning);
    assert!(
        failure
            .reason
            .contains("server restarted during PROVISIONING"),
        "{}",
        failure.reason
    );
    assert!(
        output(&history)
            .iter()
            .any(|l| l.contains("Destroy complete!")),
        "terraform destroy ran for the half-made session"
    );
    assert!(!dir.path().join("data/sessions").join(&id).exists());

    // Nothing else was lost.
    let after = client
        .get_session(GetSessionRequest {
            session_id: ready_session.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, ready_session, "a READY session stays READY");
    assert_eq!(watch(&mut client, &ready_session.id).await, ready);

    // No tool of the killed server is still running for that session.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !processes_mentioning(&vm_name).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(processes_mentioning(&vm_name), Vec::<String>::new());

    server.start_kill().unwrap();
    server.wait().await.unwrap();
}
