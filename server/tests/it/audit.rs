//! The audit trail against a live server with real certificates: creates,
//! refusals by the handlers and by the certificate rules, agent
//! certificates issued, reading it (administrators only, filters, pages),
//! the JSON-lines file, and no secret in either.

use crate::common::*;
use daas_api::v1::{
    AuditEntry, CreateSessionRequest, DestroySessionRequest, GetSessionRequest, ListAuditRequest,
    ListSessionsRequest,
};
use daas_server::testkit::{TestOptions, TestServer};
use tonic::Code;

/// The SHA-256 (hex) of the certificate in a PEM file.
fn fingerprint_of(pem_path: &std::path::Path) -> String {
    let pem = std::fs::read(pem_path).expect("read the certificate");
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).expect("a PEM certificate");
    daas_server::pki::fingerprint(&block.contents)
}

async fn audit(server: &TestServer, req: ListAuditRequest) -> Vec<AuditEntry> {
    server
        .client()
        .await
        .list_audit(req)
        .await
        .expect("an administrator reads the audit trail")
        .into_inner()
        .entries
}

/// Entries recorded off the request path (refusals at the response's
/// end) land a moment later: waits until `wanted` holds.
async fn audit_until(
    server: &TestServer,
    req: ListAuditRequest,
    wanted: impl Fn(&[AuditEntry]) -> bool,
) -> Vec<AuditEntry> {
    let mut entries = Vec::new();
    for _ in 0..50 {
        entries = audit(server, req.clone()).await;
        if wanted(&entries) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    entries
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_refusals_and_certificates_are_audited_with_who_and_from_where() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("audit.jsonl");
    let server = TestServer::start(TestOptions {
        create_burst: 1,
        creates_per_minute: 1,
        extra_toml: format!(
            "[audit]\nfile = \"{}\"\n[agent]\nendpoint = \"https://10.0.2.2:50051\"\n",
            file.display()
        ),
        ..TestOptions::default()
    })
    .await;

    // alice creates, with a session password that must appear nowhere.
    let secret = "Audit-Secret-Passw0rd!";
    let mut alice = server.client_as("alice", false).await;
    let events = create(
        &mut alice,
        CreateSessionRequest {
            session_user: "student".into(),
            session_password: secret.into(),
            ..request("alice")
        },
    )
    .await;
    let session = ready(&events);
    let id = session.id.clone();
    // The agent got a certificate from the agents' CA with that CA as its
    // chain, and the CA that signed the server's certificate to check it.
    let values: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(server.markers().join(format!("{}.values", session.vm_name)))
            .expect("the playbook's values"),
    )
    .expect("JSON");
    let tls_ca = std::fs::read_to_string(server.dir().join("pki/ca.pem")).expect("tls.ca");
    assert_eq!(values["agent_ca_pem"].as_str(), Some(tls_ca.as_str()));
    let chain = values["agent_cert_pem"]
        .as_str()
        .expect("the agent's certificate");
    let agents_ca =
        std::fs::read_to_string(server.dir().join("pki/agents-ca.pem")).expect("the agents' CA");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    assert!(
        chain.ends_with(&agents_ca),
        "the chain ends with the agents' CA"
    );

    // bob tries alice's desktop: destroy (the handler's refusal), get (a
    // refusal at the response's end); then a second create by alice is
    // over her rate.
    let mut bob = server.client_as("bob", false).await;
    let err = bob
        .destroy_session(DestroySessionRequest {
            session_id: id.clone(),
        })
        .await
        .expect_err("bob may not destroy alice's desktop");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = bob
        .get_session(GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .expect_err("bob may not see alice's desktop");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = alice
        .create_session(request("alice"))
        .await
        .expect_err("over the create rate");
    assert_eq!(err.code(), Code::ResourceExhausted);
    // An agent certificate calling the users' service (refused by the
    // certificate rules, before any handler).
    let agent =
        daas_server::testkit::connect(&server.endpoint(), Some(&server.agent_credentials(&id)))
            .await
            .expect("connect as the agent");
    let err = agent
        .clone()
        .list_sessions(ListSessionsRequest::default())
        .await
        .expect_err("an agent may not list sessions");
    assert_eq!(err.code(), Code::PermissionDenied);
    // alice may not read the trail.
    let err = alice
        .list_audit(ListAuditRequest::default())
        .await
        .expect_err("alice is not an administrator");
    assert_eq!(err.code(), Code::PermissionDenied);

    let entries = audit_until(&server, ListAuditRequest::default(), |e| {
        e.iter().any(|e| e.actor == "agent")
            && e.iter().any(|e| e.action.ends_with("/ListAudit"))
            && e.iter().any(|e| e.action.ends_with("/GetSession"))
    })
    .await;
    let find = |actor: &str, action: &str| {
        entries
            .iter()
            .find(|e| e.actor == actor && e.action == action)
            .unwrap_or_else(|| panic!("no {action} by {actor:?} in {entries:#?}"))
    };

    let created = entries
        .iter()
        .find(|e| e.actor == "alice" && e.action == "create" && e.result == "OK")
        .expect("alice's create");
    assert_eq!(
        (created.session_id.as_str(), created.owner.as_str()),
        (id.as_str(), "alice")
    );
    assert_eq!(created.result, "OK");
    assert_eq!(
        created.fingerprint,
        fingerprint_of(&server.credentials("alice", false).cert)
    );
    assert!(created.subject.contains("CN=alice"), "{}", created.subject);
    assert!(created.peer.starts_with("127.0.0.1:"), "{}", created.peer);
    assert!(
        created.detail.contains("template debian-12-xfce"),
        "{}",
        created.detail
    );

    let destroy = find("bob", "destroy");
    assert_eq!(
        (
            destroy.session_id.as_str(),
            destroy.owner.as_str(),
            destroy.result.as_str()
        ),
        (id.as_str(), "alice", "PERMISSION_DENIED")
    );
    assert!(
        destroy.detail.contains("only your own"),
        "{}",
        destroy.detail
    );
    assert_eq!(
        destroy.fingerprint,
        fingerprint_of(&server.credentials("bob", false).cert)
    );
    let get = find("bob", "daas.v1.DesktopService/GetSession");
    assert_eq!(get.result, "PERMISSION_DENIED");
    let rate = entries
        .iter()
        .find(|e| e.actor == "alice" && e.result == "RESOURCE_EXHAUSTED")
        .expect("the refused create");
    assert_eq!(
        (rate.action.as_str(), rate.owner.as_str()),
        ("create", "alice")
    );
    let by_agent = find("agent", "daas.v1.DesktopService/ListSessions");
    assert_eq!(by_agent.result, "PERMISSION_DENIED");
    assert!(!by_agent.fingerprint.is_empty());
    let listed = find("alice", "daas.v1.DesktopService/ListAudit");
    assert_eq!(listed.result, "PERMISSION_DENIED");
    let issued = find("server", "issue_certificate");
    assert_eq!(issued.session_id, id);
    assert!(issued.detail.contains("sha256 "), "{}", issued.detail);

    // Filters: bob's entries only; the session's; a page at a time.
    let bobs = audit(
        &server,
        ListAuditRequest {
            username: "bob".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(!bobs.is_empty());
    assert!(
        bobs.iter().all(|e| e.actor == "bob" || e.owner == "bob"),
        "{bobs:#?}"
    );
    let of_session = audit(
        &server,
        ListAuditRequest {
            session_id: id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(of_session.iter().all(|e| e.session_id == id));
    assert!(
        of_session.len() >= 3,
        "create, destroy, issue: {of_session:#?}"
    );
    let mut admin = server.client().await;
    let first = admin
        .list_audit(ListAuditRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("a page")
        .into_inner();
    assert_eq!(first.entries.len(), 2);
    let second = admin
        .list_audit(ListAuditRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .expect("the next page")
        .into_inner();
    assert_eq!(second.entries.len(), 2);
    assert_ne!(first.entries, second.entries);
    let bad = admin
        .list_audit(ListAuditRequest {
            page_token: "nonsense".into(),
            ..Default::default()
        })
        .await
        .expect_err("a made-up token");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let future = admin
        .list_audit(ListAuditRequest {
            since: Some(prost_types::Timestamp {
                seconds: 4_102_444_800,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("since the year 2100")
        .into_inner();
    assert!(future.entries.is_empty());
    let absurd = admin
        .list_audit(ListAuditRequest {
            since: Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect_err("a time past the year 9999");
    assert_eq!(absurd.code(), Code::InvalidArgument);

    // The JSON-lines file has the same entries; no secret anywhere.
    let text = std::fs::read_to_string(&file).expect("the audit file");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.iter().any(|l| l["actor"] == "alice"
        && l["action"] == "create"
        && l["session_id"] == id.as_str()
        && l["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
    assert!(
        !text.contains(secret),
        "the session password is in the audit file"
    );
    let all = format!("{entries:?}");
    assert!(
        !all.contains(secret),
        "the session password is in the trail"
    );
    server.stop().await;
}
