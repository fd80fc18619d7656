//! The webhook outbox: a delivery row per webhook that wants an event,
//! written in the transaction that stores the event (the webhooks tell the
//! store which they want: [`crate::store::events::Outbox`]), so a crash
//! between the event and its POST loses nothing. Any server takes due rows
//! (`claim_deliveries`: a row nobody holds, or whose holder's time ran
//! out), keeps holding them while it delivers (`hold_deliveries`) and
//! deletes each once settled (`finish_delivery`). A server that dies
//! mid-delivery leaves its rows to be taken again: at least once, with the
//! row's id as the delivery id a receiver deduplicates by.

/// A delivery to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The delivery id (`X-Daas-Delivery`), the same at every attempt.
    pub id: String,
    /// The webhook's name.
    pub webhook: String,
    pub session_id: String,
    /// The event's sequence number in its session.
    pub sequence: u64,
    pub created_ms: i64,
    /// A notice about no session (session id empty), kept whole: what the
    /// webhooks wrote into [`Told`].
    pub notice: Option<String>,
}

/// Deliveries of a notice about no session (a scheduled create refused),
/// written with the record of what happened: the webhooks that want it,
/// and the notice as they will read it back (opaque to the store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Told {
    pub webhooks: Vec<String>,
    pub notice: String,
}
