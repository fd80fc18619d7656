//! The placement decision (`domain/placement.rs`) on a large cluster.
//!
//! `cargo bench -p daas-server --bench placement` prints, for 32 nodes
//! holding 5,000 desktops between them, the time of one decision (p50,
//! p99 over 20,000), and how evenly `spread` and `pack` fill 4 nodes with
//! 100 desktops placed one after the other.

use std::time::Instant;

use daas_server::domain::placement::{Capacity, Need, Node, NodeState, Policy, Strategy, place};

const NEED: Need<'static> = Need {
    template: "debian-12",
    memory_mb: 4096,
    cores: 2,
};

fn cluster(nodes: usize, desktops: u32) -> Vec<Node> {
    (0..nodes)
        .map(|i| {
            // Uneven on purpose: every fourth node holds more.
            let mine = desktops / nodes as u32 + if i % 4 == 0 { 10 } else { 0 };
            Node {
                name: format!("pve{i}"),
                state: if i % 16 == 5 {
                    NodeState::Maintenance
                } else {
                    NodeState::Online
                },
                drained: i % 16 == 7,
                capacity: Capacity {
                    cpus: 128,
                    memory_mb: 1024 * 1024,
                    used_memory_mb: u64::from(mine) * 1024,
                    configured_memory_mb: u64::from(mine) * 4096 / 2,
                    configured_cores: mine,
                },
                templates: vec!["ubuntu-24".into(), "debian-12".into()],
                desktops: mine,
            }
        })
        .collect()
}

fn main() {
    let nodes = cluster(32, 5_000);
    let policy = Policy::default();
    let mut times = Vec::with_capacity(20_000);
    let mut chosen = 0usize;
    for _ in 0..20_000 {
        let started = Instant::now();
        chosen += place(std::hint::black_box(&nodes), &NEED, &policy).expect("room");
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    println!(
        "32 nodes, 5,000 desktops: one decision p50 {:?}, p99 {:?}, max {:?} (checksum {chosen})",
        at(0.5),
        at(0.99),
        times[times.len() - 1]
    );

    for strategy in [Strategy::Spread, Strategy::Pack] {
        let policy = Policy {
            strategy,
            ..Policy::default()
        };
        let mut nodes: Vec<Node> = (0..4)
            .map(|i| Node {
                name: format!("node-{}", i + 1),
                state: NodeState::Online,
                drained: false,
                capacity: Capacity {
                    cpus: 64,
                    memory_mb: 256 * 1024,
                    ..Capacity::default()
                },
                templates: vec!["debian-12".into()],
                desktops: 0,
            })
            .collect();
        for _ in 0..100 {
            let i = place(&nodes, &NEED, &policy).expect("room");
            nodes[i].capacity.configured_memory_mb += NEED.memory_mb;
            nodes[i].capacity.configured_cores += NEED.cores;
            nodes[i].desktops += 1;
        }
        let counts: Vec<u32> = nodes.iter().map(|n| n.desktops).collect();
        println!("100 desktops on 4 nodes of 256 GiB, {strategy:?}: {counts:?}");
    }
}
