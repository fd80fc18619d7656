//! Command-line syntax: options, subcommands and their help texts.

use clap::{Args, Parser, Subcommand};

/// Create, follow, list and destroy DaaS desktops.
#[derive(Debug, Parser)]
#[command(name = "daas", version)]
pub struct Cli {
    /// Address of the DaaS server (plaintext http:// only for now)
    #[arg(
        long,
        global = true,
        env = "DAAS_ENDPOINT",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub endpoint: String,

    /// Print JSON instead of text (one object per line for create and watch)
    #[arg(long, global = true)]
    pub json: bool,

    /// Also print the tools' output (Terraform, SSH, Ansible) while following a session
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a desktop and follow its provisioning until it is ready or fails
    Create(CreateArgs),
    /// Follow a session's provisioning (replays what happened so far)
    Watch(IdArg),
    /// List sessions, newest first
    List(ListArgs),
    /// Show every detail of one session
    Show(IdArg),
    /// Destroy a session's desktop
    Destroy(IdArg),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// User the desktop is for
    #[arg(long, env = "USER", value_name = "NAME")]
    pub user: Option<String>,

    /// Local login to create on the desktop; its password is read from
    /// DAAS_SESSION_PASSWORD, from standard input (--password-stdin) or
    /// from a hidden prompt
    #[arg(long, value_name = "NAME")]
    pub session_user: Option<String>,

    /// Read the session user's password from the first line of standard input
    #[arg(long, requires = "session_user")]
    pub password_stdin: bool,

    /// Template to clone the desktop from (default: the server's)
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Session id, as printed by `daas create` or `daas list`
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sessions of this user
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Only sessions in this state (queued, provisioning, booting,
    /// configuring, ready, failed, destroying, destroyed)
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_are_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["daas", "list", "--json", "-v", "--endpoint", "http://h:1"]);
        let cli = cli.map_err(|e| e.to_string());
        assert!(matches!(
            cli,
            Ok(Cli { json: true, verbose: true, ref endpoint, command: Command::List(_) }) if endpoint == "http://h:1"
        ));
    }

    #[test]
    fn password_stdin_needs_a_session_user() {
        let parsed = Cli::try_parse_from(["daas", "create", "--user", "a", "--password-stdin"]);
        assert!(parsed.is_err());
    }
}
