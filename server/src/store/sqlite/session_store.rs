//! [`SessionStore`] for [`SqliteStore`]: each method runs its query (from
//! `sessions.rs`, `reads.rs`, `event_log.rs`, `activity.rs`, `audit.rs` or
//! `signins.rs`) on the connection, on a blocking thread.

use daas_api::v1::{OutputLine, SessionEvent, SessionState};

use super::{
    SqliteStore, activity, audit, check_writable, commands, create_rate, event_log, leases, nodes,
    outbox, reads, schedules, sessions, signins, snapshots, tickets,
};
use crate::domain::password::PasswordHash;
use crate::domain::placement::{ListedNode, Policy};
use crate::store::{
    ChildRecord, NewSession, PageCursor, SessionLimits, SessionRecord, SessionStore, StoreError,
    TerraformFiles, VmOutputs,
    audit_records::{AuditFilter, AuditRecord},
    events::{Subscription, Tap},
    nodes::{CloneTurn, NodeRecord},
    queue,
    schedules::{Ran, ScheduleRecord},
    signins::{SignInLimits, SignInOpened, SignInRecord},
    snapshots::{SnapshotRecord, Which},
};

#[tonic::async_trait]
impl SessionStore for SqliteStore {
    fn subscribe(&self, id: &str) -> Subscription {
        self.hub.subscribe(id)
    }

    fn tap(&self, tap: Tap) {
        self.hub.tap(tap);
    }

    async fn create_session(
        &self,
        new: NewSession,
        limits: SessionLimits,
    ) -> Result<(SessionRecord, SessionEvent), StoreError> {
        self.with_holder(move |conn, live, holder| {
            sessions::create(conn, live, holder, new, limits)
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
        self.with_holder(move |conn, live, holder| {
            sessions::claim(conn, live, holder, new, pool, limits)
        })
        .await
    }

    async fn pool_sessions(
        &self,
        pool: &str,
        since_ms: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let pool = pool.to_string();
        self.with(move |conn, _| reads::pool_sessions(conn, pool, since_ms))
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
        self.with_holder(move |conn, live, holder| {
            sessions::transition(conn, live, holder, id, (from, to), message, failure)
        })
        .await
    }

    async fn output(&self, id: &str, line: OutputLine) -> Result<SessionEvent, StoreError> {
        let id = id.to_string();
        self.with_holder(move |conn, live, holder| event_log::output(conn, live, holder, id, line))
            .await
    }

    async fn set_outputs(&self, id: &str, outputs: VmOutputs) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with_holder(move |conn, _, holder| sessions::set_outputs(conn, holder, id, outputs))
            .await
    }

    async fn set_child(&self, id: &str, child: Option<ChildRecord>) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with_holder(move |conn, _, holder| sessions::set_child(conn, holder, id, child))
            .await
    }

    fn server(&self) -> &str {
        &self.holder.me
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn deployment(&self) -> Result<String, StoreError> {
        self.with(|conn, _| {
            use super::Context;
            conn.query_row("SELECT id FROM deployment", [], |row| row.get(0))
                .context("reading the deployment id")
        })
        .await
    }

    async fn deployment_secret(
        &self,
        name: &str,
        proposed: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let name = name.to_string();
        self.with(move |conn, _| {
            use super::Context;
            conn.execute(
                "INSERT OR IGNORE INTO deployment_secrets (name, value, created_ms) \
                 VALUES (?1, ?2, ?3)",
                rusqlite::params![name, proposed, crate::domain::time::now_ms()],
            )
            .context("keeping a deployment secret")?;
            conn.query_row(
                "SELECT value FROM deployment_secrets WHERE name = ?1",
                [&name],
                |row| row.get(0),
            )
            .context("reading a deployment secret")
        })
        .await
    }

    async fn try_pass(&self, name: &str) -> Result<Option<crate::store::pass::Pass>, StoreError> {
        Ok(self.passes.try_take(name))
    }

    fn set_lease(&self, lease_ms: i64) {
        self.holder
            .lease_ms
            .store(lease_ms, std::sync::atomic::Ordering::Relaxed);
    }

    async fn renew_leases(&self) -> Result<u64, StoreError> {
        self.with_holder(move |conn, _, holder| leases::renew(conn, holder))
            .await
    }

    async fn take_over_expired(&self) -> Result<Vec<String>, StoreError> {
        self.with_holder(|conn, _, holder| leases::take_over_expired(conn, holder))
            .await
    }

    async fn take_over(&self, id: &str, force: bool) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_holder(move |conn, _, holder| leases::take_over(conn, holder, id, force))
            .await
    }

    async fn take_queued(
        &self,
        waited_ms: i64,
    ) -> Result<Option<(SessionRecord, PasswordHash)>, StoreError> {
        self.with_holder(move |conn, _, holder| {
            let Some((id, kept)) = leases::take_queued(conn, holder, waited_ms)? else {
                return Ok(None);
            };
            let record = reads::get_session(conn, &id)?.ok_or(StoreError::Missing(id))?;
            Ok(queue::password_of(kept).map(|hash| (record, hash)))
        })
        .await
    }

    async fn release_queued(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_holder(move |conn, _, holder| leases::release_queued(conn, holder, &id))
            .await
    }

    async fn queued_password(&self, id: &str) -> Result<Option<PasswordHash>, StoreError> {
        let id = id.to_string();
        let kept = self
            .with(move |conn, _| leases::queued_password(conn, &id))
            .await?;
        Ok(queue::password_of(kept))
    }

    async fn set_terraform(
        &self,
        id: &str,
        files: Option<TerraformFiles>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with_holder(move |conn, _, holder| sessions::set_terraform(conn, holder, id, files))
            .await
    }

    async fn terraform(&self, id: &str) -> Result<Option<TerraformFiles>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| sessions::terraform(conn, id))
            .await
    }

    async fn take_create(
        &self,
        user: &str,
        rate: crate::store::create_rate::Rate,
    ) -> Result<Option<u64>, StoreError> {
        let user = user.to_string();
        self.with(move |conn, _| create_rate::take(conn, user, rate))
            .await
    }

    async fn issue_ticket(
        &self,
        ticket: crate::store::tickets::TicketRecord,
        limits: crate::store::tickets::TicketLimits,
    ) -> Result<crate::store::tickets::Issued, StoreError> {
        self.with(move |conn, _| tickets::issue(conn, ticket, limits))
            .await
    }

    async fn redeem_ticket(
        &self,
        hash: &str,
    ) -> Result<Option<crate::store::tickets::TicketRecord>, StoreError> {
        let hash = hash.to_string();
        self.with(move |conn, _| tickets::redeem(conn, hash)).await
    }

    async fn push_command(&self, id: &str, body: Vec<u8>) -> Result<i64, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| commands::push(conn, &id, &body))
            .await
    }

    async fn take_commands(
        &self,
        id: &str,
    ) -> Result<Vec<crate::store::commands::TakenCommand>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| commands::take(conn, &id)).await
    }

    async fn finish_command(
        &self,
        id: &str,
        command: i64,
        outcome: daas_api::v1::CommandOutcome,
        message: &str,
    ) -> Result<bool, StoreError> {
        let (id, message) = (id.to_string(), message.to_string());
        self.with(move |conn, _| commands::finish(conn, &id, command, outcome.into(), &message))
            .await
    }

    async fn command_state(
        &self,
        id: &str,
        command: i64,
    ) -> Result<Option<crate::store::commands::CommandState>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| commands::state(conn, &id, command))
            .await
    }

    async fn drop_command(
        &self,
        id: &str,
        command: i64,
        when: crate::store::commands::DropIf,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| commands::drop(conn, &id, command, when))
            .await
    }

    fn set_outbox(&self, outbox: crate::store::events::Outbox) {
        self.hub.set_outbox(outbox);
    }

    async fn claim_deliveries(
        &self,
        limit: usize,
        hold_ms: i64,
    ) -> Result<Vec<crate::store::outbox::Delivery>, StoreError> {
        self.with_holder(move |conn, _, holder| outbox::claim(conn, holder, limit, hold_ms))
            .await
    }

    async fn hold_deliveries(&self, ids: Vec<String>, hold_ms: i64) -> Result<(), StoreError> {
        self.with_holder(move |conn, _, holder| outbox::hold(conn, holder, ids, hold_ms))
            .await
    }

    async fn finish_delivery(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| outbox::finish(conn, id)).await
    }

    async fn record_activities(
        &self,
        reports: Vec<crate::store::reports::Report>,
    ) -> Result<(), StoreError> {
        self.with(move |conn, _| activity::record_activities(conn, reports))
            .await
    }

    async fn idle_warning(
        &self,
        id: &str,
        reap_at_ms: i64,
        reason: String,
    ) -> Result<SessionEvent, StoreError> {
        let id = id.to_string();
        self.with(move |conn, live| activity::idle_warning(conn, live, id, reap_at_ms, reason))
            .await
    }

    async fn clear_warning(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| activity::clear_warning(conn, id))
            .await
    }

    async fn release_slot(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with_holder(move |conn, _, holder| sessions::release_slot(conn, holder, id))
            .await
    }

    async fn record_nodes(&self, listed: Option<Vec<ListedNode>>) -> Result<(), StoreError> {
        self.with(move |conn, _| nodes::record(conn, listed)).await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.with(|conn, _| nodes::list(conn)).await
    }

    async fn set_drained(&self, name: &str, drained: bool) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.with(move |conn, _| nodes::set_drained(conn, name, drained))
            .await
    }

    async fn begin_clone(&self, id: &str, policy: Policy) -> Result<CloneTurn, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| nodes::begin_clone(conn, id, policy))
            .await
    }

    async fn end_clone(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| nodes::end_clone(conn, id)).await
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| reads::get_session(conn, &id))
            .await
    }

    async fn by_vm_name(&self, vm_name: &str) -> Result<Option<SessionRecord>, StoreError> {
        let vm_name = vm_name.to_string();
        self.with(move |conn, _| reads::by_vm_name(conn, vm_name))
            .await
    }

    async fn placed_on(&self, node: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let node = node.to_string();
        self.with(move |conn, _| reads::placed_on(conn, node)).await
    }

    async fn by_request(&self, key: &str) -> Result<Option<SessionRecord>, StoreError> {
        let key = key.to_string();
        self.with(move |conn, _| reads::by_request_key(conn, &key))
            .await
    }

    async fn list(
        &self,
        username: Option<String>,
        state: Option<SessionState>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.list_page(username, None, state, None, u32::MAX).await
    }

    async fn list_page(
        &self,
        username: Option<String>,
        org: Option<String>,
        state: Option<SessionState>,
        after: Option<PageCursor>,
        limit: u32,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.with(move |conn, _| reads::list_page(conn, (username, org), state, after, limit))
            .await
    }

    async fn usage(
        &self,
        org: Option<String>,
        username: Option<String>,
    ) -> Result<crate::domain::orgs::Amounts, StoreError> {
        self.with(move |conn, _| reads::usage(conn, org, username))
            .await
    }

    async fn prune_output(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(move |conn, _| event_log::prune_output(conn, before_ms))
            .await
    }

    async fn prune_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.with(move |conn, _| audit::prune(conn, before_ms))
            .await
    }

    async fn open_signin(
        &self,
        r: SignInRecord,
        limits: SignInLimits,
    ) -> Result<SignInOpened, StoreError> {
        self.with(move |conn, _| signins::open(conn, r, limits))
            .await
    }

    async fn signin(&self, id_hash: &str) -> Result<Option<SignInRecord>, StoreError> {
        let id_hash = id_hash.to_string();
        self.with(move |conn, _| signins::signin_row(conn, &id_hash))
            .await
    }

    async fn touch_signin(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), StoreError> {
        let id_hash = id_hash.to_string();
        self.with(move |conn, _| signins::touch(conn, id_hash, last_seen_ms))
            .await
    }

    async fn recheck_signin(
        &self,
        id_hash: &str,
        admin: bool,
        groups: Vec<String>,
        checked_ms: i64,
    ) -> Result<Option<SignInRecord>, StoreError> {
        let id_hash = id_hash.to_string();
        self.with(move |conn, _| signins::recheck(conn, id_hash, admin, groups, checked_ms))
            .await
    }

    async fn close_signin(&self, id_hash: &str) -> Result<Option<SignInRecord>, StoreError> {
        let id_hash = id_hash.to_string();
        self.with(move |conn, _| signins::close(conn, id_hash))
            .await
    }

    async fn add_schedule(
        &self,
        schedule: ScheduleRecord,
        max_per_user: usize,
    ) -> Result<(), StoreError> {
        self.with(move |conn, _| schedules::add(conn, schedule, max_per_user))
            .await
    }

    async fn schedules(
        &self,
        which: crate::store::schedules::Which,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.with(move |conn, _| schedules::list(conn, which)).await
    }

    async fn remove_schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| schedules::remove(conn, id)).await
    }

    async fn keep_snapshot(&self, snapshot: SnapshotRecord) -> Result<(), StoreError> {
        self.with(move |conn, _| snapshots::keep(conn, snapshot))
            .await
    }

    async fn snapshots(&self, which: Which) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.with(move |conn, _| snapshots::list(conn, which)).await
    }

    async fn forget_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| snapshots::forget(conn, id)).await
    }

    async fn schedule_ran(
        &self,
        id: &str,
        due_ms: i64,
        now_ms: i64,
        ran: Ran,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| schedules::ran(conn, id, due_ms, now_ms, ran))
            .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.with(move |conn, _| check_writable(conn)).await
    }

    async fn append_audit(&self, r: AuditRecord) -> Result<i64, StoreError> {
        self.with(move |conn, _| audit::append(conn, r)).await
    }

    async fn audit_page(&self, f: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.with(move |conn, _| audit::page(conn, f)).await
    }

    async fn count_by_state(&self) -> Result<Vec<(SessionState, String, u64)>, StoreError> {
        self.with(move |conn, _| reads::count_by_state(conn)).await
    }

    async fn in_progress(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.with(move |conn, _| reads::in_progress(conn)).await
    }

    async fn events_after(&self, id: &str, after: u64) -> Result<Vec<SessionEvent>, StoreError> {
        let id = id.to_string();
        self.with(move |conn, _| event_log::events_after(conn, id, after))
            .await
    }
}
