//! Equal servers on one database (replicas): `daas` given several
//! endpoints moves on to the next when one is down, and a create whose
//! server dies midway follows the same session on the next one. Each
//! replica is a process of its own (this test binary run again, see
//! [`replica_process`]) so that a test can kill it with SIGKILL; they share
//! one PostgreSQL schema with a short lease (the embedded SQLite store is
//! for one server only), each with a data folder of its own.

use std::path::Path;
use std::process::Stdio;

use daas_server::app::BoundServer;
use daas_server::config::Config;
use daas_server::testkit::{
    Credentials, TestOptions, credentials, postgres_store_toml, write_config,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::{Caller, Run, TIME_LIMIT, daas, run, run_bare};

/// The variable naming the config a replica process serves.
const REPLICA_CONFIG: &str = "DAAS_TEST_REPLICA_CONFIG";

/// The line a replica process prints once it listens, then its address.
const LISTENING: &str = "replica listening on ";

/// Not a test: the body of the replica processes the tests below start,
/// which run this test binary with only this test and [`REPLICA_CONFIG`]
/// set. It serves until killed.
#[test]
#[ignore = "the body of a replica process, which the replica tests start"]
fn replica_process() {
    let Some(config) = std::env::var_os(REPLICA_CONFIG) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let config = Config::load(Some(Path::new(&config))).expect("load the replica's config");
        let server = BoundServer::bind(config).await.expect("bind the replica");
        println!("{LISTENING}{}", server.local_addr());
        server
            .serve(std::future::pending())
            .await
            .expect("the replica serves");
    });
}

/// A replica process and its endpoint.
struct Replica {
    child: Child,
    endpoint: String,
}

impl Replica {
    /// Starts a replica serving `config`, and returns once it answers calls
    /// (after its start-up, which fails sessions another process left in
    /// progress: no test creates one before).
    async fn start(config: &Path, admin: &Credentials) -> Replica {
        let exe = std::env::current_exe().expect("the test binary");
        let mut child = Command::new(exe)
            .args([
                "replicas::replica_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(REPLICA_CONFIG, config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start a replica");
        let stdout = child.stdout.take().expect("the replica's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(TIME_LIMIT, async {
            while let Some(line) = lines.next_line().await.expect("read the replica's stdout") {
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    return addr.to_owned();
                }
            }
            panic!("the replica exited before listening");
        })
        .await
        .expect("the replica listens in time");
        // Keep draining stdout so that the replica never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let endpoint = format!("https://{addr}");
        let mut client = daas_server::testkit::connect(&endpoint, Some(admin))
            .await
            .expect("connect to the replica");
        client
            .list_sessions(daas_api::v1::ListSessionsRequest::default())
            .await
            .expect("the replica answers");
        Replica { child, endpoint }
    }

    /// SIGKILL: the process dies mid-call, its connections with it.
    async fn kill(&mut self) {
        self.child.kill().await.expect("kill the replica");
    }
}

/// How long a replica's hold on a session lasts unless renewed: another
/// takes a dead one's session over once it runs out.
const LEASE: &str = "2s";

/// Two replicas on one new PostgreSQL schema, one CA, each with a data
/// folder of its own.
struct Cluster {
    dir: tempfile::TempDir,
    a: Replica,
    b: Replica,
}

impl Cluster {
    async fn start(options: TestOptions) -> Cluster {
        let dir = tempfile::tempdir().expect("a server folder");
        let store = format!("{}lease = \"{LEASE}\"\n", postgres_store_toml().await);
        let config_a = write_config(
            dir.path(),
            &TestOptions {
                extra_toml: format!("{}{store}", options.extra_toml),
                ..options
            },
        );
        let text = std::fs::read_to_string(&config_a).expect("read A's config");
        let data = dir.path().join("data").display().to_string();
        assert!(text.contains(&data), "{text}");
        let config_b = dir.path().join("daas-b.toml");
        std::fs::write(&config_b, text.replace(&data, &format!("{data}-b")))
            .expect("write B's config");
        let admin = credentials(dir.path(), "root", true);
        let a = Replica::start(&config_a, &admin).await;
        let b = Replica::start(&config_b, &admin).await;
        Cluster { dir, a, b }
    }

    /// `user` (not an administrator), trying `endpoints` in order.
    fn user(&self, user: &str, endpoints: &[&str]) -> Caller {
        let creds = credentials(self.dir.path(), user, false);
        Caller::new(&endpoints.join(","), Some(creds))
    }
}

/// An endpoint nothing listens on: a port bound, then closed again.
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().expect("its address");
    format!("https://{addr}")
}

/// The session id of `daas create --json`'s last event.
fn created_id(run: &Run) -> String {
    let events = run.json_lines();
    let last = events
        .last()
        .unwrap_or_else(|| panic!("no event: {run:#?}"));
    last["session_id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_go_to_the_next_replica_when_one_is_down() {
    let mut cluster = Cluster::start(TestOptions::default()).await;
    let (a, b) = (cluster.a.endpoint.clone(), cluster.b.endpoint.clone());
    let closed = closed_endpoint();

    let created = daas(
        &cluster.user("alice", &[&closed, &a]),
        &["create", "--json"],
    )
    .await;
    assert_eq!(created.code, Some(0), "{created:#?}");
    assert!(created.stderr.is_empty(), "{created:#?}");
    let id = created_id(&created);

    // The other replica sees it (one store); the list of endpoints from
    // the config file this time.
    let alice = cluster.user("alice", &[]);
    let creds = alice.credentials.clone().expect("alice's credentials");
    alice.write_config(&format!(
        "endpoint = [{closed:?}, {b:?}]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        creds.ca, creds.cert, creds.key
    ));
    let listed = run_bare(&alice, &["list", "--json"]).await;
    assert_eq!(listed.code, Some(0), "{listed:#?}");
    let sessions: Value = serde_json::from_str(&listed.stdout).expect("list --json prints JSON");
    assert_eq!(sessions[0]["id"], id.as_str(), "{listed:#?}");

    cluster.a.kill().await;
    let shown = daas(&cluster.user("alice", &[&a, &b]), &["show", "--json", &id]).await;
    assert_eq!(shown.code, Some(0), "{shown:#?}");
    let session: Value = serde_json::from_str(&shown.stdout).expect("show --json prints JSON");
    assert_eq!(session["state"], "READY");

    let destroyed = daas(
        &cluster.user("alice", &[&closed, &a, &b]),
        &["destroy", &id],
    )
    .await;
    assert_eq!(destroyed.code, Some(0), "{destroyed:#?}");
    assert_eq!(destroyed.stdout, format!("destroyed {id}\n"));

    // Every one down: one line naming each, in order. The list of
    // endpoints from DAAS_ENDPOINT, which beats the file's.
    let mut command = alice.bare_command(&["list"]);
    command.env("DAAS_ENDPOINT", format!("{closed}, {a}"));
    let listed = run(command, &["list"], None).await;
    assert_eq!(listed.code, Some(2), "{listed:#?}");
    let line = listed.error_line();
    assert!(
        line.starts_with(&format!("daas: cannot reach any server: {closed} (")),
        "{line}"
    );
    assert!(line.contains(&format!("); {a} (")), "{line}");
    assert!(!line.contains(&b), "{line}");
}

/// The lines a child prints on one of its outputs, as they come.
fn lines_of(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads `lines` into `seen` until one satisfies `wanted`.
async fn wait_for_line(
    lines: &mut mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    wanted: impl Fn(&str) -> bool,
) {
    let found = tokio::time::timeout(TIME_LIMIT, async {
        while let Some(line) = lines.recv().await {
            let done = wanted(&line);
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "never came; so far: {seen:#?}");
}

/// A run of `daas` following a session (create, watch), read as it goes.
struct Following {
    args: Vec<String>,
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    /// Its lines so far.
    printed: Vec<String>,
    said: Vec<String>,
}

impl Following {
    fn start(caller: &Caller, args: &[&str]) -> Following {
        let mut child = caller
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start daas");
        Following {
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            stdout: lines_of(child.stdout.take().expect("daas's stdout")),
            stderr: lines_of(child.stderr.take().expect("daas's stderr")),
            child,
            printed: Vec::new(),
            said: Vec::new(),
        }
    }

    /// Until it prints an event in `state`.
    async fn printed_state(&mut self, state: &str) {
        let wanted = format!(r#""state":"{state}""#);
        wait_for_line(&mut self.stdout, &mut self.printed, |line| {
            line.contains(&wanted)
        })
        .await;
    }

    /// Until it says it follows the session on another server.
    async fn moved(&mut self) -> String {
        wait_for_line(&mut self.stderr, &mut self.said, |line| {
            line.contains("following session")
        })
        .await;
        self.said.last().cloned().unwrap_or_default()
    }

    /// Its exit code once it ends, with all it printed (as JSON events).
    async fn end(mut self) -> (Option<i32>, Vec<Value>, Vec<String>) {
        let status = tokio::time::timeout(TIME_LIMIT, self.child.wait())
            .await
            .expect("daas ends")
            .expect("wait for daas");
        while let Some(line) = self.stdout.recv().await {
            self.printed.push(line);
        }
        while let Some(line) = self.stderr.recv().await {
            self.said.push(line);
        }
        eprintln!(
            "daas {:?} -> {status}: {:#?}\n{:#?}",
            self.args, self.printed, self.said
        );
        let events = self
            .printed
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
            .collect();
        (status.code(), events, self.said)
    }
}

/// Checks that `events` are every event of session `id`, each once, in
/// order, from BOOTING to FAILED.
fn assert_each_event_once(events: &[Value], id: &str) {
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| e["sequence"].as_u64())
        .collect();
    assert_eq!(
        sequences,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e["session_id"] == id), "{events:#?}");
    let states: Vec<&str> = events.iter().filter_map(|e| e["state"].as_str()).collect();
    assert!(states.contains(&"BOOTING"), "{states:?}");
    assert_eq!(states.last(), Some(&"FAILED"), "{states:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_and_a_watch_whose_replica_dies_go_on_with_the_same_session() {
    // The session waits in BOOTING (for an SSH port nobody serves): time
    // enough to kill the replica that is building it.
    let mut cluster = Cluster::start(TestOptions {
        boot_wait_ssh: true,
        ..TestOptions::default()
    })
    .await;
    let (a, b) = (cluster.a.endpoint.clone(), cluster.b.endpoint.clone());
    let alice = cluster.user("alice", &[&a, &b]);
    let mut create = Following::start(&alice, &["create", "--json"]);
    create.printed_state("BOOTING").await;
    let first: Value = serde_json::from_str(&create.printed[0]).expect("a JSON event");
    let id = first["session_id"].as_str().unwrap_or_default().to_owned();
    let mut watch = Following::start(&alice, &["watch", "--json", &id]);
    watch.printed_state("BOOTING").await;

    cluster.a.kill().await;
    // The create is sent again to B (the same request id), the watch asks
    // B for what came after its last event: both follow the same session.
    for following in [&mut create, &mut watch] {
        let said = following.moved().await;
        assert!(
            said.starts_with(&format!("daas: {a} went away (")),
            "{said}"
        );
        assert!(
            said.ends_with(&format!("); following session {id} on {b}")),
            "{said}"
        );
    }
    // Nobody builds it any more: once A's lease runs out, B takes the
    // session over and fails it (it cannot go on with A's work), and both
    // follow that to the end on B.
    let (code, created, said) = create.end().await;
    assert_eq!(code, Some(1), "{said:#?}");
    assert_eq!(said.len(), 2, "{said:#?}");
    assert!(
        said[1].starts_with("daas: failed in BOOTING: ") && said[1].contains("stopped answering"),
        "{said:#?}"
    );
    assert_each_event_once(&created, &id);
    let (code, watched, told) = watch.end().await;
    assert_eq!(code, Some(1), "{told:#?}");
    assert_eq!(told.len(), 2, "{told:#?}");
    assert_eq!(told[1], said[1]);
    assert_eq!(watched, created);

    // One desktop: the create sent twice made no second session.
    let listed = daas(&cluster.user("alice", &[&b]), &["list", "--json"]).await;
    let sessions: Value = serde_json::from_str(&listed.stdout).expect("list --json prints JSON");
    let ids: Vec<&str> = sessions
        .as_array()
        .map(|all| all.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [id.as_str()], "{listed:#?}");
}
