//! Page tokens of the lists (opaque to clients) and the `since` of the
//! audit trail's.

use crate::{domain::error::Error, store::PageCursor, store::SessionRecord};

fn bad_token() -> Error {
    Error::InvalidArgument {
        field: "page_token",
        why: "is not a token this server gave; start again without it".into(),
    }
}

/// The token of the page after `last`.
pub fn page_token(last: &SessionRecord) -> String {
    format!("{}.{}", last.created_ms, last.id)
}

pub fn parse_page_token(token: &str) -> Result<PageCursor, Error> {
    let (ms, id) = token.split_once('.').ok_or_else(bad_token)?;
    let created_ms = ms.parse::<i64>().map_err(|_| bad_token())?;
    uuid::Uuid::parse_str(id).map_err(|_| bad_token())?;
    Ok(PageCursor {
        created_ms,
        id: id.to_string(),
    })
}

/// The position an audit page token names: (time_ms, id).
pub fn parse_audit_token(token: &str) -> Result<(i64, i64), Error> {
    let (ms, id) = token.split_once('.').ok_or_else(bad_token)?;
    Ok((
        ms.parse().map_err(|_| bad_token())?,
        id.parse().map_err(|_| bad_token())?,
    ))
}

/// A `since` in ms since the epoch; a time outside years 1-9999 (as
/// google.protobuf.Timestamp allows) is refused.
pub fn since_ms(t: prost_types::Timestamp) -> Result<i64, Error> {
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    if !(MIN..=MAX).contains(&t.seconds) || !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::InvalidArgument {
            field: "since",
            why: "is not a time between the years 1 and 9999".into(),
        });
    }
    Ok(t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
}
