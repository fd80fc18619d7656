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
    Access, WebState, error, json as shape, json_response,
    ldap::SignInError,
    signin::{COOKIE, OpenError, SignIns, cookie_value},
    throttle::Refusal,
    unavailable,
};
use crate::{
    audit::{Act, Actor},
    domain::identity::Origin,
};

#[derive(Deserialize)]
struct Login {
    username: String,
    password: zeroize::Zeroizing<String>,
}

/// The address part of a peer (`10.0.0.1:5555` -> `10.0.0.1`).
fn address(peer: &str) -> &str {
    peer.rsplit_once(':')
        .map(|(addr, _)| addr.trim_matches(['[', ']']))
        .unwrap_or(peer)
}

/// `{"username", "password"}` -> 200 with the cookie and
/// `{"user", "admin", "csrf"}`; 401 wrong password, 403 not in
/// `web.allowed_group` (or not sent by this portal's page), 415 not JSON,
/// 429 too many failures, 503 directory unreachable or too busy.
pub async fn login(
    State(state): State<Arc<WebState>>,
    Extension(origin): Extension<Origin>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // No login CSRF: a form on another site can neither send JSON nor
    // this portal's Origin.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the sign-in as application/json",
        );
    }
    if !super::same_origin(&headers, true) {
        return error(StatusCode::FORBIDDEN, "sign in from this portal's own page");
    }
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
    let attempt = match state
        .throttle
        .begin(&username, addr, state.web.ldap.timeout)
        .await
    {
        Ok(attempt) => attempt,
        Err(refusal) => {
            let (status, result, message, wait) = match refusal {
                Refusal::TooMany(wait) => {
                    let secs = wait.as_secs().max(1);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        "RESOURCE_EXHAUSTED",
                        format!("too many failed sign-ins: try again in {secs} s"),
                        secs,
                    )
                }
                Refusal::Busy => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "sign-in is busy: try again in a moment".to_string(),
                    1,
                ),
            };
            // One entry per burst of refusals, not one per request.
            if let Some(left_out) = state.throttle.audit_refusal(&username, addr) {
                let mut detail = match refusal {
                    Refusal::TooMany(_) => "too many failed sign-ins for this user or address",
                    Refusal::Busy => "too many sign-ins at once",
                }
                .to_string();
                if left_out > 0 {
                    detail.push_str(&format!(
                        " ({left_out} more refused in the previous burst, not recorded one by one)"
                    ));
                }
                state.audit.record(&actor, refused(result, detail)).await;
            }
            let mut response = error(status, &message);
            if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    };
    let identity = match state.directory.sign_in(&username, &password).await {
        Ok(identity) => identity,
        Err(SignInError::BadCredentials) => {
            // The attempt stays counted as a failure.
            drop(attempt);
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
            // Not the user's fault: not counted (the failures before it
            // still are). The details are for the log.
            attempt.void();
            tracing::warn!(error = %err, "a web sign-in could not reach the directory");
            state
                .audit
                .record(
                    &actor,
                    refused(
                        "UNAVAILABLE",
                        "the directory is unavailable (see the server's log)".into(),
                    ),
                )
                .await;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "sign-in is unavailable: try again later",
            );
        }
    };
    // The password was right.
    attempt.succeeded();
    let actor = Actor {
        name: identity.user.clone(),
        ..actor
    };
    let admin = match state.access(&identity) {
        Access::Denied(group) => {
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
        Access::Admin => true,
        Access::User => false,
    };
    let groups = state.configured_groups(&identity);
    let (cookie, signed) = match state.signins.open(&identity.user, admin, groups).await {
        Ok(opened) => opened,
        Err(err) => {
            let (status, result) = match err {
                OpenError::UserFull => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
                OpenError::Full => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
                OpenError::Store(ref e) => {
                    tracing::error!(error = %e, "could not record a sign-in");
                    return unavailable(e);
                }
            };
            state
                .audit
                .record(&actor, refused(result, err.to_string()))
                .await;
            return error(status, &err.to_string());
        }
    };
    if state.web.pass_through_credentials {
        state.passwords.keep(&signed.key, &password);
    }
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
    if let Err(response) = state.checked(&headers).await {
        return *response;
    }
    if let Some(cookie) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| cookie_value(v, COOKIE))
    {
        // Its desktops in browser tabs end with it.
        state.sign_out(cookie).await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&SignIns::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Who is signed in, their CSRF token, the templates they may create, their
/// organisations and those they administer.
pub async fn me(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let signed = match state.signed_in(&headers).await {
        Ok(signed) => signed,
        Err(response) => return *response,
    };
    json_response(
        StatusCode::OK,
        &json!({
            "user": signed.user,
            "admin": signed.admin,
            "csrf": signed.csrf,
            "templates": state
                .templates(&signed)
                .iter()
                .map(shape::template)
                .collect::<Vec<_>>(),
            // Several: the page asks which a desktop is for.
            "orgs": state.member_orgs(&signed).into_iter().filter(|o| !o.is_empty()).collect::<Vec<_>>(),
            "administers": state
                .config
                .orgs
                .administered(&signed.groups)
                .iter()
                .map(|o| o.name.clone())
                .collect::<Vec<_>>(),
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
