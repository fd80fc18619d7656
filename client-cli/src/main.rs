//! `daas`: the command-line client of the DaaS orchestrator.

mod caller;
mod channel;
mod cli;
mod commands;
mod context;
mod endpoints;
mod error;
mod follow;
mod json;
mod password;
mod progress;
mod rdp;
mod render;
mod replicas;
mod setting_names;
mod settings;
mod timestamps;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("daas: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("daas: {}", error::one_line(&err.to_string()));
            ExitCode::from(err.exit_code())
        }
    }
}
