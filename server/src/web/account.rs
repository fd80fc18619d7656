//! Signing in and out: `POST /web/login` checks the password against the
//! domain (rate-limited, audited), `POST /web/logout`, `GET /web/me`.

use std::sync::Arc;

use axum::{
    Extension,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{
    WebState,
    directory::SignInError,
    error, json_response,
    signin::{COOKIE, SignIns, cookie_value},
};
use crate::{
    api::grpc::auth::Origin,
    audit::{Act, Actor},
};

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// The address part of a peer (`10.0.0.1:5555` -> `10.0.0.1`).
fn address(peer: &str) -> &str {
    peer.rsplit_once(':')
        .map(|(addr, _)| addr.trim_matches(['[', ']']))
        .unwrap_or(peer)
}

/// `{"username", "password"}` -> 200 with the cookie and
/// `{"user", "admin", "csrf"}`; 401 wrong password, 403 not in
/// `web.allowed_group`, 429 too many failures, 503 directory unreachable.
pub async fn login(
    State(state): State<Arc<WebState>>,
    Extension(origin): Extension<Origin>,
    body: Bytes,
) -> Response {
    let Ok(Login { username, password }) = serde_json::from_slice::<Login>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "send {\"username\": ..., \"password\": ...}",
        );
    };
    let username = username.trim().to_string();
    // Whatever was typed, as the trail's actor: only a plausible name.
    let tried = if crate::domain::validate::account_name("username", &username).is_ok() {
        username.clone()
    } else {
        String::new()
    };
    let actor = Actor {
        name: tried.clone(),
        subject: "web".into(),
        fingerprint: String::new(),
        peer: origin.peer.clone(),
    };
    let refused = |result: &str, detail: String| Act {
        result: result.into(),
        detail,
        ..Act::new("web sign-in")
    };
    let addr = address(&origin.peer);
    if let Some(wait) = state.throttle.check(&username, addr) {
        let secs = wait.as_secs().max(1);
        state
            .audit
            .record(
                &actor,
                refused(
                    "RESOURCE_EXHAUSTED",
                    "too many failed sign-ins for this user or address".into(),
                ),
            )
            .await;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many failed sign-ins: try again in {secs} s"),
        );
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let identity = match state.directory.sign_in(&username, &password).await {
        Ok(identity) => identity,
        Err(SignInError::BadCredentials) => {
            state.throttle.failed(&username, addr);
            state
                .audit
                .record(
                    &actor,
                    refused("UNAUTHENTICATED", "wrong user name or password".into()),
                )
                .await;
            return error(StatusCode::UNAUTHORIZED, "wrong user name or password");
        }
        Err(err @ SignInError::Unavailable(_)) => {
            tracing::warn!(error = %err, "a web sign-in could not reach the directory");
            state
                .audit
                .record(&actor, refused("UNAVAILABLE", err.to_string()))
                .await;
            return error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string());
        }
    };
    let web = &state.web;
    let admin = web
        .admin_group
        .as_deref()
        .is_some_and(|g| identity.is_in(g))
        || state.config.auth.admins.contains(&identity.user);
    let actor = Actor {
        name: identity.user.clone(),
        ..actor
    };
    if let Some(group) = &web.allowed_group
        && !admin
        && !identity.is_in(group)
    {
        state.throttle.succeeded(&username);
        state
            .audit
            .record(
                &actor,
                refused("PERMISSION_DENIED", format!("not in the group {group}")),
            )
            .await;
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "your account may not use this service (it is not in the group {group}); \
                 ask your administrator"
            ),
        );
    }
    state.throttle.succeeded(&username);
    let (cookie, signed) = state.signins.open(&identity.user, admin);
    let detail = if admin { "administrator" } else { "user" };
    state
        .audit
        .record(&actor, Act::new("web sign-in").detail(detail))
        .await;
    tracing::info!(user = %identity.user, admin, "web sign-in");
    let mut response = json_response(
        StatusCode::OK,
        &json!({ "user": signed.user, "admin": signed.admin, "csrf": signed.csrf }),
    );
    if let Ok(value) = HeaderValue::from_str(&state.signins.set_cookie(&cookie)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Signs the browser out (CSRF-checked) and clears the cookie.
pub async fn logout(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    if let Err(response) = state.checked(&headers) {
        return *response;
    }
    if let Some(cookie) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie_value(v, COOKIE))
    {
        state.signins.close(cookie);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&SignIns::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Who is signed in, their CSRF token and the templates they may create.
pub async fn me(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let signed = match state.signed_in(&headers) {
        Ok(signed) => signed,
        Err(response) => return *response,
    };
    json_response(
        StatusCode::OK,
        &json!({
            "user": signed.user,
            "admin": signed.admin,
            "csrf": signed.csrf,
            "templates": state.templates(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_lose_their_port() {
        assert_eq!(address("10.0.0.1:5555"), "10.0.0.1");
        assert_eq!(address("[::1]:5555"), "::1");
        assert_eq!(address("local"), "local");
    }
}
