//! The portal's gateway tickets as the store keeps them (see
//! `crate::web::tickets`): by the SHA-256 of their value, deleted when
//! redeemed, so a ticket opens once whichever server redeems it.

/// A ticket kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    /// SHA-256 of the ticket's value, hex.
    pub hash: String,
    pub session_id: String,
    pub user: String,
    pub expires_ms: i64,
}

/// How many unexpired tickets may be outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketLimits {
    pub per_user: usize,
    pub total: usize,
}

/// What issuing a ticket did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issued {
    Issued,
    /// The user holds `per_user` tickets already.
    UserFull,
    /// `total` tickets are outstanding.
    Full,
}
