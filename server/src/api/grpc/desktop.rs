//! `daas.v1.DesktopService`: a thin adapter over the sessions service. It
//! takes the caller and origin the authentication layer attached, calls
//! [`Sessions`], and turns its errors into statuses (one mapping, in
//! `domain/error.rs`).

use std::{pin::Pin, sync::Arc};

use daas_api::v1::{
    AddScheduleRequest, CreateSessionRequest, DeleteSnapshotRequest, DestroySessionRequest,
    DrainNodeRequest, GetPoolRequest, GetQuotaRequest, GetSessionRequest, ListAuditRequest,
    ListAuditResponse, ListNodesRequest, ListNodesResponse, ListPoolsRequest, ListPoolsResponse,
    ListSchedulesRequest, ListSchedulesResponse, ListSessionsRequest, ListSessionsResponse,
    ListSnapshotsRequest, ListSnapshotsResponse, ListTemplatesRequest, ListTemplatesResponse, Node,
    Pool, Quota, RemoveScheduleRequest, ResumeNodeRequest, Schedule, Session, SessionEvent,
    Snapshot, WatchSessionRequest, desktop_service_server::DesktopService,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::{
    api::grpc::auth,
    audit::Actor,
    sessions::{self, Sessions},
};

/// A session's events as the gRPC streams send them.
pub type StatusStream = Pin<Box<dyn Stream<Item = Result<SessionEvent, Status>> + Send>>;

/// The gRPC service.
pub struct DesktopApi {
    pub sessions: Arc<Sessions>,
}

impl DesktopApi {
    pub fn new(sessions: Arc<Sessions>) -> Self {
        DesktopApi { sessions }
    }
}

fn statuses(events: sessions::EventStream) -> StatusStream {
    Box::pin(events.map(|item| item.map_err(Status::from)))
}

#[tonic::async_trait]
impl DesktopService for DesktopApi {
    type CreateSessionStream = StatusStream;
    type WatchSessionStream = StatusStream;

    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<Self::CreateSessionStream>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let started = self
            .sessions
            .create(&caller, &actor, request.into_inner())
            .await?;
        Ok(Response::new(statuses(started.events)))
    }

    async fn watch_session(
        &self,
        request: Request<WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let caller = auth::caller(&request)?;
        let WatchSessionRequest {
            session_id,
            after_sequence,
        } = request.into_inner();
        let events = self
            .sessions
            .watch(&caller, session_id, after_sequence)
            .await?;
        Ok(Response::new(statuses(events)))
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let caller = auth::caller(&request)?;
        let id = request.into_inner().session_id;
        Ok(Response::new(self.sessions.get(&caller, &id).await?))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let page = self.sessions.list(&caller, request.into_inner()).await?;
        Ok(Response::new(page))
    }

    async fn destroy_session(
        &self,
        request: Request<DestroySessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let id = request.into_inner().session_id;
        let record = self.sessions.destroy(&caller, &actor, &id).await?;
        Ok(Response::new(record.to_proto()))
    }

    async fn list_pools(
        &self,
        request: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let pools = self.sessions.pools(&caller).await?;
        Ok(Response::new(ListPoolsResponse { pools }))
    }

    async fn get_pool(&self, request: Request<GetPoolRequest>) -> Result<Response<Pool>, Status> {
        let caller = auth::caller(&request)?;
        let name = request.into_inner().name;
        Ok(Response::new(self.sessions.pool(&caller, &name).await?))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let caller = auth::caller(&request)?;
        let page = self
            .sessions
            .audit_page(&caller, request.into_inner())
            .await?;
        Ok(Response::new(page))
    }

    async fn list_templates(
        &self,
        request: Request<ListTemplatesRequest>,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        let caller = auth::caller(&request)?;
        Ok(Response::new(self.sessions.templates(&caller)))
    }

    async fn get_quota(
        &self,
        request: Request<GetQuotaRequest>,
    ) -> Result<Response<Quota>, Status> {
        let caller = auth::caller(&request)?;
        let quota = self.sessions.quota(&caller, request.into_inner()).await?;
        Ok(Response::new(quota))
    }

    async fn add_schedule(
        &self,
        request: Request<AddScheduleRequest>,
    ) -> Result<Response<Schedule>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let schedule = self
            .sessions
            .add_schedule(&caller, &actor, request.into_inner())
            .await?;
        Ok(Response::new(schedule))
    }

    async fn list_schedules(
        &self,
        request: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let schedules = self
            .sessions
            .schedules(&caller, request.into_inner())
            .await?;
        Ok(Response::new(ListSchedulesResponse { schedules }))
    }

    async fn remove_schedule(
        &self,
        request: Request<RemoveScheduleRequest>,
    ) -> Result<Response<Schedule>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let id = request.into_inner().schedule_id;
        let schedule = self.sessions.remove_schedule(&caller, &actor, &id).await?;
        Ok(Response::new(schedule))
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let snapshots = self
            .sessions
            .snapshots(&caller, request.into_inner())
            .await?;
        Ok(Response::new(ListSnapshotsResponse { snapshots }))
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<Snapshot>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let id = request.into_inner().snapshot_id;
        let snapshot = self.sessions.delete_snapshot(&caller, &actor, &id).await?;
        Ok(Response::new(snapshot))
    }

    async fn list_nodes(
        &self,
        request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let nodes = self.sessions.nodes(&caller).await?;
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn drain_node(
        &self,
        request: Request<DrainNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let name = request.into_inner().name;
        let node = self
            .sessions
            .set_drained(&caller, &actor, &name, true)
            .await?;
        Ok(Response::new(node))
    }

    async fn resume_node(
        &self,
        request: Request<ResumeNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let caller = auth::caller(&request)?;
        let actor = Actor::caller(Some(&caller), &auth::origin(&request));
        let name = request.into_inner().name;
        let node = self
            .sessions
            .set_drained(&caller, &actor, &name, false)
            .await?;
        Ok(Response::new(node))
    }
}
