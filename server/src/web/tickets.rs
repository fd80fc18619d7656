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
    pub fn issue(&self, session_id: &str, user: &str) -> String {
        let value = super::signin::random_hex();
        let now = Instant::now();
        let mut map = self.by_value.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, t| t.expires > now);
        if map.len() >= MAX_TICKETS {
            return value; // Not stored: it will be refused as unknown.
        }
        map.insert(
            value.clone(),
            Ticket {
                session_id: session_id.to_string(),
                user: user.to_string(),
                expires: now + self.ttl,
            },
        );
        value
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
        let t = tickets.issue("s1", "alice");
        assert_eq!(tickets.redeem(&t, "alice"), Ok("s1".into()));
        assert_eq!(tickets.redeem(&t, "alice"), Err(TicketError::Unknown));
        let t = tickets.issue("s1", "alice");
        assert_eq!(tickets.redeem(&t, "bob"), Err(TicketError::OtherUser));
        // Used up by the failed attempt too.
        assert_eq!(tickets.redeem(&t, "alice"), Err(TicketError::Unknown));
    }

    #[test]
    fn tickets_expire() {
        let tickets = Tickets::new(Duration::from_millis(20));
        let t = tickets.issue("s1", "alice");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(tickets.redeem(&t, "alice"), Err(TicketError::Expired));
    }
}
