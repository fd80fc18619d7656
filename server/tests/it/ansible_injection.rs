//! No value from a request or from the Terraform module is ever code: the
//! real server, the real `ansible-playbook` of every ansible-core release
//! we support (2.14 as Debian ships it, .venv's 2.18, 2.19 which loads
//! extra-vars files as trusted templates), payloads in every request field
//! through gRPC and REST, a playbook that reads each value the way the
//! roles do (`ansible/playbooks/test-desktop.yml`), and a module printing
//! garbage outputs. A property test then feeds arbitrary text through the
//! files the server writes for Ansible and reads them back with Ansible's
//! own loader and templar.

use std::path::{Path, PathBuf};

use crate::common::*;
use daas_api::v1::{CreateSessionRequest, SessionState};
use daas_server::{
    domain::password::PasswordHash,
    testkit::{TestOptions, TestServer, workspace_root},
};
use serde_json::{Value, json};

/// `ansible-playbook` of every release the tests run: .venv's and those of
/// `scripts/ansible-versions.txt` (installed by scripts/setup.sh).
fn ansible_releases() -> Vec<(String, PathBuf)> {
    let root = workspace_root();
    let mut releases = vec![("venv".to_string(), root.join(".venv/bin/ansible-playbook"))];
    let list = std::fs::read_to_string(root.join("scripts/ansible-versions.txt"))
        .expect("read scripts/ansible-versions.txt");
    for version in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        releases.push((
            version.to_string(),
            root.join(format!(".venv-ansible/{version}/bin/ansible-playbook")),
        ));
    }
    for (version, path) in &releases {
        assert!(
            path.exists(),
            "ansible-core {version} is missing ({}): run scripts/setup.sh",
            path.display()
        );
    }
    releases
}

/// What an attacker puts in each field: within the field's rules (20
/// characters and no ',' for names), each evaluates to something else if
/// Ansible templates it, and the password runs a command if it does.
struct Payload {
    username: String,
    session_user: String,
    password: String,
    pwned: PathBuf,
}

impl Payload {
    fn new(markers: &Path) -> Payload {
        let pwned = markers.join("pwned");
        Payload {
            username: "{{'a'~'b'}}".into(),
            session_user: "{%raw%}x{%endraw%}".into(),
            password: format!(
                "{{{{ lookup('pipe', 'touch {}') }}}}{{% set x = 1 %}}{{# c #}}\"'\\ ok",
                pwned.display()
            ),
            pwned,
        }
    }

    /// Checks what the play read (`NAME.values`) is the payload, literally,
    /// and that nothing ran.
    fn check(&self, markers: &Path, vm_name: &str, how: &str) {
        assert!(!self.pwned.exists(), "{how}: a request value ran a command");
        let path = markers.join(format!("{vm_name}.values"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{how}: read {}: {e}", path.display()));
        let values: Value = serde_json::from_str(&text).expect("the play wrote JSON");
        assert_eq!(values["username"], json!(self.username), "{how}");
        assert_eq!(values["user_fact"], json!(self.username), "{how}");
        assert_eq!(values["session_user"], json!(self.session_user), "{how}");
        let joined = format!("{};{}", self.username, self.session_user);
        assert_eq!(values["joined"], json!(joined), "{how}");
        let hash = values["session_password_hash"].as_str().unwrap_or_default();
        let hash = PasswordHash::from_crypt(hash)
            .unwrap_or_else(|| panic!("{how}: not a SHA-512 crypt hash: {hash}"));
        assert!(
            hash.verifies(&self.password),
            "{how}: the hash is not of the literal password"
        );
    }
}

/// Whether any file under `dir` holds `needle` (the database, the logs,
/// the session folders, the markers).
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn request_values_reach_every_ansible_release_literally() {
    for (release, binary) in ansible_releases() {
        let server = TestServer::start(TestOptions {
            ansible_binary: Some(binary),
            extra_toml: "[http]\nlisten = \"127.0.0.1:0\"\n".into(),
            ..Default::default()
        })
        .await;
        let markers = server.markers();
        let payload = Payload::new(&markers);

        // gRPC, as `daas create --user ... --session-user ...` sends it.
        let mut client = server.client().await;
        let events = create(
            &mut client,
            CreateSessionRequest {
                username: payload.username.clone(),
                session_user: payload.session_user.clone(),
                session_password: payload.password.clone(),
                ..Default::default()
            },
        )
        .await;
        let session = ready(&events);
        payload.check(&markers, &session.vm_name, &format!("gRPC, {release}"));

        // REST, as the old clients post it.
        let base = server.http_endpoint().expect("http.listen is on");
        let body = json!({
            "username": payload.username,
            "session_user": payload.session_user,
            "session_password": payload.password,
        });
        let admin = server.credentials("root", true);
        let (_, code, reply) = curl_post(
            &format!("{base}/api/session/create"),
            Some(&admin),
            &body.to_string(),
        )
        .await;
        assert_eq!(code, 200, "REST, {release}: {reply}");
        let reply: Value = serde_json::from_str(&reply).expect("REST answers JSON");
        let vm_name = reply["vm_name"].as_str().expect("vm_name");
        payload.check(&markers, vm_name, &format!("REST, {release}"));

        // The password is nowhere: not in the store, the events, the
        // session folders or the files handed to Ansible.
        let holding = files_holding(server.dir(), payload.password.as_bytes());
        assert!(holding.is_empty(), "the password is in {holding:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_printing_garbage_fails_the_create_and_leaves_no_vm() {
    let cases: [(&'static str, &str); 6] = [
        ("ssh_host", "-oProxyCommand=touch /tmp/daas-pwned"),
        ("ssh_host", "{{ lookup('pipe', 'id') }}"),
        ("rdp_host", "10.0.0.5\r\nusername:s:evil"),
        ("rdp_host", "10.0.0.5 ; id"),
        ("vm_id", "9001\n[ERROR] not from the module"),
        ("rdp_port", "3389; id"),
    ];
    for (output, value) in cases {
        let server = TestServer::start(TestOptions {
            module_outputs: vec![(output, value.to_string())],
            ..Default::default()
        })
        .await;
        let mut client = server.client().await;
        let events = create(&mut client, request("alice")).await;
        let session = settled(&events);
        assert_eq!(
            session.state(),
            SessionState::Failed,
            "{output} = {value:?}"
        );
        let failure = session.failure.expect("a failure is recorded");
        assert!(
            failure.reason.contains(&format!("output `{output}`")),
            "{output}: {}",
            failure.reason
        );
        assert!(
            !failure.reason.contains(['\r', '\n']),
            "{output}: the reason carries a line break: {:?}",
            failure.reason
        );
        // The VM the module made is destroyed: nothing is left behind.
        let destroyed = server
            .markers()
            .join(format!("{}.destroyed", session.vm_name));
        assert!(destroyed.exists(), "{output}: the VM was not destroyed");
        assert!(!Path::new("/tmp/daas-pwned").exists());
        server.stop().await;
    }
}

// ---------------------------------------------------------------------------
// Property: whatever text a request field or a module output holds, the
// files the server hands Ansible give it back literally and untemplated.

/// Reads each case's extra-vars and inventory files with Ansible's own
/// loader, templates every value with Ansible's templar, and prints the
/// cases whose values differ from what the server was given.
const CHECKER: &str = r#"
import json, sys, pathlib
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
loader = DataLoader()
bad = []
for case in sorted(pathlib.Path(sys.argv[1]).glob("case-*.json")):
    want = json.loads(case.read_text())
    extra = loader.load_from_file(str(case.with_suffix(".vars.yml")))
    inventory = loader.load_from_file(str(case.with_suffix(".inventory.yml")))
    host = inventory["all"]["hosts"][want["vm_name"]]
    got = {k: extra[k] for k in ("username", "session_user", "session_id", "rdp_port")}
    got["ansible_host"] = host["ansible_host"]
    templar = Templar(loader=loader, variables={**extra, **host})
    templated = {k: templar.template(v) for k, v in got.items()}
    for key, value in want["values"].items():
        if got[key] != value or templated[key] != value:
            bad.append({"case": case.name, "key": key, "want": value,
                        "read": got[key], "templated": templated[key]})
print(json.dumps(bad))
"#;

#[test]
fn any_text_reaches_ansible_literally() {
    use daas_server::{
        config::Config,
        provision::ansible::{Ansible, Phase, PlaybookVars},
        provision::identity::Identity,
        store::VmOutputs,
        testkit::write_config,
    };
    use proptest::{
        prelude::*,
        sample::select,
        strategy::ValueTree,
        test_runner::{Config as RunnerConfig, TestRunner},
    };

    // Template syntax, YAML's indicators, quotes, escapes, control and
    // non-ASCII characters, and any character at all.
    let fragment = prop_oneof![
        3 => select(vec![
            "{{", "}}", "{%", "%}", "{#", "#}", "lookup('pipe', 'id')", "!unsafe", "!!python/object",
            "\"", "'", "\\", "\\u0041", ": ", "# ", "&a", "*a", "- ", "[", "]", "{", "}", ",",
            "\n", "\r", "\t", "\0", "\u{7f}", "\u{85}", "\u{2028}", "\u{feff}", "\u{fffe}",
            "é", "中", "😀", " ",
        ])
        .prop_map(str::to_string),
        2 => any::<char>().prop_map(String::from),
        2 => "[a-z0-9]{1,8}",
    ];
    let text = proptest::collection::vec(fragment, 0..12).prop_map(|parts| parts.concat());
    let case = (text.clone(), text.clone(), text.clone(), text, any::<u16>());

    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::load(Some(&write_config(dir.path(), &TestOptions::default())))
        .expect("load the test config");
    let mut ansible_config = config.ansible.clone();
    ansible_config.connection = daas_server::config::AnsibleConnection::Ssh;
    let ansible = Ansible {
        config: &ansible_config,
        ssh: &config.ssh,
    };
    let cases = dir.path().join("cases");
    std::fs::create_dir_all(&cases).expect("cases dir");
    let identity = Identity::ensure(dir.path(), "desktop-abc123").expect("an identity");
    let mut runner = TestRunner::new(RunnerConfig::default());
    for n in 0..300 {
        let (username, session_user, session_id, ssh_host, rdp_port) =
            case.new_tree(&mut runner).expect("a case").current();
        let vm = VmOutputs {
            vm_id: "9001".into(),
            ssh_host: ssh_host.clone(),
            ssh_port: 22,
            rdp_host: "10.0.0.5".into(),
            rdp_port,
            rdp_cert_sha256: identity.rdp_cert_sha256.clone(),
        };
        let vars = PlaybookVars {
            session_id: &session_id,
            username: &username,
            vm_name: "desktop-abc123",
            session_user: &session_user,
            session_password_hash: "",
            ad_join_password: None,
            vm: &vm,
            agent: None,
            identity: &identity,
            phase: Phase::All,
            clipboard: daas_server::domain::catalog::Clipboard::Off,
        };
        let stem = cases.join(format!("case-{n:03}"));
        std::fs::write(
            stem.with_extension("vars.yml"),
            ansible.extra_vars(&vars).as_str(),
        )
        .expect("write");
        std::fs::write(
            stem.with_extension("inventory.yml"),
            ansible.inventory(dir.path(), &vars).as_str(),
        )
        .expect("write");
        let want = json!({
            "vm_name": "desktop-abc123",
            "values": {
                "username": username, "session_user": session_user,
                "session_id": session_id, "ansible_host": ssh_host, "rdp_port": rdp_port,
            },
        });
        std::fs::write(stem.with_extension("json"), want.to_string()).expect("write");
    }
    for (release, binary) in ansible_releases() {
        let python = binary.with_file_name("python");
        let out = std::process::Command::new(&python)
            .arg("-c")
            .arg(CHECKER)
            .arg(&cases)
            .output()
            .expect("run Ansible's python");
        assert!(
            out.status.success(),
            "{release}: the checker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bad: Value = serde_json::from_slice(&out.stdout).expect("the checker prints JSON");
        assert_eq!(
            bad,
            json!([]),
            "{release}: values Ansible did not read literally"
        );
    }
}
