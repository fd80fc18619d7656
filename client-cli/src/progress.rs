//! Live, human display of a session's events: a spinner per stage on a
//! terminal, plain lines otherwise.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use daas_api::v1::{SessionEvent, SessionState, session_event::Kind};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::json::tool_name;
use crate::render;
use crate::timestamps::{duration, since, system_time};

const TICK: Duration = Duration::from_millis(100);

/// Prints a session's events as they come.
pub struct Progress {
    spinner: bool,
    verbose: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `spinner`: draw a spinner (stdout is a terminal); `verbose`: print
    /// the tools' output lines.
    pub fn new(spinner: bool, verbose: bool) -> Self {
        Progress {
            spinner,
            verbose,
            bar: None,
        }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &SessionEvent) -> std::io::Result<()> {
        match &event.kind {
            Some(Kind::StageChange(change)) => {
                self.clear();
                let state = event.state();
                let previous = change.previous();
                if previous != SessionState::Unspecified {
                    let took = duration(change.previous_duration.as_ref());
                    let ok = state != SessionState::Failed;
                    self.line(&render::stage_done(previous, took, ok))?;
                }
                if state.is_in_progress() {
                    if self.spinner {
                        self.bar = Some(spinner(
                            state,
                            &change.message,
                            current_stage_elapsed(event),
                        ));
                    } else {
                        self.line(&render::stage_started(state, &change.message))?;
                    }
                }
            }
            Some(Kind::Output(output)) if self.verbose => {
                self.line(&render::output_line(tool_name(output.tool()), &output.text))?;
            }
            Some(Kind::IdleWarning(warning)) => {
                self.line(&format!("! {}", warning.reason))?;
            }
            Some(Kind::Output(_)) | None => {}
        }
        Ok(())
    }

    /// Prints a line above the spinner, if any.
    fn line(&self, text: &str) -> std::io::Result<()> {
        let print = || {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}")?;
            out.flush()
        };
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Removes the spinner.
    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A spinner on stdout saying `message` while waiting, for `destroy`.
pub fn waiting(message: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout())
        .with_style(style)
        .with_message(message.to_owned());
    bar.enable_steady_tick(TICK);
    bar
}

/// How long the session has been in the stage `event` belongs to, now:
/// from the event's time when the clocks agree, else what the event says.
fn current_stage_elapsed(event: &SessionEvent) -> Duration {
    let at_event = duration(event.stage_elapsed.as_ref());
    let since_event = system_time(event.time.as_ref())
        .map(|t| since(t, SystemTime::now()))
        .unwrap_or_default();
    at_event + since_event
}

fn spinner(state: SessionState, message: &str, elapsed: Duration) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{spinner:.cyan} {prefix:12.bold} {stage_elapsed:>6}  {wide_msg}",
    )
    .map(|style| {
        style.with_key(
            "stage_elapsed",
            |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = out.write_str(&render::stage_duration(state.elapsed()));
            },
        )
    })
    .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout())
        .with_style(style)
        .with_prefix(state.label())
        .with_message(message.to_owned());
    // indicatif panics when the start would be before the monotonic clock's origin.
    if Instant::now().checked_sub(elapsed).is_some() {
        bar = bar.with_elapsed(elapsed);
    }
    bar.enable_steady_tick(TICK);
    bar
}
