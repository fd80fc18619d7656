//! A whole create with known secret values (the session password, the AD
//! join password from a file, the Proxmox token from the environment): none
//! of them may appear in the server's logs, the events, the store or any
//! process command line seen during the run, yet each reaches its tool.

use std::{
    collections::BTreeSet,
    io::Write,
    path::Path,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::common::*;
use daas_api::v1::{CreateSessionRequest, DestroySessionRequest, SessionState};
use daas_server::testkit::{TestOptions, write_config};
use tokio::io::AsyncReadExt;

const SESSION_PASSWORD: &str = "Sess-Pa55-x7Qz";
const AD_PASSWORD: &str = "AdJoin-S3cret-9f2c";
const PM_SECRET: &str = "pm-tok-0c8e71d2aa";

fn sha256(text: &str) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Every command line seen while it runs, sampled every few milliseconds.
fn sample_command_lines(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<BTreeSet<String>> {
    std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        while !stop.load(Ordering::Relaxed) {
            for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                    seen.insert(String::from_utf8_lossy(&cmdline).replace('\0', " "));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_leak_but_reach_their_tools() {
    let dir = tempfile::tempdir().unwrap();
    let ad_file = dir.path().join("ad-join-password");
    std::fs::write(&ad_file, format!("{AD_PASSWORD}\n")).unwrap();
    let config = write_config(
        dir.path(),
        &TestOptions {
            echo_token: true,
            extra_toml: format!(
                "[secrets]\nad_join_password_file = {:?}\nproxmox_token_id = \"daas@pve!ci\"\n\
                 proxmox_token_secret_env = \"DAAS_TEST_PM_SECRET\"\n\
                 [audit]\nfile = \"data/audit.jsonl\"\n",
                ad_file.display().to_string()
            ),
            ..Default::default()
        },
    );
    // A vault key file a site names in the server's environment.
    let vault_file = dir.path().join("vault-pass");
    std::fs::write(&vault_file, "vault-key\n").unwrap();
    let vault_file = vault_file.display().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_command_lines(stop.clone());
    let (mut server, endpoint) = start_server(
        &config,
        &[
            ("DAAS_LOG", "debug"),
            ("DAAS_TEST_PM_SECRET", PM_SECRET),
            ("ANSIBLE_VAULT_PASSWORD_FILE", &vault_file),
        ],
    )
    .await;
    let logs = Arc::new(Mutex::new(String::new()));
    let mut stderr = server.stderr.take().expect("stderr is piped");
    let log_reader = {
        let logs = logs.clone();
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            logs.lock().unwrap().push_str(&text);
        })
    };

    let mut client = connect(&endpoint, dir.path()).await;
    let events = create(
        &mut client,
        CreateSessionRequest {
            username: "alice".into(),
            session_user: "student".into(),
            session_password: SESSION_PASSWORD.into(),
            ..Default::default()
        },
    )
    .await;
    let session = events.last().unwrap().session.clone().unwrap();
    assert_eq!(
        session.state(),
        SessionState::Ready,
        "{:?}",
        session.failure
    );
    client
        .destroy_session(DestroySessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .unwrap();
    let history = watch(&mut client, &session.id).await;

    // Stop the server gracefully so its log is complete.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    server.wait().await.unwrap();
    log_reader.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let command_lines = sampler.join().unwrap();

    // Each secret reached its tool.
    let markers = dir.path().join("markers");
    let read = |name: &str| std::fs::read_to_string(markers.join(name)).unwrap_or_default();
    assert_eq!(
        read(&format!("{}.token", session.vm_name)).trim(),
        sha256(PM_SECRET)
    );
    assert_eq!(
        read(&format!("{}.adpass", session.vm_name)).trim(),
        sha256(AD_PASSWORD)
    );
    assert!(read(&format!("{}.configured", session.vm_name)).contains("student"));
    // ansible-playbook saw the vault's key file, and nothing of the
    // server's own environment (the variable holding the Proxmox secret).
    let ansible_env = read(&format!("{}.env", session.vm_name));
    let names: Vec<&str> = ansible_env.lines().collect();
    assert!(names.contains(&"ANSIBLE_VAULT_PASSWORD_FILE"), "{names:?}");
    assert!(names.contains(&"PATH"), "{names:?}");
    for leaked in ["DAAS_TEST_PM_SECRET", "DAAS_LOG", "CARGO_MANIFEST_DIR"] {
        assert!(
            !names.contains(&leaked),
            "{leaked} reached ansible-playbook"
        );
    }
    // The module printed the token; the events show it masked.
    assert!(
        output(&history)
            .iter()
            .any(|l| l.contains("token: ********"))
    );

    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("session requested"), "the log was captured");
    assert!(
        command_lines.iter().any(|c| c.contains("ansible-playbook")),
        "commands were sampled"
    );
    // The audit file is among the files scanned below.
    let audit = std::fs::read_to_string(dir.path().join("data/audit.jsonl")).unwrap_or_default();
    assert!(audit.contains("\"action\":\"create\""), "{audit}");
    for secret in [SESSION_PASSWORD, AD_PASSWORD, PM_SECRET] {
        assert!(!logs.contains(secret), "the server log shows {secret}");
        for event in &history {
            assert!(
                !format!("{event:?}").contains(secret),
                "an event shows {secret}"
            );
        }
        for line in &command_lines {
            assert!(
                !line.contains(secret),
                "a command line shows {secret}: {line}"
            );
        }
        for file in files_under(&dir.path().join("data")) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{} contains {secret}", file.display());
        }
    }
}
