//! The four REST endpoints of the service this one replaces, with its
//! shapes and codes, so its users' `curl` scripts keep working with
//! `--cert/--key` added: `GET /`, `GET /api/sessions`,
//! `POST /api/session/create` (answers when the desktop is READY or has
//! FAILED) and `POST /api/session/destroy`. Each call goes through the
//! sessions service, as gRPC's do: the same rules, limits, audit trail,
//! and streams for gRPC watchers.
//!
//! Errors are `{"error": ..., "details": ...}` with the HTTP status of the
//! error's code (400 for a missing field, 403, 404, 429 with Retry-After),
//! and 500 with the tool's error when a create or destroy failed.

use std::sync::Arc;

use axum::{
    Extension, Router,
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use daas_api::v1::{CreateSessionRequest, SessionState};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::HttpState;
use crate::{
    audit::Actor,
    domain::error::Error,
    domain::identity::{Caller, Origin},
    store::SessionRecord,
};

/// The routes, for the HTTPS listener.
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/", get(home))
        .route("/api/sessions", get(sessions))
        .route("/api/session/create", post(create))
        .route("/api/session/destroy", post(destroy))
}

/// A JSON error answer.
fn error(status: StatusCode, error: &str, details: Option<&str>) -> Response {
    let mut body = json!({ "error": error });
    if let Some(details) = details {
        body["details"] = Value::from(details);
    }
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string() + "\n",
    )
        .into_response()
}

/// A refusal or failure of the sessions service, with the HTTP status of
/// its code, as `{"error": ...}` (with Retry-After when waiting helps).
pub fn from_error(err: &Error) -> Response {
    err.log_if_internal();
    let mut response = error(err.code().http(), &err.to_string(), None);
    if let Some(after) = err.retry_after()
        && let Ok(value) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// `2025-11-21T10:00:00` (UTC), as the old API wrote times.
fn naive_utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The old API's word for a state: `active` for READY.
fn status_word(state: SessionState) -> String {
    match state {
        SessionState::Ready => "active".into(),
        other => other.label().to_ascii_lowercase(),
    }
}

fn actor_of(caller: &Caller, origin: &Origin) -> Actor {
    Actor::caller(Some(caller), origin)
}

async fn home() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html>\n<title>Orchestrateur DaaS</title>\n",
        "<h1>Orchestrateur DaaS</h1>\n",
        "<p>daas-server ",
        env!("CARGO_PKG_VERSION"),
        ". REST: <code>GET /api/sessions</code>, <code>POST /api/session/create</code>, ",
        "<code>POST /api/session/destroy</code>; health: <code>/healthz</code>, ",
        "<code>/readyz</code>. The <code>daas</code> CLI and the gRPC API do more.</p>\n"
    ))
}

/// The caller's live sessions (every user's for an administrator), by id.
async fn sessions(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let username = match (caller.is_admin(), caller.user()) {
        (true, _) => None,
        (false, Some(me)) => Some(me.to_string()),
        (false, None) => {
            return error(
                StatusCode::FORBIDDEN,
                "only users and administrators may list sessions",
                None,
            );
        }
    };
    let records = match state.store.list(username, None).await {
        Ok(records) => records,
        Err(err) => {
            tracing::error!(error = %err, "GET /api/sessions failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string(), None);
        }
    };
    let mut out = serde_json::Map::new();
    for r in records
        .iter()
        .filter(|r| {
            !matches!(
                r.state,
                SessionState::Failed | SessionState::Destroyed | SessionState::Lost
            )
        })
        .filter(|r| !r.is_unclaimed())
    {
        out.insert(
            r.id.clone(),
            json!({
                "session_id": r.id,
                "vm_name": r.vm_name,
                "vm_ip": r.outputs.rdp_host,
                "rdp_port": r.outputs.rdp_port,
                "username": r.username,
                "template": r.template,
                "created_at": naive_utc(r.created_ms),
                "status": status_word(r.state),
            }),
        );
    }
    json_response(StatusCode::OK, &Value::Object(out))
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    session_user: Option<String>,
    #[serde(default)]
    session_password: Option<String>,
    #[serde(default)]
    template: Option<String>,
}

/// Parses a JSON body, or answers why it is not one.
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
            Some(&e.to_string()),
        ))
    })
}

/// Creates a desktop and answers once it is READY (200) or FAILED (500
/// with the failing tool's error). A client that goes away does not stop
/// the create.
async fn create(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Extension(origin): Extension<Origin>,
    body: Bytes,
) -> Response {
    let body: CreateBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(username) = body.username.filter(|u| !u.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "username required", None);
    };
    let request = CreateSessionRequest {
        username,
        session_user: body.session_user.unwrap_or_default(),
        session_password: body.session_password.unwrap_or_default(),
        template: body.template.unwrap_or_default(),
        ..Default::default()
    };
    let actor = actor_of(&caller, &origin);
    let mut started = match state.sessions.create(&caller, &actor, request).await {
        Ok(started) => started,
        Err(err) => return from_error(&err),
    };
    let id = started.record.id.clone();
    while let Some(event) = started.events.next().await {
        if let Err(err) = event {
            return from_error(&err);
        }
    }
    let record = match state.store.get(&id).await {
        Ok(Some(record)) => record,
        _ => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server stopped before the desktop was ready",
                Some(&format!("follow it with: daas watch {id}")),
            );
        }
    };
    match record.state {
        SessionState::Ready => json_response(StatusCode::OK, &ready_body(&record)),
        SessionState::Failed => {
            let (stage, reason) = record
                .failure
                .clone()
                .unwrap_or((SessionState::Unspecified, String::new()));
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{} failed", stage_tool(stage)),
                Some(&reason),
            )
        }
        other => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the desktop is {}, not ready", other.label()),
            Some(&format!("follow it with: daas watch {id}")),
        ),
    }
}

/// The tool a failing stage ran, as the old API named failures
/// ("Terraform failed").
fn stage_tool(stage: SessionState) -> &'static str {
    match stage {
        SessionState::Provisioning | SessionState::Destroying => "Terraform",
        SessionState::Booting => "Boot",
        SessionState::Configuring => "Ansible",
        _ => "Provisioning",
    }
}

fn ready_body(r: &SessionRecord) -> Value {
    json!({
        "session_id": r.id,
        "vm_name": r.vm_name,
        "vm_ip": r.outputs.rdp_host,
        "rdp_port": r.outputs.rdp_port,
        "username": r.username,
        "session_user": (!r.session_user.is_empty()).then_some(&r.session_user),
        "template": r.template,
        "status": "ready",
        "message": "Desktop ready: connect with RDP",
    })
}

#[derive(Deserialize)]
struct DestroyBody {
    #[serde(default)]
    session_id: Option<String>,
}

/// Destroys a desktop by session id (or, as the old API allowed, by VM
/// name).
async fn destroy(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Extension(origin): Extension<Origin>,
    body: Bytes,
) -> Response {
    let body: DestroyBody = match parse(&body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let Some(given) = body.session_id.filter(|s| !s.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "session_id required", None);
    };
    let id = match state.store.by_vm_name(&given).await {
        Ok(Some(record)) => record.id,
        // Neither a VM name nor a session id: unknown, as the old API said.
        _ if crate::domain::validate::session_id(&given).is_err() => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no session or VM named {given:?}"),
                None,
            );
        }
        _ => given,
    };
    let actor = actor_of(&caller, &origin);
    match state.sessions.destroy(&caller, &actor, &id).await {
        Ok(record) if record.state == SessionState::Destroyed => json_response(
            StatusCode::OK,
            &json!({ "session_id": record.id, "status": "destroyed" }),
        ),
        Ok(record) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Terraform destroy failed",
            record.failure.as_ref().map(|(_, reason)| reason.as_str()),
        ),
        Err(err @ Error::DestroyFailed { .. }) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Terraform destroy failed",
            Some(&err.to_string()),
        ),
        Err(err) => from_error(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_states_read_as_the_old_api_wrote_them() {
        assert_eq!(naive_utc(1_763_719_200_000), "2025-11-21T10:00:00");
        assert_eq!(status_word(SessionState::Ready), "active");
        assert_eq!(status_word(SessionState::Configuring), "configuring");
        assert_eq!(stage_tool(SessionState::Provisioning), "Terraform");
        assert_eq!(stage_tool(SessionState::Configuring), "Ansible");
    }
}
