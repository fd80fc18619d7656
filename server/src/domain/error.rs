//! The server's errors: each has one [`ErrorCode`], which maps it to a gRPC
//! code and an HTTP status alike, and is turned into a `tonic::Status` here
//! only, with typed details (`google.rpc.BadRequest` naming the field,
//! `google.rpc.RetryInfo` saying when to retry) that clients read instead
//! of parsing messages.

use std::time::Duration;

use tonic::{Code, Status, metadata::MetadataValue};
use tonic_types::{ErrorDetails, StatusExt};

/// Anything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("{field} {why}")]
    InvalidArgument { field: &'static str, why: String },
    /// No session has this id.
    #[error("no session {0}")]
    NotFound(String),
    /// The server configures no warm pool of this name.
    #[error("no warm pool {0}: `daas pool status` lists the server's pools")]
    NoSuchPool(String),
    /// The server knows no cluster node of this name.
    #[error("no node {0}: `daas node list` lists the cluster's nodes")]
    NoSuchNode(String),
    /// No schedule has this id.
    #[error("no schedule {0}: `daas schedule list` lists yours")]
    NoSuchSchedule(String),
    /// No kept disk has this id.
    #[error("no kept disk {0}: `daas snapshot list` lists yours")]
    NoSuchSnapshot(String),
    /// The server configures no organisation of this name.
    #[error("no organisation {0}: `daas quota` names yours")]
    NoSuchOrg(String),
    /// Terraform could not destroy a session's VM.
    #[error("could not destroy session {id}: {reason}; destroy it again to retry")]
    DestroyFailed { id: String, reason: String },
    /// The caller has no usable identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this; the message says what was refused.
    #[error("{0}")]
    PermissionDenied(String),
    /// A limit is reached; the message says which and when to retry.
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after: Option<Duration>,
    },
    /// A part the call needs is not there now (the server stopping under
    /// a stream); the message says what to do.
    #[error("{0}")]
    Unavailable(String),
    /// The server is stopping and takes no new work.
    #[error("the server is shutting down; try again in a moment")]
    ShuttingDown,
    /// The session moved on under the caller (someone else changed it
    /// first); the message names both states.
    #[error("{0}")]
    Conflict(String),
    /// A part of the server failed (the store, a task); the message says
    /// which.
    #[error(transparent)]
    Internal(Box<dyn std::error::Error + Send + Sync>),
    /// The session password could not be hashed.
    #[error(transparent)]
    PasswordHash(#[from] crate::domain::password::HashError),
}

/// What kind of failure an [`Error`] is, whatever the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    Unauthenticated,
    PermissionDenied,
    ResourceExhausted,
    /// The operation ran and failed; repeating it retries.
    Aborted,
    Unavailable,
    Internal,
}

impl From<crate::domain::catalog::Refused> for Error {
    fn from(refused: crate::domain::catalog::Refused) -> Self {
        use crate::domain::catalog::Refused;
        match refused {
            Refused::UnknownTemplate { .. } => Error::InvalidArgument {
                field: "template",
                why: refused.to_string(),
            },
            Refused::UnknownSize { .. } => Error::InvalidArgument {
                field: "size",
                why: refused.to_string(),
            },
            Refused::Forbidden { .. } => Error::PermissionDenied(refused.to_string()),
        }
    }
}

impl From<crate::domain::orgs::Refused> for Error {
    fn from(refused: crate::domain::orgs::Refused) -> Self {
        use crate::domain::orgs::Refused;
        match refused {
            Refused::Unknown(_) | Refused::Ambiguous(_) => Error::InvalidArgument {
                field: "org",
                why: refused.to_string(),
            },
            Refused::NotMember { .. } => Error::PermissionDenied(refused.to_string()),
        }
    }
}

impl ErrorCode {
    /// The gRPC code.
    pub fn grpc(self) -> Code {
        match self {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::ResourceExhausted => Code::ResourceExhausted,
            ErrorCode::Aborted => Code::Aborted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        }
    }

    /// The code of a gRPC status (codes the server does not give are
    /// `Internal`).
    pub fn from_grpc(code: Code) -> ErrorCode {
        match code {
            Code::InvalidArgument => ErrorCode::InvalidArgument,
            Code::NotFound => ErrorCode::NotFound,
            Code::Unauthenticated => ErrorCode::Unauthenticated,
            Code::PermissionDenied => ErrorCode::PermissionDenied,
            Code::ResourceExhausted => ErrorCode::ResourceExhausted,
            Code::Aborted => ErrorCode::Aborted,
            Code::Unavailable => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// The HTTP status (as google.rpc.Code documents the pairs).
    pub fn http(self) -> http::StatusCode {
        match self {
            ErrorCode::InvalidArgument => http::StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => http::StatusCode::NOT_FOUND,
            ErrorCode::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => http::StatusCode::FORBIDDEN,
            ErrorCode::ResourceExhausted => http::StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Aborted => http::StatusCode::CONFLICT,
            ErrorCode::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Error {
    /// The error's code, for every transport.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Error::NotFound(_)
            | Error::NoSuchPool(_)
            | Error::NoSuchNode(_)
            | Error::NoSuchOrg(_)
            | Error::NoSuchSchedule(_)
            | Error::NoSuchSnapshot(_) => ErrorCode::NotFound,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::ResourceExhausted { .. } => ErrorCode::ResourceExhausted,
            Error::DestroyFailed { .. } | Error::Conflict(_) => ErrorCode::Aborted,
            Error::ShuttingDown | Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) | Error::PasswordHash(_) => ErrorCode::Internal,
        }
    }

    /// Logs the error when it is the server's fault (INTERNAL), once, where
    /// a transport answers with it.
    pub fn log_if_internal(&self) {
        if self.code() == ErrorCode::Internal {
            tracing::error!(error = %self, "request failed");
        }
    }

    /// How long to wait before trying again, when waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::ResourceExhausted { retry_after, .. } => *retry_after,
            Error::ShuttingDown => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let code = err.code();
        err.log_if_internal();
        let mut details = ErrorDetails::new();
        if let Error::InvalidArgument { field, why } = &err {
            details.add_bad_request_violation(*field, why.clone());
        }
        let retry_after = err.retry_after();
        if let Some(after) = retry_after {
            details.set_retry_info(Some(after));
        }
        let mut status = Status::with_error_details(code.grpc(), err.to_string(), details);
        // Also as metadata, for clients that read no details.
        if let Some(after) = retry_after
            && let Ok(value) = MetadataValue::try_from(after.as_secs().max(1).to_string())
        {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_codes_and_actionable_messages() {
        let status = Status::from(Error::InvalidArgument {
            field: "username",
            why: "is required".into(),
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "username is required");

        let status = Status::from(Error::NotFound("abc".into()));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no session abc");

        let status = Status::from(Error::DestroyFailed {
            id: "abc".into(),
            reason: "terraform destroy exited with status 1".into(),
        });
        assert_eq!(status.code(), Code::Aborted);
        assert!(status.message().contains("destroy it again"));

        let status = Status::from(Error::ResourceExhausted {
            message: "alice may start 6 creates a minute".into(),
            retry_after: Some(Duration::from_millis(9_400)),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "9");
        let retry = status.get_details_retry_info().expect("RetryInfo");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(9_400)));
    }

    #[test]
    fn a_bad_field_is_named_in_the_details() {
        let status = Status::from(Error::InvalidArgument {
            field: "session_user",
            why: "contains '/'".into(),
        });
        let bad = status.get_details_bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "session_user");
        assert_eq!(bad.field_violations[0].description, "contains '/'");
    }

    #[test]
    fn every_code_has_a_grpc_code_and_an_http_status() {
        use http::StatusCode as H;
        let pairs = [
            (
                ErrorCode::InvalidArgument,
                Code::InvalidArgument,
                H::BAD_REQUEST,
            ),
            (ErrorCode::NotFound, Code::NotFound, H::NOT_FOUND),
            (
                ErrorCode::Unauthenticated,
                Code::Unauthenticated,
                H::UNAUTHORIZED,
            ),
            (
                ErrorCode::PermissionDenied,
                Code::PermissionDenied,
                H::FORBIDDEN,
            ),
            (
                ErrorCode::ResourceExhausted,
                Code::ResourceExhausted,
                H::TOO_MANY_REQUESTS,
            ),
            (ErrorCode::Aborted, Code::Aborted, H::CONFLICT),
            (
                ErrorCode::Unavailable,
                Code::Unavailable,
                H::SERVICE_UNAVAILABLE,
            ),
            (
                ErrorCode::Internal,
                Code::Internal,
                H::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (code, grpc, http) in pairs {
            assert_eq!((code.grpc(), code.http()), (grpc, http), "{code:?}");
            assert_eq!(ErrorCode::from_grpc(grpc), code);
        }
        assert_eq!(ErrorCode::from_grpc(Code::DataLoss), ErrorCode::Internal);
    }
}
