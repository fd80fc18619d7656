//! Following a session's event stream (CreateSession, WatchSession) until the
//! session settles, printing each event as text or JSON.

use std::io::IsTerminal;

use daas_api::v1::{Session, SessionEvent};
use tonic::{Status, Streaming};

use crate::context::Context;
use crate::error::{CliError, code_name, is_transport_status, one_line};
use crate::json;
use crate::progress::Progress;

/// Reads `stream` to its end, which the server puts right after the event
/// that settles the session (READY, FAILED or DESTROYED; a replay can pass
/// READY on its way to DESTROYED), and returns the session as that last
/// event gives it.
/// `known_id` is the session's id when the caller knows it already.
pub async fn follow(
    ctx: &Context,
    mut stream: Streaming<SessionEvent>,
    known_id: Option<&str>,
) -> Result<Session, CliError> {
    let mut progress =
        (!ctx.json).then(|| Progress::new(std::io::stdout().is_terminal(), ctx.verbose));
    let mut id = known_id.map(str::to_owned);
    let mut seen_event = false;
    // The session as of the last event, while it is settled.
    let mut settled: Option<Session> = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = &mut interrupted => {
                drop(progress.take());
                return Err(match id {
                    Some(id) => CliError::Interrupted(id),
                    None => CliError::InterruptedEarly,
                });
            }
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => {
                drop(progress.take());
                return match (settled, id) {
                    (Some(session), _) => Ok(session),
                    (None, Some(id)) => Err(CliError::StreamEnded(id)),
                    (None, None) => Err(CliError::StreamEndedEmpty),
                };
            }
            Err(status) => {
                drop(progress.take());
                return Err(match id {
                    Some(id) if seen_event => CliError::StreamBroken {
                        id,
                        cause: one_line(&broken_stream_cause(&status)),
                    },
                    // Before the first event the call itself failed: say why plainly.
                    _ => CliError::from_status(&status, &ctx.server, id.as_deref()),
                });
            }
        };
        if id.is_none() && !event.session_id.is_empty() {
            id = Some(event.session_id.clone());
        }
        match progress.as_mut() {
            Some(progress) => progress.event(&event)?,
            None => json::print(&json::event(&event))?,
        }
        seen_event = true;
        if !event.state().is_settled() {
            settled = None;
        } else if event.session.is_some() || settled.is_none() {
            settled = Some(settled_session(event));
        }
    }
}

/// Why a stream that had started broke: the server's own words when it
/// ended the stream with an error, else what the connection reported.
fn broken_stream_cause(status: &Status) -> String {
    let message = status.message().trim();
    if is_transport_status(status) {
        format!("connection lost: {message}")
    } else if message.is_empty() {
        code_name(status.code()).to_owned()
    } else {
        message.to_owned()
    }
}

/// The session of a settling event; built from the event if the server left
/// it out.
fn settled_session(event: SessionEvent) -> Session {
    let state = event.state;
    event.session.unwrap_or_else(|| Session {
        id: event.session_id,
        state,
        ..Session::default()
    })
}
