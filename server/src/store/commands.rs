//! Work for a desktop's agent, as the store keeps it: a claim pushes a
//! command, the server holding the agent's `ReceiveCommands` stream takes
//! it (whichever server that is), the agent's `ReportCommand` finishes it,
//! and the claim reads the outcome and drops the row. The body (which may
//! hold a password hash) is cleared when the command is taken; a row left
//! by a server that stopped mid-claim is dropped an hour later.

use daas_api::v1::CommandOutcome;

/// How long a command's row outlives a claim that never came back for it.
pub const FORGET_AFTER_MS: i64 = 3_600_000;

/// Where a command stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandState {
    /// No agent has it yet.
    Waiting,
    /// An agent's stream has it; no outcome yet.
    Sent,
    /// The agent reported.
    Done {
        outcome: CommandOutcome,
        message: String,
    },
}

impl CommandState {
    pub(super) fn from_row(state: &str, outcome: Option<i32>, message: Option<String>) -> Self {
        match state {
            "waiting" => CommandState::Waiting,
            "sent" => CommandState::Sent,
            _ => CommandState::Done {
                outcome: outcome
                    .and_then(|o| CommandOutcome::try_from(o).ok())
                    .unwrap_or(CommandOutcome::Unspecified),
                message: message.unwrap_or_default(),
            },
        }
    }
}

/// A command taken for an agent's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenCommand {
    pub id: i64,
    /// The encoded `daas.v1.AgentCommand`.
    pub body: Vec<u8>,
}

/// Which commands [`crate::store::SessionStore::drop_command`] drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropIf {
    /// Only one no agent has taken (a withdrawal: it will never run).
    Waiting,
    /// Whatever its state.
    Any,
}
