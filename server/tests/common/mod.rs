//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use daas_api::v1::{
    CreateSessionRequest, SessionEvent, SessionState, WatchSessionRequest,
    desktop_service_client::DesktopServiceClient, session_event::Kind,
};
use tonic::transport::Channel;

pub type Client = DesktopServiceClient<Channel>;

/// Generous bound on any one stream in these tests, so a hang fails.
pub const STREAM_LIMIT: Duration = Duration::from_secs(240);

pub fn request(user: &str) -> CreateSessionRequest {
    CreateSessionRequest {
        username: user.into(),
        ..Default::default()
    }
}

/// Creates a session and reads its whole stream.
pub async fn create(client: &mut Client, req: CreateSessionRequest) -> Vec<SessionEvent> {
    let stream = client
        .create_session(req)
        .await
        .expect("create")
        .into_inner();
    drain(stream).await
}

/// Follows a session to the end of its stream.
pub async fn watch(client: &mut Client, id: &str) -> Vec<SessionEvent> {
    let stream = client
        .watch_session(WatchSessionRequest {
            session_id: id.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    drain(stream).await
}

pub async fn drain(mut stream: tonic::Streaming<SessionEvent>) -> Vec<SessionEvent> {
    let mut events = Vec::new();
    tokio::time::timeout(STREAM_LIMIT, async {
        while let Some(event) = stream.message().await.expect("stream error") {
            events.push(event);
        }
    })
    .await
    .expect("the stream did not end in time");
    events
}

pub fn state(event: &SessionEvent) -> SessionState {
    SessionState::try_from(event.state).expect("a known state")
}

/// The states entered, in order (stage changes only).
pub fn stages(events: &[SessionEvent]) -> Vec<SessionState> {
    events
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::StageChange(_))))
        .map(state)
        .collect()
}

/// Output lines, as text.
pub fn output(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Output(line)) => Some(line.text.clone()),
            _ => None,
        })
        .collect()
}

/// Milliseconds since the epoch of the stage change into `to`.
pub fn entered_ms(events: &[SessionEvent], to: SessionState) -> i64 {
    let event = events
        .iter()
        .find(|e| matches!(e.kind, Some(Kind::StageChange(_))) && state(e) == to)
        .unwrap_or_else(|| panic!("no stage change to {to:?}"));
    let t = event.time.expect("events carry a time");
    t.seconds * 1000 + i64::from(t.nanos / 1_000_000)
}

pub fn assert_gap_free(events: &[SessionEvent]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "events are numbered from 1 without gaps");
}
