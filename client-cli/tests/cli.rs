//! Runs the real `daas` binary against an in-process `daas-server`, over
//! mutual TLS unless a test says otherwise.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use daas_server::testkit::{Credentials, TestOptions, TestServer, credentials_in_groups};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

#[path = "cli/replicas.rs"]
mod replicas;

/// How long one run of the CLI may take.
const TIME_LIMIT: Duration = Duration::from_secs(300);

/// An id no session has.
const UNKNOWN_ID: &str = "6f1c7d0e-95b4-4c55-9f3e-1f0a2b3c4d5e";

/// Variables of the developer's environment the CLI reads; never inherited.
const CLI_VARS: [&str; 5] = [
    "DAAS_ENDPOINT",
    "DAAS_CA",
    "DAAS_CERT",
    "DAAS_KEY",
    "DAAS_SESSION_PASSWORD",
];

/// How TLS files reach the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `--ca`, `--cert`, `--key`.
    Flags,
    /// `DAAS_CA`, `DAAS_CERT`, `DAAS_KEY`.
    Env,
}

/// Who runs the CLI against which server: the endpoint, the TLS files
/// (none for plaintext) and a config folder of its own (`XDG_CONFIG_HOME`),
/// so that a developer's real config is never read.
#[derive(Debug, Clone)]
struct Caller {
    endpoint: String,
    credentials: Option<Credentials>,
    via: Via,
    config_home: Arc<tempfile::TempDir>,
}

impl Caller {
    /// `user` (not an administrator) of `server`, with TLS files as flags.
    fn user(server: &TestServer, user: &str) -> Caller {
        Caller::new(&server.endpoint(), Some(server.credentials(user, false)))
    }

    /// `user` (not an administrator) of `server` in `groups`, as
    /// `daas-server pki issue --group` puts them in the certificate.
    fn in_groups(server: &TestServer, user: &str, groups: &[&str]) -> Caller {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        let credentials = credentials_in_groups(server.dir(), user, false, &groups);
        Caller::new(&server.endpoint(), Some(credentials))
    }

    /// The administrator `admin` of `server`.
    fn admin(server: &TestServer) -> Caller {
        Caller::new(&server.endpoint(), Some(server.credentials("admin", true)))
    }

    /// `endpoint` with `credentials` passed as flags.
    fn new(endpoint: &str, credentials: Option<Credentials>) -> Caller {
        Caller {
            endpoint: endpoint.to_owned(),
            credentials,
            via: Via::Flags,
            config_home: Arc::new(tempfile::tempdir().expect("a config folder")),
        }
    }

    /// The same caller, giving its TLS files through the environment.
    fn via(self, via: Via) -> Caller {
        Caller { via, ..self }
    }

    /// This caller's config file (`$XDG_CONFIG_HOME/daas/config.toml`).
    fn config_file(&self) -> PathBuf {
        self.config_home.path().join("daas/config.toml")
    }

    /// Writes this caller's config file.
    fn write_config(&self, text: &str) {
        let path = self.config_file();
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("the config folder");
        std::fs::write(path, text).expect("write the config file");
    }

    /// `daas ARGS` with this caller's config folder and nothing of the
    /// developer's environment the CLI would read, but neither endpoint nor
    /// TLS files.
    fn bare_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_daas"));
        for var in CLI_VARS {
            command.env_remove(var);
        }
        command
            .env("XDG_CONFIG_HOME", self.config_home.path())
            .args(args)
            .kill_on_drop(true);
        command
    }

    /// `daas` with this caller's endpoint and TLS files, and nothing of the
    /// developer's environment the CLI would read.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.bare_command(&[]);
        command.arg("--endpoint").arg(&self.endpoint);
        if let Some(creds) = &self.credentials {
            match self.via {
                Via::Flags => {
                    command
                        .arg("--ca")
                        .arg(&creds.ca)
                        .arg("--cert")
                        .arg(&creds.cert)
                        .arg("--key")
                        .arg(&creds.key);
                }
                Via::Env => {
                    command
                        .env("DAAS_CA", &creds.ca)
                        .env("DAAS_CERT", &creds.cert)
                        .env("DAAS_KEY", &creds.key);
                }
            }
        }
        command.args(args);
        command
    }
}

/// What a run of the CLI did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The lone stderr line of a failed run, checked to be `daas: …`.
    fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:#?}");
        assert!(lines[0].starts_with("daas: "), "{self:#?}");
        lines[0]
    }

    /// Stdout parsed as one JSON value per line.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
            .collect()
    }
}

/// Runs `command` with nothing on stdin (unless `stdin`) to its end.
async fn run(mut command: Command, args: &[&str], stdin: Option<&str>) -> Run {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start daas");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .expect("write daas's stdin");
    }
    let output = tokio::time::timeout(TIME_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("daas {args:?} took more than {TIME_LIMIT:?}"))
        .expect("wait for daas");
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!("daas {args:?} -> {run:#?}");
    run
}

/// Runs `daas ARGS` as `caller` with `env` added and nothing on stdin
/// (unless `stdin`).
async fn daas_with(
    caller: &Caller,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Run {
    let mut command = caller.command(args);
    command.envs(env.iter().copied());
    run(command, args, stdin).await
}

/// Starts `daas ARGS` and returns it once it has printed a line containing
/// `wanted`, with the lines it printed so far.
async fn daas_until(caller: &Caller, args: &[&str], wanted: &str) -> (Child, String) {
    let mut child = caller
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daas");
    let stdout = child.stdout.take().expect("daas's stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    let found = tokio::time::timeout(TIME_LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read daas's stdout") {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(wanted) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "daas {args:?} never printed {wanted:?}: {seen}"
    );
    // Keep draining stdout so that daas never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, seen)
}

/// Waits for a child started by `daas_until`: its exit code and stderr.
async fn finish(mut child: Child) -> (Option<i32>, String) {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .await
            .expect("read daas's stderr");
    }
    let status = tokio::time::timeout(TIME_LIMIT, child.wait())
        .await
        .expect("daas ends")
        .expect("wait for daas");
    (status.code(), stderr)
}

async fn daas(caller: &Caller, args: &[&str]) -> Run {
    daas_with(caller, args, &[], None).await
}

/// A caller of an unreachable plaintext endpoint.
fn nowhere() -> Caller {
    Caller::new("http://127.0.0.1:1", None)
}

/// The session id in `Desktop ready: rdp://… (session ID, vm NAME)`.
fn ready_id(run: &Run) -> String {
    let line = run
        .stdout
        .lines()
        .find(|line| line.starts_with("Desktop ready: rdp://"))
        .unwrap_or_else(|| panic!("no ready line: {run:#?}"));
    let after = line.split("(session ").nth(1).unwrap_or_default();
    let id = after
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(!id.is_empty(), "no id in {line:?}");
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn create_list_show_watch_destroy() {
    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");

    // No --user: the desktop is for the user the certificate names.
    let created = daas(&alice, &["create"]).await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    let id = ready_id(&created);
    assert!(
        created.stdout.contains(&format!("daas show {id}")),
        "{created:#?}"
    );
    for stage in ["QUEUED", "PROVISIONING", "BOOTING", "CONFIGURING"] {
        assert!(
            created.stdout.contains(&format!("✔ {stage}")),
            "{stage}: {created:#?}"
        );
    }

    let listed = daas(&alice, &["list"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    let header = listed.stdout.lines().next().unwrap_or_default();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(columns, ["ID", "USER", "STATE", "VM", "RDP", "AGE"]);
    let row = listed
        .stdout
        .lines()
        .find(|line| line.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {listed:#?}"));
    assert!(row.contains("alice") && row.contains("READY"), "{row}");

    let filtered = daas(&alice, &["list", "--user", "alice", "--state", "Ready"]).await;
    assert_eq!(filtered.code, Some(0), "{filtered:#?}");
    assert!(filtered.stdout.contains(&id), "{filtered:#?}");
    let none = daas(&alice, &["list", "--state", "failed"]).await;
    assert_eq!(none.code, Some(0), "{none:#?}");
    assert!(!none.stdout.contains(&id), "{none:#?}");

    let shown = daas(&alice, &["show", &id]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    assert!(
        shown.stdout.contains(&format!("id:           {id}\n")),
        "{shown:#?}"
    );
    assert!(shown.stdout.contains("user:         alice\n"), "{shown:#?}");
    assert!(shown.stdout.contains("state:        READY\n"), "{shown:#?}");
    assert!(shown.stdout.contains("rdp:          rdp://"), "{shown:#?}");

    let watched = daas(&alice, &["watch", &id]).await;
    assert_eq!(watched.code, Some(0), "{watched:#?}");
    assert_eq!(ready_id(&watched), id);

    for _ in 0..2 {
        let destroyed = daas(&alice, &["destroy", &id]).await;
        assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");
        assert_eq!(destroyed.stdout, format!("destroyed {id}\n"));
    }
    let shown = daas(&alice, &["show", "--json", &id]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    let session: Value = serde_json::from_str(&shown.stdout).expect("show --json prints JSON");
    assert_eq!(session["state"], "DESTROYED");

    let watched = daas(&alice, &["watch", &id]).await;
    assert_eq!(watched.code, Some(0), "{watched:#?}");
    assert!(watched.stdout.contains("✔ READY"), "{watched:#?}");
    assert!(watched.stdout.contains("✔ DESTROYING"), "{watched:#?}");
    assert!(
        watched
            .stdout
            .ends_with(&format!("session {id} is destroyed\n")),
        "{watched:#?}"
    );
    assert!(!watched.stdout.contains("Desktop ready"), "{watched:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_json_streams_the_stages_in_order() {
    let server = TestServer::start(TestOptions::default()).await;
    // The TLS files through DAAS_CA, DAAS_CERT and DAAS_KEY this time.
    let alice = Caller::user(&server, "alice").via(Via::Env);

    // Naming oneself is allowed.
    let created = daas(&alice, &["create", "--json", "--user", "alice"]).await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    let events = created.json_lines();
    let mut states: Vec<&str> = Vec::new();
    for event in &events {
        let state = event["state"].as_str().expect("every event has a state");
        if states.last() != Some(&state) {
            states.push(state);
        }
    }
    assert_eq!(
        states,
        ["QUEUED", "PROVISIONING", "BOOTING", "CONFIGURING", "READY"]
    );
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());
    assert!(events.iter().any(|e| e["output"]["tool"] == "terraform"));
    let last = events.last().expect("at least one event");
    assert_eq!(last["stage_change"]["previous"], "CONFIGURING");
    assert_eq!(last["session"]["state"], "READY");
    let id = last["session"]["id"]
        .as_str()
        .expect("the session has an id");
    assert!(last["session"]["rdp_host"].is_string());
    assert!(last["time"].as_str().is_some_and(|t| t.ends_with('Z')));

    let listed = daas(&alice, &["list", "--json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    let sessions: Value = serde_json::from_str(&listed.stdout).expect("list --json prints JSON");
    let ids: Vec<&str> = sessions
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, [id]);

    let watched = daas(&alice, &["watch", "--json", id]).await;
    assert_eq!(watched.code, Some(0), "{watched:#?}");
    assert_eq!(watched.json_lines(), events);

    let destroyed = daas(&alice, &["destroy", "--json", id]).await;
    assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");
    let session: Value =
        serde_json::from_str(&destroyed.stdout).expect("destroy --json prints JSON");
    assert_eq!(session["state"], "DESTROYED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sessions_are_one_line_errors() {
    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");
    for command in ["show", "watch", "connect", "destroy"] {
        let run = daas(&alice, &[command, UNKNOWN_ID]).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert_eq!(run.error_line(), format!("daas: no session {UNKNOWN_ID}"));
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terraform_failure_exits_1() {
    let server = TestServer::start(TestOptions {
        fail_terraform: true,
        ..TestOptions::default()
    })
    .await;
    let alice = Caller::user(&server, "alice");
    let run = daas(&alice, &["create"]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.error_line()
            .starts_with("daas: failed in PROVISIONING: "),
        "{run:#?}"
    );
    assert!(run.stdout.contains("✘ PROVISIONING"), "{run:#?}");

    let run = daas(&alice, &["create", "--json"]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    let events = run.json_lines();
    let last = events.last().expect("at least one event");
    assert_eq!(last["session"]["state"], "FAILED");
    assert_eq!(last["session"]["failure"]["stage"], "PROVISIONING");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_user_is_named() {
    let server = TestServer::start(TestOptions::default()).await;
    // Only an administrator may name another user, so only they get this far.
    let run = daas(&Caller::admin(&server), &["create", "--user", "a/b"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.error_line().contains("username"), "{run:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_one_line() {
    for args in [
        &["list"][..],
        &["show", UNKNOWN_ID],
        &["create", "--user", "alice"],
    ] {
        let run = daas(&nowhere(), args).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(
            run.error_line()
                .starts_with("daas: cannot reach the server at http://127.0.0.1:1: "),
            "{run:#?}"
        );
    }
    let run = daas(&Caller::new("127.0.0.1:1", None), &["list"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line().starts_with("daas: invalid endpoint"),
        "{run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2() {
    let nowhere = nowhere();
    let run = daas(&nowhere, &["list", "--state", "bogus"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line()
            .contains("valid states: queued, provisioning"),
        "{run:#?}"
    );

    let run = daas_with(&nowhere, &["create", "--session-user", "bob"], &[], None).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line().contains("DAAS_SESSION_PASSWORD"),
        "{run:#?}"
    );

    let run = daas(&nowhere, &["create", "--password-stdin"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");

    let run = daas(&nowhere, &["frobnicate"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_password_stays_secret() {
    const PASSWORD: &str = "Tr0ub4dor-and-3";
    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");

    let run = daas_with(
        &alice,
        &["create", "-v", "--session-user", "bob"],
        &[("DAAS_SESSION_PASSWORD", PASSWORD)],
        None,
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "{run:#?}"
    );
    assert!(run.stdout.contains("terraform| "), "{run:#?}");
    let id = ready_id(&run);
    let shown = daas(&alice, &["show", &id]).await;
    assert!(shown.stdout.contains("session user: bob\n"), "{shown:#?}");

    let run = daas_with(
        &alice,
        &[
            "create",
            "--json",
            "--session-user",
            "carol",
            "--password-stdin",
        ],
        &[],
        Some(&format!("{PASSWORD}\n")),
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "{run:#?}"
    );
    let events = run.json_lines();
    let last = events.last().expect("at least one event");
    assert_eq!(last["session"]["session_user"], "carol");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_create_can_be_watched_to_the_end() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 3,
        ..TestOptions::default()
    })
    .await;
    let alice = Caller::user(&server, "alice");
    let (child, _) = daas_until(&alice, &["create"], "PROVISIONING").await;
    let pid = child.id().expect("daas is running").to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().await;
    assert!(killed.is_ok_and(|status| status.success()));
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(130), "{stderr}");
    let (_, id) = stderr
        .trim_end()
        .rsplit_once("daas watch ")
        .unwrap_or_else(|| panic!("no watch hint: {stderr}"));
    assert!(stderr.starts_with("daas: interrupted"), "{stderr}");

    let watched = daas(&alice, &["watch", id]).await;
    assert_eq!(watched.code, Some(0), "{watched:#?}");
    assert_eq!(ready_id(&watched), id);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_going_away_mid_stream_is_explained() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 5,
        ..TestOptions::default()
    })
    .await;
    let alice = Caller::user(&server, "alice");
    let (child, _) = daas_until(&alice, &["create"], "PROVISIONING").await;
    server.stop().await;
    let (code, stderr) = finish(child).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("daas: the stream ended before the session settled"),
        "{stderr}"
    );
    assert!(stderr.contains("; follow it with: daas watch "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_endpoint_needs_readable_pem_files() {
    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");
    let creds = alice.credentials.clone().expect("alice's credentials");
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
    let (ca, cert, key) = (path(&creds.ca), path(&creds.cert), path(&creds.key));
    let endpoint = server.endpoint();
    let hint = alice.config_file();

    let run = run(
        alice.bare_command(&["--endpoint", &endpoint, "--ca", &ca, "--key", &key, "list"]),
        &["list"],
        None,
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!(
            "daas: no client certificate: pass --cert FILE, set DAAS_CERT, or set cert in {}",
            hint.display()
        )
    );

    let missing = server.dir().join("nowhere/ca.pem");
    let args = [
        "--endpoint",
        &endpoint,
        "--ca",
        missing.to_str().expect("a UTF-8 path"),
        "--cert",
        &cert,
        "--key",
        &key,
        "list",
    ];
    let run = run_bare(&alice, &args).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!(
            "daas: cannot read CA certificate {}: No such file or directory",
            missing.display()
        )
    );

    // The certificate where the key should be.
    let args = [
        "--endpoint",
        &endpoint,
        "--ca",
        &ca,
        "--cert",
        &cert,
        "--key",
        &cert,
        "list",
    ];
    let run = run_bare(&alice, &args).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!("daas: client private key {cert} is not a PEM private key")
    );
    server.stop().await;
}

/// Runs `daas ARGS` as `caller` without its endpoint and TLS files.
async fn run_bare(caller: &Caller, args: &[&str]) -> Run {
    run(caller.bare_command(args), args, None).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_another_ca_is_refused() {
    let server = TestServer::start(TestOptions::default()).await;
    let other = TestServer::start(TestOptions::default()).await;
    let ours = server.credentials("alice", false);
    let theirs = other.credentials("alice", false);

    // Our CA, so the server is trusted; a certificate it did not issue.
    let stranger = Caller::new(
        &server.endpoint(),
        Some(Credentials {
            ca: ours.ca.clone(),
            ..theirs.clone()
        }),
    );
    let refused = format!(
        "daas: the server at {} refused the TLS connection: ",
        server.endpoint()
    );
    for args in [&["list"][..], &["show", UNKNOWN_ID], &["create"]] {
        let run = daas(&stranger, args).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        let line = run.error_line();
        assert!(line.starts_with(&refused), "{run:#?}");
        assert!(
            line.ends_with("; check --cert/--key (issued by the server's CA? expired?)"),
            "{run:#?}"
        );
    }

    // Our certificate, but the other server's CA: the server is not trusted.
    let wary = Caller::new(
        &server.endpoint(),
        Some(Credentials {
            ca: theirs.ca.clone(),
            ..ours
        }),
    );
    let run = daas(&wary, &["list"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line().starts_with(&format!(
            "daas: cannot verify the server's certificate with CA {}: ",
            theirs.ca.display()
        )),
        "{run:#?}"
    );
    other.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_and_act_on_their_own_sessions_only() {
    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");
    let bob = Caller::user(&server, "bob");
    let admin = Caller::admin(&server);

    let created = daas(&bob, &["create"]).await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    let id = ready_id(&created);

    for command in ["show", "watch", "connect", "destroy"] {
        let run = daas(&alice, &[command, &id]).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(
            run.error_line().contains("only your own sessions"),
            "{run:#?}"
        );
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    let listed = daas(&alice, &["list"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    assert_eq!(listed.stdout, "no sessions\n");
    let run = daas(&alice, &["list", "--user", "bob"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line().contains("only your own sessions"),
        "{run:#?}"
    );
    let run = daas(&alice, &["create", "--user", "bob"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.error_line().contains("only for yourself"), "{run:#?}");

    // An administrator sees and acts on everyone's sessions.
    let listed = daas(&admin, &["list", "--user", "bob"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    assert!(listed.stdout.contains(&id), "{listed:#?}");
    let shown = daas(&admin, &["show", &id]).await;
    assert!(shown.stdout.contains("user:         bob\n"), "{shown:#?}");
    let destroyed = daas(&admin, &["destroy", &id]).await;
    assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_says_when_to_retry() {
    let server = TestServer::start(TestOptions {
        creates_per_minute: 1,
        create_burst: 1,
        ..TestOptions::default()
    })
    .await;
    let alice = Caller::user(&server, "alice");
    let created = daas(&alice, &["create"]).await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    let run = daas(&alice, &["create"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    let line = run.error_line();
    assert!(line.contains("alice"), "{run:#?}");
    let (_, retry) = line
        .rsplit_once("try again in ")
        .unwrap_or_else(|| panic!("no retry hint: {run:#?}"));
    assert!(
        !line.contains("(retry in"),
        "the hint is said once: {run:#?}"
    );
    let secs = retry.strip_suffix(" s").unwrap_or_default();
    assert!(
        secs.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s)),
        "{run:#?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_come_from_the_config_file() {
    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");
    let creds = alice.credentials.clone().expect("alice's credentials");
    // Relative paths are relative to the config file's folder.
    let folder = alice.config_file().parent().map(Path::to_path_buf);
    let folder = folder.expect("a config folder");
    std::fs::create_dir_all(folder.join("tls")).expect("a tls folder");
    for (from, to) in [
        (&creds.ca, "tls/ca.pem"),
        (&creds.cert, "tls/alice.pem"),
        (&creds.key, "tls/alice.key"),
    ] {
        std::fs::copy(from, folder.join(to)).expect("copy a credential");
    }
    alice.write_config(&format!(
        "endpoint = \"{}\"\nca = \"tls/ca.pem\"\ncert = \"tls/alice.pem\"\nkey = \"tls/alice.key\"\n",
        server.endpoint()
    ));
    let listed = run_bare(&alice, &["list"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    assert_eq!(listed.stdout, "no sessions\n");

    // A flag wins over the file: a CA file that is not there.
    let listed = run_bare(&alice, &["list", "--ca", "/nonexistent/ca.pem"]).await;
    assert_eq!(listed.code, Some(2), "{listed:#?}");
    assert_eq!(
        listed.error_line(),
        "daas: cannot read CA certificate /nonexistent/ca.pem: No such file or directory"
    );

    alice.write_config("endpoint = \"http://127.0.0.1:1\"\ncacert = \"ca.pem\"\n");
    let run = run_bare(&alice, &["list"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!(
            "daas: unknown key `cacert` in {} (valid keys: endpoint, ca, cert, key)",
            alice.config_file().display()
        )
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_endpoints_ignore_tls_files() {
    let server = TestServer::start(TestOptions {
        plaintext: true,
        ..TestOptions::default()
    })
    .await;
    let nothing = PathBuf::from("/nonexistent/file.pem");
    let local = Caller::new(
        &server.endpoint(),
        Some(Credentials {
            ca: nothing.clone(),
            cert: nothing.clone(),
            key: nothing,
        }),
    );
    assert!(server.endpoint().starts_with("http://"));
    let listed = daas(&local, &["list"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    assert_eq!(listed.stdout, "no sessions\n");
    server.stop().await;
}

/// A fake FreeRDP client `name` (`xfreerdp`, `xfreerdp3`) in `dir` that
/// writes its name, then its arguments, one per line, to `dir/args`, then
/// creates `dir/done`. Shell builtins only: PATH is `dir`.
#[cfg(unix)]
fn fake_xfreerdp(dir: &Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;

    let script = dir.join(name);
    std::fs::write(
        &script,
        "#!/bin/sh\nd=${0%/*}\nprintf '%s\\n' \"${0##*/}\" \"$@\" > \"$d/args\"\n: > \"$d/done\"\n",
    )
    .expect("write the fake xfreerdp");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("make the fake xfreerdp executable");
}

/// Waits until `path` exists.
async fn wait_for_file(path: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn connect_writes_the_rdp_file_and_starts_the_client() {
    use std::os::unix::fs::PermissionsExt;

    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");
    let created = daas(&alice, &["create"]).await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    let id = ready_id(&created);
    let shown = daas(&alice, &["show", "--json", &id]).await;
    let session: Value = serde_json::from_str(&shown.stdout).expect("show --json prints JSON");
    let host = session["rdp_host"]
        .as_str()
        .expect("an RDP host")
        .to_owned();
    let port = session["rdp_port"].as_u64().expect("an RDP port");
    let vm = session["vm_name"].as_str().expect("a VM name").to_owned();

    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("desktop.rdp");
    let file_arg = file.to_str().expect("a UTF-8 path");
    let run = daas(
        &alice,
        &["connect", &id, "--no-launch", "--rdp-file", file_arg],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.stdout, format!("{file_arg}\n"));
    let text = std::fs::read_to_string(&file).expect("the .rdp file");
    assert!(
        text.contains(&format!("full address:s:{host}:{port}\r\n")),
        "{text}"
    );
    assert!(text.contains("username:s:alice\r\n"), "{text}");
    let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600));

    // By default the file is in $XDG_RUNTIME_DIR, named after the VM.
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).expect("a runtime dir");
    let runtime_arg = runtime.to_str().expect("a UTF-8 path");
    let args = ["connect", "--json", &id, "--no-launch", "--user", "bob"];
    let run = daas_with(&alice, &args, &[("XDG_RUNTIME_DIR", runtime_arg)], None).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let default_file = runtime.join(format!("daas-{vm}.rdp"));
    assert_eq!(
        run.json_lines(),
        [serde_json::json!({
            "rdp_file": default_file.to_str(),
            "host": host,
            "port": port,
            "username": "bob",
        })]
    );
    let text = std::fs::read_to_string(&default_file).expect("the default .rdp file");
    assert!(text.contains("username:s:bob\r\n"), "{text}");

    // No client installed: its package and the file are named.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("an empty dir");
    let env = [
        ("XDG_RUNTIME_DIR", runtime_arg),
        ("PATH", empty.to_str().expect("a UTF-8 path")),
    ];
    let run = daas_with(&alice, &["connect", &id], &env, None).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!(
            "daas: neither xfreerdp nor xfreerdp3 found; install one \
             (Debian/Ubuntu package freerdp2-x11 or freerdp3-x11) \
             or open {} with an RDP client",
            default_file.display()
        )
    );
    assert_eq!(run.stdout, format!("{}\n", default_file.display()));

    // The client gets the desktop on its command line; daas does not wait.
    // FreeRDP 3 only (Debian 13, Ubuntu 24.04): xfreerdp3, same arguments.
    let expected_args =
        format!("/v:{host}:{port}\n/u:alice\n/cert:tofu,name:{vm}\n/dynamic-resolution\n");
    for program in ["xfreerdp", "xfreerdp3"] {
        let bin = dir.path().join(format!("bin-{program}"));
        std::fs::create_dir(&bin).expect("a bin dir");
        fake_xfreerdp(&bin, program);
        let env = [
            ("XDG_RUNTIME_DIR", runtime_arg),
            ("PATH", bin.to_str().expect("a UTF-8 path")),
        ];
        let run = daas_with(&alice, &["connect", &id], &env, None).await;
        assert_eq!(run.code, Some(0), "{program}: {run:#?}");
        assert!(run.stderr.is_empty(), "{program}: {run:#?}");
        wait_for_file(&bin.join("done")).await;
        assert_eq!(
            std::fs::read_to_string(bin.join("args")).ok(),
            Some(format!("{program}\n{expected_args}"))
        );
    }

    // Only a READY desktop can be connected to.
    let destroyed = daas(&alice, &["destroy", &id]).await;
    assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");
    let run = daas(&alice, &["connect", &id, "--no-launch"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(
        run.error_line(),
        format!(
            "daas: session {id} is DESTROYED and cannot be connected to any more; \
             start a new desktop with `daas create`"
        )
    );
    assert!(run.stdout.is_empty(), "{run:#?}");
    server.stop().await;
}

/// A pool `lab` of the default template, of one desktop, then `extra`.
fn pool_toml(extra: &str) -> String {
    format!("[pools.lab]\nsize = 1\nmax_building = 1\n{extra}")
}

/// Runs `daas ARGS` as `caller` until `done` holds of the run (at most
/// 90 s), and returns that run.
async fn daas_until_done(caller: &Caller, args: &[&str], done: impl Fn(&Run) -> bool) -> Run {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let run = daas(caller, args).await;
        if done(&run) {
            return run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "daas {args:?} never got there: {run:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `daas pool status lab --json` as `admin` until `done` holds of it.
async fn wait_pool(admin: &Caller, done: impl Fn(&Value) -> bool) -> Value {
    let args = ["pool", "status", "lab", "--json"];
    let pool = |run: &Run| serde_json::from_str::<Value>(&run.stdout).ok();
    let run = daas_until_done(admin, &args, |run| {
        run.code == Some(0) && pool(run).is_some_and(|p| done(&p))
    })
    .await;
    pool(&run).expect("pool status --json prints JSON")
}

/// The `lab` row of a `daas pool status` table: its first eight cells
/// (POOL, TEMPLATE, DESIRED, READY, BUILDING, CLAIMED-TODAY, FAILURES,
/// OLDEST-READY), then its STATUS, which may have spaces.
fn lab_row(run: &Run) -> Vec<String> {
    assert_eq!(run.code, Some(0), "{run:#?}");
    let header = run.stdout.lines().next().unwrap_or_default();
    let status_at = header
        .find("STATUS")
        .unwrap_or_else(|| panic!("no STATUS column: {run:#?}"));
    let row = run
        .stdout
        .lines()
        .find(|line| line.starts_with("lab "))
        .unwrap_or_else(|| panic!("no lab row: {run:#?}"));
    let mut cells: Vec<String> = row.split_whitespace().take(8).map(str::to_owned).collect();
    cells.push(row.get(status_at..).unwrap_or_default().to_owned());
    cells
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_pool_desktop_is_claimed_and_shown() {
    let server = TestServer::start(TestOptions {
        extra_toml: pool_toml(""),
        ..TestOptions::default()
    })
    .await;
    let admin = Caller::admin(&server);
    let alice = Caller::user(&server, "alice");
    wait_pool(&admin, |p| p["ready"] == 1).await;
    let status = daas(&admin, &["pool", "status"]).await;
    let row = lab_row(&status);
    assert_eq!(
        (row[0].as_str(), row[3].as_str()),
        ("lab", "1"),
        "{status:#?}"
    );
    assert_eq!(row[8], "ok", "{status:#?}");

    // The server's default template is the pool's: the create claims.
    let created = daas(&alice, &["create"]).await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    let id = ready_id(&created);
    assert!(
        created
            .stdout
            .lines()
            .any(|line| line.starts_with("from warm pool 'lab'")),
        "{created:#?}"
    );
    for stage in ["PROVISIONING", "BOOTING"] {
        assert!(!created.stdout.contains(stage), "{stage}: {created:#?}");
    }
    let shown = daas(&alice, &["show", &id]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    assert!(shown.stdout.contains("pool:         lab\n"), "{shown:#?}");

    // The pool builds a replacement, listed as the pool's.
    let listed = daas_until_done(&admin, &["list", "--state", "ready"], |run| {
        run.stdout
            .lines()
            .any(|line| !line.starts_with(&id) && line.contains("(pool lab)"))
    })
    .await;
    let claimed = listed.stdout.lines().find(|line| line.starts_with(&id));
    assert!(
        claimed.is_some_and(|row| row.contains("alice")),
        "{listed:#?}"
    );

    // Only administrators see the pools.
    for args in [&["pool", "status"][..], &["pool", "status", "lab"]] {
        let run = daas(&alice, args).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(
            run.error_line().contains("only administrators may"),
            "{run:#?}"
        );
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    let run = daas(&admin, &["pool", "status", "nope"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line().starts_with("daas: no warm pool nope"),
        "{run:#?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restrained_pool_says_so() {
    let server = TestServer::start(TestOptions {
        fail_terraform: true,
        extra_toml: pool_toml("failure_limit = 1\nbackoff = \"10m\"\n"),
        ..TestOptions::default()
    })
    .await;
    let admin = Caller::admin(&server);
    let pool = wait_pool(&admin, |p| p["restrained_until"].is_string()).await;
    assert_eq!(pool["failures"], 1, "{pool}");
    let status = daas(&admin, &["pool", "status", "lab"]).await;
    let row = lab_row(&status);
    assert_eq!(row[3], "0", "{status:#?}");
    assert!(row[8].starts_with("restrained until "), "{status:#?}");
    assert!(
        row[8].contains("simulated hypervisor failure"),
        "{status:#?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_nodes_from_the_module_node_list_says_so_and_drain_names_the_node() {
    // The test module reports no nodes unless its node_count is set.
    let server = TestServer::start(TestOptions::default()).await;
    let admin = Caller::admin(&server);
    let alice = Caller::user(&server, "alice");

    let listed = daas(&admin, &["node", "list"]).await;
    assert_eq!(
        (listed.code, listed.stdout.as_str()),
        (
            Some(0),
            "no nodes: the Terraform module places its VMs itself\n"
        ),
        "{listed:#?}"
    );
    let json = daas(&admin, &["node", "list", "--json"]).await;
    assert_eq!(
        (json.code, json.stdout.as_str()),
        (Some(0), "[]\n"),
        "{json:#?}"
    );

    // An unknown node: one line, exit 2, nothing on stdout.
    for verb in ["drain", "resume"] {
        let run = daas(&admin, &["node", verb, "pve9"]).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert_eq!(
            run.error_line(),
            "daas: no node pve9; list them with: daas node list"
        );
        assert!(run.stdout.is_empty(), "{run:#?}");
    }

    // Only administrators see or drain the nodes.
    for args in [&["node", "list"][..], &["node", "drain", "pve9"]] {
        let run = daas(&alice, args).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(
            run.error_line().contains("only administrators may"),
            "{run:#?}"
        );
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    server.stop().await;
}

/// The SHA-256 (hex) of the certificate in a PEM file, as the audit trail
/// names it.
fn fingerprint_of(pem: &Path) -> String {
    let text = std::fs::read_to_string(pem).expect("read the certificate");
    let der = daas_server::pki::pem_to_der(&text).expect("a PEM certificate");
    daas_server::pki::fingerprint(&der)
}

/// The rows of a `daas audit` table, checked to be under its header: the
/// first seven cells of each (TIME, ACTOR, PEER, ACTION, SESSION, OWNER,
/// RESULT), then DETAIL, which may have spaces.
fn audit_rows(run: &Run) -> Vec<Vec<String>> {
    assert_eq!(run.code, Some(0), "{run:#?}");
    let mut lines = run.stdout.lines();
    let header = lines.next().unwrap_or_default();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "TIME", "ACTOR", "PEER", "ACTION", "SESSION", "OWNER", "RESULT", "DETAIL"
        ],
        "{run:#?}"
    );
    let detail_at = header.find("DETAIL").unwrap_or_default();
    lines
        .map(|line| {
            let mut cells: Vec<String> =
                line.split_whitespace().take(7).map(str::to_owned).collect();
            cells.push(line.get(detail_at..).unwrap_or_default().to_owned());
            cells
        })
        .collect()
}

/// Where the row of `actor`'s `action` on `session` is in `rows`.
fn row_of(rows: &[Vec<String>], actor: &str, action: &str, session: &str) -> Option<usize> {
    rows.iter()
        .position(|row| row[1] == actor && row[3] == action && row[4] == session)
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_shows_a_create_by_alice_and_a_refused_destroy_by_bob_of_her_desktop() {
    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");
    let bob = Caller::user(&server, "bob");
    let admin = Caller::admin(&server);

    let created = daas(&alice, &["create"]).await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    let id = ready_id(&created);
    let refused = daas(&bob, &["destroy", &id]).await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert!(
        refused.error_line().contains("only your own sessions"),
        "{refused:#?}"
    );

    // The table, newest first: bob's refused destroy of alice's session,
    // then her create, each from a loopback peer.
    let table = daas(&admin, &["audit"]).await;
    let rows = audit_rows(&table);
    let destroy = row_of(&rows, "bob", "destroy", &id)
        .unwrap_or_else(|| panic!("no refused destroy by bob: {table:#?}"));
    let create = row_of(&rows, "alice", "create", &id)
        .unwrap_or_else(|| panic!("no create by alice: {table:#?}"));
    assert!(destroy < create, "newest first: {table:#?}");
    assert_eq!(
        rows[destroy][5..7],
        ["alice", "PERMISSION_DENIED"],
        "{table:#?}"
    );
    assert!(
        rows[destroy][7].contains("only your own sessions"),
        "{table:#?}"
    );
    assert_eq!(rows[create][5..7], ["alice", "OK"], "{table:#?}");
    for row in [&rows[destroy], &rows[create]] {
        assert!(row[2].starts_with("127.0.0.1:"), "peer: {row:?}");
        assert!(row[0].ends_with('Z'), "time in UTC: {row:?}");
    }

    // JSON lines: the same entries with the certificates' subjects and
    // fingerprints.
    let json = daas(&admin, &["audit", "--json"]).await;
    assert_eq!(json.code, Some(0), "{json:#?}");
    let entries = json.json_lines();
    assert_eq!(entries.len(), rows.len(), "{json:#?}");
    let entry = |actor: &str, action: &str| {
        entries
            .iter()
            .find(|e| {
                e["actor"] == actor && e["action"] == action && e["session_id"] == id.as_str()
            })
            .unwrap_or_else(|| panic!("no {action} by {actor}: {json:#?}"))
    };
    for (e, user, result) in [
        (entry("alice", "create"), "alice", "OK"),
        (entry("bob", "destroy"), "bob", "PERMISSION_DENIED"),
    ] {
        assert_eq!(
            (&e["owner"], &e["result"]),
            (&Value::from("alice"), &Value::from(result)),
            "{e}"
        );
        let cert = server.credentials(user, false).cert;
        assert_eq!(e["fingerprint"], fingerprint_of(&cert), "{e}");
        assert!(
            e["subject"]
                .as_str()
                .is_some_and(|s| s.contains(&format!("CN={user}"))),
            "{e}"
        );
        let peer: std::net::SocketAddr = e["peer"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no peer address: {e}"));
        assert!(peer.ip().is_loopback(), "{e}");
        assert!(
            e["time"]
                .as_str()
                .is_some_and(|t| humantime::parse_rfc3339(t).is_ok()),
            "{e}"
        );
    }

    // Filters: bob's lines only; the session's; since a time.
    let bobs = daas(&admin, &["audit", "--user", "bob"]).await;
    let bob_rows = audit_rows(&bobs);
    assert_eq!(bob_rows.len(), 1, "{bobs:#?}");
    assert_eq!(
        row_of(&bob_rows, "bob", "destroy", &id),
        Some(0),
        "{bobs:#?}"
    );
    let session = daas(&admin, &["audit", "--session", &id]).await;
    let session_rows = audit_rows(&session);
    assert!(session_rows.iter().all(|row| row[4] == id), "{session:#?}");
    assert!(
        row_of(&session_rows, "alice", "create", &id).is_some(),
        "{session:#?}"
    );
    assert!(
        row_of(&session_rows, "bob", "destroy", &id).is_some(),
        "{session:#?}"
    );
    let other = daas(&admin, &["audit", "--session", UNKNOWN_ID]).await;
    assert_eq!(
        (other.code, other.stdout.as_str()),
        (Some(0), "no audit entries\n"),
        "{other:#?}"
    );
    let recent = daas(&admin, &["audit", "--since", "1h", "--session", &id]).await;
    assert_eq!(audit_rows(&recent), session_rows, "{recent:#?}");
    let future = daas(&admin, &["audit", "--since", "2999-01-01T00:00:00+01:00"]).await;
    assert_eq!(future.stdout, "no audit entries\n", "{future:#?}");

    // --limit: the newest entries, and a word (on stderr) that more are left.
    let newest = daas(&admin, &["audit", "--limit", "1", "--session", &id]).await;
    assert_eq!(audit_rows(&newest), session_rows[..1], "{newest:#?}");
    assert!(newest.stderr.contains("--limit"), "{newest:#?}");

    // Only administrators read the trail: one line, exit 2, nothing on stdout.
    let run = daas(&alice, &["audit"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(
        run.error_line(),
        "daas: only administrators may read the audit trail"
    );
    assert!(run.stdout.is_empty(), "{run:#?}");

    // A --since that is neither a duration nor an RFC 3339 time.
    for since in ["yesterday", "2025-01-31", "-1h"] {
        let run = daas(&admin, &["audit", "--since", since]).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(
            run.error_line()
                .starts_with(&format!("daas: invalid --since `{since}`")),
            "{run:#?}"
        );
    }
    server.stop().await;
}

/// An organisation for the members of group `physics`, administered by
/// those of `physics-admins`: two desktops of the default size (2 vCPUs,
/// 4 GiB) in all, one a member.
const PHYSICS: &str = r#"
[orgs.physics]
title = "Physics"
groups = ["physics"]
admin_groups = ["physics-admins"]

[orgs.physics.quota]
desktops = 2
cores = 4
memory_gb = 8

[orgs.physics.user_quota]
desktops = 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn quota_counts_an_organisations_desktops_and_each_members_share() {
    let server = TestServer::start(TestOptions {
        extra_toml: PHYSICS.to_owned(),
        ..TestOptions::default()
    })
    .await;
    let dave = Caller::in_groups(&server, "dave", &["physics"]);
    let erin = Caller::in_groups(&server, "erin", &["physics"]);
    let frank = Caller::in_groups(&server, "frank", &["physics"]);
    let grace = Caller::in_groups(&server, "grace", &["physics-admins"]);
    let alice = Caller::user(&server, "alice");
    let admin = Caller::admin(&server);

    // Nothing in use yet: the organisation's quota and dave's share.
    let quota = daas(&dave, &["quota"]).await;
    assert_eq!(
        (quota.code, quota.stdout.as_str()),
        (
            Some(0),
            "organisation: physics (Physics)\n\
             user:         dave\n\
             \n\
             \x20         ORG-USED  ORG-MAX  USER-USED  USER-MAX\n\
             desktops  0         2        0          1\n\
             vCPUs     0         4        0          no limit\n\
             memory    0 GiB     8 GiB    0 GiB      no limit\n"
        ),
        "{quota:#?}"
    );

    // dave's desktop counts against physics, which show and list name.
    let created = daas(&dave, &["create"]).await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    let id = ready_id(&created);
    let shown = daas(&dave, &["show", &id]).await;
    assert!(
        shown.stdout.contains("organisation: physics\n"),
        "{shown:#?}"
    );
    let listed = daas(&dave, &["list"]).await;
    let columns: Vec<&str> = listed
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        columns,
        ["ID", "USER", "ORG", "STATE", "VM", "RDP", "AGE"],
        "{listed:#?}"
    );
    let json = daas(&dave, &["quota", "--json"]).await;
    assert_eq!(json.code, Some(0), "{json:#?}");
    let used = serde_json::json!({"desktops": 1, "cores": 2, "memory_mb": 4096});
    let quota = &json.json_lines()[0];
    assert_eq!(
        (&quota["org"], &quota["org_used"], &quota["user_used"]),
        (&Value::from("physics"), &used, &used),
        "{json:#?}"
    );
    assert_eq!(quota["administers"], serde_json::json!([]), "{json:#?}");

    // dave's share is full; erin takes the organisation's last desktop, so
    // frank gets none: each refusal one line, exit 2, no desktop made.
    let refused = daas(&dave, &["create"]).await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert!(refused.error_line().contains("quota"), "{refused:#?}");
    let erins = daas(&erin, &["create", "--org", "physics"]).await;
    assert_eq!(erins.code, Some(0), "{erins:#?}");
    let refused = daas(&frank, &["create"]).await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert!(refused.error_line().contains("quota"), "{refused:#?}");
    let franks = daas(&frank, &["list", "--json"]).await;
    assert_eq!(franks.stdout, "[]\n", "{franks:#?}");

    // The organisation's administrator and a server administrator: the
    // organisation's quota alone, its sessions, its audit entries.
    let org = daas(&grace, &["quota", "--org", "physics"]).await;
    assert_eq!(
        (org.code, org.stdout.as_str()),
        (
            Some(0),
            "organisation: physics (Physics)\n\
             \n\
             \x20         ORG-USED  ORG-MAX\n\
             desktops  2         2\n\
             vCPUs     4         4\n\
             memory    8 GiB     8 GiB\n\
             \n\
             you administer: physics\n"
        ),
        "{org:#?}"
    );
    for caller in [&grace, &admin] {
        let sessions = daas(caller, &["list", "--org", "physics", "--json"]).await;
        assert_eq!(sessions.code, Some(0), "{sessions:#?}");
        let sessions = &sessions.json_lines()[0];
        let mut users: Vec<&str> = sessions
            .as_array()
            .map(|all| all.iter().filter_map(|s| s["username"].as_str()).collect())
            .unwrap_or_default();
        users.sort_unstable();
        assert_eq!(users, ["dave", "erin"], "{sessions}");
        let audit = daas(caller, &["audit", "--org", "physics", "--json"]).await;
        assert_eq!(audit.code, Some(0), "{audit:#?}");
        assert!(
            audit.json_lines().iter().any(|e| e["action"] == "create"
                && e["session_id"] == id.as_str()
                && e["org"] == "physics"),
            "{audit:#?}"
        );
    }
    let org = daas(&admin, &["quota", "--org", "physics"]).await;
    assert!(
        org.stdout
            .starts_with("organisation: physics (Physics)\n\n"),
        "{org:#?}"
    );
    assert!(!org.stdout.contains("USER-"), "{org:#?}");
    let unknown = daas(&admin, &["quota", "--org", "chemistry"]).await;
    assert_eq!(unknown.code, Some(2), "{unknown:#?}");
    assert_eq!(
        unknown.error_line(),
        "daas: no organisation chemistry on this server"
    );

    // alice is in no organisation: the server's per-user limit only; she
    // may not count a desktop against physics.
    let alone = daas(&alice, &["quota", "--json"]).await;
    assert_eq!(alone.code, Some(0), "{alone:#?}");
    let alone = &alone.json_lines()[0];
    assert_eq!(
        (
            &alone["org"],
            &alone["username"],
            &alone["user_max"]["desktops"]
        ),
        (&Value::Null, &Value::from("alice"), &Value::from(100)),
        "{alone}"
    );
    let text = daas(&alice, &["quota"]).await;
    assert!(
        text.stdout
            .starts_with("organisation: none (the server's per-user limit applies)\n"),
        "{text:#?}"
    );
    let refused = daas(&alice, &["create", "--org", "physics"]).await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert!(!refused.stdout.contains("Desktop ready"), "{refused:#?}");
    server.stop().await;
}

/// The value of field `name` in text of `name:   value` lines (what `daas
/// schedule add` prints).
fn field(run: &Run, name: &str) -> String {
    let prefix = format!("{name}:");
    run.stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} field: {run:#?}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_is_added_listed_and_removed_and_a_bad_time_is_named() {
    let server = TestServer::start(TestOptions::default()).await;
    let alice = Caller::user(&server, "alice");
    let admin = Caller::admin(&server);
    let paris = jiff::tz::TimeZone::get("Europe/Paris").expect("the Paris time zone");
    let new_york = jiff::tz::TimeZone::get("America/New_York").expect("the New York time zone");

    // alice, in New York, wants a desktop READY at 08:00 on weekdays in Paris.
    let added = daas_with(
        &alice,
        &[
            "schedule",
            "add",
            "--at",
            "08:00",
            "--days",
            "mon-fri",
            "--timezone",
            "Europe/Paris",
        ],
        &[("TZ", "America/New_York")],
        None,
    )
    .await;
    assert_eq!(added.code, Some(0), "{added:#?}");
    let id = field(&added, "id");
    assert_eq!(
        (field(&added, "user"), field(&added, "when")),
        (
            "alice".to_owned(),
            "08:00 mon-fri (Europe/Paris)".to_owned()
        ),
        "{added:#?}"
    );
    // The test server has no catalog: its default template and size.
    assert_eq!(
        field(&added, "template"),
        "debian-12-xfce (standard)",
        "{added:#?}"
    );

    // The next desktop is due READY at 08:00 on a weekday in Paris, within
    // days; add showed that time in Paris and in New York.
    let listed = daas(&alice, &["schedule", "list", "--json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    let schedules = &listed.json_lines()[0];
    let [schedule] = schedules.as_array().map(Vec::as_slice).unwrap_or_default() else {
        panic!("not one schedule: {schedules}");
    };
    let text = |key: &str| schedule[key].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        ["id", "username", "at", "days", "timezone"].map(text),
        [id.as_str(), "alice", "08:00", "mon-fri", "Europe/Paris"].map(String::from),
        "{schedule}"
    );
    let next: jiff::Timestamp = schedule["next_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no next_at: {schedule}"));
    let in_paris = next.to_zoned(paris.clone());
    assert_eq!((in_paris.hour(), in_paris.minute()), (8, 0), "{in_paris}");
    assert!(in_paris.weekday().to_monday_one_offset() <= 5, "{in_paris}");
    let now = jiff::Timestamp::now();
    let hours = jiff::SignedDuration::from_hours;
    assert!(
        next > now - hours(1) && next < now + hours(4 * 24),
        "{next} against now {now}"
    );
    let wall = |tz: &jiff::tz::TimeZone| {
        next.to_zoned(tz.clone())
            .strftime("%a %Y-%m-%d %H:%M %Z")
            .to_string()
    };
    assert_eq!(
        (field(&added, "next ready"), field(&added, "local time")),
        (
            format!("{} (Europe/Paris)", wall(&paris)),
            format!("{} (America/New_York)", wall(&new_york))
        ),
        "{added:#?}"
    );

    // Her own list has no USER column; an administrator's has.
    let table = daas(&alice, &["schedule", "list"]).await;
    assert_eq!(table.code, Some(0), "{table:#?}");
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows.first().map(Vec::as_slice),
        Some(&["ID", "AT", "DAYS", "TZ", "TEMPLATE", "NEXT", "LAST"][..]),
        "{table:#?}"
    );
    assert_eq!(rows.len(), 2, "{table:#?}");
    assert_eq!(
        rows[1][..4],
        [id.as_str(), "08:00", "mon-fri", "Europe/Paris"],
        "{table:#?}"
    );
    let everyone = daas(&admin, &["schedule", "list"]).await;
    assert_eq!(everyone.code, Some(0), "{everyone:#?}");
    let header: Vec<&str> = everyone
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header[..3], ["ID", "USER", "AT"], "{everyone:#?}");
    assert!(
        everyone
            .stdout
            .lines()
            .any(|line| line.starts_with(&format!("{id}  alice  08:00"))),
        "{everyone:#?}"
    );

    // Removed, it is gone; removing it again names it.
    let removed = daas(&alice, &["schedule", "remove", &id]).await;
    assert_eq!(removed.code, Some(0), "{removed:#?}");
    assert_eq!(
        removed.stdout,
        format!(
            "removed schedule {id}: alice's desktop at 08:00 mon-fri (Europe/Paris); \
             desktops it already made stay\n"
        )
    );
    let none = daas(&alice, &["schedule", "list", "--json"]).await;
    assert_eq!(
        (none.code, none.stdout.as_str()),
        (Some(0), "[]\n"),
        "{none:#?}"
    );
    let none = daas(&alice, &["schedule", "list"]).await;
    assert_eq!(
        none.stdout,
        "no schedules; add one with: daas schedule add --at HH:MM --days DAYS\n"
    );
    let again = daas(&alice, &["schedule", "remove", &id]).await;
    assert_eq!(again.code, Some(2), "{again:#?}");
    assert_eq!(
        again.error_line(),
        format!("daas: no schedule {id}; list them with: daas schedule list")
    );

    // No 25:00: the server's INVALID_ARGUMENT, which names the field first.
    let bad = daas(
        &alice,
        &[
            "schedule",
            "add",
            "--at",
            "25:00",
            "--days",
            "mon-fri",
            "--timezone",
            "Europe/Paris",
        ],
    )
    .await;
    assert_eq!(bad.code, Some(2), "{bad:#?}");
    assert!(bad.error_line().starts_with("daas: at "), "{bad:#?}");
    assert!(bad.stdout.is_empty(), "{bad:#?}");
    let none = daas(&alice, &["schedule", "list", "--json"]).await;
    assert_eq!(none.stdout, "[]\n", "{none:#?}");
    server.stop().await;
}

/// A catalog with a persistent template, `notes`: its desktops keep their
/// disk when destroyed (the test module's hooks keep it).
const NOTES: &str = r#"
[templates.debian-12-xfce]
[templates.notes]
persistent = true
"#;

/// The kept disks `caller` sees, as `daas snapshot list --json` prints
/// them.
async fn kept_disks(caller: &Caller) -> Vec<Value> {
    let listed = daas(caller, &["snapshot", "list", "--json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    listed.json_lines()[0]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("not an array: {listed:#?}"))
}

/// The whitespace-separated words of each line of a table.
fn table_rows(run: &Run) -> Vec<Vec<&str>> {
    run.stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kept_disk_is_listed_restored_and_deleted() {
    let server = TestServer::start(TestOptions {
        extra_toml: NOTES.to_owned(),
        ..TestOptions::default()
    })
    .await;
    let alice = Caller::user(&server, "alice");
    let bob = Caller::user(&server, "bob");
    let admin = Caller::admin(&server);

    // A first notes desktop is a fresh clone; destroyed, its disk is kept
    // under its session's id.
    let none = daas(&alice, &["snapshot", "list"]).await;
    assert_eq!(
        (none.code, none.stdout.as_str()),
        (
            Some(0),
            "no kept disks (a desktop of a persistent template keeps its disk when destroyed)\n"
        ),
        "{none:#?}"
    );
    let first = daas(&alice, &["create", "--template", "notes"]).await;
    assert_eq!(first.code, Some(0), "{first:#?}");
    assert!(!first.stdout.contains("restored from"), "{first:#?}");
    let id = ready_id(&first);
    let shown = daas(&alice, &["show", &id]).await;
    assert!(!shown.stdout.contains("restored from"), "{shown:#?}");
    let vm = field(&shown, "vm name");
    let destroyed = daas(&alice, &["destroy", &id]).await;
    assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");

    let table = daas(&alice, &["snapshot", "list"]).await;
    assert_eq!(table.code, Some(0), "{table:#?}");
    assert_eq!(
        table_rows(&table),
        [
            vec!["ID", "TEMPLATE", "KEPT", "SIZE", "VM"],
            // The test module's disks are 1 GB.
            vec![
                id.as_str(),
                "notes",
                "(standard)",
                table_rows(&table)[1][3],
                "1",
                "GB",
                vm.as_str()
            ],
        ],
        "{table:#?}"
    );
    let kept: jiff::Timestamp = table_rows(&table)[1][3]
        .parse()
        .unwrap_or_else(|err| panic!("KEPT is no time ({err}): {table:#?}"));
    let now = jiff::Timestamp::now();
    assert!(
        kept > now - jiff::SignedDuration::from_mins(5) && kept <= now,
        "{kept} against now {now}"
    );
    let disks = kept_disks(&alice).await;
    let [disk] = disks.as_slice() else {
        panic!("not one kept disk: {disks:?}");
    };
    assert_eq!(
        [
            &disk["id"],
            &disk["username"],
            &disk["template"],
            &disk["vm_name"],
            &disk["size_gb"],
            &disk["restoring_session_id"],
        ],
        [
            &Value::from(id.as_str()),
            &Value::from("alice"),
            &Value::from("notes"),
            &Value::from(vm.as_str()),
            &Value::from(1),
            &Value::Null,
        ],
        "{disk}"
    );
    // Not bob's; an administrator sees whose it is.
    assert!(kept_disks(&bob).await.is_empty());
    let everyone = daas(&admin, &["snapshot", "list"]).await;
    assert_eq!(
        everyone
            .stdout
            .lines()
            .next()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>),
        Some(vec!["ID", "USER", "TEMPLATE", "KEPT", "SIZE", "VM"]),
        "{everyone:#?}"
    );
    assert!(
        everyone
            .stdout
            .lines()
            .any(|line| line.starts_with(&format!("{id}  alice  notes (standard)  "))),
        "{everyone:#?}"
    );

    // The next notes desktop is restored from it: create, watch and show
    // say so; the disk is forgotten just after READY.
    let second = daas(&alice, &["create", "--template", "notes"]).await;
    assert_eq!(second.code, Some(0), "{second:#?}");
    assert!(
        second.stdout.contains(&format!(
            "\nrestored from: {id} (the disk kept when that desktop was destroyed)\n"
        )),
        "{second:#?}"
    );
    let second_id = ready_id(&second);
    let shown = daas(&alice, &["show", &second_id]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    assert_eq!(field(&shown, "restored from"), id, "{shown:#?}");
    assert!(
        shown.stdout.contains(&format!("restored from: {id}\n")),
        "{shown:#?}"
    );
    let json = daas(&alice, &["show", &second_id, "--json"]).await;
    assert_eq!(
        json.json_lines()[0]["restored_from"],
        id.as_str(),
        "{json:#?}"
    );
    let watched = daas(&alice, &["watch", &second_id]).await;
    assert!(
        watched.stdout.contains(&format!("restored from: {id} ")),
        "{watched:#?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !kept_disks(&alice).await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(kept_disks(&alice).await.is_empty(), "forgotten once READY");
    let destroyed = daas(&alice, &["destroy", &second_id]).await;
    assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");

    // Kept again; bob may not delete it; alice does, and it is gone.
    let disks = kept_disks(&alice).await;
    let ids: Vec<&str> = disks.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids, [second_id.as_str()], "{disks:?}");
    let refused = daas(&bob, &["snapshot", "delete", &second_id]).await;
    assert_eq!(refused.code, Some(2), "{refused:#?}");
    assert_eq!(
        refused.error_line(),
        "daas: you may delete only your own kept disks"
    );
    let deleted = daas(&alice, &["snapshot", "delete", &second_id]).await;
    assert_eq!(deleted.code, Some(0), "{deleted:#?}");
    let second_vm = field(&shown, "vm name");
    assert_eq!(
        deleted.stdout,
        format!(
            "deleted kept disk {second_id}: alice's notes disk (vm {second_vm}); alice's next \
             notes desktop starts blank\n"
        )
    );
    assert!(kept_disks(&alice).await.is_empty());

    // An unknown id: the server's NOT_FOUND, in its words.
    for id in [second_id.as_str(), UNKNOWN_ID] {
        let unknown = daas(&alice, &["snapshot", "delete", id]).await;
        assert_eq!(unknown.code, Some(2), "{unknown:#?}");
        assert!(
            unknown
                .error_line()
                .starts_with(&format!("daas: no kept disk {id}")),
            "{unknown:#?}"
        );
        assert!(unknown.stdout.is_empty(), "{unknown:#?}");
    }
    server.stop().await;
}
