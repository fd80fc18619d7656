//! Desktops that keep their disk (`persistent = true`), through the API and
//! the test module's hooks (`inventory snapshot | restore | forget`, its
//! "disk" a marker file): a file on a desktop's disk is there on its user's
//! next desktop; a disk that cannot be kept stops the destroy (the VM
//! stays); a restore that fails leaves the kept disk; kept disks are
//! listed and deleted by their user only.

use daas_api::v1::{
    CreateSessionRequest, DeleteSnapshotRequest, DestroySessionRequest, ListSnapshotsRequest,
    SessionState, Snapshot,
};
use daas_server::testkit::{TestOptions, TestServer};
use tonic::Code;

use crate::common::*;

const NOTES: &str = r#"
[templates.debian-12-xfce]
[templates.notes]
title = "A desktop that keeps its disk"
persistent = true
"#;

fn notes(user: &str) -> CreateSessionRequest {
    CreateSessionRequest {
        template: "notes".into(),
        ..request(user)
    }
}

async fn kept(client: &mut Client) -> Vec<Snapshot> {
    client
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .expect("list kept disks")
        .into_inner()
        .snapshots
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_on_a_desktops_disk_is_there_on_the_next_one() {
    let server = TestServer::start(TestOptions {
        extra_toml: NOTES.into(),
        ..TestOptions::default()
    })
    .await;
    let markers = server.markers();
    let disk = |vm: &str| markers.join(format!("{vm}.disk"));
    let mut alice = server.client_as("alice", false).await;

    let listed = alice
        .list_templates(daas_api::v1::ListTemplatesRequest {})
        .await
        .expect("the catalog")
        .into_inner()
        .templates;
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.name.as_str(), t.persistent))
            .collect::<Vec<_>>(),
        [("debian-12-xfce", false), ("notes", true)]
    );

    // A first desktop: blank; alice writes a file on its disk.
    let first = ready(&create(&mut alice, notes("alice")).await);
    assert_eq!(first.restored_from, "");
    std::fs::write(disk(&first.vm_name), "alice's notes\n").expect("write the disk");
    // The module reports a kept disk bigger than the template's size.
    std::fs::write(markers.join(format!("{}.size_gb", first.vm_name)), "50").expect("marker");
    let marker = |vm: &str, what: &str| {
        std::fs::read_to_string(markers.join(format!("{vm}.{what}")))
            .map(|s| s.trim().to_string())
            .ok()
    };
    assert_eq!(marker(&first.vm_name, "restore_from"), None);
    alice
        .destroy_session(DestroySessionRequest {
            session_id: first.id.clone(),
        })
        .await
        .expect("destroy");
    let disks = kept(&mut alice).await;
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].size_gb, 50);
    assert_eq!(
        (
            disks[0].id.as_str(),
            disks[0].vm_name.as_str(),
            disks[0].template.as_str()
        ),
        (first.id.as_str(), first.vm_name.as_str(), "notes")
    );
    let events = watch(&mut alice, &first.id).await;
    assert!(
        output(&events)
            .iter()
            .any(|l| l.contains(&format!("keeping the disk of {}", first.vm_name))),
        "{:?}",
        output(&events)
    );

    // The next desktop of the template comes back from it.
    let second = ready(&create(&mut alice, notes("alice")).await);
    assert_eq!(second.restored_from, first.id);
    assert_eq!(
        std::fs::read_to_string(disk(&second.vm_name)).expect("the restored disk"),
        "alice's notes\n"
    );
    // The module was told which kept disk, and given a disk no smaller.
    assert_eq!(
        marker(&second.vm_name, "restore_from").as_deref(),
        Some(first.id.as_str())
    );
    assert_eq!(marker(&second.vm_name, "disk_gb").as_deref(), Some("50"));
    assert_ne!(marker(&first.vm_name, "disk_gb").as_deref(), Some("50"));
    // Forgotten once the desktop is READY (just after: a crash between
    // the two leaves it kept, never lost).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !kept(&mut alice).await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        kept(&mut alice).await.is_empty(),
        "used: forgotten once READY"
    );
    assert!(
        !markers
            .join(format!("snapshots/{}.disk", first.id))
            .exists()
    );
    // Another template keeps nothing.
    let plain = ready(&create(&mut alice, request("alice")).await);
    alice
        .destroy_session(DestroySessionRequest {
            session_id: plain.id.clone(),
        })
        .await
        .expect("destroy");
    assert!(kept(&mut alice).await.is_empty());

    // A disk that cannot be kept stops the destroy: the VM stays.
    std::fs::write(
        markers.join(format!("{}.snapshot-fail", second.vm_name)),
        "",
    )
    .expect("marker");
    let status = alice
        .destroy_session(DestroySessionRequest {
            session_id: second.id.clone(),
        })
        .await
        .expect_err("the disk cannot be kept");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(
        !markers
            .join(format!("{}.destroyed", second.vm_name))
            .exists()
    );
    std::fs::remove_file(markers.join(format!("{}.snapshot-fail", second.vm_name)))
        .expect("marker");
    alice
        .destroy_session(DestroySessionRequest {
            session_id: second.id.clone(),
        })
        .await
        .expect("destroyed, its disk kept, once it can be");
    let disks = kept(&mut alice).await;
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].id, second.id);

    // A restore that fails (the module lost the disk) fails the create and
    // leaves the kept disk listed, to delete.
    std::fs::remove_file(markers.join(format!("snapshots/{}.disk", second.id)))
        .expect("lose the disk");
    let failed = settled(&create(&mut alice, notes("alice")).await);
    assert_eq!(failed.state(), SessionState::Failed);
    let reason = failed.failure.map(|f| f.reason).unwrap_or_default();
    assert!(
        reason.contains("could not restore the kept disk"),
        "{reason}"
    );
    assert_eq!(kept(&mut alice).await.len(), 1);

    // Deleted by its user only.
    let mut bob = server.client_as("bob", false).await;
    assert!(kept(&mut bob).await.is_empty());
    let status = bob
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: second.id.clone(),
        })
        .await
        .expect_err("not bob's");
    assert_eq!(status.code(), Code::PermissionDenied);
    alice
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: second.id.clone(),
        })
        .await
        .expect("deleted");
    assert!(kept(&mut alice).await.is_empty());
    let blank = ready(&create(&mut alice, notes("alice")).await);
    assert_eq!(blank.restored_from, "");
    assert_eq!(
        std::fs::read_to_string(disk(&blank.vm_name)).expect("a blank disk"),
        ""
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persistent_template_on_a_module_that_keeps_no_disks_stops_the_start() {
    let dir = tempfile::tempdir().expect("a folder");
    let path = daas_server::testkit::write_config(
        dir.path(),
        &TestOptions {
            extra_toml: NOTES.into(),
            ..TestOptions::default()
        },
    );
    // The test module, with a hook that knows no word (as one that predates
    // `snapshot`).
    let module = dir.path().join("module");
    std::fs::create_dir_all(&module).expect("module dir");
    let root = daas_server::testkit::workspace_root();
    std::fs::copy(root.join("terraform/test/main.tf"), module.join("main.tf")).expect("copy");
    let hook = module.join("inventory");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho \"usage: inventory list\" >&2\nexit 2\n",
    )
    .expect("hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = std::fs::read_to_string(&path).expect("the config");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("module_dir = ") {
                format!("module_dir = {:?}", module.display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, text).expect("write the config");
    let config = daas_server::config::Config::load(Some(&path)).expect("a valid config");
    let server = daas_server::app::BoundServer::bind(config)
        .await
        .expect("bind");
    let err = server
        .serve(async {})
        .await
        .expect_err("the start is refused");
    assert!(
        err.to_string()
            .contains("`templates.notes.persistent`: the Terraform module cannot keep disks"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_full_of_kept_disks_makes_no_new_persistent_desktop() {
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "{NOTES}\n[orgs.lab]\ngroups = [\"lab\"]\n[orgs.lab.quota]\nkept_gb = 1\n"
        ),
        ..TestOptions::default()
    })
    .await;
    let mut alice = server.client_in_groups("alice", &["lab"]).await;
    let mut bob = server.client_in_groups("bob", &["lab"]).await;
    let first = ready(&create(&mut alice, notes("alice")).await);
    alice
        .destroy_session(DestroySessionRequest {
            session_id: first.id.clone(),
        })
        .await
        .expect("destroy");
    let quota = alice
        .get_quota(daas_api::v1::GetQuotaRequest::default())
        .await
        .expect("the quota")
        .into_inner();
    assert_eq!(quota.org_used.map(|u| u.kept_gb), Some(1));
    assert_eq!(quota.org_max.map(|m| m.kept_gb), Some(1));
    // Full: bob gets no new persistent desktop; another template he does.
    let status = bob
        .create_session(notes("bob"))
        .await
        .expect_err("the kept disks fill the quota");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status
            .message()
            .contains("1 of 1 GiB of kept disks in use (orgs.lab.quota.kept_gb)"),
        "{status:?}"
    );
    ready(&create(&mut bob, request("bob")).await);
    // alice's own disk comes back: a restore takes no more room.
    let again = ready(&create(&mut alice, notes("alice")).await);
    assert_eq!(again.restored_from, first.id);
    server.stop().await;
}
