//! [`SessionStore`] for [`PostgresStore`]: each method runs its query (from
//! `sessions.rs`, `reads.rs`, `event_log.rs`, `activity.rs` or
//! `records.rs`) on a pooled connection; a write of several statements is
//! one transaction, and its event is published once it is committed.

use std::{future::Future, pin::Pin};

use daas_api::v1::{OutputLine, SessionEvent, SessionState};
use tokio_postgres::Transaction;

use super::{
    Context, PostgresStore, activity, commands, create_rate, event_log, leases, nodes, notify,
    outbox, reads, records, schedules, sessions, snapshots, tickets,
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
    reports::Report,
    schedules::{Ran, ScheduleRecord},
    signins::{SignInLimits, SignInOpened, SignInRecord},
    snapshots::{SnapshotRecord, Which},
    tickets::{Issued, TicketLimits, TicketRecord},
};

/// The work of one transaction.
type Work<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

impl PostgresStore {
    /// Runs `work` in a transaction and commits it (`what` names the commit
    /// in an error). The event `event_of` finds in the result, if any, is
    /// notified to the other servers in the transaction and published
    /// here once it is committed.
    async fn write<T: Send>(
        &self,
        what: &'static str,
        event_of: fn(&T) -> Option<&SessionEvent>,
        work: impl for<'a> Fn(&'a Transaction<'a>) -> Work<'a, T> + Send + Sync,
    ) -> Result<T, StoreError> {
        let mut retry = super::reconnect::Retry::new();
        loop {
            let mut client = self.client().await?;
            // Up to the commit, a transaction the database cut off had no
            // effect: it runs again. The commit's own failure is returned
            // (whether it took effect is unknown).
            let tx = client.transaction().await.context("starting a transaction");
            let attempt = match tx {
                Ok(tx) => match work(&tx).await {
                    Ok(out) => match event_of(&out) {
                        Some(event) => self.announce(&tx, event).await.map(|()| (tx, out)),
                        None => Ok((tx, out)),
                    },
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            let (tx, out) = match attempt {
                Ok(done) => done,
                Err(err) if retry.again(&err).await => continue,
                Err(err) => return Err(err),
            };
            tx.commit().await.context(what)?;
            if let Some(event) = event_of(&out) {
                self.hub.publish(event);
            }
            return Ok(out);
        }
    }
}

impl PostgresStore {
    /// In the transaction storing `event`: its webhook deliveries, and the
    /// notification other servers' watchers get.
    async fn announce(&self, tx: &Transaction<'_>, event: &SessionEvent) -> Result<(), StoreError> {
        outbox::insert(tx, &self.hub.outbox_for(event), event).await?;
        notify::notify(tx, &self.server, &event.session_id, event.sequence).await
    }
}

/// For a write that makes no event.
fn none<T>(_: &T) -> Option<&SessionEvent> {
    None
}

fn itself(event: &SessionEvent) -> Option<&SessionEvent> {
    Some(event)
}

fn claimed_event(claimed: &Option<(SessionRecord, SessionEvent)>) -> Option<&SessionEvent> {
    claimed.as_ref().map(|(_, event)| event)
}

fn second<R>((_, event): &(R, SessionEvent)) -> Option<&SessionEvent> {
    Some(event)
}

#[tonic::async_trait]
impl SessionStore for PostgresStore {
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
        let holder = self.holder();
        self.write("committing a new session", second, move |tx| {
            let (holder, new) = (holder.clone(), new.clone());
            Box::pin(async move { sessions::create(tx, &holder, new, limits).await })
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
        let holder = self.holder();
        self.write("committing a claim", claimed_event, move |tx| {
            let (holder, new, pool) = (holder.clone(), new.clone(), pool.clone());
            Box::pin(async move { sessions::claim(tx, &holder, new, &pool, limits).await })
        })
        .await
    }

    async fn pool_sessions(
        &self,
        pool: &str,
        since_ms: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.retrying(|| async {
            reads::pool_sessions(&**self.client().await?, pool, since_ms).await
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
        let holder = self.holder();
        self.write("committing a stage change", itself, move |tx| {
            let (holder, id) = (holder.clone(), id.clone());
            let (message, failure) = (message.clone(), failure.clone());
            Box::pin(async move {
                sessions::transition(tx, &holder, &id, from, to, message, failure).await
            })
        })
        .await
    }

    async fn output(&self, id: &str, line: OutputLine) -> Result<SessionEvent, StoreError> {
        let id = id.to_string();
        let holder = self.holder();
        self.write("committing an output line", itself, move |tx| {
            let (holder, id, line) = (holder.clone(), id.clone(), line.clone());
            Box::pin(async move { event_log::output(tx, &holder, &id, line).await })
        })
        .await
    }

    async fn set_outputs(&self, id: &str, outputs: VmOutputs) -> Result<(), StoreError> {
        self.retrying(|| async {
            sessions::set_outputs(&**self.client().await?, &self.holder(), id, outputs.clone())
                .await
        })
        .await
    }

    async fn set_child(&self, id: &str, child: Option<ChildRecord>) -> Result<(), StoreError> {
        self.retrying(|| async {
            sessions::set_child(&**self.client().await?, &self.holder(), id, child.clone()).await
        })
        .await
    }

    fn server(&self) -> &str {
        &self.server
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn deployment(&self) -> Result<String, StoreError> {
        self.retrying(|| async {
            let client = self.client().await?;
            let row = client.query_one("SELECT id FROM deployment", &[]).await;
            row.and_then(|row| row.try_get(0))
                .context("reading the deployment id")
        })
        .await
    }

    async fn deployment_secret(
        &self,
        name: &str,
        proposed: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        self.retrying(|| async {
            let client = self.client().await?;
            let made = client
                .query_opt(
                    "WITH made AS (INSERT INTO deployment_secrets (name, value, created_ms) \
                     VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING value) \
                     SELECT value FROM made UNION ALL \
                     SELECT value FROM deployment_secrets WHERE name = $1 LIMIT 1",
                    &[&name, &proposed, &crate::domain::time::now_ms()],
                )
                .await
                .context("keeping a deployment secret")?;
            let row = match made {
                Some(row) => row,
                // Another server's insert committed while this statement
                // ran, after its snapshot: a new statement sees it.
                None => client
                    .query_one(
                        "SELECT value FROM deployment_secrets WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .context("reading a deployment secret")?,
            };
            row.try_get(0).context("reading a deployment secret")
        })
        .await
    }

    async fn try_pass(&self, name: &str) -> Result<Option<crate::store::pass::Pass>, StoreError> {
        PostgresStore::try_pass(self, name).await
    }

    fn set_lease(&self, lease_ms: i64) {
        self.lease_ms
            .store(lease_ms, std::sync::atomic::Ordering::Relaxed);
    }

    async fn renew_leases(&self) -> Result<u64, StoreError> {
        self.retrying(|| async { leases::renew(&**self.client().await?, &self.holder()).await })
            .await
    }

    async fn take_over_expired(&self) -> Result<Vec<String>, StoreError> {
        leases::take_over_expired(&**self.client().await?, &self.holder()).await
    }

    async fn take_over(&self, id: &str, force: bool) -> Result<bool, StoreError> {
        leases::take_over(&**self.client().await?, &self.holder(), id, force).await
    }

    async fn take_queued(
        &self,
        waited_ms: i64,
    ) -> Result<Option<(SessionRecord, PasswordHash)>, StoreError> {
        let client = self.client().await?;
        let Some((id, kept)) = leases::take_queued(&**client, &self.holder(), waited_ms).await?
        else {
            return Ok(None);
        };
        let record = reads::get_session(&**client, &id)
            .await?
            .ok_or(StoreError::Missing(id))?;
        Ok(queue::password_of(kept).map(|hash| (record, hash)))
    }

    async fn release_queued(&self, id: &str) -> Result<bool, StoreError> {
        self.retrying(|| async {
            leases::release_queued(&**self.client().await?, &self.holder(), id).await
        })
        .await
    }

    async fn queued_password(&self, id: &str) -> Result<Option<PasswordHash>, StoreError> {
        let kept = self
            .retrying(|| async { leases::queued_password(&**self.client().await?, id).await })
            .await?;
        Ok(queue::password_of(kept))
    }

    async fn set_terraform(
        &self,
        id: &str,
        files: Option<TerraformFiles>,
    ) -> Result<(), StoreError> {
        self.retrying(|| async {
            sessions::set_terraform(&**self.client().await?, &self.holder(), id, files.clone())
                .await
        })
        .await
    }

    async fn terraform(&self, id: &str) -> Result<Option<TerraformFiles>, StoreError> {
        self.retrying(|| async { sessions::terraform(&**self.client().await?, id).await })
            .await
    }

    async fn take_create(
        &self,
        user: &str,
        rate: crate::store::create_rate::Rate,
    ) -> Result<Option<u64>, StoreError> {
        let user = user.to_string();
        self.write("committing a create rate", none, move |tx| {
            let user = user.clone();
            Box::pin(async move { create_rate::take(tx, &user, rate).await })
        })
        .await
    }

    async fn issue_ticket(
        &self,
        ticket: TicketRecord,
        limits: TicketLimits,
    ) -> Result<Issued, StoreError> {
        self.write("committing a ticket", none, move |tx| {
            Box::pin(tickets::issue(tx, ticket.clone(), limits))
        })
        .await
    }

    async fn redeem_ticket(&self, hash: &str) -> Result<Option<TicketRecord>, StoreError> {
        tickets::redeem(&**self.client().await?, hash).await
    }

    async fn push_command(&self, id: &str, body: Vec<u8>) -> Result<i64, StoreError> {
        self.write("committing an agent command", none, move |tx| {
            let (id, body) = (id.to_string(), body.clone());
            Box::pin(async move { commands::push(tx, &id, &body).await })
        })
        .await
    }

    async fn take_commands(
        &self,
        id: &str,
    ) -> Result<Vec<crate::store::commands::TakenCommand>, StoreError> {
        commands::take(&**self.client().await?, id).await
    }

    async fn finish_command(
        &self,
        id: &str,
        command: i64,
        outcome: daas_api::v1::CommandOutcome,
        message: &str,
    ) -> Result<bool, StoreError> {
        commands::finish(
            &**self.client().await?,
            id,
            command,
            outcome.into(),
            message,
        )
        .await
    }

    async fn command_state(
        &self,
        id: &str,
        command: i64,
    ) -> Result<Option<crate::store::commands::CommandState>, StoreError> {
        commands::state(&**self.client().await?, id, command).await
    }

    async fn drop_command(
        &self,
        id: &str,
        command: i64,
        when: crate::store::commands::DropIf,
    ) -> Result<bool, StoreError> {
        commands::drop(&**self.client().await?, id, command, when).await
    }

    fn set_outbox(&self, outbox: crate::store::events::Outbox) {
        self.hub.set_outbox(outbox);
    }

    async fn claim_deliveries(
        &self,
        limit: usize,
        hold_ms: i64,
    ) -> Result<Vec<crate::store::outbox::Delivery>, StoreError> {
        outbox::claim(&**self.client().await?, &self.holder(), limit, hold_ms).await
    }

    async fn hold_deliveries(&self, ids: Vec<String>, hold_ms: i64) -> Result<(), StoreError> {
        let holder = self.holder();
        self.retrying(|| async {
            outbox::hold(&**self.client().await?, &holder, &ids, hold_ms).await
        })
        .await
    }

    async fn finish_delivery(&self, id: &str) -> Result<(), StoreError> {
        self.retrying(|| async { outbox::finish(&**self.client().await?, id).await })
            .await
    }

    async fn record_activities(&self, reports: Vec<Report>) -> Result<(), StoreError> {
        self.retrying(|| async {
            activity::record_activities(&**self.client().await?, &reports).await
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
        let holder = self.holder();
        self.write("committing a warning", itself, move |tx| {
            let (holder, id, reason) = (holder.clone(), id.clone(), reason.clone());
            Box::pin(
                async move { activity::idle_warning(tx, &holder, &id, reap_at_ms, reason).await },
            )
        })
        .await
    }

    async fn clear_warning(&self, id: &str) -> Result<(), StoreError> {
        self.retrying(|| async { activity::clear_warning(&**self.client().await?, id).await })
            .await
    }

    async fn release_slot(&self, id: &str) -> Result<(), StoreError> {
        self.retrying(|| async {
            sessions::release_slot(&**self.client().await?, &self.holder(), id).await
        })
        .await
    }

    async fn record_nodes(&self, listed: Option<Vec<ListedNode>>) -> Result<(), StoreError> {
        self.write("committing the nodes", none, move |tx| {
            let listed = listed.clone();
            Box::pin(async move { nodes::record(tx, &listed).await })
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.retrying(|| async { nodes::list(&**self.client().await?).await })
            .await
    }

    async fn set_drained(&self, name: &str, drained: bool) -> Result<bool, StoreError> {
        self.retrying(|| async { nodes::set_drained(&**self.client().await?, name, drained).await })
            .await
    }

    async fn begin_clone(&self, id: &str, policy: Policy) -> Result<CloneTurn, StoreError> {
        self.write("committing a clone's start", none, move |tx| {
            let id = id.to_string();
            Box::pin(async move { nodes::begin_clone(tx, &id, policy).await })
        })
        .await
    }

    async fn end_clone(&self, id: &str) -> Result<(), StoreError> {
        self.retrying(|| async { nodes::end_clone(&**self.client().await?, id).await })
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.retrying(|| async { reads::get_session(&**self.client().await?, id).await })
            .await
    }

    async fn placed_on(&self, node: &str) -> Result<Vec<SessionRecord>, StoreError> {
        self.retrying(|| async { reads::placed_on(&**self.client().await?, node).await })
            .await
    }

    async fn by_vm_name(&self, vm_name: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.retrying(|| async { reads::by_vm_name(&**self.client().await?, vm_name).await })
            .await
    }

    async fn by_request(&self, key: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.retrying(|| async { reads::by_request_key(&**self.client().await?, key).await })
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
        self.retrying(|| async {
            reads::list_page(
                &**self.client().await?,
                (username.clone(), org.clone()),
                state,
                after.clone(),
                limit,
            )
            .await
        })
        .await
    }

    async fn usage(
        &self,
        org: Option<String>,
        username: Option<String>,
    ) -> Result<crate::domain::orgs::Amounts, StoreError> {
        self.retrying(|| async {
            reads::usage(&**self.client().await?, org.clone(), username.clone()).await
        })
        .await
    }

    async fn prune_output(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.retrying(|| async {
            event_log::prune_output(&**self.client().await?, before_ms).await
        })
        .await
    }

    async fn in_progress(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.retrying(|| async { reads::in_progress(&**self.client().await?).await })
            .await
    }

    async fn events_after(&self, id: &str, after: u64) -> Result<Vec<SessionEvent>, StoreError> {
        self.retrying(|| async {
            event_log::events_after(&**self.client().await?, id, after).await
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        // A standby (or a primary that went read-only) cannot give a
        // transaction an id.
        self.write("committing a write", none, |tx| {
            Box::pin(async move {
                tx.execute("SELECT txid_current()", &[])
                    .await
                    .context("proving the database takes writes")?;
                Ok(())
            })
        })
        .await
    }

    async fn count_by_state(&self) -> Result<Vec<(SessionState, String, u64)>, StoreError> {
        self.retrying(|| async { reads::count_by_state(&**self.client().await?).await })
            .await
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<i64, StoreError> {
        records::append_audit(&**self.client().await?, record).await
    }

    async fn audit_page(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.retrying(|| async {
            records::audit_page(&**self.client().await?, filter.clone()).await
        })
        .await
    }

    async fn prune_audit(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.retrying(|| async { records::prune_audit(&**self.client().await?, before_ms).await })
            .await
    }

    async fn open_signin(
        &self,
        signin: SignInRecord,
        limits: SignInLimits,
    ) -> Result<SignInOpened, StoreError> {
        self.write("committing a sign-in", none, move |tx| {
            Box::pin(records::open_signin(tx, signin.clone(), limits))
        })
        .await
    }

    async fn add_schedule(
        &self,
        schedule: ScheduleRecord,
        max_per_user: usize,
    ) -> Result<(), StoreError> {
        self.write("adding a schedule", none, move |tx| {
            Box::pin(schedules::add(tx, schedule.clone(), max_per_user))
        })
        .await
    }

    async fn schedules(
        &self,
        which: crate::store::schedules::Which,
    ) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.retrying(|| async { schedules::list(&**self.client().await?, &which).await })
            .await
    }

    async fn remove_schedule(&self, id: &str) -> Result<Option<ScheduleRecord>, StoreError> {
        self.retrying(|| async { schedules::remove(&**self.client().await?, id).await })
            .await
    }

    async fn keep_snapshot(&self, snapshot: SnapshotRecord) -> Result<(), StoreError> {
        self.retrying(|| async { snapshots::keep(&**self.client().await?, &snapshot).await })
            .await
    }

    async fn snapshots(&self, which: Which) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.retrying(|| async { snapshots::list(&**self.client().await?, &which).await })
            .await
    }

    async fn forget_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        self.retrying(|| async { snapshots::forget(&**self.client().await?, id).await })
            .await
    }

    async fn schedule_ran(
        &self,
        id: &str,
        due_ms: i64,
        now_ms: i64,
        ran: Ran,
    ) -> Result<bool, StoreError> {
        let no_event = |_: &bool| None;
        self.write("recording a schedule's run", no_event, move |tx| {
            let (id, ran) = (id.to_string(), ran.clone());
            Box::pin(async move { schedules::ran(tx, &id, due_ms, now_ms, &ran).await })
        })
        .await
    }

    async fn signin(&self, id_hash: &str) -> Result<Option<SignInRecord>, StoreError> {
        self.retrying(|| async { records::signin(&**self.client().await?, id_hash).await })
            .await
    }

    async fn touch_signin(&self, id_hash: &str, last_seen_ms: i64) -> Result<(), StoreError> {
        self.retrying(|| async {
            records::touch_signin(&**self.client().await?, id_hash, last_seen_ms).await
        })
        .await
    }

    async fn recheck_signin(
        &self,
        id_hash: &str,
        admin: bool,
        groups: Vec<String>,
        checked_ms: i64,
    ) -> Result<Option<SignInRecord>, StoreError> {
        self.retrying(|| async {
            records::recheck_signin(&**self.client().await?, id_hash, admin, &groups, checked_ms)
                .await
        })
        .await
    }

    async fn close_signin(&self, id_hash: &str) -> Result<Option<SignInRecord>, StoreError> {
        self.retrying(|| async { records::close_signin(&**self.client().await?, id_hash).await })
            .await
    }
}
