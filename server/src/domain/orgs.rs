//! Organisations: who belongs to which (by group: AD groups in the portal,
//! the client certificate's groups on gRPC), who administers it, and the
//! quotas its live desktops count against, decided apart from handling the
//! request. The counting itself is the store's, in the create's transaction.

use std::fmt;

/// Live desktops and the resources they hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub desktops: u32,
    pub cores: u32,
    pub memory_mb: u64,
}

impl Amounts {
    /// As the API shows it.
    pub fn to_proto(self) -> daas_api::v1::Amounts {
        daas_api::v1::Amounts {
            desktops: self.desktops,
            cores: self.cores,
            memory_mb: self.memory_mb,
            kept_gb: 0,
        }
    }
}

/// What a quota bounds; each `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub desktops: Option<u32>,
    pub cores: Option<u32>,
    pub memory_mb: Option<u64>,
    /// GiB of kept disks (persistent templates): at or over it, no new
    /// persistent desktop is made (a live one's disk is always kept).
    pub kept_gb: Option<u32>,
}

impl Quota {
    /// As the API shows it: 0 is no limit.
    pub fn to_proto(self) -> daas_api::v1::Amounts {
        daas_api::v1::Amounts {
            desktops: self.desktops.unwrap_or(0),
            cores: self.cores.unwrap_or(0),
            memory_mb: self.memory_mb.unwrap_or(0),
            kept_gb: self.kept_gb.unwrap_or(0),
        }
    }

    /// Whether `used_gb` of kept disks leaves no room for another.
    pub fn kept_full(&self, used_gb: u64) -> Option<Over> {
        self.kept_gb
            .map(u64::from)
            .filter(|max| used_gb >= *max)
            .map(|max| Over {
                resource: Resource::KeptDisks,
                max,
                used: used_gb,
                needs: 0,
            })
    }

    /// The first amount that `used` plus one desktop of `needs` would take
    /// past this quota.
    pub fn exceeded(&self, used: Amounts, needs: Amounts) -> Option<Over> {
        let over = |resource, max: Option<u64>, used: u64, needs: u64| {
            max.filter(|max| used + needs > *max).map(|max| Over {
                resource,
                max,
                used,
                needs,
            })
        };
        over(
            Resource::Desktops,
            self.desktops.map(u64::from),
            u64::from(used.desktops),
            1,
        )
        .or_else(|| {
            over(
                Resource::Cores,
                self.cores.map(u64::from),
                u64::from(used.cores),
                u64::from(needs.cores),
            )
        })
        .or_else(|| {
            over(
                Resource::Memory,
                self.memory_mb,
                used.memory_mb,
                needs.memory_mb,
            )
        })
    }
}

/// One amount of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Desktops,
    Cores,
    Memory,
    KeptDisks,
}

impl Resource {
    /// Its key under `[orgs.NAME.quota]`.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Desktops => "desktops",
            Resource::Cores => "cores",
            Resource::Memory => "memory_gb",
            Resource::KeptDisks => "kept_gb",
        }
    }
}

/// How far over its quota a create would take an organisation or a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Over {
    pub resource: Resource,
    pub max: u64,
    pub used: u64,
    pub needs: u64,
}

impl fmt::Display for Over {
    /// `4 of 4 vCPUs in use, the desktop needs 2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resource {
            Resource::Desktops => write!(f, "{} of {} desktops live", self.used, self.max),
            Resource::Cores => write!(
                f,
                "{} of {} vCPUs in use, the desktop needs {}",
                self.used, self.max, self.needs
            ),
            Resource::Memory => write!(
                f,
                "{} of {} GiB of memory in use, the desktop needs {}",
                gib(self.used),
                gib(self.max),
                gib(self.needs)
            ),
            Resource::KeptDisks => {
                write!(f, "{} of {} GiB of kept disks in use", self.used, self.max)
            }
        }
    }
}

fn gib(mb: u64) -> String {
    let gib = mb as f64 / 1024.0;
    format!("{gib}")
}

/// An organisation: its members and administrators by group, and its
/// quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub name: String,
    pub title: String,
    /// Members: callers in any of these groups.
    pub groups: Vec<String>,
    /// Administrators: callers in any of these groups see and act on the
    /// organisation's sessions, quota and audit trail.
    pub admin_groups: Vec<String>,
    /// What all its live desktops may hold together.
    pub quota: Quota,
    /// What one member's live desktops in it may hold.
    pub user_quota: Quota,
}

impl Org {
    fn has_member(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }

    /// Whether a caller in `groups` administers it.
    pub fn administered_by(&self, groups: &[String]) -> bool {
        self.admin_groups.iter().any(|g| groups.contains(g))
    }
}

/// Every organisation, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orgs {
    pub orgs: Vec<Org>,
}

/// Why a create's organisation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no organisation '{0}'")]
    Unknown(String),
    #[error("you are in several organisations ({}): name the one the desktop is for", .0.join(", "))]
    Ambiguous(Vec<String>),
    #[error("you are not a member of organisation '{name}'; yours: {}", if mine.is_empty() { "none".to_string() } else { mine.join(", ") })]
    NotMember { name: String, mine: Vec<String> },
}

impl Orgs {
    pub fn get(&self, name: &str) -> Option<&Org> {
        self.orgs.iter().find(|o| o.name == name)
    }

    /// The organisations a caller in `groups` belongs to.
    pub fn member_of(&self, groups: &[String]) -> Vec<&Org> {
        self.orgs.iter().filter(|o| o.has_member(groups)).collect()
    }

    /// The organisations a caller in `groups` administers.
    pub fn administered(&self, groups: &[String]) -> Vec<&Org> {
        self.orgs
            .iter()
            .filter(|o| o.administered_by(groups))
            .collect()
    }

    /// The organisation a create counts against: the one named (the caller
    /// must be in it, unless `any`: an administrator creating for someone),
    /// else the caller's only one; None: the caller is in none.
    pub fn choose(
        &self,
        requested: &str,
        groups: &[String],
        any: bool,
    ) -> Result<Option<&Org>, Refused> {
        let mine = self.member_of(groups);
        let names = || mine.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
        if !requested.is_empty() {
            let org = self
                .get(requested)
                .ok_or_else(|| Refused::Unknown(requested.into()))?;
            if !any && !org.has_member(groups) {
                return Err(Refused::NotMember {
                    name: requested.into(),
                    mine: names(),
                });
            }
            return Ok(Some(org));
        }
        match mine.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(Refused::Ambiguous(names())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(name: &str, groups: &[&str]) -> Org {
        Org {
            name: name.into(),
            title: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            admin_groups: vec![format!("{name}-admins")],
            quota: Quota::default(),
            user_quota: Quota::default(),
        }
    }

    fn groups(names: &[&str]) -> Vec<String> {
        names.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn a_caller_counts_against_their_only_organisation_or_names_one() {
        let orgs = Orgs {
            orgs: vec![org("physics", &["phys"]), org("maths", &["math", "both"])],
        };
        let phys = groups(&["phys"]);
        assert_eq!(
            orgs.choose("", &phys, false).unwrap().unwrap().name,
            "physics"
        );
        assert_eq!(orgs.choose("", &groups(&["other"]), false).unwrap(), None);
        let two = groups(&["phys", "both"]);
        assert_eq!(
            orgs.choose("", &two, false).unwrap_err(),
            Refused::Ambiguous(vec!["physics".into(), "maths".into()])
        );
        assert_eq!(
            orgs.choose("maths", &two, false).unwrap().unwrap().name,
            "maths"
        );
        let refused = orgs.choose("maths", &phys, false).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "you are not a member of organisation 'maths'; yours: physics"
        );
        // An administrator creating for someone names any.
        assert_eq!(
            orgs.choose("maths", &[], true).unwrap().unwrap().name,
            "maths"
        );
        assert_eq!(
            orgs.choose("nope", &phys, true).unwrap_err(),
            Refused::Unknown("nope".into())
        );
        assert_eq!(
            orgs.administered(&groups(&["maths-admins"]))
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>(),
            ["maths"]
        );
    }

    #[test]
    fn a_quota_names_the_first_amount_it_would_pass() {
        let quota = Quota {
            desktops: Some(3),
            cores: Some(4),
            memory_mb: Some(8192),
            kept_gb: Some(10),
        };
        let used = Amounts {
            desktops: 2,
            cores: 3,
            memory_mb: 4096,
        };
        let small = Amounts {
            desktops: 1,
            cores: 1,
            memory_mb: 2048,
        };
        assert_eq!(quota.exceeded(used, small), None);
        let big = Amounts {
            desktops: 1,
            cores: 2,
            memory_mb: 2048,
        };
        let over = quota.exceeded(used, big).unwrap();
        assert_eq!(over.resource, Resource::Cores);
        assert_eq!(over.to_string(), "3 of 4 vCPUs in use, the desktop needs 2");
        let full = Amounts {
            desktops: 3,
            ..used
        };
        assert_eq!(
            quota.exceeded(full, small).unwrap().to_string(),
            "3 of 3 desktops live"
        );
        let memory = Amounts {
            desktops: 1,
            cores: 1,
            memory_mb: 7168,
        };
        assert_eq!(
            quota.exceeded(memory, small).unwrap().to_string(),
            "7 of 8 GiB of memory in use, the desktop needs 2"
        );
        assert_eq!(Quota::default().exceeded(full, big), None);
        assert_eq!(quota.kept_full(9), None);
        assert_eq!(
            quota.kept_full(10).unwrap().to_string(),
            "10 of 10 GiB of kept disks in use"
        );
    }
}
