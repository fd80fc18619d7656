//! `daas.v1.DesktopService`: checks requests, then hands work to the store
//! and the pipeline. Errors become statuses in one place (`error.rs`).

use std::pin::Pin;

use daas_api::v1::{
    CreateSessionRequest, DestroySessionRequest, GetPoolRequest, GetSessionRequest,
    ListPoolsRequest, ListPoolsResponse, ListSessionsRequest, ListSessionsResponse, Pool, Session,
    SessionEvent, SessionState, WatchSessionRequest, desktop_service_server::DesktopService,
};
use tokio::sync::{broadcast, mpsc};

use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    api::grpc::auth::Caller,
    api::grpc::limits::{CreateRate, StreamSlots},
    config::Config,
    domain::error::Error,
    domain::validate,
    pool::Pools,
    provision::Pipeline,
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
}

impl DesktopApi {
    pub fn new(
        config: std::sync::Arc<Config>,
        store: Store,
        pipeline: Pipeline,
        pools: Pools,
    ) -> Self {
        let limits = &config.limits;
        DesktopApi {
            create_rate: CreateRate::new(limits.creates_per_minute, limits.create_burst),
            streams: StreamSlots::new(limits.max_streams),
            config,
            store,
            pipeline,
            pools,
        }
    }

    /// A session the caller may `act` on (get, watch, destroy).
    async fn session_for(
        &self,
        caller: &Caller,
        id: &str,
        act: &str,
    ) -> Result<SessionRecord, Error> {
        validate::session_id(id)?;
        let record = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        if !caller.may_act_for(&record.username) {
            tracing::warn!(?caller, session = %id, act, "refused access to a session");
            return Err(Error::PermissionDenied(format!(
                "you may {act} only your own sessions"
            )));
        }
        Ok(record)
    }
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
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Response<EventStream>, Status> {
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
        Ok(Response::new(follow(
            self.store.clone(),
            earlier.id,
            0,
            self.pipeline.shutdown_token(),
            slot,
        )))
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
    slot: tokio::sync::OwnedSemaphorePermit,
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

#[tonic::async_trait]
impl DesktopService for DesktopApi {
    type CreateSessionStream = EventStream;
    type WatchSessionStream = EventStream;

    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<Self::CreateSessionStream>, Status> {
        let caller = Caller::of(&request)?;
        let mut req = request.into_inner();
        req.username = create_owner(&caller, std::mem::take(&mut req.username))?;
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
        let shutdown = self.pipeline.shutdown_token();
        if shutdown.is_cancelled() {
            return Err(Error::ShuttingDown.into());
        }
        let slot = self.streams.open()?;
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
        self.pipeline.start(record, req.session_password);
        Ok(Response::new(stream))
    }

    async fn watch_session(
        &self,
        request: Request<WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let caller = Caller::of(&request)?;
        let WatchSessionRequest {
            session_id: id,
            after_sequence,
        } = request.into_inner();
        let slot = self.streams.open()?;
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
        let caller = Caller::of(&request)?;
        let id = request.into_inner().session_id;
        let record = self.session_for(&caller, &id, "get").await?;
        Ok(Response::new(self.view(&record)))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let caller = Caller::of(&request)?;
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
        let caller = Caller::of(&request)?;
        let id = request.into_inner().session_id;
        self.session_for(&caller, &id, "destroy").await?;
        let record = self.pipeline.destroy(&id).await?;
        tracing::info!(session = %id, "session destroyed");
        Ok(Response::new(record.to_proto()))
    }

    async fn list_pools(
        &self,
        request: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        admin_only(&Caller::of(&request)?, "list the warm pools")?;
        let mut pools = Vec::new();
        for pool in self.pools.all() {
            pools.push(self.pools.status(pool).await.map_err(Error::from)?);
        }
        Ok(Response::new(ListPoolsResponse { pools }))
    }

    async fn get_pool(&self, request: Request<GetPoolRequest>) -> Result<Response<Pool>, Status> {
        admin_only(&Caller::of(&request)?, "see a warm pool")?;
        let name = request.into_inner().name;
        let pool = self
            .pools
            .get(&name)
            .ok_or_else(|| Error::NoSuchPool(name.clone()))?;
        let status = self.pools.status(pool).await.map_err(Error::from)?;
        Ok(Response::new(status))
    }
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
