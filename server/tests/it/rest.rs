//! The old REST endpoints with curl against a live server, as the old
//! scripts call them (plus `--cert/--key`): shapes and codes of the
//! original API, the same rules and limits as gRPC, a REST create seen by
//! gRPC watchers and in the audit trail, and nothing of it on the plain
//! metrics listener.

use crate::common::*;
use daas_api::v1::SessionState;
use daas_server::testkit::{TestOptions, TestServer};
use serde_json::Value;

async fn rest_server(options: TestOptions) -> TestServer {
    TestServer::start(TestOptions {
        extra_toml: format!(
            "{}\n[http]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n",
            options.extra_toml
        ),
        ..options
    })
    .await
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_rest_calls_work_with_client_certificates() {
    let server = rest_server(TestOptions::default()).await;
    let base = server.http_endpoint().expect("http.listen is on");
    let alice = server.credentials("alice", false);
    let bob = server.credentials("bob", false);

    let (_, code, body) = curl(&format!("{base}/"), Some(&alice)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<h1>Orchestrateur DaaS</h1>"), "{body}");

    // 400 on a missing username, or on a body that is not JSON.
    let create_url = format!("{base}/api/session/create");
    let (_, code, body) = curl_post(&create_url, Some(&alice), "{}").await;
    assert_eq!(
        (code, json(&body)["error"].as_str()),
        (400, Some("username required"))
    );
    let (_, code, body) = curl_post(&create_url, Some(&alice), "username=alice").await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(json(&body)["error"], "the body must be a JSON object");
    // A user creates only for themselves.
    let (_, code, body) = curl_post(&create_url, Some(&bob), r#"{"username": "alice"}"#).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("only for yourself"))
    );

    // The create answers once the desktop is ready, in the old shape.
    let (_, code, body) = curl_post(&create_url, Some(&alice), r#"{"username": "alice"}"#).await;
    assert_eq!(code, 200, "{body}");
    let made = json(&body);
    let id = made["session_id"].as_str().expect("session_id").to_string();
    assert_eq!(made["status"], "ready");
    assert_eq!(made["username"], "alice");
    assert!(made["session_user"].is_null(), "{made}");
    assert!(made["vm_name"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(
        made["vm_ip"].as_str().is_some_and(|n| !n.is_empty()),
        "{made}"
    );
    assert!(made["rdp_port"].as_u64().is_some_and(|p| p > 0), "{made}");

    // An ordinary session: gRPC sees its whole history.
    let mut admin = server.client().await;
    let history = watch(&mut admin, &id).await;
    assert_eq!(history.last().map(state), Some(SessionState::Ready));
    assert!(
        history
            .iter()
            .any(|e| state(e) == SessionState::Configuring)
    );

    // Listed for alice as the old API did; bob sees none of hers.
    let (_, code, body) = curl(&format!("{base}/api/sessions"), Some(&alice)).await;
    assert_eq!(code, 200, "{body}");
    let listed = json(&body);
    assert_eq!(listed[&id]["status"], "active", "{listed}");
    assert_eq!(listed[&id]["session_id"], id.as_str());
    assert_eq!(listed[&id]["vm_name"], made["vm_name"]);
    let created_at = listed[&id]["created_at"].as_str().expect("created_at");
    assert_eq!(
        created_at.len(),
        "2025-11-21T10:00:00".len(),
        "{created_at}"
    );
    let (_, code, body) = curl(&format!("{base}/api/sessions"), Some(&bob)).await;
    assert_eq!((code, json(&body)), (200, serde_json::json!({})));

    // Destroy: 400 without an id, 404 for an unknown one, 403 for bob.
    let destroy_url = format!("{base}/api/session/destroy");
    let (_, code, body) = curl_post(&destroy_url, Some(&alice), "{}").await;
    assert_eq!(
        (code, json(&body)["error"].as_str()),
        (400, Some("session_id required"))
    );
    let unknown = r#"{"session_id": "00000000-0000-4000-8000-000000000000"}"#;
    let (_, code, body) = curl_post(&destroy_url, Some(&alice), unknown).await;
    assert_eq!(code, 404, "{body}");
    let old_style = r#"{"session_id": "desktop-abc123"}"#;
    let (_, code, body) = curl_post(&destroy_url, Some(&alice), old_style).await;
    assert_eq!(code, 404, "{body}");
    let by_id = format!(r#"{{"session_id": "{id}"}}"#);
    let (_, code, body) = curl_post(&destroy_url, Some(&bob), &by_id).await;
    assert_eq!(code, 403, "{body}");
    // By VM name, as the old API's ids were.
    let by_vm = format!(
        r#"{{"session_id": "{}"}}"#,
        made["vm_name"].as_str().unwrap_or("")
    );
    let (_, code, body) = curl_post(&destroy_url, Some(&alice), &by_vm).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"session_id": id, "status": "destroyed"})
    );

    // The audit trail has alice's REST create and bob's refused destroy.
    let entries = audit_of(&mut admin, &id).await;
    assert!(
        entries.iter().any(|e| e.actor == "alice"
            && e.action == "create"
            && e.peer.starts_with("127.0.0.1:")),
        "{entries:#?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.actor == "bob" && e.action == "destroy" && e.result == "PERMISSION_DENIED"),
        "{entries:#?}"
    );

    // The plain metrics listener answers none of it.
    let metrics = server.metrics_endpoint().expect("metrics_listen is on");
    let (_, code, _) = curl(&format!("{metrics}/api/sessions"), None).await;
    assert_eq!(code, 404);
    let (_, code, _) = curl_post(
        &format!("{metrics}/api/session/create"),
        None,
        r#"{"username":"x"}"#,
    )
    .await;
    assert_eq!(code, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_is_500_with_the_tool_error_and_limits_are_429() {
    let server = rest_server(TestOptions {
        fail_terraform: true,
        create_burst: 1,
        creates_per_minute: 1,
        ..TestOptions::default()
    })
    .await;
    let base = server.http_endpoint().expect("http.listen is on");
    let alice = server.credentials("alice", false);
    let create_url = format!("{base}/api/session/create");
    let (_, code, body) = curl_post(&create_url, Some(&alice), r#"{"username": "alice"}"#).await;
    assert_eq!(code, 500, "{body}");
    let failed = json(&body);
    assert_eq!(failed["error"], "Terraform failed");
    assert!(
        failed["details"].as_str().is_some_and(|d| !d.is_empty()),
        "{failed}"
    );
    // Over the create rate: 429, as a gRPC create would be refused.
    let (_, code, body) = curl_post(&create_url, Some(&alice), r#"{"username": "alice"}"#).await;
    assert_eq!(code, 429, "{body}");
    assert!(json(&body)["error"].as_str().is_some_and(|e| !e.is_empty()));
    server.stop().await;
}
