//! `daas-server` binary: reads the configuration and serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use daas_server::{
    config::{Config, LogFormat, REFERENCE},
    serve::BoundServer,
};

/// The DaaS orchestrator: creates Linux desktops on demand (Terraform +
/// Ansible) and serves the daas.v1 gRPC API.
#[derive(Parser)]
#[command(version, after_long_help = REFERENCE)]
struct Args {
    /// Configuration file (TOML). Without it: built-in defaults and DAAS_*
    /// environment variables. See --help for every key.
    #[arg(short, long, env = "DAAS_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration, print the resolved values, and exit.
    #[arg(long)]
    check: bool,
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
    let config = Config::load(args.config.as_deref())?;
    if args.check {
        println!("{config:#?}");
        return Ok(());
    }
    init_logging(config.log_format);
    let server = BoundServer::bind(config).await?;
    // Scripts and tests read this line to find the port.
    println!("daas-server listening on {}", server.local_addr());
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
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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
