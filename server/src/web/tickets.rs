//! Gateway tickets: single-use, short-lived, bound to one session and the
//! signed-in user who asked for it. The browser gets the ticket, never the
//! desktop's address; the gateway redeems it once.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Outstanding tickets at most.
const MAX_TICKETS: usize = 10_000;
/// Outstanding tickets of one user at most (each opens one desktop tab).
pub const MAX_TICKETS_PER_USER: usize = 8;

struct Ticket {
    session_id: String,
    user: String,
    expires: Instant,
}

pub struct Tickets {
    ttl: Duration,
    by_value: Mutex<HashMap<String, Ticket>>,
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
}

impl Tickets {
    pub fn new(ttl: Duration) -> Tickets {
        Tickets {
            ttl,
            by_value: Mutex::new(HashMap::new()),
        }
    }

    /// How long a ticket lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A ticket for `user` to open session `session_id`.
    pub fn issue(&self, session_id: &str, user: &str) -> Result<String, IssueError> {
        let value = super::signin::random_hex();
        let now = Instant::now();
        let mut map = self.by_value.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, t| t.expires > now);
        if map.values().filter(|t| t.user == user).count() >= MAX_TICKETS_PER_USER {
            return Err(IssueError::UserFull);
        }
        if map.len() >= MAX_TICKETS {
            return Err(IssueError::Full);
        }
        map.insert(
            value.clone(),
            Ticket {
                session_id: session_id.to_string(),
                user: user.to_string(),
                expires: now + self.ttl,
            },
        );
        Ok(value)
    }

    /// Uses the ticket up (whatever the outcome) and returns its session.
    pub fn redeem(&self, value: &str, user: &str) -> Result<String, TicketError> {
        let mut map = self.by_value.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = map.remove(value).ok_or(TicketError::Unknown)?;
        if ticket.expires <= Instant::now() {
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

    #[test]
    fn a_ticket_opens_once_for_its_user() {
        let tickets = Tickets::new(Duration::from_secs(30));
        let t = tickets.issue("s1", "alice").unwrap();
        assert_eq!(tickets.redeem(&t, "alice"), Ok("s1".into()));
        assert_eq!(tickets.redeem(&t, "alice"), Err(TicketError::Unknown));
        let t = tickets.issue("s1", "alice").unwrap();
        assert_eq!(tickets.redeem(&t, "bob"), Err(TicketError::OtherUser));
        // Used up by the failed attempt too.
        assert_eq!(tickets.redeem(&t, "alice"), Err(TicketError::Unknown));
    }

    #[test]
    fn a_user_holds_a_few_tickets_and_never_one_that_cannot_work() {
        let tickets = Tickets::new(Duration::from_secs(30));
        let mine: Vec<String> = (0..MAX_TICKETS_PER_USER)
            .map(|_| tickets.issue("s1", "alice").unwrap())
            .collect();
        assert_eq!(tickets.issue("s1", "alice"), Err(IssueError::UserFull));
        assert!(tickets.issue("s2", "bob").is_ok());
        assert_eq!(tickets.redeem(&mine[0], "alice"), Ok("s1".into()));
        let again = tickets.issue("s1", "alice").unwrap();
        assert_eq!(tickets.redeem(&again, "alice"), Ok("s1".into()));
    }

    #[test]
    fn tickets_expire() {
        let tickets = Tickets::new(Duration::from_millis(20));
        let t = tickets.issue("s1", "alice").unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(tickets.redeem(&t, "alice"), Err(TicketError::Expired));
    }
}
