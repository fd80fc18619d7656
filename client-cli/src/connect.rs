//! Opening the gRPC channel to the server: mutual TLS for `https://`
//! endpoints, plaintext for `http://` ones (which servers accept only on
//! loopback).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use daas_api::v1::desktop_service_client::DesktopServiceClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::error::{CliError, error_chain, io_detail};
use crate::settings::{Settings, TlsFile};

/// How long to wait for the TCP connection, then for the TLS handshake,
/// before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the check of a dropped connection may wait at each step.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What an HTTP/2 client sends first; the server answers with its settings.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A hint for malformed endpoints.
const EXAMPLE: &str = "expected a URL such as https://daas.example:50051 or http://127.0.0.1:50051";

/// Connects to the server `settings` name, with its TLS files for `https://`.
pub async fn connect(settings: &Settings) -> Result<DesktopServiceClient<Channel>, CliError> {
    let uri = parse_endpoint(&settings.endpoint)?;
    let mut endpoint = Endpoint::from(uri.clone()).connect_timeout(CONNECT_TIMEOUT);
    if uri.scheme_str() == Some("https") {
        let tls = tls_config(settings, host(&uri))?;
        endpoint = endpoint.tls_config(tls).map_err(|err| {
            // The files are PEM, but rustls cannot use them together.
            CliError::BadIdentity {
                cert: settings.cert.clone().unwrap_or_default(),
                key: settings.key.clone().unwrap_or_default(),
                detail: error_chain(&err),
            }
        })?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|err| CliError::from_transport(&err, settings))?;
    Ok(DesktopServiceClient::new(channel))
}

/// Explains `err` when a call failed on an `https://` connection that was
/// up ([`CliError::Disconnected`]). With TLS 1.3 the server checks the
/// client certificate only after the client considers the handshake done,
/// so a refusal reaches the gRPC channel as a bare "connection closed". A
/// fresh handshake followed by a read of the server's first answer shows
/// the TLS alert itself; any other error is returned as it is.
pub async fn explain(settings: &Settings, err: CliError) -> CliError {
    if !matches!(err, CliError::Disconnected { .. }) {
        return err;
    }
    let Ok(uri) = parse_endpoint(&settings.endpoint) else {
        return err;
    };
    if uri.scheme_str() != Some("https") {
        return err;
    }
    let probe_settings = settings.clone();
    let tls = tokio::task::spawn_blocking(move || tls_error_of_handshake(&probe_settings, &uri))
        .await
        .ok()
        .flatten();
    tls.and_then(|tls| CliError::from_tls(&tls, settings))
        .unwrap_or(err)
}

/// The TLS error a new connection to `uri` ends with, if any: a handshake
/// with the files `settings` name, the HTTP/2 preface, then one read.
fn tls_error_of_handshake(settings: &Settings, uri: &Uri) -> Option<rustls::Error> {
    let pem = |file| read_pem(file, settings.tls_file(file)?).ok();
    let (ca, cert, key) = (pem(TlsFile::Ca)?, pem(TlsFile::Cert)?, pem(TlsFile::Key)?);
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&ca).flatten());
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&cert).flatten().collect();
    let key = PrivateKeyDer::from_pem_slice(&key).ok()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .ok()?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(host(uri).to_owned()).ok()?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let port = uri.port_u16().unwrap_or(443);
    let addr = (host(uri), port).to_socket_addrs().ok()?.next()?;
    let tcp = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    tcp.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    tcp.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let outcome = tls
        .write_all(HTTP2_PREFACE)
        .and_then(|()| tls.flush())
        .and_then(|()| tls.read(&mut [0; 64]));
    let inner = outcome.err()?.into_inner()?;
    inner.downcast::<rustls::Error>().ok().map(|tls| *tls)
}

/// Checks that `endpoint` is an `https://` or `http://` URL with a host.
fn parse_endpoint(endpoint: &str) -> Result<Uri, CliError> {
    let bad = |reason: &str| CliError::BadEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = endpoint.parse().map_err(|_| bad(EXAMPLE))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad(EXAMPLE));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("the URL has no host"));
    }
    Ok(uri)
}

/// The URL's host as the server's certificate names it (an IPv6 address
/// without its brackets).
fn host(uri: &Uri) -> &str {
    let host = uri.host().unwrap_or_default();
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The TLS configuration for a server named `domain`: its CA and our
/// identity, from the files `settings` name, each checked to be there and PEM.
fn tls_config(settings: &Settings, domain: &str) -> Result<ClientTlsConfig, CliError> {
    let [ca, cert, key] = [TlsFile::Ca, TlsFile::Cert, TlsFile::Key].map(|file| {
        settings
            .tls_file(file)
            .ok_or_else(|| CliError::MissingTlsFile {
                file,
                config: settings.config_hint.clone(),
            })
    });
    let (ca, cert, key) = (ca?, cert?, key?);
    let ca = read_pem(TlsFile::Ca, ca)?;
    let cert = read_pem(TlsFile::Cert, cert)?;
    let key = read_pem(TlsFile::Key, key)?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(domain)
        .timeout(CONNECT_TIMEOUT))
}

/// The contents of `path`, checked to hold what `file` should in PEM: one or
/// more certificates, or a private key.
pub fn read_pem(file: TlsFile, path: &Path) -> Result<Vec<u8>, CliError> {
    let bytes = std::fs::read(path).map_err(|err| CliError::UnreadableTlsFile {
        file,
        path: path.to_owned(),
        detail: io_detail(&err),
    })?;
    let is_pem = match file {
        TlsFile::Ca | TlsFile::Cert => {
            let mut certs = CertificateDer::pem_slice_iter(&bytes).peekable();
            certs.peek().is_some() && certs.all(|cert| cert.is_ok())
        }
        TlsFile::Key => PrivateKeyDer::from_pem_slice(&bytes).is_ok(),
    };
    if !is_pem {
        return Err(CliError::NotPem {
            file,
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A syntactically valid PEM certificate (PEM checks do not parse DER).
    const CERT_PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
    const KEY_PEM: &str =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            Files {
                dir: tempfile::tempdir().expect("a temp dir"),
            }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write a test file");
            path
        }

        /// Settings for an https server with the three files named.
        fn settings(&self, ca: &str, cert: &str, key: &str) -> Settings {
            Settings {
                ca: Some(self.dir.path().join(ca)),
                cert: Some(self.dir.path().join(cert)),
                key: Some(self.dir.path().join(key)),
                ..Settings::plaintext("https://127.0.0.1:1")
            }
        }
    }

    fn message(result: Result<ClientTlsConfig, CliError>) -> Option<String> {
        result.err().map(|e| e.to_string())
    }

    #[test]
    fn accepts_https_and_http_urls() {
        assert!(parse_endpoint("http://127.0.0.1:50051").is_ok());
        assert!(parse_endpoint("http://daas.example:8080/").is_ok());
        assert!(parse_endpoint("https://daas.example:50051").is_ok());
        assert!(parse_endpoint("https://[::1]:50051").is_ok());
    }

    #[test]
    fn rejects_other_urls() {
        for endpoint in ["127.0.0.1:50051", "ftp://h", "not a url", "", "https://:1"] {
            let err = parse_endpoint(endpoint).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("invalid endpoint")),
                "{endpoint}: {err:?}"
            );
        }
    }

    #[test]
    fn the_domain_is_the_urls_host() {
        let host_of = |url: &str| parse_endpoint(url).map(|uri| host(&uri).to_owned()).ok();
        assert_eq!(
            host_of("https://daas.example:50051").as_deref(),
            Some("daas.example")
        );
        assert_eq!(host_of("https://[::1]:50051").as_deref(), Some("::1"));
        assert_eq!(host_of("https://127.0.0.1:1").as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn every_missing_file_is_named_with_where_to_set_it() {
        let files = Files::new();
        let full = files.settings("ca.pem", "cert.pem", "key.pem");
        let cases = [
            (
                Settings {
                    cert: None,
                    ..full.clone()
                },
                "no client certificate: pass --cert FILE, set DAAS_CERT, \
                 or set cert in ~/.config/daas/config.toml",
            ),
            (
                Settings {
                    ca: None,
                    ..full.clone()
                },
                "no CA certificate: pass --ca FILE, set DAAS_CA, \
                 or set ca in ~/.config/daas/config.toml",
            ),
            (
                Settings {
                    key: None,
                    ..full.clone()
                },
                "no client private key: pass --key FILE, set DAAS_KEY, \
                 or set key in ~/.config/daas/config.toml",
            ),
        ];
        for (settings, expected) in cases {
            let err = tls_config(&settings, "h").err();
            assert_eq!(err.as_ref().map(CliError::exit_code), Some(2));
            assert_eq!(err.map(|e| e.to_string()).as_deref(), Some(expected));
        }
    }

    #[test]
    fn an_unreadable_file_is_named_with_the_reason() {
        let files = Files::new();
        files.write("cert.pem", CERT_PEM);
        files.write("key.pem", KEY_PEM);
        let settings = files.settings("ca.pem", "cert.pem", "key.pem");
        let ca = files.dir.path().join("ca.pem");
        assert_eq!(
            message(tls_config(&settings, "h")),
            Some(format!(
                "cannot read CA certificate {}: No such file or directory",
                ca.display()
            ))
        );
    }

    #[test]
    fn a_file_that_is_not_pem_is_named() {
        let files = Files::new();
        files.write("ca.pem", CERT_PEM);
        files.write("cert.pem", CERT_PEM);
        files.write("key.pem", KEY_PEM);
        files.write("garbage", "hello\n");
        let dir = files.dir.path();

        let settings = files.settings("garbage", "cert.pem", "key.pem");
        assert_eq!(
            message(tls_config(&settings, "h")),
            Some(format!(
                "CA certificate {} is not a PEM certificate",
                dir.join("garbage").display()
            ))
        );
        // A key where the certificate should be.
        let settings = files.settings("ca.pem", "key.pem", "key.pem");
        assert_eq!(
            message(tls_config(&settings, "h")),
            Some(format!(
                "client certificate {} is not a PEM certificate",
                dir.join("key.pem").display()
            ))
        );
        let settings = files.settings("ca.pem", "cert.pem", "cert.pem");
        assert_eq!(
            message(tls_config(&settings, "h")),
            Some(format!(
                "client private key {} is not a PEM private key",
                dir.join("cert.pem").display()
            ))
        );
    }

    #[test]
    fn broken_pem_is_not_pem() {
        let files = Files::new();
        let path = files.write(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\n%%%not base64%%%\n-----END CERTIFICATE-----\n",
        );
        assert!(matches!(
            read_pem(TlsFile::Ca, &path),
            Err(CliError::NotPem {
                file: TlsFile::Ca,
                ..
            })
        ));
    }

    #[test]
    fn pem_files_are_accepted() {
        let files = Files::new();
        files.write("ca.pem", &format!("{CERT_PEM}{CERT_PEM}"));
        files.write("cert.pem", CERT_PEM);
        files.write("key.pem", KEY_PEM);
        let settings = files.settings("ca.pem", "cert.pem", "key.pem");
        assert!(tls_config(&settings, "127.0.0.1").is_ok());
    }
}
