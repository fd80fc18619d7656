//! `daas destroy`: destroy a session's desktop.

use std::io::IsTerminal;

use daas_api::v1::{DestroySessionRequest, SessionState};
use tonic::Code;

use super::print;
use crate::channel::connect;
use crate::context::Context;
use crate::error::CliError;
use crate::{json, progress};

pub async fn run(ctx: &Context, id: &str) -> Result<(), CliError> {
    let mut client = connect(&ctx.server).await?;
    let request = DestroySessionRequest {
        session_id: id.to_owned(),
    };
    let spinner = (!ctx.json && std::io::stdout().is_terminal())
        .then(|| progress::waiting(&format!("destroying {id}")));
    let reply = client.destroy_session(request).await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let session = match reply {
        Ok(reply) => reply.into_inner(),
        // Terraform could not destroy the VM; destroying again retries.
        Err(status) if status.code() == Code::Aborted => {
            return Err(CliError::DestroyFailed {
                id: id.to_owned(),
                message: status.message().to_owned(),
            });
        }
        Err(status) => return Err(CliError::from_status(&status, &ctx.server, Some(id))),
    };
    if ctx.json {
        json::print(&json::session(&session))
    } else if session.state() == SessionState::Destroyed {
        print(&format!("destroyed {}", session.id))
    } else {
        print(&format!(
            "session {} is {}",
            session.id,
            session.state().label()
        ))
    }
}
