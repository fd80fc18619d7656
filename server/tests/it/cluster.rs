//! A cluster: the test module simulates nodes (`node_count`), the server
//! reads them (`inventory nodes`) and places each desktop in the create's
//! transaction. Spread over 4 nodes, a full node skipped, the last room
//! taken once, a drained node, the module given `target_node` and `vm_id`,
//! and clones waiting their turn on a node.

use std::time::{Duration, Instant};

use crate::common::*;
use daas_api::v1::{
    DrainNodeRequest, ListNodesRequest, ListSessionsRequest, Node, NodeState, ResumeNodeRequest,
    Session, SessionState,
};
use daas_server::testkit::{TestOptions, TestServer};
use tonic::Code;

/// `count` simulated nodes of `memory_mb` each, holding the default
/// template, read every second.
fn cluster(count: u32, memory_mb: u64) -> TestOptions {
    TestOptions {
        terraform_variables: vec![
            format!("node_count = {count}"),
            format!("node_memory_mb = {memory_mb}"),
            "node_templates = \"debian-12-xfce\"".into(),
        ],
        extra_toml: "[placement]\nrefresh_interval = \"1s\"\n".into(),
        max_sessions: 1000,
        max_sessions_per_user: 1000,
        ..Default::default()
    }
}

/// Creates a desktop for `user` and returns it as first recorded (QUEUED,
/// placed), without following it further.
async fn placed(client: &mut Client, user: &str) -> Result<Session, tonic::Status> {
    let mut stream = client.create_session(request(user)).await?.into_inner();
    let first = stream
        .message()
        .await?
        .expect("a create's stream starts with an event");
    let got = client
        .get_session(daas_api::v1::GetSessionRequest {
            session_id: first.session_id,
        })
        .await?;
    Ok(got.into_inner())
}

async fn nodes(client: &mut Client) -> Vec<Node> {
    client
        .list_nodes(ListNodesRequest {})
        .await
        .expect("list nodes")
        .into_inner()
        .nodes
}

/// Waits until the server has read `count` nodes from the module.
async fn known_nodes(client: &mut Client, count: usize) -> Vec<Node> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = nodes(client).await;
        if now.len() == count {
            return now;
        }
        assert!(Instant::now() < deadline, "nodes never read: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many of `sessions` went to each of nodes node-1 .. node-`count`.
fn per_node(sessions: &[Session], count: usize) -> Vec<usize> {
    (1..=count)
        .map(|i| {
            let name = format!("node-{i}");
            sessions.iter().filter(|s| s.node == name).count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_creates_spread_evenly_over_four_nodes() {
    // Room for 63 desktops of 4 GiB on each node: spread puts 50 on each.
    // One provision at a time, its apply slow: the rest stay QUEUED, each
    // placed already, and reserved on its node until the module reports it.
    let server = TestServer::start(TestOptions {
        max_parallel: 1,
        create_delay_secs: 600,
        ..cluster(4, 256 * 1024)
    })
    .await;
    let mut client = server.client().await;
    known_nodes(&mut client, 4).await;
    let mut made = Vec::new();
    for i in 0..200 {
        made.push(
            placed(&mut client, &format!("user{i}"))
                .await
                .expect("create"),
        );
    }
    let counts = per_node(&made, 4);
    assert!(
        counts.iter().all(|&n| n.abs_diff(50) <= 1),
        "200 desktops over 4 equal nodes: {counts:?}"
    );
    // The API shows each node with its desktops.
    let listed = nodes(&mut client).await;
    let desktops: Vec<u32> = listed.iter().map(|n| n.desktops).collect();
    assert_eq!(desktops.iter().sum::<u32>(), 200, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|n| n.state() == NodeState::Online && n.listed)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_node_is_skipped_and_its_last_room_goes_once() {
    // Room for 2 desktops of 4 GiB per node; node-1 carries 8 GiB of
    // guests that are not ours: it is full.
    let options = TestOptions {
        max_parallel: 1,
        create_delay_secs: 600,
        ..cluster(3, 2 * 4096 + 512)
    };
    let server = TestServer::start(options).await;
    std::fs::write(server.markers().join("node-1.load"), "8192\n").unwrap();
    let mut client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while known_nodes(&mut client, 3).await[0].configured_memory_mb != 8192 {
        assert!(Instant::now() < deadline, "node-1's load never read");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(
            placed(&mut client, &format!("user{i}"))
                .await
                .expect("create"),
        );
    }
    assert_eq!(per_node(&made, 3), [0, 2, 1], "the full node is skipped");
    // Two creates race for the last room (node-3's): one gets it, the
    // other is told why no node can take it.
    let (mut a, mut b) = (server.client().await, server.client().await);
    let (ra, rb) = tokio::join!(placed(&mut a, "racer-a"), placed(&mut b, "racer-b"));
    let (won, lost) = match (ra, rb) {
        (Ok(s), Err(e)) | (Err(e), Ok(s)) => (s, e),
        other => panic!("one of two creates for one room gets it: {other:?}"),
    };
    assert_eq!(won.node, "node-3");
    assert_eq!(lost.code(), Code::ResourceExhausted);
    for part in [
        "no node can take a desktop of 'debian-12-xfce'",
        "node-1 has 512 MiB free, needs 4096 MiB and keeps 512",
        "node-2 has 512 MiB free",
        "node-3 has 512 MiB free",
    ] {
        assert!(lost.message().contains(part), "{}", lost.message());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_unreadable_at_start_is_placed_on_with_the_last_report() {
    let options = TestOptions {
        create_delay_secs: 600,
        ..cluster(2, 64 * 1024)
    };
    let server = TestServer::start(options).await;
    let mut client = server.client().await;
    known_nodes(&mut client, 2).await;
    // The cluster cannot be read when the server starts again.
    std::fs::write(server.markers().join("nodes.fail"), "").unwrap();
    let server = server.restart().await;
    let mut client = server.client().await;
    let made = placed(&mut client, "alice").await.expect("create");
    assert!(
        ["node-1", "node-2"].contains(&made.node.as_str()),
        "placed with the last report: {made:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_node_takes_nothing_new_until_resumed() {
    let server = TestServer::start(TestOptions {
        max_parallel: 1,
        create_delay_secs: 600,
        ..cluster(2, 64 * 1024)
    })
    .await;
    let mut admin = server.client().await;
    known_nodes(&mut admin, 2).await;
    let mut user = server.client_as("alice", false).await;
    let refused = user
        .drain_node(DrainNodeRequest {
            name: "node-2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let unknown = admin
        .drain_node(DrainNodeRequest {
            name: "node-9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("daas node list"), "{unknown:?}");
    let drained = admin
        .drain_node(DrainNodeRequest {
            name: "node-2".into(),
        })
        .await
        .expect("drain")
        .into_inner();
    assert!(drained.drained);
    let mut made = Vec::new();
    for i in 0..4 {
        made.push(
            placed(&mut admin, &format!("user{i}"))
                .await
                .expect("create"),
        );
    }
    assert_eq!(
        per_node(&made, 2),
        [4, 0],
        "nothing new on the drained node"
    );
    let resumed = admin
        .resume_node(ResumeNodeRequest {
            name: "node-2".into(),
        })
        .await
        .expect("resume")
        .into_inner();
    assert!(!resumed.drained);
    let next = placed(&mut admin, "user9").await.expect("create");
    assert_eq!(next.node, "node-2", "the resumed node is the emptier");
    // Both acts are in the audit trail.
    let audit = admin
        .list_audit(daas_api::v1::ListAuditRequest::default())
        .await
        .expect("audit")
        .into_inner()
        .entries;
    for action in ["drain_node", "resume_node"] {
        assert!(
            audit
                .iter()
                .any(|e| e.action == action && e.detail == "node-2" && e.result == "OK"),
            "{action} audited: {audit:?}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_module_gets_the_node_and_vm_id_and_reports_the_desktop_there() {
    let server = TestServer::start(cluster(2, 64 * 1024)).await;
    let mut client = server.client().await;
    known_nodes(&mut client, 2).await;
    let (id, _) = ready_session(&server, "alice").await;
    let session = client
        .get_session(daas_api::v1::GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(session.node.starts_with("node-"), "{session:?}");
    let marker = |ext: &str| {
        std::fs::read_to_string(server.markers().join(format!("{}.{ext}", session.vm_name)))
            .unwrap_or_else(|e| panic!("{ext} marker: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(marker("node"), session.node);
    // The test module's vm_id output is 9000 + slot; the server's vm_id is
    // vm_id_base (10000) + slot.
    let slot: u64 = session.vm_id.parse::<u64>().unwrap() - 9000;
    assert_eq!(marker("vmid"), (10_000 + slot).to_string());
    // The next report counts it on its node, and the store no longer adds
    // a reservation of its own for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = nodes(&mut client).await;
        let there = now.iter().find(|n| n.name == session.node).unwrap();
        if there.configured_memory_mb == 4096 {
            assert_eq!(there.desktops, 1);
            break;
        }
        assert!(Instant::now() < deadline, "never reported: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = client
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(all.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clones_on_one_node_wait_their_turn() {
    // One node, one clone at a time: the second create waits for the
    // first's apply (3 s) to end before its own starts.
    let mut options = cluster(1, 64 * 1024);
    options.extra_toml = "[placement]\nrefresh_interval = \"1s\"\nmax_clones_per_node = 1\n".into();
    let nodes = one_clone_waits_for_the_other(
        options,
        1,
        "waiting for a clone turn on node-1: 1 clones under way",
    )
    .await;
    assert_eq!(nodes, ["node-1", "node-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn clones_from_one_shared_storage_wait_their_turn() {
    // Two nodes cloning from one shared storage, one clone at a time from
    // it: the creates go to both nodes, and one still waits for the other.
    let mut options = cluster(2, 64 * 1024);
    options
        .terraform_variables
        .push("node_storage = \"ceph\"".into());
    options.extra_toml =
        "[placement]\nrefresh_interval = \"1s\"\nmax_clones_per_storage = 1\n".into();
    let mut nodes = one_clone_waits_for_the_other(
        options,
        2,
        "waiting for a clone turn on storage ceph: 1 clones from it under way, at most 1 at once",
    )
    .await;
    nodes.sort();
    assert_eq!(nodes, ["node-1", "node-2"]);
}

/// Two creates at once, each apply 3 s long, where a clone limit lets one
/// clone run: exactly one waits (saying `waited` in its events) until the
/// other's apply is over. Returns the nodes they went to.
async fn one_clone_waits_for_the_other(
    mut options: TestOptions,
    nodes: usize,
    waited: &str,
) -> Vec<String> {
    options.create_delay_secs = 3;
    let server = TestServer::start(options).await;
    let mut client = server.client().await;
    known_nodes(&mut client, nodes).await;
    let (mut a, mut b) = (server.client().await, server.client().await);
    let (ea, eb) = tokio::join!(
        create(&mut a, request("alice")),
        create(&mut b, request("bob"))
    );
    let (sa, sb) = (ready(&ea), ready(&eb));
    let waiting: Vec<_> = [&ea, &eb]
        .into_iter()
        .filter(|events| output(events).iter().any(|l| l.contains(waited)))
        .collect();
    assert_eq!(waiting.len(), 1, "exactly one create waited for its turn");
    // It reached BOOTING at least the other's apply time after it.
    let booted = |events: &[daas_api::v1::SessionEvent]| entered_ms(events, SessionState::Booting);
    let gap = booted(&ea).abs_diff(booted(&eb));
    assert!(gap >= 2_500, "the clones overlapped: {gap} ms apart");
    server.stop().await;
    vec![sa.node, sb.node]
}

/// The pool's unclaimed READY desktops.
async fn ready_spares(client: &mut Client) -> Vec<Session> {
    client
        .list_sessions(ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sessions
        .into_iter()
        .filter(|s| s.pool == "lab" && s.username.is_empty() && s.state() == SessionState::Ready)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_nodes_pool_desktop_is_rebuilt_on_another() {
    let mut options = cluster(2, 64 * 1024);
    options
        .extra_toml
        .push_str("[pools.lab]\nsize = 1\nmax_building = 1\n");
    let server = TestServer::start(options).await;
    let mut client = server.client().await;
    known_nodes(&mut client, 2).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let first = loop {
        if let [one] = ready_spares(&mut client).await.as_slice() {
            break one.clone();
        }
        assert!(Instant::now() < deadline, "the pool never got a desktop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    client
        .drain_node(DrainNodeRequest {
            name: first.node.clone(),
        })
        .await
        .expect("drain");
    // Replaced on the other node; the one on the drained node destroyed.
    let deadline = Instant::now() + Duration::from_secs(180);
    let second = loop {
        if let [one] = ready_spares(&mut client).await.as_slice()
            && one.id != first.id
        {
            break one.clone();
        }
        assert!(Instant::now() < deadline, "the pool desktop never moved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(second.node, first.node);
    let old = client
        .get_session(daas_api::v1::GetSessionRequest {
            session_id: first.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert!(
        matches!(
            old.state(),
            SessionState::Destroying | SessionState::Destroyed
        ),
        "{old:?}"
    );
    server.stop().await;
}

/// Marks simulated node `node` offline (true) or online again.
fn set_offline(server: &TestServer, node: &str, offline: bool) {
    let path = server.markers().join(format!("{node}.state"));
    if offline {
        std::fs::write(path, "offline\n").unwrap();
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// Waits until ListNodes shows `node` in `state`.
async fn node_state(client: &mut Client, node: &str, state: NodeState) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = nodes(client).await;
        if now.iter().any(|n| n.name == node && n.state() == state) {
            return;
        }
        assert!(Instant::now() < deadline, "{node} never {state:?}: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn session(client: &mut Client, id: &str) -> Session {
    client
        .get_session(daas_api::v1::GetSessionRequest {
            session_id: id.into(),
        })
        .await
        .expect("get")
        .into_inner()
}

fn marker_exists(server: &TestServer, vm: &str, ext: &str) -> bool {
    server.markers().join(format!("{vm}.{ext}")).exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_lost_mid_create_fails_it_and_its_vm_is_swept_when_back() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 3,
        ..cluster(2, 64 * 1024)
    })
    .await;
    let mut client = server.client().await;
    known_nodes(&mut client, 2).await;
    let first = placed(&mut client, "alice").await.expect("create");
    assert_eq!(first.node, "node-1");
    tokio::time::sleep(Duration::from_secs(1)).await;
    set_offline(&server, "node-1", true);
    let events = watch(&mut client, &first.id).await;
    let failed = settled(&events);
    assert_eq!(failed.state(), SessionState::Failed, "{failed:?}");
    let reason = failed.failure.clone().unwrap_or_default().reason;
    assert!(reason.contains("node-1"), "{reason}");
    // The VM exists and its destroy failed with the node: nothing is
    // destroyed while the node is away.
    assert!(marker_exists(&server, &first.vm_name, "created"));
    assert!(!marker_exists(&server, &first.vm_name, "destroyed"));
    // A new create goes to the other node.
    let second = placed(&mut client, "bob").await.expect("create");
    assert_eq!(second.node, "node-2");
    // The node is back: the sweeper (a pass at start) destroys the VM once.
    set_offline(&server, "node-1", false);
    node_state(&mut client, "node-1", NodeState::Online).await;
    let server = server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker_exists(&server, &first.vm_name, "destroyed") {
        assert!(
            Instant::now() < deadline,
            "the lost create's VM was never swept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let destroys = std::fs::read_to_string(
        server
            .markers()
            .join(format!("{}.destroyed", first.vm_name)),
    )
    .unwrap();
    assert_eq!(destroys.lines().count(), 1, "destroyed once: {destroys}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ready_desktop_on_a_lost_node_is_lost_then_swept_when_it_is_back() {
    let mut options = cluster(2, 64 * 1024);
    options.extra_toml = "[placement]\nrefresh_interval = \"1s\"\nlost_after = \"1s\"\n".into();
    options.max_sessions_per_user = 1;
    let server = TestServer::start(options).await;
    let mut client = server.client().await;
    known_nodes(&mut client, 2).await;
    let (id, _) = ready_session(&server, "alice").await;
    let desktop = session(&mut client, &id).await;
    assert_eq!(desktop.node, "node-1");
    set_offline(&server, "node-1", true);
    let deadline = Instant::now() + Duration::from_secs(60);
    let lost = loop {
        let now = session(&mut client, &id).await;
        if now.state() == SessionState::Lost {
            break now;
        }
        assert!(Instant::now() < deadline, "never LOST: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let why = lost.failure.clone().unwrap_or_default().reason;
    assert!(why.contains("node node-1 is offline since"), "{why}");
    // The user is told in the session's events.
    let events = watch(&mut client, &id).await;
    assert_eq!(stages(&events).last(), Some(&SessionState::Lost));
    // It no longer counts against the user's limit of one: a new desktop
    // goes to the other node.
    let mut alice = server.client_as("alice", false).await;
    let next = placed(&mut alice, "alice").await.expect("a second desktop");
    assert_eq!(next.node, "node-2");
    // Destroying it now could only fail: refused, with why.
    let refused = alice
        .destroy_session(daas_api::v1::DestroySessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("destroyed when the node is back"),
        "{refused:?}"
    );
    // The node is back: its VM is destroyed once, the session DESTROYED.
    set_offline(&server, "node-1", false);
    node_state(&mut client, "node-1", NodeState::Online).await;
    let server = server.restart().await;
    let mut client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = session(&mut client, &id).await;
        if now.state() == SessionState::Destroyed {
            break;
        }
        assert!(Instant::now() < deadline, "never DESTROYED: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let destroys = std::fs::read_to_string(
        server
            .markers()
            .join(format!("{}.destroyed", desktop.vm_name)),
    )
    .unwrap();
    assert_eq!(destroys.lines().count(), 1, "destroyed once: {destroys}");
    server.stop().await;
}
