//! What metrics and the audit trail cost on the create path, and what a
//! scrape costs, against a real SQLite store.
//!
//! `cargo bench -p daas-server --bench metrics` prints, over 1,000 sessions
//! taken QUEUED to READY: the store's transitions (the work a create does
//! anyway) beside the metrics' stage changes and tool runs of a create, the
//! audit entry each create writes, and one `/metrics` scrape with those
//! sessions in the store (half of them READY with an agent report).

use std::time::{Duration, Instant};

use daas_api::v1::SessionState;
use daas_server::{
    audit::{Act, Actor, Audit},
    metrics::Metrics,
    store::{AgentReport, NewSession, SessionLimits, Store},
};

const SESSIONS: usize = 1000;
/// Tool runs of one create (terraform init, apply, output; ssh waits;
/// ansible-playbook), as a real create makes them.
const TOOL_RUNS: usize = 8;

fn per(total: Duration, n: usize) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / n as f64)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(&dir.path().join("daas.sqlite3")).expect("the store");
    let metrics = Metrics::new();
    let audit = Audit::open(store.clone(), None).expect("the audit trail");
    let limits = SessionLimits {
        max_sessions: SESSIONS * 2,
        max_per_user: SESSIONS * 2,
        org: None,
    };
    let path = [
        SessionState::Queued,
        SessionState::Provisioning,
        SessionState::Booting,
        SessionState::Configuring,
        SessionState::Ready,
    ];
    let (mut store_time, mut metrics_time, mut audit_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for n in 0..SESSIONS {
        let t = Instant::now();
        let (record, _) = store
            .create_session(
                NewSession {
                    username: format!("user{}", n % 50),
                    template: "debian-12-xfce".into(),
                    ..Default::default()
                },
                limits,
            )
            .await
            .expect("create");
        store_time += t.elapsed();
        for step in path.windows(2) {
            let t = Instant::now();
            let event = store
                .transition(&record.id, step[0], step[1], "bench".into(), None)
                .await
                .expect("transition");
            store_time += t.elapsed();
            let t = Instant::now();
            metrics.stage_change(&record, &event);
            metrics_time += t.elapsed();
        }
        let t = Instant::now();
        for run in 0..TOOL_RUNS {
            let tool = ["terraform", "ssh", "ansible"][run % 3];
            metrics.tool_run(tool, "ok", 1.5);
        }
        metrics.grpc_request(
            "daas.v1.DesktopService/CreateSession",
            tonic::Code::Ok,
            60.0,
        );
        metrics_time += t.elapsed();
        let t = Instant::now();
        audit
            .record(
                &Actor::internal("bench"),
                Act::new("create").session(&record.id, &record.username),
            )
            .await;
        audit_time += t.elapsed();
        if n % 2 == 0 {
            store
                .record_activity(
                    &record.id,
                    AgentReport {
                        idle_ms: 1000,
                        rdp_clients: 1,
                        users: vec!["alice".into()],
                        agent_version: "bench".into(),
                    },
                )
                .await
                .expect("a report");
        }
    }
    println!("per create, {SESSIONS} creates QUEUED to READY:");
    println!(
        "  store (create + 4 transitions)    {}",
        per(store_time, SESSIONS)
    );
    println!(
        "  metrics (4 stage changes, {TOOL_RUNS} tool runs, 1 gRPC request)  {}",
        per(metrics_time, SESSIONS)
    );
    println!(
        "  audit entry (SQLite insert)       {}",
        per(audit_time, SESSIONS)
    );
    // Scrapes: the first fills the per-session gauges.
    let mut size = 0;
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        size = metrics.render(&store).await.expect("a scrape").len();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "one /metrics scrape with {SESSIONS} sessions ({} READY with a report): p50 {:.1} ms, max {:.1} ms, {} KiB",
        SESSIONS / 2,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        size / 1024
    );
}
