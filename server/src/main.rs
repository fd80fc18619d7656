//! `daas-server` binary: reads the configuration and serves, or manages
//! the PKI (`daas-server pki ...`).

use std::{net::IpAddr, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use daas_server::{
    app::BoundServer,
    audit::{Act, Actor, Audit},
    config::{Config, LogFormat, REFERENCE},
    pki,
    provision::tool::installed::{self, Depth},
    store::Store,
};

/// The DaaS orchestrator: creates Linux desktops on demand (Terraform +
/// Ansible) and serves the daas.v1 gRPC API.
///
/// Without a command it runs the server; `daas-server pki` manages the
/// certificates for mutual TLS.
#[derive(Parser)]
#[command(version, after_long_help = REFERENCE)]
struct Args {
    /// Configuration file (TOML). Without it: built-in defaults and DAAS_*
    /// environment variables. See --help for every key. With `pki issue`
    /// and `pki revoke`: the server whose audit trail records it.
    #[arg(short, long, env = "DAAS_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Check the configuration and the tools it runs (terraform,
    /// ansible-playbook, ssh: each found and run for its version), print
    /// them, and exit. The server refuses to start without the tools too.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the certificate authority for mutual TLS.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Manage the key file that signs the portal's cookies.
    #[command(subcommand, name = "cookie-key")]
    CookieKey(CookieKeyCommand),
}

#[derive(Subcommand)]
enum CookieKeyCommand {
    /// Put a new key first in the file (made if missing), keeping the
    /// previous one: cookies it signed stay valid, older keys go. Running
    /// servers read the file again within a second. Rotate again after
    /// web.session_max to end the previous key.
    Rotate {
        /// The key file: web.cookie_keys, by default DATA_DIR/web-cookie-keys.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create a root CA, the agents' CA under it (both valid 10 years) and
    /// the server's certificate in DIR.
    ///
    /// Writes ca.pem, ca-key.pem (or FOLDER/ca-key.pem with --offline-root),
    /// agents-ca.pem, agents-ca-key.pem, server.pem and server-key.pem (keys
    /// 0600); refuses if any of them exists. The server keeps only the
    /// agents' CA key online: it signs agent certificates, and the server
    /// refuses any user certificate it signed.
    Init {
        /// Directory of the PKI (created 0700 if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// DNS name clients use to reach the server (repeatable). Without
        /// --dns and --ip: localhost, 127.0.0.1 and ::1.
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        /// IP address clients use to reach the server (repeatable).
        #[arg(long, value_name = "ADDR")]
        ip: Vec<IpAddr>,
        /// Validity of the server certificate, in days.
        #[arg(long, value_name = "N", default_value_t = 825,
              value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        /// Write the root CA's key to FOLDER (say, removable media kept
        /// away from the server) instead of DIR: the server never needs it,
        /// `pki issue --ca-key` does.
        #[arg(long, value_name = "FOLDER")]
        offline_root: Option<PathBuf>,
    },
    /// Issue a user's client certificate with the CA in DIR.
    ///
    /// Writes users/NAME.pem and users/NAME-key.pem (0600); refuses if
    /// either exists.
    Issue {
        /// Directory of the PKI (made by `pki init`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The user's Active Directory account name (sAMAccountName).
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Give the certificate the admin role.
        #[arg(long)]
        admin: bool,
        /// A group the user is in, for the templates that are by group
        /// (`[templates.NAME] groups`); repeatable. Letters, digits, '.',
        /// '_' and '-'.
        #[arg(long, value_name = "GROUP")]
        group: Vec<String>,
        /// Validity of the certificate, in days.
        #[arg(long, value_name = "N", default_value_t = 365,
              value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
        /// The root CA's key, when it is not DIR/ca-key.pem (`pki init
        /// --offline-root`).
        #[arg(long, value_name = "FILE")]
        ca_key: Option<PathBuf>,
    },
    /// Revoke a client certificate (a user's or an agent's).
    ///
    /// Appends it to DIR/revoked.txt, which the server reads again when it
    /// changes: the certificate is refused from the next call on, without
    /// a restart (tls.revoked names another file).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["cert", "fingerprint", "serial"])))]
    Revoke {
        /// Directory of the PKI (made by `pki init`).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The certificate file (PEM).
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        /// Its SHA-256 fingerprint (hex; the audit trail shows it).
        #[arg(long, value_name = "HEX")]
        fingerprint: Option<String>,
        /// Its serial number (hex, as `openssl x509 -serial` prints it).
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
        /// Why, kept beside it in the list and the audit trail.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("daas-server: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Pki(command)) => return run_pki(command, args.config.as_deref()).await,
        Some(Command::CookieKey(CookieKeyCommand::Rotate { file })) => {
            let keys = daas_server::web::cookie_keys::rotate(&file)?;
            println!(
                "{}: a new key signs from now on; {} key(s) verify",
                file.display(),
                keys
            );
            return Ok(());
        }
        None => {}
    }
    let config = Config::load(args.config.as_deref())?;
    if args.check {
        println!("{config:#?}");
        let tools = installed::check(&config, Depth::Runs).await?;
        println!("tools:");
        for found in &tools.found {
            println!("  {found}");
        }
        for warning in &tools.warnings {
            eprintln!("warning: {warning}");
        }
        return Ok(());
    }
    // Every create would fail without them: refused as --check does.
    let tools = installed::check(&config, Depth::Found).await?;
    init_logging(config.log_format);
    for warning in &tools.warnings {
        tracing::warn!(%warning, "a tool is missing");
    }
    let server = BoundServer::bind(config).await?;
    // Scripts and tests read this line to find the port.
    println!("daas-server listening on {}", server.local_addr());
    if let Some(addr) = server.http_addr() {
        println!("daas-server http on {addr}");
    }
    if let Some(addr) = server.web_addr() {
        let scheme = if server.web_is_tls() { "https" } else { "http" };
        println!("daas-server web portal on {scheme}://{addr}/");
    }
    if let Some(addr) = server.metrics_addr() {
        println!("daas-server metrics on {addr}");
    }
    server.serve(shutdown_signal()).await.context("serving")?;
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DAAS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Each line: the event's fields at the top, and the spans it is in
        // (request: request_id, method, user; session: session, user).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// Records what a `pki` command did (`action`, `detail`) in the audit
/// trail of the server `config` names; without a config, says it is not
/// recorded.
async fn audit_pki(
    config: Option<&std::path::Path>,
    action: &str,
    detail: &str,
) -> anyhow::Result<()> {
    let Some(config) = config else {
        eprintln!(
            "note: not in an audit trail; give --config (or DAAS_CONFIG) to record it in the server's"
        );
        return Ok(());
    };
    let config = Config::load(Some(config))?;
    let store = Store::connect(&config)
        .await
        .with_context(|| format!("opening the store {}", Store::describe(&config)))?;
    let audit = Audit::open(store, config.audit.file.as_deref())?;
    let by = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let act = Act::new(action).detail(format!("{detail}, by daas-server pki run as {by}"));
    audit.record(&Actor::internal("local"), act).await;
    println!(
        "recorded in the audit trail of {}",
        Store::describe(&config)
    );
    Ok(())
}

/// The subject and fingerprint of the PEM certificate at `cert`.
fn describe_cert(cert: &std::path::Path) -> anyhow::Result<(String, String)> {
    let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    Ok(pki::Issued {
        cert_pem: String::from_utf8_lossy(&pem).into_owned(),
        key_pem: String::new(),
    }
    .subject_and_fingerprint())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run_pki(command: PkiCommand, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init {
            dir,
            mut dns,
            mut ip,
            days,
            offline_root,
        } => {
            if dns.is_empty() && ip.is_empty() {
                (dns, ip) = pki::localhost_names();
            }
            let (paths, root_key) = pki::init(&dir, &dns, &ip, days, offline_root.as_deref())?;
            let names: Vec<String> = dns
                .iter()
                .cloned()
                .chain(ip.iter().map(|i| i.to_string()))
                .collect();
            println!(
                "CA certificate:      {} (give it to clients)",
                paths.ca().display()
            );
            println!(
                "CA key:              {} (keep it secret{}; signs users', admins' and the server's certificates)",
                root_key.display(),
                if offline_root.is_some() {
                    ", and away from the server"
                } else {
                    ""
                }
            );
            println!(
                "agents' CA:          {} and its key {} (the server's, for agent certificates only)",
                paths.agents_ca().display(),
                paths.agents_ca_key().display()
            );
            println!(
                "server certificate:  {} ({}; {days} days)",
                paths.server_cert().display(),
                names.join(", ")
            );
            println!("server key:          {}", paths.server_key().display());
            println!("Next: issue a user certificate:");
            println!(
                "  daas-server pki issue --dir {} --user NAME [--admin]",
                dir.display()
            );
        }
        PkiCommand::Issue {
            dir,
            user,
            admin,
            group,
            days,
            ca_key,
        } => {
            let (cert, key) =
                pki::issue_user_files(&dir, &user, admin, &group, days, ca_key.as_deref())?;
            let role = if admin { "admin" } else { "user" };
            let (subject, fingerprint) = describe_cert(&cert)?;
            let detail = format!(
                "user certificate \"{subject}\" sha256 {fingerprint} ({role} {user}; {days} days)"
            );
            audit_pki(config, "issue_certificate", &detail).await?;
            println!(
                "certificate: {} ({role} {user}; {days} days)",
                cert.display()
            );
            println!("key:         {}", key.display());
            let ca = pki::PkiPaths { dir: dir.clone() }.ca();
            println!("Use them with the CLI:");
            println!(
                "  daas --ca {} --cert {} --key {} ...",
                ca.display(),
                cert.display(),
                key.display()
            );
            println!("or set DAAS_CA, DAAS_CERT and DAAS_KEY to these paths.");
        }
        PkiCommand::Revoke {
            dir,
            cert,
            fingerprint,
            serial,
            reason,
        } => {
            use pki::revoked::Revoked;
            let (entry, what) = match (cert, fingerprint, serial) {
                (Some(cert), _, _) => {
                    let (subject, fingerprint) = describe_cert(&cert)?;
                    let entry = Revoked::fingerprint(&fingerprint).map_err(anyhow::Error::msg)?;
                    (entry, format!("\"{subject}\" sha256 {fingerprint}"))
                }
                (None, Some(hex), _) => {
                    let entry = Revoked::fingerprint(&hex).map_err(anyhow::Error::msg)?;
                    (entry.clone(), entry.to_field())
                }
                (None, None, Some(hex)) => {
                    let entry = Revoked::serial(&hex).map_err(anyhow::Error::msg)?;
                    (entry.clone(), entry.to_field())
                }
                (None, None, None) => anyhow::bail!("give --cert, --fingerprint or --serial"),
            };
            let list = dir.join(pki::revoked::FILE_NAME);
            let comment = if reason.is_empty() {
                what.clone()
            } else {
                format!("{what}: {reason}")
            };
            pki::revoked::append(&list, &entry, &comment)?;
            let detail = if reason.is_empty() {
                format!("revoked {what}")
            } else {
                format!("revoked {what} ({reason})")
            };
            audit_pki(config, "revoke_certificate", &detail).await?;
            println!("revoked {what} in {}", list.display());
            println!(
                "The server refuses it from its next call on (it reads the list again when it changes)."
            );
        }
    }
    Ok(())
}
