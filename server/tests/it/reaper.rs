//! Agents reporting over real gRPC with per-session certificates, and the
//! reaper warning and destroying desktops nobody uses.

use std::time::Duration;

use crate::common::*;
use daas_api::v1::{GetSessionRequest, SessionState, WatchSessionRequest, session_event::Kind};
use daas_server::testkit::{TestOptions, TestServer};
use tonic::Code;

fn policy(toml: &str) -> TestOptions {
    TestOptions {
        // Agents are expected (the address is never dialled in these tests).
        extra_toml: format!(
            "[agent]\nendpoint = \"https://10.0.2.2:50051\"\n\
             [policy]\nreaper_interval = \"200ms\"\n{toml}"
        ),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_update_the_session_and_show_why_it_is_alive() {
    let server = TestServer::start(policy("idle_timeout = \"30m\"\n")).await;
    let id = ready_session(&server, "alice").await.0;
    let mut agent = agent_for(&server, &id).await;
    let reply = agent
        .report_activity(report(&id, 120, 1))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.report_interval.is_some());
    assert!(reply.ending.is_none());

    let mut client = server.client().await;
    let session = client
        .get_session(GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let activity = session.activity.expect("activity");
    assert_eq!(activity.rdp_clients, 1);
    assert_eq!(activity.users, ["alice"]);
    assert_eq!(activity.agent_version, "0.1.0");
    let reported = activity.last_report_at.unwrap().seconds;
    let input = activity.last_input_at.unwrap().seconds;
    assert!(
        (119..=121).contains(&(reported - input)),
        "{reported} - {input}"
    );
    // The agent reports: its 10m silence deadline moves with every report,
    // so the plan shown is the idle one, counted from the last input.
    assert!(
        activity.reap_reason.starts_with("idle_timeout 30m"),
        "{}",
        activity.reap_reason
    );
    let reap_at = activity.reap_at.unwrap().seconds;
    assert!(
        (30 * 60 - 1..=30 * 60 + 1).contains(&(reap_at - input)),
        "{reap_at} - {input}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_reports_for_its_own_live_session_only() {
    let server = TestServer::start(TestOptions::default()).await;
    let a = ready_session(&server, "alice").await.0;
    let b = ready_session(&server, "bob").await.0;
    let mut agent_a = agent_for(&server, &a).await;
    let status = agent_a.report_activity(report(&b, 0, 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("another session"),
        "{}",
        status.message()
    );

    let mut client = server.client().await;
    client
        .destroy_session(daas_api::v1::DestroySessionRequest {
            session_id: a.clone(),
        })
        .await
        .unwrap();
    let status = agent_a.report_activity(report(&a, 0, 0)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("is destroyed"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_desktop_is_warned_then_reaped() {
    let server = TestServer::start(policy(
        "idle_timeout = \"3s\"\nwarning = \"2s\"\nagent_lost_timeout = \"1m\"\n",
    ))
    .await;
    let id = ready_session(&server, "alice").await.0;
    let mut agent = agent_for(&server, &id).await;
    agent.report_activity(report(&id, 0, 1)).await.unwrap();

    let mut client = server.client().await;
    let stream = client
        .watch_session(WatchSessionRequest {
            session_id: id.clone(),
            after_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    // A READY session's watch ends at once; follow the reaping by polling
    // its history until DESTROYED.
    drop(stream);
    let mut history = Vec::new();
    let mut warned_reply = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if warned_reply.is_none()
            && let Ok(reply) = agent.report_activity(report(&id, 2, 1)).await
        {
            warned_reply = reply.into_inner().ending;
        }
        history = watch(&mut client, &id).await;
        if history.last().map(state) == Some(SessionState::Destroyed) {
            break;
        }
    }
    let warning = history
        .iter()
        .find_map(|e| match &e.kind {
            Some(Kind::IdleWarning(w)) => Some(w.clone()),
            _ => None,
        })
        .expect("an IDLE_WARNING event before the reaping");
    assert!(
        warning
            .reason
            .starts_with("idle_timeout 3s: no input since"),
        "{}",
        warning.reason
    );
    let ending = warned_reply.expect("the agent was told the session is ending");
    assert!(
        ending.message.contains("will be destroyed at"),
        "{}",
        ending.message
    );
    let destroying = history
        .iter()
        .find(|e| {
            state(e) == SessionState::Destroying && matches!(e.kind, Some(Kind::StageChange(_)))
        })
        .expect("a DESTROYING event");
    let Some(Kind::StageChange(change)) = &destroying.kind else {
        unreachable!()
    };
    assert!(
        change.message.starts_with("reaped: idle_timeout 3s"),
        "{}",
        change.message
    );
    assert_eq!(history.last().map(state), Some(SessionState::Destroyed));
    let vm = history.last().unwrap().session.clone().unwrap().vm_name;
    assert!(
        server.markers().join(format!("{vm}.destroyed")).exists(),
        "the module's destroy ran"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_desktop_whose_agent_is_silent_is_reaped() {
    let server = TestServer::start(policy(
        "agent_lost_timeout = \"2s\"\nwarning = \"1s\"\n\
         [http]\nmetrics_listen = \"127.0.0.1:0\"\n",
    ))
    .await;
    let id = ready_session(&server, "alice").await.0;
    let mut client = server.client().await;
    let mut history = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        history = watch(&mut client, &id).await;
        if history.last().map(state) == Some(SessionState::Destroyed) {
            break;
        }
    }
    assert_eq!(history.last().map(state), Some(SessionState::Destroyed));
    let reasons: Vec<String> = history
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::StageChange(c)) if state(e) == SessionState::Destroying => {
                Some(c.message.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        reasons[0].starts_with("reaped: agent_lost_timeout 2s: the agent never reported"),
        "{reasons:?}"
    );
    // Counted by rule once the destroy returns.
    let metrics = server.metrics_endpoint().expect("metrics_listen is on");
    let line = "daas_reaps_total{reason=\"agent_lost\"} 1";
    let mut body = String::new();
    for _ in 0..50 {
        body = curl(&format!("{metrics}/metrics"), None).await.2;
        if body.contains(line) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains(line), "no {line:?} in {body}");
    // And in the audit trail, by the reaper, with the rule.
    let entries = audit_of(&mut client, &id).await;
    let reap = entries
        .iter()
        .find(|e| e.action == "reap")
        .unwrap_or_else(|| panic!("no reap in {entries:#?}"));
    assert_eq!(
        (reap.actor.as_str(), reap.owner.as_str()),
        ("reaper", "alice")
    );
    assert!(
        reap.detail.starts_with("agent_lost_timeout 2s"),
        "{}",
        reap.detail
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_agent_reports_and_the_session_shows_it() {
    // With no display the agent reports idle since boot: longer than any
    // test machine's uptime, so the reaper leaves the desktop alone.
    let server = TestServer::start(policy("idle_timeout = \"100000h\"\n")).await;
    let id = ready_session(&server, "alice").await.0;
    let creds = server.agent_credentials(&id);
    let dir = tempfile::tempdir().unwrap();
    let no_displays = dir.path().join("x11");
    std::fs::create_dir_all(&no_displays).unwrap();
    let config = daas_agent::AgentConfig {
        endpoint: server.endpoint(),
        session_id: id.clone(),
        ca: creds.ca,
        cert: creds.cert,
        key: creds.key,
        tls_server_name: Some("localhost".into()),
        x11_socket_dir: no_displays,
        ..daas_agent::AgentConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(daas_agent::run(config, async {
        let _ = stopped.await;
    }));

    let mut client = server.client().await;
    let mut activity = None;
    for _ in 0..100 {
        let session = client
            .get_session(GetSessionRequest {
                session_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        activity = session.activity.filter(|a| a.last_report_at.is_some());
        if activity.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let activity = activity.expect("the agent reported");
    assert_eq!(activity.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        activity.rdp_clients, 0,
        "nobody is connected to this machine's port 3389"
    );
    // No display: idle since boot, so the last input is before the report.
    assert!(activity.last_input_at.unwrap().seconds < activity.last_report_at.unwrap().seconds);

    let _ = stop.send(());
    let end = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
    assert_eq!(end, daas_agent::RunEnd::Shutdown);
    server.stop().await;
}

/// An agent (or whoever holds its credential inside the desktop) cannot
/// make the server write as fast as it asks: past a burst of 10, reports
/// come at four times the interval agents are told (30 s: 8 a minute).
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_reporting_too_often_is_slowed_down() {
    let server = TestServer::start(policy("")).await;
    let id = ready_session(&server, "alice").await.0;
    let other = ready_session(&server, "bob").await.0;
    let mut agent = agent_for(&server, &id).await;
    let mut refused = None;
    for n in 0..30 {
        match agent.report_activity(report(&id, 1, 1)).await {
            Ok(_) => assert!(n < 11, "report {n} was taken"),
            Err(status) => {
                refused = Some((n, status));
                break;
            }
        }
    }
    let (n, status) = refused.expect("30 reports at once were all taken");
    assert!(n >= 10, "refused after only {n}");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status
            .message()
            .contains("calls more often than 8 times a minute"),
        "{}",
        status.message()
    );
    // Per session: another desktop's agent reports as usual.
    let mut bob = agent_for(&server, &other).await;
    bob.report_activity(report(&other, 1, 1))
        .await
        .expect("bob's report");
    server.stop().await;
}
