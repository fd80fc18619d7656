//! Zero orphans, proven: the real `daas-server` binary is killed with
//! SIGKILL at each point of a create and a destroy (and, for the Terraform
//! state window, together with its tools, as a power cut would), started
//! again, and then every session must be settled, every VM the test module
//! made must be destroyed unless its session is READY (its `NAME.created`
//! and `NAME.destroyed` markers are counted), and no tool may be left
//! running (the guarantee of `terraform/CONTRACT.md`, "The sweeper", and
//! RELIABILITY.md). Run with `--no-capture` to see the table of outcomes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::common::*;
use daas_api::v1::{
    DestroySessionRequest, ListSessionsRequest, Session, SessionEvent, SessionState,
    session_event::Kind,
};
use daas_server::testkit::{TestOptions, write_config};
use rand::Rng;
use tokio::process::Child;

/// A server folder (config, data, markers) that outlives server processes.
struct Rig {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Rig {
    fn new(options: TestOptions) -> Rig {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = write_config(dir.path(), &options);
        Rig { dir, config }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn markers(&self) -> PathBuf {
        self.path().join("markers")
    }

    async fn start(&self) -> (Child, Client) {
        let (server, endpoint) = start_server(&self.config, &[]).await;
        let client = connect(&endpoint, self.path()).await;
        (server, client)
    }
}

async fn kill(server: &mut Child) {
    server.start_kill().expect("kill the server");
    server.wait().await.expect("reap the server");
}

/// Pids of the processes working in `dir` (the tools: their current
/// folder is a session's).
fn tools_in(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            pids.push(pid);
        }
    }
    pids
}

/// A power cut: the server and every tool at the same instant (the server
/// frozen first, so it starts nothing while its tools are killed).
async fn power_cut(server: &mut Child, dir: &Path) {
    use nix::{
        sys::signal::{Signal, kill, killpg},
        unistd::{Pid, getpgid},
    };
    let pid = Pid::from_raw(server.id().expect("a running server") as i32);
    kill(pid, Signal::SIGSTOP).expect("freeze the server");
    while !tools_in(dir).is_empty() {
        for tool in tools_in(dir) {
            if let Ok(group) = getpgid(Some(Pid::from_raw(tool))) {
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.start_kill().expect("kill the server");
    server.wait().await.expect("reap the server");
}

/// Starts a create for `user` and returns its stream.
async fn open_create(client: &mut Client, user: &str) -> tonic::Streaming<SessionEvent> {
    client
        .create_session(request(user))
        .await
        .expect("create")
        .into_inner()
}

/// Reads a stream until an event matches; returns it.
async fn until(
    stream: &mut tonic::Streaming<SessionEvent>,
    mut pred: impl FnMut(&SessionEvent) -> bool,
) -> SessionEvent {
    tokio::time::timeout(STREAM_LIMIT, async {
        loop {
            let event = stream
                .message()
                .await
                .expect("stream error")
                .expect("the stream ended first");
            if pred(&event) {
                return event;
            }
        }
    })
    .await
    .expect("no such event in time")
}

fn entered(event: &SessionEvent, to: SessionState) -> bool {
    matches!(event.kind, Some(Kind::StageChange(_))) && state(event) == to
}

/// Every session, once none is in progress.
async fn settled(client: &mut Client) -> Vec<Session> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let sessions = client
            .list_sessions(ListSessionsRequest::default())
            .await
            .expect("list")
            .into_inner()
            .sessions;
        if sessions.iter().all(|s| !s.state().is_in_progress()) {
            return sessions;
        }
        assert!(Instant::now() < deadline, "sessions stuck: {sessions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the test module's markers say.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Census {
    created: usize,
    by_terraform: usize,
    by_inventory: usize,
    ready: usize,
}

impl std::ops::AddAssign for Census {
    fn add_assign(&mut self, o: Census) {
        self.created += o.created;
        self.by_terraform += o.by_terraform;
        self.by_inventory += o.by_inventory;
        self.ready += o.ready;
    }
}

/// Destroy runs recorded for VM `name`: (by terraform, by inventory).
fn destroy_runs(markers: &Path, name: &str) -> (usize, usize) {
    let text =
        std::fs::read_to_string(markers.join(format!("{name}.destroyed"))).unwrap_or_default();
    let by = |who: &str| text.lines().filter(|l| l.starts_with(who)).count();
    (by("terraform"), by("inventory"))
}

/// Waits for the sessions to settle and the tools to end, then checks
/// that no VM outlives its session.
async fn assert_no_orphans(rig: &Rig, client: &mut Client) -> Census {
    let sessions = settled(client).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tools_in(rig.path()).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        tools_in(rig.path()),
        Vec::<i32>::new(),
        "tools left running"
    );
    let mut census = Census::default();
    let mut orphans = BTreeMap::new();
    for entry in std::fs::read_dir(rig.markers()).expect("markers").flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".created") else {
            continue;
        };
        census.created += 1;
        let (by_terraform, by_inventory) = destroy_runs(&rig.markers(), name);
        census.by_terraform += by_terraform.min(1);
        census.by_inventory += usize::from(by_terraform == 0 && by_inventory > 0);
        let session = sessions.iter().find(|s| s.vm_name == name);
        let ready = session.is_some_and(|s| s.state() == SessionState::Ready);
        match (by_terraform + by_inventory, ready) {
            (0, true) => census.ready += 1,
            (0, false) => {
                orphans.insert(name.to_string(), session.map(|s| s.state().label()));
            }
            (_, true) => panic!("{name} was destroyed but its session is READY"),
            (_, false) => {}
        }
    }
    assert!(orphans.is_empty(), "orphan VMs: {orphans:?}");
    census
}

fn report(point: &str, kills: usize, census: Census) {
    println!(
        "| {point} | {kills} | {} | {} | {} | {} | 0 |",
        census.created, census.by_terraform, census.by_inventory, census.ready
    );
}

fn failure_reason(session: &Session) -> String {
    session
        .failure
        .clone()
        .map(|f| f.reason)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_queued_and_in_the_middle_of_terraform_apply() {
    let rig = Rig::new(TestOptions {
        create_delay_secs: 3,
        max_parallel: 1,
        ..Default::default()
    });
    let (mut server, mut client) = rig.start().await;
    let mut first = open_create(&mut client, "alice").await;
    until(
        &mut first,
        |e| matches!(&e.kind, Some(Kind::Output(l)) if l.text.contains("(local-exec): creating")),
    )
    .await;
    let mut second = open_create(&mut client, "bob").await;
    until(&mut second, |e| entered(e, SessionState::Queued)).await;
    kill(&mut server).await;

    let (mut server, mut client) = rig.start().await;
    let census = assert_no_orphans(&rig, &mut client).await;
    let sessions = settled(&mut client).await;
    // The create under way fails; the one that had not started runs now.
    let reasons: Vec<String> = sessions.iter().map(failure_reason).collect();
    assert!(
        reasons.iter().any(|r| r.contains("during PROVISIONING")),
        "{reasons:?}"
    );
    let bob: Vec<&Session> = sessions.iter().filter(|s| s.username == "bob").collect();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].state(), SessionState::Ready, "{bob:?}");
    assert_eq!(census.created, 2, "one VM each");
    assert_eq!(census.ready, 1);
    report(
        "QUEUED (run after the restart), and mid `terraform apply`",
        1,
        census,
    );
    kill(&mut server).await;
}

/// The instant between the module creating its VM and Terraform writing its
/// state, hit many times: three creates at once, the kill a random 0-40 ms
/// after the first VM appears; every other round a power cut that takes
/// Terraform down with the server.
#[tokio::test(flavor = "multi_thread")]
async fn killed_in_the_terraform_state_window_many_times() {
    const ROUNDS: usize = 20;
    let rig = Rig::new(TestOptions::default());
    let mut total = Census::default();
    for round in 0..ROUNDS {
        let (mut server, client) = rig.start().await;
        let before = std::fs::read_dir(rig.markers()).unwrap().count();
        let mut streams = Vec::new();
        for i in 0..3 {
            let mut client = client.clone();
            streams.push(tokio::spawn(async move {
                // The stream breaks with the server; that is the point.
                if let Ok(response) = client.create_session(request(&format!("u{i}"))).await {
                    let mut stream = response.into_inner();
                    while let Ok(Some(_)) = stream.message().await {}
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_dir(rig.markers()).unwrap().count() == before {
            assert!(Instant::now() < deadline, "no VM was created");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let delay = rand::rng().random_range(0..=40);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if round % 2 == 1 {
            power_cut(&mut server, rig.path()).await;
        } else {
            kill(&mut server).await;
        }
        for stream in streams {
            let _ = stream.await;
        }
        let (mut server, mut client) = rig.start().await;
        assert_no_orphans(&rig, &mut client).await;
        kill(&mut server).await;
    }
    let (mut server, mut client) = rig.start().await;
    total += assert_no_orphans(&rig, &mut client).await;
    assert!(total.created >= ROUNDS, "{total:?}");
    report(
        "between the module's create and Terraform's state write (half of them power cuts)",
        ROUNDS,
        total,
    );
    kill(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_after_apply_and_while_booting() {
    let rig = Rig::new(TestOptions {
        boot_wait_ssh: true,
        ..Default::default()
    });
    for wait_ms in [0, 700] {
        let (mut server, mut client) = rig.start().await;
        let mut stream = open_create(&mut client, "alice").await;
        until(&mut stream, |e| entered(e, SessionState::Booting)).await;
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        kill(&mut server).await;
        let (mut server, mut client) = rig.start().await;
        assert_no_orphans(&rig, &mut client).await;
        kill(&mut server).await;
    }
    let (mut server, mut client) = rig.start().await;
    let census = assert_no_orphans(&rig, &mut client).await;
    let sessions = settled(&mut client).await;
    assert!(
        sessions
            .iter()
            .all(|s| failure_reason(s).contains("during BOOTING")),
        "{sessions:?}"
    );
    report(
        "after apply (BOOTING entered), and 0.7 s into BOOTING",
        2,
        census,
    );
    kill(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_in_the_middle_of_ansible() {
    let rig = Rig::new(TestOptions::default());
    let (mut server, mut client) = rig.start().await;
    let mut stream = open_create(&mut client, "alice").await;
    until(&mut stream, |e| {
        state(e) == SessionState::Configuring && matches!(e.kind, Some(Kind::Output(_)))
    })
    .await;
    kill(&mut server).await;
    let (mut server, mut client) = rig.start().await;
    let census = assert_no_orphans(&rig, &mut client).await;
    let sessions = settled(&mut client).await;
    assert!(failure_reason(&sessions[0]).contains("during CONFIGURING"));
    report("mid `ansible-playbook`", 1, census);
    kill(&mut server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_in_the_middle_of_terraform_destroy() {
    let rig = Rig::new(TestOptions {
        destroy_delay_secs: 3,
        ..Default::default()
    });
    let (mut server, mut client) = rig.start().await;
    let events = create(&mut client, request("alice")).await;
    let id = events.last().unwrap().session_id.clone();
    let mut watcher = client.clone();
    let destroy = {
        let id = id.clone();
        tokio::spawn(async move {
            let _ = watcher
                .destroy_session(DestroySessionRequest { session_id: id })
                .await;
        })
    };
    // Once DESTROYING has begun, a watch follows it live.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        let session = client
            .get_session(daas_api::v1::GetSessionRequest {
                session_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if session.state() == SessionState::Destroying {
            break client
                .watch_session(daas_api::v1::WatchSessionRequest {
                    session_id: id.clone(),
                    after_sequence: events.len() as u64,
                })
                .await
                .unwrap()
                .into_inner();
        }
        assert!(Instant::now() < deadline, "the destroy did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    until(
        &mut stream,
        |e| matches!(&e.kind, Some(Kind::Output(l)) if l.text.contains("Destroying...")),
    )
    .await;
    kill(&mut server).await;
    let _ = destroy.await;
    let (mut server, mut client) = rig.start().await;
    let census = assert_no_orphans(&rig, &mut client).await;
    let sessions = settled(&mut client).await;
    assert_eq!(sessions[0].state(), SessionState::Destroyed, "{sessions:?}");
    report("DESTROYING, mid `terraform destroy`", 1, census);
    kill(&mut server).await;
}

/// The race a restart used to have: a DestroySession arriving while
/// recovery cleans the same session up ran a second `terraform destroy` in
/// the same folder, and recovery could write FAILED after DESTROYED. Three
/// sessions killed while BOOTING (their VMs made, a destroy takes 2 s), each
/// destroyed the moment the server is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_destroy_racing_recovery_runs_one_destroy() {
    const SESSIONS: usize = 3;
    let rig = Rig::new(TestOptions {
        boot_wait_ssh: true,
        destroy_delay_secs: 2,
        ..Default::default()
    });
    let (mut server, client) = rig.start().await;
    let mut ids = Vec::new();
    for i in 0..SESSIONS {
        let mut client = client.clone();
        let mut stream = client
            .create_session(request(&format!("u{i}")))
            .await
            .unwrap()
            .into_inner();
        let event = until(&mut stream, |e| entered(e, SessionState::Booting)).await;
        ids.push(event.session_id.clone());
    }
    kill(&mut server).await;

    let (mut server, mut client) = rig.start().await;
    let mut destroys = Vec::new();
    for id in &ids {
        let mut client = client.clone();
        let id = id.clone();
        destroys.push(tokio::spawn(async move {
            client
                .destroy_session(DestroySessionRequest { session_id: id })
                .await
                .map(|r| r.into_inner())
        }));
    }
    for (id, destroy) in ids.iter().zip(destroys) {
        let destroyed = destroy.await.unwrap().expect("the destroy succeeds");
        assert_eq!(destroyed.state(), SessionState::Destroyed);
        let history = watch(&mut client, id).await;
        assert_gap_free(&history);
        let after_destroyed: Vec<SessionState> = stages(&history)
            .into_iter()
            .skip_while(|s| *s != SessionState::Destroyed)
            .collect();
        assert_eq!(
            after_destroyed,
            [SessionState::Destroyed],
            "nothing after DESTROYED"
        );
        assert_eq!(
            destroy_runs(&rig.markers(), &destroyed.vm_name),
            (1, 0),
            "one terraform destroy ran for {}",
            destroyed.vm_name
        );
    }
    let census = assert_no_orphans(&rig, &mut client).await;
    report("DestroySession racing the recovery", SESSIONS, census);
    kill(&mut server).await;
}

/// A VM no session knows (its state lost, its row never written) is
/// destroyed by the sweeper at start; a READY session's VM is not.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_destroys_vms_of_no_live_session_at_start() {
    let rig = Rig::new(TestOptions::default());
    let (mut server, mut client) = rig.start().await;
    let ready = create(&mut client, request("alice")).await;
    let ready = ready.last().unwrap().session.clone().unwrap();
    kill(&mut server).await;
    std::fs::write(
        rig.markers().join("desktop-zz9999.created"),
        "lost-session\n",
    )
    .unwrap();

    let (mut server, mut client) = rig.start().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while destroy_runs(&rig.markers(), "desktop-zz9999") == (0, 0) {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not destroy the unknown VM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(destroy_runs(&rig.markers(), "desktop-zz9999"), (0, 1));
    let census = assert_no_orphans(&rig, &mut client).await;
    assert_eq!(census.ready, 1);
    assert_eq!(destroy_runs(&rig.markers(), &ready.vm_name), (0, 0));
    report(
        "power cut that lost a VM's state (sweeper at start)",
        1,
        census,
    );
    kill(&mut server).await;
}

/// Two deployments (two stores) sharing the hypervisor: the sweeper leaves
/// alone the VMs the module lists with another deployment's id, whether
/// their name is unknown here or that of a session of ours that is over;
/// a VM with ours, or with none (made before deployment ids), is swept.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_leaves_other_deployments_vms_alone() {
    let rig = Rig::new(TestOptions::default());
    let (mut server, mut client) = rig.start().await;
    let ready = create(&mut client, request("alice")).await;
    let ready = ready.last().unwrap().session.clone().unwrap();
    let over = create(&mut client, request("bob")).await;
    let over = over.last().unwrap().session.clone().unwrap();
    let destroyed = client
        .destroy_session(DestroySessionRequest {
            session_id: over.id.clone(),
        })
        .await
        .expect("the destroy succeeds")
        .into_inner();
    assert_eq!(destroyed.state(), SessionState::Destroyed);
    kill(&mut server).await;
    // The module recorded this deployment's id (the store's) with the VMs.
    let ours = std::fs::read_to_string(rig.markers().join(format!("{}.deployment", ready.vm_name)))
        .expect("the VM's deployment marker");
    let ours = ours.trim().to_string();
    assert!(
        ours.len() == 12 && ours.bytes().all(|b| b.is_ascii_hexdigit()),
        "{ours}"
    );
    let other = "other1";
    // Another deployment's VMs: one of a name unknown here, one with the
    // name of our DESTROYED session (its markers rewritten as the other
    // deployment's live VM). Ours, and one from before deployment ids.
    let vm = |name: &str, deployment: Option<&str>| {
        if let Some(deployment) = deployment {
            std::fs::write(
                rig.markers().join(format!("{name}.deployment")),
                format!("{deployment}\n"),
            )
            .unwrap();
        }
        std::fs::write(
            rig.markers().join(format!("{name}.created")),
            "lost-session\n",
        )
        .unwrap();
        let _ = std::fs::remove_file(rig.markers().join(format!("{name}.destroyed")));
    };
    vm("desktop-zz9997", Some(other));
    vm(&over.vm_name, Some(other));
    vm("desktop-zz9998", Some(&ours));
    vm("desktop-zz9999", None);

    let (mut server, _client) = rig.start().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // The pass sets the other deployment's VMs apart before it destroys any.
    while destroy_runs(&rig.markers(), "desktop-zz9998") == (0, 0)
        || destroy_runs(&rig.markers(), "desktop-zz9999") == (0, 0)
    {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not destroy this deployment's unknown VMs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(destroy_runs(&rig.markers(), "desktop-zz9998"), (0, 1));
    assert_eq!(destroy_runs(&rig.markers(), "desktop-zz9999"), (0, 1));
    assert_eq!(destroy_runs(&rig.markers(), "desktop-zz9997"), (0, 0));
    assert_eq!(destroy_runs(&rig.markers(), &over.vm_name), (0, 0));
    assert_eq!(destroy_runs(&rig.markers(), &ready.vm_name), (0, 0));
    kill(&mut server).await;
}

/// A configured VM whose destroy failed (the hypervisor refused it), then
/// found by the sweeper of a server without the session's folder (as a
/// replica that did not make it): the sweeper runs the teardown playbook
/// (the computer account leaves the domain) before it destroys the VM.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_runs_the_teardown_playbook_for_a_configured_vm() {
    let rig = Rig::new(TestOptions::default());
    let (mut server, mut client) = rig.start().await;
    let ready = create(&mut client, request("alice")).await;
    let ready = ready.last().unwrap().session.clone().unwrap();
    let refuse = rig
        .markers()
        .join(format!("{}.refuse-destroy", ready.vm_name));
    std::fs::write(&refuse, "").unwrap();
    let err = client
        .destroy_session(DestroySessionRequest {
            session_id: ready.id.clone(),
        })
        .await
        .expect_err("the hypervisor refuses the destroy");
    assert!(err.message().contains("destroy"), "{err:?}");
    kill(&mut server).await;
    let teardown = rig.markers().join(format!("{}.teardown", ready.vm_name));
    assert!(
        teardown.exists(),
        "the failed destroy ran the playbook first"
    );
    std::fs::remove_file(&teardown).unwrap();
    std::fs::remove_file(&refuse).unwrap();
    assert_eq!(destroy_runs(&rig.markers(), &ready.vm_name), (0, 0));
    // This server now has no folder for the session.
    std::fs::remove_dir_all(rig.path().join("data/sessions").join(&ready.id)).unwrap();

    let (mut server, mut client) = rig.start().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while destroy_runs(&rig.markers(), &ready.vm_name) == (0, 0) {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not destroy the VM of the failed destroy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(destroy_runs(&rig.markers(), &ready.vm_name), (0, 1));
    let ran = std::fs::read_to_string(&teardown).expect("the sweeper ran the teardown playbook");
    assert_eq!(ran.trim(), ready.id);
    let census = assert_no_orphans(&rig, &mut client).await;
    report(
        "a refused destroy, swept by a server without the folder",
        1,
        census,
    );
    kill(&mut server).await;
}
