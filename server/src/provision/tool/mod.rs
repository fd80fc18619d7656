//! Running the external tools (terraform, ssh, ansible-playbook): what one
//! invocation is, how a run can fail and how a tool is stopped, shared by
//! the files that do the work. `run.rs` starts a tool and waits for it,
//! `output.rs` follows what it writes, `session_log.rs` records its lines
//! with secrets masked, `failure.rs` picks the line that explains a
//! failure, and `adopt.rs` deals with the tools a previous server process
//! left running; `installed.rs` checks the tools are there before any run.
//! Callers use the re-exports here (`tool::run`, `tool::SessionLog`, ...).

mod adopt;
mod failure;
pub mod installed;
mod output;
mod run;
mod session_log;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use daas_api::v1::Tool;

pub use adopt::{Adopted, adopt, process_identity, tools_in};
pub use output::{MAX_LINE, clean_line};
pub use run::{end_reason, run, run_status};
pub use session_log::SessionLog;

/// How long a stopped tool gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);
/// How long Terraform gets after SIGINT to save its state and stop, before
/// its process group is stopped.
const INTERRUPT_GRACE: Duration = Duration::from_secs(60);

/// Why a tool run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{what} did not finish within {}", humantime::format_duration(*.after))]
    Timeout { what: String, after: Duration },
    #[error("{what} was stopped")]
    Cancelled { what: String },
    #[error("{what} failed ({status}){}", summary_suffix(.summary))]
    Failed {
        what: String,
        status: ExitStatus,
        summary: Option<String>,
    },
    #[error("{what}: {message}")]
    Output { what: String, message: String },
}

fn summary_suffix(summary: &Option<String>) -> String {
    summary
        .as_ref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

/// How a tool is stopped, and what happens to it when the server dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopStyle {
    /// SIGTERM to the process group, SIGKILL after a grace period; SIGTERM
    /// when the server dies.
    Group,
    /// SIGINT to the tool alone first (Terraform saves its state and
    /// stops), its group after a grace period; left to finish when the
    /// server dies.
    InterruptFirst,
}

/// How a stop style is written in a recorded
/// [`ChildRecord::identity`](crate::store::ChildRecord::identity).
fn style_name(style: StopStyle) -> &'static str {
    match style {
        StopStyle::InterruptFirst => "interrupt-first",
        StopStyle::Group => "group",
    }
}

/// How a tool's standard output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Lines of text.
    Text,
    /// Terraform's `-json` lines: each shown by its `@message`, failures
    /// summarized from its error diagnostics.
    TerraformJson,
}

/// One invocation of a tool.
pub struct Invocation {
    /// Which tool, for the events.
    pub tool: Tool,
    /// A short description for errors, e.g. "terraform apply".
    pub what: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// Set on top of the few variables passed from the server's.
    pub env: Vec<(String, OsString)>,
    pub timeout: Duration,
    /// Keep standard output as data (returned) instead of streaming it.
    pub capture_stdout: bool,
    pub stop: StopStyle,
    pub format: OutputFormat,
}

impl Invocation {
    pub fn new(tool: Tool, what: impl Into<String>, program: &Path, cwd: &Path) -> Self {
        Invocation {
            tool,
            what: what.into(),
            program: program.to_path_buf(),
            args: Vec::new(),
            cwd: cwd.to_path_buf(),
            env: Vec::new(),
            timeout: Duration::from_secs(600),
            capture_stdout: false,
            stop: StopStyle::Group,
            format: OutputFormat::Text,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<A: Into<OsString> + Copy>(mut self, args: &[A]) -> Self {
        self.args.extend(args.iter().map(|&a| a.into()));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn capture_stdout(mut self) -> Self {
        self.capture_stdout = true;
        self
    }

    pub fn stop(mut self, stop: StopStyle) -> Self {
        self.stop = stop;
        self
    }

    pub fn format(mut self, format: OutputFormat) -> Self {
        self.format = format;
        self
    }
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Standard output, when captured.
    pub stdout: Vec<u8>,
    /// A line that explains a failure, if the tool printed one.
    pub summary: Option<String>,
}
