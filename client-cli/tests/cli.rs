//! Runs the real `daas` binary against an in-process `daas-server`.

use std::process::Stdio;
use std::time::Duration;

use daas_server::testkit::{TestOptions, TestServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How long one run of the CLI may take.
const TIME_LIMIT: Duration = Duration::from_secs(300);

/// An id no session has.
const UNKNOWN_ID: &str = "6f1c7d0e-95b4-4c55-9f3e-1f0a2b3c4d5e";

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

/// Runs `daas ARGS` with `env` added and nothing on stdin (unless `stdin`).
async fn daas_with(
    endpoint: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_daas"));
    command
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .env_remove("DAAS_SESSION_PASSWORD")
        .env_remove("DAAS_ENDPOINT")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
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

/// Starts `daas ARGS` and returns it once it has printed a line containing
/// `wanted`, with the lines it printed so far.
async fn daas_until(endpoint: &str, args: &[&str], wanted: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_daas"))
        .arg("--endpoint")
        .arg(endpoint)
        .args(args)
        .env_remove("DAAS_SESSION_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
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

async fn daas(endpoint: &str, args: &[&str]) -> Run {
    daas_with(endpoint, args, &[], None).await
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
    let endpoint = server.endpoint();

    let created = daas(&endpoint, &["create", "--user", "alice"]).await;
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

    let listed = daas(&endpoint, &["list"]).await;
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

    let filtered = daas(&endpoint, &["list", "--user", "alice", "--state", "Ready"]).await;
    assert_eq!(filtered.code, Some(0), "{filtered:#?}");
    assert!(filtered.stdout.contains(&id), "{filtered:#?}");
    let none = daas(&endpoint, &["list", "--state", "failed"]).await;
    assert_eq!(none.code, Some(0), "{none:#?}");
    assert!(!none.stdout.contains(&id), "{none:#?}");

    let shown = daas(&endpoint, &["show", &id]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    assert!(
        shown.stdout.contains(&format!("id:           {id}\n")),
        "{shown:#?}"
    );
    assert!(shown.stdout.contains("user:         alice\n"), "{shown:#?}");
    assert!(shown.stdout.contains("state:        READY\n"), "{shown:#?}");
    assert!(shown.stdout.contains("rdp:          rdp://"), "{shown:#?}");

    let watched = daas(&endpoint, &["watch", &id]).await;
    assert_eq!(watched.code, Some(0), "{watched:#?}");
    assert_eq!(ready_id(&watched), id);

    for _ in 0..2 {
        let destroyed = daas(&endpoint, &["destroy", &id]).await;
        assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");
        assert_eq!(destroyed.stdout, format!("destroyed {id}\n"));
    }
    let shown = daas(&endpoint, &["show", "--json", &id]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    let session: Value = serde_json::from_str(&shown.stdout).expect("show --json prints JSON");
    assert_eq!(session["state"], "DESTROYED");

    let watched = daas(&endpoint, &["watch", &id]).await;
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
    let endpoint = server.endpoint();

    let created = daas(&endpoint, &["create", "--json", "--user", "alice"]).await;
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

    let listed = daas(&endpoint, &["list", "--json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    let sessions: Value = serde_json::from_str(&listed.stdout).expect("list --json prints JSON");
    let ids: Vec<&str> = sessions
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, [id]);

    let watched = daas(&endpoint, &["watch", "--json", id]).await;
    assert_eq!(watched.code, Some(0), "{watched:#?}");
    assert_eq!(watched.json_lines(), events);

    let destroyed = daas(&endpoint, &["destroy", "--json", id]).await;
    assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");
    let session: Value =
        serde_json::from_str(&destroyed.stdout).expect("destroy --json prints JSON");
    assert_eq!(session["state"], "DESTROYED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_sessions_are_one_line_errors() {
    let server = TestServer::start(TestOptions::default()).await;
    let endpoint = server.endpoint();
    for command in ["show", "watch", "destroy"] {
        let run = daas(&endpoint, &[command, UNKNOWN_ID]).await;
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
    let run = daas(&server.endpoint(), &["create", "--user", "alice"]).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.error_line()
            .starts_with("daas: failed in PROVISIONING: "),
        "{run:#?}"
    );
    assert!(run.stdout.contains("✘ PROVISIONING"), "{run:#?}");

    let run = daas(&server.endpoint(), &["create", "--json", "--user", "alice"]).await;
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
    let run = daas(&server.endpoint(), &["create", "--user", "a/b"]).await;
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
        let run = daas("http://127.0.0.1:1", args).await;
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(
            run.error_line()
                .starts_with("daas: cannot reach the server at http://127.0.0.1:1: "),
            "{run:#?}"
        );
    }
    let run = daas("127.0.0.1:1", &["list"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line().starts_with("daas: invalid endpoint"),
        "{run:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_2() {
    let endpoint = "http://127.0.0.1:1";
    let run = daas(endpoint, &["list", "--state", "bogus"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line()
            .contains("valid states: queued, provisioning"),
        "{run:#?}"
    );

    let run = daas_with(
        endpoint,
        &["create", "--user", "alice", "--session-user", "bob"],
        &[],
        None,
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(
        run.error_line().contains("DAAS_SESSION_PASSWORD"),
        "{run:#?}"
    );

    let run = daas(endpoint, &["create", "--user", "alice", "--password-stdin"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");

    let run = daas(endpoint, &["frobnicate"]).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_password_stays_secret() {
    const PASSWORD: &str = "Tr0ub4dor-and-3";
    let server = TestServer::start(TestOptions::default()).await;
    let endpoint = server.endpoint();

    let run = daas_with(
        &endpoint,
        &["create", "-v", "--user", "alice", "--session-user", "bob"],
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
    let shown = daas(&endpoint, &["show", &id]).await;
    assert!(shown.stdout.contains("session user: bob\n"), "{shown:#?}");

    let run = daas_with(
        &endpoint,
        &[
            "create",
            "--json",
            "--user",
            "alice",
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
    let endpoint = server.endpoint();
    let (child, _) = daas_until(&endpoint, &["create", "--user", "alice"], "PROVISIONING").await;
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

    let watched = daas(&endpoint, &["watch", id]).await;
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
    let endpoint = server.endpoint();
    let (child, _) = daas_until(&endpoint, &["create", "--user", "alice"], "PROVISIONING").await;
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
