//! Small facts about session states shared by the server and the clients.

use crate::v1::SessionState;

impl SessionState {
    /// A state after which a watch stream ends: nothing more happens to the
    /// session unless someone destroys it.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            SessionState::Ready
                | SessionState::Failed
                | SessionState::Destroyed
                | SessionState::Lost
        )
    }

    /// A state in which the server is working on the session (provisioning
    /// or destroying it).
    pub fn is_in_progress(self) -> bool {
        matches!(
            self,
            SessionState::Queued
                | SessionState::Provisioning
                | SessionState::Booting
                | SessionState::Configuring
                | SessionState::Destroying
        )
    }

    /// The short upper-case name users see, e.g. `READY`.
    pub fn label(self) -> &'static str {
        self.as_str_name()
            .strip_prefix("SESSION_STATE_")
            .unwrap_or("UNSPECIFIED")
    }

    /// Parses a label such as `ready` or `READY` (case-insensitive).
    pub fn from_label(label: &str) -> Option<Self> {
        Self::from_str_name(&format!("SESSION_STATE_{}", label.to_ascii_uppercase()))
            .filter(|s| *s != SessionState::Unspecified)
    }
}
