//! `daas show`: one session's details.

use std::time::SystemTime;

use daas_api::v1::GetSessionRequest;

use super::print;
use crate::channel::connect;
use crate::context::Context;
use crate::error::CliError;
use crate::{json, render};

pub async fn run(ctx: &Context, id: &str) -> Result<(), CliError> {
    let mut client = connect(&ctx.server).await?;
    let request = GetSessionRequest {
        session_id: id.to_owned(),
    };
    let session = client
        .get_session(request)
        .await
        .map_err(|status| CliError::from_status(&status, &ctx.server, Some(id)))?
        .into_inner();
    if ctx.json {
        json::print(&json::session(&session))
    } else {
        print(&render::session_details(&session, SystemTime::now()))
    }
}
