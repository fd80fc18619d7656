//! The gRPC channel to one server (`connect`, which `replicas` calls for
//! each server it tries): mutual TLS for `https://` endpoints, plaintext for
//! `http://` ones (which servers accept only on loopback). Also sorts what
//! goes wrong on it: a server down or out of reach (another may do) from a
//! failure another server would share (TLS files, a refused certificate),
//! and words the server's own answers for the user. Not to be confused with
//! `rdp` (the RDP client a desktop is opened with) or `commands/connect.rs`
//! (`daas connect`).

use std::error::Error;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use daas_api::v1::desktop_service_client::DesktopServiceClient;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::endpoints::Target;
use crate::error::{CliError, code_name, error_chain, io_detail, is_transport_status, one_line};
use crate::setting_names::TlsFile;
use crate::settings::Settings;

/// A client of one server.
pub type Client = DesktopServiceClient<Channel>;

/// How long to wait for the TCP connection, then for the TLS handshake,
/// before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the check of a dropped connection may wait at each step.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What an HTTP/2 client sends first; the server answers with its settings.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why a server could not serve a call, sorted by what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Trouble {
    /// The server is down or out of reach (connection refused, reset or
    /// timed out; UNAVAILABLE): another server may serve the call.
    #[error("{0}")]
    Down(String),
    /// Another server would fare no better: TLS files, a certificate
    /// refused or not trusted.
    #[error(transparent)]
    Fatal(CliError),
}

/// Connects to `target`, with the TLS files `settings` name for `https://`.
pub async fn connect(settings: &Settings, target: &Target) -> Result<Client, Trouble> {
    let mut endpoint = Endpoint::from(target.uri.clone()).connect_timeout(CONNECT_TIMEOUT);
    if target.endpoint.is_tls() {
        let tls = tls_config(settings, target.endpoint.host()).map_err(Trouble::Fatal)?;
        endpoint = endpoint.tls_config(tls).map_err(|err| {
            // The files are PEM, but rustls cannot use them together.
            Trouble::Fatal(CliError::BadIdentity {
                cert: settings.cert.clone().unwrap_or_default(),
                key: settings.key.clone().unwrap_or_default(),
                detail: error_chain(&err),
            })
        })?;
    }
    match endpoint.connect().await {
        Ok(channel) => Ok(DesktopServiceClient::new(channel)),
        Err(err) => Err(match find_tls_error(&err) {
            Some(tls) => tls_trouble(tls, &target.endpoint.url, settings),
            None => Trouble::Down(down_detail(&err)),
        }),
    }
}

/// What a failed call on `target` means: `None` when the status is the
/// server's answer (NOT_FOUND, PERMISSION_DENIED, ...), else the trouble.
/// `fresh`: nothing came back on the connection yet. With TLS 1.3 the
/// server checks the client certificate only after the client considers
/// the handshake done, so a refusal reaches the channel as a bare
/// "connection closed" on the first call: then a fresh handshake followed
/// by a read of the server's first answer shows the TLS alert itself.
pub async fn trouble(
    settings: &Settings,
    target: &Target,
    status: &Status,
    fresh: bool,
) -> Option<Trouble> {
    if is_transport_status(status) {
        if let Some(tls) = find_tls_error(status) {
            return Some(tls_trouble(tls, &target.endpoint.url, settings));
        }
        if fresh
            && target.endpoint.is_tls()
            && let Some(refused) = probe(settings, target).await
        {
            return Some(refused);
        }
        let detail = status
            .source()
            .map(down_detail)
            .unwrap_or_else(|| one_line(status.message()));
        return Some(Trouble::Down(detail));
    }
    (status.code() == Code::Unavailable).then(|| {
        let message = one_line(status.message());
        Trouble::Down(if message.is_empty() {
            "the service is unavailable".to_owned()
        } else {
            message
        })
    })
}

/// Why a connection failed, in few words: its I/O error (`Connection
/// refused`) when it has one, else every cause; without the link to
/// rustls's manual that an unexpected end of the connection carries.
fn down_detail(err: &(dyn Error + 'static)) -> String {
    let mut next = Some(err);
    let text = loop {
        match next {
            Some(cause) => match cause.downcast_ref::<std::io::Error>() {
                Some(io) => break io_detail(io),
                None => next = cause.source(),
            },
            None => break error_chain(err),
        }
    };
    match text.split_once(": https://docs.rs/rustls/") {
        Some((words, _)) => words.to_owned(),
        None => text,
    }
}

/// The TLS failure a new handshake with `target` ends with, if any.
async fn probe(settings: &Settings, target: &Target) -> Option<Trouble> {
    let (probe_settings, probe_target) = (settings.clone(), target.clone());
    let tls =
        tokio::task::spawn_blocking(move || tls_error_of_handshake(&probe_settings, &probe_target))
            .await
            .ok()
            .flatten()?;
    match tls_trouble(&tls, &target.endpoint.url, settings) {
        fatal @ Trouble::Fatal(_) => Some(fatal),
        Trouble::Down(_) => None,
    }
}

/// The TLS error a new connection to `target` ends with, if any: a
/// handshake with the files `settings` name, the HTTP/2 preface, then one
/// read.
fn tls_error_of_handshake(settings: &Settings, target: &Target) -> Option<rustls::Error> {
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
    let name = ServerName::try_from(target.endpoint.host().to_owned()).ok()?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let host = target.uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addr = std::net::SocketAddr::new(host.parse().ok()?, target.endpoint.port());
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

/// A TLS failure with the server at `endpoint`: the server refusing our
/// certificate, or us not trusting its own, is fatal; others (a handshake
/// cut short) leave the server down.
fn tls_trouble(tls: &rustls::Error, endpoint: &str, settings: &Settings) -> Trouble {
    match CliError::from_tls(tls, endpoint, settings) {
        Some(err) => Trouble::Fatal(err),
        None => Trouble::Down(error_chain(tls)),
    }
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

/// The server's answers and TLS failures, worded for the user. They live
/// here, next to the channel, rather than in `error`, which knows no
/// settings.
impl CliError {
    /// Words the server's answer to a call (a status that is not a server
    /// down, see [`trouble`]). `endpoint` is the server that answered,
    /// `session_id` the session the call was about, if any.
    pub fn from_answer(status: &Status, endpoint: &str, session_id: Option<&str>) -> CliError {
        let message = one_line(status.message());
        match (status.code(), session_id) {
            (Code::Unavailable, _) => CliError::Unreachable {
                endpoint: endpoint.to_owned(),
                detail: if message.is_empty() {
                    "the service is unavailable".to_owned()
                } else {
                    message
                },
            },
            (Code::NotFound, Some(id)) => CliError::NotFound(id.to_owned()),
            // The server says what was refused (and, for limits, when to retry).
            (Code::ResourceExhausted, _) if !message.is_empty() => {
                CliError::Rpc(match retry_after(status) {
                    // The server's own words may already say when.
                    Some(secs) if !message.contains("try again in") => {
                        format!("{message} (retry in {secs} s)")
                    }
                    _ => message,
                })
            }
            (Code::InvalidArgument | Code::PermissionDenied, _) if !message.is_empty() => {
                CliError::Rpc(message)
            }
            (code, _) if message.is_empty() => CliError::Rpc(code_name(code).to_owned()),
            (code, _) => CliError::Rpc(format!("{}: {message}", code_name(code))),
        }
    }

    /// A TLS failure with the server at `endpoint`, worded for the user:
    /// the server refusing our certificate, or us not trusting the
    /// server's. `None` for others.
    pub fn from_tls(tls: &rustls::Error, endpoint: &str, settings: &Settings) -> Option<CliError> {
        let cause = error_chain(tls);
        match tls {
            // The server sent an alert: it rejected the client certificate.
            rustls::Error::AlertReceived(_) => Some(CliError::TlsRefused {
                endpoint: endpoint.to_owned(),
                cause,
            }),
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                Some(CliError::ServerUntrusted {
                    ca: settings.ca.clone().unwrap_or_default(),
                    cause,
                })
            }
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                Some(CliError::Unreachable {
                    endpoint: endpoint.to_owned(),
                    detail: format!(
                        "{cause} (the server does not speak TLS; is it a plaintext http:// endpoint?)"
                    ),
                })
            }
            _ => None,
        }
    }
}

/// When the server says to retry, in seconds: its `google.rpc.RetryInfo`
/// detail, else its `retry-after` metadata (older servers).
fn retry_after(status: &Status) -> Option<u64> {
    use tonic_types::StatusExt;
    if let Some(delay) = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
    {
        return Some(delay.as_secs_f64().ceil() as u64);
    }
    status
        .metadata()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse().ok())
}

/// The rustls error among `err` and its causes. An `io::Error` hides the
/// error it wraps from `source()`, so it is unwrapped by hand.
fn find_tls_error<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => err.source(),
        };
    }
    None
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

    const ENDPOINT: &str = "http://127.0.0.1:50051";

    fn server() -> Settings {
        Settings::plaintext(ENDPOINT)
    }

    /// A TLS server with its CA at `/x/ca.pem`.
    fn tls_server() -> Settings {
        Settings {
            ca: Some(PathBuf::from("/x/ca.pem")),
            ..Settings::plaintext("https://daas.example:50051")
        }
    }

    /// The first endpoint of `settings`, dialled at 127.0.0.1 (the tests'
    /// URLs name daas.example, which does not resolve).
    fn target(settings: &Settings) -> Target {
        let endpoint = crate::endpoints::Endpoint::parse(&settings.endpoints[0]);
        let endpoint = endpoint.unwrap_or_else(|err| panic!("{err}"));
        let scheme = if endpoint.is_tls() { "https" } else { "http" };
        Target {
            uri: format!("{scheme}://127.0.0.1:{}", endpoint.port())
                .parse()
                .unwrap_or_else(|err| panic!("{err}")),
            endpoint,
            address: None,
        }
    }

    /// A status as tonic makes it for a connection that failed with `tls`.
    fn tls_status(tls: rustls::Error) -> Status {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        Status::from_error(Box::new(io))
    }

    /// What a failed call means, as text: `down: DETAIL`, `fatal: MESSAGE`
    /// or `answer`.
    async fn sorted(settings: &Settings, status: &Status) -> String {
        match trouble(settings, &target(settings), status, false).await {
            Some(Trouble::Down(detail)) => format!("down: {detail}"),
            Some(Trouble::Fatal(err)) => format!("fatal: {err}"),
            None => "answer".to_owned(),
        }
    }

    #[test]
    fn not_found_names_the_session() {
        let err = CliError::from_answer(&Status::not_found("nope"), ENDPOINT, Some("abc"));
        assert_eq!(err.to_string(), "no session abc");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn invalid_argument_is_the_servers_message() {
        let status = Status::invalid_argument("username: must be 1-20 characters");
        let err = CliError::from_answer(&status, ENDPOINT, None);
        assert_eq!(err.to_string(), "username: must be 1-20 characters");
    }

    #[test]
    fn other_codes_are_named() {
        let err = CliError::from_answer(&Status::internal("store broken"), ENDPOINT, Some("x"));
        assert_eq!(err.to_string(), "INTERNAL: store broken");
        let err = CliError::from_answer(&Status::permission_denied(""), ENDPOINT, None);
        assert_eq!(err.to_string(), "PERMISSION_DENIED");
    }

    #[test]
    fn permission_denied_is_the_servers_message() {
        let status = Status::permission_denied("only admins may create desktops for other users");
        let err = CliError::from_answer(&status, ENDPOINT, Some("x"));
        assert_eq!(
            err.to_string(),
            "only admins may create desktops for other users"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn retry_info_details_say_when_to_retry() {
        use tonic_types::{ErrorDetails, StatusExt};
        let status = Status::with_error_details(
            Code::ResourceExhausted,
            "the server already runs its maximum of 50 desktops",
            ErrorDetails::with_retry_info(Some(std::time::Duration::from_millis(12_300))),
        );
        let err = CliError::from_answer(&status, ENDPOINT, None);
        assert_eq!(
            err.to_string(),
            "the server already runs its maximum of 50 desktops (retry in 13 s)"
        );
    }

    #[test]
    fn resource_exhausted_shows_when_to_retry() {
        let mut status = Status::resource_exhausted("alice already has 3 desktops");
        let err = CliError::from_answer(&status, ENDPOINT, None);
        assert_eq!(err.to_string(), "alice already has 3 desktops");
        status.metadata_mut().insert(
            "retry-after",
            tonic::metadata::MetadataValue::from_static("30"),
        );
        let err = CliError::from_answer(&status, ENDPOINT, None);
        assert_eq!(
            err.to_string(),
            "alice already has 3 desktops (retry in 30 s)"
        );
        assert_eq!(err.exit_code(), 2);
        status.metadata_mut().insert(
            "retry-after",
            tonic::metadata::MetadataValue::from_static("soon"),
        );
        let err = CliError::from_answer(&status, ENDPOINT, None);
        assert_eq!(err.to_string(), "alice already has 3 desktops");
        let mut status = Status::resource_exhausted("alice used her creates; try again in 9 s");
        status.metadata_mut().insert(
            "retry-after",
            tonic::metadata::MetadataValue::from_static("9"),
        );
        let err = CliError::from_answer(&status, ENDPOINT, None);
        assert_eq!(err.to_string(), "alice used her creates; try again in 9 s");
    }

    #[tokio::test]
    async fn unavailable_from_the_server_means_it_is_down() {
        let status = Status::unavailable("the server is shutting down");
        assert_eq!(
            sorted(&server(), &status).await,
            "down: the server is shutting down"
        );
        assert_eq!(
            sorted(&server(), &Status::unavailable("")).await,
            "down: the service is unavailable"
        );
    }

    #[tokio::test]
    async fn a_lost_connection_means_the_server_is_down() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let status = Status::from_error(Box::new(io));
        assert_eq!(
            sorted(&tls_server(), &status).await,
            "down: connection reset"
        );
    }

    #[test]
    fn a_closed_connection_is_said_without_rustls_s_manual() {
        let io = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: \
             https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        );
        assert_eq!(
            down_detail(&io),
            "peer closed connection without sending TLS close_notify"
        );
    }

    #[tokio::test]
    async fn other_answers_are_the_callers_to_word() {
        for status in [
            Status::not_found("no session x"),
            Status::permission_denied("no"),
            Status::internal("store broken"),
        ] {
            assert_eq!(sorted(&server(), &status).await, "answer", "{status:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_client_certificate_is_explained() {
        let status = tls_status(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        ));
        assert_eq!(
            sorted(&tls_server(), &status).await,
            "fatal: the server at https://daas.example:50051 refused the TLS connection: \
             received fatal alert: UnknownCA; check --cert/--key (issued by the server's CA? expired?)"
        );
    }

    #[tokio::test]
    async fn an_untrusted_server_certificate_names_the_ca() {
        let status = tls_status(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            sorted(&tls_server(), &status).await,
            "fatal: cannot verify the server's certificate with CA /x/ca.pem: \
             invalid peer certificate: UnknownIssuer"
        );
        let err = CliError::from_tls(
            &rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
            "https://daas.example:50051",
            &tls_server(),
        );
        assert_eq!(err.as_ref().map(CliError::exit_code), Some(2));
        assert!(err.is_some_and(|e| {
            e.to_string()
                .starts_with("cannot verify the server's certificate with CA /x/ca.pem: ")
        }),);
    }

    #[tokio::test]
    async fn a_refused_connection_means_the_server_is_down() {
        // Nothing listens on port 1.
        let settings = Settings::plaintext("http://127.0.0.1:1");
        let result = connect(&settings, &target(&settings)).await;
        match result {
            Err(Trouble::Down(detail)) => assert_eq!(detail, "Connection refused"),
            other => panic!("{other:?}"),
        }
    }
}
