//! One attempt at a delivery: a fresh connection (TCP, then TLS for
//! https), one HTTP/1.1 POST on hyper's client, the response's status and
//! `Retry-After`. Webhooks are few and far between, so nothing is pooled;
//! the whole attempt is bounded by the webhook's timeout.

use std::{sync::Arc, time::Duration};

use http::{
    Request, StatusCode,
    header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT},
};
use hyper_util::rt::TokioIo;
use rustls::{RootCertStore, pki_types::CertificateDer, pki_types::ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::webhooks::Target;

/// What the receiver answered.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    /// The `Retry-After` header, as sent.
    pub retry_after: Option<String>,
}

/// Why an attempt got no answer. Never shows the URL's path.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("the host is not a name TLS can check")]
    ServerName,
    #[error("HTTPS is not available: {0}")]
    NoTls(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot write the request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// The TLS side of https webhooks: the system's roots plus a webhook's
/// own CA, if it names one.
pub fn tls_connector(
    system: &[CertificateDer<'static>],
    extra: &[CertificateDer<'static>],
) -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(system.iter().cloned());
    if ignored > 0 {
        tracing::debug!(ignored, "system CA certificates rustls cannot use");
    }
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate: install ca-certificates, or set ca_file".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// POSTs `body` with `headers` to `target`, within `timeout`.
pub async fn post(
    target: &Target,
    tls: Result<&TlsConnector, &str>,
    headers: &[(&'static str, String)],
    body: String,
    timeout: Duration,
) -> Result<Reply, AttemptError> {
    tokio::time::timeout(timeout, attempt(target, tls, headers, body))
        .await
        .map_err(|_| AttemptError::Timeout(timeout))?
}

async fn attempt(
    target: &Target,
    tls: Result<&TlsConnector, &str>,
    headers: &[(&'static str, String)],
    body: String,
) -> Result<Reply, AttemptError> {
    let mut request = Request::post(target.path.as_str())
        .header(HOST, target.authority())
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, body.len())
        .header(
            USER_AGENT,
            concat!("daas-server/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request.body(body)?;
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(AttemptError::Connect)?;
    let _ = tcp.set_nodelay(true);
    if !target.https {
        return exchange(TokioIo::new(tcp), request).await;
    }
    let tls = tls.map_err(|why| AttemptError::NoTls(why.to_string()))?;
    let name = ServerName::try_from(target.host.clone()).map_err(|_| AttemptError::ServerName)?;
    let stream = tls.connect(name, tcp).await.map_err(AttemptError::Tls)?;
    exchange(TokioIo::new(stream), request).await
}

/// Sends the request on a new HTTP/1.1 connection and reads the head of
/// the response (the body says nothing a delivery needs).
async fn exchange<T>(io: T, request: Request<String>) -> Result<Reply, AttemptError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let mut connection = std::pin::pin!(connection);
    let send = sender.send_request(request);
    let mut send = std::pin::pin!(send);
    let response = tokio::select! {
        biased;
        response = &mut send => response?,
        // The connection drives the exchange; once it ends (the receiver
        // closed it), the response is there or never will be.
        ended = &mut connection => {
            ended?;
            send.await?
        }
    };
    Ok(Reply {
        status: response.status(),
        retry_after: response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    })
}
