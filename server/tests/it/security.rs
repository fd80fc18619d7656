//! Mutual TLS, who may do what, and limits, on the real server with
//! certificates made by the project's own `pki` module.

use std::time::{Duration, SystemTime};

use crate::common::*;
use daas_api::v1::{
    DestroySessionRequest, GetSessionRequest, ListSessionsRequest, SessionState,
    WatchSessionRequest,
};
use daas_server::{
    pki::{Ca, Validity},
    testkit::{Credentials, TestOptions, TestServer, channel, connect, credentials},
};
use tonic::Code;

/// Whether a call with `creds` gets an answer from the server.
async fn can_call(server: &TestServer, creds: Option<&Credentials>) -> Result<(), String> {
    let mut client = connect(&server.endpoint(), creds)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    client
        .list_sessions(ListSessionsRequest::default())
        .await
        .map(|_| ())
        .map_err(|status| format!("{status:?}"))
}

fn write_pair(
    dir: &std::path::Path,
    stem: &str,
    cert: &str,
    key: &str,
    ca: &std::path::Path,
) -> Credentials {
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    Credentials {
        ca: ca.to_path_buf(),
        cert: cert_path,
        key: key_path,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn handshakes_without_a_valid_client_certificate_fail() {
    let server = TestServer::start(TestOptions::default()).await;
    let good = server.credentials("alice", false);
    assert_eq!(can_call(&server, Some(&good)).await, Ok(()));

    // No client certificate at all.
    let mut client = daas_api::v1::desktop_service_client::DesktopServiceClient::new(
        tonic::transport::Channel::from_shared(server.endpoint())
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .domain_name("localhost")
                    .ca_certificate(tonic::transport::Certificate::from_pem(
                        std::fs::read(&good.ca).unwrap(),
                    )),
            )
            .unwrap()
            .connect_lazy(),
    );
    let refused = client.list_sessions(ListSessionsRequest::default()).await;
    assert!(
        refused.is_err(),
        "a call without a client certificate was answered"
    );

    // A certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    let foreign = credentials(other.path(), "alice", true);
    let foreign = Credentials {
        ca: good.ca.clone(),
        ..foreign
    };
    assert!(
        can_call(&server, Some(&foreign)).await.is_err(),
        "another CA's certificate was accepted"
    );

    // An expired certificate from the right CA.
    let pki = server.dir().join("pki");
    let ca = Ca::load(&pki.join("ca.pem"), &pki.join("ca-key.pem")).unwrap();
    let day = Duration::from_secs(86_400);
    let expired = Validity {
        not_before: SystemTime::now() - 10 * day,
        not_after: SystemTime::now() - day,
    };
    let issued = ca.issue_user("alice", false, &[], &expired).unwrap();
    let expired = write_pair(
        other.path(),
        "expired",
        &issued.cert_pem,
        &issued.key_pem,
        &good.ca,
    );
    assert!(
        can_call(&server, Some(&expired)).await.is_err(),
        "an expired certificate was accepted"
    );

    // Plaintext to a TLS port.
    let plain = server.endpoint().replace("https://", "http://");
    let plain_client = connect(&plain, None).await;
    if let Ok(mut client) = plain_client {
        assert!(
            client
                .list_sessions(ListSessionsRequest::default())
                .await
                .is_err()
        );
    }

    // The server still serves good clients.
    assert_eq!(can_call(&server, Some(&good)).await, Ok(()));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_and_act_on_their_own_sessions_only() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut alice = server.client_as("alice", false).await;
    let mut bob = server.client_as("bob", false).await;
    let mut admin = server.client_as("root", true).await;

    // The caller is the default owner; naming someone else is refused.
    let events = create(&mut alice, request("")).await;
    let session = events.last().unwrap().session.clone().unwrap();
    assert_eq!(session.username, "alice");
    let status = bob
        .create_session(request("alice"))
        .await
        .expect_err("bob created a session for alice");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("only for yourself"),
        "{}",
        status.message()
    );

    let id = session.id.clone();
    let denied = [
        bob.get_session(GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .map(|_| ()),
        bob.watch_session(WatchSessionRequest {
            session_id: id.clone(),
            after_sequence: 0,
        })
        .await
        .map(|_| ()),
        bob.destroy_session(DestroySessionRequest {
            session_id: id.clone(),
        })
        .await
        .map(|_| ()),
        bob.list_sessions(ListSessionsRequest {
            username: "alice".into(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
    ];
    for result in denied {
        let status = result.expect_err("bob reached alice's session");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            !status.message().contains("alice"),
            "the refusal names the owner: {}",
            status.message()
        );
    }
    let mine = bob
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap();
    assert!(
        mine.into_inner().sessions.is_empty(),
        "bob's list shows only bob's sessions"
    );

    // An administrator (by certificate) sees and destroys every session.
    let all = admin
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap();
    assert_eq!(all.into_inner().sessions.len(), 1);
    let got = admin
        .get_session(GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().username, "alice");
    let destroyed = admin
        .destroy_session(DestroySessionRequest { session_id: id })
        .await
        .unwrap();
    assert_eq!(destroyed.into_inner().state(), SessionState::Destroyed);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_can_come_from_the_config() {
    let server = TestServer::start(TestOptions {
        extra_toml: "[auth]\nadmins = [\"carol\"]\n".into(),
        ..Default::default()
    })
    .await;
    let mut carol = server.client_as("carol", false).await;
    let events = create(&mut carol, request("dave")).await;
    assert_eq!(
        events.last().unwrap().session.clone().unwrap().username,
        "dave"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_and_user_certificates_stay_on_their_own_service() {
    let server = TestServer::start(TestOptions::default()).await;
    let user = server.credentials("alice", false);
    let agent = server.agent_credentials("3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11");

    let mut as_agent = connect(&server.endpoint(), Some(&agent)).await.unwrap();
    let status = as_agent
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("only daas.v1.AgentService"),
        "{}",
        status.message()
    );

    // A user certificate on the agents' service is refused before any
    // service runs.
    let channel = channel(&server.endpoint(), Some(&user)).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/daas.v1.AgentService/ReportActivity");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let status = grpc
        .unary(tonic::Request::new(()), path, codec)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("user certificate may not call it")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_answer_resource_exhausted_with_a_hint() {
    let server = TestServer::start(TestOptions {
        max_sessions: 2,
        max_sessions_per_user: 1,
        creates_per_minute: 1,
        create_burst: 2,
        ..Default::default()
    })
    .await;
    let mut alice = server.client_as("alice", false).await;
    let first = create(&mut alice, request("")).await;
    let first = first.last().unwrap().session.clone().unwrap();

    let status = alice.create_session(request("")).await.err().unwrap();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status
            .message()
            .contains("alice already has 1 live desktops"),
        "{}",
        status.message()
    );

    let mut bob = server.client_as("bob", false).await;
    create(&mut bob, request("")).await;
    let mut carol = server.client_as("carol", false).await;
    let status = carol.create_session(request("")).await.err().unwrap();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("maximum of 2 desktops"),
        "{}",
        status.message()
    );

    // Alice frees her slot; her burst of 2 is used, the rate says when.
    alice
        .destroy_session(DestroySessionRequest {
            session_id: first.id,
        })
        .await
        .unwrap();
    let _ = alice.create_session(request("")).await; // the burst's second create (may hit max_sessions)
    let status = alice.create_session(request("")).await.err().unwrap();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("try again in"),
        "{}",
        status.message()
    );
    let retry: u64 = status
        .metadata()
        .get("retry-after")
        .expect("a retry-after hint")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn open_streams_are_bounded() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 5,
        max_streams: 1,
        ..Default::default()
    })
    .await;
    let mut client = server.client().await;
    let mut stream = client
        .create_session(request("alice"))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let status = client
        .watch_session(WatchSessionRequest {
            session_id: first.session_id.clone(),
            after_sequence: 0,
        })
        .await
        .expect_err("a second stream was opened");
    assert_eq!(status.code(), Code::ResourceExhausted);
    drop(stream);
    // Once the first stream is gone, its slot is free again.
    let mut ok = false;
    for _ in 0..50 {
        if client
            .watch_session(WatchSessionRequest {
                session_id: first.session_id.clone(),
                after_sequence: 0,
            })
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the stream slot was not returned");
    server.stop().await;
}

/// One user cannot hold every stream: past `limits.max_streams_per_user`
/// their next is RESOURCE_EXHAUSTED naming them, and others still watch.
#[tokio::test(flavor = "multi_thread")]
async fn one_user_cannot_hold_every_stream() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 30,
        max_streams_per_user: 2,
        ..Default::default()
    })
    .await;
    let mut alice = server.client_as("alice", false).await;
    let mut create = alice
        .create_session(request("alice"))
        .await
        .expect("create")
        .into_inner();
    let id = create.message().await.unwrap().unwrap().session_id;
    let watch = WatchSessionRequest {
        session_id: id,
        after_sequence: 0,
    };
    let second = alice
        .watch_session(watch.clone())
        .await
        .expect("a second stream");
    let status = alice
        .watch_session(watch.clone())
        .await
        .expect_err("a third stream of alice's");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("alice has 2 event streams open"),
        "{}",
        status.message()
    );
    // An administrator still watches her session.
    let mut admin = server.client().await;
    admin
        .watch_session(watch.clone())
        .await
        .expect("the admin's stream");
    drop(second);
    let mut ok = false;
    for _ in 0..50 {
        if alice.watch_session(watch.clone()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "alice's slot was not returned");
    drop(create);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_an_error_and_the_server_keeps_serving() {
    let server = TestServer::start(TestOptions::default()).await;
    let creds = server.credentials("root", true);
    let channel = channel(&server.endpoint(), Some(&creds)).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    // Field 1 (username, a string) carrying bytes that are not UTF-8.
    // prost encodes a Vec<u8> message as field 1, bytes.
    let bad: Vec<u8> = vec![0xff, 0xfe, 0xfd];
    let path = http::uri::PathAndQuery::from_static("/daas.v1.DesktopService/GetSession");
    let codec = tonic_prost::ProstCodec::<Vec<u8>, ()>::default();
    let status = grpc
        .unary(tonic::Request::new(bad), path, codec)
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok);

    let mut client = server.client().await;
    let events = create(&mut client, request("alice")).await;
    assert_eq!(stages(&events).last(), Some(&SessionState::Ready));
    server.stop().await;
}

/// `daas-server pki revoke` on a running server (the real binary): the
/// certificate is refused from its next call on, on a connection already
/// open too, without a restart; others go on; the trail says who and why;
/// a malformed list stops a start.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_certificate_is_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let config = daas_server::testkit::write_config(tmp.path(), &TestOptions::default());
    let alice = credentials(tmp.path(), "alice", false);
    let bob = credentials(tmp.path(), "bob", false);
    let (server, endpoint) = start_server(&config, &[]).await;
    let mut alice_client = connect(&endpoint, Some(&alice)).await.expect("connect");
    alice_client
        .list_sessions(ListSessionsRequest::default())
        .await
        .expect("alice before");

    let pki_dir = tmp.path().join("pki");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_daas-server"))
        .arg("--config")
        .arg(&config)
        .args(["pki", "revoke", "--dir"])
        .arg(&pki_dir)
        .arg("--cert")
        .arg(&alice.cert)
        .args(["--reason", "laptop lost"])
        .output()
        .expect("run daas-server pki revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked \"CN=alice"));

    // The list is read again within a second.
    let mut refused = None;
    for _ in 0..30 {
        match alice_client
            .list_sessions(ListSessionsRequest::default())
            .await
        {
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("alice's open connection still served after 3 s");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("is revoked"),
        "{}",
        status.message()
    );
    // A new connection too; bob is not concerned.
    let mut again = connect(&endpoint, Some(&alice)).await.expect("connect");
    assert!(
        again
            .list_sessions(ListSessionsRequest::default())
            .await
            .is_err()
    );
    let mut bob_client = connect(&endpoint, Some(&bob)).await.expect("connect");
    bob_client
        .list_sessions(ListSessionsRequest::default())
        .await
        .expect("bob after");
    drop(server);

    let store = daas_server::store::Store::open(&tmp.path().join("data/daas.sqlite3")).unwrap();
    let entries = store
        .audit_page(daas_server::store::audit_records::AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        entries.iter().any(|e| e.action == "revoke_certificate"
            && e.detail.contains("CN=alice")
            && e.detail.contains("laptop lost")),
        "{entries:#?}"
    );

    // A list the server cannot read stops it rather than revoke nothing.
    std::fs::write(pki_dir.join("revoked.txt"), "alice's laptop\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_daas-server"))
        .arg("--config")
        .arg(&config)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("the server stopped")
        .expect("run daas-server");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("revocation list") && stderr.contains("line 1"),
        "{stderr}"
    );
}

/// The agents' CA key is the one the server keeps online: what it signs is
/// an agent, never a user or an administrator; and an agent certificate
/// comes from it alone.
#[tokio::test(flavor = "multi_thread")]
async fn the_agents_ca_signs_agents_only() {
    let server = TestServer::start(TestOptions::default()).await;
    let pki = server.dir().join("pki");
    let root = Ca::load(&pki.join("ca.pem"), &pki.join("ca-key.pem")).unwrap();
    let agents = Ca::load(&pki.join("agents-ca.pem"), &pki.join("agents-ca-key.pem")).unwrap();
    assert!(agents.is_intermediate() && !root.is_intermediate());
    let made = tempfile::tempdir().unwrap();
    let ca = pki.join("ca.pem");

    // What the server issues to agents works (the chain is in the file).
    let agent = server.agent_credentials("3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11");
    let chain = std::fs::read_to_string(&agent.cert).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    let err = can_call(&server, Some(&agent)).await.unwrap_err();
    assert!(err.contains("only daas.v1.AgentService"), "{err}");

    // An administrator minted with the agents' CA key is refused.
    let admin = agents
        .issue_user("mallory", true, &[], &Validity::days(1))
        .unwrap();
    let admin = write_pair(made.path(), "mallory", &admin.cert_pem, &admin.key_pem, &ca);
    let err = can_call(&server, Some(&admin)).await.unwrap_err();
    assert!(err.contains("Unauthenticated"), "{err}");
    assert!(err.contains("signs agent certificates only"), "{err}");

    // An agent certificate straight from the root is refused too.
    let rogue = root
        .issue_agent("3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11", &Validity::days(1))
        .unwrap();
    let rogue = write_pair(made.path(), "rogue", &rogue.cert_pem, &rogue.key_pem, &ca);
    let err = can_call(&server, Some(&rogue)).await.unwrap_err();
    assert!(err.contains("not signed by the agents' CA"), "{err}");

    // Users from the root are served.
    assert!(
        can_call(&server, Some(&server.credentials("alice", false)))
            .await
            .is_ok()
    );
    server.stop().await;
}
