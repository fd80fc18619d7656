//! Runs the external tools (terraform, ssh, ansible-playbook) as child
//! processes: an argument vector (never a shell string), a clean environment
//! (what the tool needs, nothing else of the server's), its own process
//! group, output streamed line by line into the session's events, a timeout,
//! and a stop that suits the tool.
//!
//! A tool's output goes to unlinked files that the server tails, not to
//! pipes: if the server dies, the tool can still write (Terraform would
//! otherwise die of SIGPIPE in the middle of writing its state). Terraform
//! is not told when the server dies: it finishes, and the next server
//! process adopts it (waits for it) before cleaning up. Other tools get
//! SIGTERM when the server dies.

use std::{
    ffi::OsString,
    io::{Read, Seek},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use daas_api::v1::{OutputLine, OutputStream, Tool};
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};
use tokio::{
    io::AsyncReadExt,
    process::{Child, Command},
    sync::{mpsc, watch},
};
use tokio_util::sync::CancellationToken;

use crate::{
    files::MASK,
    metrics::Metrics,
    store::{ChildRecord, Store},
};

/// Longest line kept in an event; longer lines are cut.
pub const MAX_LINE: usize = 4096;
/// How long a stopped tool gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);
/// How long Terraform gets after SIGINT to save its state and stop, before
/// its process group is stopped.
const INTERRUPT_GRACE: Duration = Duration::from_secs(60);
/// How long to keep reading output after the tool exits.
const DRAIN: Duration = Duration::from_secs(2);
/// The server environment variables a tool may see; everything else (a
/// secret given to the server by environment, say) stays in the server.
const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "TZ",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

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

/// Where a tool's lines go: the events of one session, with its secrets
/// masked, or the server's log for work that belongs to no session.
#[derive(Clone)]
pub struct SessionLog {
    pub store: Store,
    /// Empty: no session; lines go to the server's log.
    pub session_id: String,
    secrets: Vec<String>,
    /// Where each run's end is counted (`daas_tool_runs_total`).
    metrics: Option<Arc<Metrics>>,
}

impl SessionLog {
    pub fn new(store: Store, session_id: String, secrets: Vec<String>) -> Self {
        let secrets = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        SessionLog {
            store,
            session_id,
            secrets,
            metrics: None,
        }
    }

    /// The same log, counting each run's end in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> SessionLog {
        self.metrics = Some(metrics);
        self
    }

    /// The same log, masking `more` too.
    pub fn with_secrets<'a>(&self, more: impl IntoIterator<Item = &'a str>) -> SessionLog {
        let mut log = self.clone();
        log.secrets.extend(
            more.into_iter()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        log
    }

    /// Masks every secret in `text`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets
            .iter()
            .fold(text.to_string(), |acc, secret| acc.replace(secret, MASK))
    }

    /// Records one line (masked) as an event. A store failure is logged: a
    /// lost output line must not fail the provisioning.
    pub async fn line(&self, tool: Tool, stream: OutputStream, text: &str) {
        let text = self.redact(text);
        if self.session_id.is_empty() {
            tracing::info!(tool = tool.as_str_name(), "{text}");
            return;
        }
        let line = OutputLine {
            tool: tool as i32,
            stream: stream as i32,
            text,
        };
        if let Err(err) = self.store.output(&self.session_id, line).await {
            tracing::warn!(session = %self.session_id, error = %err, "could not record an output line");
        }
    }

    async fn child(&self, child: Option<ChildRecord>) {
        if self.session_id.is_empty() {
            return;
        }
        if let Err(err) = self.store.set_child(&self.session_id, child).await {
            tracing::warn!(session = %self.session_id, error = %err, "could not record a child process");
        }
    }
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

/// Runs `inv` to completion; a non-zero exit is an error.
pub async fn run(
    inv: Invocation,
    log: &SessionLog,
    cancel: &CancellationToken,
) -> Result<Finished, ToolError> {
    let what = inv.what.clone();
    let finished = run_status(inv, log, cancel).await?;
    if finished.status.success() {
        Ok(finished)
    } else {
        Err(ToolError::Failed {
            what,
            status: finished.status,
            summary: finished.summary,
        })
    }
}

/// A file the tool writes and the server reads, already unlinked: (the
/// tool's end, the server's end).
fn output_file() -> std::io::Result<(std::fs::File, std::fs::File)> {
    let named = tempfile::NamedTempFile::new()?;
    let reader = named.reopen()?;
    let writer = named.into_file();
    Ok((writer, reader))
}

/// Runs `inv` to completion and returns however it exited; the run is
/// counted in the log's metrics by tool and [`end_reason`].
pub async fn run_status(
    inv: Invocation,
    log: &SessionLog,
    cancel: &CancellationToken,
) -> Result<Finished, ToolError> {
    let tool = inv.tool;
    let started = Instant::now();
    let result = run_to_end(inv, log, cancel).await;
    if let Some(metrics) = &log.metrics {
        metrics.tool_run(
            tool_label(tool),
            &end_reason(&result),
            started.elapsed().as_secs_f64(),
        );
    }
    result
}

/// The name of `tool` in metrics.
fn tool_label(tool: Tool) -> &'static str {
    match tool {
        Tool::Terraform => "terraform",
        Tool::Ssh => "ssh",
        Tool::Ansible => "ansible",
        Tool::Unspecified => "unknown",
    }
}

/// How a run ended, for metrics: `ok`, `exit_<code>`, `signal`, `timeout`,
/// `cancelled`, `spawn_failed` or `io_error`.
pub fn end_reason(result: &Result<Finished, ToolError>) -> String {
    let status_reason = |status: &ExitStatus| match status.code() {
        Some(0) => "ok".to_string(),
        Some(code) => format!("exit_{code}"),
        None if status.signal().is_some() => "signal".to_string(),
        None => "io_error".to_string(),
    };
    match result {
        Ok(finished) => status_reason(&finished.status),
        Err(ToolError::Failed { status, .. }) => status_reason(status),
        Err(ToolError::Timeout { .. }) => "timeout".into(),
        Err(ToolError::Cancelled { .. }) => "cancelled".into(),
        Err(ToolError::Spawn { .. }) => "spawn_failed".into(),
        Err(ToolError::Output { .. }) => "io_error".into(),
    }
}

async fn run_to_end(
    inv: Invocation,
    log: &SessionLog,
    cancel: &CancellationToken,
) -> Result<Finished, ToolError> {
    let io_error = |message: String| ToolError::Output {
        what: inv.what.clone(),
        message,
    };
    let (out_writer, mut out_reader) =
        output_file().map_err(|e| io_error(format!("cannot make its output file: {e}")))?;
    let (err_writer, err_reader) =
        output_file().map_err(|e| io_error(format!("cannot make its output file: {e}")))?;
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .current_dir(&inv.cwd)
        .env_clear()
        .envs(
            PASSED_ENV
                .iter()
                .filter_map(|k| Some((*k, std::env::var_os(k)?))),
        )
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_writer))
        .stderr(Stdio::from(err_writer))
        .process_group(0)
        .kill_on_drop(inv.stop == StopStyle::Group);
    if inv.stop == StopStyle::Group {
        // If the server dies, the tool is told to stop (a restarted server
        // cleans the session up).
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
    }
    let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
        program: inv.program.display().to_string(),
        source,
    })?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    if let Some(pgid) = pgid {
        let identity = process_identity(pgid).map(|id| format!("{} {id}", style_name(inv.stop)));
        log.child(identity.map(|identity| ChildRecord { pgid, identity }))
            .await;
    }

    let (tx, mut rx) = mpsc::channel::<(OutputStream, String)>(256);
    let (exited_tx, exited_rx) = watch::channel(false);
    let mut tails = Vec::new();
    if !inv.capture_stdout {
        let reader = out_reader
            .try_clone()
            .map_err(|e| io_error(e.to_string()))?;
        tails.push(tokio::spawn(tail_lines(
            reader,
            OutputStream::Stdout,
            tx.clone(),
            exited_rx.clone(),
        )));
    }
    tails.push(tokio::spawn(tail_lines(
        err_reader,
        OutputStream::Stderr,
        tx.clone(),
        exited_rx,
    )));
    drop(tx);

    let mut summary = Summary::default();
    let mut show = |stream: OutputStream, text: String| -> Vec<String> {
        if stream == OutputStream::Stdout && inv.format == OutputFormat::TerraformJson {
            terraform_lines(&text, &mut summary)
        } else {
            summary.see(&text);
            vec![text]
        }
    };
    let deadline = tokio::time::sleep(inv.timeout);
    tokio::pin!(deadline);
    let mut lines_open = true;
    let outcome = loop {
        tokio::select! {
            line = rx.recv(), if lines_open => match line {
                Some((stream, text)) => {
                    for text in show(stream, text) {
                        log.line(inv.tool, stream, &text).await;
                    }
                }
                None => lines_open = false,
            },
            status = child.wait() => break status.map_err(|e| io_error(e.to_string())),
            _ = &mut deadline => {
                stop(&mut child, pgid, inv.stop).await;
                break Err(ToolError::Timeout { what: inv.what.clone(), after: inv.timeout });
            }
            _ = cancel.cancelled() => {
                stop(&mut child, pgid, inv.stop).await;
                break Err(ToolError::Cancelled { what: inv.what.clone() });
            }
        }
    };
    // Lines written before the exit.
    let _ = exited_tx.send(true);
    let drain_until = tokio::time::Instant::now() + DRAIN;
    while lines_open {
        match tokio::time::timeout_at(drain_until, rx.recv()).await {
            Ok(Some((stream, text))) => {
                for text in show(stream, text) {
                    log.line(inv.tool, stream, &text).await;
                }
            }
            Ok(None) | Err(_) => lines_open = false,
        }
    }
    for tail in tails {
        tail.abort();
    }
    log.child(None).await;
    let status = outcome?;
    let stdout = if inv.capture_stdout {
        let mut bytes = Vec::new();
        out_reader
            .rewind()
            .and_then(|()| out_reader.read_to_end(&mut bytes))
            .map_err(|e| io_error(format!("cannot read its output: {e}")))?;
        bytes
    } else {
        Vec::new()
    };
    Ok(Finished {
        status,
        stdout,
        // Built from the raw lines: masked like them.
        summary: summary.best().map(|s| log.redact(&s)),
    })
}

/// Stops a running tool the way it expects.
async fn stop(child: &mut Child, pgid: Option<i32>, style: StopStyle) {
    if let Some(pgid) = pgid {
        if style == StopStyle::InterruptFirst {
            let _ = kill(Pid::from_raw(pgid), Signal::SIGINT);
            if tokio::time::timeout(INTERRUPT_GRACE, child.wait())
                .await
                .is_ok()
            {
                // Whatever it started and left behind goes too.
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                return;
            }
        }
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
        let _ = tokio::time::timeout(GRACE, child.wait()).await;
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let _ = child.kill().await;
}

/// How a stop style is written in a recorded [`ChildRecord::identity`].
fn style_name(style: StopStyle) -> &'static str {
    match style {
        StopStyle::InterruptFirst => "interrupt-first",
        StopStyle::Group => "group",
    }
}

/// Who a process is beyond its pid, which is reused: the boot and the
/// process's start time (in clock ticks since boot), from /proc.
pub fn process_identity(pid: i32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 is the state, field 22 the start time.
    if fields.first() == Some(&"Z") {
        return None;
    }
    let start = fields.get(19)?;
    Some(format!("{} {start}", boot.trim()))
}

/// The identity [`tools_in`] gives a group whose leader has exited.
const NO_LEADER: &str = "gone 0";

/// The process groups of the tools working in `dir` (their current folder
/// is in it), each described as [`run_status`] records its tool: a group
/// led by `terraform` is one to let finish, any other one to stop. This
/// finds a tool the server started but died before recording.
pub fn tools_in(dir: &Path) -> Vec<ChildRecord> {
    let mut groups = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
            && let Ok(pgid) = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
        {
            groups.insert(pgid.as_raw());
        }
    }
    groups
        .into_iter()
        .filter(|&pgid| pgid > 1)
        .map(|pgid| {
            let leader = std::fs::read_to_string(format!("/proc/{pgid}/comm")).unwrap_or_default();
            let style = if leader.trim() == "terraform" {
                StopStyle::InterruptFirst
            } else {
                StopStyle::Group
            };
            // A group whose leader is gone is stopped through any member.
            let identity = process_identity(pgid).unwrap_or_else(|| NO_LEADER.into());
            ChildRecord {
                pgid,
                identity: format!("{} {identity}", style_name(style)),
            }
        })
        .collect()
}

/// What a restarted server does with a tool a previous process left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// Nothing of it runs any more.
    Gone,
    /// It ran and was left to finish.
    Finished,
    /// It was stopped.
    Stopped,
}

/// Deals with a tool a previous server process left running: a Terraform
/// run is left to finish (at most `wait`, then interrupted); any other tool
/// is stopped. A recorded process that is not the same process any more
/// (its pid reused) is left alone.
pub async fn adopt(child: &ChildRecord, wait: Duration) -> Adopted {
    let Some((style, identity)) = child.identity.split_once(' ') else {
        return Adopted::Gone;
    };
    let group = Pid::from_raw(child.pgid);
    if identity == NO_LEADER {
        // A leaderless group found in a session's folder: what is left of it.
        if child.pgid > 1 && killpg(group, Signal::SIGKILL).is_ok() {
            return Adopted::Stopped;
        }
        return Adopted::Gone;
    }
    let same = || process_identity(child.pgid).as_deref() == Some(identity);
    if child.pgid <= 1 || !same() {
        return Adopted::Gone;
    }
    if style == style_name(StopStyle::InterruptFirst) {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            if !same() {
                return Adopted::Finished;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = kill(group, Signal::SIGINT);
        if wait_until_gone(&same, INTERRUPT_GRACE).await {
            let _ = killpg(group, Signal::SIGKILL);
            return Adopted::Stopped;
        }
    }
    let _ = killpg(group, Signal::SIGTERM);
    if !wait_until_gone(&same, GRACE).await {
        let _ = killpg(group, Signal::SIGKILL);
    }
    // Whatever else is left in the group.
    let _ = killpg(group, Signal::SIGKILL);
    Adopted::Stopped
}

async fn wait_until_gone(same: &impl Fn() -> bool, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if !same() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    !same()
}

/// Follows a tool's output file, sending each line, until the tool has
/// exited and the file is read to its end.
async fn tail_lines(
    file: std::fs::File,
    stream: OutputStream,
    tx: mpsc::Sender<(OutputStream, String)>,
    exited: watch::Receiver<bool>,
) {
    let mut file = tokio::fs::File::from_std(file);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut idle = Duration::from_millis(5);
    loop {
        // Read the flag before the file: an exit seen here means every byte
        // the tool wrote is already in the file.
        let done = *exited.borrow();
        let n = match file.read(&mut chunk).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            if done {
                if !line.is_empty() && !cut {
                    let _ = tx.send((stream, clean_line(&line))).await;
                }
                return;
            }
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(Duration::from_millis(100));
            continue;
        }
        idle = Duration::from_millis(5);
        for &byte in &chunk[..n] {
            if byte == b'\n' {
                if !cut && tx.send((stream, clean_line(&line))).await.is_err() {
                    return;
                }
                line.clear();
                cut = false;
            } else if !cut {
                line.push(byte);
                if line.len() > MAX_LINE {
                    // Sent now, cut; the rest of this line is skipped.
                    if tx.send((stream, clean_line(&line))).await.is_err() {
                        return;
                    }
                    line.clear();
                    cut = true;
                }
            }
        }
    }
}

/// A line as an event carries it: no end-of-line, valid UTF-8, at most
/// [`MAX_LINE`] bytes.
pub fn clean_line(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut text = String::from_utf8_lossy(raw).into_owned();
    if text.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The lines to show for one line of `terraform -json` output, noting its
/// error diagnostics for the failure's summary. A line that is not JSON is
/// shown as it is.
fn terraform_lines(raw: &str, summary: &mut Summary) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else {
        summary.see(raw);
        return vec![raw.to_string()];
    };
    let message = value
        .get("@message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    let mut lines: Vec<String> = message.lines().map(str::to_string).collect();
    if let Some(diagnostic) = value.get("diagnostic") {
        let field = |name: &str| {
            diagnostic
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let detail = field("detail");
        lines.extend(detail.lines().map(|l| format!("  {l}")));
        if field("severity") == "error" {
            summary.diagnostic(&field("address"), &field("summary"), &detail);
        }
    }
    lines
}

/// Picks what best explains a failure: Terraform's first error
/// diagnostic; else the first line that looks like an error, with the
/// last line of its details; else the last non-empty line.
#[derive(Default)]
struct Summary {
    diagnostic: Option<String>,
    first_error: Option<String>,
    detail: Option<String>,
    recap: bool,
    last: Option<String>,
}

impl Summary {
    fn diagnostic(&mut self, address: &str, summary: &str, detail: &str) {
        if self.diagnostic.is_some() {
            return;
        }
        let mut text = if address.is_empty() {
            summary.to_string()
        } else {
            format!("{address}: {summary}")
        };
        // The cause is at the end of a detail (e.g. "... Output: Error: ...").
        if let Some(last) = detail.lines().rev().find(|l| !l.trim().is_empty()) {
            text.push_str(" (");
            text.push_str(&shorten_tail(last.trim()));
            text.push(')');
        }
        self.diagnostic = Some(text);
    }

    fn see(&mut self, text: &str) {
        let trimmed = text.trim_start_matches(['│', '╷', '╵', ' ']).trim();
        if trimmed.is_empty() {
            return;
        }
        let looks_like_error = ["Error:", "ERROR!", "fatal:", "error:"]
            .iter()
            .any(|p| trimmed.starts_with(p));
        if self.first_error.is_none() {
            if looks_like_error {
                self.first_error = Some(shorten(trimmed));
            }
        } else if trimmed.starts_with("PLAY RECAP") {
            // Ansible's recap says nothing the error line did not.
            self.recap = true;
        } else if !self.recap {
            self.detail = Some(shorten(trimmed));
        }
        self.last = Some(shorten(trimmed));
    }

    fn best(self) -> Option<String> {
        if let Some(diagnostic) = self.diagnostic {
            return Some(diagnostic);
        }
        match (self.first_error, self.detail) {
            (Some(error), Some(detail)) => Some(format!("{error} ({detail})")),
            (Some(error), None) => Some(error),
            (None, _) => self.last,
        }
    }
}

const SHORT: usize = 300;

fn shorten(text: &str) -> String {
    if text.chars().count() <= SHORT {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(SHORT).collect();
        s.push('…');
        s
    }
}

/// The end of `text`, at most [`SHORT`] characters.
fn shorten_tail(text: &str) -> String {
    let count = text.chars().count();
    if count <= SHORT {
        text.to_string()
    } else {
        let tail: String = text.chars().skip(count - SHORT).collect();
        format!("…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_ends_for_metrics_as_its_exit_says() {
        let done = |raw: i32| {
            Ok(Finished {
                status: ExitStatus::from_raw(raw),
                stdout: vec![],
                summary: None,
            })
        };
        assert_eq!(end_reason(&done(0)), "ok");
        assert_eq!(end_reason(&done(4 << 8)), "exit_4");
        assert_eq!(end_reason(&done(9)), "signal");
        let what = String::from("terraform apply");
        let timeout = Err(ToolError::Timeout {
            what: what.clone(),
            after: Duration::from_secs(1),
        });
        assert_eq!(end_reason(&timeout), "timeout");
        assert_eq!(end_reason(&Err(ToolError::Cancelled { what })), "cancelled");
    }

    fn test_log() -> (tempfile::TempDir, SessionLog, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (
            dir,
            SessionLog::new(store.clone(), String::new(), vec![]),
            store,
        )
    }

    async fn session_log(store: &Store, secrets: Vec<String>) -> SessionLog {
        let (record, _) = store
            .create_session(
                crate::store::NewSession {
                    username: "alice".into(),
                    session_user: String::new(),
                    template: "t".into(),
                    ..Default::default()
                },
                crate::store::SessionLimits {
                    max_sessions: 10,
                    max_per_user: 10,
                },
            )
            .await
            .unwrap();
        SessionLog::new(store.clone(), record.id, secrets)
    }

    /// The output lines recorded for a session.
    async fn output_texts(store: &Store, id: &str) -> Vec<String> {
        store
            .events_after(id, 1)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                Some(daas_api::v1::session_event::Kind::Output(line)) => Some(line.text),
                _ => None,
            })
            .collect()
    }

    fn sh(script: &str) -> Invocation {
        Invocation::new(
            Tool::Terraform,
            "test script",
            Path::new("/bin/sh"),
            Path::new("/"),
        )
        .arg("-c")
        .arg(script)
    }

    #[tokio::test]
    async fn a_failure_summary_masks_secrets_like_the_lines() {
        let (_dir, _, store) = test_log();
        let log = session_log(&store, vec!["tok-9q8w".into()]).await;
        let err = run(
            sh("echo 'Error: login refused for token tok-9q8w' >&2; exit 3"),
            &log,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Error: login refused for token ********"),
            "{text}"
        );
        assert!(!text.contains("tok-9q8w"), "{text}");
    }

    #[test]
    fn lines_are_cleaned_and_cut() {
        assert_eq!(clean_line(b"hello\r\n"), "hello");
        assert_eq!(clean_line(b"caf\xc3\xa9\n"), "café");
        assert_eq!(clean_line(b"bad \xff byte"), "bad \u{fffd} byte");
        let long = vec![b'x'; MAX_LINE + 10];
        assert_eq!(clean_line(&long).len(), MAX_LINE + '…'.len_utf8());
    }

    #[test]
    fn summaries_prefer_error_lines() {
        let mut s = Summary::default();
        let terraform = [
            "Plan: 1 to add",
            "Error: local-exec provisioner error",
            "",
            "  with terraform_data.post_create,",
            "Output: Error: no such template",
        ];
        for line in terraform {
            s.see(line);
        }
        assert_eq!(
            s.best().unwrap(),
            "Error: local-exec provisioner error (Output: Error: no such template)"
        );
        let mut s = Summary::default();
        let ansible = [
            "TASK [fail] ***",
            "fatal: [desktop-abc123]: FAILED! => {\"msg\": \"no disk\"}",
            "PLAY RECAP ***",
            "desktop-abc123 : ok=1 failed=1",
        ];
        for line in ansible {
            s.see(line);
        }
        assert_eq!(
            s.best().unwrap(),
            "fatal: [desktop-abc123]: FAILED! => {\"msg\": \"no disk\"}"
        );
        let mut s = Summary::default();
        s.see("just this");
        s.see("   ");
        assert_eq!(s.best().unwrap(), "just this");
    }

    #[tokio::test]
    async fn output_is_streamed_into_events_with_secrets_masked() {
        let (_dir, _, store) = test_log();
        let log = session_log(&store, vec!["hunter22".into()]).await;
        let finished = run(
            sh("echo one; echo 'pw=hunter22' >&2; echo two"),
            &log,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(finished.status.success());
        let texts = output_texts(&store, &log.session_id).await;
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts.contains(&"pw=********".to_string()), "{texts:?}");
        assert!(!texts.iter().any(|t| t.contains("hunter22")));
    }

    #[tokio::test]
    async fn failures_carry_the_explaining_line() {
        let (_dir, _, store) = test_log();
        let log = session_log(&store, vec![]).await;
        let err = run(
            sh("echo working; echo 'Error: no such template' >&2; exit 3"),
            &log,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("test script failed"), "{message}");
        assert!(message.contains("Error: no such template"), "{message}");
    }

    #[tokio::test]
    async fn timeouts_and_cancels_kill_the_whole_group() {
        let (dir, _, store) = test_log();
        let log = session_log(&store, vec![]).await;
        let pidfile = dir.path().join("grandchild.pid");
        // A grandchild in the same group, which must die with the tool.
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let err = run(
            sh(&script).timeout(Duration::from_millis(500)),
            &log,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "the grandchild survived"
        );

        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            trigger.cancel();
        });
        let err = run(sh("sleep 300"), &log, &cancel).await.unwrap_err();
        assert!(matches!(err, ToolError::Cancelled { .. }), "{err}");
        let record = store.get(&log.session_id).await.unwrap().unwrap();
        assert_eq!(record.child, None, "the finished child is forgotten");
    }

    #[tokio::test]
    async fn tools_see_a_clean_environment() {
        let (_dir, _, store) = test_log();
        let log = session_log(&store, vec![]).await;
        let finished = run(
            sh("env").env("TF_IN_AUTOMATION", "1").capture_stdout(),
            &log,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let env = String::from_utf8(finished.stdout).unwrap();
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        // The test runner's own variables (CARGO_*, RUST_*, ...) stay out.
        assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")));
        for name in &names {
            assert!(
                PASSED_ENV.contains(name)
                    || ["LANG", "LC_ALL", "TF_IN_AUTOMATION", "PWD", "SHLVL", "_"].contains(name),
                "{name} leaked into the tool's environment: {env}"
            );
        }
        assert!(names.contains(&"PATH") && names.contains(&"TF_IN_AUTOMATION"));
    }

    #[test]
    fn terraform_json_is_shown_as_text_and_failures_use_its_diagnostics() {
        let mut summary = Summary::default();
        let shown = terraform_lines(
            r#"{"@level":"info","@message":"terraform_data.vm: (local-exec): creating desktop-abc","type":"provision_progress"}"#,
            &mut summary,
        );
        assert_eq!(
            shown,
            ["terraform_data.vm: (local-exec): creating desktop-abc"]
        );
        let shown = terraform_lines(
            r#"{"@level":"error","@message":"Error: local-exec provisioner error","type":"diagnostic","diagnostic":{"severity":"error","summary":"local-exec provisioner error","detail":"Error running command 'exit 1': exit status 1. Output: Error: simulated hypervisor failure\n","address":"terraform_data.post_create"}}"#,
            &mut summary,
        );
        assert_eq!(shown.len(), 2, "{shown:?}");
        // A later error diagnostic does not replace the first.
        terraform_lines(
            r#"{"@level":"error","@message":"Error: other","type":"diagnostic","diagnostic":{"severity":"error","summary":"other","detail":""}}"#,
            &mut summary,
        );
        assert_eq!(
            summary.best().unwrap(),
            "terraform_data.post_create: local-exec provisioner error (Error running command \
             'exit 1': exit status 1. Output: Error: simulated hypervisor failure)"
        );
        let mut summary = Summary::default();
        assert_eq!(terraform_lines("not json", &mut summary), ["not json"]);
        assert_eq!(summary.best().unwrap(), "not json");
    }

    #[tokio::test]
    async fn endless_lines_are_cut_and_the_rest_follows() {
        let (_dir, _, store) = test_log();
        let log = session_log(&store, vec![]).await;
        run(
            sh("head -c 20000 /dev/zero | tr '\\0' x; echo; echo next"),
            &log,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let texts = output_texts(&store, &log.session_id).await;
        assert_eq!(
            texts.len(),
            2,
            "{:?}",
            texts.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(texts[0].len() <= MAX_LINE + 4 && texts[0].starts_with("xxx"));
        assert_eq!(texts[1], "next");
    }

    #[tokio::test]
    async fn captured_stdout_is_returned_not_streamed() {
        let (_dir, _, store) = test_log();
        let log = session_log(&store, vec![]).await;
        let finished = run(
            sh("printf '{\"a\":1}'").capture_stdout(),
            &log,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(finished.stdout, b"{\"a\":1}");
        assert_eq!(
            store.events_after(&log.session_id, 1).await.unwrap().len(),
            0
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_clear_error() {
        let (_dir, log, _) = test_log();
        let inv = Invocation::new(
            Tool::Ansible,
            "ansible-playbook",
            Path::new("/nonexistent/ansible-playbook"),
            Path::new("/"),
        );
        let err = run(inv, &log, &CancellationToken::new()).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot start /nonexistent/ansible-playbook")
        );
    }
}
