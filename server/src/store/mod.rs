//! The session store: sessions and their events, behind the
//! [`SessionStore`] seam; [`SqliteStore`] (one SQLite file) is the embedded
//! default.

use std::{ops::Deref, path::Path, sync::Arc};

use daas_api::v1::{Failure, OutputLine, Session, SessionEvent, SessionState};

use crate::{domain::time::timestamp, store::events::Subscription};

mod admission;
pub mod audit_records;
pub mod commands;
pub mod create_rate;
mod event_rows;
pub mod events;
pub mod lease;
pub mod nodes;
pub mod outbox;
pub mod pass;
mod postgres;
pub mod queue;
pub mod reports;
pub mod retention;
pub mod schedules;
pub mod signins;
pub mod snapshots;
mod sqlite;
pub mod tickets;
mod which;

#[cfg(test)]
mod conformance;

#[cfg(any(test, feature = "testkit"))]
pub use postgres::test_cluster;
pub use postgres::{Connection as PostgresConnection, PostgresStore};
pub use sqlite::SqliteStore;

/// The store failed; the message says which operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store: {context}: {source}")]
    Sqlite {
        context: &'static str,
        source: rusqlite::Error,
    },
    #[error("session store: {context}: {}", postgres::describe(.source))]
    Postgres {
        context: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("session store: cannot reach PostgreSQL: {0}")]
    Connect(String),
    #[error("session store: cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("session store: a stored event of session {0} is corrupt")]
    CorruptEvent(String),
    #[error("session store: the database task failed: {0}")]
    Task(String),
    /// The write of a group of agents' reports failed (its message).
    #[error("{0}")]
    Reports(String),
    #[error("session store: no session {0}")]
    Missing(String),
    /// Not a failure: a create would exceed a session limit.
    #[error("{}", limit_message(.0))]
    LimitReached(LimitHit),
    /// The session is no longer in the state the caller saw: someone else
    /// moved it first.
    #[error("session {id} is {} now, not {} any more", .actual.label(), .expected.label())]
    Conflict {
        id: String,
        expected: SessionState,
        actual: SessionState,
    },
    /// The state machine has no such move (a bug in the caller).
    #[error("session {id} cannot move from {} to {}", .from.label(), .to.label())]
    IllegalMove {
        id: String,
        from: SessionState,
        to: SessionState,
    },
    /// Another server works on the session and its lease still runs: this
    /// server writes nothing to it (it lost the lease, or never had it).
    #[error("session {id} is being worked on by another server; try again when it settles")]
    Fenced { id: String },
    /// Not a failure: a create repeats an earlier one (same request key);
    /// here is the session it made.
    #[error("this request already made session {}", .0.id)]
    SameRequest(Box<SessionRecord>),
    /// Not a failure of the store: no node of the cluster can take the
    /// desktop (each node with its reason).
    #[error("{0}")]
    NoRoom(crate::domain::placement::NoRoom),
}

/// How a request sees the store's failures: a limit is RESOURCE_EXHAUSTED,
/// a state that moved on a conflict, anything else internal.
impl From<StoreError> for crate::domain::error::Error {
    fn from(err: StoreError) -> Self {
        use crate::domain::error::Error;
        match err {
            StoreError::LimitReached(_) | StoreError::NoRoom(_) => Error::ResourceExhausted {
                message: err.to_string(),
                retry_after: None,
            },
            StoreError::Conflict { .. } | StoreError::Fenced { .. } => {
                Error::Conflict(err.to_string())
            }
            other => Error::Internal(Box::new(other)),
        }
    }
}

/// Which session limit a create would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// The server's `max_sessions`.
    Server(usize),
    /// The user's `max_sessions_per_user`.
    User(String, usize),
    /// The schedules a user may have.
    Schedules(String, usize),
    /// The organisation's quota (`member`: None) or one member's in it.
    Quota {
        org: String,
        member: Option<String>,
        over: crate::domain::orgs::Over,
    },
}

impl StoreError {
    /// Whether the database went away (closed, refused, restarting), not
    /// that the operation was wrong: worth trying again later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Postgres { source, .. } => postgres::is_transient(source),
            StoreError::Connect(_) => true,
            _ => false,
        }
    }
}

fn limit_message(hit: &LimitHit) -> String {
    match hit {
        LimitHit::Server(max) => format!(
            "the server already runs its maximum of {max} desktops; try again when one is destroyed"
        ),
        LimitHit::User(user, max) => {
            format!("{user} already has {max} live desktops, the most allowed; destroy one first")
        }
        LimitHit::Schedules(user, max) => {
            format!("{user} already has {max} schedules, the most allowed; remove one first")
        }
        LimitHit::Quota {
            org,
            member: None,
            over,
        } => format!(
            "organisation '{org}' is at its quota: {over} (orgs.{org}.quota.{}); {}",
            over.resource.key(),
            match over.resource {
                crate::domain::orgs::Resource::KeptDisks => {
                    "delete kept disks (`daas snapshot delete`) or ask its administrators"
                }
                _ => "wait for one of its desktops to end or ask its administrators",
            }
        ),
        LimitHit::Quota {
            org,
            member: Some(user),
            over,
        } => format!(
            "{user} is at their quota in organisation '{org}': {over} \
             (orgs.{org}.user_quota.{}); destroy one of your desktops first",
            over.resource.key()
        ),
    }
}

/// Session counts a create must stay within.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub max_per_user: usize,
    /// The quotas of the create's organisation (`NewSession::org`): its
    /// own, and each member's in it.
    pub org: Option<OrgQuotas>,
}

/// An organisation's quotas, as a create is checked against them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrgQuotas {
    pub org: crate::domain::orgs::Quota,
    pub member: crate::domain::orgs::Quota,
}

/// What the live sessions a create is checked against hold: all of them
/// (`total`), the user's (`of_user`), and, with an organisation, the
/// organisation's and the user's in it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveCounts {
    pub total: usize,
    pub of_user: usize,
    pub org: crate::domain::orgs::Amounts,
    pub user_in_org: crate::domain::orgs::Amounts,
}

/// How long a `request_id` names its session.
pub const REQUEST_ID_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// What the in-VM agent last reported, kept in the store so a restart of
/// the server resets nobody's idle clock.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActivityRecord {
    pub last_report_ms: Option<i64>,
    pub last_input_ms: Option<i64>,
    /// The last report that saw an RDP client connected.
    pub last_connected_ms: Option<i64>,
    pub rdp_clients: u32,
    pub users: Vec<String>,
    pub agent_version: String,
    /// The reaping time announced by the last IDLE_WARNING, while it holds.
    pub warned_reap_ms: Option<i64>,
}

/// One report of the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReport {
    pub idle_ms: i64,
    pub rdp_clients: u32,
    pub users: Vec<String>,
    pub agent_version: String,
}

/// A session row, as the server works with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub username: String,
    pub session_user: String,
    pub template: String,
    pub state: SessionState,
    pub slot: u32,
    pub vm_name: String,
    pub outputs: VmOutputs,
    pub failure: Option<(SessionState, String)>,
    /// The tool process group running for the session, if any.
    pub child: Option<ChildRecord>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub ready_ms: Option<i64>,
    pub activity: ActivityRecord,
    /// The warm pool the desktop was built for, if it was.
    pub pool: Option<String>,
    /// When a create claimed it from its pool; None while it waits there.
    pub claimed_ms: Option<i64>,
    /// The node the store placed its VM on; None when the module reports
    /// no nodes.
    pub node: Option<String>,
    /// Its size from the catalog; None for a session an older server made
    /// (built at `[vm]`'s size).
    pub size: Option<crate::domain::catalog::Size>,
    /// The organisation whose quota it counts against.
    pub org: Option<String>,
    /// The kept disk it is restored from; None: a fresh clone.
    pub restore_from: Option<String>,
}

impl SessionRecord {
    /// A warm pool's desktop nobody has claimed yet.
    pub fn is_unclaimed(&self) -> bool {
        self.pool.is_some() && self.claimed_ms.is_none()
    }

    /// A warm pool's desktop that a create claimed.
    pub fn is_claimed(&self) -> bool {
        self.pool.is_some() && self.claimed_ms.is_some()
    }
}

/// A tool's process group, as recorded when it started: a restarted server
/// touches it only if the process is still the same one (see
/// [`crate::provision::tool::process_identity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRecord {
    pub pgid: i32,
    /// How the tool is stopped, the boot id and the process's start time.
    pub identity: String,
}

/// Where a page of sessions ends: the last session it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub created_ms: i64,
    pub id: String,
}

/// What the Terraform module reported about the VM, and the identity the
/// server gave it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmOutputs {
    pub vm_id: String,
    pub ssh_host: String,
    pub ssh_port: u16,
    pub rdp_host: String,
    pub rdp_port: u16,
    /// SHA-256 (hex) of the xrdp certificate the server made for the VM:
    /// the only one the portal's gateway accepts. Empty for a desktop made
    /// by a server from before pinning.
    pub rdp_cert_sha256: String,
}

/// A session's Terraform files, kept in the store so that any server can
/// destroy its VM: the variables file and the state, as Terraform wrote
/// them (both hold secrets, as the session's folder does).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TerraformFiles {
    pub vars: Vec<u8>,
    pub state: Vec<u8>,
}

/// What a create request asks for.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub username: String,
    pub session_user: String,
    pub template: String,
    /// The caller and its `request_id`, when it gave one: a second create
    /// with the same key within [`REQUEST_ID_WINDOW_MS`] finds the first.
    pub request_key: Option<String>,
    /// Set for a warm pool's desktop (built for nobody yet: `username` is
    /// empty and no per-user limit applies).
    pub pool: Option<String>,
    /// The session user's password hash: kept with the session while it is
    /// QUEUED (whichever server takes the create needs it), forgotten at
    /// its first move.
    pub password: crate::domain::password::PasswordHash,
    /// Place the desktop on a node in the create's transaction, with this
    /// policy, reserving its `size` there (no size: no placement); None: the
    /// module reports no nodes (it places VMs itself).
    pub placing: Option<crate::domain::placement::Policy>,
    /// Its size from the catalog; None: `[vm]`'s (kept as no size).
    pub size: Option<crate::domain::catalog::Size>,
    /// The organisation whose quotas (`SessionLimits::org`) it counts
    /// against; None: none (a pool's desktop gets its claimer's).
    pub org: Option<String>,
    /// Why it is made, when not at a request (a schedule's desktop): the
    /// start of its first event.
    pub note: Option<String>,
    /// Restore this kept disk (a snapshot's id) instead of a fresh clone,
    /// unless another live session is restored from it already or it is
    /// gone (decided in the create's transaction).
    pub restore_from: Option<String>,
}

/// What the service, the pipeline and the reaper need of a store. Every
/// event is committed before it is published to live watchers, in sequence
/// order per session; every state change is a compare-and-set along
/// [`crate::domain::state_machine`]; a create checks the limits, takes the lowest
/// free slot and inserts in one atomic step that holds under concurrent
/// writers (the live-slot index is UNIQUE).
#[tonic::async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Live events of session `id`, published after they are stored.
    fn subscribe(&self, id: &str) -> Subscription;

    /// Calls `tap` with every event of every session from now on, after it
    /// is stored (see [`events::Tap`]: it must not block).
    fn tap(&self, tap: events::Tap);

    /// Records a new QUEUED session with the lowest free slot and a fresh VM
    /// name; returns it with its first event. The limit check, the slot and
    /// the insert are one write transaction (`BEGIN IMMEDIATE`), and the
    /// live-slot index is UNIQUE, so concurrent writers cannot overshoot a
    /// limit or share a slot.
    async fn create_session(
        &self,
        new: NewSession,
        limits: SessionLimits,
    ) -> Result<(SessionRecord, SessionEvent), StoreError>;

    /// Hands the ready, unclaimed desktop of warm pool `pool` that has
    /// waited longest to the create `new`, in one write transaction (so no
    /// two creates get the same desktop): checks the user's limit (the
    /// server's is not touched, the desktop already counts), makes the
    /// session the user's, QUEUED, with a fresh history whose first event
    /// says where the desktop came from. None: no desktop is ready.
    async fn claim(
        &self,
        new: NewSession,
        pool: &str,
        limits: SessionLimits,
    ) -> Result<Option<(SessionRecord, SessionEvent)>, StoreError>;

    /// The sessions of warm pool `pool` that are live, or that changed or
    /// were claimed at or after `since_ms`, oldest first.
    async fn pool_sessions(
        &self,
        pool: &str,
        since_ms: i64,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Moves a session from `from` (the state the caller saw) to `to`,
    /// recording the stage change (and, for FAILED, the failure) as an
    /// event. Fails with [`StoreError::Conflict`] when the session is no
    /// longer in `from`, and with [`StoreError::IllegalMove`] when the state
    /// machine has no such move.
    async fn transition(
        &self,
        id: &str,
        from: SessionState,
        to: SessionState,
        message: String,
        failure: Option<(SessionState, String)>,
    ) -> Result<SessionEvent, StoreError>;

    /// Records a line of tool output as an event of the session.
    async fn output(&self, id: &str, line: OutputLine) -> Result<SessionEvent, StoreError>;

    /// Stores what the Terraform module reported about the VM.
    async fn set_outputs(&self, id: &str, outputs: VmOutputs) -> Result<(), StoreError>;

    /// Remembers the process group of the tool running for a session, so a
    /// restarted server can adopt or stop what a crashed one left running.
    async fn set_child(&self, id: &str, child: Option<ChildRecord>) -> Result<(), StoreError>;

    /// Keeps the session's Terraform files (None: forgets them, once its
    /// VM is destroyed).
    async fn set_terraform(
        &self,
        id: &str,
        files: Option<TerraformFiles>,
    ) -> Result<(), StoreError>;

    /// The session's Terraform files, if kept.
    async fn terraform(&self, id: &str) -> Result<Option<TerraformFiles>, StoreError>;

    /// This server's name in the leases it holds.
    fn server(&self) -> &str;

    /// Whether other servers may share the store (and hold leases): false
    /// for the embedded file, whose one server owns every session.
    fn is_shared(&self) -> bool;

    /// This deployment's id, made once with the database: the same for
    /// every server sharing it, another for another database. The modules
    /// record it with the VMs they make (`terraform/CONTRACT.md`).
    async fn deployment(&self) -> Result<String, StoreError>;

    /// The deployment's secret `name`, shared by every server of the
    /// store: the one kept, or `proposed`, kept now, when there is none
    /// (the first server to ask sets it).
    async fn deployment_secret(&self, name: &str, proposed: Vec<u8>)
    -> Result<Vec<u8>, StoreError>;

    /// How long the leases this server takes run unless renewed.
    fn set_lease(&self, lease_ms: i64);

    /// Renews the lease of every session this server works on; returns
    /// how many.
    async fn renew_leases(&self) -> Result<u64, StoreError>;

    /// Takes the lease of session `id`, in progress, from a server whose
    /// lease ran out (or, with `force`, from whatever server held it: the
    /// embedded store's previous process). False: it is not in progress,
    /// or another server's lease still runs.
    async fn take_over(&self, id: &str, force: bool) -> Result<bool, StoreError>;

    /// Takes over every session in progress whose server's lease ran out
    /// (or that no server holds, but for a create given back to the
    /// queue), in one statement; their ids.
    async fn take_over_expired(&self) -> Result<Vec<String>, StoreError>;

    /// Takes, for this server, the QUEUED create (not a warm pool's) that
    /// has waited longest, at least `waited_ms`, under another server or
    /// none, with the password hash it kept (see [`queue`]): a new epoch,
    /// so the server it waited on writes nothing more to it. None: no
    /// create waits that long.
    async fn take_queued(
        &self,
        waited_ms: i64,
    ) -> Result<Option<(SessionRecord, crate::domain::password::PasswordHash)>, StoreError>;

    /// Gives QUEUED session `id`, which this server holds, back to the
    /// queue: held by no server, it is not taken over but taken, by
    /// [`SessionStore::take_queued`], by a server with a free permit
    /// (see [`queue`]). False: it moved on, or this server lost it.
    async fn release_queued(&self, id: &str) -> Result<bool, StoreError>;

    /// The password hash QUEUED session `id` kept (see [`queue`]); None
    /// when it is not QUEUED or kept none.
    async fn queued_password(
        &self,
        id: &str,
    ) -> Result<Option<crate::domain::password::PasswordHash>, StoreError>;

    /// The pass named `name` (see [`pass`]), unless another server, or
    /// this one, runs it now.
    async fn try_pass(&self, name: &str) -> Result<Option<pass::Pass>, StoreError>;

    /// Sets which webhooks want which event: each stored event gets a
    /// delivery row per webhook that wants it, in its transaction.
    fn set_outbox(&self, outbox: events::Outbox);

    /// Takes up to `limit` due deliveries (nobody holds them, or their
    /// holder's time ran out) for `hold_ms`, oldest first.
    async fn claim_deliveries(
        &self,
        limit: usize,
        hold_ms: i64,
    ) -> Result<Vec<outbox::Delivery>, StoreError>;

    /// Holds deliveries this server took for `hold_ms` more.
    async fn hold_deliveries(&self, ids: Vec<String>, hold_ms: i64) -> Result<(), StoreError>;

    /// Forgets a settled delivery (delivered, refused or given up).
    async fn finish_delivery(&self, id: &str) -> Result<(), StoreError>;

    /// Takes one of `user`'s creates at `rate` (see [`create_rate`]): None,
    /// or how many milliseconds until one is free (nothing taken).
    async fn take_create(
        &self,
        user: &str,
        rate: create_rate::Rate,
    ) -> Result<Option<u64>, StoreError>;

    /// Keeps a gateway ticket unless `limits` are reached (expired tickets
    /// are forgotten first).
    async fn issue_ticket(
        &self,
        ticket: tickets::TicketRecord,
        limits: tickets::TicketLimits,
    ) -> Result<tickets::Issued, StoreError>;

    /// Uses up the ticket whose value hashes to `hash`: it, if it existed.
    async fn redeem_ticket(&self, hash: &str) -> Result<Option<tickets::TicketRecord>, StoreError>;

    /// Keeps a command (an encoded `daas.v1.AgentCommand`) for session
    /// `id`'s agent; its id. Rows older than an hour go first.
    async fn push_command(&self, id: &str, body: Vec<u8>) -> Result<i64, StoreError>;

    /// Takes the commands of session `id` that no agent has, oldest first:
    /// they are sent from now, and their bodies leave the store.
    async fn take_commands(&self, id: &str) -> Result<Vec<commands::TakenCommand>, StoreError>;

    /// Records the outcome of a sent command; false when it is not sent
    /// (withdrawn, finished, or never existed).
    async fn finish_command(
        &self,
        id: &str,
        command: i64,
        outcome: daas_api::v1::CommandOutcome,
        message: &str,
    ) -> Result<bool, StoreError>;

    /// Where a command stands; None when it was dropped.
    async fn command_state(
        &self,
        id: &str,
        command: i64,
    ) -> Result<Option<commands::CommandState>, StoreError>;

    /// Drops a command (see [`commands::DropIf`]); false when there was
    /// none to drop.
    async fn drop_command(
        &self,
        id: &str,
        command: i64,
        when: commands::DropIf,
    ) -> Result<bool, StoreError>;

    /// Records an agent's report: the activity and when it came.
    async fn record_activity(&self, id: &str, report: AgentReport) -> Result<(), StoreError> {
        let report = reports::Report {
            session: id.to_string(),
            report,
            at_ms: crate::domain::time::now_ms(),
        };
        self.record_activities(vec![report]).await
    }

    /// Records agents' reports, one per session, in one write.
    async fn record_activities(&self, reports: Vec<reports::Report>) -> Result<(), StoreError>;

    /// Records an IDLE_WARNING event and remembers the announced time.
    async fn idle_warning(
        &self,
        id: &str,
        reap_at_ms: i64,
        reason: String,
    ) -> Result<SessionEvent, StoreError>;

    /// Forgets a warning whose reason went away (the desktop is used again).
    async fn clear_warning(&self, id: &str) -> Result<(), StoreError>;

    /// Frees the session's slot once its VM is known to be gone.
    async fn release_slot(&self, id: &str) -> Result<(), StoreError>;

    /// Records what `inventory nodes` reported: each listed node as it
    /// is now (its drained flag kept); a node no longer listed stays,
    /// offline and marked absent. None: the module reports no nodes, so
    /// the store forgets them all.
    async fn record_nodes(
        &self,
        listed: Option<Vec<crate::domain::placement::ListedNode>>,
    ) -> Result<(), StoreError>;

    /// The nodes as last recorded, with the desktops, pool desktops and
    /// clones the store places on each, by name.
    async fn nodes(&self) -> Result<Vec<nodes::NodeRecord>, StoreError>;

    /// Drains node `name` (no new desktops) or resumes it; false when the
    /// store knows no such node.
    async fn set_drained(&self, name: &str, drained: bool) -> Result<bool, StoreError>;

    /// Whether session `id` may start its clone now: fewer than the
    /// policy's `max_clones_per_node` clones run on its node, and fewer than
    /// its `max_clones_per_storage` from its storage, when placement named
    /// one (one transaction, so no two take the last turn); if so, its
    /// clone counts from now until [`Self::end_clone`] or its next state
    /// change.
    async fn begin_clone(
        &self,
        id: &str,
        policy: crate::domain::placement::Policy,
    ) -> Result<nodes::CloneTurn, StoreError>;

    /// Session `id`'s clone is over.
    async fn end_clone(&self, id: &str) -> Result<(), StoreError>;

    /// One session, if it exists.
    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// The session whose VM is `vm_name`, if any.
    async fn by_vm_name(&self, vm_name: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// The sessions placed on cluster node `node` whose slot is still held
    /// (their VM may exist), oldest first.
    async fn placed_on(&self, node: &str) -> Result<Vec<SessionRecord>, StoreError>;

    /// The session an earlier create with this request key made, if any.
    async fn by_request(&self, key: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Every session, newest first, filtered by user and state when given.
    async fn list(
        &self,
        username: Option<String>,
        state: Option<SessionState>,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// At most `limit` sessions, newest first, after `after` (the last
    /// session of the previous page), filtered by user, organisation and
    /// state when given.
    async fn list_page(
        &self,
        username: Option<String>,
        org: Option<String>,
        state: Option<SessionState>,
        after: Option<PageCursor>,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// What the live sessions (all but FAILED, DESTROYED and LOST) of
    /// organisation `org` and/or user `username` hold (everyone's when
    /// neither is given).
    async fn usage(
        &self,
        org: Option<String>,
        username: Option<String>,
    ) -> Result<crate::domain::orgs::Amounts, StoreError>;

    /// Deletes tool output lines recorded before `before_ms`; stage changes
    /// and warnings are kept. Returns how many went.
    async fn prune_output(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// Sessions the server was working on (provisioning or destroying).
    async fn in_progress(&self) -> Result<Vec<SessionRecord>, StoreError>;

    /// Events of a session with a sequence above `after`, in order.
    async fn events_after(&self, id: &str, after: u64) -> Result<Vec<SessionEvent>, StoreError>;

    /// Proves the store takes writes (a write transaction that changes
    /// nothing), for the server's readiness.
    async fn check_writable(&self) -> Result<(), StoreError>;

    /// How many sessions each (state, template) has, for the metrics.
    async fn count_by_state(&self) -> Result<Vec<(SessionState, String, u64)>, StoreError>;

    /// Appends an entry to the audit trail; returns its id.
    async fn append_audit(&self, record: audit_records::AuditRecord) -> Result<i64, StoreError>;

    /// Audit entries matching `filter`, newest first.
    async fn audit_page(
        &self,
        filter: audit_records::AuditFilter,
    ) -> Result<Vec<audit_records::AuditRecord>, StoreError>;

    /// Deletes audit entries recorded before `before_ms`; returns how many.
    async fn prune_audit(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// Records a portal sign-in unless the user or the portal is full,
    /// after deleting the sign-ins that have ended, in one write
    /// transaction.
    async fn open_signin(
        &self,
        signin: signins::SignInRecord,
        limits: signins::SignInLimits,
    ) -> Result<signins::SignInOpened, StoreError>;

    /// The sign-in whose cookie id hashes to `id_hash`, if it exists.
    async fn signin(&self, id_hash: &str) -> Result<Option<signins::SignInRecord>, StoreError>;

    /// Records that the sign-in was used at `last_seen_ms`.
    async fn touch_signin(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), StoreError>;

    /// Records a recheck of the sign-in's user: their role and groups, and
    /// when.
    async fn recheck_signin(
        &self,
        id_hash: &str,
        admin: bool,
        groups: Vec<String>,
        checked_ms: i64,
    ) -> Result<Option<signins::SignInRecord>, StoreError>;

    /// Deletes the sign-in; returns it as it was.
    async fn close_signin(
        &self,
        id_hash: &str,
    ) -> Result<Option<signins::SignInRecord>, StoreError>;

    /// Records a schedule unless its user has `max_per_user` already
    /// (`LimitReached`), in one write transaction.
    async fn add_schedule(
        &self,
        schedule: schedules::ScheduleRecord,
        max_per_user: usize,
    ) -> Result<(), StoreError>;

    /// The schedules `which` names, by user and time.
    async fn schedules(
        &self,
        which: schedules::Which,
    ) -> Result<Vec<schedules::ScheduleRecord>, StoreError>;

    /// Deletes schedule `id`; returns it as it was.
    async fn remove_schedule(
        &self,
        id: &str,
    ) -> Result<Option<schedules::ScheduleRecord>, StoreError>;

    /// Records a kept disk (once: a second keep of the same id changes
    /// nothing).
    async fn keep_snapshot(&self, snapshot: snapshots::SnapshotRecord) -> Result<(), StoreError>;

    /// The kept disks `which` names, newest first, each with the live
    /// session restored from it, if any.
    async fn snapshots(
        &self,
        which: snapshots::Which,
    ) -> Result<Vec<snapshots::SnapshotRecord>, StoreError>;

    /// Deletes kept disk `id`'s record; returns it as it was.
    async fn forget_snapshot(
        &self,
        id: &str,
    ) -> Result<Option<snapshots::SnapshotRecord>, StoreError>;

    /// Records that schedule `id` acted on its occurrence `due_ms` at
    /// `now_ms`, unless it (or a later one) was acted on already: whether
    /// this call recorded it.
    async fn schedule_ran(
        &self,
        id: &str,
        due_ms: i64,
        now_ms: i64,
        ran: schedules::Ran,
    ) -> Result<bool, StoreError>;
}

/// The server's store: a cheap handle on a [`SessionStore`].
#[derive(Clone)]
pub struct Store(Arc<dyn SessionStore>);

impl Store {
    /// The embedded default: the SQLite file at `path` (created and
    /// migrated as needed).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store(Arc::new(SqliteStore::open(path)?)))
    }

    /// The store `config` names: its PostgreSQL when `[store] url` is
    /// set (connected, the schema brought up to date), else the embedded
    /// SQLite file.
    pub async fn connect(config: &crate::config::Config) -> Result<Store, StoreError> {
        match &config.postgres {
            None => Store::open(&config.database),
            Some(postgres) => {
                let connection = PostgresConnection::from_config(
                    postgres,
                    config.secrets.store_password.as_ref(),
                )?;
                Ok(Store(Arc::new(PostgresStore::connect(connection).await?)))
            }
        }
    }

    /// Which store this is, for messages: the SQLite file or the URL.
    pub fn describe(config: &crate::config::Config) -> String {
        match &config.postgres {
            None => config.database.display().to_string(),
            Some(postgres) => postgres.describe().to_string(),
        }
    }

    /// Another backend.
    pub fn new(backend: Arc<dyn SessionStore>) -> Store {
        Store(backend)
    }
}

impl Deref for Store {
    type Target = dyn SessionStore;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

pub(crate) fn state_from_db(value: i32) -> SessionState {
    SessionState::try_from(value).unwrap_or(SessionState::Unspecified)
}

/// A session's size as the columns keep it; None without a name (a session
/// an older server made).
pub(crate) fn size_from_columns(
    name: String,
    cores: i64,
    memory_mb: i64,
    disk_gb: i64,
) -> Option<crate::domain::catalog::Size> {
    (!name.is_empty()).then(|| crate::domain::catalog::Size {
        name,
        cores: u32::try_from(cores).unwrap_or(0),
        memory_mb: u64::try_from(memory_mb).unwrap_or(0),
        disk_gb: u32::try_from(disk_gb).unwrap_or(0),
    })
}

/// What a new session's row keeps of its size: name, cores, memory and
/// disk (no size: `""` and zeros).
pub(crate) fn size_columns(new: &NewSession) -> (String, i64, i64, i64) {
    match &new.size {
        Some(s) => (
            s.name.clone(),
            i64::from(s.cores),
            i64::try_from(s.memory_mb).unwrap_or(i64::MAX),
            i64::from(s.disk_gb),
        ),
        None => (String::new(), 0, 0, 0),
    }
}

impl SessionRecord {
    /// The session as the API shows it.
    pub fn to_proto(&self) -> Session {
        Session {
            id: self.id.clone(),
            username: self.username.clone(),
            session_user: self.session_user.clone(),
            template: self.template.clone(),
            state: self.state as i32,
            vm_name: self.vm_name.clone(),
            vm_id: self.outputs.vm_id.clone(),
            rdp_host: self.outputs.rdp_host.clone(),
            rdp_port: u32::from(self.outputs.rdp_port),
            ssh_host: self.outputs.ssh_host.clone(),
            ssh_port: u32::from(self.outputs.ssh_port),
            created_at: Some(timestamp(self.created_ms)),
            updated_at: Some(timestamp(self.updated_ms)),
            ready_at: self.ready_ms.map(timestamp),
            failure: self.failure.as_ref().map(|(stage, reason)| Failure {
                stage: *stage as i32,
                reason: reason.clone(),
            }),
            activity: None,
            pool: self.pool.clone().unwrap_or_default(),
            node: self.node.clone().unwrap_or_default(),
            size: self.size.as_ref().map(|s| s.to_proto()),
            org: self.org.clone().unwrap_or_default(),
            restored_from: self.restore_from.clone().unwrap_or_default(),
        }
    }
}
