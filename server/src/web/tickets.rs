//! Gateway tickets: single-use, short-lived, bound to one session and the
//! signed-in user who asked for it. The browser gets the ticket, never the
//! desktop's address; the gateway redeems it once.

use std::time::Duration;

use ring::digest;

use crate::{
    domain::time::now_ms,
    store::{
        Store,
        tickets::{Issued, TicketLimits, TicketRecord},
    },
};

/// Outstanding tickets at most.
const MAX_TICKETS: usize = 10_000;
/// Outstanding tickets of one user at most (each opens one desktop tab).
pub const MAX_TICKETS_PER_USER: usize = 8;

/// The tickets, kept in the store by the SHA-256 of their value: a ticket
/// one server issued opens on any server sharing the store, once.
pub struct Tickets {
    ttl: Duration,
    store: Store,
}

/// Why a ticket opens nothing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is unknown or was used already: open the desktop again from the page")]
    Unknown,
    #[error("the ticket expired: open the desktop again from the page")]
    Expired,
    #[error("the ticket was issued to another user")]
    OtherUser,
    #[error("tickets cannot be checked now (the store failed): try again in a moment")]
    Unavailable,
}

/// Why no ticket was issued: one that could not work is never handed out.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    #[error(
        "you have {MAX_TICKETS_PER_USER} desktop tabs opening already: wait a few seconds and try again"
    )]
    UserFull,
    #[error("the portal is opening too many desktops at once: try again in a few seconds")]
    Full,
    #[error("the portal cannot issue a ticket now (the store failed): try again in a moment")]
    Unavailable,
}

/// What the store knows a ticket by.
fn hash(value: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, value.as_bytes()))
}

impl Tickets {
    pub fn new(ttl: Duration, store: Store) -> Tickets {
        Tickets { ttl, store }
    }

    /// How long a ticket lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A ticket for `user` to open session `session_id`.
    pub async fn issue(&self, session_id: &str, user: &str) -> Result<String, IssueError> {
        let value = super::signin::random_hex();
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let ticket = TicketRecord {
            hash: hash(&value),
            session_id: session_id.to_string(),
            user: user.to_string(),
            expires_ms: now_ms().saturating_add(ttl_ms),
        };
        let limits = TicketLimits {
            per_user: MAX_TICKETS_PER_USER,
            total: MAX_TICKETS,
        };
        match self.store.issue_ticket(ticket, limits).await {
            Ok(Issued::Issued) => Ok(value),
            Ok(Issued::UserFull) => Err(IssueError::UserFull),
            Ok(Issued::Full) => Err(IssueError::Full),
            Err(err) => {
                tracing::error!(error = %err, "cannot keep a gateway ticket");
                Err(IssueError::Unavailable)
            }
        }
    }

    /// Uses the ticket up (whatever the outcome) and returns its session.
    pub async fn redeem(&self, value: &str, user: &str) -> Result<String, TicketError> {
        let ticket = match self.store.redeem_ticket(&hash(value)).await {
            Ok(Some(ticket)) => ticket,
            Ok(None) => return Err(TicketError::Unknown),
            Err(err) => {
                tracing::error!(error = %err, "cannot redeem a gateway ticket");
                return Err(TicketError::Unavailable);
            }
        };
        if ticket.expires_ms <= now_ms() {
            return Err(TicketError::Expired);
        }
        if ticket.user != user {
            return Err(TicketError::OtherUser);
        }
        Ok(ticket.session_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tickets(ttl: Duration) -> (tempfile::TempDir, Tickets) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite3")).unwrap();
        (dir, Tickets::new(ttl, store))
    }

    #[tokio::test]
    async fn a_ticket_opens_once_for_its_user() {
        let (_dir, tickets) = tickets(Duration::from_secs(30));
        let t = tickets.issue("s1", "alice").await.unwrap();
        assert_eq!(tickets.redeem(&t, "alice").await, Ok("s1".into()));
        assert_eq!(tickets.redeem(&t, "alice").await, Err(TicketError::Unknown));
        let t = tickets.issue("s1", "alice").await.unwrap();
        assert_eq!(tickets.redeem(&t, "bob").await, Err(TicketError::OtherUser));
        // Used up by the failed attempt too.
        assert_eq!(tickets.redeem(&t, "alice").await, Err(TicketError::Unknown));
    }

    #[tokio::test]
    async fn a_user_holds_a_few_tickets_and_never_one_that_cannot_work() {
        let (_dir, tickets) = tickets(Duration::from_secs(30));
        let mut mine = Vec::new();
        for _ in 0..MAX_TICKETS_PER_USER {
            mine.push(tickets.issue("s1", "alice").await.unwrap());
        }
        assert_eq!(
            tickets.issue("s1", "alice").await,
            Err(IssueError::UserFull)
        );
        assert!(tickets.issue("s2", "bob").await.is_ok());
        assert_eq!(tickets.redeem(&mine[0], "alice").await, Ok("s1".into()));
        let again = tickets.issue("s1", "alice").await.unwrap();
        assert_eq!(tickets.redeem(&again, "alice").await, Ok("s1".into()));
    }

    #[tokio::test]
    async fn tickets_expire_and_the_store_keeps_only_their_hash() {
        let (dir, tickets) = tickets(Duration::from_millis(20));
        let t = tickets.issue("s1", "alice").await.unwrap();
        let db = std::fs::read(dir.path().join("db.sqlite3")).unwrap_or_default();
        let wal = std::fs::read(dir.path().join("db.sqlite3-wal")).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(tickets.redeem(&t, "alice").await, Err(TicketError::Expired));
    }
}
