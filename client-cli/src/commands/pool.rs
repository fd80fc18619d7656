//! `daas pool status`: the warm pools (administrators only), as a table or
//! JSON.

use daas_api::v1::{GetPoolRequest, ListPoolsRequest};
use tonic::{Code, Status};

use super::{print, servers};
use crate::cli::{PoolCommand, PoolStatusArgs};
use crate::context::Context;
use crate::error::CliError;
use crate::{json, render};

pub async fn run(ctx: &Context, command: PoolCommand) -> Result<(), CliError> {
    match command {
        PoolCommand::Status(args) => status(ctx, args).await,
    }
}

/// Every pool (ListPools), or the one named (GetPool).
async fn status(ctx: &Context, args: PoolStatusArgs) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    match args.name {
        None => {
            let pools = servers
                .call(|mut client| async move { client.list_pools(ListPoolsRequest {}).await })
                .await?
                .map_err(|status| pool_error(&status, servers.endpoint(), None))?
                .pools;
            if ctx.json {
                json::print(&pools.iter().map(json::pool).collect())
            } else if pools.is_empty() {
                print("no warm pools")
            } else {
                print(&render::pool_table(&pools))
            }
        }
        Some(name) => {
            let request = GetPoolRequest { name: name.clone() };
            let pool = servers
                .call(|mut client| {
                    let request = request.clone();
                    async move { client.get_pool(request).await }
                })
                .await?
                .map_err(|status| pool_error(&status, servers.endpoint(), Some(&name)))?;
            if ctx.json {
                json::print(&json::pool(&pool))
            } else {
                print(&render::pool_table(std::slice::from_ref(&pool)))
            }
        }
    }
}

/// A pool call's answer from the server at `endpoint`: an unknown pool, or
/// a server without pools; the rest (PERMISSION_DENIED for a
/// non-administrator, ...) as for any call.
fn pool_error(status: &Status, endpoint: &str, name: Option<&str>) -> CliError {
    match (status.code(), name) {
        (Code::NotFound, Some(name)) => CliError::NoPool(name.to_owned()),
        (Code::Unimplemented, _) => CliError::NoPoolSupport(endpoint.to_owned()),
        _ => CliError::from_answer(status, endpoint, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "http://127.0.0.1:50051";

    #[test]
    fn an_unknown_pool_is_named() {
        let err = pool_error(&Status::not_found("no pool lab"), ENDPOINT, Some("lab"));
        assert_eq!(
            err.to_string(),
            "no warm pool lab; list them with: daas pool status"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_server_without_pools_says_so() {
        let err = pool_error(&Status::unimplemented(""), ENDPOINT, None);
        assert_eq!(
            err.to_string(),
            "the server at http://127.0.0.1:50051 does not support warm pools (UNIMPLEMENTED)"
        );
    }

    #[test]
    fn a_refusal_is_the_servers_message() {
        let status = Status::permission_denied("only administrators may see the warm pools");
        let err = pool_error(&status, ENDPOINT, Some("lab"));
        assert_eq!(
            err.to_string(),
            "only administrators may see the warm pools"
        );
        let err = pool_error(&Status::permission_denied(""), ENDPOINT, None);
        assert_eq!(err.to_string(), "PERMISSION_DENIED");
    }
}
