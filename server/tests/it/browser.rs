//! The web portal in a real browser: tests/browser/portal.mjs drives
//! Debian's Chromium (playwright-core, installed by scripts/setup.sh)
//! against a real server on the Terraform test module, signed in against
//! the test AD domain, with two simulated cluster nodes. Screenshots go to
//! target/browser-artifacts.

use crate::common::{CATALOG, domain::Domain};
use daas_server::testkit::{TestOptions, TestServer, workspace_root};
use tokio::process::Command;

const DEVELOPERS: &str = r#"
[orgs.developers]
title = "Developers"
groups = ["daas-developers"]
admin_groups = ["daas-team-leads"]
[orgs.developers.quota]
desktops = 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn people_sign_in_create_watch_and_destroy_in_chromium() {
    let root = workspace_root();
    let script = root.join("tests/browser/portal.mjs");
    let chromium = std::env::var("CHROMIUM").unwrap_or("/usr/lib/chromium/chromium".into());
    let ready = root
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
        && std::path::Path::new(&chromium).is_file();
    if !ready {
        // scripts/setup.sh installs both; CI must not pass without them.
        assert!(
            std::env::var_os("CI").is_none(),
            "Chromium ({chromium}) or tests/browser/node_modules is missing: run scripts/setup.sh"
        );
        eprintln!("SKIPPED: no Chromium or playwright-core (run scripts/setup.sh)");
        return;
    }
    let domain = Domain::start();
    let server = TestServer::start(TestOptions {
        // A create long enough to see each stage arrive on its own.
        create_delay_secs: 1,
        // Two simulated cluster nodes for carol's admin view.
        terraform_variables: vec![
            "node_count = 2".into(),
            "node_templates = \"debian-12-xfce,dev\"".into(),
            "node_storage = \"ceph\"".into(),
        ],
        // dave's organisation: room for one desktop; alice administers it.
        extra_toml: format!(
            "{}\n[placement]\nrefresh_interval = \"1s\"\n{}\n{DEVELOPERS}",
            domain.toml,
            // The developers' desktops keep their disk.
            CATALOG.replace("[templates.dev]\n", "[templates.dev]\npersistent = true\n")
        ),
        ..TestOptions::default()
    })
    .await;
    let url = server
        .web_endpoint()
        .expect("the portal is on")
        .replace("127.0.0.1", "localhost")
        + "/";
    let artifacts = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("browser-artifacts");
    let out = Command::new("node")
        .arg(&script)
        .env("PORTAL_URL", &url)
        .env("ALICE_PASSWORD", domain.password("alice"))
        .env("BOB_PASSWORD", domain.password("bob"))
        .env("CAROL_PASSWORD", domain.password("carol"))
        .env("DAVE_PASSWORD", domain.password("dave"))
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "portal.mjs failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ok: bob is refused"));
    assert!(stdout.contains("ok: the stages arrived in order"));
    assert!(stdout.contains("ok: carol drains node-2"));
    assert!(stdout.contains("ok: in the size she chose"));
    assert!(stdout.contains("ok: dave, in daas-developers, sees the developers' template too"));
    assert!(stdout.contains("ok: a second desktop past the quota is refused"));
    assert!(stdout.contains("ok: a schedule is added in her time zone"));
    assert!(stdout.contains("ok: dave resumes his desktop from its kept disk"));
    assert!(stdout.contains("ok: alice, administering the developers, sees dave's desktop"));
    server.stop().await;
}
