//! `daas schedule add|list|remove`: desktops made ready at a time of day
//! on some days, as text or JSON.

use daas_api::v1::{AddScheduleRequest, ListSchedulesRequest, RemoveScheduleRequest, Schedule};
use jiff::tz::TimeZone;
use tonic::{Code, Status};

use super::{print, servers};
use crate::channel::Trouble;
use crate::cli::{ScheduleAddArgs, ScheduleCommand};
use crate::context::Context;
use crate::error::{CliError, is_transport_status};
use crate::replicas::Replicas;
use crate::{caller, json, render};

pub async fn run(ctx: &Context, command: ScheduleCommand) -> Result<(), CliError> {
    match command {
        ScheduleCommand::Add(args) => add(ctx, args).await,
        ScheduleCommand::List(args) => list(ctx, args.user).await,
        ScheduleCommand::Remove(arg) => remove(ctx, arg.id).await,
    }
}

/// Adds a schedule (AddSchedule) and shows it.
async fn add(ctx: &Context, args: ScheduleAddArgs) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    // Empty: the caller, the server's time zone, the defaults, the
    // caller's organisation.
    let request = AddScheduleRequest {
        username: args.user.unwrap_or_default(),
        at: args.at,
        days: args.days,
        timezone: args.timezone.unwrap_or_default(),
        template: args.template.unwrap_or_default(),
        size: args.size.unwrap_or_default(),
        org: args.org.unwrap_or_default(),
    };
    let schedule = add_once(&mut servers, request)
        .await?
        .map_err(|status| schedule_error(&status, servers.endpoint(), None))?;
    if ctx.json {
        json::print(&json::schedule(&schedule))
    } else {
        print(&render::schedule_details(&schedule, &TimeZone::system()))
    }
}

/// AddSchedule on the server in use. It has no idempotency key, so it goes
/// to the next server only when it surely did not take effect: the server
/// could not be reached, or answered UNAVAILABLE. When the connection
/// breaks midway, the schedule may have been added: sent again, it would
/// make two, so the user is told to look.
async fn add_once(
    servers: &mut Replicas<'_>,
    request: AddScheduleRequest,
) -> Result<Result<Schedule, Status>, CliError> {
    loop {
        let mut client = servers.client().await?;
        let status = match client.add_schedule(request.clone()).await {
            Ok(response) => {
                servers.answered();
                return Ok(Ok(response.into_inner()));
            }
            Err(status) => status,
        };
        match servers.trouble(&status, true).await {
            None => {
                servers.answered();
                return Ok(Err(status));
            }
            Some(Trouble::Fatal(err)) => return Err(err),
            Some(Trouble::Down(detail)) if sent_again(&status) => servers.lost(detail),
            Some(Trouble::Down(detail)) => {
                return Err(CliError::AddCutOff {
                    endpoint: servers.endpoint().to_owned(),
                    detail,
                });
            }
        }
    }
}

/// Whether an AddSchedule that failed with `status` (a server down) goes to
/// the next server: only when the server itself refused it (UNAVAILABLE),
/// not when the connection broke (the client's transport made the status).
fn sent_again(status: &Status) -> bool {
    !is_transport_status(status)
}

/// Lists the schedules (ListSchedules): the caller's, one user's, or for
/// an administrator everyone's.
async fn list(ctx: &Context, user: Option<String>) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let request = ListSchedulesRequest {
        username: user.unwrap_or_default(),
    };
    let schedules = servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.list_schedules(request).await }
        })
        .await?
        .map_err(|status| schedule_error(&status, servers.endpoint(), None))?
        .schedules;
    if ctx.json {
        json::print(&schedules.iter().map(json::schedule).collect())
    } else if schedules.is_empty() {
        print("no schedules; add one with: daas schedule add --at HH:MM --days DAYS")
    } else {
        let caller = caller::user(&ctx.server, servers.endpoint());
        print(&render::schedule_table(&schedules, caller.as_deref()))
    }
}

/// Removes schedule `id` (RemoveSchedule). Sent again to the next server
/// if one goes away meanwhile: the second time, a schedule the first
/// server removed is NOT_FOUND.
async fn remove(ctx: &Context, id: String) -> Result<(), CliError> {
    let mut servers = servers(ctx)?;
    let request = RemoveScheduleRequest {
        schedule_id: id.clone(),
    };
    let schedule = servers
        .call(|mut client| {
            let request = request.clone();
            async move { client.remove_schedule(request).await }
        })
        .await?
        .map_err(|status| schedule_error(&status, servers.endpoint(), Some(&id)))?;
    if ctx.json {
        json::print(&json::schedule(&schedule))
    } else {
        print(&render::schedule_removed(&schedule))
    }
}

/// A schedule call's answer from the server at `endpoint`: an unknown
/// schedule `id`, or a server without schedules; the rest
/// (INVALID_ARGUMENT naming the field, RESOURCE_EXHAUSTED past the
/// schedules a user may have, PERMISSION_DENIED for another user's, ...)
/// as for any call.
fn schedule_error(status: &Status, endpoint: &str, id: Option<&str>) -> CliError {
    match (status.code(), id) {
        (Code::NotFound, Some(id)) => CliError::NoSchedule(id.to_owned()),
        (Code::Unimplemented, _) => CliError::NoScheduleSupport(endpoint.to_owned()),
        _ => CliError::from_answer(status, endpoint, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "http://127.0.0.1:50051";

    #[test]
    fn an_unknown_schedule_is_named() {
        let id = "0b7e4c1a-2f1d-4d8e-9a61-5c3b2e7f9d10";
        let err = schedule_error(&Status::not_found("no schedule"), ENDPOINT, Some(id));
        assert_eq!(
            err.to_string(),
            format!("no schedule {id}; list them with: daas schedule list")
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn a_bad_field_or_a_refusal_is_the_servers_message() {
        let status = Status::invalid_argument("at must be HH:MM (00:00-23:59), not \"25:00\"");
        let err = schedule_error(&status, ENDPOINT, None);
        assert_eq!(
            err.to_string(),
            "at must be HH:MM (00:00-23:59), not \"25:00\""
        );
        assert_eq!(err.exit_code(), 2);
        let status = Status::resource_exhausted("alice has 10 schedules, the most a user may have");
        let err = schedule_error(&status, ENDPOINT, None);
        assert_eq!(
            err.to_string(),
            "alice has 10 schedules, the most a user may have"
        );
        let status = Status::permission_denied("you may remove only your own schedules");
        let err = schedule_error(&status, ENDPOINT, Some("0b7e"));
        assert_eq!(err.to_string(), "you may remove only your own schedules");
    }

    #[test]
    fn an_older_server_says_so() {
        for id in [None, Some("0b7e")] {
            let err = schedule_error(&Status::unimplemented(""), ENDPOINT, id);
            assert_eq!(
                err.to_string(),
                "the server at http://127.0.0.1:50051 does not support schedules (UNIMPLEMENTED)"
            );
        }
    }

    #[test]
    fn an_add_goes_to_the_next_server_only_when_it_surely_did_not_take_effect() {
        // The server refused it (shutting down): nothing was added.
        assert!(sent_again(&Status::unavailable(
            "the server is shutting down"
        )));
        // The connection broke (the client's transport made the status):
        // the server may have added it.
        let broken = Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(!sent_again(&broken));
        let err = CliError::AddCutOff {
            endpoint: "https://a:1".into(),
            detail: "Connection reset by peer".into(),
        };
        assert_eq!(
            err.to_string(),
            "the connection to https://a:1 broke during the add (Connection reset by peer); \
             the schedule may have been added: check with `daas schedule list` before adding \
             it again"
        );
        assert_eq!(err.exit_code(), 2);
    }
}
