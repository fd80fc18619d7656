//! Servers on one PostgreSQL (`[store] url`): a server keeps its sessions
//! across a restart, and two real `daas-server` processes share the
//! sessions, the limits, the events (a watcher on one sees every event of
//! a create running on the other, in order) and Terraform's files (one
//! destroys what the other made); a server frozen past its lease loses
//! its session to the other and writes nothing for it once it wakes; three
//! servers build a warm pool once and hand each desktop to one create; a
//! claim on one server reaches the agent whose stream is on the other.

use std::time::{Duration, Instant};

use daas_api::v1::{DestroySessionRequest, GetSessionRequest, ListSessionsRequest, SessionState};
use daas_server::testkit::{
    PrivateCluster, TestOptions, TestServer, postgres_store_toml, write_config,
};

use crate::common::*;

mod chaos;

#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_postgres_keeps_its_sessions_across_a_restart() {
    let server = TestServer::start(TestOptions {
        extra_toml: postgres_store_toml().await,
        ..Default::default()
    })
    .await;
    let (id, events) = ready_session(&server, "alice").await;
    assert_gap_free(&events);
    let server = server.restart().await;
    let mut client = server.client().await;
    let session = client
        .get_session(GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(session.state(), SessionState::Ready);
    assert_eq!(watch(&mut client, &id).await, events, "the history is kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_share_sessions_limits_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let options = TestOptions {
        create_delay_secs: 2,
        max_sessions: 2,
        max_sessions_per_user: 2,
        ..Default::default()
    };
    let (config_a, config_b) = two_configs(dir.path(), options, "").await;
    let (_a, endpoint_a) = start_server(&config_a, &[]).await;
    let (_b, endpoint_b) = start_server(&config_b, &[]).await;
    let mut on_a = connect(&endpoint_a, dir.path()).await;
    let mut on_b = connect(&endpoint_b, dir.path()).await;

    // A create on A, watched on B from its first event.
    let mut stream = on_a
        .create_session(request("alice"))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first event");
    let watcher = {
        let mut on_b = on_b.clone();
        let id = first.session_id.clone();
        tokio::spawn(async move { watch(&mut on_b, &id).await })
    };
    let mut seen_on_a = vec![first];
    seen_on_a.extend(drain(stream).await);
    ready(&seen_on_a);
    let seen_on_b = watcher.await.unwrap();
    assert_eq!(
        seen_on_b, seen_on_a,
        "B saw every event of A's create, in order"
    );

    // The limits are the database's: one more on B fits, a third does not.
    let bob = create(&mut on_b, request("bob")).await;
    ready(&bob);
    let refused = on_a
        .create_session(request("carol"))
        .await
        .expect_err("a third desktop is over max_sessions = 2");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let listed = on_b
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 2, "{listed:?}");

    // Each is destroyed by the other server: Terraform's files are in the
    // store, and its destroy runs there (once, not the inventory's).
    for (client, events) in [(&mut on_b, &seen_on_a), (&mut on_a, &bob)] {
        let session = settled(events);
        client
            .destroy_session(DestroySessionRequest {
                session_id: session.id.clone(),
            })
            .await
            .unwrap();
        let events = watch(client, &session.id).await;
        assert_eq!(settled(&events).state(), SessionState::Destroyed);
        let destroyed = dir
            .path()
            .join(format!("markers/{}.destroyed", session.vm_name));
        let runs = std::fs::read_to_string(&destroyed).unwrap();
        assert_eq!(
            runs.lines()
                .map(|l| l.split(' ').next())
                .collect::<Vec<_>>(),
            [Some("terraform")],
            "{runs}"
        );
    }
}

/// Two configs in `dir` on one new PostgreSQL schema (B's data folder is
/// its own), with `options` and `[store]`'s extra keys.
/// A create kept waiting by a busy server (its one permit taken) is taken
/// by an idle one, which runs it at once; its caller, still on the busy
/// server, sees every event, and its VM is made once. The two servers use
/// one SSH key, the deployment's.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_waiting_on_a_busy_server_runs_on_an_idle_one() {
    let dir = tempfile::tempdir().unwrap();
    let options = TestOptions {
        create_delay_secs: 5,
        max_parallel: 1,
        ..Default::default()
    };
    // B takes no other server's creates in its first three leases.
    let (config_a, config_b) = two_configs(dir.path(), options, "lease = \"1s\"").await;
    let (_a, endpoint_a) = start_server(&config_a, &[]).await;
    let (_b, _endpoint_b) = start_server(&config_b, &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut on_a = connect(&endpoint_a, dir.path()).await;
    let (alice, _) = create_until_output(&mut on_a, "alice", "creating ").await;
    // A's permit is alice's: bob's create waits on A.
    let bob = on_a
        .create_session(request("bob"))
        .await
        .unwrap()
        .into_inner();
    let (alice, bob) = tokio::join!(drain(alice), drain(bob));
    let (alice, bob) = (ready(&alice), ready(&bob));
    let events_of = |session: &daas_api::v1::Session| {
        let mut client = on_a.clone();
        let id = session.id.clone();
        async move { watch(&mut client, &id).await }
    };
    let (alice_events, bob_events) = (events_of(&alice).await, events_of(&bob).await);
    assert_gap_free(&bob_events);
    assert!(
        entered_ms(&bob_events, SessionState::Provisioning)
            < entered_ms(&alice_events, SessionState::Booting),
        "bob's create started while alice's held A's one permit"
    );
    let created = std::fs::read_dir(dir.path().join("markers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".created"))
        .count();
    assert_eq!(created, 2, "one VM each");
    // Both servers use the deployment's SSH key: either reaches any desktop.
    let key =
        |data: &str| std::fs::read_to_string(dir.path().join(data).join("ssh/id_ed25519.pub"));
    assert_eq!(key("data").unwrap(), key("data-1").unwrap());
}

async fn two_configs(
    dir: &std::path::Path,
    options: TestOptions,
    store_keys: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut configs = configs(dir, options, store_keys, 2).await;
    let b = configs.pop().unwrap();
    (configs.pop().unwrap(), b)
}

/// `count` configs in `dir` on one new PostgreSQL schema, each server with
/// a data folder of its own.
pub(super) async fn configs(
    dir: &std::path::Path,
    options: TestOptions,
    store_keys: &str,
    count: usize,
) -> Vec<std::path::PathBuf> {
    let store = format!("{}{store_keys}\n", postgres_store_toml().await);
    configs_on(dir, options, &store, count)
}

/// `count` configs in `dir` with the `[store]` table `store`, each server
/// with a data folder of its own.
pub(super) fn configs_on(
    dir: &std::path::Path,
    options: TestOptions,
    store: &str,
    count: usize,
) -> Vec<std::path::PathBuf> {
    let first = write_config(
        dir,
        &TestOptions {
            extra_toml: format!("{store}{}", options.extra_toml),
            ..options.clone()
        },
    );
    let text = std::fs::read_to_string(&first).unwrap();
    let data = dir.join("data").display().to_string();
    let mut all = vec![first];
    for i in 1..count {
        let config = dir.join(format!("daas-{i}.toml"));
        std::fs::write(&config, text.replace(&data, &format!("{data}-{i}"))).unwrap();
        all.push(config);
    }
    all
}

/// A server per config, and a client of each (the certificates in `dir`).
pub(super) async fn start_all(
    configs: &[std::path::PathBuf],
    dir: &std::path::Path,
) -> (Vec<tokio::process::Child>, Vec<Client>) {
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for config in configs {
        let (child, endpoint) = start_server(config, &[]).await;
        servers.push(child);
        clients.push(connect(&endpoint, dir).await);
    }
    (servers, clients)
}

/// Every session in the store, as server `client` lists them.
pub(super) async fn all_sessions(client: &mut Client) -> Vec<daas_api::v1::Session> {
    client
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sessions
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_of_ten_claimed_by_thirty_creates_over_three_servers() {
    let dir = tempfile::tempdir().unwrap();
    let options = TestOptions {
        max_sessions: 100,
        max_sessions_per_user: 1,
        max_parallel: 10,
        extra_toml: "[pools.lab]\nsize = 10\nmax_building = 10\n".into(),
        ..Default::default()
    };
    let configs = configs(dir.path(), options, "", 3).await;
    let (_servers, mut clients) = start_all(&configs, dir.path()).await;

    // Three servers reconcile the pool; one at a time builds: ten desktops,
    // not thirty.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let spares = all_sessions(&mut clients[0]).await;
        assert!(
            spares.len() <= 10,
            "the pool was built more than once: {} desktops",
            spares.len()
        );
        if spares
            .iter()
            .filter(|s| s.state() == SessionState::Ready)
            .count()
            == 10
        {
            break;
        }
        assert!(Instant::now() < deadline, "the pool never got ten ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spares: Vec<String> = all_sessions(&mut clients[0])
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();

    // Thirty creates at once, ten on each server.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let mut client = clients[i % 3].clone();
        tasks.push(tokio::spawn(async move {
            create(&mut client, request(&format!("user{i}"))).await
        }));
    }
    let mut made = Vec::new();
    for task in tasks {
        made.push(ready(&task.await.unwrap()));
    }
    let mut ids: Vec<&str> = made.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 30, "each create has a desktop of its own");
    let claimed = made.iter().filter(|s| spares.contains(&s.id)).count();
    assert_eq!(claimed, 10, "every ready desktop was claimed, once");
    let mut vms: Vec<&str> = made.iter().map(|s| s.vm_name.as_str()).collect();
    vms.sort_unstable();
    vms.dedup();
    assert_eq!(vms.len(), 30, "no VM serves two users");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_frozen_past_its_lease_loses_its_session_and_writes_nothing_for_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let options = TestOptions {
        create_delay_secs: 6,
        ..Default::default()
    };
    let (config_a, config_b) = two_configs(dir.path(), options, "lease = \"2s\"").await;
    let (a, endpoint_a) = start_server(&config_a, &[]).await;
    let (_b, endpoint_b) = start_server(&config_b, &[]).await;
    let mut on_a = connect(&endpoint_a, dir.path()).await;
    let mut on_b = connect(&endpoint_b, dir.path()).await;
    let a_pid = Pid::from_raw(i32::try_from(a.id().unwrap()).unwrap());

    // A runs `terraform apply` (6 s); it freezes in the middle.
    let (_stream, id) = create_until_output(&mut on_a, "alice", "creating ").await;
    kill(a_pid, Signal::SIGSTOP).unwrap();
    let vm_name = on_b
        .get_session(GetSessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .vm_name;

    // B takes the session over once A's lease runs out, waits for the
    // Terraform run A left, and fails the session.
    let events = watch(&mut on_b, &id).await;
    let session = settled(&events);
    assert_eq!(session.state(), SessionState::Failed);
    let reason = session.failure.unwrap().reason;
    assert!(reason.contains("stopped answering"), "{reason}");

    // A wakes: its session is lost, so it destroys the VM it made and
    // writes nothing to the session.
    kill(a_pid, Signal::SIGCONT).unwrap();
    let destroyed = dir.path().join(format!("markers/{vm_name}.destroyed"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !destroyed.exists() {
        assert!(Instant::now() < deadline, "A did not destroy its VM");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs = std::fs::read_to_string(&destroyed).unwrap();
    assert_eq!(runs.lines().count(), 1, "{runs}");
    // A answers again, and the session's history ends where B ended it.
    let after = watch(&mut on_a, &id).await;
    assert_eq!(after, events, "A wrote nothing for the session it lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted_under_load_loses_nothing_and_creates_go_on() {
    let cluster = PrivateCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let options = TestOptions {
        create_delay_secs: 3,
        max_sessions: 100,
        max_parallel: 10,
        ..Default::default()
    };
    let store = format!("[store]\nurl = {:?}\n", cluster.url);
    let configs = configs_on(dir.path(), options, &store, 2);
    let (_servers, mut clients) = start_all(&configs, dir.path()).await;

    // Eight creates over the two servers; PostgreSQL stops while they run
    // `terraform apply` and starts again 3 s later.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut client = clients[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            create(&mut client, request(&format!("user{i}"))).await
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart();

    // Every create reaches READY, and the other server holds its whole
    // history, in order.
    for (i, task) in tasks.into_iter().enumerate() {
        let events = task.await.unwrap();
        let session = ready(&events);
        assert_gap_free(&events);
        let seen = watch(&mut clients[(i + 1) % 2], &session.id).await;
        assert_eq!(seen, events, "the other server has every event");
    }
    // And creates go on, on both.
    for (i, client) in clients.iter_mut().enumerate() {
        ready(&create(client, request(&format!("after{i}"))).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_on_one_server_reaches_the_agent_streaming_from_the_other() {
    use daas_api::v1::{
        CommandOutcome, CreateSessionRequest, ReceiveCommandsRequest, ReportCommandRequest,
        agent_service_client::AgentServiceClient, session_event::Kind,
    };
    let dir = tempfile::tempdir().unwrap();
    let options = TestOptions {
        extra_toml: "[agent]\nendpoint = \"https://10.0.2.2:50051\"\nfirst_report_wait = \"0s\"\n\
                     [pools.lab]\nsize = 1\nmax_building = 1\n"
            .into(),
        ..Default::default()
    };
    let (config_a, config_b) = two_configs(dir.path(), options, "").await;
    let (_a, endpoint_a) = start_server(&config_a, &[]).await;
    let (_b, endpoint_b) = start_server(&config_b, &[]).await;
    let mut on_a = connect(&endpoint_a, dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let spare = loop {
        let ready = all_sessions(&mut on_a)
            .await
            .into_iter()
            .find(|s| s.state() == SessionState::Ready && s.username.is_empty());
        if let Some(spare) = ready {
            break spare;
        }
        assert!(Instant::now() < deadline, "the pool never got a desktop");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The desktop's agent holds its stream on B.
    let creds = daas_server::testkit::agent_credentials(dir.path(), &spare.id);
    let channel = daas_server::testkit::channel(&endpoint_b, Some(&creds))
        .await
        .expect("the agent connects to B");
    let mut agent = AgentServiceClient::new(channel);
    let mut stream = agent
        .receive_commands(ReceiveCommandsRequest {
            session_id: spare.id.clone(),
            agent_version: "test".into(),
        })
        .await
        .expect("open the stream on B")
        .into_inner();
    let id = spare.id.clone();
    let answer = tokio::spawn(async move {
        let command = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("a command within 30 s")
            .expect("a command")
            .and_then(|m| m.command)
            .expect("a command, not the end");
        agent
            .report_command(ReportCommandRequest {
                session_id: id,
                command_id: command.id,
                outcome: CommandOutcome::Done.into(),
                message: String::new(),
            })
            .await
            .expect("report on B");
        command
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The claim on A.
    let events = create(
        &mut on_a,
        CreateSessionRequest {
            username: "alice".into(),
            session_user: "student".into(),
            session_password: "correct horse".into(),
            ..Default::default()
        },
    )
    .await;
    let session = ready(&events);
    assert_eq!(session.id, spare.id, "the pool's desktop was claimed");
    let command = answer.await.expect("the agent's task");
    assert!(command.command.is_some());
    let lines: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Output(o)) => Some(o.text.clone()),
            _ => None,
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("the agent created the local login student")),
        "not done by the agent on B: {lines:?}"
    );
}
