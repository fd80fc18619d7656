//! `daas snapshot list|delete`: the kept disks of persistent templates, as
//! text or JSON.

use daas_api::v1::{DeleteSnapshotRequest, ListSnapshotsRequest};
use tonic::{Code, Status};

use super::{print, servers};
use crate::cli::SnapshotCommand;
use crate::context::Context;
use crate::error::{CliError, one_line};
use crate::{caller, json, render};

pub async fn run(ctx: &Context, command: SnapshotCommand) -> Result<(), CliError> {
    match command {
        SnapshotCommand::List(args) => list(ctx, args.user).await,
        SnapshotCommand::Delete(arg) => delete(ctx, arg.id).await,
    }
}

/// Lists the kept disks (ListSnapshots), newest first: the caller's, one
/// user's, or for an administrator everyone's.
async fn list(ctx: &Context, user: Option<String>) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let request = ListSnapshotsRequest {
        username: user.unwrap_or_default(),
    };
    let snapshots = servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.list_snapshots(request).await }
        })
        .await?
        .map_err(|status| snapshot_error(&status, servers.endpoint()))?
        .snapshots;
    if ctx.json {
        json::print(&snapshots.iter().map(json::snapshot).collect())
    } else if snapshots.is_empty() {
        print("no kept disks (a desktop of a persistent template keeps its disk when destroyed)")
    } else {
        let caller = caller::user(&ctx.server, servers.endpoint());
        print(&render::snapshot_table(&snapshots, caller.as_deref()))
    }
}

/// Deletes kept disk `id` (DeleteSnapshot). Sent again to the next server
/// if one goes away meanwhile: the second time, a disk the first server
/// deleted is NOT_FOUND.
async fn delete(ctx: &Context, id: String) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let request = DeleteSnapshotRequest { snapshot_id: id };
    let snapshot = servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.delete_snapshot(request).await }
        })
        .await?
        .map_err(|status| snapshot_error(&status, servers.endpoint()))?;
    if ctx.json {
        json::print(&json::snapshot(&snapshot))
    } else {
        print(&render::snapshot_deleted(&snapshot))
    }
}

/// A kept-disk call's answer from the server at `endpoint`: an unknown id
/// (NOT_FOUND) or a disk a desktop is being restored from (ABORTED) in the
/// server's words, which say what to do; a server without kept disks; the
/// rest (PERMISSION_DENIED for another user's, INVALID_ARGUMENT for an id
/// that is no UUID, ...) as for any call.
fn snapshot_error(status: &Status, endpoint: &str) -> CliError {
    let message = one_line(status.message());
    match status.code() {
        Code::NotFound | Code::Aborted if !message.is_empty() => CliError::Rpc(message),
        Code::Unimplemented => CliError::NoSnapshotSupport(endpoint.to_owned()),
        _ => CliError::from_answer(status, endpoint, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "http://127.0.0.1:50051";

    #[test]
    fn an_unknown_or_restoring_disk_is_the_servers_message() {
        let status = Status::not_found(
            "no kept disk 3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11: `daas snapshot list` lists yours",
        );
        let err = snapshot_error(&status, ENDPOINT);
        assert_eq!(
            err.to_string(),
            "no kept disk 3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11: `daas snapshot list` lists yours"
        );
        assert_eq!(err.exit_code(), 2);
        let status = Status::aborted(
            "desktop 9e01 is being restored from kept disk 3f0c; delete it once that desktop \n\
             is READY or gone",
        );
        assert_eq!(
            snapshot_error(&status, ENDPOINT).to_string(),
            "desktop 9e01 is being restored from kept disk 3f0c; delete it once that desktop \
             is READY or gone"
        );
        // Without words: the code.
        assert_eq!(
            snapshot_error(&Status::not_found(""), ENDPOINT).to_string(),
            "NOT_FOUND"
        );
    }

    #[test]
    fn a_refusal_is_the_servers_message() {
        let status = Status::permission_denied("you may delete only your own kept disks");
        let err = snapshot_error(&status, ENDPOINT);
        assert_eq!(err.to_string(), "you may delete only your own kept disks");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn an_older_server_says_so() {
        let err = snapshot_error(&Status::unimplemented(""), ENDPOINT);
        assert_eq!(
            err.to_string(),
            "the server at http://127.0.0.1:50051 does not support kept disks (UNIMPLEMENTED)"
        );
    }
}
