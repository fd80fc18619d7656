//! `[templates.NAME]`: the template catalog as written, and its check into
//! a [`Catalog`] (`domain::catalog`). Without any section the catalog is
//! open: `vm.template` and the pools' templates are listed, any template
//! name is taken, every desktop is `[vm]`'s size ("standard").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::VmDefaults;
use crate::domain::catalog::{Catalog, Clipboard, Size, Template};

/// The size of a desktop that names none when `[templates]` gives none.
pub const STANDARD: &str = "standard";

/// `[templates.NAME]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// As people see it (the portal's card, `daas templates`); empty: NAME.
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// The operating system it carries ("Debian 12").
    #[serde(default)]
    pub os: String,
    /// Who may use it: AD groups (portal), client certificate OUs (gRPC);
    /// empty: everyone. Administrators may use every template.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The size of a create that names none; empty: the only size.
    #[serde(default)]
    pub default_size: String,
    /// Named presets; none: one, "standard", of `[vm]`'s cores, memory and
    /// disk.
    #[serde(default)]
    pub sizes: BTreeMap<String, SizeSpec>,
    /// A destroyed desktop keeps its disk (the module's `inventory
    /// snapshot`) and its user's next create restores it.
    #[serde(default)]
    pub persistent: bool,
    /// Persistent: how many kept disks a user has of it (the newest).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Persistent: a kept disk older than this is deleted.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: std::time::Duration,
    /// Which way copy and paste works between the desktop and the
    /// browser's tab: "both", "to-desktop", "from-desktop" or "off".
    #[serde(default)]
    pub clipboard: Clipboard,
    /// The gateway keeps what the browser's tab shows of its desktops,
    /// for administrators to replay.
    #[serde(default)]
    pub record: bool,
    /// Administrators may watch its desktops live in the browser's tab
    /// (read-only; the user is told).
    #[serde(default)]
    pub shadow: bool,
}

fn default_keep() -> u32 {
    1
}
fn default_max_age() -> std::time::Duration {
    std::time::Duration::from_secs(30 * 24 * 3600)
}

/// `[templates.NAME.sizes.SIZE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeSpec {
    pub cores: u32,
    pub memory_mb: u64,
    pub disk_gb: u32,
}

/// `[vm]`'s size ("standard"): the open catalog's, and that of a session an
/// older server made.
pub fn standard(vm: &VmDefaults) -> Size {
    Size {
        name: STANDARD.into(),
        cores: vm.cores,
        memory_mb: u64::from(vm.memory_mb),
        disk_gb: vm.disk_gb,
    }
}

/// A template that only has a name, in `[vm]`'s size.
fn bare(name: &str, vm: &VmDefaults) -> Template {
    Template::named(name, vec![standard(vm)], STANDARD.into())
}

/// Refuses a list at `key` with a name that cannot be a group's (the
/// catalog's and the organisations' groups).
pub(super) fn group_names(key: &str, groups: &[String]) -> Result<(), String> {
    match groups
        .iter()
        .find(|g| g.is_empty() || g.len() > 256 || g.chars().any(char::is_control))
    {
        Some(g) => Err(format!("`{key}`: {g:?} is not a group name")),
        None => Ok(()),
    }
}

fn size_name_ok(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Checks `[templates]` against `[vm]` and the pools' templates (each must
/// be in a closed catalog); the error names the key.
pub fn check<'a>(
    specs: &BTreeMap<String, TemplateSpec>,
    vm: &VmDefaults,
    pool_templates: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<Catalog, String> {
    if specs.is_empty() {
        let mut templates = vec![bare(&vm.template, vm)];
        for (_, template) in pool_templates {
            if !templates.iter().any(|t| &t.name == template) {
                templates.push(bare(template, vm));
            }
        }
        templates.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(Catalog {
            templates,
            default_template: vm.template.clone(),
            open: true,
        });
    }
    let mut templates = Vec::with_capacity(specs.len());
    for (name, spec) in specs {
        templates
            .push(template(name, spec, vm).map_err(|why| format!("`templates.{name}`: {why}"))?);
    }
    let known = |name: &str| specs.contains_key(name);
    if !known(&vm.template) {
        return Err(format!(
            "`vm.template`: \"{}\" is not in [templates] (the default template must be one of them: {})",
            vm.template,
            specs.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    for (pool, template) in pool_templates {
        if !known(template) {
            return Err(format!(
                "`pools.{pool}.template`: \"{template}\" is not in [templates]"
            ));
        }
    }
    Ok(Catalog {
        templates,
        default_template: vm.template.clone(),
        open: false,
    })
}

fn template(name: &str, spec: &TemplateSpec, vm: &VmDefaults) -> Result<Template, String> {
    crate::domain::validate::template(name).map_err(|_| {
        "a template name is letters, digits, '.', '_' and '-', at most 64".to_string()
    })?;
    for (text, key, max) in [
        (&spec.title, "title", 100),
        (&spec.description, "description", 1000),
        (&spec.os, "os", 100),
    ] {
        if text.chars().count() > max || text.chars().any(char::is_control) {
            return Err(format!(
                "`{key}`: at most {max} characters, no control characters"
            ));
        }
    }
    group_names("groups", &spec.groups)?;
    if spec.persistent && (spec.keep == 0 || spec.max_age.is_zero()) {
        return Err(
            "`keep` and `max_age` must be above zero (a desktop that keeps no disk is not `persistent`)"
                .into(),
        );
    }
    let mut sizes = Vec::with_capacity(spec.sizes.len().max(1));
    for (size, s) in &spec.sizes {
        if !size_name_ok(size) {
            return Err(format!(
                "`sizes.{size}`: a size name is 1-32 lower-case letters, digits and '-', starting with a letter"
            ));
        }
        if !(1..=512).contains(&s.cores)
            || !(256..=4 * 1024 * 1024).contains(&s.memory_mb)
            || !(1..=65_536).contains(&s.disk_gb)
        {
            return Err(format!(
                "`sizes.{size}`: cores 1-512, memory_mb 256-4194304, disk_gb 1-65536"
            ));
        }
        sizes.push(Size {
            name: size.clone(),
            cores: s.cores,
            memory_mb: s.memory_mb,
            disk_gb: s.disk_gb,
        });
    }
    if sizes.is_empty() {
        sizes.push(standard(vm));
    }
    sizes.sort_by(|a, b| {
        (a.memory_mb, a.cores, a.disk_gb, &a.name).cmp(&(b.memory_mb, b.cores, b.disk_gb, &b.name))
    });
    let default_size = match (spec.default_size.as_str(), sizes.as_slice()) {
        ("", [only]) => only.name.clone(),
        ("", _) => return Err("`default_size`: required with several sizes".into()),
        (named, _) if sizes.iter().any(|s| s.name == named) => named.to_string(),
        (named, _) => {
            return Err(format!(
                "`default_size`: \"{named}\" is not one of its sizes ({})",
                sizes
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    Ok(Template {
        name: name.into(),
        title: if spec.title.is_empty() {
            name.into()
        } else {
            spec.title.clone()
        },
        description: spec.description.clone(),
        os: spec.os.clone(),
        groups: spec.groups.clone(),
        sizes,
        default_size,
        persistent: spec.persistent,
        keep: spec.keep,
        max_age: spec.max_age,
        clipboard: spec.clipboard,
        record: spec.record,
        shadow: spec.shadow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> VmDefaults {
        VmDefaults {
            template: "debian-12-xfce".into(),
            cores: 2,
            memory_mb: 4096,
            disk_gb: 20,
        }
    }

    fn sized(sizes: &[(&str, u32, u64)], default: &str) -> TemplateSpec {
        TemplateSpec {
            default_size: default.into(),
            sizes: sizes
                .iter()
                .map(|(n, cores, mb)| {
                    (
                        n.to_string(),
                        SizeSpec {
                            cores: *cores,
                            memory_mb: *mb,
                            disk_gb: 20,
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn no_templates_is_an_open_catalog_of_the_default_and_the_pools() {
        let pool = ("lab".to_string(), "ubuntu-24".to_string());
        let c = check(&BTreeMap::new(), &vm(), [(&pool.0, &pool.1)]).unwrap();
        assert!(c.open);
        let names: Vec<_> = c.templates.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["debian-12-xfce", "ubuntu-24"]);
        assert_eq!(
            c.templates[0].sizes[0].to_string(),
            "standard (2 cores, 4 GiB, 20 GB disk)"
        );
    }

    #[test]
    fn sizes_are_ordered_and_the_default_is_checked() {
        let specs = BTreeMap::from([(
            "debian-12-xfce".to_string(),
            sized(&[("large", 4, 8192), ("small", 1, 2048)], "small"),
        )]);
        let c = check(&specs, &vm(), []).unwrap();
        assert!(!c.open);
        let t = &c.templates[0];
        assert_eq!(
            (t.title.as_str(), t.default_size.as_str()),
            ("debian-12-xfce", "small")
        );
        let names: Vec<_> = t.sizes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["small", "large"]);
        // One size: it is the default; none: [vm]'s.
        let one = BTreeMap::from([(
            "debian-12-xfce".to_string(),
            sized(&[("only", 1, 1024)], ""),
        )]);
        assert_eq!(
            check(&one, &vm(), []).unwrap().templates[0].default_size,
            "only"
        );
        let none = BTreeMap::from([("debian-12-xfce".to_string(), TemplateSpec::default())]);
        assert_eq!(
            check(&none, &vm(), []).unwrap().templates[0].default_size,
            STANDARD
        );
    }

    #[test]
    fn mistakes_name_their_key() {
        let bad = |specs: BTreeMap<String, TemplateSpec>, pool: Option<(&str, &str)>, key: &str| {
            let pool = pool.map(|(p, t)| (p.to_string(), t.to_string()));
            let err = check(&specs, &vm(), pool.iter().map(|(p, t)| (p, t))).unwrap_err();
            assert!(err.contains(key), "{err}");
        };
        let one = |spec: TemplateSpec| BTreeMap::from([("debian-12-xfce".to_string(), spec)]);
        bad(
            one(sized(&[("a", 1, 1024), ("b", 2, 2048)], "")),
            None,
            "default_size`: required",
        );
        bad(
            one(sized(&[("a", 1, 1024)], "z")),
            None,
            "\"z\" is not one of its sizes (a)",
        );
        bad(one(sized(&[("Big", 1, 1024)], "")), None, "`sizes.Big`");
        bad(one(sized(&[("a", 0, 1024)], "")), None, "cores 1-512");
        bad(
            one(TemplateSpec {
                groups: vec![String::new()],
                ..Default::default()
            }),
            None,
            "`groups`",
        );
        bad(
            BTreeMap::from([("other".to_string(), TemplateSpec::default())]),
            None,
            "`vm.template`: \"debian-12-xfce\" is not in [templates]",
        );
        bad(
            one(TemplateSpec::default()),
            Some(("lab", "ubuntu-24")),
            "`pools.lab.template`",
        );
        bad(
            BTreeMap::from([("no spaces".to_string(), TemplateSpec::default())]),
            None,
            "`templates.no spaces`",
        );
    }
}
