//! Live, human display of a session's events: a spinner per stage on a
//! terminal, plain lines otherwise.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use daas_api::v1::{SessionEvent, SessionState, StageChange, session_event::Kind};
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
                let view = StageView::of(event.state(), change);
                if let Some(done) = &view.done {
                    self.line(done)?;
                }
                if let Some(stage) = view.started {
                    if self.spinner {
                        self.bar = Some(spinner(
                            stage,
                            &change.message,
                            current_stage_elapsed(event),
                        ));
                    } else {
                        self.line(&render::stage_started(stage, &change.message))?;
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

    /// Prints a line on stderr, above the spinner if any.
    pub fn note(&self, text: &str) {
        let print = || eprintln!("{text}");
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
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

/// What a stage change shows. Stages may be skipped (a desktop claimed from
/// a warm pool goes from QUEUED to CONFIGURING): a change names the stage
/// that ended and the one that starts, nothing is assumed in between.
#[derive(Debug, PartialEq)]
struct StageView {
    /// The line that closes the stage that ended (none for the first event).
    done: Option<String>,
    /// The stage that starts, while the server works on the session.
    started: Option<SessionState>,
}

impl StageView {
    /// The view of a change into `state`.
    fn of(state: SessionState, change: &StageChange) -> StageView {
        let previous = change.previous();
        StageView {
            done: (previous != SessionState::Unspecified).then(|| {
                let took = duration(change.previous_duration.as_ref());
                render::stage_done(previous, took, state != SessionState::Failed)
            }),
            started: state.is_in_progress().then_some(state),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::tests::ms;

    fn change(previous: SessionState, millis: i64, message: &str) -> StageChange {
        StageChange {
            previous: previous as i32,
            previous_duration: ms(millis),
            message: message.into(),
        }
    }

    #[test]
    fn a_claimed_desktop_goes_from_queued_to_configuring() {
        let claim = "claimed desktop-ab12cd from warm pool 'lab'; configuring it for alice";
        let first = StageView::of(SessionState::Queued, &StageChange::default());
        assert_eq!(
            first,
            StageView {
                done: None,
                started: Some(SessionState::Queued),
            }
        );
        let claimed = StageView::of(
            SessionState::Configuring,
            &change(SessionState::Queued, 100, claim),
        );
        assert_eq!(
            claimed,
            StageView {
                done: Some("✔ QUEUED         0.1s".to_owned()),
                started: Some(SessionState::Configuring),
            }
        );
        assert_eq!(
            render::stage_started(SessionState::Configuring, claim),
            format!("▸ CONFIGURING   {claim}")
        );
        let ready = StageView::of(
            SessionState::Ready,
            &change(SessionState::Configuring, 700, ""),
        );
        assert_eq!(
            ready,
            StageView {
                done: Some("✔ CONFIGURING    0.7s".to_owned()),
                started: None,
            }
        );
    }

    #[test]
    fn a_failed_stage_is_marked() {
        let view = StageView::of(
            SessionState::Failed,
            &change(SessionState::Configuring, 2_000, "ansible failed"),
        );
        assert_eq!(
            view,
            StageView {
                done: Some("✘ CONFIGURING    2.0s".to_owned()),
                started: None,
            }
        );
    }
}
