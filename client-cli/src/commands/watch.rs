//! `daas watch`: follow a session, replaying its history first.

use daas_api::v1::{SessionState, WatchSessionRequest};

use super::{conclude, print, servers};
use crate::context::Context;
use crate::error::CliError;
use crate::follow::follow;

pub async fn run(ctx: &Context, id: &str) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    // On the next server after a lost one, only the events not printed yet.
    let open = |mut client: crate::channel::Client, after_sequence| {
        let request = WatchSessionRequest {
            session_id: id.to_owned(),
            after_sequence,
        };
        async move { client.watch_session(request).await }
    };
    let session = follow(ctx, &mut servers, open, Some(id)).await?;
    if session.state() == SessionState::Destroyed && !ctx.json {
        return print(&format!("session {} is destroyed", session.id));
    }
    conclude(ctx, &session)
}
