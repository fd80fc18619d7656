//! The filter of the reads of schedules and kept disks.

/// Which rows a read of schedules or kept disks returns: those matching
/// every field given (none: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Which {
    pub username: Option<String>,
    pub id: Option<String>,
    pub org: Option<String>,
}

impl Which {
    pub fn all() -> Which {
        Which::default()
    }

    pub fn of_user(username: &str) -> Which {
        Which {
            username: Some(username.to_string()),
            ..Which::default()
        }
    }

    pub fn id(id: &str) -> Which {
        Which {
            id: Some(id.to_string()),
            ..Which::default()
        }
    }

    pub fn of_org(org: &str) -> Which {
        Which {
            org: Some(org.to_string()),
            ..Which::default()
        }
    }
}
