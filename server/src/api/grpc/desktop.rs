//! `daas.v1.DesktopService`: checks requests, then hands work to the store
//! and the pipeline. Errors become statuses in one place (`error.rs`).

use std::pin::Pin;

use daas_api::v1::{
    AuditEntry, CreateSessionRequest, DestroySessionRequest, GetPoolRequest, GetSessionRequest,
    ListAuditRequest, ListAuditResponse, ListPoolsRequest, ListPoolsResponse, ListSessionsRequest,
    ListSessionsResponse, Pool, Session, SessionEvent, SessionState, WatchSessionRequest,
    desktop_service_server::DesktopService,
};
use tokio::sync::{broadcast, mpsc};

use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    api::grpc::auth,
    api::grpc::limits::{CreateRate, StreamSlot, StreamSlots},
    audit::{Act, Actor, Audit},
    config::Config,
    domain::error::Error,
    domain::identity::Caller,
    domain::password::PasswordHash,
    domain::validate,
    pool::Pools,
    provision::Pipeline,
    store::audit::AuditFilter,
    store::events::Subscription,
    store::{NewSession, PageCursor, SessionLimits, SessionRecord, Store, StoreError},
};

pub type EventStream = Pin<Box<dyn Stream<Item = Result<SessionEvent, Status>> + Send>>;

/// The gRPC service.
pub struct DesktopApi {
    pub config: std::sync::Arc<Config>,
    pub store: Store,
    pub pipeline: Pipeline,
    pub create_rate: CreateRate,
    pub streams: StreamSlots,
    pub pools: Pools,
    pub audit: Audit,
}

impl DesktopApi {
    pub fn new(
        config: std::sync::Arc<Config>,
        store: Store,
        pipeline: Pipeline,
        pools: Pools,
        audit: Audit,
    ) -> Self {
        let limits = &config.limits;
        DesktopApi {
            create_rate: CreateRate::new(limits.creates_per_minute, limits.create_burst),
            streams: StreamSlots::new(limits.max_streams, limits.max_streams_per_user),
            config,
            store,
            pipeline,
            pools,
            audit,
        }
    }

    /// A session the caller may `act` on (get, watch, destroy).
    async fn session_for(
        &self,
        caller: &Caller,
        id: &str,
        act: &str,
    ) -> Result<SessionRecord, Error> {
        let record = self.lookup(id).await?;
        may_act_on(caller, &record, act)?;
        Ok(record)
    }

    /// A session by id (checked), or NOT_FOUND.
    async fn lookup(&self, id: &str) -> Result<SessionRecord, Error> {
        validate::session_id(id)?;
        self.store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }
}

/// Refuses a caller who may not `act` on `record`'s session.
fn may_act_on(caller: &Caller, record: &SessionRecord, act: &str) -> Result<(), Error> {
    if caller.may_act_for(&record.username) {
        return Ok(());
    }
    tracing::warn!(?caller, session = %record.id, act, "refused access to a session");
    Err(Error::PermissionDenied(format!(
        "you may {act} only your own sessions"
    )))
}

impl DesktopApi {
    /// A session as callers see it, with why it is alive.
    fn view(&self, record: &SessionRecord) -> daas_api::v1::Session {
        let mut session = record.to_proto();
        session.activity = crate::reaper::why_alive(&self.config, record);
        session
    }
}

/// The token of the page after `last`: opaque to clients.
fn page_token(last: &SessionRecord) -> String {
    format!("{}.{}", last.created_ms, last.id)
}

fn parse_page_token(token: &str) -> Result<PageCursor, Error> {
    let bad = || Error::InvalidArgument {
        field: "page_token",
        why: "is not a token this server gave; start again without it".into(),
    };
    let (ms, id) = token.split_once('.').ok_or_else(bad)?;
    let created_ms = ms.parse::<i64>().map_err(|_| bad())?;
    uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(PageCursor {
        created_ms,
        id: id.to_string(),
    })
}

impl DesktopApi {
    /// The stream of the session an earlier create with the same request id
    /// made, if this create asks for the same thing.
    fn same_request(
        &self,
        earlier: SessionRecord,
        username: &str,
        template: &str,
        slot: StreamSlot,
    ) -> Result<Started, Status> {
        if earlier.username != username || earlier.template != template {
            return Err(Error::InvalidArgument {
                field: "request_id",
                why: format!(
                    "was used within 24 h for another create (session {}); choose a new one",
                    earlier.id
                ),
            }
            .into());
        }
        tracing::info!(session = %earlier.id, "a create repeated its request id: streaming the session it made");
        Ok(Started {
            events: follow(
                self.store.clone(),
                earlier.id.clone(),
                0,
                self.pipeline.shutdown_token(),
                slot,
            ),
            repeated: true,
            record: earlier,
        })
    }
}

/// The user a create is for: the caller, or anyone for an administrator.
fn create_owner(caller: &Caller, requested: String) -> Result<String, Error> {
    match (caller.user(), requested.is_empty()) {
        (Some(me), true) => Ok(me.to_string()),
        (_, false) if caller.may_act_for(&requested) => Ok(requested),
        (Some(me), false) => Err(Error::PermissionDenied(format!(
            "you may create sessions only for yourself ({me})"
        ))),
        (None, _) => Err(Error::InvalidArgument {
            field: "username",
            why: "is required".into(),
        }),
    }
}

/// Streams a session's events after `after`, then live ones, until the
/// session settles (READY, FAILED, DESTROYED) or the server stops. `slot`
/// is held while the stream is open. It subscribes to the live events
/// before it returns: whatever is published after this call is followed.
pub fn follow(
    store: Store,
    id: String,
    after: u64,
    shutdown: CancellationToken,
    slot: StreamSlot,
) -> EventStream {
    let live = store.subscribe(&id);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(status) = forward(&store, &id, live, after, &shutdown, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn forward(
    store: &Store,
    id: &str,
    mut live: Subscription,
    mut last: u64,
    shutdown: &CancellationToken,
    tx: &mpsc::Sender<Result<SessionEvent, Status>>,
) -> Result<(), Status> {
    // Replay what is stored; `live` was subscribed before, so nothing falls
    // between the two.
    let mut settled = None;
    for event in store.events_after(id, last).await.map_err(Error::from)? {
        last = event.sequence;
        settled = Some(state_of(&event).is_settled());
        if tx.send(Ok(event)).await.is_err() {
            return Ok(());
        }
    }
    if settled.is_none() {
        // Nothing after `last`: the caller has seen it all. A settled
        // session ends the stream (after whatever landed meanwhile).
        let record = store.get(id).await.map_err(Error::from)?;
        if record.is_some_and(|r| r.state.is_settled()) {
            for event in store.events_after(id, last).await.map_err(Error::from)? {
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(());
                }
            }
            return Ok(());
        }
    }
    if settled == Some(true) {
        return Ok(());
    }
    loop {
        let event = tokio::select! {
            event = live.recv() => event,
            _ = shutdown.cancelled() => {
                return Err(Status::unavailable(format!(
                    "the server is shutting down; the session goes on: follow it again with WatchSession {id}"
                )));
            }
            _ = tx.closed() => return Ok(()),
        };
        let events = match event {
            Ok(event) if event.session_id == id && event.sequence > last => vec![event],
            Ok(_) => continue,
            // Too slow for the live feed: catch up from the store.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                store.events_after(id, last).await.map_err(Error::from)?
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Err(Status::unavailable("the server is shutting down"));
            }
        };
        for event in events {
            last = event.sequence;
            let done = state_of(&event).is_settled() && event.session.is_some();
            if tx.send(Ok(event)).await.is_err() || done {
                return Ok(());
            }
        }
    }
}

fn state_of(event: &SessionEvent) -> SessionState {
    SessionState::try_from(event.state).unwrap_or(SessionState::Unspecified)
}

/// What a create started: the session and its events from the first.
pub struct Started {
    pub record: SessionRecord,
    pub events: EventStream,
    /// A repeat of an earlier create's request id: its session, not a new one.
    pub repeated: bool,
}

impl DesktopApi {
    /// Creates a session for `caller` (or follows the one an earlier
    /// create with the same request id made), recorded in the audit trail
    /// by `actor`: `create`, or `claim` when a warm pool's desktop was
    /// taken, or the refusal.
    pub async fn create(
        &self,
        caller: &Caller,
        actor: &Actor,
        req: CreateSessionRequest,
    ) -> Result<Started, Status> {
        let template = req.template.clone();
        // Whom a refused create was for: the user named, else the caller.
        let for_user = match (req.username.is_empty(), caller.user()) {
            (false, _) => req.username.clone(),
            (true, Some(me)) => me.to_string(),
            (true, None) => String::new(),
        };
        match self.create_unaudited(caller, req).await {
            Ok(started) => {
                let r = &started.record;
                let (action, detail) = match (started.repeated, r.is_claimed()) {
                    (true, _) => (
                        "create",
                        format!(
                            "template {}: a repeated request id, the same session",
                            r.template
                        ),
                    ),
                    (false, true) => (
                        "claim",
                        format!(
                            "template {}: a warm desktop of pool '{}'",
                            r.template,
                            r.pool.as_deref().unwrap_or("")
                        ),
                    ),
                    (false, false) => ("create", format!("template {}", r.template)),
                };
                let act = Act::new(action).session(&r.id, &r.username).detail(detail);
                self.audit.record(actor, act).await;
                Ok(started)
            }
            Err(status) => {
                let act = Act::new("create").session("", &for_user).refused(&status);
                let act = if template.is_empty() {
                    act
                } else {
                    Act {
                        detail: format!("template {template}: {}", act.detail),
                        ..act
                    }
                };
                self.audit.record(actor, act).await;
                Err(status)
            }
        }
    }

    /// Destroys session `id` for `caller`, recorded in the audit trail by
    /// `actor`.
    pub async fn destroy(
        &self,
        caller: &Caller,
        actor: &Actor,
        id: &str,
    ) -> Result<SessionRecord, Status> {
        // The owner, for the trail, even when the caller is refused.
        let mut owner = String::new();
        let result = async {
            let record = self.lookup(id).await?;
            owner.clone_from(&record.username);
            may_act_on(caller, &record, "destroy")?;
            let record = self.pipeline.destroy(id).await?;
            tracing::info!(session = %id, "session destroyed");
            Ok::<_, Status>(record)
        }
        .await;
        let act = Act::new("destroy").session(id, &owner);
        let act = match &result {
            Ok(_) => act,
            Err(status) => act.refused(status),
        };
        self.audit.record(actor, act).await;
        result
    }

    /// A create, not yet in the audit trail.
    async fn create_unaudited(
        &self,
        caller: &Caller,
        mut req: CreateSessionRequest,
    ) -> Result<Started, Status> {
        req.username = create_owner(caller, std::mem::take(&mut req.username))?;
        validate::account_name("username", &req.username)?;
        if !req.session_user.is_empty() {
            validate::account_name("session_user", &req.session_user)?;
            validate::password("session_password", &req.session_password)?;
        } else if !req.session_password.is_empty() {
            return Err(Error::InvalidArgument {
                field: "session_password",
                why: "is set but session_user is empty".into(),
            }
            .into());
        }
        let template = if req.template.is_empty() {
            self.config.vm.template.clone()
        } else {
            validate::template(&req.template)?;
            req.template
        };
        let request_key = if req.request_id.is_empty() {
            None
        } else {
            validate::request_id(&req.request_id)?;
            Some(format!(
                "{}\n{}",
                caller.user().unwrap_or("local"),
                req.request_id
            ))
        };
        // The password goes no further than this: the desktop gets its hash.
        let password_hash =
            PasswordHash::of(&std::mem::take(&mut req.session_password)).map_err(Error::from)?;
        let shutdown = self.pipeline.shutdown_token();
        if shutdown.is_cancelled() {
            return Err(Error::ShuttingDown.into());
        }
        let slot = self.streams.open(caller.user().unwrap_or("local"))?;
        // A retry of a create that went through: its session, not a new one
        // (and no rate token taken).
        if let Some(key) = &request_key
            && let Some(earlier) = self.store.by_request(key).await.map_err(Error::from)?
        {
            return self.same_request(earlier, &req.username, &template, slot);
        }
        self.create_rate.take(&req.username)?;
        let limits = SessionLimits {
            max_sessions: self.config.limits.max_sessions,
            max_per_user: self.config.limits.max_sessions_per_user,
        };
        let new = NewSession {
            username: req.username.clone(),
            session_user: req.session_user,
            template: template.clone(),
            request_key,
            pool: None,
        };
        // A warm desktop if a pool of the template has one ready, else one
        // built from nothing.
        let created = match self.pools.claim(&new, limits).await {
            Ok(Some(record)) => Ok(record),
            Ok(None) => self.store.create_session(new, limits).await.map(|(r, _)| r),
            Err(err) => Err(err),
        };
        let record = match created {
            Ok(record) => record,
            Err(StoreError::SameRequest(earlier)) => {
                return self.same_request(*earlier, &req.username, &template, slot);
            }
            Err(err) => return Err(Error::from(err).into()),
        };
        tracing::info!(session = %record.id, user = %record.username, vm = %record.vm_name, "session requested");
        // Followed before the pipeline publishes anything.
        let stream = follow(self.store.clone(), record.id.clone(), 0, shutdown, slot);
        self.pipeline.start(record.clone(), password_hash);
        Ok(Started {
            events: stream,
            record,
            repeated: false,
        })
    }
}

#[tonic::async_trait]
impl DesktopService for DesktopApi {
    type CreateSessionStream = EventStream;
    type WatchSessionStream = EventStream;

    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<Self::CreateSessionStream>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let started = self.create(&caller, &actor, request.into_inner()).await?;
        Ok(Response::new(started.events))
    }

    async fn watch_session(
        &self,
        request: Request<WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let caller = auth::caller(&request)?;
        let WatchSessionRequest {
            session_id: id,
            after_sequence,
        } = request.into_inner();
        let slot = self.streams.open(caller.user().unwrap_or("local"))?;
        self.session_for(&caller, &id, "watch").await?;
        Ok(Response::new(follow(
            self.store.clone(),
            id,
            after_sequence,
            self.pipeline.shutdown_token(),
            slot,
        )))
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let caller = auth::caller(&request)?;
        let id = request.into_inner().session_id;
        let record = self.session_for(&caller, &id, "get").await?;
        Ok(Response::new(self.view(&record)))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let req = request.into_inner();
        let state = match SessionState::try_from(req.state) {
            Ok(SessionState::Unspecified) => None,
            Ok(state) => Some(state),
            Err(_) => {
                return Err(Error::InvalidArgument {
                    field: "state",
                    why: format!("has the unknown value {}", req.state),
                }
                .into());
            }
        };
        let username = match caller.user() {
            _ if caller.is_admin() => (!req.username.is_empty()).then_some(req.username),
            Some(me) if req.username.is_empty() || req.username == me => Some(me.to_string()),
            _ => {
                return Err(
                    Error::PermissionDenied("you may list only your own sessions".into()).into(),
                );
            }
        };
        let page_size = validate::page_size(req.page_size)?;
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(parse_page_token(&req.page_token)?)
        };
        // One more than asked tells whether another page follows.
        let mut records = self
            .store
            .list_page(username, state, after, page_size + 1)
            .await
            .map_err(Error::from)?;
        let next_page_token = if records.len() > page_size as usize {
            records.truncate(page_size as usize);
            records.last().map(page_token).unwrap_or_default()
        } else {
            String::new()
        };
        let sessions = records.iter().map(|r| self.view(r)).collect();
        Ok(Response::new(ListSessionsResponse {
            sessions,
            next_page_token,
        }))
    }

    async fn destroy_session(
        &self,
        request: Request<DestroySessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let id = request.into_inner().session_id;
        let record = self.destroy(&caller, &actor, &id).await?;
        Ok(Response::new(record.to_proto()))
    }

    async fn list_pools(
        &self,
        request: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        admin_only(&auth::caller(&request)?, "list the warm pools")?;
        let mut pools = Vec::new();
        for pool in self.pools.all() {
            pools.push(self.pools.status(pool).await.map_err(Error::from)?);
        }
        Ok(Response::new(ListPoolsResponse { pools }))
    }

    async fn get_pool(&self, request: Request<GetPoolRequest>) -> Result<Response<Pool>, Status> {
        admin_only(&auth::caller(&request)?, "see a warm pool")?;
        let name = request.into_inner().name;
        let pool = self
            .pools
            .get(&name)
            .ok_or_else(|| Error::NoSuchPool(name.clone()))?;
        let status = self.pools.status(pool).await.map_err(Error::from)?;
        Ok(Response::new(status))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        admin_only(&auth::caller(&request)?, "read the audit trail")?;
        let req = request.into_inner();
        if !req.session_id.is_empty() {
            validate::session_id(&req.session_id)?;
        }
        if !req.username.is_empty() {
            validate::account_name("username", &req.username)?;
        }
        let page_size = validate::page_size(req.page_size)?;
        let before = if req.page_token.is_empty() {
            None
        } else {
            Some(parse_audit_token(&req.page_token)?)
        };
        let filter = AuditFilter {
            username: (!req.username.is_empty()).then_some(req.username),
            session_id: (!req.session_id.is_empty()).then_some(req.session_id),
            since_ms: req.since.map(since_ms).transpose()?,
            before,
            limit: page_size + 1,
        };
        let mut records = self.store.audit_page(filter).await.map_err(Error::from)?;
        let next_page_token = if records.len() > page_size as usize {
            records.truncate(page_size as usize);
            records
                .last()
                .map(|r| format!("{}.{}", r.time_ms, r.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let entries = records
            .into_iter()
            .map(|r| AuditEntry {
                time: Some(crate::domain::time::timestamp(r.time_ms)),
                actor: r.actor,
                subject: r.subject,
                fingerprint: r.fingerprint,
                peer: r.peer,
                action: r.action,
                session_id: r.session_id,
                owner: r.owner,
                result: r.result,
                detail: r.detail,
            })
            .collect();
        Ok(Response::new(ListAuditResponse {
            entries,
            next_page_token,
        }))
    }
}

/// A `since` in ms since the epoch; a time outside years 1-9999 (as
/// google.protobuf.Timestamp allows) is refused.
fn since_ms(t: prost_types::Timestamp) -> Result<i64, Error> {
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    if !(MIN..=MAX).contains(&t.seconds) || !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::InvalidArgument {
            field: "since",
            why: "is not a time between the years 1 and 9999".into(),
        });
    }
    Ok(t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
}

/// The position an audit page token names: (time_ms, id).
fn parse_audit_token(token: &str) -> Result<(i64, i64), Error> {
    let bad = || Error::InvalidArgument {
        field: "page_token",
        why: "is not a token this server gave; start again without it".into(),
    };
    let (ms, id) = token.split_once('.').ok_or_else(bad)?;
    Ok((
        ms.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

/// Refuses a caller who is not an administrator.
fn admin_only(caller: &Caller, act: &str) -> Result<(), Error> {
    if caller.is_admin() {
        return Ok(());
    }
    tracing::warn!(?caller, act, "refused an administrators' call");
    Err(Error::PermissionDenied(format!(
        "only administrators may {act}"
    )))
}
