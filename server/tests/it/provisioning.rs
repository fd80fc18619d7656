//! The provisioning pipeline through the real gRPC API, the real
//! `terraform` with the test module and the real `ansible-playbook`.

use std::time::Instant;

use crate::common::*;
use daas_api::v1::{
    CreateSessionRequest, DestroySessionRequest, GetSessionRequest, SessionState,
    WatchSessionRequest, session_event::Kind,
};
use daas_server::testkit::{TestOptions, TestServer};

#[tokio::test(flavor = "multi_thread")]
async fn a_create_goes_through_every_stage_in_order() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut client = server.client().await;
    let started = Instant::now();
    let events = create(&mut client, request("alice")).await;
    println!("one create with the test module: {:?}", started.elapsed());

    assert_eq!(
        stages(&events),
        [
            SessionState::Queued,
            SessionState::Provisioning,
            SessionState::Booting,
            SessionState::Configuring,
            SessionState::Ready,
        ]
    );
    assert_gap_free(&events);
    for event in &events {
        assert!(event.time.is_some() && event.stage_elapsed.is_some());
    }
    let last = events.last().unwrap();
    let session = last
        .session
        .clone()
        .expect("the final event carries the session");
    assert_eq!(session.state(), SessionState::Ready);
    assert!(session.vm_name.starts_with("desktop-") && session.vm_name.len() <= 15);
    assert_eq!(
        session.vm_id, "9001",
        "slot 1 -> vm id 9001 in the test module"
    );
    assert_eq!(
        (session.rdp_host.as_str(), session.rdp_port),
        ("127.0.0.1", 42003)
    );
    assert!(session.ready_at.is_some());

    let lines = output(&events);
    assert!(
        lines.iter().any(|l| l.contains("Apply complete!")),
        "terraform output is streamed"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("configuring {} for alice", session.vm_name))),
        "ansible output is streamed: {lines:?}"
    );
    // Tool lines come between the stage changes they belong to.
    let provisioning_lines = events.iter().filter(|e| {
        matches!(e.kind, Some(Kind::Output(_))) && state(e) == SessionState::Provisioning
    });
    assert!(provisioning_lines.count() > 0);

    let markers = server.markers();
    assert!(
        markers
            .join(format!("{}.created", session.vm_name))
            .exists()
    );
    assert!(
        markers
            .join(format!("{}.configured", session.vm_name))
            .exists()
    );
    // The identity the server made went to the module (the host key) and to
    // Ansible (xrdp's certificate), and ssh would check that key alone.
    let identity = server
        .dir()
        .join("data/sessions")
        .join(&session.id)
        .join("identity");
    let known_hosts = std::fs::read_to_string(identity.join("known_hosts")).expect("known_hosts");
    let given = std::fs::read_to_string(markers.join(format!("{}.hostkey", session.vm_name)))
        .expect("the module got the host key");
    assert_eq!(
        known_hosts,
        format!("daas-{} {}", session.vm_name, given),
        "known_hosts holds the key given to the module"
    );
    let values: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(markers.join(format!("{}.values", session.vm_name)))
            .expect("values"),
    )
    .expect("JSON");
    let cert = std::fs::read_to_string(identity.join("rdp-cert.pem")).expect("the certificate");
    assert_eq!(values["rdp_cert_pem"].as_str(), Some(cert.as_str()));
    let tfvars = std::fs::read_to_string(
        server
            .dir()
            .join("data/sessions")
            .join(&session.id)
            .join("terraform/terraform.tfvars.json"),
    )
    .expect("tfvars");
    assert!(tfvars.contains("ssh_host_private_key"));
    // No key in the events.
    let private = std::fs::read_to_string(identity.join("ssh_host_ed25519_key")).expect("key");
    let key_line = private.lines().nth(1).expect("a key line");
    assert!(lines.iter().all(|l| !l.contains(key_line)));

    let mut got = client
        .get_session(GetSessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let activity = got
        .activity
        .take()
        .expect("a READY session says why it is alive");
    // No agent configured here: only the lifetime limits the desktop.
    assert!(
        activity.reap_reason.starts_with("max_lifetime 12h"),
        "{activity:?}"
    );
    assert_eq!(got, session);
    server.stop().await;
}

/// Runs one create that must fail in `stage`, and checks that the failure
/// says `why` and that the cleanup destroyed what was made.
async fn failing_create(options: TestOptions, stage: SessionState, why: &[&str]) {
    let server = TestServer::start(options).await;
    let mut client = server.client().await;
    let events = create(&mut client, request("alice")).await;
    let expected: Vec<SessionState> = [
        SessionState::Queued,
        SessionState::Provisioning,
        SessionState::Booting,
        SessionState::Configuring,
    ]
    .into_iter()
    .take_while(|s| *s != stage)
    .chain([stage, SessionState::Failed])
    .collect();
    assert_eq!(stages(&events), expected);
    let session = events.last().unwrap().session.clone().unwrap();
    let failure = session.failure.clone().expect("a failure");
    assert_eq!(failure.stage(), stage);
    for part in why {
        assert!(failure.reason.contains(part), "{part}: {}", failure.reason);
    }
    let destroyed = server
        .markers()
        .join(format!("{}.destroyed", session.vm_name));
    assert!(destroyed.exists(), "the cleanup ran terraform destroy");
    let teardown = server
        .markers()
        .join(format!("{}.teardown", session.vm_name));
    assert_eq!(
        teardown.exists(),
        stage == SessionState::Configuring,
        "the teardown playbook runs for a VM that was being configured, and only then"
    );
    assert!(
        output(&events)
            .iter()
            .any(|l| l.contains("Destroy complete!"))
    );
    assert!(
        !server
            .dir()
            .join("data/sessions")
            .join(&session.id)
            .exists()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terraform_failure_is_cleaned_up_then_failed() {
    let options = TestOptions {
        fail_terraform: true,
        ..Default::default()
    };
    let why = ["terraform apply failed", "simulated hypervisor failure"];
    failing_create(options, SessionState::Provisioning, &why).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ansible_failure_is_cleaned_up_then_failed() {
    let options = TestOptions {
        fail_ansible: true,
        ..Default::default()
    };
    let why = ["ansible-playbook failed", "simulated configuration failure"];
    failing_create(options, SessionState::Configuring, &why).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_creates_run_at_once() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 2,
        max_parallel: 8,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let all = create_many(&server, 8).await;
    println!(
        "8 parallel creates (2 s module, limit 8): {:?}",
        started.elapsed()
    );

    let mut slots = Vec::new();
    let mut names = Vec::new();
    for events in &all {
        let session = events.last().unwrap().session.clone().unwrap();
        assert_eq!(
            session.state(),
            SessionState::Ready,
            "{:?}",
            session.failure
        );
        slots.push(session.vm_id.clone());
        names.push(session.vm_name.clone());
    }
    slots.sort();
    slots.dedup();
    names.sort();
    names.dedup();
    assert_eq!(
        (slots.len(), names.len()),
        (8, 8),
        "distinct slots and VM names"
    );
    // Every create was in PROVISIONING (a 2 s apply) before any left it: they
    // ran side by side, not one after the other.
    let last_start = all
        .iter()
        .map(|e| entered_ms(e, SessionState::Provisioning))
        .max()
        .unwrap();
    let first_end = all
        .iter()
        .map(|e| entered_ms(e, SessionState::Booting))
        .min()
        .unwrap();
    assert!(
        last_start < first_end,
        "creates were serialised: the last started provisioning {} ms after the first finished",
        last_start - first_end
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_parallel_limit_holds_creates_in_queued() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 1,
        max_parallel: 2,
        ..Default::default()
    })
    .await;
    let mut spans = Vec::new();
    for events in create_many(&server, 4).await {
        assert_eq!(stages(&events).last(), Some(&SessionState::Ready));
        spans.push((
            entered_ms(&events, SessionState::Provisioning),
            entered_ms(&events, SessionState::Ready),
        ));
    }
    for (start, _) in &spans {
        let running = spans
            .iter()
            .filter(|(s, e)| s <= start && start < e)
            .count();
        assert!(
            running <= 2,
            "{running} creates ran at once with a limit of 2"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_leaves_does_not_stop_the_create_and_watch_replays_it() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 2,
        ..Default::default()
    })
    .await;
    let mut client = server.client().await;
    let mut stream = client
        .create_session(request("alice"))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(state(&first), SessionState::Queued);
    let id = first.session_id.clone();
    drop(stream);

    let events = watch(&mut client, &id).await;
    assert_gap_free(&events);
    assert_eq!(events[0], first, "the replay starts with the first event");
    assert_eq!(
        stages(&events),
        [
            SessionState::Queued,
            SessionState::Provisioning,
            SessionState::Booting,
            SessionState::Configuring,
            SessionState::Ready,
        ]
    );
    // A watch after the end replays the same history and ends at once.
    assert_eq!(watch(&mut client, &id).await, events);
    // A client that saw the first two events asks for the rest only.
    let rest = client
        .watch_session(WatchSessionRequest {
            session_id: id.clone(),
            after_sequence: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drain(rest).await, events[2..]);
    let nothing = client
        .watch_session(WatchSessionRequest {
            session_id: id.clone(),
            after_sequence: events.len() as u64,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        drain(nothing).await.is_empty(),
        "a settled session with nothing new ends at once"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_is_idempotent_and_frees_the_slot() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut client = server.client().await;
    let events = create(&mut client, request("alice")).await;
    let session = events.last().unwrap().session.clone().unwrap();
    let destroy = DestroySessionRequest {
        session_id: session.id.clone(),
    };

    let destroyed = client
        .destroy_session(destroy.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(destroyed.state(), SessionState::Destroyed);
    assert!(
        server
            .markers()
            .join(format!("{}.destroyed", session.vm_name))
            .exists()
    );
    let teardown = server
        .markers()
        .join(format!("{}.teardown", session.vm_name));
    assert!(
        teardown.exists(),
        "the teardown playbook ran before terraform destroy"
    );
    assert!(
        !server
            .dir()
            .join("data/sessions")
            .join(&session.id)
            .exists()
    );

    let again = client.destroy_session(destroy).await.unwrap().into_inner();
    assert_eq!(again.state(), SessionState::Destroyed);
    let history = watch(&mut client, &session.id).await;
    assert_eq!(
        stages(&history)[4..],
        [
            SessionState::Ready,
            SessionState::Destroying,
            SessionState::Destroyed
        ],
        "destroying twice records one destroy"
    );

    let unknown = client
        .destroy_session(DestroySessionRequest {
            session_id: "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let next = create(&mut client, request("bob")).await;
    let next = next.last().unwrap().session.clone().unwrap();
    assert_eq!(
        next.vm_id, session.vm_id,
        "the destroyed session's slot is reused"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn destroying_a_session_mid_create_stops_it() {
    let server = TestServer::start(TestOptions {
        create_delay_secs: 30,
        ..Default::default()
    })
    .await;
    let mut client = server.client().await;
    let (stream, id) =
        create_until_output(&mut client, "alice", "(local-exec): creating desktop-").await;
    let started = Instant::now();
    let destroyed = client
        .destroy_session(DestroySessionRequest {
            session_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(destroyed.state(), SessionState::Destroyed);
    assert!(
        started.elapsed().as_secs() < 25,
        "the 30 s apply was stopped, not awaited"
    );
    // The create stream follows to the end too.
    let rest = drain(stream).await;
    assert_eq!(rest.last().map(state), Some(SessionState::Destroyed));
    assert!(!server.dir().join("data/sessions").join(&id).exists());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_password_is_never_stored_or_shown() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut client = server.client().await;
    let password = "Correct-Horse-42";
    let events = create(
        &mut client,
        CreateSessionRequest {
            username: "alice".into(),
            session_user: "student".into(),
            session_password: password.into(),
            ..Default::default()
        },
    )
    .await;
    let session = events.last().unwrap().session.clone().unwrap();
    assert_eq!(session.state(), SessionState::Ready);
    assert_eq!(session.session_user, "student");
    let configured = std::fs::read_to_string(
        server
            .markers()
            .join(format!("{}.configured", session.vm_name)),
    )
    .unwrap();
    assert!(
        configured.contains("student"),
        "the playbook got the session user"
    );
    for event in &events {
        assert!(
            !format!("{event:?}").contains(password),
            "an event shows the password"
        );
    }
    // Nowhere in the data dir: not the database, not a leftover vars file.
    for entry in walk(&server.dir().join("data")) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let found = bytes
            .windows(password.len())
            .any(|w| w == password.as_bytes());
        assert!(!found, "{} contains the password", entry.display());
    }
    server.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
