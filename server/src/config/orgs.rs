//! `[orgs.NAME]`: organisations as written, and their check into
//! [`Orgs`] (`domain::orgs`). None: no organisation, no quota but
//! `[limits]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::orgs::{Org, Orgs, Quota};

/// `[orgs.NAME]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    /// As people see it; empty: NAME.
    #[serde(default)]
    pub title: String,
    /// Members: AD groups (portal), certificate groups (gRPC: a URI SAN
    /// `urn:daas:group:G` or an OU).
    pub groups: Vec<String>,
    /// Whose members administer the organisation.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// What all its live desktops may hold together.
    #[serde(default)]
    pub quota: QuotaSpec,
    /// What one member's live desktops in it may hold.
    #[serde(default)]
    pub user_quota: QuotaSpec,
}

/// `[orgs.NAME.quota]` and `[orgs.NAME.user_quota]`: each amount unset is
/// no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    pub desktops: Option<u32>,
    pub cores: Option<u32>,
    pub memory_gb: Option<u32>,
    /// GiB of kept disks (the organisation's quota only).
    pub kept_gb: Option<u32>,
}

impl QuotaSpec {
    fn quota(self) -> Quota {
        Quota {
            desktops: self.desktops,
            cores: self.cores,
            memory_mb: self.memory_gb.map(|gb| u64::from(gb) * 1024),
            kept_gb: self.kept_gb,
        }
    }
}

/// Checks `[orgs]`; the error names the key.
pub fn check(specs: &BTreeMap<String, OrgSpec>) -> Result<Orgs, String> {
    let mut orgs = Vec::with_capacity(specs.len());
    for (name, spec) in specs {
        orgs.push(org(name, spec).map_err(|why| format!("`orgs.{name}`: {why}"))?);
    }
    Ok(Orgs { orgs })
}

fn org(name: &str, spec: &OrgSpec) -> Result<Org, String> {
    if crate::domain::validate::org(name).is_err() {
        return Err(
            "an organisation's name is 1-32 lower-case letters, digits and '-', starting with a letter"
                .into(),
        );
    }
    if spec.title.chars().count() > 100 || spec.title.chars().any(char::is_control) {
        return Err("`title`: at most 100 characters, no control characters".into());
    }
    if spec.groups.is_empty() {
        return Err("`groups`: name at least one group: its members are the organisation's".into());
    }
    super::catalog::group_names("groups", &spec.groups)?;
    super::catalog::group_names("admin_groups", &spec.admin_groups)?;
    if spec.user_quota.kept_gb.is_some() {
        return Err(
            "`user_quota.kept_gb`: kept disks have an organisation's quota only (`quota.kept_gb`)"
                .into(),
        );
    }
    for (key, q) in [("quota", spec.quota), ("user_quota", spec.user_quota)] {
        for (amount, value) in [
            ("desktops", q.desktops),
            ("cores", q.cores),
            ("memory_gb", q.memory_gb),
            ("kept_gb", q.kept_gb),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "`{key}.{amount}`: 0 would refuse every desktop; leave it out for no limit"
                ));
            }
        }
    }
    Ok(Org {
        name: name.into(),
        title: if spec.title.is_empty() {
            name.into()
        } else {
            spec.title.clone()
        },
        groups: spec.groups.clone(),
        admin_groups: spec.admin_groups.clone(),
        quota: spec.quota.quota(),
        user_quota: spec.user_quota.quota(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(groups: &[&str]) -> OrgSpec {
        OrgSpec {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..OrgSpec::default()
        }
    }

    #[test]
    fn organisations_are_checked_with_the_key_named() {
        let mut specs = BTreeMap::new();
        specs.insert(
            "physics".to_string(),
            OrgSpec {
                quota: QuotaSpec {
                    desktops: Some(10),
                    cores: None,
                    memory_gb: Some(16),
                    kept_gb: Some(100),
                },
                ..spec(&["phys"])
            },
        );
        let orgs = check(&specs).unwrap();
        let physics = orgs.get("physics").unwrap();
        assert_eq!(physics.title, "physics");
        assert_eq!(physics.quota.memory_mb, Some(16 * 1024));
        assert_eq!(physics.quota.cores, None);
        assert_eq!(physics.quota.kept_gb, Some(100));

        specs.insert("Bad Name".into(), spec(&["x"]));
        assert!(check(&specs).unwrap_err().starts_with("`orgs.Bad Name`: "));
        specs.remove("Bad Name");
        specs.insert("empty".into(), spec(&[]));
        assert!(
            check(&specs)
                .unwrap_err()
                .contains("`orgs.empty`: `groups`")
        );
        specs.insert(
            "empty".into(),
            OrgSpec {
                user_quota: QuotaSpec {
                    desktops: Some(0),
                    ..QuotaSpec::default()
                },
                ..spec(&["e"])
            },
        );
        assert!(
            check(&specs)
                .unwrap_err()
                .contains("`orgs.empty`: `user_quota.desktops`: 0")
        );
    }
}
