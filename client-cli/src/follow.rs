//! Following a session's event stream (CreateSession, WatchSession) until the
//! session settles, printing each event as text or JSON. When the server
//! goes away midway, the stream is opened again on the next server and
//! picks up after the last event printed: each event is printed once.

use std::future::Future;
use std::io::IsTerminal;

use daas_api::v1::{Session, SessionEvent};
use tonic::{Response, Status, Streaming};

use crate::channel::{Client, Trouble};
use crate::context::Context;
use crate::error::{CliError, code_name, one_line};
use crate::json;
use crate::progress::Progress;
use crate::replicas::Replicas;

/// A session's events as one call gives them.
pub type Events = Streaming<SessionEvent>;

/// Where a stream stands: what was printed, and of which session.
struct Followed {
    /// The session's id, once known.
    id: Option<String>,
    /// The sequence number of the last event printed (0: none).
    last: u64,
    /// The session as of the last event, while it is settled.
    settled: Option<Session>,
}

/// Reads the session's events to their end, which the server puts right
/// after the event that settles the session (READY, FAILED or DESTROYED; a
/// replay can pass READY on its way to DESTROYED), and returns the session
/// as that last event gives it.
///
/// `open(client, after)` makes the call on a server, asking for the events
/// after sequence `after` where the call can (WatchSession); events it
/// sends again are skipped. It is called again on the next server when the
/// one in use goes away. `known_id` is the session's id when the caller
/// knows it already.
pub async fn follow<F, Fut>(
    ctx: &Context,
    servers: &mut Replicas<'_>,
    mut open: F,
    known_id: Option<&str>,
) -> Result<Session, CliError>
where
    F: FnMut(Client, u64) -> Fut,
    Fut: Future<Output = Result<Response<Events>, Status>>,
{
    let mut progress =
        (!ctx.json).then(|| Progress::new(std::io::stdout().is_terminal(), ctx.verbose));
    let mut followed = Followed {
        id: known_id.map(str::to_owned),
        last: 0,
        settled: None,
    };
    // The server that went away midway, and why, until the next one takes over.
    let mut lost: Option<String> = None;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let opened = tokio::select! {
            opened = open_on_next(servers, &mut open, followed.last) => opened,
            _ = &mut interrupted => return Err(interrupted_error(&mut progress, &followed)),
        };
        let mut stream = match opened {
            Ok(Opened::Stream(stream)) => stream,
            Ok(Opened::Down) => continue,
            Ok(Opened::Answer(status)) => {
                drop(progress.take());
                return Err(stream_error(servers, &followed, &status));
            }
            Err(err) => return Err(broken(&mut progress, &followed, err)),
        };
        if let (Some(why), Some(id), Some(now)) = (lost.take(), &followed.id, servers.server_name())
        {
            note(
                progress.as_ref(),
                &format!("{why}; following session {id} on {now}"),
            );
        }
        match read(
            &mut stream,
            servers,
            &mut progress,
            &mut followed,
            &mut interrupted,
        )
        .await?
        {
            Read::Settled(session) => return Ok(*session),
            Read::Lost(why) => lost = why,
        }
    }
}

/// How a stream that was read to its end ended.
enum Read {
    /// The session settled, as it is now.
    Settled(Box<Session>),
    /// The server went away: why, to say once the next server takes over
    /// (when events were printed).
    Lost(Option<String>),
}

/// Reads `stream`, printing what `followed` has not printed yet, to its end.
async fn read<I>(
    stream: &mut Events,
    servers: &mut Replicas<'_>,
    progress: &mut Option<Progress>,
    followed: &mut Followed,
    interrupted: &mut I,
) -> Result<Read, CliError>
where
    I: Future<Output = std::io::Result<()>> + Unpin,
{
    let mut fresh = true;
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = &mut *interrupted => return Err(interrupted_error(progress, followed)),
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => {
                drop(progress.take());
                return match (followed.settled.take(), &followed.id) {
                    (Some(session), _) => Ok(Read::Settled(Box::new(session))),
                    (None, Some(id)) => Err(CliError::StreamEnded(id.clone())),
                    (None, None) => Err(CliError::StreamEndedEmpty),
                };
            }
            Err(status) => match servers.trouble(&status, fresh).await {
                Some(Trouble::Down(detail)) => {
                    let why = (followed.last > 0).then(|| {
                        let name = servers.server_name().unwrap_or_default();
                        format!("{name} went away ({detail})")
                    });
                    servers.lost(detail);
                    return Ok(Read::Lost(why));
                }
                Some(Trouble::Fatal(err)) => return Err(broken(progress, followed, err)),
                None => {
                    drop(progress.take());
                    return Err(stream_error(servers, followed, &status));
                }
            },
        };
        fresh = false;
        servers.answered();
        show(progress, followed, event)?;
    }
}

/// What opening the stream on a server gave.
enum Opened {
    Stream(Box<Events>),
    /// The server turned out to be down: the next one is up.
    Down,
    /// The server refused the call (NOT_FOUND, PERMISSION_DENIED, ...).
    Answer(Status),
}

/// Opens the stream on the server in use, else on the next one up.
async fn open_on_next<F, Fut>(
    servers: &mut Replicas<'_>,
    open: &mut F,
    after: u64,
) -> Result<Opened, CliError>
where
    F: FnMut(Client, u64) -> Fut,
    Fut: Future<Output = Result<Response<Events>, Status>>,
{
    let client = servers.client().await?;
    let status = match open(client, after).await {
        Ok(response) => return Ok(Opened::Stream(Box::new(response.into_inner()))),
        Err(status) => status,
    };
    match servers.trouble(&status, true).await {
        Some(Trouble::Down(detail)) => {
            servers.lost(detail);
            Ok(Opened::Down)
        }
        Some(Trouble::Fatal(err)) => Err(err),
        None => Ok(Opened::Answer(status)),
    }
}

/// Prints `event` unless it was printed already (a stream opened again
/// replays what came before), and keeps track of the session.
fn show(
    progress: &mut Option<Progress>,
    followed: &mut Followed,
    event: SessionEvent,
) -> Result<(), CliError> {
    if event.sequence <= followed.last {
        return Ok(());
    }
    match &followed.id {
        Some(id) if !event.session_id.is_empty() && event.session_id != *id => {
            drop(progress.take());
            return Err(CliError::OtherSession {
                id: id.clone(),
                got: event.session_id,
            });
        }
        Some(_) => {}
        None if event.session_id.is_empty() => {}
        None => followed.id = Some(event.session_id.clone()),
    }
    match progress.as_mut() {
        Some(progress) => progress.event(&event)?,
        None => json::print(&json::event(&event))?,
    }
    followed.last = event.sequence;
    if !event.state().is_settled() {
        followed.settled = None;
    } else if event.session.is_some() || followed.settled.is_none() {
        followed.settled = Some(settled_session(event));
    }
    Ok(())
}

/// A line on stderr, above the spinner if any.
fn note(progress: Option<&Progress>, text: &str) {
    let line = format!("daas: {}", one_line(text));
    match progress {
        Some(progress) => progress.note(&line),
        None => eprintln!("{line}"),
    }
}

/// The error of a stream that could not go on: `err` as it is before any
/// event, else the stream's end with `err` as the cause.
fn broken(progress: &mut Option<Progress>, followed: &Followed, err: CliError) -> CliError {
    drop(progress.take());
    match &followed.id {
        Some(id) if followed.last > 0 => CliError::StreamBroken {
            id: id.clone(),
            cause: one_line(&err.to_string()),
        },
        _ => err,
    }
}

/// The error of a stream the server ended with an error of its own.
fn stream_error(servers: &Replicas<'_>, followed: &Followed, status: &Status) -> CliError {
    match &followed.id {
        Some(id) if followed.last > 0 => CliError::StreamBroken {
            id: id.clone(),
            cause: one_line(&broken_stream_cause(status)),
        },
        // Before the first event the call itself failed: say why plainly.
        id => CliError::from_answer(status, servers.endpoint(), id.as_deref()),
    }
}

fn interrupted_error(progress: &mut Option<Progress>, followed: &Followed) -> CliError {
    drop(progress.take());
    match &followed.id {
        Some(id) => CliError::Interrupted(id.clone()),
        None => CliError::InterruptedEarly,
    }
}

/// Why the server ended a stream that had started: its own words, else
/// the status's code.
fn broken_stream_cause(status: &Status) -> String {
    let message = status.message().trim();
    if message.is_empty() {
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
