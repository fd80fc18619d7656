//! The HTTP side's listeners: HTTPS with the server's certificate and the
//! client-certificate rules of the gRPC port (`http.listen`), plain HTTP
//! on loopback (`http.metrics_listen`), and the web portal's HTTPS without
//! client certificates (`web.listen`: browsers sign in with a cookie). On
//! the first, each connection's caller is found once, from its
//! certificate, and given to every request on it.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::Router;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{
    api::grpc::auth::Policy,
    config::{Config, Tls},
    domain::identity::{Caller, Origin},
};

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener allows a connection: how long it may take to send a
/// request's headers (and stay idle between requests), and how many may
/// be open, in all and from one address.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max: usize,
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    /// The limits of the listeners that are not the portal's.
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(30),
            max: 4096,
            max_per_address: 256,
        }
    }
}

/// The connections open on one listener, per address.
#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One open connection, counted until dropped.
struct Counted {
    open: Arc<Mutex<OpenConnections>>,
    ip: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&self.ip);
            }
        }
    }
}

/// Counts a new connection from `ip`, or None when a limit is reached.
fn count(
    open: &Arc<Mutex<OpenConnections>>,
    limits: &ConnectionLimits,
    ip: IpAddr,
) -> Option<Counted> {
    let mut state = open.lock().unwrap_or_else(|e| e.into_inner());
    let from_ip = state.per_address.get(&ip).copied().unwrap_or(0);
    if state.total >= limits.max || from_ip >= limits.max_per_address {
        return None;
    }
    state.total += 1;
    state.per_address.insert(ip, from_ip + 1);
    Some(Counted {
        open: open.clone(),
        ip,
    })
}

/// Why the HTTP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("http.listen: cannot use {path}: {why}")]
    Pem { path: String, why: String },
    #[error("http.listen: the TLS settings are not usable: {0}")]
    Tls(String),
}

/// One bound listener.
struct Listener {
    tcp: TcpListener,
    addr: SocketAddr,
    /// None: plain HTTP (loopback only).
    tls: Option<TlsAcceptor>,
    /// Callers are browsers (the portal finds who they are), not
    /// certificates; a plain listener of this kind has no local caller.
    browsers: bool,
    limits: ConnectionLimits,
}

/// The HTTP side's bound listeners.
pub struct HttpListeners {
    https: Option<Listener>,
    metrics: Option<Listener>,
    web: Option<Listener>,
}

impl HttpListeners {
    /// Binds what `[http]` asks for.
    pub async fn bind(config: &Config) -> Result<HttpListeners, HttpError> {
        let https = match config.http.listen {
            Some(addr) => {
                let tls = match &config.tls {
                    Tls::Mutual { ca, cert, key, .. } => {
                        Some(TlsAcceptor::from(server_config(ca, cert, key)?))
                    }
                    // Loopback only (the config checks it), as the gRPC port.
                    Tls::Plaintext => None,
                };
                Some(bind("http.listen", addr, tls).await?)
            }
            None => None,
        };
        let metrics = match config.http.metrics_listen {
            Some(addr) => Some(bind("http.metrics_listen", addr, None).await?),
            None => None,
        };
        let web = match &config.web {
            Some(web) => {
                let tls = match (&web.cert, &config.tls) {
                    (Some((cert, key)), _) | (None, Tls::Mutual { cert, key, .. }) => {
                        Some(TlsAcceptor::from(browser_config(cert, key)?))
                    }
                    // Loopback only (the config checks it).
                    (None, Tls::Plaintext) => None,
                };
                let mut listener = bind("web.listen", web.listen, tls).await?;
                listener.browsers = true;
                listener.limits = ConnectionLimits {
                    header_timeout: web.header_timeout,
                    max: web.max_connections,
                    max_per_address: web.max_connections_per_address,
                };
                Some(listener)
            }
            None => None,
        };
        Ok(HttpListeners {
            https,
            metrics,
            web,
        })
    }

    /// The address of `web.listen`, when set.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().map(|l| l.addr)
    }

    /// Whether `web.listen` is HTTPS.
    pub fn web_is_tls(&self) -> bool {
        self.web.as_ref().is_some_and(|l| l.tls.is_some())
    }

    /// The address of `http.listen`, when set.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().map(|l| l.addr)
    }

    /// The address of `http.metrics_listen`, when set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|l| l.addr)
    }

    /// Serves `https_router` on `http.listen`, `metrics_router` on
    /// `http.metrics_listen` and `web_router` on `web.listen` until `stop`
    /// is cancelled.
    pub async fn serve(
        self,
        https_router: Router,
        metrics_router: Router,
        web_router: Router,
        policy: Policy,
        stop: CancellationToken,
    ) {
        let policy = Arc::new(policy);
        let mut loops = JoinSet::new();
        let listeners = [
            (self.https, https_router),
            (self.metrics, metrics_router),
            (self.web, web_router),
        ];
        for (listener, router) in listeners {
            if let Some(listener) = listener {
                loops.spawn(accept_loop(listener, router, policy.clone(), stop.clone()));
            }
        }
        while loops.join_next().await.is_some() {}
    }
}

async fn bind(
    key: &'static str,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
) -> Result<Listener, HttpError> {
    let bind_error = |source| HttpError::Bind { key, addr, source };
    let tcp = TcpListener::bind(addr).await.map_err(bind_error)?;
    let addr = tcp.local_addr().map_err(bind_error)?;
    Ok(Listener {
        tcp,
        addr,
        tls,
        browsers: false,
        limits: ConnectionLimits::default(),
    })
}

fn pem_error(path: &Path, why: String) -> HttpError {
    HttpError::Pem {
        path: path.display().to_string(),
        why,
    }
}

fn certs_of(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate in it".into()));
    }
    Ok(certs)
}

/// The portal's certificate and key, no client certificates; HTTP/1.1
/// (browsers open WebSockets on it).
fn browser_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, HttpError> {
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs_of(cert)?, key_der)
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server's certificate and key, and a verifier of client certificates
/// issued by `ca`; HTTP/2 and HTTP/1.1.
fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, HttpError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_of(ca)? {
        roots
            .add(cert)
            .map_err(|e| pem_error(ca, format!("not a usable CA certificate: {e}")))?;
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs_of(cert)?, key_der)
        .map_err(|e| HttpError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

async fn accept_loop(
    listener: Listener,
    router: Router,
    policy: Arc<Policy>,
    stop: CancellationToken,
) {
    let mut connections = JoinSet::new();
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    let limits = listener.limits;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.tcp.accept() => accepted,
        };
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(addr = %listener.addr, error = %err, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(counted) = count(&open, &limits, peer.ip()) else {
            tracing::debug!(%peer, addr = %listener.addr, "refused a connection: too many open");
            drop(stream);
            continue;
        };
        let (tls, router, policy) = (listener.tls.clone(), router.clone(), policy.clone());
        let timeout = limits.header_timeout;
        let browsers = listener.browsers;
        if browsers {
            // The RDP gateway relays keystrokes: no Nagle delay on them.
            let _ = stream.set_nodelay(true);
        }
        connections.spawn(async move {
            let _counted = counted;
            let origin = Origin {
                peer: peer.to_string(),
                ..Origin::default()
            };
            match tls {
                None if browsers => serve_connection(stream, None, origin, router, timeout).await,
                None => serve_connection(stream, Some(Caller::Local), origin, router, timeout).await,
                Some(acceptor) if browsers => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, None, origin, router, timeout).await,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "web HTTPS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "web HTTPS handshake timed out"),
                    }
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "HTTPS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "HTTPS handshake timed out");
                            return;
                        }
                    };
                    let leaf = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .map(|cert| cert.as_ref().to_vec());
                    let caller = match leaf.as_deref().map(|der| policy.identify(der)) {
                        Some(Ok(caller)) => caller,
                        Some(Err(err)) => {
                            tracing::warn!(%peer, error = %err, "refused a client certificate (HTTP)");
                            return;
                        }
                        None => return,
                    };
                    let (subject, fingerprint) = leaf
                        .as_deref()
                        .map(crate::pki::subject_and_fingerprint)
                        .unwrap_or_default();
                    let origin = Origin {
                        subject,
                        fingerprint,
                        ..origin
                    };
                    serve_connection(stream, Some(caller), origin, router, timeout).await;
                }
            }
        });
    }
    connections.shutdown().await;
}

/// HTTP/1.1 or HTTP/2 on one connection, every request carrying `caller`
/// (when known) and `origin`; WebSocket upgrades allowed. An HTTP/1.1
/// client has `header_timeout` to send each request's headers, counted
/// from when the connection waits for one (so an idle connection closes).
async fn serve_connection<S>(
    stream: S,
    caller: Option<Caller>,
    origin: Origin,
    router: Router,
    header_timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = tower::service_fn(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            if let Some(caller) = &caller {
                request.extensions_mut().insert(caller.clone());
            }
            request.extensions_mut().insert(origin.clone());
            router.clone().oneshot(request)
        },
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout);
    let result = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
        .await;
    if let Err(err) = result {
        tracing::debug!(error = %err, "HTTP connection ended with an error");
    }
}
