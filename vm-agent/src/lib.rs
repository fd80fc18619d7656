//! `daas-agent`: the agent inside each desktop VM. It measures real
//! activity — seconds since the last keyboard or mouse input on any X
//! display, RDP clients connected, users logged in — and reports it to the
//! server (`daas.v1.AgentService/ReportActivity`) at the interval the server
//! chooses, until the server says the session is ending.
//!
//! The library holds everything; the binary (`src/main.rs`) only parses its
//! arguments, sets up logging and signals, and calls [`run`] or [`sample`].
//! Nothing here keeps process-global state or exits the process, so [`run`]
//! can be driven in-process by tests.

pub mod boot;
pub mod config;
pub mod files;
pub mod logins;
pub mod notify;
pub mod passwd;
pub mod rdp;
pub mod report;
pub mod sample;
pub mod x11idle;

pub use config::{AgentConfig, ConfigError};
pub use report::{AgentError, RunEnd, run};
pub use sample::{Activity, sample};

/// The agent's version, sent with every report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
