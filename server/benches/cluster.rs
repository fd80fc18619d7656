//! 100 creates end to end over 4 nodes the test module simulates: the
//! server places each in the create's transaction (spread, then pack) and
//! the module gets `target_node`. Prints the wall time, creates per second
//! and where the desktops went, as the nodes' report and the store count
//! them (`ListNodes`).
//!
//! `cargo bench -p daas-server --bench cluster`

use std::time::Instant;

use daas_api::v1::{CreateSessionRequest, ListNodesRequest, SessionState};
use daas_server::testkit::{TestOptions, TestServer};

const CREATES: usize = 100;

async fn run(strategy: &str) {
    let server = TestServer::start(TestOptions {
        max_parallel: 4,
        max_sessions: 200,
        max_sessions_per_user: 200,
        // 4 nodes of 128 GiB: room for 31 desktops of 4 GiB each.
        terraform_variables: vec![
            "node_count = 4".into(),
            "node_memory_mb = 131072".into(),
            "node_templates = \"debian-12-xfce\"".into(),
        ],
        extra_toml: format!(
            "[placement]\nstrategy = \"{strategy}\"\nrefresh_interval = \"1s\"\nmax_clones_per_node = 4\n"
        ),
        ..Default::default()
    })
    .await;
    let mut client = server.client().await;
    while client
        .list_nodes(ListNodesRequest {})
        .await
        .expect("list nodes")
        .into_inner()
        .nodes
        .len()
        < 4
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CREATES {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
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
    let mut ready = 0;
    for task in tasks {
        if task.await.expect("task") == Some(SessionState::Ready as i32) {
            ready += 1;
        }
    }
    let wall = started.elapsed();
    // The next report counts every desktop on its node.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let nodes = client
        .list_nodes(ListNodesRequest {})
        .await
        .expect("list nodes")
        .into_inner()
        .nodes;
    let spread: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "{} {} ({} of {} GiB configured)",
                n.name,
                n.desktops,
                n.configured_memory_mb / 1024,
                n.memory_mb / 1024
            )
        })
        .collect();
    println!(
        "{strategy}: {CREATES} creates at once over 4 simulated nodes, 4 provisions at a time: {ready} READY, wall {:.1} s, {:.2} creates/s; per node: {}",
        wall.as_secs_f64(),
        CREATES as f64 / wall.as_secs_f64(),
        spread.join(", ")
    );
    server.stop().await;
}

#[tokio::main]
async fn main() {
    for strategy in ["spread", "pack"] {
        run(strategy).await;
    }
}
