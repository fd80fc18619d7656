//! When to try a delivery again, and after how long: exponential back-off
//! from the webhook's `retry_base` (1 s, 2 s, 4 s...), or the receiver's
//! `Retry-After` when it asks for longer, both within [`MAX_DELAY`].

use std::time::Duration;

use http::StatusCode;

use super::client::{AttemptError, Reply};

/// The longest wait between two attempts, whatever a receiver asks.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// What an attempt's outcome means for the delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt; `asked`: the receiver's `Retry-After`.
    Retry {
        asked: Option<Duration>,
    },
    /// The receiver refused it; another attempt would be refused too.
    Refused(StatusCode),
}

/// 2xx is delivered; 408, 429 and 5xx (and no answer at all) are tried
/// again; any other status is final (redirects are not followed).
pub fn verdict(outcome: &Result<Reply, AttemptError>, now: jiff::Timestamp) -> Verdict {
    let reply = match outcome {
        Ok(reply) => reply,
        Err(_) => return Verdict::Retry { asked: None },
    };
    let status = reply.status;
    if status.is_success() {
        Verdict::Delivered
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Verdict::Retry {
            asked: reply
                .retry_after
                .as_deref()
                .and_then(|v| retry_after(v, now)),
        }
    } else {
        Verdict::Refused(status)
    }
}

/// The wait before attempt `next` (2 for the first retry).
pub fn delay(base: Duration, next: u32, asked: Option<Duration>) -> Duration {
    let doublings = next.saturating_sub(2).min(30);
    let backoff = base.saturating_mul(1 << doublings).min(MAX_DELAY);
    asked.map_or(backoff, |asked| asked.min(MAX_DELAY).max(backoff))
}

/// A `Retry-After` value: seconds, or an HTTP date.
fn retry_after(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let ms = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, retry_after: Option<&str>) -> Result<Reply, AttemptError> {
        Ok(Reply {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: retry_after.map(str::to_string),
        })
    }

    #[test]
    fn statuses() {
        let now = jiff::Timestamp::from_second(784_111_777).unwrap();
        assert_eq!(verdict(&reply(204, None), now), Verdict::Delivered);
        for status in [500, 502, 503, 408, 429] {
            assert_eq!(
                verdict(&reply(status, None), now),
                Verdict::Retry { asked: None },
                "{status}"
            );
        }
        for status in [400, 401, 404, 410, 301] {
            assert!(
                matches!(verdict(&reply(status, None), now), Verdict::Refused(_)),
                "{status}"
            );
        }
        let timeout = Err(AttemptError::Timeout(Duration::from_secs(1)));
        assert_eq!(verdict(&timeout, now), Verdict::Retry { asked: None });
        assert_eq!(
            verdict(&reply(429, Some("7")), now),
            Verdict::Retry {
                asked: Some(Duration::from_secs(7))
            }
        );
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            verdict(&reply(503, Some("Sun, 06 Nov 1994 08:50:07 GMT")), now),
            Verdict::Retry {
                asked: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            verdict(&reply(503, Some("soon")), now),
            Verdict::Retry { asked: None }
        );
    }

    #[test]
    fn back_off_doubles_and_retry_after_is_capped() {
        let base = Duration::from_secs(1);
        let waits: Vec<u64> = (2..=6).map(|n| delay(base, n, None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert_eq!(delay(base, 30, None), MAX_DELAY);
        assert_eq!(delay(base, 2, Some(Duration::from_secs(9))).as_secs(), 9);
        assert_eq!(delay(base, 4, Some(Duration::from_secs(1))).as_secs(), 4);
        assert_eq!(delay(base, 2, Some(Duration::from_secs(86_400))), MAX_DELAY);
    }
}
