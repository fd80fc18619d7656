//! Runs one tool as a child process: an argument vector (never a shell
//! string), a clean environment (what the tool needs, nothing else of the
//! server's), its own process group, output streamed line by line into the
//! session's events, a timeout, and a stop that suits the tool (a timeout
//! or a cancel ends the whole group). Terraform is not told when the
//! server dies: it finishes, and the next server process adopts it (waits
//! for it) before cleaning up (`adopt.rs`). Other tools get SIGTERM when
//! the server dies. Each run's end is counted in the metrics.

use std::{
    io::{Read, Seek},
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use daas_api::v1::{OutputStream, Tool};
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};
use tokio::{
    process::{Child, Command},
    sync::{mpsc, watch},
};
use tokio_util::sync::CancellationToken;

use super::{
    Finished, GRACE, INTERRUPT_GRACE, Invocation, OutputFormat, StopStyle, ToolError,
    adopt::process_identity,
    failure::Summary,
    output::{output_file, tail_lines, terraform_lines},
    session_log::SessionLog,
    style_name,
};
use crate::store::ChildRecord;

/// How long to keep reading output after the tool exits.
const DRAIN: Duration = Duration::from_secs(2);
/// The server environment variables a tool may see; everything else (a
/// secret given to the server by environment, say) stays in the server.
pub(super) const PASSED_ENV: &[&str] = &[
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
        Tool::Agent => "agent",
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{provision::tool::MAX_LINE, store::Store};

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
                    org: None,
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
