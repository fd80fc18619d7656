//! The embedded default store: one SQLite file holding sessions and their
//! events (WAL mode). Every event is committed before it is published to
//! live watchers, and published while the connection is still held, so
//! watchers see a session's events in sequence order.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use daas_api::v1::{
    IdleWarning, OutputLine, SessionEvent, SessionState, StageChange, session_event::Kind,
};
use prost::Message;
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{
    ActivityRecord, AgentReport, ChildRecord, LimitHit, NewSession, PageCursor,
    REQUEST_ID_WINDOW_MS, SessionLimits, SessionRecord, SessionStore, StoreError, VmOutputs,
    state_from_db,
};
use crate::domain::time::{clock_time, duration, now_ms, timestamp};
use crate::store::{
    audit::{AuditFilter, AuditRecord},
    events::{Hub, Subscription},
    signins::{SignInLimits, SignInOpened, SignInRecord},
};

trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { context, source })
    }
}

/// Schema migrations, applied in order; `PRAGMA user_version` counts them.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    username         TEXT NOT NULL,
    session_user     TEXT NOT NULL DEFAULT '',
    template         TEXT NOT NULL,
    state            INTEGER NOT NULL,
    slot             INTEGER NOT NULL,
    slot_released    INTEGER NOT NULL DEFAULT 0,
    vm_name          TEXT NOT NULL UNIQUE,
    vm_id            TEXT NOT NULL DEFAULT '',
    ssh_host         TEXT NOT NULL DEFAULT '',
    ssh_port         INTEGER NOT NULL DEFAULT 0,
    rdp_host         TEXT NOT NULL DEFAULT '',
    rdp_port         INTEGER NOT NULL DEFAULT 0,
    failure_stage    INTEGER NOT NULL DEFAULT 0,
    failure_reason   TEXT NOT NULL DEFAULT '',
    child_pgid       INTEGER,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    stage_started_ms INTEGER NOT NULL,
    ready_ms         INTEGER
);
CREATE INDEX sessions_user ON sessions (username, created_ms);
CREATE INDEX sessions_live_slots ON sessions (slot) WHERE slot_released = 0;
CREATE TABLE events (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    seq        INTEGER NOT NULL,
    body       BLOB NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE sessions ADD COLUMN last_report_ms INTEGER;
ALTER TABLE sessions ADD COLUMN last_input_ms INTEGER;
ALTER TABLE sessions ADD COLUMN last_connected_ms INTEGER;
ALTER TABLE sessions ADD COLUMN rdp_clients INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN logged_in TEXT NOT NULL DEFAULT '[]';
ALTER TABLE sessions ADD COLUMN agent_version TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN warned_reap_ms INTEGER;
"#,
    r#"
ALTER TABLE sessions ADD COLUMN child_identity TEXT;
DROP INDEX sessions_live_slots;
CREATE UNIQUE INDEX sessions_live_slots ON sessions (slot) WHERE slot_released = 0;
CREATE INDEX sessions_state ON sessions (state);
"#,
    r#"
ALTER TABLE events ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN time_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_output_time ON events (time_ms) WHERE kind = 2;
ALTER TABLE sessions ADD COLUMN request_key TEXT;
CREATE INDEX sessions_request ON sessions (request_key, created_ms) WHERE request_key IS NOT NULL;
CREATE INDEX sessions_created ON sessions (created_ms, id);
"#,
    r#"
ALTER TABLE sessions ADD COLUMN pool TEXT;
ALTER TABLE sessions ADD COLUMN claimed_ms INTEGER;
CREATE INDEX sessions_pool ON sessions (pool, state) WHERE pool IS NOT NULL;
"#,
    r#"
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms     INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    peer        TEXT NOT NULL,
    action      TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    owner       TEXT NOT NULL,
    result      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_time ON audit (time_ms, id);
CREATE INDEX audit_session ON audit (session_id, time_ms) WHERE session_id != '';
"#,
    r#"
ALTER TABLE sessions ADD COLUMN rdp_cert_sha256 TEXT NOT NULL DEFAULT '';
"#,
    r#"
CREATE TABLE web_signins (
    id_hash      TEXT PRIMARY KEY,
    user         TEXT NOT NULL,
    admin        INTEGER NOT NULL,
    csrf         TEXT NOT NULL,
    key          TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    checked_ms   INTEGER NOT NULL
);
CREATE INDEX web_signins_user ON web_signins (user);
"#,
];

/// The `events.kind` column: which events retention may prune.
const EVENT_UNKNOWN: i32 = 0;
const EVENT_STAGE_CHANGE: i32 = 1;
const EVENT_OUTPUT: i32 = 2;
const EVENT_IDLE_WARNING: i32 = 3;

fn event_kind(event: &SessionEvent) -> i32 {
    match event.kind {
        Some(Kind::StageChange(_)) => EVENT_STAGE_CHANGE,
        Some(Kind::Output(_)) => EVENT_OUTPUT,
        Some(Kind::IdleWarning(_)) => EVENT_IDLE_WARNING,
        None => EVENT_UNKNOWN,
    }
}

fn event_time_ms(event: &SessionEvent) -> i64 {
    event
        .time
        .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
        .unwrap_or(0)
}

fn signin_row(conn: &Connection, id_hash: &str) -> Result<Option<SignInRecord>, StoreError> {
    conn.query_row(
        "SELECT id_hash, user, admin, csrf, key, created_ms, last_seen_ms, checked_ms \
         FROM web_signins WHERE id_hash = ?1",
        params![id_hash],
        |row| {
            Ok(SignInRecord {
                id_hash: row.get(0)?,
                user: row.get(1)?,
                admin: row.get(2)?,
                csrf: row.get(3)?,
                key: row.get(4)?,
                created_ms: row.get(5)?,
                last_seen_ms: row.get(6)?,
                checked_ms: row.get(7)?,
            })
        },
    )
    .optional()
    .context("reading a sign-in")
}

/// The embedded default store: one SQLite file.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    hub: Hub,
}

const SESSION_COLUMNS: &str = "id, username, session_user, template, state, slot, vm_name, \
     vm_id, ssh_host, ssh_port, rdp_host, rdp_port, failure_stage, failure_reason, child_pgid, \
     child_identity, created_ms, updated_ms, ready_ms, last_report_ms, last_input_ms, \
     last_connected_ms, rdp_clients, logged_in, agent_version, warned_reap_ms, pool, claimed_ms, \
     rdp_cert_sha256";

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let failure_stage: i32 = row.get("failure_stage")?;
    let failure_reason: String = row.get("failure_reason")?;
    let users: String = row.get("logged_in")?;
    Ok(SessionRecord {
        id: row.get("id")?,
        username: row.get("username")?,
        session_user: row.get("session_user")?,
        template: row.get("template")?,
        state: state_from_db(row.get("state")?),
        slot: row.get("slot")?,
        vm_name: row.get("vm_name")?,
        outputs: VmOutputs {
            vm_id: row.get("vm_id")?,
            ssh_host: row.get("ssh_host")?,
            ssh_port: row.get("ssh_port")?,
            rdp_host: row.get("rdp_host")?,
            rdp_port: row.get("rdp_port")?,
            rdp_cert_sha256: row.get("rdp_cert_sha256")?,
        },
        failure: (failure_stage != 0).then(|| (state_from_db(failure_stage), failure_reason)),
        child: match (row.get("child_pgid")?, row.get("child_identity")?) {
            (Some(pgid), Some(identity)) => Some(ChildRecord { pgid, identity }),
            _ => None,
        },
        created_ms: row.get("created_ms")?,
        updated_ms: row.get("updated_ms")?,
        ready_ms: row.get("ready_ms")?,
        activity: ActivityRecord {
            last_report_ms: row.get("last_report_ms")?,
            last_input_ms: row.get("last_input_ms")?,
            last_connected_ms: row.get("last_connected_ms")?,
            rdp_clients: row.get("rdp_clients")?,
            users: serde_json::from_str(&users).unwrap_or_default(),
            agent_version: row.get("agent_version")?,
            warned_reap_ms: row.get("warned_reap_ms")?,
        },
        pool: row.get("pool")?,
        claimed_ms: row.get("claimed_ms")?,
    })
}

/// The session a request key made within the window, if any.
fn by_request_key(conn: &Connection, key: &str) -> Result<Option<SessionRecord>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE request_key = ?1 AND created_ms > ?2 \
             ORDER BY created_ms DESC LIMIT 1"
        ),
        params![key, now_ms() - REQUEST_ID_WINDOW_MS],
        session_from_row,
    )
    .optional()
    .context("reading a session by request")
}

/// What a create asks of the server's desktops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// A desktop more: the server's limit applies (and the user's, unless
    /// it is a warm pool's desktop, built for nobody).
    NewDesktop,
    /// A pool's desktop that counts already: the user's limit alone.
    Claim,
}

/// Refuses a create that repeats an earlier one (its request key) or would
/// exceed a limit; the caller holds a write transaction.
fn admit(
    conn: &Connection,
    new: &NewSession,
    limits: SessionLimits,
    admission: Admission,
) -> Result<(), StoreError> {
    if let Some(key) = &new.request_key
        && let Some(earlier) = by_request_key(conn, key)?
    {
        return Err(StoreError::SameRequest(Box::new(earlier)));
    }
    let (total, of_user): (usize, usize) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(username = ?1), 0) FROM sessions \
             WHERE state NOT IN (?2, ?3)",
            params![
                new.username,
                SessionState::Failed as i32,
                SessionState::Destroyed as i32
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .context("counting live sessions")?;
    if admission == Admission::NewDesktop && total >= limits.max_sessions {
        return Err(StoreError::LimitReached(LimitHit::Server(
            limits.max_sessions,
        )));
    }
    let for_nobody = admission == Admission::NewDesktop && new.pool.is_some();
    if !for_nobody && of_user >= limits.max_per_user {
        return Err(StoreError::LimitReached(LimitHit::User(
            new.username.clone(),
            limits.max_per_user,
        )));
    }
    Ok(())
}

fn get_session(conn: &Connection, id: &str) -> Result<Option<SessionRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
        [id],
        session_from_row,
    )
    .optional()
    .context("reading a session")
}

fn random_vm_name() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{}{suffix}", crate::domain::contract::VM_NAME_PREFIX)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).context("opening the database")?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .context("enabling WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context("setting synchronous")?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .context("enabling foreign keys")?;
        conn.busy_timeout(Duration::from_secs(5))
            .context("setting the busy timeout")?;
        migrate(&mut conn)?;

        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            hub: Hub::default(),
        })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Hub) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let live = self.hub.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn, &live)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[tonic::async_trait]
impl SessionStore for SqliteStore {
    fn subscribe(&self, id: &str) -> Subscription {
        self.hub.subscribe(id)
    }

    fn tap(&self, tap: crate::store::events::Tap) {
        self.hub.tap(tap);
    }

    async fn create_session(
        &self,
        new: NewSession,
        limits: SessionLimits,
    ) -> Result<(SessionRecord, SessionEvent), StoreError> {
        self.with(move |conn, live| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context("starting a transaction")?;
            admit(&tx, &new, limits, Admission::NewDesktop)?;
            let mut vm_name = random_vm_name();
            for _ in 0..16 {
                let taken: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM sessions WHERE vm_name = ?1)",
                        [&vm_name],
                        |row| row.get(0),
                    )
                    .context("checking VM names")?;
                if !taken {
                    break;
                }
                vm_name = random_vm_name();
            }
            let id = uuid::Uuid::new_v4().to_string();
            let now = now_ms();
            // The lowest slot from 1 up that no live session holds.
            tx.execute(
                "INSERT INTO sessions (id, username, session_user, template, state, slot, \
                 vm_name, created_ms, updated_ms, stage_started_ms, request_key, pool) \
                 SELECT ?1, ?2, ?3, ?4, ?5, MIN(candidate), ?6, ?7, ?7, ?7, ?8, ?9 FROM ( \
                   SELECT 1 AS candidate \
                   UNION ALL SELECT slot + 1 FROM sessions WHERE slot_released = 0 \
                 ) WHERE candidate NOT IN (SELECT slot FROM sessions WHERE slot_released = 0)",
                params![
                    id,
                    new.username,
                    new.session_user,
                    new.template,
                    SessionState::Queued as i32,
                    vm_name,
                    now,
                    new.request_key,
                    new.pool
                ],
            )
            .context("inserting a session")?;
            let record = get_session(&tx, &id)?.ok_or_else(|| StoreError::Missing(id.clone()))?;
            let message = match &new.pool {
                Some(pool) => {
                    format!("a desktop for warm pool '{pool}'; waiting for a provisioning slot")
                }
                None => "waiting for a provisioning slot".into(),
            };
            let event = first_event(&id, now, message);
            insert_event(&tx, &event)?;
            tx.commit().context("committing a new session")?;
            live.publish(&event);
            Ok((record, event))
        })
        .await
    }

    async fn claim(
        &self,
        new: NewSession,
        pool: &str,
        limits: SessionLimits,
    ) -> Result<Option<(SessionRecord, SessionEvent)>, StoreError> {
        let pool = pool.to_string();
        self.with(move |conn, live| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context("starting a transaction")?;
            admit(&tx, &new, limits, Admission::Claim)?;
            // The desktop that has waited longest.
            let spare: Option<(String, String, i64, i64)> = tx
                .query_row(
                    "SELECT id, vm_name, created_ms, COALESCE(ready_ms, created_ms) FROM sessions \
                     WHERE pool = ?1 AND template = ?2 AND claimed_ms IS NULL AND state = ?3 \
                     ORDER BY ready_ms, id LIMIT 1",
                    params![pool, new.template, SessionState::Ready as i32],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()
                .context("finding a ready pool desktop")?;
            let Some((id, vm_name, built_ms, ready_ms)) = spare else {
                return Ok(None);
            };
            let now = now_ms();
            tx.execute(
                "UPDATE sessions SET username = ?2, session_user = ?3, request_key = ?4, \
                 claimed_ms = ?5, created_ms = ?5, updated_ms = ?5, stage_started_ms = ?5, \
                 ready_ms = NULL, warned_reap_ms = NULL, state = ?6 WHERE id = ?1",
                params![
                    id,
                    new.username,
                    new.session_user,
                    new.request_key,
                    now,
                    SessionState::Queued as i32
                ],
            )
            .context("claiming a pool desktop")?;
            // The build's history was nobody's; the session starts here.
            tx.execute("DELETE FROM events WHERE session_id = ?1", [&id])
                .context("clearing a pool desktop's build events")?;
            let record = get_session(&tx, &id)?.ok_or_else(|| StoreError::Missing(id.clone()))?;
            let message = format!(
                "claimed warm desktop {vm_name} from pool '{pool}' (built in {}, ready since {})",
                humantime::format_duration(std::time::Duration::from_secs(
                    u64::try_from((ready_ms - built_ms) / 1000).unwrap_or(0)
                )),
                clock_time(ready_ms)
            );
            let event = first_event(&id, now, message);
            insert_event(&tx, &event)?;
            tx.commit().context("committing a claim")?;
            live.publish(&event);
            Ok(Some((record, event)))
        })
        .await
    }

    async fn pool_sessions(
        &self,
        pool: &str,
        since_ms: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let pool = pool.to_string();
        self.with(move |conn, _| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions WHERE pool = ?1 \
                     AND (state NOT IN (?2, ?3) OR updated_ms >= ?4 OR claimed_ms >= ?4) \
                     ORDER BY created_ms"
                ))
                .context("listing a pool's sessions")?;
            let rows = stmt
                .query_map(
                    params![
                        pool,
                        SessionState::Failed as i32,
                        SessionState::Destroyed as i32,
                        since_ms
                    ],
                    session_from_row,
                )
                .context("listing a pool's sessions")?;
            rows.collect::<Result<Vec<_>, _>>()
                .context("listing a pool's sessions")
        })
        .await
    }

    async fn transition(
        &self,
        id: &str,
        from: SessionState,
        to: SessionState,
        message: String,
        failure: Option<(SessionState, String)>,
    ) -> Result<SessionEvent, StoreError> {
        let id = id.to_string();
        if !crate::domain::state_machine::allowed(from, to) {
            return Err(StoreError::IllegalMove { id, from, to });
        }
        self.with(move |conn, live| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context("starting a transaction")?;
            let (previous, stage_started) = current_stage(&tx, &id)?;
            if previous != from as i32 {
                return Err(StoreError::Conflict {
                    id,
                    expected: from,
                    actual: state_from_db(previous),
                });
            }
            let now = now_ms();
            let (failure_stage, failure_reason) = failure
                .map(|(stage, reason)| (stage as i32, reason))
                .unwrap_or((0, String::new()));
            tx.execute(
                "UPDATE sessions SET state = ?2, updated_ms = ?3, stage_started_ms = ?3, \
                 ready_ms = CASE WHEN ?2 = ?4 THEN ?3 ELSE ready_ms END, \
                 failure_stage = ?5, failure_reason = ?6, \
                 slot_released = CASE WHEN ?2 = ?7 THEN 1 ELSE slot_released END \
                 WHERE id = ?1 AND state = ?8",
                params![
                    id,
                    to as i32,
                    now,
                    SessionState::Ready as i32,
                    failure_stage,
                    failure_reason,
                    SessionState::Destroyed as i32,
                    from as i32
                ],
            )
            .context("updating a session state")?;
            let record = get_session(&tx, &id)?.ok_or_else(|| StoreError::Missing(id.clone()))?;
            let event = SessionEvent {
                session_id: id.clone(),
                sequence: next_sequence(&tx, &id)?,
                time: Some(timestamp(now)),
                state: to as i32,
                stage_elapsed: Some(duration(0)),
                kind: Some(Kind::StageChange(StageChange {
                    previous,
                    previous_duration: Some(duration(now - stage_started)),
                    message,
                })),
                session: to.is_settled().then(|| record.to_proto()),
            };
            insert_event(&tx, &event)?;
            tx.commit().context("committing a stage change")?;
            live.publish(&event);
            Ok(event)
        })
        .await
    }

    async fn output(&self, id: &str, line: OutputLine) -> Result<SessionEvent, StoreError> {
        let id = id.to_string();
        self.with(move |conn, live| {
            let tx = conn.transaction().context("starting a transaction")?;
            let (state, stage_started) = current_stage(&tx, &id)?;
            let now = now_ms();
            let event = SessionEvent {
                session_id: id.clone(),
                sequence: next_sequence(&tx, &id)?,
                time: Some(timestamp(now)),
                state,
                stage_elapsed: Some(duration(now - stage_started)),
                kind: Some(Kind::Output(line)),
                session: None,
            };
            insert_event(&tx, &event)?;
            tx.commit().context("committing an output line")?;
            live.publish(&event);
            Ok(event)
        })
        .await
    }

    async fn set_outputs(&self, id: &str, outputs: VmOutputs) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| {
            conn.execute(
                "UPDATE sessions SET vm_id = ?2, ssh_host = ?3, ssh_port = ?4, rdp_host = ?5, \
                 rdp_port = ?6, rdp_cert_sha256 = ?7 WHERE id = ?1",
                params![
                    id,
                    outputs.vm_id,
                    outputs.ssh_host,
                    outputs.ssh_port,
                    outputs.rdp_host,
                    outputs.rdp_port,
                    outputs.rdp_cert_sha256
                ],
            )
            .context("storing VM outputs")?;
            Ok(())
        })
        .await
    }

    async fn set_child(&self, id: &str, child: Option<ChildRecord>) -> Result<(), StoreError> {
        let id = id.to_string();
        let (pgid, identity) = child.map(|c| (c.pgid, c.identity)).unzip();
        self.with(move |conn, _| {
            conn.execute(
                "UPDATE sessions SET child_pgid = ?2, child_identity = ?3 WHERE id = ?1",
                params![id, pgid, identity],
            )
            .context("storing a child process group")?;
            Ok(())
        })
        .await
    }

    async fn record_activity(&self, id: &str, report: AgentReport) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| {
            let now = now_ms();
            let users = serde_json::to_string(&report.users).unwrap_or_else(|_| "[]".into());
            conn.execute(
                "UPDATE sessions SET last_report_ms = ?2, last_input_ms = ?3, \
                 last_connected_ms = CASE WHEN ?4 > 0 THEN ?2 ELSE last_connected_ms END, \
                 rdp_clients = ?4, logged_in = ?5, agent_version = ?6 WHERE id = ?1",
                params![
                    id,
                    now,
                    now.saturating_sub(report.idle_ms.max(0)),
                    report.rdp_clients,
                    users,
                    report.agent_version
                ],
            )
            .context("recording activity")?;
            Ok(())
        })
        .await
    }

    async fn idle_warning(
        &self,
        id: &str,
        reap_at_ms: i64,
        reason: String,
    ) -> Result<SessionEvent, StoreError> {
        let id = id.to_string();
        self.with(move |conn, live| {
            let tx = conn.transaction().context("starting a transaction")?;
            let (state, stage_started) = current_stage(&tx, &id)?;
            let now = now_ms();
            tx.execute(
                "UPDATE sessions SET warned_reap_ms = ?2 WHERE id = ?1",
                params![id, reap_at_ms],
            )
            .context("recording a warning")?;
            let event = SessionEvent {
                session_id: id.clone(),
                sequence: next_sequence(&tx, &id)?,
                time: Some(timestamp(now)),
                state,
                stage_elapsed: Some(duration(now - stage_started)),
                kind: Some(Kind::IdleWarning(IdleWarning {
                    reap_at: Some(timestamp(reap_at_ms)),
                    reason,
                })),
                session: None,
            };
            insert_event(&tx, &event)?;
            tx.commit().context("committing a warning")?;
            live.publish(&event);
            Ok(event)
        })
        .await
    }

    async fn clear_warning(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| {
            conn.execute(
                "UPDATE sessions SET warned_reap_ms = NULL WHERE id = ?1",
                [id],
            )
            .context("clearing a warning")?;
            Ok(())
        })
        .await
    }

    async fn release_slot(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| {
            conn.execute("UPDATE sessions SET slot_released = 1 WHERE id = ?1", [id])
                .context("releasing a slot")?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| get_session(conn, &id)).await
    }

    async fn by_vm_name(&self, vm_name: &str) -> Result<Option<SessionRecord>, StoreError> {
        let vm_name = vm_name.to_string();
        self.with(move |conn, _| {
            conn.query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE vm_name = ?1"),
                [vm_name],
                session_from_row,
            )
            .optional()
            .context("reading a session by VM name")
        })
        .await
    }

    async fn by_request(&self, key: &str) -> Result<Option<SessionRecord>, StoreError> {
        let key = key.to_string();
        self.with(move |conn, _| by_request_key(conn, &key)).await
    }

    async fn list(
        &self,
        username: Option<String>,
        state: Option<SessionState>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.list_page(username, state, None, u32::MAX).await
    }

    async fn list_page(
        &self,
        username: Option<String>,
        state: Option<SessionState>,
        after: Option<PageCursor>,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions \
                     WHERE (?1 IS NULL OR username = ?1) AND (?2 IS NULL OR state = ?2) \
                     AND (?3 IS NULL OR created_ms < ?3 OR (created_ms = ?3 AND id < ?4)) \
                     ORDER BY created_ms DESC, id DESC LIMIT ?5"
                ))
                .context("listing sessions")?;
            let (after_ms, after_id) = after.map(|c| (c.created_ms, c.id)).unzip();
            let rows = stmt
                .query_map(
                    params![
                        username,
                        state.map(|s| s as i32),
                        after_ms,
                        after_id,
                        i64::from(limit)
                    ],
                    session_from_row,
                )
                .context("listing sessions")?;
            rows.collect::<Result<Vec<_>, _>>()
                .context("listing sessions")
        })
        .await
    }

    async fn prune_output(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(move |conn, _| {
            conn.execute(
                "DELETE FROM events WHERE kind = ?1 AND time_ms < ?2",
                params![EVENT_OUTPUT, before_ms],
            )
            .context("pruning old output lines")
        })
        .await
    }

    async fn prune_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(move |conn, _| {
            conn.execute("DELETE FROM audit WHERE time_ms < ?1", params![before_ms])
                .context("pruning old audit entries")
        })
        .await
    }

    async fn open_signin(
        &self,
        r: SignInRecord,
        limits: SignInLimits,
    ) -> Result<SignInOpened, StoreError> {
        self.with(move |conn, _| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context("starting a sign-in")?;
            tx.execute(
                "DELETE FROM web_signins WHERE last_seen_ms < ?1 OR created_ms < ?2",
                params![limits.idle_before_ms, limits.made_before_ms],
            )
            .context("deleting ended sign-ins")?;
            let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<usize, StoreError> {
                tx.query_row(sql, p, |row| row.get::<_, i64>(0))
                    .context("counting sign-ins")
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            };
            if count(
                "SELECT COUNT(*) FROM web_signins WHERE user = ?1",
                &[&r.user],
            )? >= limits.per_user
            {
                return Ok(SignInOpened::UserFull);
            }
            if count("SELECT COUNT(*) FROM web_signins", &[])? >= limits.total {
                return Ok(SignInOpened::Full);
            }
            tx.execute(
                "INSERT INTO web_signins (id_hash, user, admin, csrf, key, created_ms, \
                 last_seen_ms, checked_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    r.id_hash,
                    r.user,
                    r.admin,
                    r.csrf,
                    r.key,
                    r.created_ms,
                    r.last_seen_ms,
                    r.checked_ms
                ],
            )
            .context("recording a sign-in")?;
            tx.commit().context("committing a sign-in")?;
            Ok(SignInOpened::Opened)
        })
        .await
    }

    async fn signin(&self, id_hash: &str) -> Result<Option<SignInRecord>, StoreError> {
        let id_hash = id_hash.to_string();
        self.with(move |conn, _| signin_row(conn, &id_hash)).await
    }

    async fn touch_signin(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), StoreError> {
        let id_hash = id_hash.to_string();
        self.with(move |conn, _| {
            conn.execute(
                "UPDATE web_signins SET last_seen_ms = MAX(last_seen_ms, ?2) WHERE id_hash = ?1",
                params![id_hash, last_seen_ms],
            )
            .context("recording a sign-in's use")?;
            Ok(())
        })
        .await
    }

    async fn recheck_signin(
        &self,
        id_hash: &str,
        admin: bool,
        checked_ms: i64,
    ) -> Result<Option<SignInRecord>, StoreError> {
        let id_hash = id_hash.to_string();
        self.with(move |conn, _| {
            conn.execute(
                "UPDATE web_signins SET admin = ?2, checked_ms = ?3 WHERE id_hash = ?1",
                params![id_hash, admin, checked_ms],
            )
            .context("recording a recheck")?;
            signin_row(conn, &id_hash)
        })
        .await
    }

    async fn close_signin(&self, id_hash: &str) -> Result<Option<SignInRecord>, StoreError> {
        let id_hash = id_hash.to_string();
        self.with(move |conn, _| {
            let found = signin_row(conn, &id_hash)?;
            conn.execute(
                "DELETE FROM web_signins WHERE id_hash = ?1",
                params![id_hash],
            )
            .context("deleting a sign-in")?;
            Ok(found)
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.with(move |conn, _| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context("starting a write transaction")?;
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .context("reading the schema version")?;
            tx.pragma_update(None, "user_version", version)
                .context("writing the schema version")?;
            tx.commit().context("committing a write")
        })
        .await
    }

    async fn append_audit(&self, r: AuditRecord) -> Result<i64, StoreError> {
        self.with(move |conn, _| {
            conn.execute(
                "INSERT INTO audit (time_ms, actor, subject, fingerprint, peer, action, \
                 session_id, owner, result, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    r.time_ms,
                    r.actor,
                    r.subject,
                    r.fingerprint,
                    r.peer,
                    r.action,
                    r.session_id,
                    r.owner,
                    r.result,
                    r.detail
                ],
            )
            .context("appending to the audit trail")?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn audit_page(&self, f: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn
                .prepare(
                    "SELECT id, time_ms, actor, subject, fingerprint, peer, action, session_id, \
                     owner, result, detail FROM audit \
                     WHERE (?1 IS NULL OR actor = ?1 OR owner = ?1) \
                     AND (?2 IS NULL OR session_id = ?2) AND (?3 IS NULL OR time_ms >= ?3) \
                     AND (?4 IS NULL OR time_ms < ?4 OR (time_ms = ?4 AND id < ?5)) \
                     ORDER BY time_ms DESC, id DESC LIMIT ?6",
                )
                .context("reading the audit trail")?;
            let (before_ms, before_id) = f.before.unzip();
            let rows = stmt
                .query_map(
                    params![
                        f.username,
                        f.session_id,
                        f.since_ms,
                        before_ms,
                        before_id,
                        i64::from(f.limit)
                    ],
                    |row| {
                        Ok(AuditRecord {
                            id: row.get("id")?,
                            time_ms: row.get("time_ms")?,
                            actor: row.get("actor")?,
                            subject: row.get("subject")?,
                            fingerprint: row.get("fingerprint")?,
                            peer: row.get("peer")?,
                            action: row.get("action")?,
                            session_id: row.get("session_id")?,
                            owner: row.get("owner")?,
                            result: row.get("result")?,
                            detail: row.get("detail")?,
                        })
                    },
                )
                .context("reading the audit trail")?;
            rows.collect::<Result<Vec<_>, _>>()
                .context("reading the audit trail")
        })
        .await
    }

    async fn count_by_state(&self) -> Result<Vec<(SessionState, String, u64)>, StoreError> {
        self.with(move |conn, _| {
            let mut stmt = conn
                .prepare(
                    "SELECT state, template, COUNT(*) FROM sessions \
                     GROUP BY state, template ORDER BY state, template",
                )
                .context("counting sessions")?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        state_from_db(row.get(0)?),
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?.max(0) as u64,
                    ))
                })
                .context("counting sessions")?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .context("counting sessions")
        })
        .await
    }

    async fn in_progress(&self) -> Result<Vec<SessionRecord>, StoreError> {
        // Only the sessions that are not settled: the history can be long.
        let settled = [
            SessionState::Ready,
            SessionState::Failed,
            SessionState::Destroyed,
        ]
        .map(|s| s as i32);
        self.with(move |conn, _| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {SESSION_COLUMNS} FROM sessions \
                     WHERE state NOT IN (?1, ?2, ?3) ORDER BY created_ms"
                ))
                .context("listing sessions in progress")?;
            let rows = stmt
                .query_map(
                    params![settled[0], settled[1], settled[2]],
                    session_from_row,
                )
                .context("listing sessions in progress")?;
            rows.collect::<Result<Vec<_>, _>>()
                .context("listing sessions in progress")
        })
        .await
    }

    async fn events_after(&self, id: &str, after: u64) -> Result<Vec<SessionEvent>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| {
            let mut stmt = conn
                .prepare("SELECT body FROM events WHERE session_id = ?1 AND seq > ?2 ORDER BY seq")
                .context("reading events")?;
            let bodies = stmt
                .query_map(params![id, after as i64], |row| row.get::<_, Vec<u8>>(0))
                .context("reading events")?
                .collect::<Result<Vec<_>, _>>()
                .context("reading events")?;
            bodies
                .into_iter()
                .map(|body| {
                    SessionEvent::decode(body.as_slice())
                        .map_err(|_| StoreError::CorruptEvent(id.clone()))
                })
                .collect()
        })
        .await
    }
}

/// The first event of a session: QUEUED at `now_ms`, saying `message`.
fn first_event(id: &str, now_ms: i64, message: String) -> SessionEvent {
    SessionEvent {
        session_id: id.to_string(),
        sequence: 1,
        time: Some(timestamp(now_ms)),
        state: SessionState::Queued as i32,
        stage_elapsed: Some(duration(0)),
        kind: Some(Kind::StageChange(StageChange {
            previous: SessionState::Unspecified as i32,
            previous_duration: Some(duration(0)),
            message,
        })),
        session: None,
    }
}

/// A session's state and when its current stage began.
fn current_stage(conn: &Connection, id: &str) -> Result<(i32, i64), StoreError> {
    conn.query_row(
        "SELECT state, stage_started_ms FROM sessions WHERE id = ?1",
        [id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .context("reading a session")?
    .ok_or_else(|| StoreError::Missing(id.to_string()))
}

fn next_sequence(conn: &Connection, id: &str) -> Result<u64, StoreError> {
    let last: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE session_id = ?1",
            [id],
            |row| row.get(0),
        )
        .context("numbering an event")?;
    Ok(last as u64 + 1)
}

fn insert_event(conn: &Connection, event: &SessionEvent) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO events (session_id, seq, body, kind, time_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            event.session_id,
            event.sequence as i64,
            event.encode_to_vec(),
            event_kind(event),
            event_time_ms(event)
        ],
    )
    .context("storing an event")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context("reading the schema version")?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().context("starting a migration")?;
        tx.execute_batch(sql).context("migrating the schema")?;
        tx.pragma_update(None, "user_version", index + 1)
            .context("recording the schema version")?;
        tx.commit().context("committing a migration")?;
    }
    if version < 4 {
        classify_old_events(conn)?;
    }
    Ok(())
}

/// Events stored before migration 4 get their kind and time from their body.
fn classify_old_events(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction().context("classifying old events")?;
    let rows = {
        let mut stmt = tx
            .prepare("SELECT session_id, seq, body FROM events WHERE kind = 0")
            .context("classifying old events")?;
        stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })
        .context("classifying old events")?
        .collect::<Result<Vec<_>, _>>()
        .context("classifying old events")?
    };
    for (id, seq, body) in rows {
        let Ok(event) = SessionEvent::decode(body.as_slice()) else {
            continue;
        };
        tx.execute(
            "UPDATE events SET kind = ?3, time_ms = ?4 WHERE session_id = ?1 AND seq = ?2",
            params![id, seq, event_kind(&event), event_time_ms(&event)],
        )
        .context("classifying old events")?;
    }
    tx.commit().context("classifying old events")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use daas_api::v1::{OutputStream, Tool};

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
    };

    #[tokio::test]
    async fn creates_stop_at_the_session_limits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
        let limits = SessionLimits {
            max_sessions: 3,
            max_per_user: 2,
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

    fn new_session(user: &str) -> NewSession {
        NewSession {
            username: user.into(),
            session_user: String::new(),
            template: "t".into(),
            request_key: None,
            pool: None,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_claims_never_share_a_pool_desktop() {
        use SessionState::*;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
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

    #[tokio::test]
    async fn sessions_get_the_lowest_free_slot_and_unique_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
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

    #[tokio::test]
    async fn moves_are_compare_and_set_along_the_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
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

    #[test]
    fn limits_and_slots_hold_across_concurrent_writers() {
        // Four connections to one file (as four processes would have),
        // creating at once: no limit overshoot, no shared slot.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let limits = SessionLimits {
            max_sessions: 30,
            max_per_user: 30,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let results = runtime.block_on(async {
            let mut tasks = Vec::new();
            for writer in 0..4 {
                let store = Store::open(&path).unwrap();
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

    #[tokio::test]
    async fn events_are_numbered_stored_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let id = {
            let store = Store::open(&path).unwrap();
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
        let store = Store::open(&path).unwrap();
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

    #[tokio::test]
    async fn activity_and_warnings_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let store = Store::open(&path).unwrap();
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
        let store = Store::open(&path).unwrap();
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

    #[tokio::test]
    async fn pages_follow_each_other_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
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
            let page = store.list_page(None, None, after, 3).await.unwrap();
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

    #[tokio::test]
    async fn a_request_key_names_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
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

    #[tokio::test]
    async fn retention_prunes_output_lines_and_keeps_stage_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
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

    #[tokio::test]
    async fn list_filters_by_user_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
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
}
