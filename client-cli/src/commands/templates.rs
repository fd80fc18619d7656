//! `daas templates`: the templates the caller may create desktops of, with
//! their sizes, as a table or JSON.

use daas_api::v1::ListTemplatesRequest;

use super::{print, servers};
use crate::context::Context;
use crate::error::CliError;
use crate::{json, render};

pub async fn run(ctx: &Context) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let answer = servers
        .call(|mut client| async move { client.list_templates(ListTemplatesRequest {}).await })
        .await?
        .map_err(|status| CliError::from_answer(&status, servers.endpoint(), None))?;
    if ctx.json {
        json::print(&json::templates(&answer))
    } else if answer.templates.is_empty() {
        print("no template is for you: ask your administrator")
    } else {
        print(&render::template_table(&answer))
    }
}
