//! JSON logs of the real binary: every line logged for a request carries
//! its request id and user, and the provisioning it starts its session id,
//! so an operator can follow one create through `journalctl -o cat | jq`.

use crate::common::*;
use daas_api::v1::DestroySessionRequest;
use daas_server::testkit::{TestOptions, credentials, write_config};
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// The value of `field` in the span named `span` of a log line.
fn span_field<'a>(line: &'a Value, span: &str, field: &str) -> Option<&'a str> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == span)?
        .get(field)?
        .as_str()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_request_id_the_user_and_the_session() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = write_config(dir.path(), &TestOptions::default());
    let (mut server, endpoint) = start_server(
        &config,
        &[("DAAS_LOG", "info"), ("DAAS_LOG_FORMAT", "json")],
    )
    .await;
    let mut stderr = server.stderr.take().expect("stderr is piped");
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let alice = credentials(dir.path(), "alice", false);
    let mut client = daas_server::testkit::connect(&endpoint, Some(&alice))
        .await
        .expect("connect as alice");
    let mut request = tonic::Request::new(request("alice"));
    request.metadata_mut().insert(
        "x-request-id",
        "ops-test-42".parse().expect("a header value"),
    );
    let response = client.create_session(request).await.expect("create");
    assert_eq!(
        response
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("ops-test-42"),
        "the request id comes back"
    );
    let session = ready(&drain(response.into_inner()).await);
    // A request without an id gets one.
    let destroyed = client
        .destroy_session(DestroySessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("destroy");
    let given = destroyed
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(given.len(), 32, "a new id: {given:?}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id().expect("a pid") as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("stop the server");
    let _ = server.wait().await;
    let text = logs.await.expect("the log reader");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    let requested = lines
        .iter()
        .find(|l| l["message"] == "session requested")
        .unwrap_or_else(|| panic!("no 'session requested' in {text}"));
    assert_eq!(
        span_field(requested, "request", "request_id"),
        Some("ops-test-42")
    );
    assert_eq!(span_field(requested, "request", "user"), Some("alice"));
    assert_eq!(requested["session"], session.id.as_str());
    // Lines of the provisioning: its session and the request that started it.
    let provisioning: Vec<&Value> = lines
        .iter()
        .filter(|l| span_field(l, "session", "session") == Some(session.id.as_str()))
        .collect();
    assert!(
        !provisioning.is_empty(),
        "no line of the provisioning in {text}"
    );
    for line in &provisioning {
        assert_eq!(span_field(line, "session", "user"), Some("alice"), "{line}");
    }
    assert!(
        provisioning
            .iter()
            .any(|l| span_field(l, "request", "request_id") == Some("ops-test-42")),
        "{provisioning:?}"
    );
    // The destroy's lines carry its own request id.
    assert!(
        lines.iter().any(|l| l["message"] == "session destroyed"
            && span_field(l, "request", "request_id") == Some(given.as_str())),
        "{text}"
    );
}
