//! The errors of the CLI, their exit status and their one-line messages.
//! Knows no settings: wording a server's answer or a TLS failure needs the
//! server's endpoint and CA, so `CliError::from_answer` and `from_tls` are
//! in `channel`, next to the channel they report on.

use std::error::Error;
use std::path::PathBuf;

use daas_api::v1::SessionState;
use tonic::{Code, Status};

use crate::setting_names::{CONFIG_KEYS, TlsFile};

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

    /// Every server was tried, and each was down.
    #[error("cannot reach any server: {}", .tried.join("; "))]
    NoServerAnswered {
        /// Each server tried and why it failed: `URL (DETAIL)`.
        tried: Vec<String>,
    },

    /// A create sent again (with its request id) to another server came
    /// back with another session than the first server's.
    #[error(
        "the create, sent again to another server, came back with session {got} \
         instead of {id}; follow {id} with: daas watch {id}"
    )]
    OtherSession { id: String, got: String },

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

    #[error("no node {0}; list them with: daas node list")]
    NoNode(String),

    #[error("the server at {0} does not support cluster nodes (UNIMPLEMENTED)")]
    NoNodeSupport(String),

    #[error("the server at {0} does not support the audit trail (UNIMPLEMENTED)")]
    NoAuditSupport(String),

    #[error("no organisation {0} on this server")]
    NoOrg(String),

    #[error("the server at {0} does not support quotas (UNIMPLEMENTED)")]
    NoQuotaSupport(String),

    #[error("no schedule {0}; list them with: daas schedule list")]
    NoSchedule(String),

    #[error("the server at {0} does not support schedules (UNIMPLEMENTED)")]
    NoScheduleSupport(String),

    #[error("the server at {0} does not support kept disks (UNIMPLEMENTED)")]
    NoSnapshotSupport(String),

    /// The connection broke while the server had an AddSchedule, which
    /// has no idempotency key: sent again, it could make a second schedule.
    #[error(
        "the connection to {endpoint} broke during the add ({detail}); the schedule may \
         have been added: check with `daas schedule list` before adding it again"
    )]
    AddCutOff { endpoint: String, detail: String },

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

    /// A desktop destroyed, being destroyed, or lost with its node.
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
            SessionState::Destroying | SessionState::Destroyed | SessionState::Lost => {
                CliError::GoneNotConnectable {
                    id,
                    state: state.label(),
                }
            }
            _ => CliError::NotReady {
                id,
                state: state.label(),
            },
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
    fn a_destroyed_or_lost_session_points_to_create() {
        for (state, label) in [
            (SessionState::Destroying, "DESTROYING"),
            (SessionState::Destroyed, "DESTROYED"),
            (SessionState::Lost, "LOST"),
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
