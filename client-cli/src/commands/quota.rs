//! `daas quota`: an organisation's quota and what its desktops use, with
//! one member's share, as text or JSON.

use daas_api::v1::GetQuotaRequest;
use tonic::{Code, Status};

use super::{print, servers};
use crate::cli::QuotaArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::{json, render};

pub async fn run(ctx: &Context, args: QuotaArgs) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let request = GetQuotaRequest {
        // Empty: the caller's organisation, and the caller (for a user).
        org: args.org.clone().unwrap_or_default(),
        username: args.user.unwrap_or_default(),
    };
    let quota = servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.get_quota(request).await }
        })
        .await?
        .map_err(|status| quota_error(&status, servers.endpoint(), args.org.as_deref()))?;
    if ctx.json {
        json::print(&json::quota(&quota))
    } else {
        print(&render::quota(&quota))
    }
}

/// A GetQuota answer from the server at `endpoint`: an unknown
/// organisation, or a server without quotas; the rest (PERMISSION_DENIED
/// for an organisation the caller may not see, ...) as for any call.
fn quota_error(status: &Status, endpoint: &str, org: Option<&str>) -> CliError {
    match (status.code(), org) {
        (Code::NotFound, Some(org)) => CliError::NoOrg(org.to_owned()),
        (Code::Unimplemented, _) => CliError::NoQuotaSupport(endpoint.to_owned()),
        _ => CliError::from_answer(status, endpoint, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "http://127.0.0.1:50051";

    #[test]
    fn an_unknown_organisation_is_named() {
        let err = quota_error(
            &Status::not_found("no organisation chemistry"),
            ENDPOINT,
            Some("chemistry"),
        );
        assert_eq!(err.to_string(), "no organisation chemistry on this server");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_refusal_is_the_servers_message() {
        let status = Status::permission_denied("you are not in organisation physics");
        let err = quota_error(&status, ENDPOINT, Some("physics"));
        assert_eq!(err.to_string(), "you are not in organisation physics");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn an_older_server_says_so() {
        let err = quota_error(&Status::unimplemented(""), ENDPOINT, None);
        assert_eq!(
            err.to_string(),
            "the server at http://127.0.0.1:50051 does not support quotas (UNIMPLEMENTED)"
        );
    }
}
