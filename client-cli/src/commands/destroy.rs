//! `daas destroy`: destroy a session's desktop.

use std::io::IsTerminal;

use daas_api::v1::{DestroySessionRequest, SessionState};
use tonic::Code;

use super::{print, servers};
use crate::context::Context;
use crate::error::CliError;
use crate::{json, progress};

pub async fn run(ctx: &Context, id: &str) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let request = DestroySessionRequest {
        session_id: id.to_owned(),
    };
    let spinner = (!ctx.json && std::io::stdout().is_terminal())
        .then(|| progress::waiting(&format!("destroying {id}")));
    // Idempotent: sent again to the next server if one goes away meanwhile.
    let reply = servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.destroy_session(request).await }
        })
        .await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    let session = match reply? {
        Ok(session) => session,
        // Terraform could not destroy the VM; destroying again retries.
        Err(status) if status.code() == Code::Aborted => {
            return Err(CliError::DestroyFailed {
                id: id.to_owned(),
                message: status.message().to_owned(),
            });
        }
        Err(status) => return Err(CliError::from_answer(&status, servers.endpoint(), Some(id))),
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
