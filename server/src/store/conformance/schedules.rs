//! The schedules' part of the suite: added within a user's limit, listed
//! by user, removed, and each occurrence's run recorded once, whichever
//! connection (server) records it first.

use super::Backend;
use crate::store::{
    LimitHit, StoreError,
    outbox::Told,
    schedules::{Ran, ScheduleRecord, Which},
};

fn told(notice: &str) -> Told {
    Told {
        webhooks: vec!["ops".into(), "chat".into()],
        notice: notice.into(),
    }
}

fn schedule(id: &str, user: &str, at: &str) -> ScheduleRecord {
    ScheduleRecord {
        id: id.into(),
        username: user.into(),
        at: at.into(),
        days: "mon-fri".into(),
        timezone: "Europe/Paris".into(),
        template: "t".into(),
        size: "medium".into(),
        org: Some("physics".into()),
        created_ms: 1,
        ..ScheduleRecord::default()
    }
}

pub(super) async fn schedules_are_kept_and_each_run_recorded_once(db: &impl Backend) {
    let (one, two) = (db.open().await, db.open().await);
    one.add_schedule(schedule("s1", "alice", "09:00"), 2)
        .await
        .unwrap();
    two.add_schedule(schedule("s2", "alice", "08:00"), 2)
        .await
        .unwrap();
    one.add_schedule(schedule("s3", "bob", "07:00"), 2)
        .await
        .unwrap();
    let err = one
        .add_schedule(schedule("s4", "alice", "10:00"), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LimitReached(LimitHit::Schedules(ref u, 2)) if u == "alice"),
        "{err}"
    );
    let alices = two.schedules(Which::of_user("alice")).await.unwrap();
    assert_eq!(
        alices.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["s2", "s1"],
        "by time of day"
    );
    assert_eq!(alices[0], schedule("s2", "alice", "08:00"));
    assert_eq!(one.schedules(Which::all()).await.unwrap().len(), 3);
    assert_eq!(
        one.schedules(Which::id("s3")).await.unwrap(),
        [schedule("s3", "bob", "07:00")]
    );
    assert_eq!(one.schedules(Which::id("s9")).await.unwrap(), []);
    assert_eq!(
        one.schedules(Which::of_org("physics")).await.unwrap().len(),
        3
    );
    assert_eq!(one.schedules(Which::of_org("chemistry")).await.unwrap(), []);

    // Two servers acting on the same occurrence: one records it.
    assert!(
        one.schedule_ran("s1", 1000, 990, Ran::Created("session-a".into()))
            .await
            .unwrap()
    );
    assert!(
        !two.schedule_ran("s1", 1000, 995, Ran::Refused("late".into(), told("late")))
            .await
            .unwrap()
    );
    let s1 = |all: Vec<ScheduleRecord>| all.into_iter().find(|s| s.id == "s1").unwrap();
    let ran = s1(two.schedules(Which::all()).await.unwrap());
    assert_eq!(
        (
            ran.last_due_ms,
            ran.last_run_ms,
            ran.last_session_id.as_str(),
            ran.last_error.as_str()
        ),
        (Some(1000), Some(990), "session-a", "")
    );
    // The next occurrence, refused.
    assert!(
        two.schedule_ran(
            "s1",
            2000,
            1990,
            Ran::Refused("over quota".into(), told("{\"why\": 1}"))
        )
        .await
        .unwrap()
    );
    // Its webhooks' deliveries were written with it (the lost race's
    // were not): no session, the notice whole.
    let mut due = one.claim_deliveries(10, 60_000).await.unwrap();
    due.sort_by(|a, b| a.webhook.cmp(&b.webhook));
    assert_eq!(
        due.iter()
            .map(|d| (
                d.webhook.as_str(),
                d.session_id.as_str(),
                d.notice.as_deref()
            ))
            .collect::<Vec<_>>(),
        [
            ("chat", "", Some("{\"why\": 1}")),
            ("ops", "", Some("{\"why\": 1}"))
        ]
    );
    for d in due {
        one.finish_delivery(&d.id).await.unwrap();
    }
    let ran = s1(one.schedules(Which::all()).await.unwrap());
    assert_eq!(
        (ran.last_session_id.as_str(), ran.last_error.as_str()),
        ("", "over quota")
    );

    let removed = one.remove_schedule("s1").await.unwrap().unwrap();
    assert_eq!(removed.id, "s1");
    assert_eq!(two.remove_schedule("s1").await.unwrap(), None);
    assert!(
        !one.schedule_ran("s1", 3000, 2990, Ran::Created("x".into()))
            .await
            .unwrap(),
        "a removed schedule records nothing"
    );
    one.add_schedule(schedule("s4", "alice", "10:00"), 2)
        .await
        .unwrap();
}
