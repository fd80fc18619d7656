//! Who is calling, and what they may call. Mutual TLS has already proved
//! the client certificate was issued by the configured CA; this layer reads
//! who it names (see `pki::identity_of`) and enforces, before any service
//! runs: agent certificates call only `AgentService`, user certificates
//! never call it. Per-session rules (a user sees only their own sessions)
//! are in the service, with the [`Caller`] this layer attaches.

use std::{
    collections::HashSet,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use tonic::{
    Status,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use crate::domain::identity::{Caller, Origin};
use crate::{
    domain::error::Error,
    pki::{self, revoked::RevocationList},
};

/// The gRPC path prefix of the agents' service.
const AGENT_SERVICE: &str = "/daas.v1.AgentService/";
/// The gRPC path prefix of the health service, open to every certificate.
const HEALTH_SERVICE: &str = "/grpc.health.v1.Health/";

/// The caller [`Authorize`] attached to a request.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Error> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Error::Unauthenticated("no client identity".into()))
}

/// The origin [`Authorize`] attached to a request; empty when none.
pub fn origin<T>(request: &tonic::Request<T>) -> Origin {
    request
        .extensions()
        .get::<Origin>()
        .cloned()
        .unwrap_or_default()
}

/// The origin of an HTTP request (mutual TLS or plaintext) from its
/// connection.
pub fn origin_of_connection<B>(request: &http::Request<B>) -> Origin {
    let ext = request.extensions();
    if let Some(info) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
        let (subject, fingerprint) = info
            .peer_certs()
            .as_ref()
            .and_then(|certs| certs.first().map(|c| pki::subject_and_fingerprint(c)))
            .unwrap_or_default();
        return Origin {
            subject,
            fingerprint,
            peer: info
                .get_ref()
                .remote_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
        };
    }
    Origin {
        peer: ext
            .get::<TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        ..Origin::default()
    }
}

/// What [`Authorize`] found about a request.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Whether the call went on to its service.
    pub admitted: bool,
    /// Who the certificate names, admitted or not; None without a usable
    /// one.
    pub caller: Option<Caller>,
    pub origin: Origin,
}

/// A place an outer layer puts in a request to learn, once the call is
/// over, what [`Authorize`] found.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<std::sync::OnceLock<Admission>>);

impl Seen {
    pub fn get(&self) -> Option<&Admission> {
        self.0.get()
    }
}

/// What the layer needs to decide.
#[derive(Debug, Clone)]
pub struct Policy {
    /// User names with the admin role, from the config.
    pub admins: HashSet<String>,
    /// No TLS: every caller is [`Caller::Local`].
    pub plaintext: bool,
    /// Certificates refused whatever they say (`daas-server pki revoke`).
    pub revoked: Arc<RevocationList>,
    /// The subject (DER) of the agents' CA, when agents have their own:
    /// an agent certificate must be signed by it and a user's must not
    /// (its key is online on the server: it must not mint administrators).
    pub agents_ca: Option<Arc<Vec<u8>>>,
}

impl Policy {
    /// Who a client certificate (DER) names, with the config's admins.
    pub fn identify(&self, leaf: &[u8]) -> Result<Caller, pki::PkiError> {
        let (fingerprint, serial) = pki::fingerprint_and_serial(leaf);
        if self.revoked.is_revoked(&fingerprint, &serial) {
            return Err(pki::PkiError::Revoked { fingerprint });
        }
        let identity = pki::identity_of(leaf)?;
        if let Some(agents_ca) = &self.agents_ca {
            let by_agents_ca = pki::issuer_of(leaf).as_deref() == Some(agents_ca.as_slice());
            let wrong = match (&identity, by_agents_ca) {
                (Caller::Agent { .. }, false) => {
                    Some("names a session but was not signed by the agents' CA")
                }
                (Caller::User { .. }, true) => {
                    Some("was signed by the agents' CA, which signs agent certificates only")
                }
                _ => None,
            };
            if let Some(why) = wrong {
                let (subject, _) = pki::subject_and_fingerprint(leaf);
                return Err(pki::PkiError::WrongIssuer {
                    subject: format!("\"{subject}\""),
                    why: why.into(),
                });
            }
        }
        Ok(match identity {
            Caller::User {
                name,
                admin,
                groups,
            } => {
                let admin = admin || self.admins.contains(&name);
                Caller::User {
                    name,
                    admin,
                    groups,
                }
            }
            other => other,
        })
    }

    /// Who the request's certificate names, if it is usable, whatever the
    /// path.
    pub fn named<B>(&self, request: &http::Request<B>) -> Option<Caller> {
        if self.plaintext {
            return Some(Caller::Local);
        }
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()?
            .peer_certs()?;
        self.identify(certs.first()?.as_ref()).ok()
    }

    /// Who the request's certificate names, and whether they may call its
    /// path.
    pub fn admit<B>(&self, request: &http::Request<B>) -> Result<Caller, Status> {
        let path = request.uri().path();
        let caller = if self.plaintext {
            Caller::Local
        } else {
            let certs = request
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.peer_certs());
            let leaf = certs
                .as_ref()
                .and_then(|certs| certs.first())
                .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
            match self.identify(leaf.as_ref()) {
                Ok(caller) => caller,
                Err(err) => {
                    tracing::warn!(path, error = %err, "refused a client certificate");
                    return Err(Status::unauthenticated(format!(
                        "the client certificate is not usable: {err}"
                    )));
                }
            }
        };
        let refusal = match (&caller, path) {
            (_, p) if p.starts_with(HEALTH_SERVICE) => None,
            (Caller::Local, _) => None,
            (Caller::Agent { .. }, p) if p.starts_with(AGENT_SERVICE) => None,
            (Caller::Agent { .. }, _) => {
                Some("an agent certificate may call only daas.v1.AgentService")
            }
            (Caller::User { .. }, p) if p.starts_with(AGENT_SERVICE) => Some(
                "daas.v1.AgentService is for the agents inside desktops; a user certificate may not call it",
            ),
            (Caller::User { .. }, _) => None,
        };
        if let Some(why) = refusal {
            tracing::warn!(?caller, path, "refused a call");
            return Err(Status::permission_denied(why));
        }
        Ok(caller)
    }
}

/// A tower layer applying [`Policy`] to every request of the server.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    policy: Arc<Policy>,
}

impl AuthLayer {
    pub fn new(policy: Policy) -> Self {
        AuthLayer {
            policy: Arc::new(policy),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let origin = origin_of_connection(&request);
        let admitted = self.policy.admit(&request);
        if let Some(seen) = request.extensions().get::<Seen>() {
            let caller = match &admitted {
                Ok(caller) => Some(caller.clone()),
                Err(_) => self.policy.named(&request),
            };
            let _ = seen.0.set(Admission {
                admitted: admitted.is_ok(),
                caller,
                origin: origin.clone(),
            });
        }
        match admitted {
            Ok(caller) => {
                // The `request` span of the metering layer, for the logs.
                tracing::Span::current().record("user", caller.log_name());
                request.extensions_mut().insert(caller);
                request.extensions_mut().insert(origin);
                // The clone is not ready; the instance that was is used.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_act_for_anyone_users_for_themselves() {
        let alice = Caller::User {
            name: "alice".into(),
            admin: false,
            groups: Vec::new(),
        };
        let root = Caller::User {
            name: "root".into(),
            admin: true,
            groups: Vec::new(),
        };
        let agent = Caller::Agent {
            session_id: "s".into(),
        };
        assert!(alice.may_act_for("alice"));
        assert!(!alice.may_act_for("bob"));
        assert!(root.may_act_for("bob"));
        assert!(Caller::Local.may_act_for("bob"));
        assert!(!agent.may_act_for("alice"));
    }

    #[test]
    fn plaintext_callers_are_local_and_a_tls_request_without_certificate_is_refused() {
        let request = http::Request::builder()
            .uri("/daas.v1.DesktopService/ListSessions")
            .body(())
            .unwrap();
        let open = Policy {
            admins: HashSet::new(),
            plaintext: true,
            revoked: Arc::new(RevocationList::none()),
            agents_ca: None,
        };
        assert_eq!(open.admit(&request).unwrap(), Caller::Local);
        let tls = Policy {
            admins: HashSet::new(),
            plaintext: false,
            revoked: Arc::new(RevocationList::none()),
            agents_ca: None,
        };
        let status = tls.admit(&request).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}
