//! Warm pools with the test module: claim to READY against a cold create,
//! side by side in one run, and a burst of creates against a full pool.
//!
//! `cargo bench -p daas-server --bench pool` prints:
//! - 10 claims (a pool of 10, creates one after the other) and 10 cold
//!   creates (a template no pool serves), p50 and p95 of request to READY;
//! - 30 creates arriving at once against a pool of 30: all READY, and the
//!   wall time of the burst.

use std::time::{Duration, Instant};

use daas_api::v1::{CreateSessionRequest, GetPoolRequest, SessionState};
use daas_server::testkit::{TestOptions, TestServer};

/// Request to the READY event; whether the desktop came from the pool.
async fn create(server: &TestServer, user: String, template: &str) -> (Duration, bool) {
    let mut client = server.client().await;
    let started = Instant::now();
    let mut stream = client
        .create_session(CreateSessionRequest {
            username: user,
            template: template.into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let mut last = None;
    while let Some(event) = stream.message().await.expect("stream") {
        last = event.session.or(last);
    }
    let session = last.expect("the stream ends with the session");
    assert_eq!(session.state(), SessionState::Ready, "{session:?}");
    (started.elapsed(), !session.pool.is_empty())
}

async fn wait_ready(server: &TestServer, count: u32) {
    let mut client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let pool = client
            .get_pool(GetPoolRequest { name: "lab".into() })
            .await
            .expect("get the pool")
            .into_inner();
        if pool.ready >= count {
            return;
        }
        assert!(Instant::now() < deadline, "the pool never filled: {pool:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(label: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let (p50, p95) = (percentile(&times, 0.5), percentile(&times, 0.95));
    println!(
        "{label:<34} n={:<3} p50 {:>8.1} ms   p95 {:>8.1} ms",
        times.len(),
        p50.as_secs_f64() * 1000.0,
        p95.as_secs_f64() * 1000.0
    );
    p50
}

async fn start_with_pool(size: u32) -> TestServer {
    TestServer::start(TestOptions {
        max_parallel: 8,
        extra_toml: format!("[pools.lab]\nsize = {size}\nmax_building = 8\nmax_age = \"1h\"\n"),
        ..Default::default()
    })
    .await
}

#[tokio::main]
async fn main() {
    let server = start_with_pool(10).await;
    wait_ready(&server, 10).await;
    let (mut claims, mut colds) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let (took, pooled) = create(&server, format!("claim{i}"), "").await;
        assert!(pooled, "claim {i} found no ready desktop");
        claims.push(took);
        let (took, pooled) = create(&server, format!("cold{i}"), "no-pool-template").await;
        assert!(!pooled);
        colds.push(took);
    }
    let claim = summary("claim to READY (pool of 10)", claims);
    let cold = summary("cold create to READY", colds);
    println!(
        "{:<34} {:.0}x",
        "cold / claim (p50)",
        cold.as_secs_f64() / claim.as_secs_f64()
    );
    server.stop().await;

    let server = start_with_pool(30).await;
    wait_ready(&server, 30).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let server_endpoint = &server;
        tasks.push(create(server_endpoint, format!("burst{i}"), ""));
    }
    let results = futures_util::future::join_all(tasks).await;
    let wall = started.elapsed();
    let pooled = results.iter().filter(|(_, p)| *p).count();
    summary(
        "burst of 30: each to READY",
        results.iter().map(|r| r.0).collect(),
    );
    println!(
        "{:<34} {pooled}/30 from the pool, all READY, wall {:.0} ms",
        "burst of 30 against a pool of 30",
        wall.as_secs_f64() * 1000.0
    );
    server.stop().await;
}
