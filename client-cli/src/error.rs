//! The errors of the CLI, their exit status and their one-line messages.

use std::error::Error;
use std::path::PathBuf;

use daas_api::v1::SessionState;
use tonic::{Code, Status};

use crate::settings::{CONFIG_KEYS, Settings, TlsFile};

/// Everything that makes `daas` exit with a non-zero status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input found after argument parsing (clap handles the rest).
    #[error("{0}")]
    Usage(String),

    #[error("invalid endpoint `{endpoint}`: {reason}")]
    BadEndpoint { endpoint: String, reason: String },

    #[error("cannot reach the server at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },

    /// A call failed on a connection that was up: the server went away, or
    /// (TLS 1.3) refused the client certificate after the handshake.
    #[error("cannot reach the server at {endpoint}: {detail}")]
    Disconnected { endpoint: String, detail: String },

    #[error("unknown key `{key}` in {file} (valid keys: {})", CONFIG_KEYS.join(", "))]
    ConfigUnknownKey { file: String, key: String },

    #[error("cannot read {file}: {detail}")]
    ConfigUnreadable { file: String, detail: String },

    #[error("invalid {file}: {detail}")]
    ConfigInvalid { file: String, detail: String },

    #[error(
        "no {}: pass {} FILE, set {}, or set {} in {config}",
        .file.what(), .file.flag(), .file.env(), .file.key()
    )]
    MissingTlsFile { file: TlsFile, config: String },

    #[error("cannot read {} {}: {detail}", .file.what(), .path.display())]
    UnreadableTlsFile {
        file: TlsFile,
        path: PathBuf,
        detail: String,
    },

    #[error("{} {} is not a PEM {}", .file.what(), .path.display(), .file.pem_kind())]
    NotPem { file: TlsFile, path: PathBuf },

    #[error("cannot use the client certificate {} with the key {}: {detail}", .cert.display(), .key.display())]
    BadIdentity {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },

    #[error(
        "the server at {endpoint} refused the TLS connection: {cause}; \
         check --cert/--key (issued by the server's CA? expired?)"
    )]
    TlsRefused { endpoint: String, cause: String },

    #[error("cannot verify the server's certificate with CA {}: {cause}", .ca.display())]
    ServerUntrusted { ca: PathBuf, cause: String },

    #[error("no session {0}")]
    NotFound(String),

    #[error("no warm pool {0}; list them with: daas pool status")]
    NoPool(String),

    #[error("the server at {0} does not support warm pools (UNIMPLEMENTED)")]
    NoPoolSupport(String),

    #[error("the server at {0} does not support the audit trail (UNIMPLEMENTED)")]
    NoAuditSupport(String),

    /// A gRPC error, already worded for the user.
    #[error("{0}")]
    Rpc(String),

    #[error("the stream ended before the session settled; follow it with: daas watch {0}")]
    StreamEnded(String),

    #[error("the stream ended before the server reported any session")]
    StreamEndedEmpty,

    #[error(
        "the stream ended before the session settled ({cause}); follow it with: daas watch {id}"
    )]
    StreamBroken { id: String, cause: String },

    #[error("failed in {stage}: {reason}")]
    SessionFailed { stage: &'static str, reason: String },

    #[error("session {0} was destroyed before it was ready")]
    DestroyedBeforeReady(String),

    #[error("cannot destroy session {id}: {message}; run `daas destroy {id}` again to retry")]
    DestroyFailed { id: String, message: String },

    /// A desktop still being provisioned. See [`CliError::not_ready`].
    #[error("session {id} is {state}, not READY; follow it with: daas watch {id}")]
    NotReady { id: String, state: &'static str },

    #[error(
        "session {0} is FAILED and cannot be connected to; see why with `daas show {0}` \
         or start a new desktop with `daas create`"
    )]
    FailedNotConnectable(String),

    /// A desktop destroyed or being destroyed.
    #[error(
        "session {id} is {state} and cannot be connected to any more; \
         start a new desktop with `daas create`"
    )]
    GoneNotConnectable { id: String, state: &'static str },

    #[error("session {0} is READY but the server gave no RDP address")]
    NoRdpAddress(String),

    #[error(
        "session {id}: the server's RDP address {why}; no .rdp file written (an administrator can check the Terraform module's rdp_host output)"
    )]
    BadRdpAddress { id: String, why: &'static str },

    #[error("cannot write {}: {detail}", .path.display())]
    RdpFileUnwritable { path: PathBuf, detail: String },

    #[error(
        "{}; {}open {} with an RDP client",
        not_found(.programs), install_it(.programs, *.install), .rdp_file.display()
    )]
    NoRdpClient {
        /// The programs tried, any of which would do.
        programs: &'static [&'static str],
        /// Where to get them, e.g. `Debian/Ubuntu package freerdp2-x11`.
        install: Option<&'static str>,
        rdp_file: PathBuf,
    },

    #[error("cannot start {program}: {detail}; open {} with an RDP client", .rdp_file.display())]
    RdpClientUnstartable {
        program: &'static str,
        detail: String,
        rdp_file: PathBuf,
    },

    #[error("interrupted; the session goes on, follow it with: daas watch {0}")]
    Interrupted(String),

    #[error("interrupted")]
    InterruptedEarly,

    #[error("{0}")]
    Password(String),

    #[error("cannot write to standard output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// 1 when a session ended badly, 130 when interrupted, 2 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::SessionFailed { .. } | CliError::DestroyedBeforeReady(_) => 1,
            CliError::Interrupted(_) | CliError::InterruptedEarly => 130,
            _ => 2,
        }
    }

    /// Why session `id`, in `state`, cannot be connected to (yet): one
    /// being provisioned can be followed until READY; a FAILED or destroyed
    /// one never will be, so a new desktop is needed.
    pub fn not_ready(id: String, state: SessionState) -> CliError {
        match state {
            SessionState::Failed => CliError::FailedNotConnectable(id),
            SessionState::Destroying | SessionState::Destroyed => CliError::GoneNotConnectable {
                id,
                state: state.label(),
            },
            _ => CliError::NotReady {
                id,
                state: state.label(),
            },
        }
    }

    /// Words a gRPC error for the user. `server` is where the call went,
    /// `session_id` the session it was about, if any.
    pub fn from_status(status: &Status, server: &Settings, session_id: Option<&str>) -> CliError {
        if is_transport_status(status) {
            return CliError::from_tls_chain(status, server).unwrap_or_else(|| {
                CliError::Disconnected {
                    endpoint: server.endpoint.clone(),
                    detail: status
                        .source()
                        .map(error_chain)
                        .unwrap_or_else(|| one_line(status.message())),
                }
            });
        }
        let message = one_line(status.message());
        match (status.code(), session_id) {
            (Code::Unavailable, _) => CliError::Unreachable {
                endpoint: server.endpoint.clone(),
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

    /// Words an error of the connection to `server` (TCP, TLS, HTTP/2).
    pub fn from_transport(err: &(dyn Error + 'static), server: &Settings) -> CliError {
        CliError::from_tls_chain(err, server).unwrap_or_else(|| CliError::Unreachable {
            endpoint: server.endpoint.clone(),
            detail: error_chain(err),
        })
    }

    /// The TLS failure among `err`'s causes, worded for the user.
    fn from_tls_chain(err: &(dyn Error + 'static), server: &Settings) -> Option<CliError> {
        CliError::from_tls(find_tls_error(err)?, server)
    }

    /// A TLS failure worded for the user: the server refusing our
    /// certificate, or us not trusting the server's. `None` for others.
    pub fn from_tls(tls: &rustls::Error, server: &Settings) -> Option<CliError> {
        let cause = error_chain(tls);
        match tls {
            // The server sent an alert: it rejected the client certificate.
            rustls::Error::AlertReceived(_) => Some(CliError::TlsRefused {
                endpoint: server.endpoint.clone(),
                cause,
            }),
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                Some(CliError::ServerUntrusted {
                    ca: server.ca.clone().unwrap_or_default(),
                    cause,
                })
            }
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                Some(CliError::Unreachable {
                    endpoint: server.endpoint.clone(),
                    detail: format!(
                        "{cause} (the server does not speak TLS; is it a plaintext http:// endpoint?)"
                    ),
                })
            }
            _ => None,
        }
    }
}

/// `P not found`, `neither P nor Q found` or `none of P, Q, R found`.
fn not_found(programs: &[&str]) -> String {
    match programs {
        [program] => format!("{program} not found"),
        [first, second] => format!("neither {first} nor {second} found"),
        _ => format!("none of {} found", programs.join(", ")),
    }
}

/// `install it (WHERE) or ` (`install one` for several `programs`), when
/// there is somewhere to get them.
fn install_it(programs: &[&str], install: Option<&str>) -> String {
    let which = if programs.len() > 1 { "one" } else { "it" };
    install
        .map(|place| format!("install {which} ({place}) or "))
        .unwrap_or_default()
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

/// An I/O error's text without the `(os error N)` suffix:
/// `No such file or directory`.
pub fn io_detail(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.rsplit_once(" (os error ") {
        Some((detail, _)) if err.raw_os_error().is_some() => detail.to_owned(),
        _ => text,
    }
}

/// Whether a status was made by the client's transport (connection refused,
/// reset, timeout) rather than sent by the server: tonic keeps the underlying
/// error as the source of the former.
pub fn is_transport_status(status: &Status) -> bool {
    status.source().is_some()
}

/// The canonical upper-case name of a gRPC code, e.g. `PERMISSION_DENIED`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The messages of an error and of its sources, joined with `: `, skipping
/// a source whose text its parent already contains.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Squeezes a message onto one line: line breaks and runs of blanks become
/// single spaces.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A status as tonic makes it for a connection that failed with `tls`.
    fn tls_status(tls: rustls::Error) -> Status {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        Status::from_error(Box::new(io))
    }

    #[test]
    fn not_found_names_the_session() {
        let err = CliError::from_status(&Status::not_found("nope"), &server(), Some("abc"));
        assert_eq!(err.to_string(), "no session abc");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn invalid_argument_is_the_servers_message() {
        let status = Status::invalid_argument("username: must be 1-20 characters");
        let err = CliError::from_status(&status, &server(), None);
        assert_eq!(err.to_string(), "username: must be 1-20 characters");
    }

    #[test]
    fn unavailable_says_the_server_is_unreachable() {
        let err =
            CliError::from_status(&Status::unavailable("connection refused"), &server(), None);
        assert_eq!(
            err.to_string(),
            "cannot reach the server at http://127.0.0.1:50051: connection refused"
        );
    }

    #[test]
    fn other_codes_are_named() {
        let err = CliError::from_status(&Status::internal("store broken"), &server(), Some("x"));
        assert_eq!(err.to_string(), "INTERNAL: store broken");
        let err = CliError::from_status(&Status::permission_denied(""), &server(), None);
        assert_eq!(err.to_string(), "PERMISSION_DENIED");
    }

    #[test]
    fn permission_denied_is_the_servers_message() {
        let status = Status::permission_denied("only admins may create desktops for other users");
        let err = CliError::from_status(&status, &server(), Some("x"));
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
        let err = CliError::from_status(&status, &server(), None);
        assert_eq!(
            err.to_string(),
            "the server already runs its maximum of 50 desktops (retry in 13 s)"
        );
    }

    #[test]
    fn resource_exhausted_shows_when_to_retry() {
        let mut status = Status::resource_exhausted("alice already has 3 desktops");
        let err = CliError::from_status(&status, &server(), None);
        assert_eq!(err.to_string(), "alice already has 3 desktops");
        status.metadata_mut().insert(
            "retry-after",
            tonic::metadata::MetadataValue::from_static("30"),
        );
        let err = CliError::from_status(&status, &server(), None);
        assert_eq!(
            err.to_string(),
            "alice already has 3 desktops (retry in 30 s)"
        );
        assert_eq!(err.exit_code(), 2);
        status.metadata_mut().insert(
            "retry-after",
            tonic::metadata::MetadataValue::from_static("soon"),
        );
        let err = CliError::from_status(&status, &server(), None);
        assert_eq!(err.to_string(), "alice already has 3 desktops");
        let mut status = Status::resource_exhausted("alice used her creates; try again in 9 s");
        status.metadata_mut().insert(
            "retry-after",
            tonic::metadata::MetadataValue::from_static("9"),
        );
        let err = CliError::from_status(&status, &server(), None);
        assert_eq!(err.to_string(), "alice used her creates; try again in 9 s");
    }

    #[test]
    fn a_refused_client_certificate_is_explained() {
        let status = tls_status(rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA,
        ));
        let err = CliError::from_status(&status, &tls_server(), None);
        assert_eq!(
            err.to_string(),
            "the server at https://daas.example:50051 refused the TLS connection: \
             received fatal alert: UnknownCA; check --cert/--key (issued by the server's CA? expired?)"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn an_untrusted_server_certificate_names_the_ca() {
        let status = tls_status(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let err = CliError::from_status(&status, &tls_server(), None);
        assert_eq!(
            err.to_string(),
            "cannot verify the server's certificate with CA /x/ca.pem: \
             invalid peer certificate: UnknownIssuer"
        );
        // The same error at connection time, without a status around it.
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        let err = CliError::from_transport(&io, &tls_server());
        assert!(
            err.to_string()
                .starts_with("cannot verify the server's certificate with CA /x/ca.pem: "),
            "{err}"
        );
    }

    #[test]
    fn other_transport_errors_say_the_server_is_unreachable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let err = CliError::from_transport(&io, &server());
        assert_eq!(
            err.to_string(),
            "cannot reach the server at http://127.0.0.1:50051: connection refused"
        );
    }

    #[test]
    fn a_connection_lost_without_tls_cause_is_unreachable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
        let status = Status::from_error(Box::new(io));
        let err = CliError::from_status(&status, &tls_server(), None);
        assert!(matches!(err, CliError::Disconnected { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot reach the server at https://daas.example:50051: connection reset"
        );
    }

    #[test]
    fn io_details_drop_the_os_error_number() {
        let err = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_detail(&err), "No such file or directory");
        let err = std::io::Error::other("plain (os error 2)");
        assert_eq!(io_detail(&err), "plain (os error 2)");
    }

    #[test]
    fn a_session_being_provisioned_can_be_followed() {
        for state in [
            SessionState::Queued,
            SessionState::Provisioning,
            SessionState::Booting,
            SessionState::Configuring,
        ] {
            let err = CliError::not_ready("s1".into(), state);
            assert_eq!(
                err.to_string(),
                format!(
                    "session s1 is {}, not READY; follow it with: daas watch s1",
                    state.label()
                )
            );
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn a_failed_session_points_to_show_and_create() {
        let err = CliError::not_ready("s1".into(), SessionState::Failed);
        assert_eq!(
            err.to_string(),
            "session s1 is FAILED and cannot be connected to; \
             see why with `daas show s1` or start a new desktop with `daas create`"
        );
        assert!(!err.to_string().contains("daas watch"));
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_destroyed_session_points_to_create() {
        for (state, label) in [
            (SessionState::Destroying, "DESTROYING"),
            (SessionState::Destroyed, "DESTROYED"),
        ] {
            let err = CliError::not_ready("s1".into(), state);
            assert_eq!(
                err.to_string(),
                format!(
                    "session s1 is {label} and cannot be connected to any more; \
                     start a new desktop with `daas create`"
                )
            );
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn missing_programs_are_all_named() {
        assert_eq!(not_found(&["mstsc"]), "mstsc not found");
        assert_eq!(not_found(&["a", "b"]), "neither a nor b found");
        assert_eq!(not_found(&["a", "b", "c"]), "none of a, b, c found");
        assert_eq!(install_it(&["a"], Some("pkg")), "install it (pkg) or ");
        assert_eq!(
            install_it(&["a", "b"], Some("pkg")),
            "install one (pkg) or "
        );
        assert_eq!(install_it(&["a", "b"], None), "");
    }

    #[test]
    fn exit_codes() {
        let failed = CliError::SessionFailed {
            stage: "PROVISIONING",
            reason: "x".into(),
        };
        assert_eq!(failed.exit_code(), 1);
        assert_eq!(CliError::StreamEnded("x".into()).exit_code(), 2);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
    }

    #[test]
    fn messages_fit_on_one_line() {
        assert_eq!(
            one_line("terraform failed:\n  Error: boom\r\n"),
            "terraform failed: Error: boom"
        );
    }

    #[test]
    fn error_chain_skips_repeated_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner;
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner");
    }
}
