//! `daas-agent`: the agent inside each desktop VM. It measures real
//! activity — seconds since the last keyboard or mouse input on any X
//! display, RDP clients connected, users logged in — and reports it to the
//! server (`daas.v1.AgentService/ReportActivity`) at the interval the server
//! chooses, until the server says the session is ending. Beside that it
//! receives the server's commands (`ReceiveCommands`, [`commands`]) and has
//! the root helper ([`apply`], `daas-agent --apply`) do them.
//!
//! The library holds everything; the binary (`src/main.rs`) only parses its
//! arguments, sets up logging and signals, and calls [`run`], [`sample`] or
//! [`apply::serve`].
//! Nothing here keeps process-global state or exits the process, so [`run`]
//! can be driven in-process by tests.

pub mod apply;
pub mod boot;
pub mod channel;
pub mod commands;
pub mod config;
pub mod files;
pub mod logins;
pub mod notify;
pub mod passwd;
pub mod rdp;
pub mod report;
pub mod sample;
pub mod sssd_access;
pub mod x11idle;

pub use config::{AgentConfig, ConfigError};
pub use report::{AgentError, RunEnd, run};
pub use sample::{Activity, sample};

/// The agent's version, sent with every report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
