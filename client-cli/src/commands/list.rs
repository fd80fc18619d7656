//! `daas list`: the sessions, as a table or a JSON array.

use std::time::SystemTime;

use daas_api::v1::{ListSessionsRequest, SessionState};

use super::{print, servers};
use crate::cli::ListArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::{json, render};

pub async fn run(ctx: &Context, args: ListArgs) -> Result<(), CliError> {
    let state = match args.state.as_deref() {
        Some(label) => parse_state(label)?,
        None => SessionState::Unspecified,
    };
    let mut servers = servers(ctx)?;
    let mut sessions = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListSessionsRequest {
            username: args.user.clone().unwrap_or_default(),
            state: state as i32,
            page_size: 1000,
            page_token,
            org: args.org.clone().unwrap_or_default(),
        };
        // A page token is good on any server: a page goes to the next
        // server when the one in use goes away.
        let page = servers
            .call(|mut client| {
                let request = request.clone();
                async move { client.list_sessions(request).await }
            })
            .await?
            .map_err(|status| CliError::from_answer(&status, servers.endpoint(), None))?;
        sessions.extend(page.sessions);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    if ctx.json {
        json::print(&sessions.iter().map(json::session).collect())
    } else if sessions.is_empty() {
        print("no sessions")
    } else {
        print(&render::session_table(&sessions, SystemTime::now()))
    }
}

/// A state filter such as `ready` (any case).
fn parse_state(label: &str) -> Result<SessionState, CliError> {
    SessionState::from_label(label).ok_or_else(|| {
        let valid: Vec<String> = (1..)
            .map_while(|n| SessionState::try_from(n).ok())
            .map(|state| state.label().to_ascii_lowercase())
            .collect();
        CliError::Usage(format!(
            "unknown state `{label}`; valid states: {}",
            valid.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_in_any_case() {
        assert_eq!(parse_state("ready").ok(), Some(SessionState::Ready));
        assert_eq!(parse_state("READY").ok(), Some(SessionState::Ready));
        assert_eq!(
            parse_state("Provisioning").ok(),
            Some(SessionState::Provisioning)
        );
    }

    #[test]
    fn unknown_states_list_the_valid_ones() {
        for label in ["bogus", "unspecified", ""] {
            let err = parse_state(label).err();
            assert_eq!(err.as_ref().map(CliError::exit_code), Some(2));
            assert_eq!(
                err.map(|e| e.to_string()),
                Some(format!(
                    "unknown state `{label}`; valid states: queued, provisioning, booting, \
                     configuring, ready, failed, destroying, destroyed, lost"
                ))
            );
        }
    }
}
