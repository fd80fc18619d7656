//! Command-line syntax: options, subcommands and their help texts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueHint};

use crate::settings::Values;

/// Where connection settings come from, shown after the options.
const SETTINGS_HELP: &str = "\
Connection settings: each of --endpoint, --ca, --cert and --key, when not
given, comes from DAAS_ENDPOINT, DAAS_CA, DAAS_CERT and DAAS_KEY, else from
the keys endpoint, ca, cert and key of $XDG_CONFIG_HOME/daas/config.toml
(default ~/.config/daas/config.toml; relative paths there are relative to the
file). An https:// endpoint needs all three files (mutual TLS); http:// is
plaintext, which servers accept only on loopback, and uses none.

Several servers (replicas of one service): repeat --endpoint, or separate
URLs with commas (also in DAAS_ENDPOINT and the file, where endpoint may be
an array). They are tried in order, and so is every address a host name
resolves to; a call that finds one down (refused, reset, UNAVAILABLE) moves
to the next. A create or watch cut off midway follows the same session on
the next server, without printing an event twice.";

/// Which RDP client `daas connect` starts, shown after its options.
const CONNECT_HELP: &str = "\
The RDP client is xfreerdp, else xfreerdp3, on Linux (Debian/Ubuntu package
freerdp2-x11 or freerdp3-x11; it trusts each desktop's certificate on first
use), mstsc on Windows, and on macOS the app that opens .rdp files. It runs
in the background, its output discarded. No password is stored: the client
or the desktop's login screen asks for it.";

/// What the columns of `daas pool status` count, shown after its options.
const POOL_STATUS_HELP: &str = "\
DESIRED is how many ready desktops the pool wants now; READY and BUILDING
count its unclaimed desktops; CLAIMED-TODAY counts claims since midnight
(server time); FAILURES counts failed builds in the server's failure window;
OLDEST-READY is how long its oldest ready desktop has waited. After repeated
failures a pool is restrained: it builds nothing until the time (UTC) its
STATUS gives.";

/// What the columns of `daas node list` count, shown after its options.
const NODE_LIST_HELP: &str = "\
The nodes are the cluster's, as the Terraform module last reported them
(none when the module places its VMs itself). STATE is online, offline or
maintenance, plus drained when an administrator drained it (it takes no new
desktop); offline (not listed) when the last report left it out. DESKTOPS
counts live user desktops on it, POOL unclaimed pool desktops, CLONES clones
running now. MEMORY and CPUS are what all its guests are configured for, of
what it has; TEMPLATES are those a clone there can start from; SEEN is when
a report last listed it (UTC).";

/// What draining a node does, shown after `daas node drain`'s options.
const NODE_DRAIN_HELP: &str = "\
A drained node takes no new desktop: its users' desktops stay until they
end, its unclaimed pool desktops are replaced on other nodes. Draining a
drained node changes nothing; `daas node resume NODE` ends the drain.";

/// What `daas audit` lists and how its filters read, shown after its options.
const AUDIT_HELP: &str = "\
The trail records creates, claims, destroys, reaps, certificates issued
and refused calls (PERMISSION_DENIED, UNAUTHENTICATED, RESOURCE_EXHAUSTED):
who (ACTOR: the certificate's user, agent for a desktop's agent, local on a
plaintext port or for `daas-server pki issue`, server, reaper or pool for
the server's own acts), from where (PEER), what (ACTION), on which session
(SESSION, OWNER, and ORG when an entry has an organisation), and RESULT (OK
or the gRPC code). Times are UTC. --json
prints one object per entry and line, with the certificate's subject and
SHA-256 fingerprint too.";

/// What `daas quota` shows, shown after its options.
const QUOTA_HELP: &str = "\
ORG-USED and USER-USED are what the organisation's and the member's live
desktops hold: a desktop counts from its create until it is FAILED,
DESTROYED or LOST, at its size (vCPUs, memory). ORG-MAX and USER-MAX are
the limits, \"no limit\" when there is none (0 in --json). Your
organisation is the one whose groups your certificate names (name one with
--org when you are in several); in none, only the server's per-user limit
applies.";

/// What `daas schedule add` does, shown after its options.
const SCHEDULE_ADD_HELP: &str = "\
On each of DAYS the server creates the desktop ahead, so that it is READY at
HH:MM in the time zone: an ordinary session (`daas list` shows it; the idle
and lifetime limits apply from READY), within your quotas and the templates
you may use, checked now and when it runs. The answer shows when the next
desktop is due READY, in the schedule's time zone and in yours. A user may
have 10 schedules.";

/// What the columns of `daas schedule list` show, shown after its options.
const SCHEDULE_LIST_HELP: &str = "\
AT and DAYS are in TZ, the schedule's time zone; NEXT is when its next
desktop is due READY, in TZ. LAST is the session its last run made, or why
that create was refused (- before its first run). USER appears when the list
has another user's schedules, and always with an administrator's
certificate.";

/// What `daas snapshot list` shows, shown after its options.
const SNAPSHOT_LIST_HELP: &str = "\
A desktop of a persistent template keeps its disk when it is destroyed
(after it was READY): its user's next create of that template restores it,
and the kept disk is forgotten once that desktop is READY. A user keeps the
newest disks of each template (the template's keep, 1 by default) for its
max_age (30 days by default). ID is the id of the session whose disk it is;
KEPT is when it was kept (UTC); SIZE is its size on the hypervisor's
storage. RESTORING is the desktop being restored from it now, if any (a disk
being restored cannot be deleted). USER appears when the list has another
user's kept disks, and always with an administrator's certificate.";

/// Create, follow, list and destroy DaaS desktops.
#[derive(Debug, Parser)]
#[command(name = "daas", version, after_help = SETTINGS_HELP)]
pub struct Cli {
    /// Address of the DaaS server: https://HOST:PORT (mutual TLS) or
    /// http://HOST:PORT (plaintext, loopback only); several, repeated or
    /// separated by commas, are tried in order [env: DAAS_ENDPOINT]
    /// [default: http://127.0.0.1:50051]
    #[arg(long, global = true, value_name = "URL", value_hint = ValueHint::Url,
          value_delimiter = ',')]
    pub endpoint: Vec<String>,

    /// CA certificate (PEM) the server's certificate is checked with
    /// [env: DAAS_CA]
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) naming you to the server [env: DAAS_CERT]
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of the client certificate [env: DAAS_KEY]
    #[arg(long, global = true, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub key: Option<PathBuf>,

    /// Print JSON instead of text (one object per line for create, watch
    /// and audit)
    #[arg(long, global = true)]
    pub json: bool,

    /// Also print the tools' output (Terraform, SSH, Ansible) while following a session
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The connection settings given on the command line.
    pub fn settings(&self) -> Values {
        Values {
            endpoints: (!self.endpoint.is_empty()).then(|| self.endpoint.clone()),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
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
    /// Write a READY desktop's .rdp file and start an RDP client on it
    #[command(after_help = CONNECT_HELP)]
    Connect(ConnectArgs),
    /// Destroy a session's desktop
    Destroy(IdArg),
    /// List the templates you may create desktops of, with their sizes
    Templates,
    /// Show your organisation's quota, what its desktops use, and your share
    #[command(after_help = QUOTA_HELP)]
    Quota(QuotaArgs),
    /// Desktops made ready at a time of day on some days: add, list, remove
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Kept disks of persistent templates: list, delete
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Warm pools of desktops built ahead of time (needs an administrator
    /// certificate)
    #[command(subcommand)]
    Pool(PoolCommand),
    /// The cluster's nodes: list them, drain one, resume it (needs an
    /// administrator certificate)
    #[command(subcommand)]
    Node(NodeCommand),
    /// List the audit trail, newest first (needs an administrator
    /// certificate; an organisation's administrators: with --org)
    #[command(after_help = AUDIT_HELP)]
    Audit(AuditArgs),
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Have a desktop READY at a time of day on some days
    #[command(after_help = SCHEDULE_ADD_HELP)]
    Add(ScheduleAddArgs),
    /// List your schedules (an administrator: everyone's, or one user's)
    #[command(after_help = SCHEDULE_LIST_HELP)]
    List(ScheduleListArgs),
    /// Remove a schedule (desktops it already made stay)
    Remove(ScheduleIdArg),
}

#[derive(Debug, Args)]
pub struct ScheduleAddArgs {
    /// When the desktop is to be READY: HH:MM, 24-hour, in the time zone
    #[arg(long, value_name = "HH:MM")]
    pub at: String,

    /// Which days: mon-fri, sat,sun, mon,wed-fri or daily
    #[arg(long, value_name = "DAYS")]
    pub days: String,

    /// IANA time zone of --at, e.g. Europe/Paris (default: the server's)
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,

    /// Template of the desktops (default: the server's; `daas templates`
    /// lists them)
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,

    /// Size of the desktops, one of the template's (default: the
    /// template's)
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,

    /// Organisation whose quota the desktops count against (default:
    /// yours)
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,

    /// User the desktops are for (default: you; only admins may name
    /// another user)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScheduleListArgs {
    /// Only this user's schedules (default: yours, or everyone's for an
    /// admin)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScheduleIdArg {
    /// Schedule id, as printed by `daas schedule add` or `daas schedule
    /// list`
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List your kept disks, newest first (an administrator: everyone's,
    /// or one user's)
    #[command(after_help = SNAPSHOT_LIST_HELP)]
    List(SnapshotListArgs),
    /// Delete a kept disk (the next desktop of its template starts blank)
    Delete(SnapshotIdArg),
}

#[derive(Debug, Args)]
pub struct SnapshotListArgs {
    /// Only this user's kept disks (default: yours, or everyone's for an
    /// admin)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotIdArg {
    /// Kept disk id (the id of the desktop whose disk it is), as printed by
    /// `daas snapshot list`
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Show where each warm pool stands, or the one named (needs an
    /// administrator certificate)
    #[command(after_help = POOL_STATUS_HELP)]
    Status(PoolStatusArgs),
}

#[derive(Debug, Args)]
pub struct PoolStatusArgs {
    /// Only this pool, as the server's config names it (default: every pool)
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the cluster's nodes and what runs on each (needs an
    /// administrator certificate)
    #[command(after_help = NODE_LIST_HELP)]
    List,
    /// Drain a node: it takes no new desktop (needs an administrator
    /// certificate)
    #[command(after_help = NODE_DRAIN_HELP)]
    Drain(NodeArg),
    /// End a node's drain: it takes new desktops again (needs an
    /// administrator certificate)
    Resume(NodeArg),
}

#[derive(Debug, Args)]
pub struct NodeArg {
    /// The node's name, as `daas node list` shows it
    #[arg(value_name = "NODE")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries by this user or about their sessions
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Only entries about this session
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,

    /// Only entries about this organisation's sessions and members (its
    /// administrators may read these)
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,

    /// Only entries since WHEN: a duration ago (30m, 1h, 2d) or an RFC 3339
    /// time (2025-01-31T09:00:00Z, 2025-01-31T10:00:00+01:00)
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub since: Option<String>,

    /// Show at most the newest N entries
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// User the desktop is for (default: you, as your client certificate
    /// names you; only admins may name another user)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Local login to create on the desktop; its password is read from
    /// DAAS_SESSION_PASSWORD, from standard input (--password-stdin) or
    /// from a hidden prompt
    #[arg(long, value_name = "NAME")]
    pub session_user: Option<String>,

    /// Read the session user's password from the first line of standard input
    #[arg(long, requires = "session_user")]
    pub password_stdin: bool,

    /// Template to clone the desktop from (default: the server's; `daas
    /// templates` lists them)
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,

    /// Size of the desktop, one of the template's (default: the template's)
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,

    /// Organisation whose quota the desktop counts against (default: yours;
    /// needed when you are in several; `daas quota` shows yours)
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,

    /// Idempotency key (1-64 letters, digits, '.', '_', ':', '-'): a create
    /// with the same key within 24 h follows the first desktop instead of
    /// making another (default: a new random key, reused when the CLI
    /// retries on the same or the next server)
    #[arg(long, value_name = "KEY")]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Session id, as printed by `daas create` or `daas list`
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Session id, as printed by `daas create` or `daas list`
    #[arg(value_name = "ID")]
    pub id: String,

    /// Where to write the .rdp file (default: daas-VM.rdp in
    /// $XDG_RUNTIME_DIR, else in the temporary folder)
    #[arg(long, value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub rdp_file: Option<PathBuf>,

    /// Only write the .rdp file; start no RDP client
    #[arg(long)]
    pub no_launch: bool,

    /// Login to connect as (default: the session user, else the desktop's user)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sessions of this user (default: every session the server lets
    /// you see: yours, or everyone's for an admin)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Only sessions in this state (queued, provisioning, booting,
    /// configuring, ready, failed, destroying, destroyed, lost)
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,

    /// Only sessions of this organisation (its administrators see its
    /// members' sessions this way)
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
}

#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// The organisation (default: yours)
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,

    /// The member whose share to show (default: you; for an administrator
    /// giving --org: none, the organisation's quota alone)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
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
        let cli = Cli::try_parse_from([
            "daas",
            "list",
            "--json",
            "-v",
            "--endpoint",
            "https://h:1",
            "--ca",
            "ca.pem",
            "--cert",
            "me.pem",
            "--key",
            "me.key",
        ]);
        let cli = cli.map_err(|e| e.to_string());
        assert!(matches!(
            cli,
            Ok(Cli {
                json: true,
                verbose: true,
                command: Command::List(_),
                ..
            })
        ));
        assert_eq!(
            cli.map(|cli| cli.settings()),
            Ok(Values {
                endpoints: Some(vec!["https://h:1".to_owned()]),
                ca: Some(PathBuf::from("ca.pem")),
                cert: Some(PathBuf::from("me.pem")),
                key: Some(PathBuf::from("me.key")),
            })
        );
    }

    #[test]
    fn endpoints_may_be_repeated_or_separated_by_commas() {
        let endpoints = |args: &[&str]| {
            Cli::try_parse_from(args)
                .map(|cli| cli.settings().endpoints)
                .map_err(|e| e.to_string())
        };
        let three = Ok(Some(vec![
            "https://a:1".to_owned(),
            "https://b:1".to_owned(),
            "https://c:1".to_owned(),
        ]));
        assert_eq!(
            endpoints(&[
                "daas",
                "--endpoint",
                "https://a:1,https://b:1",
                "--endpoint",
                "https://c:1",
                "list",
            ]),
            three
        );
        assert_eq!(
            endpoints(&[
                "daas",
                "list",
                "--endpoint",
                "https://a:1",
                "--endpoint",
                "https://b:1,https://c:1",
            ]),
            three
        );
        let cli = Cli::try_parse_from(["daas", "list"]).map_err(|e| e.to_string());
        assert_eq!(cli.map(|cli| cli.settings().endpoints), Ok(None));
    }

    #[test]
    fn create_needs_no_user() {
        let cli = Cli::try_parse_from(["daas", "create"]).map_err(|e| e.to_string());
        assert!(matches!(
            cli,
            Ok(Cli {
                command: Command::Create(CreateArgs { user: None, .. }),
                ..
            })
        ));
    }

    #[test]
    fn connect_takes_an_id_and_its_options() {
        let cli = Cli::try_parse_from([
            "daas",
            "connect",
            "abc",
            "--no-launch",
            "--rdp-file",
            "d.rdp",
            "--user",
            "bob",
        ])
        .map_err(|e| e.to_string());
        let Ok(Cli {
            command: Command::Connect(args),
            ..
        }) = cli
        else {
            panic!("not a connect command: {cli:?}");
        };
        assert_eq!(args.id, "abc");
        assert!(args.no_launch);
        assert_eq!(args.rdp_file, Some(PathBuf::from("d.rdp")));
        assert_eq!(args.user.as_deref(), Some("bob"));
        assert!(Cli::try_parse_from(["daas", "connect"]).is_err());
    }

    #[test]
    fn pool_status_takes_an_optional_name() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Pool(PoolCommand::Status(args)),
                ..
            }) => Ok(args.name),
            Ok(other) => Err(format!("not a pool status command: {other:?}")),
            Err(err) => Err(err.to_string()),
        };
        assert_eq!(parse(&["daas", "pool", "status"]), Ok(None));
        assert_eq!(
            parse(&["daas", "pool", "status", "lab", "--json"]),
            Ok(Some("lab".to_owned()))
        );
        assert!(parse(&["daas", "pool"]).is_err());
        assert!(parse(&["daas", "pool", "status", "a", "b"]).is_err());
    }

    #[test]
    fn node_list_takes_no_name_and_drain_and_resume_take_one() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Node(command),
                json,
                ..
            }) => Ok((command, json)),
            Ok(other) => Err(format!("not a node command: {other:?}")),
            Err(err) => Err(err.to_string()),
        };
        assert!(matches!(
            parse(&["daas", "node", "list"]),
            Ok((NodeCommand::List, false))
        ));
        assert!(matches!(
            parse(&["daas", "node", "list", "--json"]),
            Ok((NodeCommand::List, true))
        ));
        assert!(parse(&["daas", "node", "list", "pve1"]).is_err());
        let name = |args: &[&str]| match parse(args) {
            Ok((NodeCommand::Drain(arg), _)) => Ok(("drain", arg.name)),
            Ok((NodeCommand::Resume(arg), _)) => Ok(("resume", arg.name)),
            Ok((other, _)) => Err(format!("neither drain nor resume: {other:?}")),
            Err(err) => Err(err),
        };
        assert_eq!(
            name(&["daas", "node", "drain", "pve2"]),
            Ok(("drain", "pve2".to_owned()))
        );
        assert_eq!(
            name(&["daas", "node", "resume", "pve2", "--json"]),
            Ok(("resume", "pve2".to_owned()))
        );
        for args in [
            &["daas", "node"][..],
            &["daas", "node", "drain"],
            &["daas", "node", "resume"],
            &["daas", "node", "drain", "a", "b"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn audit_takes_filters_and_a_limit_of_at_least_one() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Audit(args),
                ..
            }) => Ok(args),
            Ok(other) => Err(format!("not an audit command: {other:?}")),
            Err(err) => Err(err.to_string()),
        };
        let defaults = parse(&["daas", "audit"]);
        assert!(
            matches!(
                defaults,
                Ok(AuditArgs {
                    user: None,
                    session: None,
                    org: None,
                    since: None,
                    limit: 100
                })
            ),
            "{defaults:?}"
        );
        let args = parse(&[
            "daas",
            "audit",
            "--user",
            "bob",
            "--session",
            "abc",
            "--since",
            "1h",
            "--limit",
            "5",
            "--org",
            "physics",
        ]);
        let args = args.map(|a| (a.user, a.session, a.since, a.limit, a.org));
        assert_eq!(
            args,
            Ok((
                Some("bob".to_owned()),
                Some("abc".to_owned()),
                Some("1h".to_owned()),
                5,
                Some("physics".to_owned())
            ))
        );
        assert!(parse(&["daas", "audit", "--limit", "0"]).is_err());
        assert!(parse(&["daas", "audit", "extra"]).is_err());
    }

    #[test]
    fn quota_takes_an_optional_org_and_user() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Quota(args),
                json,
                ..
            }) => Ok((args.org, args.user, json)),
            Ok(other) => Err(format!("not a quota command: {other:?}")),
            Err(err) => Err(err.to_string()),
        };
        assert_eq!(parse(&["daas", "quota"]), Ok((None, None, false)));
        assert_eq!(
            parse(&[
                "daas", "quota", "--org", "physics", "--user", "dave", "--json"
            ]),
            Ok((Some("physics".to_owned()), Some("dave".to_owned()), true))
        );
        assert!(parse(&["daas", "quota", "physics"]).is_err());
    }

    #[test]
    fn schedule_add_needs_a_time_and_days() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Schedule(ScheduleCommand::Add(args)),
                json,
                ..
            }) => Ok((args, json)),
            Ok(other) => Err(format!("not a schedule add command: {other:?}")),
            Err(err) => Err(err.to_string()),
        };
        let minimal = parse(&[
            "daas", "schedule", "add", "--at", "08:00", "--days", "mon-fri",
        ]);
        assert!(
            matches!(
                &minimal,
                Ok((
                    ScheduleAddArgs {
                        timezone: None,
                        template: None,
                        size: None,
                        org: None,
                        user: None,
                        ..
                    },
                    false
                ))
            ),
            "{minimal:?}"
        );
        let full = parse(&[
            "daas",
            "schedule",
            "add",
            "--at",
            "7:30",
            "--days",
            "sat,sun",
            "--timezone",
            "Europe/Paris",
            "--template",
            "dev",
            "--size",
            "large",
            "--org",
            "physics",
            "--user",
            "bob",
            "--json",
        ])
        .map(|(a, json)| {
            (
                [
                    Some(a.at),
                    Some(a.days),
                    a.timezone,
                    a.template,
                    a.size,
                    a.org,
                    a.user,
                ],
                json,
            )
        });
        let given = [
            "7:30",
            "sat,sun",
            "Europe/Paris",
            "dev",
            "large",
            "physics",
            "bob",
        ];
        assert_eq!(full, Ok((given.map(|v| Some(v.to_owned())), true)));
        for args in [
            &["daas", "schedule", "add"][..],
            &["daas", "schedule", "add", "--at", "08:00"],
            &["daas", "schedule", "add", "--days", "daily"],
            &[
                "daas", "schedule", "add", "--at", "08:00", "--days", "daily", "extra",
            ],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn schedule_list_takes_an_optional_user_and_remove_an_id() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Schedule(command),
                json,
                ..
            }) => Ok((command, json)),
            Ok(other) => Err(format!("not a schedule command: {other:?}")),
            Err(err) => Err(err.to_string()),
        };
        assert!(matches!(
            parse(&["daas", "schedule", "list"]),
            Ok((
                ScheduleCommand::List(ScheduleListArgs { user: None }),
                false
            ))
        ));
        assert!(matches!(
            parse(&["daas", "schedule", "list", "--user", "bob", "--json"]),
            Ok((ScheduleCommand::List(ScheduleListArgs { user: Some(u) }), true)) if u == "bob"
        ));
        assert!(matches!(
            parse(&["daas", "schedule", "remove", "6f1c"]),
            Ok((ScheduleCommand::Remove(ScheduleIdArg { id }), false)) if id == "6f1c"
        ));
        for args in [
            &["daas", "schedule"][..],
            &["daas", "schedule", "list", "bob"],
            &["daas", "schedule", "remove"],
            &["daas", "schedule", "remove", "a", "b"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn snapshot_list_takes_an_optional_user_and_delete_an_id() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Snapshot(command),
                json,
                ..
            }) => Ok((command, json)),
            Ok(other) => Err(format!("not a snapshot command: {other:?}")),
            Err(err) => Err(err.to_string()),
        };
        assert!(matches!(
            parse(&["daas", "snapshot", "list"]),
            Ok((
                SnapshotCommand::List(SnapshotListArgs { user: None }),
                false
            ))
        ));
        assert!(matches!(
            parse(&["daas", "snapshot", "list", "--user", "bob", "--json"]),
            Ok((SnapshotCommand::List(SnapshotListArgs { user: Some(u) }), true)) if u == "bob"
        ));
        assert!(matches!(
            parse(&["daas", "--json", "snapshot", "delete", "3f0c"]),
            Ok((SnapshotCommand::Delete(SnapshotIdArg { id }), true)) if id == "3f0c"
        ));
        for args in [
            &["daas", "snapshot"][..],
            &["daas", "snapshot", "list", "bob"],
            &["daas", "snapshot", "delete"],
            &["daas", "snapshot", "delete", "a", "b"],
            &["daas", "snapshot", "remove", "a"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn snapshot_help_says_what_a_kept_disk_is() {
        let mut command = Cli::command();
        let snapshot = command
            .find_subcommand_mut("snapshot")
            .expect("a snapshot command");
        assert_eq!(
            snapshot.get_about().map(ToString::to_string).as_deref(),
            Some("Kept disks of persistent templates: list, delete")
        );
        let list = snapshot
            .find_subcommand_mut("list")
            .expect("a list command")
            .render_long_help()
            .to_string();
        for column in ["ID", "USER", "KEPT", "SIZE", "RESTORING"] {
            assert!(list.contains(&format!("{column} ")), "{column}: {list}");
        }
    }

    #[test]
    fn create_and_list_take_an_org() {
        let parsed = Cli::try_parse_from(["daas", "create", "--org", "physics"]);
        let Ok(Cli {
            command: Command::Create(args),
            ..
        }) = parsed.map_err(|e| e.to_string())
        else {
            panic!("not a create command");
        };
        assert_eq!(args.org.as_deref(), Some("physics"));
        let parsed = Cli::try_parse_from(["daas", "list", "--org", "physics"]);
        let Ok(Cli {
            command: Command::List(args),
            ..
        }) = parsed.map_err(|e| e.to_string())
        else {
            panic!("not a list command");
        };
        assert_eq!(args.org.as_deref(), Some("physics"));
    }

    #[test]
    fn password_stdin_needs_a_session_user() {
        let parsed = Cli::try_parse_from(["daas", "create", "--user", "a", "--password-stdin"]);
        assert!(parsed.is_err());
    }
}
