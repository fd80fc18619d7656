//! The page: one HTML file, its script and its style sheet, embedded in
//! the binary (no separate web server, no CDN), and the security headers
//! every answer of the portal carries.

use std::sync::Arc;

use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use super::WebState;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const VIEWER: &str = include_str!("assets/viewer.js");
/// The IronRDP web client (vendor/VENDOR.md says which, and how to update).
const RDP_ELEMENT: &str = include_str!("assets/vendor/iron-remote-desktop.js");
const RDP_BACKEND: &str = include_str!("assets/vendor/iron-remote-desktop-rdp.js");

/// What the page may load and run: only its own files (the RDP client's
/// WASM compiled from them: it is inlined as a `data:` URL), connections to
/// itself (the API, the events, the gateway).
const JS: &str = "text/javascript; charset=utf-8";

const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
                   style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
                   connect-src 'self' data:; font-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route(
            "/",
            get(|| async { file(INDEX, "text/html; charset=utf-8") }),
        )
        .route("/app.js", get(|| async { file(SCRIPT, JS) }))
        .route(
            "/app.css",
            get(|| async { file(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/viewer.js", get(|| async { file(VIEWER, JS) }))
        .route(
            "/vendor/iron-remote-desktop.js",
            get(|| async { file(RDP_ELEMENT, JS) }),
        )
        .route(
            "/vendor/iron-remote-desktop-rdp.js",
            get(|| async { file(RDP_BACKEND, JS) }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Adds the security headers to every answer.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_client_is_the_one_vendor_md_names() {
        let table = include_str!("assets/vendor/VENDOR.md");
        for (name, text) in [
            ("iron-remote-desktop.js", RDP_ELEMENT),
            ("iron-remote-desktop-rdp.js", RDP_BACKEND),
        ] {
            let hash = crate::pki::fingerprint(text.as_bytes());
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}`")))
                .unwrap_or_else(|| panic!("VENDOR.md has no row for {name}"));
            assert!(
                row.contains(&hash),
                "{name} is {hash}, not what VENDOR.md says"
            );
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, text) in [
            ("index.html", INDEX),
            ("app.js", SCRIPT),
            ("viewer.js", VIEWER),
        ] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name}"
            );
        }
        assert!(CSP.contains("default-src 'none'"));
    }
}
