//! The errors of the CLI, their exit status and their one-line messages.

use std::error::Error as _;

use tonic::{Code, Status};

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

    #[error("no session {0}")]
    NotFound(String),

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

    /// Words a gRPC error for the user. `session_id` is the session the call
    /// was about, if any.
    pub fn from_status(status: &Status, endpoint: &str, session_id: Option<&str>) -> CliError {
        let message = status.message().trim();
        match (status.code(), session_id) {
            (Code::Unavailable, _) => CliError::Unreachable {
                endpoint: endpoint.to_owned(),
                detail: if message.is_empty() {
                    "the service is unavailable".to_owned()
                } else {
                    message.to_owned()
                },
            },
            (Code::NotFound, Some(id)) => CliError::NotFound(id.to_owned()),
            (Code::InvalidArgument, _) if !message.is_empty() => CliError::Rpc(message.to_owned()),
            (code, _) if message.is_empty() => CliError::Rpc(code_name(code).to_owned()),
            (code, _) => CliError::Rpc(format!("{}: {message}", code_name(code))),
        }
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

    #[test]
    fn not_found_names_the_session() {
        let err = CliError::from_status(&Status::not_found("nope"), ENDPOINT, Some("abc"));
        assert_eq!(err.to_string(), "no session abc");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn invalid_argument_is_the_servers_message() {
        let status = Status::invalid_argument("username: must be 1-20 characters");
        let err = CliError::from_status(&status, ENDPOINT, None);
        assert_eq!(err.to_string(), "username: must be 1-20 characters");
    }

    #[test]
    fn unavailable_says_the_server_is_unreachable() {
        let err = CliError::from_status(&Status::unavailable("connection refused"), ENDPOINT, None);
        assert_eq!(
            err.to_string(),
            "cannot reach the server at http://127.0.0.1:50051: connection refused"
        );
    }

    #[test]
    fn other_codes_are_named() {
        let err = CliError::from_status(&Status::internal("store broken"), ENDPOINT, Some("x"));
        assert_eq!(err.to_string(), "INTERNAL: store broken");
        let err = CliError::from_status(&Status::permission_denied(""), ENDPOINT, None);
        assert_eq!(err.to_string(), "PERMISSION_DENIED");
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
