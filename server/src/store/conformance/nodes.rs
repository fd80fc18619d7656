//! The nodes' part of the suite: reports recorded (drained flags kept, a
//! node no longer listed kept offline), placement under concurrent writers
//! (the last room of a node taken once), clone turns per node and per
//! storage.

use std::collections::BTreeMap;

use daas_api::v1::SessionState;

use super::{Backend, UNLIMITED, new_session};
use crate::domain::placement::{Capacity, ListedNode, NodeState, Policy, Strategy};
use crate::store::{
    NewSession, SessionLimits, StoreError,
    nodes::{Busy, CloneTurn},
};

/// A node with room for `room` desktops of [`placed`]'s size (2048 MiB).
fn node(name: &str, room: u64) -> ListedNode {
    ListedNode {
        node: name.into(),
        state: NodeState::Online,
        capacity: Capacity {
            cpus: 16,
            memory_mb: 512 + room * 2048,
            ..Capacity::default()
        },
        templates: vec!["t".into()],
        template_storage: BTreeMap::new(),
        vms: Vec::new(),
    }
}

/// Spread, a 512 MiB reserve, one clone at a time per node and per storage.
const ONE: Policy = Policy {
    strategy: Strategy::Spread,
    memory_reserve_mb: 512,
    max_clones_per_node: 1,
    max_clones_per_storage: 1,
};

/// A create placed with [`ONE`], of 2 cores and 2048 MiB.
fn placed(user: &str) -> NewSession {
    NewSession {
        placing: Some(ONE),
        size: Some(crate::domain::catalog::Size {
            name: "small".into(),
            cores: 2,
            memory_mb: 2048,
            disk_gb: 20,
        }),
        ..new_session(user)
    }
}

pub(super) async fn nodes_are_recorded_drained_and_counted(db: &impl Backend) {
    let store = db.open().await;
    store
        .record_nodes(Some(vec![node("n1", 4), node("n2", 4)]))
        .await
        .unwrap();
    assert!(store.set_drained("n2", true).await.unwrap());
    assert!(
        !store.set_drained("n9", true).await.unwrap(),
        "no such node"
    );
    let (a, _) = store
        .create_session_unlimited(placed("alice"))
        .await
        .unwrap();
    assert_eq!(a.node.as_deref(), Some("n1"), "n2 is drained");
    let pool = NewSession {
        pool: Some("p".into()),
        username: String::new(),
        ..placed("")
    };
    let (b, _) = store.create_session_unlimited(pool).await.unwrap();
    assert_eq!(b.node.as_deref(), Some("n1"));
    // A new report keeps the drain; a node it no longer lists stays,
    // offline and absent.
    store.record_nodes(Some(vec![node("n2", 3)])).await.unwrap();
    let nodes = store.nodes().await.unwrap();
    let names: Vec<_> = nodes.iter().map(|n| n.listed.node.as_str()).collect();
    assert_eq!(names, ["n1", "n2"]);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    assert_eq!((n1.present, n1.listed.state), (false, NodeState::Offline));
    assert_eq!((n1.desktops, n1.pool_desktops, n1.clones), (1, 1, 0));
    assert!(n2.present && n2.drained);
    assert_eq!(n2.listed.capacity.memory_mb, 512 + 3 * 2048);
    // Neither takes a desktop now: the error names both.
    let err = store
        .create_session_unlimited(placed("carol"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::NoRoom(_)), "{text}");
    assert!(
        text.contains("n1 offline") && text.contains("n2 drained"),
        "{text}"
    );
    assert!(store.set_drained("n2", false).await.unwrap());
    let (c, _) = store
        .create_session_unlimited(placed("carol"))
        .await
        .unwrap();
    assert_eq!(c.node.as_deref(), Some("n2"));
    // A create without placement places nothing, whatever the store knows.
    let (d, _) = store
        .create_session_unlimited(new_session("dave"))
        .await
        .unwrap();
    assert_eq!(d.node, None);
    // Nor one without a size: there is nothing to reserve.
    let (e, _) = store
        .create_session_unlimited(NewSession {
            size: None,
            ..placed("erin")
        })
        .await
        .unwrap();
    assert_eq!(e.node, None);
    // The module stopped reporting nodes: the store forgets them.
    store.record_nodes(None).await.unwrap();
    assert!(store.nodes().await.unwrap().is_empty());
}

pub(super) fn the_last_room_of_a_node_is_taken_once(db: &impl Backend) {
    // Two nodes with room for 3 desktops each, 4 writers (as 4 servers)
    // making 5 creates each at once: 6 get a node, 3 on each, the rest
    // are refused with the nodes' reasons.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let nodes = runtime.block_on(async {
        let first = db.open().await;
        first
            .record_nodes(Some(vec![node("n1", 3), node("n2", 3)]))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for writer in 0..4 {
            let store = db.open().await;
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..5 {
                    let user = format!("user-{writer}-{i}");
                    match store.create_session(placed(&user), limits()).await {
                        Ok((record, _)) => got.push(record.node.unwrap()),
                        Err(StoreError::NoRoom(_)) => {}
                        Err(err) => panic!("writer {writer}: {err}"),
                    }
                }
                got
            }));
        }
        let mut nodes = Vec::new();
        for task in tasks {
            nodes.extend(task.await.unwrap());
        }
        nodes
    });
    let on = |name: &str| nodes.iter().filter(|n| *n == name).count();
    assert_eq!((on("n1"), on("n2")), (3, 3), "{nodes:?}");
}

fn limits() -> SessionLimits {
    UNLIMITED
}

pub(super) async fn clone_turns_are_counted_per_node(db: &impl Backend) {
    use SessionState::*;
    let store = db.open().await;
    store.record_nodes(Some(vec![node("n1", 8)])).await.unwrap();
    let (a, _) = store
        .create_session_unlimited(placed("alice"))
        .await
        .unwrap();
    let (b, _) = store.create_session_unlimited(placed("bob")).await.unwrap();
    let (c, _) = store
        .create_session_unlimited(new_session("carol"))
        .await
        .unwrap();
    for s in [&a, &b, &c] {
        store.walk(&s.id, &[Provisioning]).await;
    }
    assert_eq!(store.begin_clone(&a.id, ONE).await.unwrap(), CloneTurn::Go);
    assert_eq!(
        store.begin_clone(&a.id, ONE).await.unwrap(),
        CloneTurn::Go,
        "asking again does not count itself"
    );
    assert_eq!(
        store.begin_clone(&b.id, ONE).await.unwrap(),
        CloneTurn::Wait(Busy::Node { clones: 1 })
    );
    assert_eq!(
        store.begin_clone(&c.id, ONE).await.unwrap(),
        CloneTurn::Go,
        "a VM on no node waits for nobody"
    );
    assert_eq!(store.nodes().await.unwrap()[0].clones, 1);
    store.end_clone(&a.id).await.unwrap();
    assert_eq!(store.begin_clone(&b.id, ONE).await.unwrap(), CloneTurn::Go);
    // A state change ends the clone too (a failed or taken-over create).
    store.walk(&b.id, &[Failed]).await;
    assert_eq!(store.begin_clone(&a.id, ONE).await.unwrap(), CloneTurn::Go);
    assert!(matches!(
        store.begin_clone("no-such-id", ONE).await,
        Err(StoreError::Missing(_))
    ));
}

pub(super) async fn clone_turns_are_counted_per_storage(db: &impl Backend) {
    use SessionState::*;
    let store = db.open().await;
    // n1 and n2 clone from one shared storage, n3 from its own.
    let on = |name: &str, storage: &str| ListedNode {
        template_storage: BTreeMap::from([("t".into(), storage.into())]),
        ..node(name, 8)
    };
    store
        .record_nodes(Some(vec![
            on("n1", "ceph"),
            on("n2", "ceph"),
            on("n3", "n3/local"),
        ]))
        .await
        .unwrap();
    let nodes = store.nodes().await.unwrap();
    assert_eq!(
        nodes[0]
            .listed
            .template_storage
            .get("t")
            .map(String::as_str),
        Some("ceph"),
        "the storages are kept"
    );
    let mut ids = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let (s, _) = store.create_session_unlimited(placed(user)).await.unwrap();
        store.walk(&s.id, &[Provisioning]).await;
        ids.push((s.node.clone().unwrap(), s.id));
    }
    ids.sort();
    let nodes: Vec<&str> = ids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, ["n1", "n2", "n3"], "spread over the three");
    let two_per_node = Policy {
        max_clones_per_node: 2,
        ..ONE
    };
    let turn = |i: usize| store.begin_clone(&ids[i].1, two_per_node);
    assert_eq!(turn(0).await.unwrap(), CloneTurn::Go);
    assert_eq!(
        turn(1).await.unwrap(),
        CloneTurn::Wait(Busy::Storage {
            storage: "ceph".into(),
            clones: 1
        }),
        "n2 clones from the storage n1 is cloning from"
    );
    assert_eq!(
        turn(2).await.unwrap(),
        CloneTurn::Go,
        "n3 has a storage of its own"
    );
    store.end_clone(&ids[0].1).await.unwrap();
    assert_eq!(turn(1).await.unwrap(), CloneTurn::Go);
}

pub(super) async fn a_claim_skips_desktops_on_drained_nodes(db: &impl Backend) {
    use SessionState::*;
    let store = db.open().await;
    store.record_nodes(Some(vec![node("n1", 4)])).await.unwrap();
    let spare = NewSession {
        pool: Some("p".into()),
        username: String::new(),
        ..placed("")
    };
    let (record, _) = store.create_session_unlimited(spare).await.unwrap();
    store
        .walk(&record.id, &[Provisioning, Booting, Configuring, Ready])
        .await;
    store.set_drained("n1", true).await.unwrap();
    let claim = || store.claim(new_session("alice"), "p", UNLIMITED);
    assert!(claim().await.unwrap().is_none(), "nothing to claim off n1");
    store.set_drained("n1", false).await.unwrap();
    let (claimed, _) = claim().await.unwrap().expect("claimed once resumed");
    assert_eq!(claimed.id, record.id);
}
