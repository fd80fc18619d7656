//! Time to READY with the test module, and the orchestrator's own overhead.
//!
//! `cargo bench -p daas-server --bench creates` prints: one create (module
//! without delay), 8 creates at once with a 2 s module (limit 8), the
//! per-session overhead (wall time not spent inside terraform or
//! ansible-playbook, from the events' timestamps), and creates per second
//! end to end with one server (SQLite, PostgreSQL) and three servers on one
//! PostgreSQL (the test cluster of `scripts/postgres.sh`).

use std::time::{Duration, Instant};

use daas_api::v1::{CreateSessionRequest, SessionEvent, SessionState, session_event::Kind};
use daas_server::testkit::{TestOptions, TestServer, postgres_schema};

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

/// `n` creates at once, spread over `servers` in turn; each must reach
/// READY. Returns the wall time until the last one did.
async fn creates_at_once(servers: &[TestServer], n: usize, prefix: &str) -> Duration {
    let mut clients = Vec::new();
    for server in servers {
        clients.push(server.client().await);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut client = clients[i % clients.len()].clone();
        let username = format!("{prefix}{i}");
        tasks.push(tokio::spawn(async move {
            let mut stream = client
                .create_session(CreateSessionRequest {
                    username,
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
    started.elapsed()
}

/// Creates per second with `count` servers on one store (`store_toml`:
/// "" for each its own SQLite file), 4 provisions at once per server.
async fn throughput(label: &str, count: usize, store_toml: &str, n: usize) {
    let mut servers = Vec::new();
    for _ in 0..count {
        servers.push(
            TestServer::start(TestOptions {
                max_parallel: 4,
                extra_toml: store_toml.to_string(),
                ..Default::default()
            })
            .await,
        );
    }
    // Warm up each server (the first terraform init fills its cache).
    for (i, server) in servers.iter().enumerate() {
        let _ = create(server, format!("warmup{i}")).await;
    }
    let wall = creates_at_once(&servers, n, "user").await;
    println!(
        "{label}: {n} creates at once, module without delay: wall {} ms, {:.2} creates/s",
        wall.as_millis(),
        n as f64 / wall.as_secs_f64()
    );
    for server in servers {
        server.stop().await;
    }
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
    let wall = creates_at_once(std::slice::from_ref(&server), 8, "user").await;
    println!(
        "8 creates at once, 2 s module, limit 8: wall {} ms",
        wall.as_millis()
    );
    server.stop().await;

    let n = 24;
    throughput("one server, SQLite", 1, "", n).await;
    let url = postgres_schema().await;
    let pg = format!("[store]\nurl = {}\n", serde_json::Value::from(url));
    throughput("one server, PostgreSQL", 1, &pg, n).await;
    let url = postgres_schema().await;
    let pg = format!("[store]\nurl = {}\n", serde_json::Value::from(url));
    throughput("three servers, one PostgreSQL", 3, &pg, n).await;
}
