//! `daas-agent [--config PATH] [--once]`: reports this desktop's activity to
//! the DaaS server and does its commands (see the library, `daas_agent`, for
//! what and how). `daas-agent --apply`: the root helper, one request on
//! stdin, one reply on stdout (`daas_agent::apply`).
//!
//! Exit status: 0 after SIGTERM/SIGINT (and after any `--apply`), 1 when
//! the configuration cannot be used, 2 for a usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use daas_agent::config::DEFAULT_PATH;
use daas_agent::{AGENT_VERSION, AgentConfig, RunEnd};
use tracing::Level;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

const USAGE: &str = "usage: daas-agent [--config PATH] [--once]
       daas-agent --apply

  --config PATH  configuration file (default /etc/daas/agent.toml)
  --once         print one activity sample as JSON and exit
  --apply        the root helper (daas-agent-helper.socket starts it): read
                 one JSON request line on stdin, do it, write one JSON reply
                 line on stdout
  --version      print the version and exit

Log level: DAAS_AGENT_LOG=error|warn|info|debug|trace (default info).";

/// What the command line asks for.
struct Args {
    config: PathBuf,
    once: bool,
}

enum Parsed {
    Run(Args),
    Apply,
    Exit(&'static str),
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut parsed = Args {
        config: PathBuf::from(DEFAULT_PATH),
        once: false,
    };
    let (mut apply, mut others) = (false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--apply" => apply = true,
            "--once" => {
                parsed.once = true;
                others = true;
            }
            "--config" => {
                let path = args.next().ok_or("--config needs a path")?;
                parsed.config = PathBuf::from(path);
                others = true;
            }
            "-h" | "--help" => return Ok(Parsed::Exit(USAGE)),
            "-V" | "--version" => {
                return Ok(Parsed::Exit(concat!(
                    "daas-agent ",
                    env!("CARGO_PKG_VERSION")
                )));
            }
            other => match other.strip_prefix("--config=") {
                Some(path) if !path.is_empty() => {
                    parsed.config = PathBuf::from(path);
                    others = true;
                }
                _ => return Err(format!("unexpected argument {other:?}")),
            },
        }
    }
    match (apply, others) {
        (true, true) => Err("--apply takes no other option".to_owned()),
        (true, false) => Ok(Parsed::Apply),
        (false, _) => Ok(Parsed::Run(parsed)),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Apply) => {
            init_logging();
            apply();
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Exit(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("daas-agent: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    let config = AgentConfig::load(&args.config);
    if args.once {
        // A sample needs no server: without a usable file, the defaults.
        let config = config.unwrap_or_else(|err| {
            tracing::warn!("{err}; sampling with the default paths");
            AgentConfig::default()
        });
        println!("{}", daas_agent::sample(&config).to_json());
        return ExitCode::SUCCESS;
    }
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    // One thread is plenty for one call every few seconds, and keeps the
    // resident memory small; samples run on tokio's blocking threads.
    // Few blocking threads: samples are bounded in time, and the unit's
    // TasksMax must leave room for runuser and notify-send.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match daas_agent::run(config, termination()).await {
            Ok(RunEnd::Shutdown) => {
                tracing::info!("stopping");
                ExitCode::SUCCESS
            }
            Ok(RunEnd::Ended { .. }) => {
                // The session is ending: reporting stops, but the process
                // stays until SIGTERM. Exiting would make systemd's
                // `Restart=always` start a new agent that reports again (and
                // notifies the user again); staying needs nothing from the
                // unit (the Ansible role's copy of it included), unlike
                // `RestartPreventExitStatus=`. The VM is destroyed soon.
                tracing::info!("reporting stopped; waiting for SIGTERM");
                termination().await;
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!("{err}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The helper: one request, one reply, each outcome logged (the journal,
/// through stderr). The reply says what went wrong, so the status is 0.
fn apply() {
    match daas_agent::apply::serve(std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(Ok(done)) => tracing::info!("{done}"),
        Ok(Err(err)) => tracing::warn!("not done: {err}"),
        Err(err) => tracing::error!("cannot write the reply: {err}"),
    }
}

/// Resolves at SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::warn!("cannot watch for signals ({err}); stop with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Logs to stderr. Under systemd (`JOURNAL_STREAM` set) without time or
/// colours, each line prefixed with its syslog priority (`<4>` …) so the
/// journal files it at the right level.
fn init_logging() {
    let level = match std::env::var("DAAS_AGENT_LOG").as_deref().map(str::trim) {
        Ok("error") => Level::ERROR,
        Ok("warn") => Level::WARN,
        Ok("debug") => Level::DEBUG,
        Ok("trace") => Level::TRACE,
        _ => Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .with_level(false);
        builder
            .with_ansi(false)
            .event_format(SyslogPriority(format))
            .init();
    } else {
        builder.init();
    }
    tracing::debug!("daas-agent {AGENT_VERSION}");
}

/// Prefixes each line with its syslog priority, as journald reads stderr.
struct SyslogPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn apply_stands_alone() {
        assert!(matches!(parse(&["--apply"]), Ok(Parsed::Apply)));
        for args in [&["--apply", "--once"][..], &["--config", "x", "--apply"]] {
            assert_eq!(
                parse(args).err().as_deref(),
                Some("--apply takes no other option")
            );
        }
        assert!(matches!(
            parse(&["--once"]),
            Ok(Parsed::Run(Args { once: true, .. }))
        ));
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Exit(text)) if text.contains("--apply")));
    }
}
