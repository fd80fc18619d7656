//! `daas.v1.DesktopService`: checks requests, then hands work to the store
//! and the pipeline. Errors become statuses in one place (`error.rs`).

use std::pin::Pin;

use daas_api::v1::{
    CreateSessionRequest, DestroySessionRequest, GetSessionRequest, ListSessionsRequest,
    ListSessionsResponse, Session, SessionEvent, SessionState, WatchSessionRequest,
    desktop_service_server::DesktopService,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    config::Config,
    error::Error,
    pipeline::Pipeline,
    store::{NewSession, Store},
    validate,
};

pub type EventStream = Pin<Box<dyn Stream<Item = Result<SessionEvent, Status>> + Send>>;

/// The gRPC service.
pub struct DesktopApi {
    pub config: std::sync::Arc<Config>,
    pub store: Store,
    pub pipeline: Pipeline,
}

impl DesktopApi {
    async fn known_session(&self, id: &str) -> Result<crate::store::SessionRecord, Error> {
        validate::session_id(id)?;
        self.store
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }
}

/// Streams a session's events after `after`, then live ones, until the
/// session settles (READY, FAILED, DESTROYED) or the server stops.
pub fn follow(
    store: Store,
    id: String,
    live: broadcast::Receiver<SessionEvent>,
    after: u64,
    shutdown: CancellationToken,
) -> EventStream {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if let Err(status) = forward(&store, &id, live, after, &shutdown, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn forward(
    store: &Store,
    id: &str,
    mut live: broadcast::Receiver<SessionEvent>,
    mut last: u64,
    shutdown: &CancellationToken,
    tx: &mpsc::Sender<Result<SessionEvent, Status>>,
) -> Result<(), Status> {
    // Replay what is stored; `live` was subscribed before, so nothing falls
    // between the two.
    let mut settled = false;
    for event in store.events_after(id, last).await.map_err(Error::from)? {
        last = event.sequence;
        settled = state_of(&event).is_settled();
        if tx.send(Ok(event)).await.is_err() {
            return Ok(());
        }
    }
    if settled {
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
        let req = request.into_inner();
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
        let shutdown = self.pipeline.shutdown_token();
        if shutdown.is_cancelled() {
            return Err(Error::ShuttingDown.into());
        }
        let live = self.store.subscribe();
        let (record, _) = self
            .store
            .create_session(NewSession {
                username: req.username,
                session_user: req.session_user,
                template,
            })
            .await
            .map_err(Error::from)?;
        tracing::info!(session = %record.id, user = %record.username, vm = %record.vm_name, "session requested");
        let id = record.id.clone();
        self.pipeline.start(record, req.session_password);
        Ok(Response::new(follow(
            self.store.clone(),
            id,
            live,
            0,
            shutdown,
        )))
    }

    async fn watch_session(
        &self,
        request: Request<WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let id = request.into_inner().session_id;
        let live = self.store.subscribe();
        self.known_session(&id).await?;
        Ok(Response::new(follow(
            self.store.clone(),
            id,
            live,
            0,
            self.pipeline.shutdown_token(),
        )))
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let id = request.into_inner().session_id;
        Ok(Response::new(self.known_session(&id).await?.to_proto()))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
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
        let username = (!req.username.is_empty()).then_some(req.username);
        let sessions = self
            .store
            .list(username, state)
            .await
            .map_err(Error::from)?
            .iter()
            .map(|r| r.to_proto())
            .collect();
        Ok(Response::new(ListSessionsResponse { sessions }))
    }

    async fn destroy_session(
        &self,
        request: Request<DestroySessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let id = request.into_inner().session_id;
        validate::session_id(&id)?;
        let record = self.pipeline.destroy(&id).await?;
        tracing::info!(session = %id, "session destroyed");
        Ok(Response::new(record.to_proto()))
    }
}
