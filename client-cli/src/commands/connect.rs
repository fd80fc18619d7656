//! `daas connect`: write a READY desktop's `.rdp` file and start an RDP
//! client on it.

use std::path::PathBuf;

use daas_api::v1::{GetSessionRequest, SessionState};
use serde_json::json;

use super::{print, servers};
use crate::cli::ConnectArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::json;
use crate::rdp::{self, Platform, Target};

pub async fn run(ctx: &Context, args: ConnectArgs) -> Result<(), CliError> {
    if let Some(user) = &args.user
        && (user.is_empty() || user.chars().any(char::is_control))
    {
        return Err(CliError::Usage(
            "--user must be a non-empty name without control characters".to_owned(),
        ));
    }
    let mut servers = servers(ctx)?;
    let request = GetSessionRequest {
        session_id: args.id.clone(),
    };
    let session = servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.get_session(request).await }
        })
        .await?
        .map_err(|status| CliError::from_answer(&status, servers.endpoint(), Some(&args.id)))?;
    if session.state() != SessionState::Ready {
        return Err(CliError::not_ready(args.id, session.state()));
    }
    let target = Target::of(&session, args.user.as_deref())
        .ok_or_else(|| CliError::NoRdpAddress(args.id.clone()))?;
    // The address goes into the file and the client's command line.
    daas_api::address::check_host(&target.host).map_err(|why| CliError::BadRdpAddress {
        id: args.id.clone(),
        why,
    })?;
    let path = match args.rdp_file {
        Some(path) => std::path::absolute(&path).unwrap_or(path),
        None => {
            let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
            let name = if session.vm_name.is_empty() {
                &session.id
            } else {
                &session.vm_name
            };
            rdp::default_path(runtime_dir.as_deref(), &std::env::temp_dir(), name)
        }
    };
    rdp::write_file(&path, &rdp::file_text(&target))?;
    if ctx.json {
        json::print(&json!({
            "rdp_file": path.display().to_string(),
            "host": target.host,
            "port": target.port,
            "username": target.username,
        }))?;
    } else {
        print(&path.display().to_string())?;
    }
    if args.no_launch {
        return Ok(());
    }
    rdp::start(Platform::current(), &target, &path)
}
