//! Time to READY with the test module, and the orchestrator's own overhead.
//!
//! `cargo bench -p daas-server --bench creates` prints: one create (module
//! without delay), 8 creates at once with a 2 s module (limit 8), and the
//! per-session overhead: wall time not spent inside terraform or
//! ansible-playbook, from the events' timestamps.

use std::time::{Duration, Instant};

use daas_api::v1::{CreateSessionRequest, SessionEvent, SessionState, session_event::Kind};
use daas_server::testkit::{TestOptions, TestServer};

fn ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos / 1_000_000)
}

async fn create(server: &TestServer, user: String) -> (Duration, Vec<SessionEvent>) {
    let mut client = server.client().await;
    let started = Instant::now();
    let mut stream = client
        .create_session(CreateSessionRequest {
            username: user,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.expect("stream") {
        events.push(event);
    }
    (started.elapsed(), events)
}

/// Milliseconds per stage, from the stage-change events.
fn stage_times(events: &[SessionEvent]) -> Vec<(SessionState, i64)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::StageChange(change)) => Some((
                SessionState::try_from(change.previous).unwrap_or_default(),
                change
                    .previous_duration
                    .map(|d| d.seconds * 1000 + i64::from(d.nanos / 1_000_000))?,
            )),
            _ => None,
        })
        .filter(|(s, _)| *s != SessionState::Unspecified)
        .collect()
}

fn report(label: &str, wall: Duration, events: &[SessionEvent]) {
    let stages: Vec<String> = stage_times(events)
        .iter()
        .map(|(s, ms)| format!("{} {ms} ms", s.label()))
        .collect();
    let first = events
        .first()
        .and_then(|e| e.time.as_ref())
        .map(ms)
        .unwrap_or(0);
    let last = events
        .last()
        .and_then(|e| e.time.as_ref())
        .map(ms)
        .unwrap_or(0);
    println!(
        "{label}: wall {} ms, server-side {} ms ({})",
        wall.as_millis(),
        last - first,
        stages.join(", ")
    );
}

#[tokio::main]
async fn main() {
    let server = TestServer::start(TestOptions::default()).await;
    // Warm up (first terraform/ansible start fills caches).
    let _ = create(&server, "warmup".into()).await;
    for i in 0..3 {
        let (wall, events) = create(&server, format!("single{i}")).await;
        report("one create, test module", wall, &events);
    }
    server.stop().await;

    let server = TestServer::start(TestOptions {
        create_delay_secs: 2,
        max_parallel: 8,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let server_endpoint = server.endpoint();
        tasks.push(tokio::spawn(async move {
            let mut client = daas_api::v1::desktop_service_client::DesktopServiceClient::connect(
                server_endpoint,
            )
            .await
            .expect("connect");
            let mut stream = client
                .create_session(CreateSessionRequest {
                    username: format!("user{i}"),
                    ..Default::default()
                })
                .await
                .expect("create")
                .into_inner();
            let mut last = None;
            while let Some(event) = stream.message().await.expect("stream") {
                last = Some(event.state);
            }
            last
        }));
    }
    for task in tasks {
        let state = task.await.expect("task");
        assert_eq!(state, Some(SessionState::Ready as i32));
    }
    println!(
        "8 creates at once, 2 s module, limit 8: wall {} ms",
        started.elapsed().as_millis()
    );
    server.stop().await;
}
