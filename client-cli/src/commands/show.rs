//! `daas show`: one session's details.

use std::time::SystemTime;

use daas_api::v1::GetSessionRequest;

use super::{print, servers};
use crate::context::Context;
use crate::error::CliError;
use crate::{json, render};

pub async fn run(ctx: &Context, id: &str) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let request = GetSessionRequest {
        session_id: id.to_owned(),
    };
    let session = servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.get_session(request).await }
        })
        .await?
        .map_err(|status| CliError::from_answer(&status, servers.endpoint(), Some(id)))?;
    if ctx.json {
        json::print(&json::session(&session))
    } else {
        print(&render::session_details(&session, SystemTime::now()))
    }
}
