//! `daas audit`: the audit trail (administrators only), newest first, as a
//! table or as JSON lines.

use std::time::{Duration, SystemTime};

use daas_api::v1::{AuditEntry, ListAuditRequest};
use tonic::{Code, Status};

use super::{print, servers};
use crate::cli::AuditArgs;
use crate::context::Context;
use crate::error::CliError;
use crate::replicas::Replicas;
use crate::{json, render};

/// The most entries the server returns in one page.
const MAX_PAGE: u32 = 1000;

pub async fn run(ctx: &Context, args: AuditArgs) -> Result<(), CliError> {
    let since = match args.since.as_deref() {
        Some(when) => Some(parse_since(when, SystemTime::now())?),
        None => None,
    };
    let filter = ListAuditRequest {
        username: args.user.unwrap_or_default(),
        session_id: args.session.unwrap_or_default(),
        org: args.org.unwrap_or_default(),
        since: since.map(prost_types::Timestamp::from),
        ..ListAuditRequest::default()
    };
    let mut servers = servers(ctx)?;
    let (entries, more) = newest(&mut servers, filter, args.limit).await?;
    if ctx.json {
        for entry in &entries {
            json::print(&json::audit_entry(entry))?;
        }
        Ok(())
    } else if entries.is_empty() {
        print("no audit entries")
    } else {
        print(&render::audit_table(&entries))?;
        if more {
            eprintln!(
                "(the newest {} entries; older ones with a higher --limit)",
                entries.len()
            );
        }
        Ok(())
    }
}

/// The newest `limit` entries matching `filter`, page after page, and
/// whether older ones are left.
async fn newest(
    servers: &mut Replicas<'_>,
    filter: ListAuditRequest,
    limit: u32,
) -> Result<(Vec<AuditEntry>, bool), CliError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut page_token = String::new();
    loop {
        let left = u32::try_from(limit - entries.len()).unwrap_or(u32::MAX);
        let request = ListAuditRequest {
            page_size: left.min(MAX_PAGE),
            page_token,
            ..filter.clone()
        };
        let page = servers
            .call(|mut client| {
                let request = request.clone();
                async move { client.list_audit(request).await }
            })
            .await?
            .map_err(|status| audit_error(&status, servers.endpoint()))?;
        let empty = page.entries.is_empty();
        entries.extend(page.entries);
        if entries.len() >= limit {
            let more = entries.len() > limit || !page.next_page_token.is_empty();
            entries.truncate(limit);
            return Ok((entries, more));
        }
        // An empty page with a token would never end.
        if page.next_page_token.is_empty() || empty {
            return Ok((entries, false));
        }
        page_token = page.next_page_token;
    }
}

/// A ListAudit answer from the server at `endpoint`: a server without the
/// call; the rest (PERMISSION_DENIED for a non-administrator, ...) as for
/// any call.
fn audit_error(status: &Status, endpoint: &str) -> CliError {
    match status.code() {
        Code::Unimplemented => CliError::NoAuditSupport(endpoint.to_owned()),
        _ => CliError::from_answer(status, endpoint, None),
    }
}

/// `--since`: a duration before `now` (`30m`, `1h`, `2d`) or an RFC 3339
/// time (`2025-01-31T09:00:00Z`, `2025-01-31T10:00:00+01:00`).
fn parse_since(when: &str, now: SystemTime) -> Result<SystemTime, CliError> {
    let usage = || {
        CliError::Usage(format!(
            "invalid --since `{when}`: give a duration ago (30m, 1h, 2d) or an RFC 3339 \
             time (2025-01-31T09:00:00Z)"
        ))
    };
    let text = when.trim();
    if text.starts_with(|c: char| c.is_ascii_digit()) && !text.contains(['-', ':']) {
        let ago = humantime::parse_duration(text).map_err(|_| usage())?;
        // Further back than 1970: everything kept.
        return Ok(now
            .checked_sub(ago)
            .filter(|t| *t >= SystemTime::UNIX_EPOCH)
            .unwrap_or(SystemTime::UNIX_EPOCH));
    }
    parse_rfc3339(text).ok_or_else(usage)
}

/// An RFC 3339 time: `YYYY-MM-DDTHH:MM:SS[.frac]` then `Z` or `±HH:MM`.
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.to_ascii_uppercase();
    if text.ends_with('Z') {
        return humantime::parse_rfc3339(&text).ok();
    }
    let split = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..split)?, text.get(split..)?);
    let (sign, hours, minutes) = match offset.as_bytes() {
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            (*sign, two_digits(*h1, *h2)?, two_digits(*m1, *m2)?)
        }
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    let local = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    let offset = Duration::from_secs(hours * 3600 + minutes * 60);
    // Local time = UTC + offset.
    if sign == b'+' {
        local.checked_sub(offset)
    } else {
        local.checked_add(offset)
    }
}

fn two_digits(tens: u8, units: u8) -> Option<u64> {
    (tens.is_ascii_digit() && units.is_ascii_digit())
        .then(|| u64::from(tens - b'0') * 10 + u64::from(units - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn durations_are_before_now() {
        let now = at(1_700_000_000);
        for (text, ago) in [
            ("30m", 1800),
            ("1h", 3600),
            ("2d", 2 * 86_400),
            ("90s", 90),
            ("1h30m", 5400),
            (" 1h ", 3600),
        ] {
            assert_eq!(
                parse_since(text, now).ok(),
                Some(at(1_700_000_000 - ago)),
                "{text}"
            );
        }
        assert_eq!(parse_since("100y", now).ok(), Some(at(0)), "before 1970");
    }

    #[test]
    fn rfc3339_times_with_any_offset() {
        let now = at(0);
        let utc = at(1_738_314_000); // 2025-01-31T09:00:00Z
        for text in [
            "2025-01-31T09:00:00Z",
            "2025-01-31t09:00:00z",
            "2025-01-31T10:00:00+01:00",
            "2025-01-31T04:30:00-04:30",
            "2025-01-31T09:00:00+00:00",
            "2025-01-31T09:00:00-00:00",
        ] {
            assert_eq!(parse_since(text, now).ok(), Some(utc), "{text}");
        }
        assert_eq!(
            parse_since("2025-01-31T09:00:00.250Z", now).ok(),
            Some(utc + Duration::from_millis(250))
        );
    }

    #[test]
    fn anything_else_is_a_usage_error() {
        for text in [
            "",
            "yesterday",
            "1 fortnight",
            "-1h",
            "1",
            "2025-01-31",
            "2025-01-31T09:00:00",
            "2025-01-31 09:00",
            "2025-01-31T09:00:00+0100",
            "2025-01-31T09:00:00+25:00",
            "2025-13-01T00:00:00Z",
            "99999999999999999999y",
        ] {
            let err = parse_since(text, at(1_700_000_000)).err();
            assert_eq!(err.as_ref().map(CliError::exit_code), Some(2), "{text}");
            let message = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.starts_with(&format!("invalid --since `{text}`: give a duration ago")),
                "{message}"
            );
        }
    }

    const ENDPOINT: &str = "http://127.0.0.1:50051";

    #[test]
    fn a_refusal_is_the_servers_message() {
        let status = Status::permission_denied("only administrators may read the audit trail");
        let err = audit_error(&status, ENDPOINT);
        assert_eq!(
            err.to_string(),
            "only administrators may read the audit trail"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn an_older_server_says_so() {
        let err = audit_error(&Status::unimplemented(""), ENDPOINT);
        assert_eq!(
            err.to_string(),
            "the server at http://127.0.0.1:50051 does not support the audit trail (UNIMPLEMENTED)"
        );
    }
}
