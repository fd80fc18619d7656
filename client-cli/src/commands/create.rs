//! `daas create`: create a desktop and follow its provisioning.

use std::time::Duration;

use daas_api::v1::{CreateSessionRequest, SessionState};
use tonic::Code;

use super::conclude;
use crate::channel::connect;
use crate::cli::CreateArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::follow::follow;
use crate::password;

/// Times a create that found the server unavailable is sent again.
const RETRIES: u64 = 2;

pub async fn run(ctx: &Context, args: CreateArgs) -> Result<(), CliError> {
    let session_password = password::resolve(args.session_user.as_deref(), args.password_stdin)?;
    let request = CreateSessionRequest {
        // Empty: the caller, as the client certificate names them.
        username: args.user.unwrap_or_default(),
        session_user: args.session_user.unwrap_or_default(),
        session_password: session_password.unwrap_or_default(),
        template: args.template.unwrap_or_default(),
        request_id: args
            .request_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    };
    let mut client = connect(&ctx.server).await?;
    // A create lost on the way (the server restarting, say) is sent again
    // with the same request id: the server never makes two desktops of it.
    let mut attempt = 0;
    let stream = loop {
        match client.create_session(request.clone()).await {
            Ok(response) => break response.into_inner(),
            Err(status) if status.code() == Code::Unavailable && attempt < RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(attempt)).await;
            }
            Err(status) => return Err(CliError::from_status(&status, &ctx.server, None)),
        }
    };
    let session = follow(ctx, stream, None).await?;
    if session.state() == SessionState::Destroyed {
        return Err(CliError::DestroyedBeforeReady(session.id));
    }
    conclude(ctx, &session)
}
