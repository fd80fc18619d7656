//! What every part of the server agrees on: the session state machine,
//! request validation, and the errors with their codes.

pub mod catalog;
pub mod contract;
pub mod error;
pub mod identity;
pub mod orgs;
pub mod password;
pub mod placement;
pub mod recurrence;
pub mod state_machine;
pub mod time;
pub mod validate;
