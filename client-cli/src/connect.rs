//! Opening the gRPC channel to the server. Transport security (mutual TLS)
//! belongs here.

use std::time::Duration;

use daas_api::v1::desktop_service_client::DesktopServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{CliError, error_chain};

/// How long to wait for the TCP connection before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the server at `endpoint` (`http://HOST:PORT`).
pub async fn connect(endpoint: &str) -> Result<DesktopServiceClient<Channel>, CliError> {
    let uri = parse_endpoint(endpoint)?;
    let channel = Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|err| CliError::Unreachable {
            endpoint: endpoint.to_owned(),
            detail: error_chain(&err),
        })?;
    Ok(DesktopServiceClient::new(channel))
}

/// Checks that `endpoint` is an `http://HOST[:PORT]` URL.
fn parse_endpoint(endpoint: &str) -> Result<Uri, CliError> {
    let bad = |reason: &str| CliError::BadEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| bad("expected a URL such as http://127.0.0.1:50051"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("TLS is not supported yet; use http://")),
        _ => return Err(bad("expected a URL such as http://127.0.0.1:50051")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_http_urls() {
        assert!(parse_endpoint("http://127.0.0.1:50051").is_ok());
        assert!(parse_endpoint("http://daas.example:8080/").is_ok());
    }

    #[test]
    fn rejects_other_urls() {
        for endpoint in ["127.0.0.1:50051", "https://h:1", "ftp://h", "not a url", ""] {
            let err = parse_endpoint(endpoint).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("invalid endpoint")),
                "{endpoint}: {err:?}"
            );
        }
    }
}
