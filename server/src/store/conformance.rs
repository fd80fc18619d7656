//! What every store backend must do, one suite run against each: limits
//! and slots under concurrent writers (several servers on one database),
//! the compare-and-set moves, events and activity surviving a reopening,
//! paging, request keys and retention. A backend joins by implementing
//! [`Backend`] and invoking [`conformance!`] in a module of its name.

use daas_api::v1::{
    OutputLine, OutputStream, SessionEvent, SessionState, Tool, session_event::Kind,
};

mod nodes;
mod quotas;
mod schedules;
mod snapshots;

use crate::domain::time::now_ms;
use crate::store::{
    AgentReport, LimitHit, NewSession, PageCursor, SessionLimits, SessionRecord, Store, StoreError,
    TerraformFiles, audit_records::AuditRecord,
};

impl Store {
    /// Moves a session through `states`, one allowed move at a time.
    async fn walk(&self, id: &str, states: &[SessionState]) {
        for &to in states {
            let from = self.get(id).await.unwrap().unwrap().state;
            self.transition(id, from, to, to.label().into(), None)
                .await
                .unwrap();
        }
    }

    async fn create_session_unlimited(
        &self,
        new: NewSession,
    ) -> Result<(SessionRecord, SessionEvent), StoreError> {
        self.create_session(new, UNLIMITED).await
    }
}

const UNLIMITED: SessionLimits = SessionLimits {
    max_sessions: usize::MAX,
    max_per_user: usize::MAX,
    org: None,
};

async fn creates_stop_at_the_session_limits(db: &impl Backend) {
    let store = db.open().await;
    let limits = SessionLimits {
        max_sessions: 3,
        max_per_user: 2,
        org: None,
    };
    let (a1, _) = store
        .create_session(new_session("alice"), limits)
        .await
        .unwrap();
    store
        .create_session(new_session("alice"), limits)
        .await
        .unwrap();
    let err = store
        .create_session(new_session("alice"), limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LimitReached(LimitHit::User(_, 2))),
        "{err}"
    );
    store
        .create_session(new_session("bob"), limits)
        .await
        .unwrap();
    let err = store
        .create_session(new_session("carol"), limits)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LimitReached(LimitHit::Server(3))),
        "{err}"
    );
    store
        .walk(&a1.id, &[SessionState::Destroying, SessionState::Destroyed])
        .await;
    assert!(
        store
            .create_session(new_session("carol"), limits)
            .await
            .is_ok()
    );
}

pub(super) fn new_session(user: &str) -> NewSession {
    NewSession {
        username: user.into(),
        session_user: String::new(),
        template: "t".into(),
        request_key: None,
        pool: None,
        password: Default::default(),
        placing: None,
        size: Some(medium()),
        org: None,
        note: None,
        restore_from: None,
    }
}

pub(super) fn medium() -> crate::domain::catalog::Size {
    crate::domain::catalog::Size {
        name: "medium".into(),
        cores: 2,
        memory_mb: 4096,
        disk_gb: 20,
    }
}

async fn a_session_keeps_its_size(db: &impl Backend) {
    let store = db.open().await;
    let (a, _) = store
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    let got = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(got.size, Some(medium()));
    // A session with no size (an older server's) reads back as none.
    let (b, _) = store
        .create_session_unlimited(NewSession {
            size: None,
            ..new_session("bob")
        })
        .await
        .unwrap();
    assert_eq!(store.get(&b.id).await.unwrap().unwrap().size, None);
}

async fn concurrent_claims_never_share_a_pool_desktop(db: &impl Backend) {
    use SessionState::*;
    let store = db.open().await;
    let spare = || NewSession {
        template: "t".into(),
        pool: Some("p".into()),
        ..NewSession::default()
    };
    for _ in 0..3 {
        let (record, _) = store.create_session_unlimited(spare()).await.unwrap();
        assert!(record.is_unclaimed() && record.username.is_empty());
        store
            .walk(&record.id, &[Provisioning, Booting, Configuring, Ready])
            .await;
    }
    // One still building is never handed out.
    store.create_session_unlimited(spare()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let new = NewSession {
                username: format!("user{i}"),
                session_user: "student".into(),
                ..new_session("")
            };
            store.claim(new, "p", UNLIMITED).await.unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        if let Some((record, event)) = task.await.unwrap() {
            assert_eq!(record.state, Queued);
            assert!(record.is_claimed() && record.ready_ms.is_none());
            assert_eq!(record.session_user, "student");
            assert_eq!(event.sequence, 1);
            let history = store.events_after(&record.id, 0).await.unwrap();
            assert_eq!(history, [event], "the build's history is not the user's");
            claimed.push((record.id, record.username));
        }
    }
    let owner = claimed[0].1.clone();
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), 3, "three desktops, each claimed once");
    // Another template's create finds nothing; a user at their limit
    // claims nothing.
    let other = NewSession {
        template: "other".into(),
        ..new_session("zoe")
    };
    assert!(store.claim(other, "p", UNLIMITED).await.unwrap().is_none());
    let limited = SessionLimits {
        max_sessions: usize::MAX,
        max_per_user: 1,
        org: None,
    };
    let err = store
        .claim(new_session(&owner), "p", limited)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LimitReached(_)), "{err}");
    // The pool's view: three claimed, one building.
    let rows = store.pool_sessions("p", 0).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.is_claimed()).count(), 3);
    assert_eq!(rows.iter().filter(|r| r.is_unclaimed()).count(), 1);
}

async fn sessions_get_the_lowest_free_slot_and_unique_names(db: &impl Backend) {
    let store = db.open().await;
    let (a, _) = store
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    let (b, _) = store
        .create_session_unlimited(new_session("bob"))
        .await
        .unwrap();
    assert_eq!((a.slot, b.slot), (1, 2));
    assert_ne!(a.vm_name, b.vm_name);
    assert!(a.vm_name.len() <= 15 && a.vm_name.starts_with("desktop-"));
    store
        .walk(&a.id, &[SessionState::Destroying, SessionState::Destroyed])
        .await;
    let (c, _) = store
        .create_session_unlimited(new_session("carol"))
        .await
        .unwrap();
    assert_eq!(c.slot, 1, "a destroyed session's slot is reused");
}

async fn moves_are_compare_and_set_along_the_state_machine(db: &impl Backend) {
    let store = db.open().await;
    let (s, _) = store
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    let err = store
        .transition(
            &s.id,
            SessionState::Queued,
            SessionState::Ready,
            String::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IllegalMove { .. }), "{err}");
    store
        .walk(&s.id, &[SessionState::Destroying, SessionState::Destroyed])
        .await;
    // A late writer that saw the session provisioning cannot fail it now.
    let err = store
        .transition(
            &s.id,
            SessionState::Provisioning,
            SessionState::Failed,
            String::new(),
            Some((SessionState::Provisioning, "boom".into())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                actual: SessionState::Destroyed,
                ..
            }
        ),
        "{err}"
    );
    let err = store
        .transition(
            &s.id,
            SessionState::Destroyed,
            SessionState::Failed,
            String::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IllegalMove { .. }), "{err}");
    let record = store.get(&s.id).await.unwrap().unwrap();
    assert_eq!(record.state, SessionState::Destroyed);
    assert_eq!(record.failure, None);
    assert_eq!(store.events_after(&s.id, 0).await.unwrap().len(), 3);
}

fn limits_and_slots_hold_across_concurrent_writers(db: &impl Backend) {
    // Four connections to one database (as four servers would have),
    // creating at once: no limit overshoot, no shared slot.
    let limits = SessionLimits {
        max_sessions: 30,
        max_per_user: 30,
        org: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(async {
        let mut tasks = Vec::new();
        for writer in 0..4 {
            let store = db.open().await;
            tasks.push(tokio::spawn(async move {
                let mut made = Vec::new();
                for _ in 0..10 {
                    match store.create_session(new_session("alice"), limits).await {
                        Ok((record, _)) => made.push(record.slot),
                        Err(StoreError::LimitReached(_)) => {}
                        Err(err) => panic!("writer {writer}: {err}"),
                    }
                }
                made
            }));
        }
        let mut slots = Vec::new();
        for task in tasks {
            slots.extend(task.await.unwrap());
        }
        slots
    });
    let mut slots = results;
    slots.sort_unstable();
    assert_eq!(
        slots,
        (1..=30).collect::<Vec<u32>>(),
        "30 sessions, slots 1-30 once each"
    );
}

async fn events_are_numbered_stored_and_survive_reopening(db: &impl Backend) {
    let id = {
        let store = db.open().await;
        let (s, first) = store
            .create_session_unlimited(new_session("alice"))
            .await
            .unwrap();
        let mut live = store.subscribe(&s.id);
        assert_eq!(first.sequence, 1);
        store
            .transition(
                &s.id,
                SessionState::Queued,
                SessionState::Provisioning,
                "terraform".into(),
                None,
            )
            .await
            .unwrap();
        let line = OutputLine {
            tool: Tool::Terraform as i32,
            stream: OutputStream::Stdout as i32,
            text: "Apply complete!".into(),
        };
        store.output(&s.id, line).await.unwrap();
        let failed = store
            .transition(
                &s.id,
                SessionState::Provisioning,
                SessionState::Failed,
                "failed".into(),
                Some((SessionState::Provisioning, "boom".into())),
            )
            .await
            .unwrap();
        assert_eq!(failed.sequence, 4);
        let session = failed.session.expect("final events carry the session");
        assert_eq!(session.failure.unwrap().reason, "boom");
        let mut seqs = Vec::new();
        for _ in 0..3 {
            seqs.push(live.recv().await.unwrap().sequence);
        }
        assert_eq!(
            seqs,
            [2, 3, 4],
            "published after the subscription, in order"
        );
        s.id
    };
    let store = db.open().await;
    let events = store.events_after(&id, 0).await.unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(store.events_after(&id, 2).await.unwrap().len(), 2);
    let record = store.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, SessionState::Failed);
    assert_eq!(
        record.failure,
        Some((SessionState::Provisioning, "boom".into()))
    );
}

async fn activity_and_warnings_are_kept(db: &impl Backend) {
    let store = db.open().await;
    let (s, _) = store
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    let report = |clients| AgentReport {
        idle_ms: 60_000,
        rdp_clients: clients,
        users: vec!["alice".into()],
        agent_version: "0.1.0".into(),
    };
    store.record_activity(&s.id, report(1)).await.unwrap();
    let first = store.get(&s.id).await.unwrap().unwrap().activity;
    store.record_activity(&s.id, report(0)).await.unwrap();
    store.idle_warning(&s.id, 123, "idle".into()).await.unwrap();
    let store = db.open().await;
    let a = store.get(&s.id).await.unwrap().unwrap().activity;
    assert_eq!(a.users, ["alice"]);
    assert_eq!(a.rdp_clients, 0);
    assert_eq!(
        a.last_connected_ms, first.last_connected_ms,
        "kept from the report with a client"
    );
    let (report_ms, input_ms) = (a.last_report_ms.unwrap(), a.last_input_ms.unwrap());
    assert_eq!(report_ms - input_ms, 60_000);
    assert_eq!(a.warned_reap_ms, Some(123));
    store.clear_warning(&s.id).await.unwrap();
    assert_eq!(
        store
            .get(&s.id)
            .await
            .unwrap()
            .unwrap()
            .activity
            .warned_reap_ms,
        None
    );
}

async fn pages_follow_each_other_without_gaps_or_repeats(db: &impl Backend) {
    let store = db.open().await;
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push(
            store
                .create_session_unlimited(new_session("alice"))
                .await
                .unwrap()
                .0
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_page(None, None, None, after, 3).await.unwrap();
        seen.extend(page.iter().map(|r| r.id.clone()));
        if page.len() < 3 {
            break;
        }
        let last = page.last().unwrap();
        after = Some(PageCursor {
            created_ms: last.created_ms,
            id: last.id.clone(),
        });
    }
    let all: Vec<String> = store
        .list(None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(seen, all, "the pages are the whole list, in order");
    made.sort();
    seen.sort();
    assert_eq!(seen, made);
}

async fn a_request_key_names_its_session(db: &impl Backend) {
    let store = db.open().await;
    let keyed = NewSession {
        request_key: Some("alice\nr-1".into()),
        ..new_session("alice")
    };
    let (first, _) = store.create_session_unlimited(keyed.clone()).await.unwrap();
    let err = store.create_session_unlimited(keyed).await.unwrap_err();
    let StoreError::SameRequest(earlier) = err else {
        panic!("{err}");
    };
    assert_eq!(earlier.id, first.id);
    assert_eq!(
        store.by_request("alice\nr-1").await.unwrap().map(|r| r.id),
        Some(first.id)
    );
    assert!(store.by_request("bob\nr-1").await.unwrap().is_none());
}

async fn retention_prunes_output_lines_and_keeps_stage_changes(db: &impl Backend) {
    let store = db.open().await;
    let (s, _) = store
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    store.walk(&s.id, &[SessionState::Provisioning]).await;
    for text in ["one", "two"] {
        let line = OutputLine {
            tool: Tool::Terraform as i32,
            stream: OutputStream::Stdout as i32,
            text: text.into(),
        };
        store.output(&s.id, line).await.unwrap();
    }
    assert_eq!(store.prune_output(now_ms() - 60_000).await.unwrap(), 0);
    assert_eq!(store.prune_output(now_ms() + 1).await.unwrap(), 2);
    let entry = |time_ms| AuditRecord {
        time_ms,
        action: "create".into(),
        ..Default::default()
    };
    store.append_audit(entry(now_ms() - 10_000)).await.unwrap();
    store.append_audit(entry(now_ms())).await.unwrap();
    assert_eq!(store.prune_audit(now_ms() - 5_000).await.unwrap(), 1);
    assert_eq!(store.prune_audit(now_ms() - 5_000).await.unwrap(), 0);
    let left: Vec<u64> = store
        .events_after(&s.id, 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(left, [1, 2], "the two stage changes stay");
}

async fn terraform_files_are_kept_for_any_server(db: &impl Backend) {
    // The server that works on the session keeps them.
    let store = db.open().await;
    let (session, _) = store
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    let files = TerraformFiles {
        vars: b"{\"vm_name\": \"x\"}".to_vec(),
        state: vec![0, 1, 2, 255],
    };
    assert_eq!(store.terraform(&session.id).await.unwrap(), None);
    store
        .set_terraform(&session.id, Some(files.clone()))
        .await
        .unwrap();
    // Another connection (another server) reads them back.
    let other = db.open().await;
    assert_eq!(other.terraform(&session.id).await.unwrap(), Some(files));
    let fenced = other.set_terraform(&session.id, None).await.unwrap_err();
    assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");
    store.set_terraform(&session.id, None).await.unwrap();
    assert_eq!(other.terraform(&session.id).await.unwrap(), None);
}

async fn a_database_has_one_deployment_id(db: &impl Backend, another: &impl Backend) {
    let id = db.open().await.deployment().await.unwrap();
    assert!(
        id.len() == 12 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{id}"
    );
    // Another server on the same database (or this one after a restart).
    assert_eq!(db.open().await.deployment().await.unwrap(), id);
    let other = another.open().await.deployment().await.unwrap();
    assert_ne!(other, id, "another database is another deployment");
}

async fn a_deployment_secret_is_the_first_servers(db: &impl Backend) {
    let (a, b) = (db.open().await, db.open().await);
    assert_eq!(
        a.deployment_secret("k", b"first".to_vec()).await.unwrap(),
        b"first"
    );
    assert_eq!(
        b.deployment_secret("k", b"second".to_vec()).await.unwrap(),
        b"first"
    );
    assert_eq!(
        b.deployment_secret("other", b"second".to_vec())
            .await
            .unwrap(),
        b"second"
    );
}

async fn a_lease_fences_other_servers_until_it_runs_out(db: &impl Backend) {
    use SessionState::*;
    let (a, b) = (db.open().await, db.open().await);
    let (session, _) = a
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    let id = &session.id;
    // A works on it: B may neither move it, nor write to it, nor take it.
    let fenced = b
        .transition(id, Queued, Provisioning, "b".into(), None)
        .await
        .unwrap_err();
    assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");
    let line = OutputLine {
        text: "from b".into(),
        ..OutputLine::default()
    };
    let fenced = b.output(id, line.clone()).await.unwrap_err();
    assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");
    assert!(!b.take_over(id, false).await.unwrap());
    assert!(b.take_over_expired().await.unwrap().is_empty());
    a.transition(id, Queued, Provisioning, "a".into(), None)
        .await
        .unwrap();
    assert_eq!(a.renew_leases().await.unwrap(), 1);

    // A stops renewing (its leases are 1 ms now): B takes over, and from
    // then on A writes nothing.
    a.set_lease(1);
    a.renew_leases().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        b.take_over_expired().await.unwrap(),
        std::slice::from_ref(id)
    );
    assert!(!b.take_over(id, false).await.unwrap(), "B holds it already");
    assert!(b.take_over_expired().await.unwrap().is_empty());
    let fenced = a
        .transition(id, Provisioning, Failed, "a".into(), None)
        .await
        .unwrap_err();
    assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");
    assert!(a.output(id, line).await.is_err());
    assert_eq!(a.renew_leases().await.unwrap(), 0, "A holds nothing now");
    b.transition(id, Provisioning, Failed, "b".into(), None)
        .await
        .unwrap();
    // Settled by B, it still refuses A, which took it at an older epoch.
    let fenced = a
        .set_outputs(id, crate::store::VmOutputs::default())
        .await
        .unwrap_err();
    assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");
    // Settled: nobody holds it, and there is nothing to take over.
    assert!(!a.take_over(id, true).await.unwrap());
    assert_eq!(b.renew_leases().await.unwrap(), 0);

    // The embedded store's previous process: taken whatever its lease.
    a.set_lease(30_000);
    let (other, _) = a
        .create_session_unlimited(new_session("bob"))
        .await
        .unwrap();
    assert!(!b.take_over(&other.id, false).await.unwrap());
    assert!(b.take_over(&other.id, true).await.unwrap());
}

async fn a_waiting_create_is_taken_once_with_its_password(db: &impl Backend) {
    use SessionState::*;
    let (a, b) = (db.open().await, db.open().await);
    let password = crate::domain::password::PasswordHash::of("s3cret!pass").unwrap();
    let (first, _) = a
        .create_session_unlimited(NewSession {
            session_user: "student".into(),
            password: password.clone(),
            ..new_session("alice")
        })
        .await
        .unwrap();
    // Creates of one millisecond have no order between them (the queue's
    // is by creation time): bob's comes a little later.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (second, _) = a
        .create_session_unlimited(new_session("bob"))
        .await
        .unwrap();
    // A warm pool's desktop keeps none and is never taken.
    a.create_session_unlimited(NewSession {
        template: "t".into(),
        pool: Some("p".into()),
        ..NewSession::default()
    })
    .await
    .unwrap();
    assert!(
        b.take_queued(60_000).await.unwrap().is_none(),
        "not waiting that long"
    );
    assert!(
        a.take_queued(0).await.unwrap().is_none(),
        "a server does not take its own"
    );
    assert_eq!(
        a.queued_password(&first.id).await.unwrap(),
        Some(password.clone())
    );
    // B takes the oldest first, with its hash; A writes nothing more to it.
    let (taken, hash) = b.take_queued(0).await.unwrap().expect("a waiting create");
    assert_eq!((taken.id.as_str(), &hash), (first.id.as_str(), &password));
    let fenced = a
        .transition(&first.id, Queued, Provisioning, "a".into(), None)
        .await
        .unwrap_err();
    assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");
    // The hash is forgotten at the first move.
    b.transition(&first.id, Queued, Provisioning, "b".into(), None)
        .await
        .unwrap();
    assert_eq!(a.queued_password(&first.id).await.unwrap(), None);
    // Bob's waits under A: another server takes it (with no hash: no
    // session user), and then does not take it again.
    let c = db.open().await;
    let (taken, hash) = c.take_queued(0).await.unwrap().expect("bob's create waits");
    assert_eq!(taken.id, second.id);
    assert!(hash.is_none());
    assert!(c.take_queued(0).await.unwrap().is_none());
    // Given back to the queue (its server stopped): taken over by nobody,
    // taken by whoever looks, its releaser too, and fenced from C.
    assert!(c.release_queued(&second.id).await.unwrap());
    assert!(
        !c.release_queued(&second.id).await.unwrap(),
        "C holds it no more"
    );
    c.set_lease(1);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(a.take_over_expired().await.unwrap().is_empty());
    assert!(!a.take_over(&second.id, false).await.unwrap());
    let (taken, _) = c.take_queued(0).await.unwrap().expect("back in the queue");
    assert_eq!(taken.id, second.id);
}

/// Until `pass` is free on `store` (a shared store lets it go once its
/// transaction ends, a moment after the pass is dropped).
async fn free_soon(store: &Store, pass: &str) -> crate::store::pass::Pass {
    for _ in 0..100 {
        if let Some(held) = store.try_pass(pass).await.unwrap() {
            return held;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("pass {pass} is still held 5 s after it ended");
}

async fn a_pass_runs_on_one_server_at_a_time(db: &impl Backend) {
    let a = db.open().await;
    let held = a.try_pass("reaper").await.unwrap().expect("a free pass");
    assert!(a.try_pass("reaper").await.unwrap().is_none(), "held here");
    let other = a.try_pass("pool lab").await.unwrap();
    assert!(other.is_some(), "another pass is free");
    let b = db.open().await;
    if a.is_shared() {
        assert!(
            b.try_pass("reaper").await.unwrap().is_none(),
            "held by another server"
        );
    }
    held.end();
    let again = free_soon(&b, "reaper").await;
    if a.is_shared() {
        assert!(a.try_pass("reaper").await.unwrap().is_none(), "held by b");
    }
    drop(again);
    free_soon(&a, "reaper").await.end();
}

async fn webhook_deliveries_are_written_with_their_event_and_taken_once(db: &impl Backend) {
    use SessionState::*;
    let (a, b) = (db.open().await, db.open().await);
    // Webhook "w" wants every stage change, "x" only READY.
    for store in [&a, &b] {
        store.set_outbox(std::sync::Arc::new(|event: &SessionEvent| {
            let mut wanting = Vec::new();
            if matches!(event.kind, Some(Kind::StageChange(_))) {
                wanting.push("w".to_string());
                if event.state == Ready as i32 {
                    wanting.push("x".to_string());
                }
            }
            wanting
        }));
    }
    let (session, first) = a
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    a.walk(&session.id, &[Provisioning, Booting, Configuring, Ready])
        .await;
    let line = OutputLine {
        text: "no delivery for an output line".into(),
        ..OutputLine::default()
    };
    a.output(&session.id, line).await.unwrap();

    // Five stage changes for w, one READY for x: taken by A, not by B.
    let taken = a.claim_deliveries(100, 60_000).await.unwrap();
    assert_eq!(taken.len(), 6, "{taken:?}");
    assert_eq!(taken[0].sequence, first.sequence);
    assert!(taken.iter().all(|d| d.session_id == session.id));
    let to_x: Vec<_> = taken.iter().filter(|d| d.webhook == "x").collect();
    assert_eq!(to_x.len(), 1);
    assert!(b.claim_deliveries(100, 60_000).await.unwrap().is_empty());
    for delivery in &taken[1..] {
        a.finish_delivery(&delivery.id).await.unwrap();
    }

    // The one A did not finish is B's once A's hold runs out.
    a.hold_deliveries(vec![taken[0].id.clone()], 1)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let again = b.claim_deliveries(100, 60_000).await.unwrap();
    assert_eq!(again, [taken[0].clone()], "same id, taken again");
    // A can no longer hold it.
    a.hold_deliveries(vec![taken[0].id.clone()], 60_000)
        .await
        .unwrap();
    b.finish_delivery(&again[0].id).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(a.claim_deliveries(100, 60_000).await.unwrap().is_empty());
}

async fn a_ticket_issued_on_one_server_opens_once_on_any(db: &impl Backend) {
    use crate::store::tickets::{Issued, TicketLimits, TicketRecord};
    let (a, b) = (db.open().await, db.open().await);
    let ticket = |hash: &str, expires_ms| TicketRecord {
        hash: hash.into(),
        session_id: "s1".into(),
        user: "alice".into(),
        expires_ms,
    };
    let limits = TicketLimits {
        per_user: 1,
        total: 10,
    };
    let first = ticket("h1", now_ms() + 60_000);
    assert_eq!(
        a.issue_ticket(first.clone(), limits).await.unwrap(),
        Issued::Issued
    );
    let second = ticket("h2", now_ms() + 60_000);
    assert_eq!(
        b.issue_ticket(second, limits).await.unwrap(),
        Issued::UserFull,
        "the limit holds across servers"
    );
    assert_eq!(b.redeem_ticket("h1").await.unwrap(), Some(first));
    assert_eq!(a.redeem_ticket("h1").await.unwrap(), None, "used up");
    // An expired ticket no longer counts.
    assert_eq!(
        a.issue_ticket(ticket("h3", now_ms() - 1), limits)
            .await
            .unwrap(),
        Issued::Issued
    );
    assert_eq!(
        b.issue_ticket(ticket("h4", now_ms() + 60_000), limits)
            .await
            .unwrap(),
        Issued::Issued
    );
}

async fn an_agent_command_is_sent_once_and_its_outcome_read_on_any(db: &impl Backend) {
    use crate::store::commands::{CommandState, DropIf};
    use daas_api::v1::CommandOutcome;
    let (a, b) = (db.open().await, db.open().await);
    let body = b"$6$secret-hash".to_vec();
    let first = a.push_command("s1", body.clone()).await.unwrap();
    let other = a.push_command("s2", b"other".to_vec()).await.unwrap();
    assert_eq!(
        a.command_state("s1", first).await.unwrap(),
        Some(CommandState::Waiting)
    );
    // Two servers' streams: one gets it.
    let (x, y) = tokio::join!(b.take_commands("s1"), a.take_commands("s1"));
    let mut taken = x.unwrap();
    taken.extend(y.unwrap());
    assert_eq!(taken.len(), 1, "sent once: {taken:?}");
    assert_eq!((taken[0].id, &taken[0].body), (first, &body));
    assert_eq!(
        b.command_state("s1", first).await.unwrap(),
        Some(CommandState::Sent)
    );
    assert!(
        !a.drop_command("s1", first, DropIf::Waiting).await.unwrap(),
        "a sent command cannot be withdrawn"
    );
    assert!(
        !b.finish_command("s2", first, CommandOutcome::Done, "")
            .await
            .unwrap(),
        "another session's agent cannot finish it"
    );
    assert!(
        b.finish_command("s1", first, CommandOutcome::Failed, "no room")
            .await
            .unwrap()
    );
    assert!(
        !b.finish_command("s1", first, CommandOutcome::Done, "")
            .await
            .unwrap(),
        "reported once"
    );
    assert_eq!(
        a.command_state("s1", first).await.unwrap(),
        Some(CommandState::Done {
            outcome: CommandOutcome::Failed,
            message: "no room".into()
        })
    );
    assert!(a.drop_command("s1", first, DropIf::Any).await.unwrap());
    assert_eq!(a.command_state("s1", first).await.unwrap(), None);
    // A waiting command is withdrawn: no stream gets it after.
    assert!(b.drop_command("s2", other, DropIf::Waiting).await.unwrap());
    assert!(a.take_commands("s2").await.unwrap().is_empty());
    assert!(
        !a.finish_command("s2", other, CommandOutcome::Done, "")
            .await
            .unwrap()
    );
}

async fn create_rates_hold_across_servers(db: &impl Backend) {
    use crate::store::create_rate::Rate;
    let (a, b) = (db.open().await, db.open().await);
    let rate = Rate {
        per_minute: 1,
        burst: 2,
    };
    assert_eq!(a.take_create("alice", rate).await.unwrap(), None);
    assert_eq!(b.take_create("alice", rate).await.unwrap(), None);
    let wait = a.take_create("alice", rate).await.unwrap();
    assert!(wait.is_some_and(|ms| ms > 50_000), "{wait:?}");
    assert!(b.take_create("alice", rate).await.unwrap().is_some());
    assert_eq!(b.take_create("bob", rate).await.unwrap(), None);
}

async fn list_filters_by_user_and_state(db: &impl Backend) {
    let store = db.open().await;
    store
        .create_session_unlimited(new_session("alice"))
        .await
        .unwrap();
    let (b, _) = store
        .create_session_unlimited(new_session("bob"))
        .await
        .unwrap();
    store
        .walk(
            &b.id,
            &[
                SessionState::Provisioning,
                SessionState::Booting,
                SessionState::Configuring,
                SessionState::Ready,
            ],
        )
        .await;
    assert_eq!(store.list(None, None).await.unwrap().len(), 2);
    assert_eq!(store.list(Some("bob".into()), None).await.unwrap().len(), 1);
    let ready = store.list(None, Some(SessionState::Ready)).await.unwrap();
    assert_eq!(ready.len(), 1);
    assert!(ready[0].ready_ms.is_some());
    assert_eq!(store.in_progress().await.unwrap().len(), 1);
}

/// A database the suite opens, as often as it likes: every [`Backend::open`]
/// is another connection to the same one (another server, or the same
/// server after a restart).
pub(crate) trait Backend {
    async fn open(&self) -> Store;
}

/// One SQLite file in a folder of its own.
struct Sqlite(tempfile::TempDir);

impl Sqlite {
    fn new() -> Sqlite {
        Sqlite(tempfile::tempdir().unwrap())
    }
}

impl Backend for Sqlite {
    async fn open(&self) -> Store {
        Store::open(&self.0.path().join("db.sqlite3")).unwrap()
    }
}

/// A schema of its own in the test PostgreSQL (`store::test_cluster`),
/// made at the first opening.
struct Postgres(tokio::sync::OnceCell<String>);

impl Postgres {
    fn new() -> Postgres {
        Postgres(tokio::sync::OnceCell::new())
    }
}

impl Backend for Postgres {
    async fn open(&self) -> Store {
        let url = self
            .0
            .get_or_init(crate::store::test_cluster::postgres_schema)
            .await;
        let connection = crate::store::test_cluster::postgres_connection(url);
        let store = crate::store::PostgresStore::connect(connection)
            .await
            .unwrap();
        Store::new(std::sync::Arc::new(store))
    }
}

/// Every test of the suite against the backend `$db` makes.
macro_rules! conformance {
    ($db:expr) => {
        #[tokio::test]
        async fn creates_stop_at_the_session_limits() {
            super::creates_stop_at_the_session_limits(&$db).await
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn concurrent_claims_never_share_a_pool_desktop() {
            super::concurrent_claims_never_share_a_pool_desktop(&$db).await
        }

        #[tokio::test]
        async fn sessions_get_the_lowest_free_slot_and_unique_names() {
            super::sessions_get_the_lowest_free_slot_and_unique_names(&$db).await
        }

        #[tokio::test]
        async fn moves_are_compare_and_set_along_the_state_machine() {
            super::moves_are_compare_and_set_along_the_state_machine(&$db).await
        }

        #[test]
        fn limits_and_slots_hold_across_concurrent_writers() {
            super::limits_and_slots_hold_across_concurrent_writers(&$db)
        }

        #[tokio::test]
        async fn events_are_numbered_stored_and_survive_reopening() {
            super::events_are_numbered_stored_and_survive_reopening(&$db).await
        }

        #[tokio::test]
        async fn activity_and_warnings_are_kept() {
            super::activity_and_warnings_are_kept(&$db).await
        }

        #[tokio::test]
        async fn pages_follow_each_other_without_gaps_or_repeats() {
            super::pages_follow_each_other_without_gaps_or_repeats(&$db).await
        }

        #[tokio::test]
        async fn a_request_key_names_its_session() {
            super::a_request_key_names_its_session(&$db).await
        }

        #[tokio::test]
        async fn retention_prunes_output_lines_and_keeps_stage_changes() {
            super::retention_prunes_output_lines_and_keeps_stage_changes(&$db).await
        }

        #[tokio::test]
        async fn terraform_files_are_kept_for_any_server() {
            super::terraform_files_are_kept_for_any_server(&$db).await
        }

        #[tokio::test]
        async fn a_database_has_one_deployment_id() {
            super::a_database_has_one_deployment_id(&$db, &$db).await
        }

        #[tokio::test]
        async fn a_lease_fences_other_servers_until_it_runs_out() {
            super::a_lease_fences_other_servers_until_it_runs_out(&$db).await
        }

        #[tokio::test]
        async fn a_pass_runs_on_one_server_at_a_time() {
            super::a_pass_runs_on_one_server_at_a_time(&$db).await
        }

        #[tokio::test]
        async fn webhook_deliveries_are_written_with_their_event_and_taken_once() {
            super::webhook_deliveries_are_written_with_their_event_and_taken_once(&$db).await
        }

        #[tokio::test]
        async fn a_ticket_issued_on_one_server_opens_once_on_any() {
            super::a_ticket_issued_on_one_server_opens_once_on_any(&$db).await
        }

        #[tokio::test]
        async fn an_agent_command_is_sent_once_and_its_outcome_read_on_any() {
            super::an_agent_command_is_sent_once_and_its_outcome_read_on_any(&$db).await
        }

        #[tokio::test]
        async fn create_rates_hold_across_servers() {
            super::create_rates_hold_across_servers(&$db).await
        }

        #[tokio::test]
        async fn a_deployment_secret_is_the_first_servers() {
            super::a_deployment_secret_is_the_first_servers(&$db).await
        }

        #[tokio::test]
        async fn a_waiting_create_is_taken_once_with_its_password() {
            super::a_waiting_create_is_taken_once_with_its_password(&$db).await
        }

        #[tokio::test]
        async fn list_filters_by_user_and_state() {
            super::list_filters_by_user_and_state(&$db).await
        }

        #[tokio::test]
        async fn a_session_keeps_its_size() {
            super::a_session_keeps_its_size(&$db).await
        }

        #[tokio::test]
        async fn a_kept_disk_is_restored_by_one_desktop_at_a_time() {
            super::snapshots::a_kept_disk_is_restored_by_one_desktop_at_a_time(&$db).await
        }

        #[tokio::test]
        async fn schedules_are_kept_and_each_run_recorded_once() {
            super::schedules::schedules_are_kept_and_each_run_recorded_once(&$db).await
        }

        #[tokio::test]
        async fn quotas_hold_for_an_organisation_and_its_members() {
            super::quotas::quotas_hold_for_an_organisation_and_its_members(&$db).await
        }

        #[tokio::test]
        async fn a_claim_counts_against_the_claimers_organisation() {
            super::quotas::a_claim_counts_against_the_claimers_organisation(&$db).await
        }

        #[test]
        fn concurrent_creates_never_pass_an_org_quota() {
            super::quotas::concurrent_creates_never_pass_an_org_quota(&$db)
        }

        #[tokio::test]
        async fn audit_entries_are_read_by_organisation() {
            super::quotas::audit_entries_are_read_by_organisation(&$db).await
        }

        #[tokio::test]
        async fn nodes_are_recorded_drained_and_counted() {
            super::nodes::nodes_are_recorded_drained_and_counted(&$db).await
        }

        #[test]
        fn the_last_room_of_a_node_is_taken_once() {
            super::nodes::the_last_room_of_a_node_is_taken_once(&$db)
        }

        #[tokio::test]
        async fn a_claim_skips_desktops_on_drained_nodes() {
            super::nodes::a_claim_skips_desktops_on_drained_nodes(&$db).await
        }

        #[tokio::test]
        async fn clone_turns_are_counted_per_node() {
            super::nodes::clone_turns_are_counted_per_node(&$db).await
        }

        #[tokio::test]
        async fn clone_turns_are_counted_per_storage() {
            super::nodes::clone_turns_are_counted_per_storage(&$db).await
        }
    };
}

mod sqlite {
    conformance!(super::Sqlite::new());
}

mod postgres {
    conformance!(super::Postgres::new());
}
