//! `daas-server pki init` and `daas-server pki issue`, run as the real
//! binary in a temporary directory.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
};

use daas_server::{domain::identity::Caller, pki};

fn daas_server(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_daas-server"))
        .args(args)
        .env_remove("DAAS_CONFIG")
        .output()
        .expect("run daas-server")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn identity(cert: &Path) -> Caller {
    let pem = std::fs::read_to_string(cert).unwrap();
    pki::identity_of(&pki::pem_to_der(&pem).unwrap()).unwrap()
}

#[test]
fn init_then_issue_users_and_admins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let d = dir.to_str().unwrap();

    let out = daas_server(&[
        "pki",
        "init",
        "--dir",
        d,
        "--dns",
        "daas.example.org",
        "--ip",
        "10.0.0.5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for file in [
        "ca.pem",
        "ca-key.pem",
        "agents-ca.pem",
        "agents-ca-key.pem",
        "server.pem",
        "server-key.pem",
    ] {
        let path = dir.join(file);
        assert!(path.exists(), "{file} missing");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    assert!(text.contains("daas.example.org, 10.0.0.5"), "{text}");
    assert!(text.contains("daas-server pki issue"), "{text}");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir.join("server-key.pem")), 0o600);

    let out = daas_server(&["pki", "issue", "--dir", d, "--user", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (cert, key) = (dir.join("users/alice.pem"), dir.join("users/alice-key.pem"));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "daas --ca {} --cert {} --key {}",
            dir.join("ca.pem").display(),
            cert.display(),
            key.display()
        )),
        "{text}"
    );
    assert!(text.contains("DAAS_CA") && text.contains("DAAS_CERT") && text.contains("DAAS_KEY"));
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&dir.join("users")), 0o700);
    assert_eq!(
        identity(&cert),
        Caller::User {
            name: "alice".into(),
            admin: false,
            groups: Vec::new()
        }
    );

    let out = daas_server(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--user",
        "root-admin",
        "--admin",
        "--days",
        "30",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&dir.join("users/root-admin-key.pem")), 0o600);
    assert_eq!(
        identity(&dir.join("users/root-admin.pem")),
        Caller::User {
            name: "root-admin".into(),
            admin: true,
            groups: Vec::new()
        }
    );

    // Groups for the catalog's templates; one a URI cannot carry is refused.
    let out = daas_server(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--user",
        "dave",
        "--group",
        "developers",
        "--group",
        "lab-2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        identity(&dir.join("users/dave.pem")).groups(),
        ["developers", "lab-2"]
    );
    let out = daas_server(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--user",
        "erin",
        "--group",
        "two words",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid group name \"two words\""),
        "{}",
        stderr(&out)
    );

    // Issuing again would replace a key: refused, naming the file.
    let out = daas_server(&["pki", "issue", "--dir", d, "--user", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("alice.pem"), "{}", stderr(&out));
}

#[test]
fn second_init_refuses_and_keeps_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let out = daas_server(&["pki", "init", "--dir", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("localhost, 127.0.0.1, ::1"),
        "{}",
        stdout(&out)
    );
    let before = std::fs::read(tmp.path().join("ca-key.pem")).unwrap();

    let out = daas_server(&["pki", "init", "--dir", d, "--dns", "other.example.org"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("daas-server: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("ca.pem") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(tmp.path().join("ca-key.pem")).unwrap(),
        before
    );
}

#[test]
fn invalid_user_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    assert!(daas_server(&["pki", "init", "--dir", d]).status.success());

    let out = daas_server(&["pki", "issue", "--dir", d, "--user", "a/b"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("daas-server: ") && err.contains("\"a/b\""),
        "{err}"
    );
    assert!(!tmp.path().join("users").exists());
}

#[test]
fn issue_without_a_ca_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let out = daas_server(&["pki", "issue", "--dir", d, "--user", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&tmp.path().join("ca.pem").display().to_string()) && err.contains("pki init"),
        "{err}"
    );
}

#[test]
fn help_lists_the_pki_commands_and_keeps_the_server_flags() {
    let out = daas_server(&["pki", "--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("init") && text.contains("issue") && text.contains("revoke"),
        "{text}"
    );

    let out = daas_server(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for want in ["--config", "--check", "pki", "max_parallel_provisions"] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

#[tokio::test]
async fn an_issue_is_recorded_in_the_audit_trail_of_the_configured_server() {
    let tmp = tempfile::tempdir().unwrap();
    let config = daas_server::testkit::write_config(tmp.path(), &Default::default());
    let dir = tmp.path().join("site-pki");
    let d = dir.to_str().unwrap();
    assert!(daas_server(&["pki", "init", "--dir", d]).status.success());
    let out = daas_server(&[
        "--config",
        config.to_str().unwrap(),
        "pki",
        "issue",
        "--dir",
        d,
        "--user",
        "carol",
        "--admin",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("recorded in the audit trail"),
        "{}",
        stdout(&out)
    );
    let pem = std::fs::read_to_string(dir.join("users/carol.pem")).unwrap();
    let fingerprint = pki::fingerprint(&pki::pem_to_der(&pem).unwrap());
    let store = daas_server::store::Store::open(&tmp.path().join("data/daas.sqlite3")).unwrap();
    let entries = store
        .audit_page(daas_server::store::audit_records::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let issued = entries
        .iter()
        .find(|e| e.action == "issue_certificate")
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(issued.actor, "local");
    assert!(issued.detail.contains("CN=carol"), "{}", issued.detail);
    assert!(issued.detail.contains(&fingerprint), "{}", issued.detail);
    assert!(issued.detail.contains("admin carol"), "{}", issued.detail);
    // Without a config it says so, and still issues.
    let out = daas_server(&["pki", "issue", "--dir", d, "--user", "dan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not in an audit trail"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_offline_root_key_stays_out_of_the_pki_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let offline = tmp.path().join("usb");
    let (d, o) = (dir.to_str().unwrap(), offline.to_str().unwrap());
    let out = daas_server(&["pki", "init", "--dir", d, "--offline-root", o]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !dir.join("ca-key.pem").exists(),
        "the root key is in the PKI folder"
    );
    assert_eq!(mode(&offline.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&dir.join("agents-ca-key.pem")), 0o600);
    assert!(stdout(&out).contains(&offline.join("ca-key.pem").display().to_string()));

    // Issuing needs the root key: a clear error without it, a certificate with it.
    let out = daas_server(&["pki", "issue", "--dir", d, "--user", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--ca-key"), "{}", stderr(&out));
    let key = offline.join("ca-key.pem");
    let out = daas_server(&[
        "pki",
        "issue",
        "--dir",
        d,
        "--user",
        "alice",
        "--admin",
        "--ca-key",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        identity(&dir.join("users/alice.pem")),
        Caller::User {
            name: "alice".into(),
            admin: true,
            groups: Vec::new()
        }
    );
}
