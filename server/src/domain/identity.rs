//! Who acts: the [`Caller`] a client certificate (or the portal's sign-in)
//! names, and the [`Origin`] of the call, as the services, the audit trail
//! and the rules on who may act on which session see them. Reading them
//! from a certificate is `pki`'s business, attaching them to a request the
//! API's.

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person, by the user name their certificate (or sign-in) carries,
    /// with the groups it names (the catalog's templates are by group).
    User {
        name: String,
        admin: bool,
        groups: Vec<String>,
    },
    /// The agent inside one session's VM.
    Agent { session_id: String },
    /// A plaintext connection on loopback (explicitly configured): trusted
    /// as an administrator.
    Local,
}

impl Caller {
    /// Whether the caller may act on every user's sessions.
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::User { admin: true, .. } | Caller::Local)
    }

    /// The user name, for users.
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::User { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The groups a user's certificate or sign-in names (none for others).
    pub fn groups(&self) -> &[String] {
        match self {
            Caller::User { groups, .. } => groups,
            _ => &[],
        }
    }

    /// How logs name the caller: the user, `agent` or `local`.
    pub fn log_name(&self) -> &str {
        match self {
            Caller::User { name, .. } => name,
            Caller::Agent { .. } => "agent",
            Caller::Local => "local",
        }
    }

    /// Whether the caller may see and act on sessions of `owner`.
    pub fn may_act_for(&self, owner: &str) -> bool {
        self.is_admin() || self.user() == Some(owner)
    }
}

/// Where a call came from, for the audit trail: the client certificate's
/// subject and SHA-256 fingerprint (empty without one) and the peer address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub subject: String,
    pub fingerprint: String,
    pub peer: String,
}
