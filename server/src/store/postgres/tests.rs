//! What only a shared database has: servers seeing each other's events.

use std::{sync::Arc, time::Duration};

use daas_api::v1::{OutputLine, OutputStream, Tool};

use super::PostgresStore;
use super::test_cluster::{postgres_connection, postgres_schema};
use crate::store::{NewSession, SessionLimits, Store};

async fn server(url: &str) -> Store {
    Store::new(Arc::new(
        PostgresStore::connect(postgres_connection(url))
            .await
            .unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn another_servers_events_reach_the_watchers_here_in_order() {
    let url = postgres_schema().await;
    let (a, b) = (server(&url).await, server(&url).await);
    let limits = SessionLimits {
        max_sessions: 10,
        max_per_user: 10,
        org: None,
    };
    let new = NewSession {
        username: "alice".into(),
        template: "t".into(),
        ..NewSession::default()
    };
    let (session, _) = a.create_session(new, limits).await.unwrap();
    let mut on_b = b.subscribe(&session.id);
    let mut on_a = a.subscribe(&session.id);
    for i in 0..50 {
        let line = OutputLine {
            tool: Tool::Terraform as i32,
            stream: OutputStream::Stdout as i32,
            text: format!("line {i}"),
        };
        a.output(&session.id, line).await.unwrap();
    }
    let mut heard = Vec::new();
    while heard.last() != Some(&51) {
        let event = tokio::time::timeout(Duration::from_secs(30), on_b.recv())
            .await
            .expect("B hears of A's event")
            .unwrap();
        heard.push(event.sequence);
    }
    // The create's own notification may come after B subscribed.
    if heard.first() == Some(&1) {
        heard.remove(0);
    }
    assert_eq!(
        heard,
        (2..52).collect::<Vec<u64>>(),
        "in order, none missed"
    );
    for sequence in 2..52 {
        assert_eq!(on_a.recv().await.unwrap().sequence, sequence);
    }
    // A server hears of its own events once, from itself: the next event
    // A hears of is B's, not one of its own again (notifications come in
    // the order of the commits).
    // (B may write to it once A no longer works on it: READY.)
    use daas_api::v1::SessionState::*;
    for (from, to) in [
        (Queued, Provisioning),
        (Provisioning, Booting),
        (Booting, Configuring),
        (Configuring, Ready),
    ] {
        a.transition(&session.id, from, to, String::new(), None)
            .await
            .unwrap();
    }
    let line = OutputLine {
        text: "from B".into(),
        ..OutputLine::default()
    };
    b.output(&session.id, line).await.unwrap();
    let mut next = Vec::new();
    for _ in 0..5 {
        let event = tokio::time::timeout(Duration::from_secs(30), on_a.recv())
            .await
            .expect("A hears of B's event")
            .unwrap();
        next.push(event.sequence);
    }
    assert_eq!(next, [52, 53, 54, 55, 56]);
}
