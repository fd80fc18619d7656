//! The real `daas-server` binary killed with SIGKILL mid-provisioning and
//! started again: nothing lost, the half-made session cleaned up.

use std::time::{Duration, Instant};

use crate::common::*;
use daas_api::v1::{GetSessionRequest, SessionState, session_event::Kind};
use daas_api::v1::{ReportActivityRequest, agent_service_client::AgentServiceClient};
use daas_server::testkit::{TestOptions, agent_credentials, channel, write_config};

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
    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut client = connect(&endpoint, dir.path()).await;

    // One session that completes, and must survive the crash as it is.
    let ready = create(&mut client, request("alice")).await;
    let ready_session = ready.last().unwrap().session.clone().unwrap();
    assert_eq!(ready_session.state(), SessionState::Ready);

    // Its agent reports 100 s without input: the idle clock lives in the store.
    let agent_creds = agent_credentials(dir.path(), &ready_session.id);
    let mut agent = AgentServiceClient::new(channel(&endpoint, Some(&agent_creds)).await.unwrap());
    agent
        .report_activity(ReportActivityRequest {
            session_id: ready_session.id.clone(),
            idle_seconds: 100,
            rdp_clients: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let before = client
        .get_session(GetSessionRequest {
            session_id: ready_session.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .activity
        .unwrap();

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

    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut client = connect(&endpoint, dir.path()).await;
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
    let mut after = client
        .get_session(GetSessionRequest {
            session_id: ready_session.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let activity = after.activity.take().unwrap();
    assert_eq!(
        activity.last_input_at, before.last_input_at,
        "the restart kept the idle clock"
    );
    assert_eq!(activity.reap_at, before.reap_at);
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
