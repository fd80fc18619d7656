//! The store's throughput, the embedded SQLite file beside PostgreSQL
//! (the test cluster of `scripts/postgres.sh`, on loopback), for one server:
//! creates, stage changes, output lines and agent reports per second; and
//! for two servers on PostgreSQL, the time from an event stored by one to
//! a watcher on the other (LISTEN/NOTIFY); and with one and three servers
//! on PostgreSQL at once, creates and agent reports per second (reports
//! written in groups, as the agent service does: `store::reports`).
//!
//! `cargo bench -p daas-server --bench store`

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use daas_api::v1::{OutputLine, SessionState};
use daas_server::{
    store::{AgentReport, NewSession, PostgresStore, SessionLimits, Store, reports::Reports},
    testkit::{postgres_connection, postgres_schema},
};

const CREATES: usize = 500;
const LINES: usize = 2000;
const REPORTS: usize = 20_000;
/// Tasks writing at once (agents report concurrently).
const WRITERS: usize = 8;

const LIMITS: SessionLimits = SessionLimits {
    max_sessions: usize::MAX,
    max_per_user: usize::MAX,
    org: None,
};

fn rate(n: usize, took: Duration) -> String {
    format!("{:.0}/s", n as f64 / took.as_secs_f64())
}

fn new(i: usize) -> NewSession {
    NewSession {
        username: format!("user{i}"),
        template: "t".into(),
        ..NewSession::default()
    }
}

async fn postgres() -> Store {
    let url = postgres_schema().await;
    Store::new(Arc::new(
        PostgresStore::connect(postgres_connection(&url))
            .await
            .expect("PostgreSQL"),
    ))
}

/// Servers on one new PostgreSQL schema.
async fn servers(count: usize) -> Vec<Store> {
    let url = postgres_schema().await;
    let mut all = Vec::new();
    for _ in 0..count {
        all.push(Store::new(Arc::new(
            PostgresStore::connect(postgres_connection(&url))
                .await
                .expect("PostgreSQL"),
        )));
    }
    all
}

/// REPORTS agent reports from `tasks` tasks at once, task `t` writing
/// each through `write(t, session id, report)`: the time they took.
async fn send_reports<F, Fut>(tasks: usize, ids: &[String], write: F) -> Duration
where
    F: Fn(usize, String, AgentReport) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut running = Vec::new();
    for t in 0..tasks {
        let (write, ids) = (write.clone(), ids.to_vec());
        running.push(tokio::spawn(async move {
            for i in (t..REPORTS).step_by(tasks) {
                let report = AgentReport {
                    idle_ms: 1000,
                    rdp_clients: 1,
                    users: vec!["alice".into()],
                    agent_version: "bench".into(),
                };
                write(t, ids[i % ids.len()].clone(), report).await;
            }
        }));
    }
    for task in running {
        task.await.unwrap();
    }
    start.elapsed()
}

/// Creates (one task per server, several creates at once each) and agent
/// reports (AGENTS agents spread over the servers, each server writing
/// its reports in groups) per second, with `stores` as the servers.
async fn measure_servers(name: &str, stores: Vec<Store>) {
    const AT_ONCE: usize = 4;
    const AGENTS: usize = 256;
    let every = AT_ONCE * stores.len();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for t in 0..AT_ONCE {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in (0..CREATES).skip(s * AT_ONCE + t).step_by(every) {
                    ids.push(store.create_session(new(i), LIMITS).await.unwrap().0.id);
                }
                ids
            }));
        }
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    let creates = start.elapsed();

    let writers: Vec<Reports> = stores.iter().cloned().map(Reports::start).collect();
    let reports = send_reports(AGENTS, &ids, move |a, id, report| {
        let writer = writers[a % writers.len()].clone();
        async move { writer.record(&id, report).await.unwrap() }
    })
    .await;
    println!(
        "| {name} | {} ({} creates) | {} ({REPORTS} reports, {AGENTS} agents) |",
        rate(ids.len(), creates),
        ids.len(),
        rate(REPORTS, reports)
    );
}

async fn measure(name: &str, store: Store) {
    let start = Instant::now();
    let mut ids = Vec::new();
    for i in 0..CREATES {
        ids.push(store.create_session(new(i), LIMITS).await.unwrap().0.id);
    }
    let creates = start.elapsed();

    let path = [
        SessionState::Queued,
        SessionState::Provisioning,
        SessionState::Booting,
        SessionState::Configuring,
        SessionState::Ready,
    ];
    let start = Instant::now();
    for id in &ids {
        for pair in path.windows(2) {
            store
                .transition(id, pair[0], pair[1], String::new(), None)
                .await
                .unwrap();
        }
    }
    let moves = start.elapsed();

    let start = Instant::now();
    for i in 0..LINES {
        let line = OutputLine {
            text: format!("line {i}"),
            ..OutputLine::default()
        };
        store.output(&ids[i % ids.len()], line).await.unwrap();
    }
    let lines = start.elapsed();

    let reports = send_reports(WRITERS, &ids, move |_, id, report| {
        let store = store.clone();
        async move { store.record_activity(&id, report).await.unwrap() }
    })
    .await;
    println!(
        "| {name} | {} | {} | {} | {} |",
        rate(CREATES, creates),
        rate(CREATES * 4, moves),
        rate(LINES, lines),
        rate(REPORTS, reports)
    );
}

/// Two servers on one PostgreSQL: an output line stored by A, and when a
/// watcher on B has it.
async fn across_servers() {
    let url = postgres_schema().await;
    let connect = || async {
        Store::new(Arc::new(
            PostgresStore::connect(postgres_connection(&url))
                .await
                .expect("PostgreSQL"),
        ))
    };
    let (a, b) = (connect().await, connect().await);
    let (session, _) = a.create_session(new(0), LIMITS).await.unwrap();
    let mut on_b = b.subscribe(&session.id);
    let mut took = Vec::new();
    for i in 0..500 {
        let line = OutputLine {
            text: format!("line {i}"),
            ..OutputLine::default()
        };
        let start = Instant::now();
        let event = a.output(&session.id, line).await.unwrap();
        loop {
            let got = on_b.recv().await.unwrap();
            if got.sequence == event.sequence {
                break;
            }
        }
        took.push(start.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "event stored on A to a watcher on B (500 lines, one at a time, write included): p50 {:?}, p99 {:?}",
        at(0.5),
        at(0.99)
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    println!(
        "| store | creates | stage changes | output lines | agent reports ({WRITERS} writers) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    let dir = tempfile::tempdir().expect("a temp dir");
    measure(
        "SQLite (WAL, one file)",
        Store::open(&dir.path().join("daas.sqlite3")).expect("SQLite"),
    )
    .await;
    measure("PostgreSQL 15 (Unix socket)", postgres().await).await;
    across_servers().await;

    println!();
    println!("| servers | creates | agent reports, written in groups |");
    println!("| --- | --- | --- |");
    measure_servers(
        "SQLite, one server",
        vec![Store::open(&dir.path().join("grouped.sqlite3")).expect("SQLite")],
    )
    .await;
    measure_servers("PostgreSQL, one server", servers(1).await).await;
    measure_servers("PostgreSQL, three servers", servers(3).await).await;
}
