//! Servers on one PostgreSQL (`[store] url`): a server keeps its sessions
//! across a restart, and two real `daas-server` processes share the
//! sessions, the limits, the events (a watcher on one sees every event of
//! a create running on the other, in order) and Terraform's files (one
//! destroys what the other made).

use daas_api::v1::{DestroySessionRequest, GetSessionRequest, ListSessionsRequest, SessionState};
use daas_server::testkit::{TestOptions, TestServer, postgres_store_toml, write_config};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_postgres_keeps_its_sessions_across_a_restart() {
    let server = TestServer::start(TestOptions {
        extra_toml: postgres_store_toml().await,
        ..Default::default()
    })
    .await;
    let (id, events) = ready_session(&server, "alice").await;
    assert_gap_free(&events);
    let server = server.restart().await;
    let mut client = server.client().await;
    let session = client
        .get_session(GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.state(), SessionState::Ready);
    assert_eq!(watch(&mut client, &id).await, events, "the history is kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_share_sessions_limits_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let config_a = write_config(
        dir.path(),
        &TestOptions {
            create_delay_secs: 2,
            max_sessions: 2,
            max_sessions_per_user: 2,
            extra_toml: postgres_store_toml().await,
            ..Default::default()
        },
    );
    // B: the same store and certificates, a data folder of its own.
    let text = std::fs::read_to_string(&config_a).unwrap();
    let data = dir.path().join("data").display().to_string();
    assert!(text.contains(&data));
    let config_b = dir.path().join("daas-b.toml");
    std::fs::write(&config_b, text.replace(&data, &format!("{data}-b"))).unwrap();
    let (_a, endpoint_a) = start_server(&config_a, &[]).await;
    let (_b, endpoint_b) = start_server(&config_b, &[]).await;
    let mut on_a = connect(&endpoint_a, dir.path()).await;
    let mut on_b = connect(&endpoint_b, dir.path()).await;

    // A create on A, watched on B from its first event.
    let mut stream = on_a
        .create_session(request("alice"))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first event");
    let watcher = {
        let mut on_b = on_b.clone();
        let id = first.session_id.clone();
        tokio::spawn(async move { watch(&mut on_b, &id).await })
    };
    let mut seen_on_a = vec![first];
    seen_on_a.extend(drain(stream).await);
    ready(&seen_on_a);
    let seen_on_b = watcher.await.unwrap();
    assert_eq!(
        seen_on_b, seen_on_a,
        "B saw every event of A's create, in order"
    );

    // The limits are the database's: one more on B fits, a third does not.
    let bob = create(&mut on_b, request("bob")).await;
    ready(&bob);
    let refused = on_a
        .create_session(request("carol"))
        .await
        .expect_err("a third desktop is over max_sessions = 2");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let listed = on_b
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 2, "{listed:?}");

    // Each is destroyed by the other server: Terraform's files are in the
    // store, and its destroy runs there (once, not the inventory's).
    for (client, events) in [(&mut on_b, &seen_on_a), (&mut on_a, &bob)] {
        let session = settled(events);
        client
            .destroy_session(DestroySessionRequest {
                session_id: session.id.clone(),
            })
            .await
            .unwrap();
        let events = watch(client, &session.id).await;
        assert_eq!(settled(&events).state(), SessionState::Destroyed);
        let destroyed = dir
            .path()
            .join(format!("markers/{}.destroyed", session.vm_name));
        let runs = std::fs::read_to_string(&destroyed).unwrap();
        assert_eq!(
            runs.lines()
                .map(|l| l.split(' ').next())
                .collect::<Vec<_>>(),
            [Some("terraform")],
            "{runs}"
        );
    }
}
