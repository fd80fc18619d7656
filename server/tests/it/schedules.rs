//! Users' schedules through the API, on a server whose schedules read a
//! manual clock: a desktop is created a lead ahead of its time (not
//! earlier), once per occurrence, as an ordinary session of its user within
//! their limits; a refusal is kept on the schedule and in the audit trail;
//! removing a schedule ends it. Time zones are explicit (Europe/Paris).

use std::time::{Duration, Instant};

use daas_api::v1::{
    AddScheduleRequest, DestroySessionRequest, ListAuditRequest, ListSchedulesRequest,
    ListSessionsRequest, RemoveScheduleRequest, Schedule, Session, SessionState,
    session_event::Kind,
};
use daas_server::{
    domain::time::ManualClock,
    testkit::{TestOptions, TestServer},
};
use tonic::Code;

use crate::common::*;

/// An instant, e.g. "2026-12-07T06:51:00Z", in ms.
fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>()
        .expect("an RFC 3339 instant")
        .as_millisecond()
}

fn weekdays_at_eight() -> AddScheduleRequest {
    AddScheduleRequest {
        at: "08:00".into(),
        days: "mon-fri".into(),
        timezone: "Europe/Paris".into(),
        ..Default::default()
    }
}

async fn sessions_of(client: &mut Client) -> Vec<Session> {
    client
        .list_sessions(ListSessionsRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sessions
}

/// Waits (a few seconds at most) until alice has `count` sessions.
async fn until_sessions(client: &mut Client, count: usize) -> Vec<Session> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sessions = sessions_of(client).await;
        if sessions.len() >= count || Instant::now() > deadline {
            return sessions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn schedule_of(client: &mut Client) -> Schedule {
    let mut all = client
        .list_schedules(ListSchedulesRequest::default())
        .await
        .expect("list schedules")
        .into_inner()
        .schedules;
    assert_eq!(all.len(), 1);
    all.remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_makes_its_desktop_ahead_once_a_day_within_the_limits() {
    // Monday 2026-12-07, 07:45 in Paris (06:45 UTC).
    let clock = ManualClock::at(at("2026-12-07T06:45:00Z"));
    let server = TestServer::start(TestOptions {
        clock: Some(clock.clone()),
        max_sessions_per_user: 1,
        extra_toml: "[schedules]\nlead = \"10m\"\ninterval = \"100ms\"\n".into(),
        ..TestOptions::default()
    })
    .await;
    let mut alice = server.client_as("alice", false).await;
    let added = alice
        .add_schedule(weekdays_at_eight())
        .await
        .expect("add")
        .into_inner();
    assert_eq!(
        (
            added.at.as_str(),
            added.timezone.as_str(),
            added.username.as_str()
        ),
        ("08:00", "Europe/Paris", "alice")
    );
    assert_eq!(added.template, "debian-12-xfce");
    assert_eq!(
        added.next_at.map(|t| t.seconds * 1000),
        Some(at("2026-12-07T07:00:00Z")),
        "08:00 in Paris is 07:00 UTC in winter"
    );
    for (bad, field) in [
        (
            AddScheduleRequest {
                at: "25:00".into(),
                ..weekdays_at_eight()
            },
            "at",
        ),
        (
            AddScheduleRequest {
                days: "fri-mon".into(),
                ..weekdays_at_eight()
            },
            "days",
        ),
        (
            AddScheduleRequest {
                timezone: "Mars/Olympus".into(),
                ..weekdays_at_eight()
            },
            "timezone",
        ),
    ] {
        let status = alice.add_schedule(bad).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{status:?}");
    }

    // 15 minutes ahead: nothing yet.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sessions_of(&mut alice).await.is_empty(), "too early");

    // 9 minutes ahead: the desktop is made, once.
    clock.set(at("2026-12-07T06:51:00Z"));
    let made = until_sessions(&mut alice, 1).await;
    assert_eq!(made.len(), 1, "a desktop for Monday");
    let events = watch(&mut alice, &made[0].id).await;
    assert_eq!(events.last().map(state), Some(SessionState::Ready));
    let first = match &events[0].kind {
        Some(Kind::StageChange(change)) => change.message.clone(),
        other => panic!("not a stage change: {other:?}"),
    };
    assert!(
        first.contains(&format!(
            "for schedule {} (08:00 mon-fri Europe/Paris): due READY at 07:00 UTC",
            added.id
        )),
        "{first}"
    );
    let schedule = schedule_of(&mut alice).await;
    assert_eq!(schedule.last_session_id, made[0].id);
    assert_eq!(schedule.last_error, "");
    assert_eq!(
        schedule.next_at.map(|t| t.seconds * 1000),
        Some(at("2026-12-07T07:00:00Z"))
    );
    clock.set(at("2026-12-07T06:59:00Z"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sessions_of(&mut alice).await.len(), 1, "once a day");

    // Tuesday: alice still has Monday's, her one live desktop: refused, said
    // on the schedule and in the audit trail.
    clock.set(at("2026-12-08T06:51:00Z"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let schedule = schedule_of(&mut alice).await;
        if !schedule.last_error.is_empty() || Instant::now() > deadline {
            break schedule;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        refused
            .last_error
            .contains("alice already has 1 live desktops"),
        "{refused:?}"
    );
    let mut admin = server.client().await;
    let trail = admin
        .list_audit(ListAuditRequest {
            username: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("the trail")
        .into_inner()
        .entries;
    let runs: Vec<_> = trail
        .iter()
        .filter(|e| e.action == "scheduled create" && e.actor == "schedule")
        .map(|e| e.result.as_str())
        .collect();
    assert_eq!(runs, ["RESOURCE_EXHAUSTED", "OK"], "newest first");

    // Wednesday, Monday's desktop gone: made again.
    alice
        .destroy_session(DestroySessionRequest {
            session_id: made[0].id.clone(),
        })
        .await
        .expect("destroy");
    clock.set(at("2026-12-09T06:51:00Z"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let wednesday = loop {
        let schedule = schedule_of(&mut alice).await;
        if schedule.last_session_id != made[0].id && !schedule.last_session_id.is_empty()
            || Instant::now() > deadline
        {
            break schedule;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(wednesday.last_error, "");
    assert_ne!(wednesday.last_session_id, made[0].id);

    // Removed (by its user only): no desktop on Thursday.
    let mut bob = server.client_as("bob", false).await;
    let status = bob
        .remove_schedule(RemoveScheduleRequest {
            schedule_id: added.id.clone(),
        })
        .await
        .expect_err("not bob's");
    assert_eq!(status.code(), Code::PermissionDenied);
    alice
        .remove_schedule(RemoveScheduleRequest {
            schedule_id: added.id.clone(),
        })
        .await
        .expect("remove");
    let status = alice
        .remove_schedule(RemoveScheduleRequest {
            schedule_id: added.id.clone(),
        })
        .await
        .expect_err("gone");
    assert_eq!(status.code(), Code::NotFound);
    let before = sessions_of(&mut alice).await.len();
    clock.set(at("2026-12-10T06:51:00Z"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sessions_of(&mut alice).await.len(), before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_has_at_most_ten_schedules_and_the_same_one_once() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut alice = server.client_as("alice", false).await;
    let at_half_past = |hour: u32| AddScheduleRequest {
        at: format!("{hour:02}:30"),
        ..weekdays_at_eight()
    };
    let mut ids = Vec::new();
    for hour in 0..10 {
        let added = alice
            .add_schedule(at_half_past(hour))
            .await
            .expect("one of ten");
        ids.push(added.into_inner().id);
    }
    // The same one again (a retry after a lost answer): the one there.
    let again = alice
        .add_schedule(at_half_past(9))
        .await
        .expect("the same schedule")
        .into_inner();
    assert_eq!(again.id, ids[9]);
    let status = alice
        .add_schedule(weekdays_at_eight())
        .await
        .expect_err("the eleventh");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("alice already has 10 schedules"),
        "{status:?}"
    );
    // Without a zone: the server's, named.
    let mut bob = server.client_as("bob", false).await;
    let bobs = bob
        .add_schedule(AddScheduleRequest {
            timezone: String::new(),
            ..weekdays_at_eight()
        })
        .await
        .expect("the server's zone")
        .into_inner();
    assert!(!bobs.timezone.is_empty());
    let all = server
        .client()
        .await
        .list_schedules(ListSchedulesRequest::default())
        .await
        .expect("an administrator lists everyone's")
        .into_inner()
        .schedules;
    assert_eq!(all.len(), 11);
    server.stop().await;
}
