//! The web portal (`[web]`): people sign in with their domain account
//! (`ldap`, `signin`, `throttle`), get a desktop and watch it being
//! prepared (`desktops`, through the sessions service), and use it in the
//! browser tab through the RDP `gateway` with single-use `tickets`, which
//! keeps what recorded or watchable templates' tabs get (`recording`) for
//! administrators to replay or watch live (`replay`). The
//! page (`page.rs` serves the files of `assets/`) is embedded in the
//! binary. It has its own HTTPS listener, without client certificates.

pub mod account;
pub mod autologon;
pub mod clipboard;
pub mod cookie_keys;
pub mod desktops;
pub mod gateway;
pub mod json;
pub mod ldap;
pub mod nodes;
pub mod page;
pub mod passwords;
pub mod prestart;
pub mod recording;
pub mod relays;
pub mod replay;
pub mod schedules;
pub mod signin;
pub mod throttle;
pub mod tickets;

use std::sync::Arc;

use axum::{
    Router,
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::config::web::Web;

use self::{
    cookie_keys::CookieKeys,
    ldap::{Directory, Identity, SignInError},
    relays::Relays,
    signin::{COOKIE, SignIns, SignedIn, cookie_value, csrf_matches},
    throttle::Throttle,
    tickets::Tickets,
};
pub use crate::api::http::from_error;
use crate::{
    audit::{Act, Actor, Audit},
    config::Config,
    domain::identity::Origin,
    sessions::Sessions,
    store::Store,
};

/// The header that carries the CSRF token on state-changing calls.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header of the page's own periodic refresh, which is no activity of
/// the user's (an open tab alone does not keep a sign-in alive).
pub const REFRESH_HEADER: &str = "x-page-refresh";

/// What the portal's handlers share.
pub struct WebState {
    pub config: Arc<Config>,
    pub web: Web,
    pub sessions: Arc<Sessions>,
    pub store: Store,
    pub audit: Audit,
    pub directory: Directory,
    pub signins: SignIns,
    pub throttle: Arc<Throttle>,
    pub tickets: Tickets,
    pub relays: Arc<Relays>,
    /// Sign in once: the sign-ins' passwords (empty unless
    /// `web.pass_through_credentials`).
    pub passwords: passwords::Passwords,
    /// The recorded templates' sessions.
    pub recordings: Arc<recording::Recordings>,
    /// The sessions whose start at the create is under way here.
    pub starting: prestart::Starting,
}

impl WebState {
    pub fn new(
        config: Arc<Config>,
        web: Web,
        directory: Directory,
        cookie_keys: CookieKeys,
        sessions: Arc<Sessions>,
        store: Store,
        audit: Audit,
    ) -> WebState {
        WebState {
            directory,
            signins: SignIns::new(
                cookie_keys,
                store.clone(),
                web.session_idle,
                web.session_max,
            ),
            throttle: Arc::new(Throttle::new(
                web.max_failed_logins,
                web.failed_login_window,
            )),
            tickets: Tickets::new(web.ticket_ttl, store.clone()),
            relays: Arc::new(Relays::new(web.max_relays_per_user)),
            passwords: passwords::Passwords::new(web.session_max),
            recordings: Arc::new(recording::Recordings::new(
                web.recordings
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join(recording::DIR_NAME)),
                web.recordings_keep,
            )),
            starting: prestart::Starting::default(),
            config,
            web,
            sessions,
            store,
            audit,
        }
    }

    /// The signed-in browser a request comes from, or 401. Its user's
    /// groups are read again when `web.recheck` has passed: one who may no
    /// longer use the portal is signed out (403), an administrator who is
    /// one no more is a user from then on.
    pub async fn signed_in(&self, headers: &HeaderMap) -> Result<SignedIn, Box<Response>> {
        let not_signed_in = || {
            Box::new(error(
                StatusCode::UNAUTHORIZED,
                "not signed in (or signed out after a while unused): sign in again",
            ))
        };
        let cookie = headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| cookie_value(v, COOKIE))
            .ok_or_else(not_signed_in)?;
        let touch = !headers.contains_key(REFRESH_HEADER);
        let signed = self
            .signins
            .find(cookie, touch)
            .await
            .map_err(|e| Box::new(unavailable(&e)))?
            .ok_or_else(not_signed_in)?;
        if !self.directory.can_recheck() || !signed.recheck_due(self.web.recheck) {
            return Ok(signed);
        }
        // Marked first: requests meanwhile do not recheck too.
        self.signins
            .rechecked(cookie, signed.admin, signed.groups.clone())
            .await
            .map_err(|e| Box::new(unavailable(&e)))?;
        let actor = Actor {
            name: signed.user.clone(),
            subject: "web".into(),
            fingerprint: String::new(),
            peer: String::new(),
        };
        let refused = |result: &str, detail: String| Act {
            result: result.into(),
            detail,
            ..Act::new("web recheck")
        };
        match self.directory.recheck(&signed.user).await {
            Ok(identity) => match self.access(&identity) {
                Access::Denied(group) => {
                    self.sign_out(cookie).await;
                    let detail = format!("no longer in the group {group}: signed out");
                    self.audit
                        .record(&actor, refused("PERMISSION_DENIED", detail))
                        .await;
                    Err(Box::new(error(
                        StatusCode::FORBIDDEN,
                        &format!(
                            "your account may no longer use this service (it is not in the group \
                             {group}); ask your administrator"
                        ),
                    )))
                }
                access => {
                    let admin = access == Access::Admin;
                    if admin != signed.admin {
                        let detail = if admin {
                            "now an administrator"
                        } else {
                            "no longer an administrator"
                        };
                        self.audit
                            .record(&actor, Act::new("web recheck").detail(detail))
                            .await;
                    }
                    self.signins
                        .rechecked(cookie, admin, self.configured_groups(&identity))
                        .await
                        .map_err(|e| Box::new(unavailable(&e)))?
                        .ok_or_else(not_signed_in)
                }
            },
            Err(SignInError::BadCredentials) => {
                self.sign_out(cookie).await;
                self.audit
                    .record(
                        &actor,
                        refused(
                            "UNAUTHENTICATED",
                            "the account is no longer in the directory: signed out".into(),
                        ),
                    )
                    .await;
                Err(not_signed_in())
            }
            Err(err @ SignInError::Unavailable(_)) => {
                // The sign-in stands until the directory answers again.
                tracing::warn!(user = %signed.user, error = %err, "could not recheck a signed-in user");
                Ok(signed)
            }
        }
    }

    /// What `identity` may do on the portal.
    pub fn access(&self, identity: &Identity) -> Access {
        let admin = self
            .web
            .admin_group
            .as_deref()
            .is_some_and(|g| identity.is_in(g))
            || self.config.auth.admins.contains(&identity.user);
        match &self.web.allowed_group {
            _ if admin => Access::Admin,
            Some(group) if !identity.is_in(group) => Access::Denied(group.clone()),
            _ => Access::User,
        }
    }

    /// Signs the browser with `cookie` out, and ends its desktops in tabs.
    pub async fn sign_out(&self, cookie: &str) {
        match self.signins.close(cookie).await {
            Ok(Some(signed)) => {
                self.passwords.forget(&signed.key);
                self.relays.close_sign_in(&signed.key);
            }
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, "could not sign a browser out"),
        }
    }

    /// As [`Self::signed_in`], for a state-changing call: the CSRF token
    /// must come with it too (403 otherwise).
    pub async fn checked(&self, headers: &HeaderMap) -> Result<SignedIn, Box<Response>> {
        let signed = self.signed_in(headers).await?;
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !csrf_matches(&signed, given) {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "the request lacks this sign-in's CSRF token: reload the page",
            )));
        }
        Ok(signed)
    }

    /// The user's groups among those the catalog's templates and the
    /// organisations (members, administrators) name (the sign-in keeps only
    /// these), in the config's spelling.
    pub fn configured_groups(&self, identity: &ldap::Identity) -> Vec<String> {
        let config = &self.config;
        let orgs = config
            .orgs
            .orgs
            .iter()
            .flat_map(|o| o.groups.iter().chain(&o.admin_groups));
        let mut groups: Vec<String> = config
            .catalog
            .templates
            .iter()
            .flat_map(|t| t.groups.iter())
            .chain(orgs)
            .filter(|g| identity.is_in(g))
            .cloned()
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// The organisations a signed-in user is a member of, by name; one
    /// empty name when none (their quota is then the server's per-user
    /// limit).
    pub fn member_orgs(&self, signed: &SignedIn) -> Vec<String> {
        let orgs: Vec<String> = self
            .config
            .orgs
            .member_of(&signed.groups)
            .into_iter()
            .map(|o| o.name.clone())
            .collect();
        if orgs.is_empty() {
            vec![String::new()]
        } else {
            orgs
        }
    }

    /// Refuses (400) a template the page does not offer `signed` (none
    /// named: the default, which the create checks).
    pub fn offers(&self, signed: &SignedIn, template: &str) -> Result<(), Box<Response>> {
        if template.is_empty() || self.templates(signed).iter().any(|t| t.name == template) {
            return Ok(());
        }
        Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("no template {template} is offered here"),
        )))
    }

    /// The templates offered to a signed-in user: the catalog's they may
    /// use (by their groups), only those of `web.templates` when it is set
    /// (with an open catalog, any name there, as before the catalog).
    pub fn templates(&self, signed: &SignedIn) -> Vec<crate::domain::catalog::Template> {
        let catalog = &self.config.catalog;
        if catalog.open && !self.web.templates.is_empty() {
            return self
                .web
                .templates
                .iter()
                .map(|name| catalog.open_template(name))
                .collect();
        }
        catalog
            .offered(&signed.groups, signed.admin)
            .into_iter()
            .filter(|t| self.web.templates.is_empty() || self.web.templates.contains(&t.name))
            .cloned()
            .collect()
    }
}

/// Whether a request comes from this portal's own page: its `Origin` names
/// the `Host` it was sent to. Without an `Origin` (not a browser), as
/// `required` says.
pub(crate) fn same_origin(headers: &HeaderMap, required: bool) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                == Some(host)
        }
        (None, _) => !required,
        (Some(_), None) => false,
    }
}

/// What an account may do on the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Not in `web.allowed_group` (named).
    Denied(String),
    User,
    Admin,
}

/// A request from a signed-in browser (401 otherwise), and where from.
pub struct User {
    pub signed: SignedIn,
    pub origin: Origin,
}

/// The same for a state-changing call: it carries the sign-in's CSRF
/// token (403 otherwise).
pub struct Checked(pub User);

fn origin_of(parts: &Parts) -> Origin {
    parts
        .extensions
        .get::<Origin>()
        .cloned()
        .unwrap_or_default()
}

impl FromRequestParts<Arc<WebState>> for User {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Self, Self::Rejection> {
        let signed = state.signed_in(&parts.headers).await.map_err(|r| *r)?;
        Ok(User {
            signed,
            origin: origin_of(parts),
        })
    }
}

impl FromRequestParts<Arc<WebState>> for Checked {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Self, Self::Rejection> {
        let signed = state.checked(&parts.headers).await.map_err(|r| *r)?;
        Ok(Checked(User {
            signed,
            origin: origin_of(parts),
        }))
    }
}

/// The portal's routes.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/web/login", post(account::login))
        .route("/web/logout", post(account::logout))
        .route("/web/me", get(account::me))
        .route("/web/sessions", get(desktops::list).post(desktops::create))
        .route("/web/sessions/{id}/events", get(desktops::events))
        .route("/web/sessions/{id}/destroy", post(desktops::destroy))
        .route("/web/sessions/{id}/rdp", get(desktops::rdp_file))
        .route("/web/sessions/{id}/ticket", post(desktops::ticket))
        .route("/web/sessions/{id}/watchers", get(replay::watchers))
        .route("/web/gateway", get(desktops::gateway))
        .route("/web/schedules", get(schedules::list).post(schedules::add))
        .route("/web/schedules/{id}/remove", post(schedules::remove))
        .route("/web/pools", get(desktops::pools))
        .route("/web/audit", get(desktops::audit))
        .route("/web/recordings", get(replay::list))
        .route("/web/recordings/{id}/replay", get(replay::replay))
        .route("/web/nodes", get(nodes::list))
        .route("/web/nodes/{name}/drain", post(nodes::drain))
        .route("/web/nodes/{name}/resume", post(nodes::resume))
        .merge(page::routes())
        .with_state(state)
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::middleware::map_response(page::security_headers))
}

/// 503 for a store that does not answer; the details go to the log.
pub fn unavailable(err: &crate::store::StoreError) -> Response {
    tracing::error!(error = %err, "the portal cannot read or write its sign-ins");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the portal is unavailable: try again later",
    )
}

/// A JSON error answer: `{"error": ...}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.to_string(),
    )
        .into_response()
}
