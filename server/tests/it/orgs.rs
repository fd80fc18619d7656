//! Organisations (`[orgs.NAME]`) through the API: quotas refused with
//! RESOURCE_EXHAUSTED naming the quota and the use, exact under 50
//! concurrent creates; organisation administrators who see and act on
//! their organisation only; `GetQuota`; the audit trail by organisation.
//! Groups come from the client certificate (`pki issue --group`).

use daas_api::v1::{
    CreateSessionRequest, DestroySessionRequest, GetQuotaRequest, GetSessionRequest,
    ListAuditRequest, ListSessionsRequest, SessionState,
};
use daas_server::testkit::{TestOptions, TestServer};
use tonic::Code;

use crate::common::*;

async fn server() -> TestServer {
    TestServer::start(TestOptions {
        extra_toml: format!("[http]\nmetrics_listen = \"127.0.0.1:0\"\n{CATALOG}\n{ORGS}"),
        ..TestOptions::default()
    })
    .await
}

fn in_org(user: &str, org: &str) -> CreateSessionRequest {
    CreateSessionRequest {
        org: org.into(),
        ..request(user)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_creates_never_pass_the_quotas() {
    let server = server().await;
    // 50 creates at once from 5 members of physics: 7 desktops in all, 3 a
    // member.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let user = format!("member{}", i % 5);
        let mut client = server.client_in_groups(&user, &["physics"]).await;
        tasks.push(tokio::spawn(async move {
            match client.create_session(request(&user)).await {
                Ok(stream) => Ok((user, settled(&drain(stream.into_inner()).await))),
                Err(status) => Err(status),
            }
        }));
    }
    let (mut made, mut refused) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.expect("a create task") {
            Ok((user, session)) => made.push((user, session)),
            Err(status) => refused.push(status),
        }
    }
    assert_eq!(made.len(), 7, "physics has 7 desktops, no more");
    for (_, session) in &made {
        assert_eq!(session.org, "physics");
        assert_eq!(
            session.state(),
            SessionState::Ready,
            "{:?}",
            session.failure
        );
    }
    for i in 0..5 {
        let user = format!("member{i}");
        assert!(made.iter().filter(|(u, _)| *u == user).count() <= 3);
    }
    assert_eq!(refused.len(), 43);
    for status in &refused {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let message = status.message();
        assert!(
            message.contains("organisation 'physics'")
                && (message.contains("7 of 7 desktops live (orgs.physics.quota.desktops)")
                    || message.contains("3 of 3 desktops live (orgs.physics.user_quota.desktops)")),
            "{message}"
        );
    }
    // The quota as a member sees it.
    let mut member = server.client_in_groups("member0", &["physics"]).await;
    let quota = member
        .get_quota(GetQuotaRequest::default())
        .await
        .expect("my quota")
        .into_inner();
    assert_eq!(
        (quota.org.as_str(), quota.org_title.as_str()),
        ("physics", "Physics department")
    );
    let (max, used) = (quota.org_max.unwrap(), quota.org_used.unwrap());
    assert_eq!((max.desktops, used.desktops), (7, 7));
    assert_eq!(used.cores, 14, "7 medium desktops of 2 cores");
    assert_eq!(quota.username, "member0");
    assert_eq!(quota.user_max.unwrap().desktops, 3);
    let mine = made.iter().filter(|(u, _)| u == "member0").count() as u32;
    assert_eq!(quota.user_used.unwrap().desktops, mine);
    // The metrics by organisation: what it holds, its quota, the refusals.
    let metrics = format!("{}/metrics", server.metrics_endpoint().expect("metrics"));
    let (_, code, scrape) = curl(&metrics, None).await;
    assert_eq!(code, 200, "{scrape}");
    for line in [
        "daas_org_usage{org=\"physics\",resource=\"desktops\"} 7",
        "daas_org_usage{org=\"physics\",resource=\"cores\"} 14",
        "daas_org_usage{org=\"maths\",resource=\"desktops\"} 0",
        "daas_org_quota{org=\"physics\",resource=\"desktops\"} 7",
        "daas_org_quota{org=\"maths\",resource=\"cores\"} 4",
    ] {
        assert!(scrape.contains(line), "no {line} in\n{scrape}");
    }
    let refusals: u64 = scrape
        .lines()
        .filter(|l| l.starts_with("daas_quota_refusals_total{org=\"physics\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(refusals, 43, "{scrape}");
    // The refusals are in the trail, by organisation.
    let mut admin = server.client().await;
    let trail = admin
        .list_audit(ListAuditRequest {
            org: "physics".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("the trail")
        .into_inner()
        .entries;
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "create" && e.result == "RESOURCE_EXHAUSTED")
            .count(),
        43
    );
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.action == "create" && e.result == "OK")
            .count(),
        7
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn organisation_administrators_act_on_their_organisation_only() {
    let server = server().await;
    let mut alice = server.client_in_groups("alice", &["physics"]).await;
    let mut carol = server.client_in_groups("carol", &["maths"]).await;
    let mut boss = server.client_in_groups("boss", &["physics-admins"]).await;
    let alices = ready(&create(&mut alice, request("alice")).await);
    let carols = ready(&create(&mut carol, request("carol")).await);
    assert_eq!(
        (alices.org.as_str(), carols.org.as_str()),
        ("physics", "maths")
    );

    // The administrator of physics sees alice's desktop, not carol's.
    let got = boss
        .get_session(GetSessionRequest {
            session_id: alices.id.clone(),
        })
        .await
        .expect("physics' administrator sees alice's desktop");
    assert_eq!(got.into_inner().username, "alice");
    let status = boss
        .get_session(GetSessionRequest {
            session_id: carols.id.clone(),
        })
        .await
        .expect_err("not maths' desktops");
    assert_eq!(status.code(), Code::PermissionDenied);
    let listed = boss
        .list_sessions(ListSessionsRequest {
            org: "physics".into(),
            ..Default::default()
        })
        .await
        .expect("physics' desktops")
        .into_inner()
        .sessions;
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [alices.id.as_str()]
    );
    for org in ["maths", ""] {
        let status = boss
            .list_sessions(ListSessionsRequest {
                org: org.into(),
                username: "carol".into(),
                ..Default::default()
            })
            .await
            .expect_err("not maths' desktops, nor everyone's");
        assert_eq!(status.code(), Code::PermissionDenied, "{org}");
    }
    // Its audit trail, and no one else's.
    let trail = boss
        .list_audit(ListAuditRequest {
            org: "physics".into(),
            ..Default::default()
        })
        .await
        .expect("physics' trail")
        .into_inner()
        .entries;
    assert!(trail.iter().all(|e| e.org == "physics"));
    assert!(trail.iter().any(|e| e.session_id == alices.id));
    let status = boss
        .list_audit(ListAuditRequest::default())
        .await
        .expect_err("the whole trail is the administrators'");
    assert_eq!(status.code(), Code::PermissionDenied);
    // The organisation's quota, and a member's share.
    let quota = boss
        .get_quota(GetQuotaRequest {
            org: "physics".into(),
            ..Default::default()
        })
        .await
        .expect("physics' quota")
        .into_inner();
    assert_eq!(quota.org_used.unwrap().desktops, 1);
    assert_eq!((quota.username.as_str(), quota.user_used), ("", None));
    assert_eq!(quota.administers, ["physics"]);
    let share = boss
        .get_quota(GetQuotaRequest {
            org: "physics".into(),
            username: "alice".into(),
        })
        .await
        .expect("alice's share")
        .into_inner();
    assert_eq!(share.user_used.unwrap().desktops, 1);
    let status = boss
        .get_quota(GetQuotaRequest {
            org: "maths".into(),
            ..Default::default()
        })
        .await
        .expect_err("not maths'");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = alice
        .get_quota(GetQuotaRequest {
            org: "physics".into(),
            username: "member0".into(),
        })
        .await
        .expect_err("a member sees their own share only");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = alice
        .get_quota(GetQuotaRequest {
            org: "chemistry".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such organisation");
    assert_eq!(status.code(), Code::NotFound);
    // It destroys alice's desktop; carol's stays hers.
    boss.destroy_session(DestroySessionRequest {
        session_id: alices.id.clone(),
    })
    .await
    .expect("physics' administrator destroys alice's desktop");
    let status = boss
        .destroy_session(DestroySessionRequest {
            session_id: carols.id.clone(),
        })
        .await
        .expect_err("not carol's");
    assert_eq!(status.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_of_several_names_one_and_resources_count() {
    let server = server().await;
    let mut both = server.client_in_groups("erin", &["physics", "maths"]).await;
    let status = both
        .create_session(request("erin"))
        .await
        .expect_err("which organisation?");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("you are in several organisations (maths, physics)"),
        "{status:?}"
    );
    let status = both
        .create_session(in_org("erin", "chemistry"))
        .await
        .expect_err("no such organisation");
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut alice = server.client_in_groups("alice", &["physics"]).await;
    let status = alice
        .create_session(in_org("alice", "maths"))
        .await
        .expect_err("not alice's organisation");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("you are not a member of organisation 'maths'; yours: physics"),
        "{status:?}"
    );
    // maths has 4 vCPUs: two medium desktops (2 each), then no more.
    for _ in 0..2 {
        let session = ready(&create(&mut both, in_org("erin", "maths")).await);
        assert_eq!(session.org, "maths");
    }
    let status = both
        .create_session(in_org("erin", "maths"))
        .await
        .expect_err("maths is full");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains(
            "organisation 'maths' is at its quota: 4 of 4 vCPUs in use, the desktop needs 2 \
             (orgs.maths.quota.cores)"
        ),
        "{status:?}"
    );
    // A small desktop does not fit either; physics still has room.
    let small = CreateSessionRequest {
        size: "small".into(),
        ..in_org("erin", "maths")
    };
    assert_eq!(
        both.create_session(small).await.expect_err("full").code(),
        Code::ResourceExhausted
    );
    let session = ready(&create(&mut both, in_org("erin", "physics")).await);
    assert_eq!(session.org, "physics");
    // A user in no organisation: the server's per-user limit.
    let mut nobody = server.client_as("nobody", false).await;
    let quota = nobody
        .get_quota(GetQuotaRequest::default())
        .await
        .expect("the per-user limit")
        .into_inner();
    assert_eq!(quota.org, "");
    assert_eq!(quota.org_max, None);
    assert_eq!(quota.user_max.unwrap().desktops, 100);
    server.stop().await;
}
