//! The HTTP side against a real server, with curl as an administrator's
//! scripts and a Prometheus would use it: /healthz, /readyz and /metrics
//! over HTTPS with client certificates (none: refused at the handshake; a
//! user who is not an administrator: no metrics), the plain loopback
//! metrics listener, gRPC requests counted by method and code, and a
//! readiness that says what is missing.

use crate::common::*;
use daas_server::testkit::{TestOptions, TestServer};

const HTTP_TOML: &str = "[http]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n";

async fn http_server(options: TestOptions) -> TestServer {
    TestServer::start(TestOptions {
        extra_toml: HTTP_TOML.into(),
        ..options
    })
    .await
}

#[tokio::test]
async fn health_readiness_and_metrics_over_https_with_client_certificates() {
    let server = http_server(TestOptions::default()).await;
    let base = server.http_endpoint().expect("http.listen is on");
    let alice = server.credentials("alice", false);
    let admin = server.credentials("admin", true);

    let (rc, code, body) = curl(&format!("{base}/healthz"), Some(&alice)).await;
    assert_eq!((rc, code, body.as_str()), (0, 200, "ok\n"));

    let (_, code, body) = curl(&format!("{base}/readyz"), Some(&alice)).await;
    assert_eq!(code, 200, "{body}");
    for line in [
        "ok store: writable",
        "ok terraform: /",
        "ok ansible-playbook: /",
    ] {
        assert!(body.contains(line), "no {line:?} in {body}");
    }

    // A user's desktop, so the metrics have something to count.
    let mut client = server.client_as("alice", false).await;
    let events = create(&mut client, request("alice")).await;
    assert_eq!(
        events.last().map(state),
        Some(daas_api::v1::SessionState::Ready)
    );

    let missing = client
        .get_session(daas_api::v1::GetSessionRequest {
            session_id: "00000000-0000-4000-8000-000000000000".into(),
        })
        .await
        .expect_err("no such session");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (_, code, body) = curl(&format!("{base}/metrics"), Some(&alice)).await;
    assert_eq!(code, 403, "a user read the metrics: {body}");

    // Its agent reports.
    let id = events[0].session_id.clone();
    agent_for(&server, &id)
        .await
        .report_activity(report(&id, 5, 1))
        .await
        .expect("a report");

    let (_, code, body) = curl(&format!("{base}/metrics"), Some(&admin)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("daas_agent_reports_total 1"), "{body}");
    let age = format!(
        "daas_agent_last_report_age_seconds{{session=\"{id}\",template=\"debian-12-xfce\"}} "
    );
    assert!(body.contains(&age), "no {age:?} in {body}");
    assert!(
        body.contains("daas_sessions{state=\"READY\",template=\"debian-12-xfce\"} 1"),
        "{body}"
    );
    assert!(body.contains("daas_build_info{version=\""), "{body}");
    assert!(body.contains("# TYPE daas_sessions gauge"), "{body}");
    for line in [
        "daas_grpc_requests_total{method=\"daas.v1.DesktopService/CreateSession\",code=\"Ok\"} 1",
        "daas_grpc_requests_total{method=\"daas.v1.DesktopService/GetSession\",code=\"NotFound\"} 1",
        "daas_grpc_request_duration_seconds_count{method=\"daas.v1.DesktopService/CreateSession\"} 1",
    ] {
        assert!(body.contains(line), "no {line:?} in {body}");
    }

    // No client certificate: the handshake fails, nothing is served.
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--max-time", "20", "--cacert"])
        .arg(&admin.ca)
        .arg(format!(
            "{}/healthz",
            base.replace("127.0.0.1", "localhost")
        ))
        .output()
        .await
        .expect("run curl");
    assert_ne!(
        out.status.code(),
        Some(0),
        "served without a client certificate"
    );
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The session's life in the metrics, once destroyed.
    client
        .destroy_session(daas_api::v1::DestroySessionRequest {
            session_id: id.clone(),
        })
        .await
        .expect("destroy");
    watch(&mut client, &id).await;

    // The plain loopback listener, for a local Prometheus: no certificate.
    let metrics = server
        .metrics_endpoint()
        .expect("http.metrics_listen is on");
    let (_, code, body) = curl(&format!("{metrics}/metrics"), None).await;
    assert_eq!(code, 200, "{body}");
    let t = "template=\"debian-12-xfce\"";
    for line in [
        format!("daas_sessions{{state=\"DESTROYED\",{t}}} 1"),
        "daas_provisions_in_flight 0".to_string(),
        format!("daas_creates_total{{{t},origin=\"create\",result=\"ready\"}} 1"),
        format!("daas_destroys_total{{{t},origin=\"create\",result=\"destroyed\"}} 1"),
        format!("daas_time_to_ready_seconds_count{{{t},origin=\"create\"}} 1"),
        format!("daas_stage_duration_seconds_count{{stage=\"QUEUED\",{t}}} 1"),
        format!("daas_stage_duration_seconds_count{{stage=\"CONFIGURING\",{t}}} 1"),
        format!("daas_stage_duration_seconds_count{{stage=\"READY\",{t}}} 1"),
        format!("daas_stage_duration_seconds_count{{stage=\"DESTROYING\",{t}}} 1"),
        "daas_tool_runs_total{tool=\"terraform\",reason=\"ok\"} ".to_string(),
        "daas_tool_runs_total{tool=\"ansible\",reason=\"ok\"} ".to_string(),
        "daas_tool_run_duration_seconds_count{tool=\"terraform\"} ".to_string(),
    ] {
        assert!(body.contains(&line), "no {line:?} in {body}");
    }
    let (_, code, _) = curl(&format!("{metrics}/nowhere"), None).await;
    assert_eq!(code, 404);
    server.stop().await;
}

#[tokio::test]
async fn readiness_fails_and_says_why_when_a_tool_is_missing() {
    let server = http_server(TestOptions {
        ansible_binary: Some("/nonexistent/ansible-playbook".into()),
        ..TestOptions::default()
    })
    .await;
    let base = server.http_endpoint().expect("http.listen is on");
    let alice = server.credentials("alice", false);
    let (_, code, body) = curl(&format!("{base}/readyz"), Some(&alice)).await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(
            "FAIL ansible-playbook: /nonexistent/ansible-playbook is not an executable file"
        ),
        "{body}"
    );
    assert!(body.contains("ok store: writable"), "{body}");
    // Alive all the same; a create fails at CONFIGURING, and is counted so.
    let (_, code, _) = curl(&format!("{base}/healthz"), Some(&alice)).await;
    assert_eq!(code, 200);
    let mut client = server.client_as("alice", false).await;
    let events = create(&mut client, request("alice")).await;
    assert_eq!(
        events.last().map(state),
        Some(daas_api::v1::SessionState::Failed)
    );
    let metrics = server
        .metrics_endpoint()
        .expect("http.metrics_listen is on");
    let (_, _, body) = curl(&format!("{metrics}/metrics"), None).await;
    for line in [
        "daas_creates_total{template=\"debian-12-xfce\",origin=\"create\",result=\"failed\"} 1",
        "daas_tool_runs_total{tool=\"ansible\",reason=\"spawn_failed\"} ",
    ] {
        assert!(body.contains(line), "no {line:?} in {body}");
    }
    server.stop().await;
}
