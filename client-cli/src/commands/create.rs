//! `daas create`: create a desktop and follow its provisioning.

use std::time::Duration;

use daas_api::v1::{CreateSessionRequest, SessionState};

use super::conclude;
use crate::cli::CreateArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::follow::follow;
use crate::password;
use crate::replicas::Replicas;

/// The pauses before going over the servers again when all were down, so
/// that a create outlives a server restarting.
const PAUSES: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(2)];

pub async fn run(ctx: &Context, args: CreateArgs) -> Result<(), CliError> {
    let session_password = password::resolve(args.session_user.as_deref(), args.password_stdin)?;
    let request = CreateSessionRequest {
        // Empty: the caller, as the client certificate names them.
        username: args.user.unwrap_or_default(),
        session_user: args.session_user.unwrap_or_default(),
        session_password: session_password.unwrap_or_default(),
        template: args.template.unwrap_or_default(),
        size: args.size.unwrap_or_default(),
        // Empty: the caller's organisation (the server picks it).
        org: args.org.unwrap_or_default(),
        request_id: args.request_id.unwrap_or_else(new_request_id),
    };
    let mut servers = Replicas::new(&ctx.server, PAUSES)?;
    // A create lost on the way (its server going away, before or after it
    // answered) is sent again, to the same server or the next, with the
    // same request id: the server never makes two desktops of it, but
    // streams the first one's events again, of which `follow` prints only
    // those it has not printed yet.
    let open = |mut client: crate::channel::Client, _after| {
        let request = request.clone();
        async move { client.create_session(request).await }
    };
    let session = follow(ctx, &mut servers, open, None).await?;
    if session.state() == SessionState::Destroyed {
        return Err(CliError::DestroyedBeforeReady(session.id));
    }
    conclude(ctx, &session)
}

/// A request id for a create the user gave none: 32 random hex digits (a
/// UUID v4 without its dashes), which the server accepts (1-64 letters,
/// digits, '.', '_', ':', '-').
fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_and_new_each_time() {
        let (first, second) = (new_request_id(), new_request_id());
        for id in [&first, &second] {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        }
        assert_ne!(first, second);
    }
}
