//! One module per subcommand.

mod audit;
mod connect;
mod create;
mod destroy;
mod list;
mod node;
mod pool;
mod quota;
mod schedule;
mod show;
mod snapshot;
mod templates;
mod watch;

use std::io::Write;

use daas_api::v1::{Session, SessionState};

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::error::CliError;
use crate::render;
use crate::replicas::Replicas;
use crate::settings;

/// Runs the command given on the command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Context {
        server: settings::load(cli.settings())?,
        json: cli.json,
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Create(args) => create::run(&ctx, args).await,
        Command::Watch(args) => watch::run(&ctx, &args.id).await,
        Command::List(args) => list::run(&ctx, args).await,
        Command::Show(args) => show::run(&ctx, &args.id).await,
        Command::Connect(args) => connect::run(&ctx, args).await,
        Command::Destroy(args) => destroy::run(&ctx, &args.id).await,
        Command::Templates => templates::run(&ctx).await,
        Command::Quota(args) => quota::run(&ctx, args).await,
        Command::Schedule(command) => schedule::run(&ctx, command).await,
        Command::Snapshot(command) => snapshot::run(&ctx, command).await,
        Command::Pool(command) => pool::run(&ctx, command).await,
        Command::Node(command) => node::run(&ctx, command).await,
        Command::Audit(args) => audit::run(&ctx, args).await,
    }
}

/// The servers a command's calls go to, each tried once when the others
/// are down.
fn servers(ctx: &Context) -> Result<Replicas<'_>, CliError> {
    Replicas::new(&ctx.server, &[])
}

/// Prints text for humans on stdout, adding a final line break if missing.
fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// What create and watch say about a READY or FAILED session.
fn conclude(ctx: &Context, session: &Session) -> Result<(), CliError> {
    match session.state() {
        SessionState::Failed => {
            let (stage, reason) = render::failure(session);
            Err(CliError::SessionFailed { stage, reason })
        }
        SessionState::Ready if !ctx.json => print(&render::ready(session)),
        _ => Ok(()),
    }
}
