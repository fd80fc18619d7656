//! The cluster's nodes for administrators in the portal: the list (as
//! `daas node list`), drain and resume (CSRF-checked, audited as from the
//! CLI).

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    response::Response,
};
use serde_json::json;

use super::{
    Checked, User, WebState,
    desktops::{actor_of, caller_of, reply},
    json as shape,
};

/// Every node the server knows (administrators).
pub async fn list(State(state): State<Arc<WebState>>, user: User) -> Response {
    let result = state.sessions.nodes(&caller_of(&user)).await;
    reply(
        result,
        |nodes| json!({ "nodes": nodes.iter().map(shape::node).collect::<Vec<_>>() }),
    )
}

/// Drains node `name` (administrators).
pub async fn drain(
    State(state): State<Arc<WebState>>,
    Checked(user): Checked,
    Path(name): Path<String>,
) -> Response {
    set_drained(&state, &user, &name, true).await
}

/// Resumes node `name` (administrators).
pub async fn resume(
    State(state): State<Arc<WebState>>,
    Checked(user): Checked,
    Path(name): Path<String>,
) -> Response {
    set_drained(&state, &user, &name, false).await
}

async fn set_drained(state: &WebState, user: &User, name: &str, drained: bool) -> Response {
    let result = state
        .sessions
        .set_drained(&caller_of(user), &actor_of(user), name, drained)
        .await;
    reply(result, |node| shape::node(&node))
}
