//! A claim's per-user part through the desktop's agent, against a real
//! server and the test module, with the agent's own certificate: the agent
//! gets the command once and no playbook runs; an agent that cannot do it
//! (UNSUPPORTED) or is not there lets the playbook do it; one that fails
//! fails the claim with its message.

use std::time::Duration;

use crate::common::*;
use crate::pool::{last_session, messages, pool_toml, spares, wait_pool};
use daas_api::v1::{
    CommandOutcome, CreateSessionRequest, ReceiveCommandsRequest, ReportCommandRequest,
    SessionEvent, SessionState, agent_command::Command, session_event::Kind,
};
use daas_server::testkit::{TestOptions, TestServer};
use tonic::Code;

fn outputs(events: &[SessionEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Output(o)) => Some(o.text.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Claims the pool's ready desktop as alice with session user `student`,
/// while its agent answers the command it gets with `outcome` (None: no
/// agent listens); the claim's events and the command the agent got.
async fn claim_answering(
    server: &TestServer,
    outcome: Option<(CommandOutcome, &str)>,
) -> (
    String,
    Vec<SessionEvent>,
    Option<daas_api::v1::AgentCommand>,
) {
    let answers = outcome.map(|(o, m)| vec![(o, m.to_string())]);
    let (vm, events, got) = claim_as(server, "alice", "student", answers).await;
    (vm, events, got.into_iter().next())
}

/// Claims the pool's ready desktop as `user` with `session_user`, while
/// its agent answers the commands it gets, in order, with `answers` (None:
/// no agent listens); the claim's events and the commands the agent got.
async fn claim_as(
    server: &TestServer,
    user: &str,
    session_user: &str,
    answers: Option<Vec<(CommandOutcome, String)>>,
) -> (String, Vec<SessionEvent>, Vec<daas_api::v1::AgentCommand>) {
    let mut admin = server.client().await;
    wait_pool(&mut admin, "a ready desktop", |p| p.ready == 1).await;
    let spare = spares(&mut admin).await.pop().expect("a desktop");
    let agent = agent_for(server, &spare.id).await;
    let agent_task = answers.map(|answers| {
        let (mut agent, id) = (agent, spare.id.clone());
        tokio::spawn(async move {
            let mut stream = agent
                .receive_commands(ReceiveCommandsRequest {
                    session_id: id.clone(),
                    agent_version: "test".into(),
                })
                .await
                .expect("open the command stream")
                .into_inner();
            let mut got = Vec::new();
            for (outcome, message) in answers {
                let command = tokio::time::timeout(Duration::from_secs(30), stream.message())
                    .await
                    .expect("a command within 30 s")
                    .expect("a command")
                    .and_then(|c| c.command)
                    .expect("a command, not the end");
                agent
                    .report_command(ReportCommandRequest {
                        session_id: id.clone(),
                        command_id: command.id,
                        outcome: outcome.into(),
                        message,
                    })
                    .await
                    .expect("report the outcome");
                // Reported once: a second report is refused.
                let again = agent
                    .report_command(ReportCommandRequest {
                        session_id: id.clone(),
                        command_id: command.id,
                        outcome: CommandOutcome::Done.into(),
                        message: String::new(),
                    })
                    .await
                    .expect_err("a second report");
                assert_eq!(again.code(), Code::NotFound, "{again:?}");
                got.push(command);
            }
            got
        })
    });
    // The stream is open before the claim (an agent connects at boot).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut client = server.client_as(user, false).await;
    let stream = client
        .create_session(CreateSessionRequest {
            session_user: session_user.into(),
            session_password: if session_user.is_empty() {
                String::new()
            } else {
                "correct horse".into()
            },
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let events = tokio::time::timeout(Duration::from_secs(60), drain(stream))
        .await
        .expect("the claim ends within a minute");
    let got = match agent_task {
        Some(task) => task.await.expect("the agent task"),
        None => Vec::new(),
    };
    (spare.vm_name, events, got)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_domain_the_agent_lets_the_user_in_then_makes_the_local_login() {
    // The first lines of extra_toml land in [ansible.extra_vars].
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "ad_join_domain = \"daas.test\"\n[agent]\nendpoint = \"https://10.0.2.2:50051\"\nfirst_report_wait = \"0s\"\n{}",
            pool_toml(1, "")
        ),
        ..Default::default()
    })
    .await;
    let markers = server.markers();
    let read = |name: &str| std::fs::read_to_string(markers.join(name)).unwrap_or_default();
    let done = || (CommandOutcome::Done, String::new());

    // Both done: the domain user first, then the local login; no playbook.
    let (vm, events, got) = claim_as(&server, "alice", "student", Some(vec![done(), done()])).await;
    assert_eq!(
        last_session(&events).state(),
        SessionState::Ready,
        "{:?}",
        messages(&events)
    );
    let kinds: Vec<_> = got.into_iter().filter_map(|c| c.command).collect();
    let [
        Command::AllowDomainUser(domain),
        Command::CreateLocalUser(local),
    ] = &kinds[..]
    else {
        panic!("the agent got {kinds:?}");
    };
    assert_eq!(
        (domain.name.as_str(), local.name.as_str()),
        ("alice", "student")
    );
    assert_eq!(read(&format!("{vm}.phases")), "base\n", "no playbook ran");
    let said = outputs(&events);
    assert!(
        said.contains("the agent let the domain user alice log in in"),
        "{said}"
    );
    assert!(
        said.contains("the agent created the local login student in"),
        "{said}"
    );

    // No session user: the domain user alone.
    let (vm, events, got) = claim_as(&server, "bob", "", Some(vec![done()])).await;
    assert_eq!(last_session(&events).state(), SessionState::Ready);
    let kinds: Vec<_> = got.into_iter().filter_map(|c| c.command).collect();
    assert!(
        matches!(&kinds[..], [Command::AllowDomainUser(d)] if d.name == "bob"),
        "{kinds:?}"
    );
    assert_eq!(read(&format!("{vm}.phases")), "base\n", "no playbook ran");

    // A desktop built without the access template: the playbook does all.
    let unsupported = (
        CommandOutcome::Unsupported,
        "daas-access.conf.in is missing".to_string(),
    );
    let (vm, events, got) = claim_as(&server, "carol", "student", Some(vec![unsupported])).await;
    assert_eq!(last_session(&events).state(), SessionState::Ready);
    assert_eq!(got.len(), 1, "nothing more asked of the agent");
    assert_eq!(read(&format!("{vm}.phases")), "base\nuser\n");
    assert!(read(&format!("{vm}.per_user")).contains("carol student"));
    assert!(
        outputs(&events).contains("cannot: daas-access.conf.in is missing"),
        "{}",
        outputs(&events)
    );

    // FAILED: the claim fails, naming the domain user.
    let failed = (CommandOutcome::Failed, "systemctl failed".to_string());
    let (_, events, _) = claim_as(&server, "dave", "", Some(vec![failed])).await;
    let last = last_session(&events);
    assert_eq!(last.state(), SessionState::Failed);
    let reason = last.failure.map(|f| f.reason).unwrap_or_default();
    assert!(
        reason.contains("could not set up dave: systemctl failed"),
        "{reason}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_makes_the_local_user_through_the_agent_or_falls_back_to_the_playbook() {
    // The test's agent opens its stream once the desktop is READY.
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "[agent]\nendpoint = \"https://10.0.2.2:50051\"\nfirst_report_wait = \"0s\"\n{}",
            pool_toml(1, "")
        ),
        ..Default::default()
    })
    .await;
    let markers = server.markers();
    let read = |name: &str| std::fs::read_to_string(markers.join(name)).unwrap_or_default();

    // DONE: no playbook runs for the claim.
    let (vm, events, got) = claim_answering(&server, Some((CommandOutcome::Done, ""))).await;
    assert_eq!(
        stages(&events),
        [
            SessionState::Queued,
            SessionState::Configuring,
            SessionState::Ready
        ],
        "{:?}",
        messages(&events)
    );
    let Some(Command::CreateLocalUser(user)) = got.and_then(|c| c.command) else {
        panic!("the agent got no CreateLocalUser");
    };
    assert_eq!(user.name, "student");
    assert!(
        user.password_hash.starts_with("$6$"),
        "a SHA-512 crypt hash"
    );
    assert!(!user.password_hash.contains("correct horse"));
    assert_eq!(read(&format!("{vm}.phases")), "base\n", "no playbook ran");
    assert!(messages(&events).join("\n").contains("through its agent"));
    assert!(
        outputs(&events).contains("the agent created the local login student"),
        "{}",
        outputs(&events)
    );
    assert_eq!(last_session(&events).username, "alice");

    // UNSUPPORTED (a template without the helper): the playbook does it.
    let (vm, events, _) = claim_answering(
        &server,
        Some((CommandOutcome::Unsupported, "no daas-agent-helper.socket")),
    )
    .await;
    assert_eq!(last_session(&events).state(), SessionState::Ready);
    assert_eq!(read(&format!("{vm}.phases")), "base\nuser\n");
    assert!(read(&format!("{vm}.per_user")).contains("alice student"));
    let said = outputs(&events);
    assert!(
        said.contains("cannot: no daas-agent-helper.socket"),
        "{said}"
    );
    assert!(said.contains("running the playbook's per-user part instead"));

    // No agent listening: after the pickup wait, the playbook.
    let (vm, events, _) = claim_answering(&server, None).await;
    assert_eq!(last_session(&events).state(), SessionState::Ready);
    assert_eq!(read(&format!("{vm}.phases")), "base\nuser\n");
    assert!(
        outputs(&events).contains("no agent of"),
        "{}",
        outputs(&events)
    );

    // FAILED: the claim fails with the agent's message.
    let (_, events, _) = claim_answering(
        &server,
        Some((CommandOutcome::Failed, "student is a system account")),
    )
    .await;
    let last = last_session(&events);
    assert_eq!(last.state(), SessionState::Failed);
    let reason = last.failure.map(|f| f.reason).unwrap_or_default();
    assert!(
        reason.contains("could not set up student: student is a system account"),
        "{reason}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_receives_only_its_own_sessions_commands() {
    let server = TestServer::start(TestOptions {
        extra_toml: "[agent]\nendpoint = \"https://10.0.2.2:50051\"\n".into(),
        ..Default::default()
    })
    .await;
    let (mine, _) = ready_session(&server, "alice").await;
    let (theirs, _) = ready_session(&server, "bob").await;
    let mut agent = agent_for(&server, &mine).await;
    let refused = agent
        .receive_commands(ReceiveCommandsRequest {
            session_id: theirs.clone(),
            agent_version: "test".into(),
        })
        .await
        .expect_err("another session's stream");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = agent
        .report_command(ReportCommandRequest {
            session_id: theirs,
            command_id: 1,
            outcome: CommandOutcome::Done.into(),
            message: String::new(),
        })
        .await
        .expect_err("another session's report");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let unknown = agent
        .report_command(ReportCommandRequest {
            session_id: mine,
            command_id: 42,
            outcome: CommandOutcome::Done.into(),
            message: String::new(),
        })
        .await
        .expect_err("a command never sent");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_agent_takes_a_claims_command_to_its_helper() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "[agent]\nendpoint = \"https://10.0.2.2:50051\"\nfirst_report_wait = \"30s\"\n{}",
            pool_toml(1, "")
        ),
        ..Default::default()
    })
    .await;
    // The pool's desktop, configured: it waits for its agent to report.
    let mut admin = server.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let spare = loop {
        let building = spares(&mut admin).await.pop();
        if let Some(spare) = building.filter(|s| s.state() == SessionState::Configuring) {
            break spare;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never configured a desktop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The helper's socket, answered by the test: the request line it got.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("helper.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let helper = tokio::spawn(async move {
        let (conn, _) = listener.accept().await.expect("the agent connects");
        let (read, mut write) = conn.into_split();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await.unwrap();
        write.write_all(b"{\"ok\":true}\n").await.unwrap();
        line
    });
    let creds = server.agent_credentials(&spare.id);
    let no_displays = dir.path().join("x11");
    std::fs::create_dir_all(&no_displays).unwrap();
    let config = daas_agent::AgentConfig {
        endpoint: server.endpoint(),
        session_id: spare.id.clone(),
        ca: creds.ca,
        cert: creds.cert,
        key: creds.key,
        tls_server_name: Some("localhost".into()),
        x11_socket_dir: no_displays,
        helper_socket: socket,
        ..daas_agent::AgentConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(daas_agent::run(config, async {
        let _ = stopped.await;
    }));
    // READY once the agent reported, not before.
    let ready = wait_pool(&mut admin, "a ready desktop", |p| p.ready == 1).await;
    assert_eq!(ready.ready, 1);
    let built = watch(&mut admin, &spare.id).await;
    assert!(
        outputs(&built).contains(&format!("the agent of {} reported after", spare.vm_name)),
        "{}",
        outputs(&built)
    );

    let mut alice = server.client_as("alice", false).await;
    let events = create(
        &mut alice,
        CreateSessionRequest {
            session_user: "student".into(),
            session_password: "correct horse".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(last_session(&events).state(), SessionState::Ready);
    assert!(
        outputs(&events).contains("the agent created the local login student"),
        "{}",
        outputs(&events)
    );
    let request = helper.await.unwrap();
    assert!(
        request.starts_with("{\"create_local_user\":{\"name\":\"student\",\"password_hash\":\"$6$"),
        "{request}"
    );
    assert!(!request.contains("correct horse"));
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    server.stop().await;
}
