//! The server's errors, and their one mapping to gRPC statuses.

use tonic::{Code, Status};

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
    /// The server is stopping and takes no new work.
    #[error("the server is shutting down; try again in a moment")]
    ShuttingDown,
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        let code = match &err {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::DestroyFailed { .. } => Code::Aborted,
            Error::ShuttingDown => Code::Unavailable,
            Error::Store(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %err, "request failed");
        }
        Status::new(code, err.to_string())
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
    }
}
