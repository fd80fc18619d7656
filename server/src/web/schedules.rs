//! The user's schedules in the portal: listed, added (in the browser's
//! time zone, CSRF-checked) and removed, audited as from the CLI.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use daas_api::v1::{AddScheduleRequest, ListSchedulesRequest};
use serde::Deserialize;
use serde_json::json;

use super::{
    Checked, User, WebState,
    desktops::{actor_of, caller_of, reply},
    error, json as shape,
};

/// The signed-in user's schedules.
pub async fn list(State(state): State<Arc<WebState>>, user: User) -> Response {
    let asked = ListSchedulesRequest {
        username: user.signed.user.clone(),
    };
    let result = state.sessions.schedules(&caller_of(&user), asked).await;
    reply(
        result,
        |all| json!({ "schedules": all.iter().map(shape::schedule).collect::<Vec<_>>() }),
    )
}

#[derive(Deserialize)]
struct Add {
    at: String,
    days: String,
    timezone: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    size: String,
    #[serde(default)]
    org: String,
}

/// `{"at", "days", "timezone", "template", "size", "org"}` -> the schedule.
pub async fn add(
    State(state): State<Arc<WebState>>,
    Checked(user): Checked,
    body: Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Add>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "send {\"at\": \"08:00\", \"days\": \"mon-fri\", \"timezone\": ...}",
        );
    };
    if let Err(refused) = state.offers(&user.signed, &body.template) {
        return *refused;
    }
    let asked = AddScheduleRequest {
        username: String::new(),
        at: body.at,
        days: body.days,
        timezone: body.timezone,
        template: body.template,
        size: body.size,
        org: body.org,
    };
    let result = state
        .sessions
        .add_schedule(&caller_of(&user), &actor_of(&user), asked)
        .await;
    reply(result, |s| shape::schedule(&s))
}

/// Removes one of the user's schedules.
pub async fn remove(
    State(state): State<Arc<WebState>>,
    Checked(user): Checked,
    Path(id): Path<String>,
) -> Response {
    let result = state
        .sessions
        .remove_schedule(&caller_of(&user), &actor_of(&user), &id)
        .await;
    reply(result, |s| shape::schedule(&s))
}
