//! The servers' URLs, checked, and the places each one names: every address
//! its host resolves to, each dialled on its own so that one replica behind
//! a name being down does not hide the others. TLS still checks the
//! certificate against the host name the URL gives.

use std::net::SocketAddr;

use tonic::transport::Uri;

use crate::error::{CliError, io_detail};

/// A hint for malformed endpoints.
const EXAMPLE: &str = "expected a URL such as https://daas.example:50051 or http://127.0.0.1:50051";

/// A server's URL, as the user wrote it, checked.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL as given, for messages.
    pub url: String,
    uri: Uri,
}

impl Endpoint {
    /// Checks that `url` is an `https://` or `http://` URL with a host.
    pub fn parse(url: &str) -> Result<Endpoint, CliError> {
        let bad = |reason: &str| CliError::BadEndpoint {
            endpoint: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad(EXAMPLE))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad(EXAMPLE));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("the URL has no host"));
        }
        Ok(Endpoint {
            url: url.to_owned(),
            uri,
        })
    }

    /// Whether the server is reached over (mutual) TLS.
    pub fn is_tls(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }

    /// The URL's host as the server's certificate names it (an IPv6
    /// address without its brackets).
    pub fn host(&self) -> &str {
        let host = self.uri.host().unwrap_or_default();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The URL's port, else the scheme's.
    pub fn port(&self) -> u16 {
        self.uri
            .port_u16()
            .unwrap_or(if self.is_tls() { 443 } else { 80 })
    }

    /// The places this endpoint names: one per address its host resolves
    /// to, in the resolver's order. The error says why there is none.
    pub async fn resolve(&self) -> Result<Vec<Target>, String> {
        let addresses = tokio::net::lookup_host((self.host(), self.port()))
            .await
            .map_err(|err| format!("cannot resolve {}: {}", self.host(), io_detail(&err)))?;
        let targets = self.targets(addresses);
        if targets.is_empty() {
            return Err(format!("{} resolves to no address", self.host()));
        }
        Ok(targets)
    }

    /// The places to dial for `addresses` of this endpoint's host.
    fn targets(&self, addresses: impl IntoIterator<Item = SocketAddr>) -> Vec<Target> {
        let scheme = self.uri.scheme_str().unwrap_or("https");
        let literal = self.host().parse::<std::net::IpAddr>().is_ok();
        addresses
            .into_iter()
            .filter_map(|address| {
                let uri = format!("{scheme}://{address}").parse().ok()?;
                Some(Target {
                    endpoint: self.clone(),
                    uri,
                    address: (!literal).then_some(address),
                })
            })
            .collect()
    }
}

/// One place to dial: an address of an endpoint's host.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint it belongs to (its host names the server for TLS).
    pub endpoint: Endpoint,
    /// `scheme://ADDRESS:PORT`, what the connection is made to.
    pub uri: Uri,
    /// The address, when the URL gave a name rather than an address.
    pub address: Option<SocketAddr>,
}

impl Target {
    /// The target for messages: the URL, and the address when the URL
    /// gave a name (`https://daas.example:50051 at 10.0.0.2`).
    pub fn name(&self) -> String {
        match self.address {
            Some(address) => format!("{} at {}", self.endpoint.url, address.ip()),
            None => self.endpoint.url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap_or_else(|err| panic!("{url}: {err}"))
    }

    #[test]
    fn accepts_https_and_http_urls() {
        for url in [
            "http://127.0.0.1:50051",
            "http://daas.example:8080/",
            "https://daas.example:50051",
            "https://[::1]:50051",
        ] {
            assert!(Endpoint::parse(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn rejects_other_urls() {
        for url in ["127.0.0.1:50051", "ftp://h", "not a url", "", "https://:1"] {
            let err = Endpoint::parse(url).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("invalid endpoint")),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn the_domain_is_the_urls_host() {
        assert_eq!(
            endpoint("https://daas.example:50051").host(),
            "daas.example"
        );
        assert_eq!(endpoint("https://[::1]:50051").host(), "::1");
        assert_eq!(endpoint("https://127.0.0.1:1").host(), "127.0.0.1");
    }

    #[test]
    fn ports_default_to_the_schemes() {
        assert_eq!(endpoint("https://daas.example").port(), 443);
        assert_eq!(endpoint("http://daas.example/").port(), 80);
        assert_eq!(endpoint("https://daas.example:50051").port(), 50051);
    }

    #[test]
    fn a_name_gives_one_target_per_address_in_order() {
        let daas = endpoint("https://daas.example:50051");
        let addresses: Vec<SocketAddr> = ["10.0.0.1:50051", "[fd00::2]:50051", "10.0.0.3:50051"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let targets = daas.targets(addresses);
        let dialled: Vec<String> = targets.iter().map(|t| t.uri.to_string()).collect();
        assert_eq!(
            dialled,
            [
                "https://10.0.0.1:50051/",
                "https://[fd00::2]:50051/",
                "https://10.0.0.3:50051/"
            ]
        );
        let names: Vec<String> = targets.iter().map(Target::name).collect();
        assert_eq!(
            names,
            [
                "https://daas.example:50051 at 10.0.0.1",
                "https://daas.example:50051 at fd00::2",
                "https://daas.example:50051 at 10.0.0.3"
            ]
        );
        // TLS checks every one of them against the URL's host.
        assert!(targets.iter().all(|t| t.endpoint.host() == "daas.example"));
    }

    #[tokio::test]
    async fn an_address_is_its_own_only_target() {
        let targets = endpoint("http://127.0.0.1:50051").resolve().await;
        let targets = targets.unwrap_or_else(|err| panic!("{err}"));
        let names: Vec<String> = targets.iter().map(Target::name).collect();
        assert_eq!(names, ["http://127.0.0.1:50051"]);
        assert_eq!(targets[0].uri.to_string(), "http://127.0.0.1:50051/");
    }

    #[tokio::test]
    async fn an_unknown_name_says_it_cannot_be_resolved() {
        // `.invalid` never resolves (RFC 6761).
        let err = endpoint("https://daas.invalid:50051").resolve().await.err();
        assert!(
            err.as_deref()
                .is_some_and(|e| e.starts_with("cannot resolve daas.invalid: ")),
            "{err:?}"
        );
    }
}
