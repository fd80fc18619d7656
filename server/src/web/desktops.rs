//! The signed-in user's desktops, through the sessions service (the same
//! rules, limits and audit trail as the CLI): list, create,
//! follow a create's stages (server-sent events), destroy, a `.rdp` file, a
//! gateway ticket and the gateway itself; for administrators the pools and
//! the audit trail.

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{Path, Query, State, WebSocketUpgrade},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use daas_api::v1::{
    CreateSessionRequest, GetQuotaRequest, ListAuditRequest, ListSessionsRequest,
    ListSnapshotsRequest, Session, SessionState,
};
use serde::Deserialize;
use serde_json::json;
use tokio_stream::StreamExt;

use super::{
    Checked, User, WebState, autologon::Autologon, error, from_error, gateway, json as shape,
    json_response, prestart, signin::SignedIn, tickets::IssueError,
};
use crate::{
    audit::{Act, Actor, code_name},
    domain::{
        error::Error,
        identity::{Caller, Origin},
    },
};

/// The largest WebSocket message the gateway takes from a browser.
const MAX_GATEWAY_MESSAGE: usize = 1 << 20;

/// The signed-in user as the sessions service's caller.
pub(super) fn caller_of(user: &User) -> Caller {
    Caller::User {
        name: user.signed.user.clone(),
        admin: user.signed.admin,
        groups: user.signed.groups.clone(),
    }
}

/// The signed-in user as the audit trail names them: from the browser's
/// address, through the portal.
pub(super) fn actor_of(user: &User) -> Actor {
    let origin = Origin {
        subject: "web".into(),
        fingerprint: String::new(),
        peer: user.origin.peer.clone(),
    };
    Actor::caller(Some(&caller_of(user)), &origin)
}

/// 200 with the answer shaped as JSON, or the error as the page's.
pub(super) fn reply<T>(
    result: Result<T, Error>,
    shape: impl FnOnce(T) -> serde_json::Value,
) -> Response {
    match result {
        Ok(answer) => json_response(StatusCode::OK, &shape(answer)),
        Err(err) => from_error(&err),
    }
}

/// The user's sessions that are not DESTROYED; `?all=1`: every user's
/// (administrators).
pub async fn list(
    State(state): State<Arc<WebState>>,
    user: User,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let all = query.get("all").is_some_and(|v| v == "1") && user.signed.admin;
    // An organisation's administrators list its desktops.
    let org = query.get("org").cloned().unwrap_or_default();
    let mine = !all && org.is_empty();
    let message = ListSessionsRequest {
        username: if mine {
            user.signed.user.clone()
        } else {
            String::new()
        },
        org,
        page_size: 1000,
        ..Default::default()
    };
    let caller = caller_of(&user);
    let result = state.sessions.list(&caller, message).await;
    // With the user's own desktops, where they stand in each quota and
    // the disks kept for them.
    let mut quotas = Vec::new();
    let mut kept = Vec::new();
    if mine {
        let asked = ListSnapshotsRequest {
            username: user.signed.user.clone(),
        };
        match state.sessions.snapshots(&caller, asked).await {
            Ok(snapshots) => kept = snapshots.iter().map(shape::snapshot).collect(),
            Err(err) => return from_error(&err),
        }
        for org in state.member_orgs(&user.signed) {
            let asked = GetQuotaRequest {
                org,
                ..Default::default()
            };
            match state.sessions.quota(&caller, asked).await {
                Ok(quota) => quotas.push(shape::quota(&quota)),
                Err(err) => return from_error(&err),
            }
        }
    }
    reply(result, |r| {
        let sessions: Vec<_> = r
            .sessions
            .iter()
            .filter(|s| s.state != SessionState::Destroyed as i32)
            .map(shape::session)
            .collect();
        json!({ "sessions": sessions, "quotas": quotas, "kept": kept })
    })
}

#[derive(Deserialize)]
struct Create {
    #[serde(default)]
    template: String,
    /// One of the template's sizes; empty: its default.
    #[serde(default)]
    size: String,
    /// The page's id for this click: a repeat makes no second desktop.
    #[serde(default)]
    request_id: String,
    /// The organisation it counts against, for a user in several.
    #[serde(default)]
    org: String,
    /// The size the tab will open the desktop at, for a session started
    /// at the create (`web.start_session_at_create`).
    #[serde(default)]
    screen: Option<Screen>,
}

#[derive(Deserialize, Clone, Copy)]
struct Screen {
    width: u32,
    height: u32,
}

impl Screen {
    /// The size as the web client would ask for it; None when out of
    /// what an RDP desktop takes.
    fn size(self) -> Option<(u16, u16)> {
        let width = u16::try_from(self.width).ok()?;
        let height = u16::try_from(self.height).ok()?;
        ((200..=8192).contains(&width) && (200..=8192).contains(&height)).then_some((width, height))
    }
}

/// `{"template", "size", "request_id"}` -> 202 `{"id"}`; the stages follow on
/// `GET /web/sessions/{id}/events`. The create goes on whatever the
/// browser does.
pub async fn create(
    State(state): State<Arc<WebState>>,
    Checked(user): Checked,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Create>(&body) else {
        return error(StatusCode::BAD_REQUEST, "send {\"template\": ...}");
    };
    if let Err(refused) = state.offers(&user.signed, &body.template) {
        return *refused;
    }
    let screen = body.screen.and_then(Screen::size);
    let message = CreateSessionRequest {
        template: body.template,
        size: body.size,
        request_id: body.request_id,
        org: body.org,
        ..Default::default()
    };
    match state
        .sessions
        .create(&caller_of(&user), &actor_of(&user), message)
        .await
    {
        Ok(started) => {
            let id = started.record.id;
            if starts_sessions(&state) && state.passwords.holds(&user.signed.key) {
                let size = screen.unwrap_or(prestart::DEFAULT_SIZE);
                tokio::spawn(start_session(state.clone(), user, id.clone(), size));
            }
            json_response(StatusCode::ACCEPTED, &json!({ "id": id }))
        }
        Err(err) => from_error(&err),
    }
}

/// How long a create is waited for before its session is started; one
/// still going then is opened without.
const SETTLE_WAIT: Duration = Duration::from_secs(30 * 60);

/// Whether a desktop created from the page has its session started as
/// soon as it is READY (sign in once, `web.start_session_at_create`).
fn starts_sessions(state: &WebState) -> bool {
    passes_through(state) && state.web.start_session_at_create
}

/// Waits for session `id` to settle; READY: logs its user in to its xrdp
/// with the sign-in's password (`prestart.rs`), so the session starts
/// before the user opens it. Audited as `web session start`.
async fn start_session(state: Arc<WebState>, user: User, id: String, size: (u16, u16)) {
    // A tab opened before the login below has left waits for it.
    let _starting = state.starting.begin(&id);
    let settled = tokio::time::timeout(SETTLE_WAIT, async {
        if let Ok(mut events) = state.sessions.watch(&caller_of(&user), id.clone(), 0).await {
            while events.next().await.is_some() {}
        }
    })
    .await;
    let record = match state.store.get(&id).await {
        Ok(Some(record)) if settled.is_ok() && record.state == SessionState::Ready => record,
        _ => return,
    };
    // Signed out meanwhile: nothing to start with.
    let Some(login) = autologon_of(&state, &user.signed) else {
        return;
    };
    let result = match rdp_addr(&record.outputs.rdp_host, record.outputs.rdp_port).await {
        Ok(addr) => prestart::start(
            addr,
            &record.outputs.rdp_cert_sha256,
            &login,
            size,
            prestart::HOLD,
        )
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    drop(login);
    let act = Act::new("web session start").session(&id, &record.username);
    let act = match result {
        Ok(started) => {
            tracing::info!(session = %id, user = %user.signed.user, login_ms = started.login.as_millis() as u64, "started a desktop's session ahead of its tab");
            act.detail(format!(
                "logged in to xrdp with the portal's sign-in in {} ms; the session starts before the tab opens",
                started.login.as_millis()
            ))
        }
        Err(why) => {
            tracing::info!(session = %id, user = %user.signed.user, error = %why, "could not start a desktop's session ahead of its tab");
            Act {
                result: code_name(tonic::Code::Unavailable).into(),
                ..act.detail(format!("not started ahead (the tab starts it): {why}"))
            }
        }
    };
    state.audit.record(&actor_of(&user), act).await;
}

/// The address of a desktop's xrdp.
async fn rdp_addr(host: &str, port: u16) -> Result<std::net::SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("cannot resolve the desktop's address {host}"))
}

/// A session's events as server-sent events (`event: session`, the data
/// JSON, the id its sequence), from the first or after `Last-Event-ID`,
/// until it settles; then `event: end`.
pub async fn events(
    State(state): State<Arc<WebState>>,
    user: User,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stream = match state.sessions.watch(&caller_of(&user), id, after).await {
        Ok(stream) => stream,
        Err(err) => return from_error(&err),
    };
    let events = stream
        .map(|item| match item {
            Ok(event) => Event::default()
                .event("session")
                .id(event.sequence.to_string())
                .data(shape::event(&event).to_string()),
            Err(err) => Event::default()
                .event("failure")
                .data(json!({ "error": err.to_string() }).to_string()),
        })
        .chain(tokio_stream::once(Event::default().event("end").data("{}")))
        .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Destroys a session (CSRF-checked); 200 with the session.
pub async fn destroy(
    State(state): State<Arc<WebState>>,
    Checked(user): Checked,
    Path(id): Path<String>,
) -> Response {
    let result = state
        .sessions
        .destroy(&caller_of(&user), &actor_of(&user), &id)
        .await;
    reply(result, |record| shape::session(&record.to_proto()))
}

/// A READY session the signed-in user may open, or the answer why not.
async fn ready_session(
    state: &WebState,
    user: &User,
    id: String,
) -> Result<Session, Box<Response>> {
    let session = state
        .sessions
        .get(&caller_of(user), &id)
        .await
        .map_err(|err| Box::new(from_error(&err)))?;
    if session.state != SessionState::Ready as i32 {
        return Err(Box::new(error(
            StatusCode::CONFLICT,
            "the desktop is not READY: wait for it, or create another",
        )));
    }
    Ok(session)
}

/// A `.rdp` file for a native client.
pub async fn rdp_file(
    State(state): State<Arc<WebState>>,
    user: User,
    Path(id): Path<String>,
) -> Response {
    let session = match ready_session(&state, &user, id).await {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Some(body) = rdp_text(&session) else {
        return error(
            StatusCode::BAD_GATEWAY,
            "the desktop's RDP address is not usable: ask an administrator to check the Terraform module's rdp_host output",
        );
    };
    let disposition = format!("attachment; filename=\"{}.rdp\"", session.vm_name);
    let mut response = (
        [(header::CONTENT_TYPE, "application/x-rdp; charset=utf-8")],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The `.rdp` settings: where, who; the password is asked by the client.
/// `None` when the address is not an IP address or a DNS name, or the
/// user name holds a control character: no value adds a line of its own.
pub fn rdp_text(session: &Session) -> Option<String> {
    daas_api::address::check_host(&session.rdp_host).ok()?;
    if session.username.chars().any(char::is_control) {
        return None;
    }
    let host = if session.rdp_host.contains(':') {
        format!("[{}]", session.rdp_host)
    } else {
        session.rdp_host.clone()
    };
    let text = [
        format!("full address:s:{host}:{}", session.rdp_port),
        format!("username:s:{}", session.username),
        "prompt for credentials:i:1".into(),
        "authentication level:i:2".into(),
        "screen mode id:i:2".into(),
        "session bpp:i:32".into(),
    ]
    .join("\r\n")
        + "\r\n";
    Some(text)
}

/// Sign in once: whether the gateway gives xrdp the sign-in's password
/// (when this server holds it): the option is on and desktops join the
/// domain (elsewhere the domain account's password is no login).
fn passes_through(state: &WebState) -> bool {
    state.web.pass_through_credentials && state.config.ansible.joins_domain()
}

/// Who xrdp logs in for sign-in `signed` (sign in once), when this server
/// holds its password.
fn autologon_of(state: &WebState, signed: &SignedIn) -> Option<Autologon> {
    if !passes_through(state) {
        return None;
    }
    state.passwords.get(&signed.key).map(|password| Autologon {
        username: signed.user.clone(),
        domain: String::new(),
        password,
    })
}

/// A single-use ticket that opens the session in the browser (CSRF-checked).
pub async fn ticket(
    State(state): State<Arc<WebState>>,
    Checked(user): Checked,
    Path(id): Path<String>,
) -> Response {
    let session = match ready_session(&state, &user, id).await {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let ticket = match state.tickets.issue(&session.id, &user.signed.user).await {
        Ok(ticket) => ticket,
        Err(err @ IssueError::UserFull) => {
            return error(StatusCode::TOO_MANY_REQUESTS, &err.to_string());
        }
        Err(err @ (IssueError::Full | IssueError::Unavailable)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string());
        }
    };
    json_response(
        StatusCode::OK,
        &json!({
            "ticket": ticket,
            "expires_in": state.tickets.ttl().as_secs(),
            "username": session.username,
            // What the page asks of the web client; the gateway enforces it.
            "clipboard": state.config.catalog.clipboard(&session.template).name(),
            // Whether the gateway logs the user in (sign in once): the page
            // then reopens the desktop at a new size without asking.
            "autologon": passes_through(&state) && state.passwords.holds(&user.signed.key),
            // The page tells the user: the gateway keeps what the tab shows,
            // or an administrator may watch it (the page asks who does).
            "recorded": state.config.catalog.records(&session.template),
            "watchable": state.config.catalog.shadows(&session.template),
        }),
    )
}

/// Whether the gateway writes what the tab of a desktop of `template`
/// gets: to keep it, or for administrators to watch it live.
fn watched_or_recorded(state: &WebState, template: &str) -> bool {
    state.config.catalog.records(template) || state.config.catalog.shadows(template)
}

/// The RDP gateway: a WebSocket on which the browser's RDP client sends
/// its ticket; the desktop is the ticket's session, found by the server.
pub async fn gateway(
    State(state): State<Arc<WebState>>,
    user: User,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Against cross-site WebSocket hijacking; a client that is no browser
    // (no Origin) still needs the ticket and the cookie.
    if !super::same_origin(&headers, false) {
        return error(
            StatusCode::FORBIDDEN,
            "the gateway answers this portal's own page only",
        );
    }
    let User { signed, origin } = user;
    let relay = match state.relays.open(&signed.user, &signed.key) {
        Ok(relay) => relay,
        Err(err) => return error(StatusCode::TOO_MANY_REQUESTS, &err.to_string()),
    };
    // The browser sends small RDP messages: nothing near axum's 64 MiB.
    let upgrade = upgrade
        .max_message_size(MAX_GATEWAY_MESSAGE)
        .max_frame_size(MAX_GATEWAY_MESSAGE);
    upgrade.on_upgrade(move |socket| async move {
        let actor = Actor {
            name: signed.user.clone(),
            subject: "web".into(),
            fingerprint: String::new(),
            peer: origin.peer.clone(),
        };
        let opened = std::sync::Mutex::new(String::new());
        let redeem = |ticket: String| {
            let (state, signed, opened) = (state.clone(), signed.clone(), &opened);
            async move {
                let id = state
                    .tickets
                    .redeem(&ticket, &signed.user)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Ok(mut slot) = opened.lock() {
                    slot.clone_from(&id);
                }
                // Her session's start at the create: xrdp takes the tab's
                // login once that one has left.
                let limit = prestart::LOGIN_TIMEOUT + prestart::HOLD;
                if state.starting.wait(&id, limit).await {
                    tracing::debug!(session = %id, "the tab waited for the session's start at the create");
                }
                let record = state
                    .store
                    .get(&id)
                    .await
                    .map_err(|e| e.to_string())?
                    .filter(|r| r.state == SessionState::Ready)
                    .ok_or_else(|| "the desktop is not READY".to_string())?;
                let addr = rdp_addr(&record.outputs.rdp_host, record.outputs.rdp_port).await?;
                let autologon = autologon_of(&state, &signed);
                Ok(gateway::Target {
                    addr,
                    cert_sha256: record.outputs.rdp_cert_sha256,
                    session_id: id,
                    autologon,
                    clipboard: state.config.catalog.clipboard(&record.template),
                    record: watched_or_recorded(&state, &record.template).then(|| {
                        super::recording::Plan {
                            to: state.recordings.clone(),
                            subject: super::recording::Subject {
                                session_id: record.id.clone(),
                                owner: record.username.clone(),
                                user: signed.user.clone(),
                                template: record.template.clone(),
                                clipboard: state.config.catalog.clipboard(&record.template),
                                kept: state.config.catalog.records(&record.template),
                            },
                        }
                    }),
                })
            }
        };
        let end = gateway::RelayEnd {
            stop: relay.stop.clone(),
            idle: state.web.relay_idle_timeout,
        };
        let result = gateway::relay(socket, redeem, end).await;
        drop(relay);
        let session = opened.lock().map(|s| s.clone()).unwrap_or_default();
        let owner = match state.store.get(&session).await {
            Ok(Some(record)) => record.username,
            _ => String::new(),
        };
        let act = Act::new("web connect").session(&session, &owner);
        let act = match &result {
            Ok(relayed) => {
                tracing::info!(
                    session = %session,
                    user = %signed.user,
                    to_client = relayed.to_client,
                    to_server = relayed.to_server,
                    setup_ms = relayed.setup.as_millis() as u64,
                    autologon = relayed.autologon,
                    "a browser's RDP connection ended"
                );
                let ended = match &relayed.closed_by {
                    gateway::ClosedBy::Browser | gateway::ClosedBy::Desktop => String::new(),
                    gateway::ClosedBy::Idle => {
                        "; closed after web.relay_idle_timeout unused".into()
                    }
                    gateway::ClosedBy::Stopped => "; closed when its sign-in ended".into(),
                    gateway::ClosedBy::Gateway(why) => format!("; closed by the gateway: {why}"),
                    gateway::ClosedBy::Recording(why) => {
                        format!("; closed by the gateway: the recording failed: {why}")
                    }
                };
                let signed_in = if relayed.autologon {
                    "; logged in with the portal's sign-in"
                } else {
                    ""
                };
                let recorded = relayed
                    .recording
                    .as_ref()
                    .map(|id| format!("; recorded as {id}"))
                    .unwrap_or_default();
                act.detail(format!(
                    "{} bytes to the browser, {} to the desktop{signed_in}{recorded}{ended}",
                    relayed.to_client, relayed.to_server
                ))
            }
            Err(err) => {
                tracing::info!(session = %session, user = %signed.user, error = %err, "a browser's RDP connection failed");
                Act {
                    result: code_name(err.code()).into(),
                    ..act.detail(err.to_string())
                }
            }
        };
        state.audit.record(&actor, act).await;
    })
}

/// The warm pools (administrators).
pub async fn pools(State(state): State<Arc<WebState>>, user: User) -> Response {
    let result = state.sessions.pools(&caller_of(&user)).await;
    reply(
        result,
        |pools| json!({ "pools": pools.iter().map(shape::pool).collect::<Vec<_>>() }),
    )
}

/// The newest 200 entries of the audit trail, `?user=`, `?session=`
/// (administrators).
pub async fn audit(
    State(state): State<Arc<WebState>>,
    user: User,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let message = ListAuditRequest {
        username: query.get("user").cloned().unwrap_or_default(),
        session_id: query.get("session").cloned().unwrap_or_default(),
        page_size: 200,
        ..Default::default()
    };
    let result = state.sessions.audit_page(&caller_of(&user), message).await;
    reply(
        result,
        |r| json!({ "entries": r.entries.iter().map(shape::audit).collect::<Vec<_>>() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_is_taken_within_what_a_desktop_takes() {
        let size = |width, height| Screen { width, height }.size();
        assert_eq!(size(1366, 768), Some((1366, 768)));
        assert_eq!(size(200, 8192), Some((200, 8192)));
        assert_eq!(size(199, 768), None);
        assert_eq!(size(1366, 8193), None);
        assert_eq!(size(70_000, 768), None, "beyond u16");
        let body: Create = serde_json::from_str(r#"{"template": "t"}"#).expect("no screen");
        assert!(body.screen.is_none());
    }

    #[test]
    fn rdp_files_name_the_desktop_and_the_user_never_a_password() {
        let session = Session {
            username: "alice".into(),
            rdp_host: "10.0.0.5".into(),
            rdp_port: 3389,
            ..Default::default()
        };
        let text = rdp_text(&session).expect("a usable address");
        assert!(text.contains("full address:s:10.0.0.5:3389\r\n"));
        assert!(text.contains("username:s:alice\r\n"));
        assert!(!text.contains("password"));
        let v6 = Session {
            rdp_host: "fd00::5".into(),
            ..session.clone()
        };
        let text = rdp_text(&v6).expect("an IPv6 address");
        assert!(
            text.starts_with("full address:s:[fd00::5]:3389\r\n"),
            "{text}"
        );
        for host in ["10.0.0.5\r\nusername:s:eve", "10.0.0.5 x", ""] {
            let bad = Session {
                rdp_host: host.into(),
                ..session.clone()
            };
            assert_eq!(rdp_text(&bad), None, "{host:?}");
        }
        let bad_user = Session {
            username: "alice\nx".into(),
            ..session
        };
        assert_eq!(rdp_text(&bad_user), None);
    }

    #[test]
    fn websockets_from_other_sites_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("portal:8443"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://portal:8443"),
        );
        assert!(super::super::same_origin(&headers, false));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!super::super::same_origin(&headers, false));
        headers.remove(header::ORIGIN);
        assert!(super::super::same_origin(&headers, false));
        assert!(
            !super::super::same_origin(&headers, true),
            "the sign-in needs it"
        );
    }
}
