//! The kept disks' part of the suite: recorded once, listed newest first
//! with the live session restored from each, and a disk restored by one
//! live session at a time, decided in the create's transaction.

use daas_api::v1::SessionState;

use super::{Backend, UNLIMITED, new_session};
use crate::store::{
    NewSession,
    snapshots::{SnapshotRecord, Which},
};

fn kept(id: &str, user: &str, created_ms: i64) -> SnapshotRecord {
    SnapshotRecord {
        id: id.into(),
        username: user.into(),
        template: "t".into(),
        size: "medium".into(),
        org: None,
        vm_name: "desktop-abc123".into(),
        created_ms,
        size_gb: 20,
        restoring: None,
    }
}

pub(super) async fn a_kept_disk_is_restored_by_one_desktop_at_a_time(db: &impl Backend) {
    let store = db.open().await;
    store.keep_snapshot(kept("k1", "alice", 1)).await.unwrap();
    store.keep_snapshot(kept("k1", "alice", 5)).await.unwrap();
    store.keep_snapshot(kept("k2", "alice", 2)).await.unwrap();
    store.keep_snapshot(kept("k3", "bob", 3)).await.unwrap();
    let physics = SnapshotRecord {
        org: Some("physics".into()),
        ..kept("k4", "carol", 4)
    };
    store.keep_snapshot(physics.clone()).await.unwrap();
    let alices = store.snapshots(Which::of_user("alice")).await.unwrap();
    assert_eq!(alices, [kept("k2", "alice", 2), kept("k1", "alice", 1)]);
    assert_eq!(store.snapshots(Which::all()).await.unwrap().len(), 4);
    assert_eq!(
        store.snapshots(Which::id("k3")).await.unwrap(),
        [kept("k3", "bob", 3)]
    );
    assert_eq!(
        store.snapshots(Which::of_org("physics")).await.unwrap(),
        [physics]
    );
    assert_eq!(store.snapshots(Which::id("k9")).await.unwrap(), []);
    let both = Which {
        username: Some("bob".into()),
        ..Which::id("k1")
    };
    assert_eq!(
        store.snapshots(both).await.unwrap(),
        [],
        "every field given"
    );

    let restoring = |id: &str| NewSession {
        restore_from: Some(id.into()),
        ..new_session("alice")
    };
    let (first, _) = store
        .create_session(restoring("k2"), UNLIMITED)
        .await
        .unwrap();
    assert_eq!(first.restore_from.as_deref(), Some("k2"));
    // A second create finds it taken, and one of a disk that is gone finds
    // nothing: both are fresh clones.
    let (second, _) = store
        .create_session(restoring("k2"), UNLIMITED)
        .await
        .unwrap();
    assert_eq!(second.restore_from, None);
    let (gone, _) = store
        .create_session(restoring("k9"), UNLIMITED)
        .await
        .unwrap();
    assert_eq!(gone.restore_from, None);
    let listed = store.snapshots(Which::of_user("alice")).await.unwrap();
    assert_eq!(listed[0].restoring.as_deref(), Some(first.id.as_str()));
    assert_eq!(listed[1].restoring, None);
    // Once that desktop failed, the disk is free again.
    store.walk(&first.id, &[SessionState::Failed]).await;
    let (again, _) = store
        .create_session(restoring("k2"), UNLIMITED)
        .await
        .unwrap();
    assert_eq!(again.restore_from.as_deref(), Some("k2"));

    let forgotten = store.forget_snapshot("k2").await.unwrap().unwrap();
    assert_eq!(forgotten.id, "k2");
    assert_eq!(store.forget_snapshot("k2").await.unwrap(), None);
    assert_eq!(store.snapshots(Which::all()).await.unwrap().len(), 3);
}
