//! Warm pools against a real server and the test module: a claim takes a
//! ready desktop and runs only the per-user part, concurrent claims never
//! share a desktop, a failing pool is restrained and recovers, a restart
//! keeps ready desktops, and pool desktops count against `max_sessions`.

use std::time::{Duration, Instant};

use crate::common::*;
use daas_api::v1::{
    CreateSessionRequest, DestroySessionRequest, GetPoolRequest, ListPoolsRequest,
    ListSessionsRequest, Pool, Session, SessionState, WatchSessionRequest, session_event::Kind,
};
use daas_server::testkit::{TestOptions, TestServer, write_config};
use tonic::Code;

/// A pool `lab` of the default template.
pub(crate) fn pool_toml(size: u32, extra: &str) -> String {
    format!("[pools.lab]\nsize = {size}\nmax_building = {size}\n{extra}\n")
}

async fn pool(client: &mut Client) -> Pool {
    client
        .get_pool(GetPoolRequest { name: "lab".into() })
        .await
        .expect("get the pool")
        .into_inner()
}

/// Polls the pool until `done` holds (at most 180 s: a loaded machine).
pub(crate) async fn wait_pool(
    client: &mut Client,
    what: &str,
    done: impl Fn(&Pool) -> bool,
) -> Pool {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let now = pool(client).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "pool never got {what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn last_session(events: &[daas_api::v1::SessionEvent]) -> Session {
    events
        .last()
        .and_then(|e| e.session.clone())
        .expect("the stream ends with the session")
}

pub(crate) fn messages(events: &[daas_api::v1::SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::StageChange(c)) => Some(c.message.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) async fn spares(client: &mut Client) -> Vec<Session> {
    let all = client
        .list_sessions(ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sessions;
    all.into_iter()
        .filter(|s| s.username.is_empty() && s.pool == "lab")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_takes_a_ready_desktop_runs_only_the_per_user_part_and_the_pool_refills() {
    let server = TestServer::start(TestOptions {
        extra_toml: pool_toml(1, "[http]\nmetrics_listen = \"127.0.0.1:0\""),
        ..Default::default()
    })
    .await;
    let mut admin = server.client().await;
    wait_pool(&mut admin, "a ready desktop", |p| p.ready == 1).await;
    let spare = spares(&mut admin)
        .await
        .pop()
        .expect("an unclaimed desktop");
    assert_eq!(spare.state(), SessionState::Ready);
    let markers = server.markers();
    let read = |name: &str| std::fs::read_to_string(markers.join(name)).unwrap_or_default();
    assert_eq!(read(&format!("{}.phases", spare.vm_name)), "base\n");
    assert!(
        read(&format!("{}.configured", spare.vm_name)).contains(&spare.id),
        "the build ran the playbook's user-independent part"
    );

    // Users never see unclaimed desktops.
    let mut alice = server.client_as("alice", false).await;
    let mine = alice
        .list_sessions(ListSessionsRequest::default())
        .await
        .expect("list as alice")
        .into_inner()
        .sessions;
    assert!(mine.is_empty(), "{mine:?}");

    let events = create(
        &mut alice,
        CreateSessionRequest {
            session_user: "student".into(),
            session_password: "correct horse".into(),
            ..Default::default()
        },
    )
    .await;
    assert_gap_free(&events);
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
    let session = last_session(&events);
    assert_eq!(session.id, spare.id, "the claimed desktop is the pool's");
    assert_eq!(session.vm_name, spare.vm_name);
    assert_eq!(session.username, "alice");
    assert_eq!(session.pool, "lab");
    let said = messages(&events).join("\n");
    assert!(said.contains("from pool 'lab'"), "{said}");
    assert!(said.contains("warm desktop of pool 'lab', ready"), "{said}");
    // Only the per-user part ran, with the user's variables.
    assert_eq!(read(&format!("{}.phases", spare.vm_name)), "base\nuser\n");
    let per_user = read(&format!("{}.per_user", spare.vm_name));
    assert!(per_user.contains("alice student"), "{per_user}");
    assert!(
        !markers
            .join(format!("{}.destroyed", spare.vm_name))
            .exists(),
        "the claim did not replace the VM"
    );

    // The pool builds a new one; the claimed one is never returned to it.
    let refilled = wait_pool(&mut admin, "a new ready desktop", |p| p.ready == 1).await;
    assert_eq!(refilled.claimed_today, 1);
    let new_spare = spares(&mut admin)
        .await
        .pop()
        .expect("a new unclaimed desktop");
    assert_ne!(new_spare.vm_name, spare.vm_name);
    // The metrics tell pool builds from claims.
    let metrics = server
        .metrics_endpoint()
        .expect("http.metrics_listen is on");
    let (_, _, body) = curl(&format!("{metrics}/metrics"), None).await;
    let t = "template=\"debian-12-xfce\"";
    for line in [
        format!("daas_creates_total{{{t},origin=\"pool\",result=\"ready\"}} 2"),
        format!("daas_creates_total{{{t},origin=\"claim\",result=\"ready\"}} 1"),
        format!("daas_time_to_ready_seconds_count{{{t},origin=\"claim\"}} 1"),
    ] {
        assert!(body.contains(&line), "no {line:?} in {body}");
    }
    let gone = alice
        .destroy_session(DestroySessionRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("destroy")
        .into_inner();
    assert_eq!(gone.state(), SessionState::Destroyed);
    assert!(
        markers
            .join(format!("{}.destroyed", spare.vm_name))
            .exists()
    );
    let after = pool(&mut admin).await;
    assert_eq!((after.ready, after.claimed_today), (1, 1));

    // A claim without a session user or a domain has nothing per-user to run.
    let events = create(&mut alice, CreateSessionRequest::default()).await;
    assert_eq!(last_session(&events).vm_name, new_spare.vm_name);
    assert_eq!(read(&format!("{}.phases", new_spare.vm_name)), "base\n");
    assert!(
        messages(&events)
            .join("\n")
            .contains("nothing per-user to do")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_creates_against_five_ready_give_five_claims_and_fifteen_builds() {
    let server = TestServer::start(TestOptions {
        extra_toml: pool_toml(5, ""),
        ..Default::default()
    })
    .await;
    let mut admin = server.client().await;
    wait_pool(&mut admin, "five ready desktops", |p| p.ready == 5).await;
    let all = create_many(&server, 20).await;
    let mut claimed = Vec::new();
    for events in &all {
        let session = last_session(events);
        assert_eq!(
            session.state(),
            SessionState::Ready,
            "{:?}",
            messages(events)
        );
        if session.pool.is_empty() {
            assert!(stages(events).contains(&SessionState::Provisioning));
        } else {
            claimed.push(session.vm_name);
        }
    }
    claimed.sort();
    claimed.dedup();
    assert_eq!(
        claimed.len(),
        5,
        "five distinct desktops claimed, none twice"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_desktops_count_against_max_sessions_and_pools_are_for_admins() {
    let server = TestServer::start(TestOptions {
        max_sessions: 3,
        extra_toml: pool_toml(5, ""),
        ..Default::default()
    })
    .await;
    let mut admin = server.client().await;
    wait_pool(&mut admin, "three ready desktops", |p| p.ready == 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = pool(&mut admin).await;
    assert_eq!((now.ready, now.provisioning, now.desired), (3, 0, 5));

    // Full: a cold create is refused, a claim is not (its desktop counts already).
    let mut alice = server.client_as("alice", false).await;
    let refused = alice
        .create_session(CreateSessionRequest {
            template: "another-template".into(),
            ..Default::default()
        })
        .await
        .expect_err("the server is full");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let events = create(&mut alice, CreateSessionRequest::default()).await;
    assert_eq!(last_session(&events).pool, "lab");

    let denied = alice
        .list_pools(ListPoolsRequest {})
        .await
        .expect_err("only admins");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let unknown = admin
        .get_pool(GetPoolRequest {
            name: "nope".into(),
        })
        .await
        .expect_err("no such pool");
    assert_eq!(unknown.code(), Code::NotFound);
    let listed = admin
        .list_pools(ListPoolsRequest {})
        .await
        .expect("list pools")
        .into_inner()
        .pools;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "lab");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unclaimed_desktop_older_than_max_age_is_replaced() {
    let server = TestServer::start(TestOptions {
        extra_toml: pool_toml(1, "max_age = \"4s\""),
        ..Default::default()
    })
    .await;
    let mut admin = server.client().await;
    wait_pool(&mut admin, "a ready desktop", |p| p.ready == 1).await;
    let first = spares(&mut admin).await.pop().expect("a desktop");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = spares(&mut admin).await;
        if now
            .iter()
            .any(|s| s.vm_name != first.vm_name && s.state() == SessionState::Ready)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old desktop was never replaced"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let events = admin
        .watch_session(WatchSessionRequest {
            session_id: first.id.clone(),
            after_sequence: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let events = drain(events).await;
    assert_eq!(last_session(&events).state(), SessionState::Destroyed);
    assert!(messages(&events).join("\n").contains("max_age"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pool_is_restrained_survives_a_restart_and_recovers_after_the_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &TestOptions {
            fail_terraform: true,
            extra_toml: pool_toml(
                1,
                "failure_limit = 2\nfailure_window = \"10m\"\nbackoff = \"12s\"",
            ),
            ..Default::default()
        },
    );
    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut admin = connect(&endpoint, dir.path()).await;
    let restrained = wait_pool(&mut admin, "restrained", |p| p.restrained_until.is_some()).await;
    assert_eq!(restrained.failures, 2);
    assert!(
        restrained
            .last_failure
            .contains("simulated hypervisor failure"),
        "{}",
        restrained.last_failure
    );
    // Said in the last failed desktop's events too.
    let failed = admin
        .list_sessions(ListSessionsRequest {
            state: SessionState::Failed as i32,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .sessions;
    assert_eq!(failed.len(), 2, "no third build while restrained");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let said = output(&watch(&mut admin, &failed[0].id).await).join("\n");
        if said.contains("pool 'lab' builds nothing until") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restraint was never said: {said}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Restarted with a working module: still restrained (the store says
    // so), then it builds again.
    server.kill().await.expect("stop the server");
    let (mut server, endpoint) = start_server(
        &config,
        &[("DAAS_TERRAFORM__VARIABLES__FAIL_CREATE", "false")],
    )
    .await;
    let mut admin = connect(&endpoint, dir.path()).await;
    let still = pool(&mut admin).await;
    assert!(still.restrained_until.is_some(), "{still:?}");
    assert_eq!(still.provisioning, 0);
    let recovered = wait_pool(&mut admin, "recovered", |p| p.ready == 1).await;
    assert!(recovered.restrained_until.is_none());
    server.kill().await.expect("stop the server");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_ready_desktops_and_cleans_up_half_made_ones() {
    let dir = tempfile::tempdir().unwrap();
    let options = |size| TestOptions {
        create_delay_secs: 3,
        extra_toml: pool_toml(size, ""),
        ..Default::default()
    };
    let config = write_config(dir.path(), &options(1));
    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut admin = connect(&endpoint, dir.path()).await;
    wait_pool(&mut admin, "a ready desktop", |p| p.ready == 1).await;
    let kept = spares(&mut admin).await.pop().expect("a ready desktop");
    server.kill().await.expect("stop the server");

    // A bigger pool; killed while it builds the second desktop.
    let config = write_config(dir.path(), &options(2));
    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut admin = connect(&endpoint, dir.path()).await;
    wait_pool(&mut admin, "a build under way", |p| p.provisioning == 1).await;
    server.kill().await.expect("kill the server");

    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut admin = connect(&endpoint, dir.path()).await;
    let back = wait_pool(&mut admin, "two ready desktops", |p| p.ready == 2).await;
    assert_eq!(back.failures, 0, "a restart is not a failed build");
    let now = spares(&mut admin).await;
    let ready: Vec<_> = now
        .iter()
        .filter(|s| s.state() == SessionState::Ready)
        .collect();
    assert!(
        ready.iter().any(|s| s.id == kept.id),
        "the ready desktop was kept"
    );
    let half_made: Vec<_> = now
        .iter()
        .filter(|s| s.state() == SessionState::Failed)
        .collect();
    assert_eq!(half_made.len(), 1, "{now:?}");
    let reason = half_made[0].failure.clone().expect("a failure").reason;
    assert!(reason.contains("server restarted"), "{reason}");
    assert!(
        dir.path()
            .join("markers")
            .join(format!("{}.destroyed", half_made[0].vm_name))
            .exists()
            || !dir
                .path()
                .join("markers")
                .join(format!("{}.created", half_made[0].vm_name))
                .exists(),
        "the half-made desktop left nothing behind"
    );
    server.kill().await.expect("stop the server");

    // The pool now builds another template: its desktops of the old one
    // are replaced.
    let config = write_config(
        dir.path(),
        &TestOptions {
            create_delay_secs: 3,
            extra_toml: pool_toml(2, "template = \"debian-12-lab\""),
            ..Default::default()
        },
    );
    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut admin = connect(&endpoint, dir.path()).await;
    wait_pool(&mut admin, "two desktops of the new template", |p| {
        p.ready == 2
    })
    .await;
    let ready: Vec<_> = spares(&mut admin)
        .await
        .into_iter()
        .filter(|s| s.state() == SessionState::Ready)
        .collect();
    assert!(
        ready.iter().all(|s| s.template == "debian-12-lab"),
        "{ready:?}"
    );
    assert_eq!(pool(&mut admin).await.template, "debian-12-lab");
    server.kill().await.expect("stop the server");

    // Without the pool in the config, its ready desktops are destroyed.
    let config = write_config(
        dir.path(),
        &TestOptions {
            create_delay_secs: 3,
            ..Default::default()
        },
    );
    let (mut server, endpoint) = start_server(&config, &[]).await;
    let mut admin = connect(&endpoint, dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: Vec<_> = spares(&mut admin)
            .await
            .into_iter()
            .filter(|s| s.state() != SessionState::Destroyed && s.state() != SessionState::Failed)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "desktops of a removed pool are left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    server.kill().await.expect("stop the server");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unclaimed_desktop_is_not_reaped_for_idleness_but_is_when_its_agent_goes_silent() {
    use daas_api::v1::ReportActivityRequest;
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "[agent]\nendpoint = \"https://10.0.2.2:50051\"\nreport_interval = \"1s\"\n\
             first_report_wait = \"0s\"\n\
             [policy]\nreaper_interval = \"200ms\"\nidle_timeout = \"2s\"\n\
             disconnected_timeout = \"2s\"\nagent_lost_timeout = \"5s\"\nwarning = \"1s\"\n\
             {}",
            pool_toml(1, "")
        ),
        ..Default::default()
    })
    .await;
    let mut admin = server.client().await;
    wait_pool(&mut admin, "a ready desktop", |p| p.ready == 1).await;
    let spare = spares(&mut admin).await.pop().expect("a desktop");
    let mut agent = agent_for(&server, &spare.id).await;
    // Idle and disconnected far beyond the policy, but reporting: kept.
    for _ in 0..12 {
        agent
            .report_activity(ReportActivityRequest {
                session_id: spare.id.clone(),
                idle_seconds: 3600,
                ..Default::default()
            })
            .await
            .expect("a report");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let now = admin
        .get_session(daas_api::v1::GetSessionRequest {
            session_id: spare.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(now.state(), SessionState::Ready, "reaped for idleness");
    let why = now.activity.expect("why alive").reap_reason;
    assert!(why.contains("unclaimed in warm pool 'lab'"), "{why}");
    // Silent: reaped, and the pool builds another.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = admin
            .get_session(daas_api::v1::GetSessionRequest {
                session_id: spare.id.clone(),
            })
            .await
            .expect("get")
            .into_inner()
            .state();
        if state == SessionState::Destroyed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a silent desktop was not reaped: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let events = drain(
        admin
            .watch_session(WatchSessionRequest {
                session_id: spare.id.clone(),
                after_sequence: 0,
            })
            .await
            .expect("watch")
            .into_inner(),
    )
    .await;
    let last = last_session(&events);
    assert_eq!(last.state(), SessionState::Destroyed);
    assert!(messages(&events).join("\n").contains("agent_lost_timeout"));
    wait_pool(&mut admin, "a new desktop", |p| p.ready == 1).await;
    server.stop().await;
}
