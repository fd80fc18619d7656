//! `daas create`: create a desktop and follow its provisioning.

use daas_api::v1::{CreateSessionRequest, SessionState};

use super::{Context, conclude};
use crate::cli::CreateArgs;
use crate::connect::connect;
use crate::error::CliError;
use crate::follow::follow;
use crate::password;

pub async fn run(ctx: &Context, args: CreateArgs) -> Result<(), CliError> {
    let session_password = password::resolve(args.session_user.as_deref(), args.password_stdin)?;
    let request = CreateSessionRequest {
        // Empty: the caller, as the client certificate names them.
        username: args.user.unwrap_or_default(),
        session_user: args.session_user.unwrap_or_default(),
        session_password: session_password.unwrap_or_default(),
        template: args.template.unwrap_or_default(),
    };
    let mut client = connect(&ctx.server).await?;
    let stream = client
        .create_session(request)
        .await
        .map_err(|status| CliError::from_status(&status, &ctx.server, None))?
        .into_inner();
    let session = follow(ctx, stream, None).await?;
    if session.state() == SessionState::Destroyed {
        return Err(CliError::DestroyedBeforeReady(session.id));
    }
    conclude(ctx, &session)
}
