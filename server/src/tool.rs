//! Runs the external tools (terraform, ssh, ansible-playbook) as child
//! processes: an argument vector (never a shell string), its own process
//! group, output streamed line by line into the session's events, a timeout,
//! and the whole group stopped on timeout, cancel or shutdown.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use daas_api::v1::{OutputLine, OutputStream, Tool};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Longest line kept in an event; longer lines are cut.
pub const MAX_LINE: usize = 4096;
/// How long a stopped tool gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);
/// How long to keep reading output after the tool exits (a background
/// process it started may hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

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
/// masked.
#[derive(Clone)]
pub struct SessionLog {
    pub store: Store,
    pub session_id: String,
    secrets: Vec<String>,
}

/// What replaces a secret in an output line.
pub const MASK: &str = "********";

impl SessionLog {
    pub fn new(store: Store, session_id: String, secrets: Vec<String>) -> Self {
        let secrets = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        SessionLog {
            store,
            session_id,
            secrets,
        }
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
        let line = OutputLine {
            tool: tool as i32,
            stream: stream as i32,
            text: self.redact(text),
        };
        if let Err(err) = self.store.output(&self.session_id, line).await {
            tracing::warn!(session = %self.session_id, error = %err, "could not record an output line");
        }
    }

    async fn child(&self, pgid: Option<i32>) {
        if let Err(err) = self.store.set_child(&self.session_id, pgid).await {
            tracing::warn!(session = %self.session_id, error = %err, "could not record a child process");
        }
    }
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
    pub env: Vec<(String, OsString)>,
    pub timeout: Duration,
    /// Keep standard output as data (returned) instead of streaming it.
    pub capture_stdout: bool,
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
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
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

/// Runs `inv` to completion and returns however it exited.
pub async fn run_status(
    inv: Invocation,
    log: &SessionLog,
    cancel: &CancellationToken,
) -> Result<Finished, ToolError> {
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .current_dir(&inv.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for (key, value) in &inv.env {
        cmd.env(key, value);
    }
    // If the server dies, the tool is told to stop (a restarted server
    // cleans the session up).
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|source| ToolError::Spawn {
        program: inv.program.display().to_string(),
        source,
    })?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    log.child(pgid).await;

    let (tx, mut rx) = mpsc::channel::<(OutputStream, String)>(256);
    let mut stdout_task = None;
    if let Some(out) = child.stdout.take() {
        if inv.capture_stdout {
            stdout_task = Some(tokio::spawn(read_all(out)));
        } else {
            tokio::spawn(read_lines(out, OutputStream::Stdout, tx.clone()));
        }
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(read_lines(err, OutputStream::Stderr, tx.clone()));
    }
    drop(tx);

    let mut summary = Summary::default();
    let deadline = tokio::time::sleep(inv.timeout);
    tokio::pin!(deadline);
    let mut lines_open = true;
    let outcome = loop {
        tokio::select! {
            line = rx.recv(), if lines_open => match line {
                Some((stream, text)) => {
                    summary.see(&text);
                    log.line(inv.tool, stream, &text).await;
                }
                None => lines_open = false,
            },
            status = child.wait() => break status.map_err(|e| ToolError::Output {
                what: inv.what.clone(),
                message: e.to_string(),
            }),
            _ = &mut deadline => {
                stop_group(&mut child, pgid).await;
                break Err(ToolError::Timeout { what: inv.what.clone(), after: inv.timeout });
            }
            _ = cancel.cancelled() => {
                stop_group(&mut child, pgid).await;
                break Err(ToolError::Cancelled { what: inv.what.clone() });
            }
        }
    };
    // Lines still in flight after the exit.
    let drain_until = tokio::time::Instant::now() + DRAIN;
    while lines_open {
        match tokio::time::timeout_at(drain_until, rx.recv()).await {
            Ok(Some((stream, text))) => {
                summary.see(&text);
                log.line(inv.tool, stream, &text).await;
            }
            Ok(None) | Err(_) => lines_open = false,
        }
    }
    log.child(None).await;
    let status = outcome?;
    let stdout = match stdout_task {
        Some(task) => match tokio::time::timeout(DRAIN, task).await {
            Ok(Ok(Ok(bytes))) => bytes,
            Ok(Ok(Err(e))) => {
                return Err(ToolError::Output {
                    what: inv.what,
                    message: format!("cannot read its output: {e}"),
                });
            }
            _ => {
                return Err(ToolError::Output {
                    what: inv.what,
                    message: "its output did not end".into(),
                });
            }
        },
        None => Vec::new(),
    };
    Ok(Finished {
        status,
        stdout,
        summary: summary.best(),
    })
}

/// SIGTERM to the whole process group, then SIGKILL after a grace period.
async fn stop_group(child: &mut Child, pgid: Option<i32>) {
    if let Some(pgid) = pgid {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
        if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        } else {
            // The leader is gone; whatever it started goes too.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
    let _ = child.kill().await;
}

/// Stops a process group a previous server process left running. Returns
/// whether there was one.
pub async fn stop_orphaned_group(pgid: i32) -> bool {
    let group = Pid::from_raw(pgid);
    if pgid <= 1 || killpg(group, None).is_err() {
        return false;
    }
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + GRACE;
    while tokio::time::Instant::now() < deadline {
        if killpg(group, None).is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
    true
}

async fn read_lines<R: AsyncRead + Unpin>(
    reader: R,
    stream: OutputStream,
    tx: mpsc::Sender<(OutputStream, String)>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if tx.send((stream, clean_line(&buf))).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn read_all<R: AsyncRead + Unpin>(reader: R) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut BufReader::new(reader), &mut out).await?;
    Ok(out)
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

/// Picks what best explains a failure: the first line that looks like an
/// error, with the last line of its details (Terraform prints the cause
/// there), else the last non-empty line.
#[derive(Default)]
struct Summary {
    first_error: Option<String>,
    detail: Option<String>,
    recap: bool,
    last: Option<String>,
}

impl Summary {
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
        match (self.first_error, self.detail) {
            (Some(error), Some(detail)) => Some(format!("{error} ({detail})")),
            (Some(error), None) => Some(error),
            (None, _) => self.last,
        }
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let texts: Vec<String> = store
            .events_after(&log.session_id, 1)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                Some(daas_api::v1::session_event::Kind::Output(line)) => Some(line.text),
                _ => None,
            })
            .collect();
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
        assert_eq!(record.child_pgid, None, "the finished child is forgotten");
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
