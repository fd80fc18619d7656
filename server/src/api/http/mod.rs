//! The HTTP side (`[http]`): `GET /healthz` (the process answers),
//! `GET /readyz` (the store takes writes, the tools the configuration runs
//! are found (`provision::tool::installed`), the agent CA is loaded when
//! agents are configured) and `GET /metrics` (Prometheus text format,
//! administrators only), on HTTPS with the gRPC port's client-certificate
//! rules, and on a plain loopback listener for a local Prometheus
//! (`http.metrics_listen`). The HTTPS side also answers the old REST
//! endpoints (`rest`).

mod listen;
mod rest;

use std::sync::Arc;

use axum::{
    Extension, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

pub use listen::{HttpError, HttpListeners};
pub use rest::from_error;

use crate::{
    audit::{Act, Actor},
    config::Config,
    domain::identity::{Caller, Origin},
    metrics::Metrics,
    provision::tool::installed,
    sessions::Sessions,
    store::Store,
};

/// The content type of the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the handlers read.
pub struct HttpState {
    pub config: Arc<Config>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Whether the CA that signs agent certificates is loaded.
    pub agent_ca_loaded: bool,
    /// The sessions service, for the REST endpoints.
    pub sessions: Arc<Sessions>,
}

/// The routes of the plain loopback listener: health and metrics. Every
/// request carries its [`Caller`] and [`Origin`] (see `listen`).
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The routes of the HTTPS listener: [`router`]'s and the REST endpoints.
pub fn https_router(state: Arc<HttpState>) -> Router {
    rest::routes()
        .with_state(state.clone())
        .merge(router(state))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// One line per check (`ok ...` or `FAIL ...`); 503 when one fails.
async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    let mut lines = Vec::new();
    let mut ready = true;
    match state.store.check_writable().await {
        Ok(()) => lines.push("ok store: writable".to_string()),
        Err(err) => {
            ready = false;
            lines.push(format!("FAIL store: {err}"));
        }
    }
    for tool in installed::programs(&state.config)
        .into_iter()
        .filter(|p| p.required)
    {
        match installed::find(&tool.program) {
            Some(path) => lines.push(format!("ok {}: {}", tool.name, path.display())),
            None => {
                ready = false;
                lines.push(format!(
                    "FAIL {}: {} is not an executable file (nor on PATH)",
                    tool.name,
                    tool.program.display()
                ));
            }
        }
    }
    match (state.config.agent.endpoint.is_some(), state.agent_ca_loaded) {
        (false, _) => lines.push("ok agent CA: no agents configured".to_string()),
        (true, true) => lines.push("ok agent CA: loaded".to_string()),
        (true, false) => {
            ready = false;
            lines.push(
                "FAIL agent CA: agent.endpoint is set but no CA is loaded (TLS is off)".into(),
            );
        }
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, lines.join("\n") + "\n").into_response()
}

async fn metrics(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Extension(origin): Extension<Origin>,
) -> Response {
    if !caller.is_admin() {
        let act = Act {
            result: "PERMISSION_DENIED".into(),
            ..Act::new("GET /metrics")
        };
        state
            .sessions
            .audit
            .record(&Actor::caller(Some(&caller), &origin), act)
            .await;
        return (
            StatusCode::FORBIDDEN,
            "/metrics is for administrators (auth.admins or an admin certificate)\n",
        )
            .into_response();
    }
    match state.metrics.render(&state.store).await {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "a metrics scrape failed");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response()
        }
    }
}
