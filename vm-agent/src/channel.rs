//! The connection to the server, shared by the report loop and the command
//! stream: the configuration checked at start, a channel with mutual TLS,
//! backoff with jitter, and errors as one readable line.

use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daas_api::v1::agent_service_client::AgentServiceClient;
use thiserror::Error;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::config::{AgentConfig, endpoint_uri};

/// TCP connect, then TLS handshake, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One call, until the reply's headers (a stream's messages are not
/// bounded by it).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// HTTP/2 pings while a call is open, so a stream to a server that went
/// away without a word fails instead of waiting forever.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the agent could not start. Nothing after the start is an error: the
/// loops log and retry.
#[derive(Debug, Error)]
pub enum AgentError {
    #[error("invalid endpoint {endpoint:?}: expected a URL such as https://10.0.2.2:50051")]
    BadEndpoint { endpoint: String },
    #[error("no session id configured")]
    NoSessionId,
    #[error("an https:// endpoint needs the {what} file (key `{key}`)")]
    MissingCredential {
        what: &'static str,
        key: &'static str,
    },
}

/// The server's URL, once the configuration is known to be usable.
pub fn checked_uri(config: &AgentConfig) -> Result<Uri, AgentError> {
    let uri = endpoint_uri(&config.endpoint).ok_or_else(|| AgentError::BadEndpoint {
        endpoint: config.endpoint.clone(),
    })?;
    if config.session_id.trim().is_empty() {
        return Err(AgentError::NoSessionId);
    }
    if uri.scheme_str() == Some("https") {
        for (what, key, path) in [
            ("CA certificate", "ca", &config.ca),
            ("client certificate", "cert", &config.cert),
            ("client private key", "key", &config.key),
        ] {
            if path.as_os_str().is_empty() {
                return Err(AgentError::MissingCredential { what, key });
            }
        }
    }
    Ok(uri)
}

/// Why no channel could be opened.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Credential {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unusable TLS credentials: {}", chain(.0))]
    Tls(tonic::transport::Error),
    #[error("cannot connect: {}", chain(.0))]
    Connect(tonic::transport::Error),
}

/// Opens a channel to the server: mutual TLS for `https://` (the server's
/// name checked is `tls_server_name`, else the URL's host), none for
/// `http://`. The credentials are read at every connect, so replaced
/// files are picked up.
pub async fn connect(
    config: &AgentConfig,
    uri: &Uri,
) -> Result<AgentServiceClient<Channel>, ConnectError> {
    let mut endpoint = Endpoint::from(uri.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .tcp_nodelay(true);
    if uri.scheme_str() == Some("https") {
        let domain = config
            .tls_server_name
            .clone()
            .unwrap_or_else(|| host(uri).to_owned());
        let ca = read_credential("CA certificate", &config.ca).await?;
        let cert = read_credential("client certificate", &config.cert).await?;
        let key = read_credential("client private key", &config.key).await?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(domain)
            .timeout(CONNECT_TIMEOUT);
        endpoint = endpoint.tls_config(tls).map_err(ConnectError::Tls)?;
    }
    let channel = endpoint.connect().await.map_err(ConnectError::Connect)?;
    Ok(AgentServiceClient::new(channel))
}

/// The URL's host, an IPv6 address without its brackets.
pub fn host(uri: &Uri) -> &str {
    let host = uri.host().unwrap_or_default();
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

async fn read_credential(what: &'static str, path: &Path) -> Result<Vec<u8>, ConnectError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| ConnectError::Credential {
            what,
            path: path.to_owned(),
            source,
        })
}

/// The delay before jitter after `failures` failures in a row: `min`
/// doubling up to `max`.
pub fn doubling(failures: u32, min: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    min.saturating_mul(1 << doublings).min(max)
}

/// `base` plus a random part of up to half of it.
pub fn with_jitter(base: Duration) -> Duration {
    let millis = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    base + Duration::from_millis(rand::random_range(0..=millis / 2))
}

/// The server's `retry-after` hint (seconds), at most `cap`.
pub fn retry_after(status: &tonic::Status, cap: Duration) -> Option<Duration> {
    let seconds: u64 = status
        .metadata()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(cap))
}

/// A status as one line: code, message, and the transport error under it.
pub fn status_text(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = status.source() {
        let detail = chain(source);
        if !text.contains(&detail) {
            text = format!("{text} ({detail})");
        }
    }
    text
}

/// An error and its sources, each once, joined with ": ".
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_ipv6_brackets() {
        let uri: Uri = "https://[::1]:50051".parse().unwrap_or_default();
        assert_eq!(host(&uri), "::1");
        let uri: Uri = "https://10.0.2.2:50051".parse().unwrap_or_default();
        assert_eq!(host(&uri), "10.0.2.2");
    }

    #[test]
    fn doubling_stops_at_the_maximum() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(30));
        let secs: Vec<u64> = (1..=7).map(|n| doubling(n, min, max).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(doubling(0, min, max), min);
        assert_eq!(doubling(u32::MAX, min, max), max);
    }

    #[test]
    fn jitter_adds_up_to_half() {
        for _ in 0..100 {
            let delay = with_jitter(Duration::from_secs(4));
            assert!((Duration::from_secs(4)..=Duration::from_secs(6)).contains(&delay));
        }
        assert_eq!(with_jitter(Duration::ZERO), Duration::ZERO);
    }
}
