//! `daas watch`: follow a session, replaying its history first.

use daas_api::v1::{SessionState, WatchSessionRequest};

use super::{conclude, print};
use crate::channel::connect;
use crate::context::Context;
use crate::error::CliError;
use crate::follow::follow;

pub async fn run(ctx: &Context, id: &str) -> Result<(), CliError> {
    let mut client = connect(&ctx.server).await?;
    let request = WatchSessionRequest {
        session_id: id.to_owned(),
        after_sequence: 0,
    };
    let stream = client
        .watch_session(request)
        .await
        .map_err(|status| CliError::from_status(&status, &ctx.server, Some(id)))?
        .into_inner();
    let session = follow(ctx, stream, Some(id)).await?;
    if session.state() == SessionState::Destroyed && !ctx.json {
        return print(&format!("session {} is destroyed", session.id));
    }
    conclude(ctx, &session)
}
