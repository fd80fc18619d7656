//! `daas node list|drain|resume`: the cluster's nodes (administrators
//! only), as a table or JSON.

use daas_api::v1::{DrainNodeRequest, ListNodesRequest, Node, ResumeNodeRequest};
use tonic::{Code, Status};

use super::{print, servers};
use crate::cli::NodeCommand;
use crate::context::Context;
use crate::error::CliError;
use crate::{json, render};

pub async fn run(ctx: &Context, command: NodeCommand) -> Result<(), CliError> {
    match command {
        NodeCommand::List => list(ctx).await,
        NodeCommand::Drain(arg) => set_drained(ctx, arg.name, true).await,
        NodeCommand::Resume(arg) => set_drained(ctx, arg.name, false).await,
    }
}

/// Every node (ListNodes).
async fn list(ctx: &Context) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let nodes = servers
        .call(|mut client| async move { client.list_nodes(ListNodesRequest {}).await })
        .await?
        .map_err(|status| node_error(&status, servers.endpoint(), None))?
        .nodes;
    if ctx.json {
        json::print(&nodes.iter().map(json::node).collect())
    } else if nodes.is_empty() {
        print("no nodes: the Terraform module places its VMs itself")
    } else {
        print(&render::node_table(&nodes))
    }
}

/// Drains node `name` (DrainNode) or resumes it (ResumeNode), then shows
/// it and what that means. Both are idempotent: sent again to the next
/// server if one goes away meanwhile.
async fn set_drained(ctx: &Context, name: String, drained: bool) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let node: Node = if drained {
        let request = DrainNodeRequest { name: name.clone() };
        servers
            .call(|mut client| {
                let request = request.clone();
                async move { client.drain_node(request).await }
            })
            .await?
    } else {
        let request = ResumeNodeRequest { name: name.clone() };
        servers
            .call(|mut client| {
                let request = request.clone();
                async move { client.resume_node(request).await }
            })
            .await?
    }
    .map_err(|status| node_error(&status, servers.endpoint(), Some(&name)))?;
    if ctx.json {
        json::print(&json::node(&node))
    } else {
        print(&format!(
            "{}{}",
            render::node_table(std::slice::from_ref(&node)),
            render::node_drained(&node)
        ))
    }
}

/// A node call's answer from the server at `endpoint`: an unknown node, or
/// a server without nodes; the rest (PERMISSION_DENIED for a
/// non-administrator, INVALID_ARGUMENT for a malformed name, ...) as for
/// any call.
fn node_error(status: &Status, endpoint: &str, name: Option<&str>) -> CliError {
    match (status.code(), name) {
        (Code::NotFound, Some(name)) => CliError::NoNode(name.to_owned()),
        (Code::Unimplemented, _) => CliError::NoNodeSupport(endpoint.to_owned()),
        _ => CliError::from_answer(status, endpoint, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "http://127.0.0.1:50051";

    #[test]
    fn an_unknown_node_is_named() {
        let status = Status::not_found("no node pve9: `daas node list` lists the cluster's nodes");
        let err = node_error(&status, ENDPOINT, Some("pve9"));
        assert_eq!(
            err.to_string(),
            "no node pve9; list them with: daas node list"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_server_without_nodes_says_so() {
        for name in [None, Some("pve2")] {
            let err = node_error(&Status::unimplemented(""), ENDPOINT, name);
            assert_eq!(
                err.to_string(),
                "the server at http://127.0.0.1:50051 does not support cluster nodes \
                 (UNIMPLEMENTED)"
            );
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn a_refusal_is_the_servers_message() {
        let status = Status::permission_denied("only administrators may drain or resume a node");
        let err = node_error(&status, ENDPOINT, Some("pve2"));
        assert_eq!(
            err.to_string(),
            "only administrators may drain or resume a node"
        );
        let err = node_error(&Status::permission_denied(""), ENDPOINT, None);
        assert_eq!(err.to_string(), "PERMISSION_DENIED");
        let status = Status::invalid_argument("name: must be a node name");
        let err = node_error(&status, ENDPOINT, Some("no such/node"));
        assert_eq!(err.to_string(), "name: must be a node name");
    }
}
