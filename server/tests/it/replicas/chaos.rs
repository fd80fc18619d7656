//! Three servers on one PostgreSQL while two of them are SIGKILLed at
//! random instants and started again: 100 creates spread over the three,
//! each sent again to the next server with its `request_id` when its server
//! dies (as the clients do). Every session settles, one per request; the
//! server never killed saw every event of every session in order; every VM
//! made is destroyed unless its session is READY. The counts are printed
//! (RELIABILITY.md keeps them).

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use daas_api::v1::{CreateSessionRequest, Session, SessionEvent, SessionState};
use daas_server::testkit::{TestOptions, credentials};
use rand::Rng;
use tokio::sync::mpsc;

use super::{all_sessions, configs};
use crate::common::*;

const CREATES: usize = 100;
/// How long one session may take to settle: a create may wait minutes in
/// the queue behind the others on 2 cores (it no longer fails there when
/// its server dies).
const SETTLE_LIMIT: Duration = Duration::from_secs(900);
/// The sweeper's interval here: VMs a killed server's Terraform finished
/// after its death are found quickly.
const SERVER_ENV: &[(&str, &str)] = &[("DAAS_TERRAFORM__SWEEP_INTERVAL", "2s")];

/// The servers' endpoints now (a server started again has a new port).
type Endpoints = Arc<Mutex<Vec<String>>>;

fn endpoint(endpoints: &Endpoints, i: usize) -> String {
    let all = endpoints.lock().unwrap();
    all[i % all.len()].clone()
}

/// Creates user `user`'s desktop through server `first`, then the next
/// ones, with one request id, until its stream ends with the session
/// settled; says each session id it learns on `ids`.
async fn create_following(
    endpoints: Endpoints,
    first: usize,
    user: String,
    dir: PathBuf,
    ids: mpsc::UnboundedSender<String>,
) -> Session {
    let admin = credentials(&dir, "root", true);
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    for attempt in 0..200 {
        let at = endpoint(&endpoints, first + attempt);
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            daas_server::testkit::connect(&at, Some(&admin)),
        )
        .await;
        let Ok(Ok(mut client)) = connected else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let request = CreateSessionRequest {
            username: user.clone(),
            request_id: request_id.clone(),
            ..Default::default()
        };
        let mut stream = match client.create_session(request).await {
            Ok(stream) => stream.into_inner(),
            Err(status) if retryable(status.code()) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(status) => panic!("{user}: create refused: {status:?}"),
        };
        let mut last: Option<SessionEvent> = None;
        while let Ok(Some(event)) = stream.message().await {
            let _ = ids.send(event.session_id.clone());
            last = Some(event);
        }
        if let Some(session) = last.and_then(|e| e.session)
            && matches!(session.state(), SessionState::Ready | SessionState::Failed)
        {
            return session;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("{user}: no server settled the create");
}

/// A status that says the server went away, not that the request is wrong.
fn retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(code, Unavailable | Unknown | Cancelled | DeadlineExceeded)
}

/// Each `.created` marker's VM: the session it was made for, and whether
/// it was destroyed.
fn vms(markers: &Path) -> Vec<(String, String, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(markers).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(vm) = name.strip_suffix(".created") else {
            continue;
        };
        let session = std::fs::read_to_string(entry.path()).unwrap();
        let destroyed = markers.join(format!("{vm}.destroyed")).exists();
        found.push((vm.to_string(), session.trim().to_string(), destroyed));
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_creates_while_servers_are_killed_at_random() {
    let dir = tempfile::tempdir().unwrap();
    let options = TestOptions {
        create_delay_secs: 1,
        max_parallel: 6,
        max_sessions: 300,
        ..Default::default()
    };
    let configs = configs(dir.path(), options, "lease = \"5s\"", 3).await;
    let mut servers = Vec::new();
    let mut started = Vec::new();
    for config in &configs {
        let (child, at) = start_server(config, SERVER_ENV).await;
        servers.push(child);
        started.push(at);
    }
    let endpoints: Endpoints = Arc::new(Mutex::new(started));

    // Server 0 is never killed: a watcher there follows every session from
    // the moment its id is known.
    let (ids_tx, mut ids_rx) = mpsc::unbounded_channel::<String>();
    let watcher = {
        let on_0 = connect(&endpoint(&endpoints, 0), dir.path()).await;
        tokio::spawn(async move {
            let mut known = HashSet::new();
            let mut watches = Vec::new();
            while let Some(id) = ids_rx.recv().await {
                if known.insert(id.clone()) {
                    let mut client = on_0.clone();
                    watches.push(tokio::spawn(async move {
                        let events = watch_for(&mut client, &id, SETTLE_LIMIT).await;
                        (id, events)
                    }));
                }
            }
            let mut seen = HashMap::new();
            for watch in watches {
                let (id, events) = watch.await.unwrap();
                seen.insert(id, events);
            }
            seen
        })
    };

    // Servers 1 and 2 are SIGKILLed at random instants and started again.
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (done, endpoints, configs) = (done.clone(), endpoints.clone(), configs.clone());
        tokio::spawn(async move {
            let mut kills = 0;
            while !done.load(Ordering::Relaxed) {
                let (pause, victim, down) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(3_000..6_000),
                        rng.random_range(1..3),
                        rng.random_range(200..2_000),
                    )
                };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                servers[victim].start_kill().unwrap();
                servers[victim].wait().await.unwrap();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(down)).await;
                let (child, at) = start_server(&configs[victim], SERVER_ENV).await;
                servers[victim] = child;
                endpoints.lock().unwrap()[victim] = at;
            }
            (servers, kills)
        })
    };

    let mut creates = Vec::new();
    for i in 0..CREATES {
        let (endpoints, ids) = (endpoints.clone(), ids_tx.clone());
        let user = format!("user{i}");
        let dir = dir.path().to_path_buf();
        creates.push(tokio::spawn(create_following(endpoints, i, user, dir, ids)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(ids_tx);
    let mut settled = Vec::new();
    for create in creates {
        settled.push(create.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let (_servers, kills) = killer.await.unwrap();
    let seen = watcher.await.unwrap();

    // One session per request, each settled.
    let mut on_0 = connect(&endpoint(&endpoints, 0), dir.path()).await;
    let sessions = all_sessions(&mut on_0).await;
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for session in &sessions {
        *per_user.entry(session.username.as_str()).or_default() += 1;
    }
    assert_eq!(sessions.len(), CREATES, "one session per request");
    assert!(per_user.values().all(|n| *n == 1), "{per_user:?}");
    let ready = settled
        .iter()
        .filter(|s| s.state() == SessionState::Ready)
        .count();

    // The watcher on server 0 saw each session's whole history, in order.
    for session in &settled {
        let history = watch(&mut on_0, &session.id).await;
        assert_gap_free(&history);
        assert_eq!(
            seen.get(&session.id),
            Some(&history),
            "server 0's watcher missed events of {}",
            session.id
        );
    }

    // Every VM made is destroyed unless its session is READY; none is made
    // twice for one session.
    let state: HashMap<&str, SessionState> = sessions
        .iter()
        .map(|s| (s.id.as_str(), s.state()))
        .collect();
    let markers = dir.path().join("markers");
    let deadline = Instant::now() + Duration::from_secs(120);
    let vms = loop {
        let vms = vms(&markers);
        let wrong: Vec<_> = vms
            .iter()
            .filter(|(_, session, destroyed)| {
                let live = state.get(session.as_str()) == Some(&SessionState::Ready);
                live == *destroyed
            })
            .collect();
        if wrong.is_empty() {
            break vms;
        }
        assert!(
            Instant::now() < deadline,
            "VMs alive without a READY session, or destroyed under one: {wrong:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut made: Vec<&str> = vms.iter().map(|(_, s, _)| s.as_str()).collect();
    let count = made.len();
    made.sort_unstable();
    made.dedup();
    assert_eq!(made.len(), count, "a session had two VMs");
    let destroyed = vms.iter().filter(|(_, _, d)| *d).count();
    eprintln!(
        "chaos: {kills} kills; {CREATES} creates: {ready} READY, {} FAILED; {count} VMs made, {destroyed} destroyed",
        CREATES - ready
    );
}
