//! The server's errors, and their one mapping to gRPC statuses.

use std::time::Duration;

use tonic::{Code, Status, metadata::MetadataValue};

use crate::store::StoreError;

/// Anything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed.
    #[error("{field} {why}")]
    InvalidArgument { field: &'static str, why: String },
    /// No session has this id.
    #[error("no session {0}")]
    NotFound(String),
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
    /// The server is stopping and takes no new work.
    #[error("the server is shutting down; try again in a moment")]
    ShuttingDown,
    /// The session store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::LimitReached(_) => Error::ResourceExhausted {
                message: err.to_string(),
                retry_after: None,
            },
            other => Error::Store(other),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let code = match &err {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::ResourceExhausted { .. } => Code::ResourceExhausted,
            Error::DestroyFailed { .. } => Code::Aborted,
            Error::ShuttingDown => Code::Unavailable,
            Error::Store(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %err, "request failed");
        }
        let retry_after = match &err {
            Error::ResourceExhausted { retry_after, .. } => *retry_after,
            _ => None,
        };
        let mut status = Status::new(code, err.to_string());
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
    }
}
