//! Recordings for administrators (auditors): the list, and a replay in the
//! page's own RDP client. The replay is a WebSocket that plays the desktop's
//! part: it answers the client's RDCleanPath request with the recorded
//! response, then sends the recorded RDP stream at the pace it was recorded
//! (`?speed=` 1 to 16 times as fast; a pause longer than [`MAX_PAUSE`] is cut
//! to it), and drops whatever the client sends: nothing reaches a desktop.
//! What the desktop put in the user's clipboard is replayed as an empty
//! clipboard (the gateway's filter, `clipboard.rs`, closed from the desktop):
//! nothing of it lands in the auditor's.
//!
//! `?live=1` watches a tab still open (shadowing): the same, from the start
//! of the connection as fast as it goes (the client needs all of it to
//! draw), then each piece as the gateway writes it, until the tab closes.
//! Meanwhile the watch marks the session (`recording::WatchMark`) and the
//! user's page, which asks `GET /web/sessions/ID/watchers`, says who is
//! watching. Each replay and watch opened (or refused) is in the audit trail.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    extract::{
        Path, Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, close_code},
    },
    http::{HeaderMap, StatusCode},
    response::Response,
};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio::time::{Instant, sleep_until, timeout};

use super::{
    User, WebState,
    clipboard::{self, Filter},
    error,
    gateway::{self, REQUEST_TIMEOUT},
    json_response,
    recording::{
        KIND_RDP, KIND_RESPONSE, MARK_EVERY, Meta, Player, RecordingError, Recordings, WatchMark,
    },
};
use crate::{
    audit::{Act, Actor, code_name},
    domain::catalog::Clipboard,
};

/// The longest pause a replay keeps: an idle hour plays in seconds.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);
/// The fastest replay asked for.
const MAX_SPEED: u32 = 16;

fn refused(err: &RecordingError) -> Response {
    match err {
        RecordingError::Unknown(_) => error(StatusCode::NOT_FOUND, &err.to_string()),
        RecordingError::Damaged { .. } => error(StatusCode::CONFLICT, &err.to_string()),
        RecordingError::Read { .. } | RecordingError::Write { .. } => {
            error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())
        }
    }
}

fn recording_json(meta: &Meta) -> serde_json::Value {
    json!({
        "id": meta.id,
        "session_id": meta.session_id,
        "owner": meta.owner,
        "user": meta.user,
        "template": meta.template,
        "clipboard": meta.clipboard.name(),
        // Whether a replay's client must ask for the clipboard's channel.
        "client_clipboard": meta.client_clipboard.unwrap_or(meta.clipboard != Clipboard::Off),
        "started_ms": meta.started_ms,
        "ended_ms": meta.ended_ms,
        "bytes": meta.bytes,
        "kept": meta.kept,
    })
}

const ADMINS_ONLY: &str = "recordings are for administrators";

/// The newest [`LISTED`] recordings (administrators): `?user=` those of one
/// user's desktops, `?session=` of one desktop; `more` says whether older
/// ones matched too.
pub async fn list(
    State(state): State<Arc<WebState>>,
    user: User,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !user.signed.admin {
        return error(StatusCode::FORBIDDEN, ADMINS_ONLY);
    }
    let wanted = |meta: &&Meta| {
        query.get("user").is_none_or(|u| &meta.owner == u)
            && query.get("session").is_none_or(|s| &meta.session_id == s)
    };
    match state.recordings.list().await {
        Ok(all) => {
            let matching: Vec<&Meta> = all.iter().filter(wanted).collect();
            json_response(
                StatusCode::OK,
                &json!({
                    "recordings": matching.iter().take(LISTED).map(|m| recording_json(m)).collect::<Vec<_>>(),
                    "more": matching.len() > LISTED,
                }),
            )
        }
        Err(err) => refused(&err),
    }
}

/// Recordings listed at most, newest first.
const LISTED: usize = 200;

/// Replays recording `id` on a WebSocket (administrators).
pub async fn replay(
    State(state): State<Arc<WebState>>,
    user: User,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !super::same_origin(&headers, false) {
        return error(
            StatusCode::FORBIDDEN,
            "the replay answers this portal's own page only",
        );
    }
    let actor = Actor {
        name: user.signed.user.clone(),
        subject: "web".into(),
        fingerprint: String::new(),
        peer: user.origin.peer.clone(),
    };
    let live = query.get("live").is_some_and(|v| v == "1");
    let action = if live { "web watch" } else { "web replay" };
    if !user.signed.admin {
        let act = Act {
            result: code_name(tonic::Code::PermissionDenied).into(),
            ..Act::new(action).detail(format!("recording {id}: {ADMINS_ONLY}"))
        };
        state.audit.record(&actor, act).await;
        return error(StatusCode::FORBIDDEN, ADMINS_ONLY);
    }
    let speed = match query.get("speed").map(|s| s.parse::<u32>()) {
        None => 1,
        Some(Ok(speed)) if (1..=MAX_SPEED).contains(&speed) => speed,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("speed: a whole number from 1 to {MAX_SPEED}"),
            );
        }
    };
    let (meta, player) = match state.recordings.play(&id).await {
        Ok(opened) => opened,
        Err(err) => return refused(&err),
    };
    let pace = if live {
        if meta.ended_ms.is_some() {
            return error(
                StatusCode::CONFLICT,
                "that tab is closed: replay its recording instead",
            );
        }
        match state
            .recordings
            .mark_watched(&meta.session_id, &user.signed.user)
            .await
        {
            Ok(mark) => Pace::Live {
                recordings: state.recordings.clone(),
                mark,
            },
            Err(err) => return refused(&err),
        }
    } else if !meta.kept {
        return error(
            StatusCode::CONFLICT,
            "that tab is not recorded (its template has shadow but not record): watch it live",
        );
    } else {
        Pace::Recorded(speed)
    };
    let what = if live {
        "watched live"
    } else {
        "replayed recording"
    };
    let act = Act::new(action)
        .session(&meta.session_id, &meta.owner)
        .detail(format!(
            "{what} {} of {}'s desktop ({}), opened by {} in the tab",
            meta.id, meta.owner, meta.template, meta.user
        ));
    state.audit.record(&actor, act).await;
    upgrade.on_upgrade(move |socket| async move {
        if let Err(error) = play(socket, player, pace).await {
            tracing::info!(recording = %meta.id, %error, "a replay ended early");
        }
    })
}

/// How a replay goes.
pub enum Pace {
    /// At the recorded pace, this many times as fast.
    Recorded(u32),
    /// As fast as it goes, then following the file until its tab closes,
    /// the watch marked meanwhile.
    Live {
        recordings: Arc<Recordings>,
        mark: WatchMark,
    },
}

/// How often a watch looks for more of the stream.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Who is watching session `id` live (its owner, or an administrator).
pub async fn watchers(
    State(state): State<Arc<WebState>>,
    user: User,
    Path(id): Path<String>,
) -> Response {
    let caller = super::desktops::caller_of(&user);
    if let Err(err) = state.sessions.get(&caller, &id).await {
        return super::from_error(&err);
    }
    json_response(
        StatusCode::OK,
        &json!({ "watchers": state.recordings.watchers(&id).await }),
    )
}

/// Why a replay ended before the end of its recording.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the browser's client sent no request: {0}")]
    Request(String),
    #[error("the browser went away")]
    Gone,
    #[error("{0}")]
    Unreadable(#[from] clipboard::Unreadable),
    #[error(transparent)]
    Recording(#[from] RecordingError),
}

/// Plays the recording to the page's client until its end (or its tab's
/// end, live) or the client goes.
pub async fn play(
    mut socket: WebSocket,
    mut player: Player,
    pace: Pace,
) -> Result<(), ReplayError> {
    timeout(REQUEST_TIMEOUT, gateway::read_request(&mut socket))
        .await
        .map_err(|_| ReplayError::Request("timed out".into()))?
        .map_err(|e| ReplayError::Request(e.to_string()))?;
    let (mut tx, mut rx) = socket.split();
    // The recorded RDCleanPath response first.
    let response = player
        .next()
        .await?
        .filter(|frame| frame.kind == KIND_RESPONSE)
        .ok_or_else(|| RecordingError::Damaged {
            id: player.id().to_string(),
            why: "it does not start with the gateway's response".into(),
        })?;
    tx.send(Message::Binary(response.bytes.into()))
        .await
        .map_err(|_| ReplayError::Gone)?;
    // The client's messages go nowhere; its first (the MCS Connect
    // Initial, which names its channels) is read before the desktop's part
    // is played, so the filter knows which channel is the clipboard's.
    let (mut from_client, mut to_client) = clipboard::filters(Clipboard::ToDesktop);
    let first = next_binary(&mut rx).await.ok_or(ReplayError::Gone)?;
    let _ = from_client.feed(&first);
    let drain = async {
        while let Some(data) = next_binary(&mut rx).await {
            let _ = from_client.feed(&data);
        }
    };
    let send = async {
        let start = Instant::now();
        // Where the replay is in the recording's time, with pauses cut.
        let mut clock = Duration::ZERO;
        let mut last_at = response.at_ms;
        let mut marked = Instant::now();
        let mut ending = false;
        loop {
            if let Pace::Live { mark, .. } = &pace
                && marked.elapsed() >= MARK_EVERY
            {
                marked = Instant::now();
                if let Err(error) = mark.refresh().await {
                    tracing::warn!(%error, "a watch's mark could not be refreshed");
                }
            }
            let Some(frame) = player.next().await? else {
                match &pace {
                    Pace::Live { recordings, .. } if !ending => {
                        // The end of what is written: the tab's end, or more to come.
                        ending = recordings
                            .meta(player.id())
                            .await
                            .map_or(true, |meta| meta.ended_ms.is_some());
                        if !ending {
                            tokio::time::sleep(FOLLOW_EVERY).await;
                        }
                        continue;
                    }
                    _ => break,
                }
            };
            if frame.kind != KIND_RDP {
                return Err(RecordingError::Damaged {
                    id: player.id().to_string(),
                    why: "a second response".into(),
                }
                .into());
            }
            if let Pace::Recorded(speed) = pace {
                let gap = Duration::from_millis(u64::from(frame.at_ms.saturating_sub(last_at)));
                clock += gap.min(MAX_PAUSE);
                sleep_until(start + clock / speed).await;
            }
            last_at = frame.at_ms;
            let bytes = empty_clipboard(&mut to_client, &frame.bytes)?;
            if bytes.is_empty() {
                continue;
            }
            tx.send(Message::Binary(bytes.into()))
                .await
                .map_err(|_| ReplayError::Gone)?;
        }
        let reason = match pace {
            Pace::Recorded(_) => "the end of the recording",
            Pace::Live { .. } => "the user's tab closed",
        };
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: reason.into(),
            })))
            .await;
        Ok::<(), ReplayError>(())
    };
    tokio::select! {
        result = send => result,
        () = drain => Err(ReplayError::Gone),
    }
}

/// The next binary message from the client; None once it is gone.
async fn next_binary(
    rx: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<axum::body::Bytes> {
    loop {
        match rx.next().await? {
            Ok(Message::Binary(data)) => return Some(data),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// `bytes` of the recording with the clipboard's content taken out.
fn empty_clipboard(filter: &mut Filter, bytes: &[u8]) -> Result<Vec<u8>, ReplayError> {
    Ok(filter.feed(bytes)?)
}
