//! The template catalog: which templates a create may name, in which sizes,
//! and who may use each, decided apart from handling the request.
//!
//! With `[templates.NAME]` sections the catalog is closed: a create names
//! one of them (or none: `vm.template`) and one of its sizes (or none: its
//! default); a template with `groups` is for members of one of them (and
//! administrators). Without any, it is open, as before the catalog: any
//! template name, in the one size `[vm]` gives.

use std::fmt;

/// A named preset of a desktop's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    pub name: String,
    pub cores: u32,
    pub memory_mb: u64,
    pub disk_gb: u32,
}

impl Size {
    /// As the API shows it.
    pub fn to_proto(&self) -> daas_api::v1::Size {
        daas_api::v1::Size {
            name: self.name.clone(),
            cores: self.cores,
            memory_mb: self.memory_mb,
            disk_gb: self.disk_gb,
        }
    }
}

impl fmt::Display for Size {
    /// `medium (2 cores, 4 GiB, 20 GB disk)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = self.memory_mb as f64 / 1024.0;
        write!(
            f,
            "{} ({} core{}, {gib} GiB, {} GB disk)",
            self.name,
            self.cores,
            if self.cores == 1 { "" } else { "s" },
            self.disk_gb
        )
    }
}

/// A template's clipboard policy: which way copy and paste may carry data
/// between the desktop and the user's machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clipboard {
    /// Both ways, as a native RDP client.
    #[default]
    Both,
    /// From the user's machine into the desktop only.
    ToDesktop,
    /// From the desktop to the user's machine only.
    FromDesktop,
    /// Neither way.
    Off,
}

impl Clipboard {
    /// As the configuration, the page and the Ansible role name it.
    pub fn name(self) -> &'static str {
        match self {
            Clipboard::Both => "both",
            Clipboard::ToDesktop => "to-desktop",
            Clipboard::FromDesktop => "from-desktop",
            Clipboard::Off => "off",
        }
    }

    /// Whether data copied on the user's machine may be pasted in the desktop.
    pub fn to_desktop(self) -> bool {
        matches!(self, Clipboard::Both | Clipboard::ToDesktop)
    }

    /// Whether data copied in the desktop may be pasted on the user's machine.
    pub fn from_desktop(self) -> bool {
        matches!(self, Clipboard::Both | Clipboard::FromDesktop)
    }
}

/// One template of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub title: String,
    pub description: String,
    /// The operating system it carries, as people name it.
    pub os: String,
    /// Who may use it: members of any of these groups (AD groups in the
    /// portal, the client certificate's OUs on gRPC); empty: everyone.
    pub groups: Vec<String>,
    /// Its sizes, smallest first; never empty.
    pub sizes: Vec<Size>,
    pub default_size: String,
    /// A destroyed desktop keeps its disk, and its user's next create of
    /// the template restores it.
    pub persistent: bool,
    /// Persistent: how many kept disks a user has of it, and for how long.
    pub keep: u32,
    pub max_age: std::time::Duration,
    /// Which way text may be copied between the desktop and the browser's
    /// tab: the gateway enforces it, and xrdp on the desktop too.
    pub clipboard: Clipboard,
    /// The gateway records the browser sessions of its desktops.
    pub record: bool,
    /// Administrators may watch its desktops' browser sessions live.
    pub shadow: bool,
}

impl Template {
    /// A template that has only a name (its title), for everyone.
    pub fn named(name: &str, sizes: Vec<Size>, default_size: String) -> Template {
        Template {
            name: name.into(),
            title: name.into(),
            description: String::new(),
            os: String::new(),
            groups: Vec::new(),
            sizes,
            default_size,
            persistent: false,
            keep: 1,
            max_age: std::time::Duration::from_secs(30 * 24 * 3600),
            clipboard: Clipboard::Both,
            record: false,
            shadow: false,
        }
    }

    /// Whether a caller in `groups` may use it (administrators always may).
    pub fn may_use(&self, groups: &[String], admin: bool) -> bool {
        admin
            || self.groups.is_empty()
            || self
                .groups
                .iter()
                .any(|g| groups.iter().any(|mine| mine.eq_ignore_ascii_case(g)))
    }

    /// The size named `name` ("" : the default).
    pub fn size(&self, name: &str) -> Option<&Size> {
        let name = if name.is_empty() {
            &self.default_size
        } else {
            name
        };
        self.sizes.iter().find(|s| s.name == name)
    }
}

/// The templates a create may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// By name.
    pub templates: Vec<Template>,
    /// The template of a create that names none (`vm.template`).
    pub default_template: String,
    /// No `[templates]` configured: any name goes, in the first template's
    /// one size.
    pub open: bool,
}

/// Why a create's template or size is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no template '{name}'; the templates are: {}", choices.join(", "))]
    UnknownTemplate { name: String, choices: Vec<String> },
    #[error("template '{name}' is not for you (it is for the groups {}); yours: {}", groups.join(", "), or_none(choices))]
    Forbidden {
        name: String,
        groups: Vec<String>,
        choices: Vec<String>,
    },
    #[error("template '{template}' has no size '{size}'; its sizes: {}", choices.join(", "))]
    UnknownSize {
        template: String,
        size: String,
        choices: Vec<String>,
    },
}

fn or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// What a create gets: the template's name and the size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub template: String,
    pub size: Size,
}

impl Catalog {
    /// The templates a caller in `groups` may use.
    pub fn offered(&self, groups: &[String], admin: bool) -> Vec<&Template> {
        self.templates
            .iter()
            .filter(|t| t.may_use(groups, admin))
            .collect()
    }

    /// Template `name` as an open catalog takes it: the catalog's own, else
    /// only a name, in the default template's sizes.
    pub fn open_template(&self, name: &str) -> Template {
        self.get(name).cloned().unwrap_or_else(|| {
            let (sizes, default_size) = self
                .get(&self.default_template)
                .or(self.templates.first())
                .map(|t| (t.sizes.clone(), t.default_size.clone()))
                .unwrap_or_default();
            Template::named(name, sizes, default_size)
        })
    }

    /// The template named `name`, if the catalog has it.
    pub fn get(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// Template `name`'s clipboard policy; a template the catalog does not
    /// list (an open catalog's) copies both ways.
    pub fn clipboard(&self, name: &str) -> Clipboard {
        self.get(name).map_or(Clipboard::Both, |t| t.clipboard)
    }

    /// Whether the browser sessions of template `name`'s desktops are recorded.
    pub fn records(&self, name: &str) -> bool {
        self.get(name).is_some_and(|t| t.record)
    }

    /// Whether administrators may watch the browser sessions of template
    /// `name`'s desktops live.
    pub fn shadows(&self, name: &str) -> bool {
        self.get(name).is_some_and(|t| t.shadow)
    }

    /// Whether template `name`'s desktops keep their disk.
    pub fn is_persistent(&self, name: &str) -> bool {
        self.get(name).is_some_and(|t| t.persistent)
    }

    /// What a create of `template` ("": the default) in `size` ("": the
    /// template's default) gets, for a caller in `groups`.
    pub fn choose(
        &self,
        template: &str,
        size: &str,
        groups: &[String],
        admin: bool,
    ) -> Result<Choice, Refused> {
        let name = if template.is_empty() {
            self.default_template.as_str()
        } else {
            template
        };
        let found = match self.get(name) {
            Some(found) => found,
            // Open: any name, in the default template's size.
            None if self.open => self
                .get(&self.default_template)
                .or(self.templates.first())
                .ok_or_else(|| Refused::UnknownTemplate {
                    name: name.into(),
                    choices: Vec::new(),
                })?,
            None => {
                return Err(Refused::UnknownTemplate {
                    name: name.into(),
                    choices: self.names(groups, admin),
                });
            }
        };
        if !found.may_use(groups, admin) {
            return Err(Refused::Forbidden {
                name: name.into(),
                groups: found.groups.clone(),
                choices: self.names(groups, admin),
            });
        }
        let size = found.size(size).ok_or_else(|| Refused::UnknownSize {
            template: name.into(),
            size: size.into(),
            choices: found.sizes.iter().map(Size::to_string).collect(),
        })?;
        Ok(Choice {
            template: name.into(),
            size: size.clone(),
        })
    }

    /// The names of the templates a caller in `groups` may use.
    fn names(&self, groups: &[String], admin: bool) -> Vec<String> {
        self.offered(groups, admin)
            .into_iter()
            .map(|t| t.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(name: &str, cores: u32, memory_gb: u64) -> Size {
        Size {
            name: name.into(),
            cores,
            memory_mb: memory_gb * 1024,
            disk_gb: 20,
        }
    }

    fn template(name: &str, groups: &[&str]) -> Template {
        Template {
            name: name.into(),
            title: name.into(),
            description: String::new(),
            os: "Debian 12".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            sizes: vec![size("small", 1, 2), size("medium", 2, 4)],
            default_size: "medium".into(),
            persistent: false,
            keep: 1,
            max_age: std::time::Duration::from_secs(3600),
            clipboard: Clipboard::Both,
            record: false,
            shadow: false,
        }
    }

    fn catalog(open: bool) -> Catalog {
        Catalog {
            templates: vec![
                template("debian-12-xfce", &[]),
                template("dev", &["Developers"]),
            ],
            default_template: "debian-12-xfce".into(),
            open,
        }
    }

    #[test]
    fn a_create_gets_the_default_template_and_size_unless_it_names_them() {
        let c = catalog(false);
        let got = c.choose("", "", &[], false).unwrap();
        assert_eq!(
            (got.template.as_str(), got.size.name.as_str()),
            ("debian-12-xfce", "medium")
        );
        let got = c.choose("debian-12-xfce", "small", &[], false).unwrap();
        assert_eq!((got.size.cores, got.size.memory_mb), (1, 2048));
    }

    #[test]
    fn unknown_names_are_refused_naming_the_choices() {
        let c = catalog(false);
        let err = c.choose("windows-11", "", &[], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no template 'windows-11'; the templates are: debian-12-xfce"
        );
        let err = c.choose("debian-12-xfce", "huge", &[], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "template 'debian-12-xfce' has no size 'huge'; its sizes: \
             small (1 core, 2 GiB, 20 GB disk), medium (2 cores, 4 GiB, 20 GB disk)"
        );
    }

    #[test]
    fn a_template_with_groups_is_for_their_members_and_administrators() {
        let c = catalog(false);
        let err = c.choose("dev", "", &["Staff".into()], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "template 'dev' is not for you (it is for the groups Developers); yours: debian-12-xfce"
        );
        // Group names compare as AD's do: case aside.
        assert!(c.choose("dev", "", &["developers".into()], false).is_ok());
        assert!(c.choose("dev", "", &[], true).is_ok());
        let offered = |groups: &[String]| -> Vec<String> {
            c.offered(groups, false)
                .iter()
                .map(|t| t.name.clone())
                .collect()
        };
        assert_eq!(offered(&[]), ["debian-12-xfce"]);
        assert_eq!(offered(&["Developers".into()]), ["debian-12-xfce", "dev"]);
    }

    #[test]
    fn an_open_catalog_takes_any_name_in_the_default_size() {
        let c = catalog(true);
        let other = c.open_template("ubuntu-24");
        assert_eq!(
            (other.title.as_str(), other.default_size.as_str()),
            ("ubuntu-24", "medium")
        );
        assert_eq!(c.open_template("dev").title, "dev");
        let got = c.choose("ubuntu-24", "", &[], false).unwrap();
        assert_eq!(
            (got.template.as_str(), got.size.name.as_str()),
            ("ubuntu-24", "medium")
        );
        assert!(matches!(
            c.choose("ubuntu-24", "huge", &[], false),
            Err(Refused::UnknownSize { .. })
        ));
    }
}
