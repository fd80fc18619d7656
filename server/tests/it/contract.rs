//! The three modules against the provisioning contract
//! (`terraform/CONTRACT.md`): each declares every contract variable and
//! output the server uses and ships an executable `inventory` hook, and
//! the document names every one of them.

use std::{collections::BTreeSet, os::unix::fs::PermissionsExt, path::Path};

use daas_server::domain::contract::{CONTRACT_OUTPUTS, CONTRACT_VARIABLES};
use daas_server::testkit::workspace_root;

/// The names of `kind "NAME"` blocks in a module's .tf files.
fn declared(module: &Path, kind: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(module)
        .expect("the module folder")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "tf") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a .tf file");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&format!("{kind} \""))
                && let Some((name, _)) = rest.split_once('"')
            {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn every_module_implements_the_contract() {
    let root = workspace_root();
    for name in ["test", "qemu", "proxmox"] {
        let module = root.join("terraform").join(name);
        let variables = declared(&module, "variable");
        for var in CONTRACT_VARIABLES {
            assert!(
                variables.contains(*var),
                "terraform/{name} lacks variable {var}"
            );
        }
        let outputs = declared(&module, "output");
        for out in CONTRACT_OUTPUTS {
            assert!(
                outputs.contains(*out),
                "terraform/{name} lacks output {out}"
            );
        }
        let hook = module.join("inventory");
        let mode = std::fs::metadata(&hook)
            .unwrap_or_else(|e| panic!("terraform/{name}/inventory: {e}"))
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "terraform/{name}/inventory is not executable"
        );
    }
}

#[test]
fn the_contract_document_names_what_the_server_uses() {
    let doc = std::fs::read_to_string(workspace_root().join("terraform/CONTRACT.md"))
        .expect("terraform/CONTRACT.md");
    for name in CONTRACT_VARIABLES.iter().chain(CONTRACT_OUTPUTS) {
        assert!(
            doc.contains(&format!("`{name}`")),
            "CONTRACT.md does not name `{name}`"
        );
    }
    for word in [
        "boot_wait",
        "inventory list",
        "inventory destroy",
        "DAAS_VAR_",
        "DAAS_DEPLOYMENT_ID",
    ] {
        assert!(doc.contains(word), "CONTRACT.md does not describe {word}");
    }
}

/// The test module's hook, run as the server runs it: an empty marker
/// folder lists nothing, a made VM is listed with its session and its
/// deployment (empty when it has none), a destroy is recorded once and is
/// idempotent.
#[test]
fn the_test_modules_inventory_lists_and_destroys() {
    let dir = tempfile::tempdir().unwrap();
    let hook = workspace_root().join("terraform/test/inventory");
    let run = |args: &[&str]| {
        std::process::Command::new(&hook)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DAAS_VM_NAME_PREFIX", "desktop-")
            .env("DAAS_VAR_marker_dir", dir.path())
            .output()
            .expect("run the inventory")
    };
    let listed = run(&["list"]);
    assert!(
        listed.status.success() && listed.stdout.is_empty(),
        "{listed:?}"
    );
    std::fs::write(dir.path().join("desktop-abc123.created"), "s-1\n").unwrap();
    let listed = String::from_utf8(run(&["list"]).stdout).unwrap();
    let vm: serde_json::Value = serde_json::from_str(listed.trim()).expect("one JSON line");
    assert_eq!(vm["vm_name"], "desktop-abc123");
    assert_eq!(vm["session_id"], "s-1");
    assert_eq!(vm["deployment"], "");
    std::fs::write(
        dir.path().join("desktop-abc123.deployment"),
        "0123456789ab\n",
    )
    .unwrap();
    let listed = String::from_utf8(run(&["list"]).stdout).unwrap();
    let vm: serde_json::Value = serde_json::from_str(listed.trim()).expect("one JSON line");
    assert_eq!(vm["deployment"], "0123456789ab");
    for _ in 0..2 {
        assert!(run(&["destroy", "desktop-abc123"]).status.success());
    }
    let destroyed = std::fs::read_to_string(dir.path().join("desktop-abc123.destroyed")).unwrap();
    assert_eq!(destroyed.lines().count(), 1, "{destroyed}");
    assert!(run(&["list"]).stdout.is_empty());
    assert_eq!(run(&["destroy", "../etc"]).status.code(), Some(2));
}

/// The test module's `inventory nodes`: N simulated nodes from its
/// variables, a node's state and templates from marker files, and the VMs
/// marked on a node counted there.
#[test]
fn the_test_modules_inventory_reports_its_simulated_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let hook = workspace_root().join("terraform/test/inventory");
    let nodes_on = |count: &str, storage: &str| {
        let out = std::process::Command::new(&hook)
            .arg("nodes")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DAAS_VM_NAME_PREFIX", "desktop-")
            .env("DAAS_VAR_marker_dir", dir.path())
            .env("DAAS_VAR_node_count", count)
            .env("DAAS_VAR_node_memory_mb", "32768")
            .env("DAAS_VAR_node_storage", storage)
            .output()
            .expect("run the inventory");
        assert!(out.status.success(), "{out:?}");
        daas_server::provision::inventory::parse_nodes(&out.stdout).expect("nodes the server reads")
    };
    let nodes = |count: &str| nodes_on(count, "");
    let listed = nodes("4");
    assert!(listed.iter().all(|n| n.template_storage.is_empty()));
    let storage = |listed: &[daas_server::domain::placement::ListedNode], i: usize| {
        listed[i].template_storage.get("debian-12").cloned()
    };
    let shared = nodes_on("2", "ceph");
    assert_eq!(
        (storage(&shared, 0), storage(&shared, 1)),
        (Some("ceph".into()), Some("ceph".into()))
    );
    let local = nodes_on("2", "local");
    assert_eq!(
        (storage(&local, 0), storage(&local, 1)),
        (Some("node-1/local".into()), Some("node-2/local".into()))
    );
    assert_eq!(listed.len(), 4);
    assert!(
        listed
            .iter()
            .all(|n| n.capacity.memory_mb == 32768 && n.capacity.configured_memory_mb == 0)
    );
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("desktop-abc123.created", "s-1\n");
    write("desktop-abc123.node", "node-2\n");
    write("desktop-abc123.memory", "4096\n");
    write("node-3.state", "offline\n");
    write("node-4.templates", "ubuntu-24\n");
    let listed = nodes("4");
    assert_eq!(
        (
            listed[1].capacity.configured_memory_mb,
            listed[1].capacity.configured_cores
        ),
        (4096, 2)
    );
    assert_eq!(
        listed[2].state,
        daas_server::domain::placement::NodeState::Offline
    );
    assert_eq!(listed[3].templates, ["ubuntu-24"]);
    assert_eq!(listed[0].templates, ["debian-12"]);
    // A destroyed VM no longer counts.
    write("desktop-abc123.destroyed", "terraform 1\n");
    assert_eq!(nodes("4")[1].capacity.configured_memory_mb, 0);
}
