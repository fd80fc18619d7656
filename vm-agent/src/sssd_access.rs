//! Letting one domain user in: the helper's half of `AllowDomainUser`.
//!
//! A warm pool's desktop joined to Active Directory is built with SSSD
//! letting no one in (`access_provider = deny`) and with
//! `/etc/sssd/daas-access.conf.in` (role ad-join): the `[domain/...]`
//! section a claim needs, its access filter naming the user as `@USER@`.
//! At a claim the helper writes that section, the marker replaced by the
//! user's name escaped for LDAP filters (RFC 4515), to
//! `/etc/sssd/conf.d/daas-access.conf` (root, 0600, as SSSD requires), and
//! SSSD restarts to read it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::apply::RequestError;

/// What the template names the user as. `@` is never in an account name.
pub const MARKER: &str = "@USER@";

/// The characters an Active Directory account name never holds.
const FORBIDDEN: &str = "\"/\\[]:;|=,+*?<>@";

/// The longest account name (sAMAccountName), in characters.
const MAX_ACCOUNT_NAME: usize = 20;

/// A domain account to let in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainUser {
    pub name: String,
}

impl DomainUser {
    /// The server's rule for account names (and so for the `@USER@` marker
    /// never to be one).
    pub fn validate(&self) -> Result<(), RequestError> {
        if valid_account_name(&self.name) {
            Ok(())
        } else {
            Err(RequestError::BadAccountName)
        }
    }
}

/// 1 to 20 characters, none of `"/\[]:;|=,+*?<>@` nor a control character,
/// not only dots and spaces.
pub fn valid_account_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=MAX_ACCOUNT_NAME).contains(&count)
        && !name
            .chars()
            .any(|c| FORBIDDEN.contains(c) || c.is_control())
        && !name.chars().all(|c| c == '.' || c == ' ')
}

/// `value` as an LDAP filter's assertion value (RFC 4515): `\`, `*`, `(`,
/// `)` and NUL as `\XX`.
pub fn ldap_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\5c"),
            '*' => escaped.push_str("\\2a"),
            '(' => escaped.push_str("\\28"),
            ')' => escaped.push_str("\\29"),
            '\0' => escaped.push_str("\\00"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Why the access file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "{path} is missing: this desktop's build did not prepare a claim by its agent \
         (a warm pool built by an older ad-join role)"
    )]
    NoTemplate { path: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} must name the user exactly once as {MARKER} (found {found}); rebuild the pool")]
    Marker { path: String, found: usize },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// The template at `template` with `user` in it.
pub fn render(template: &Path, user: &DomainUser) -> Result<String, AccessError> {
    let path = template.display().to_string();
    let text = match fs::read_to_string(template) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(AccessError::NoTemplate { path });
        }
        Err(source) => return Err(AccessError::Read { path, source }),
    };
    let found = text.matches(MARKER).count();
    if found != 1 {
        return Err(AccessError::Marker { path, found });
    }
    Ok(text.replacen(MARKER, &ldap_escape(&user.name), 1))
}

/// Writes `text` to `dest`, 0600, in place at once: a temporary file beside
/// it (a dot file, which SSSD does not read), synced, then renamed.
pub fn write_atomically(dest: &Path, text: &str) -> Result<(), AccessError> {
    let failed = |source: io::Error| AccessError::Write {
        path: dest.display().to_string(),
        source,
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dest.with_file_name(format!(".{name}.new"));
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(failed(err)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    drop(file);
    fs::rename(&temp, dest).map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn account_names_follow_the_servers_rule() {
        for good in [
            "alice",
            "Alice.Smith",
            "a b",
            "o'neil",
            "x(1)",
            "é",
            &"a".repeat(20),
        ] {
            assert!(valid_account_name(good), "{good}");
        }
        let long = "a".repeat(21);
        for bad in [
            "", "a@b", "a*", "a\\b", "a\nb", "a\0", "a=b", "a,b", "...", " ", &long,
        ] {
            assert!(!valid_account_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(ldap_escape("alice"), "alice");
        assert_eq!(ldap_escape("x(1)"), "x\\281\\29");
        assert_eq!(ldap_escape("a*\\\0"), "a\\2a\\5c\\00");
    }

    const TEMPLATE: &str = "[domain/daas.test]\naccess_provider = ad\n\
        ad_access_filter = DOM:daas.test:(|(sAMAccountName=@USER@)(memberOf:1.2.840.113556.1.4.1941:=CN=Admins,DC=daas,DC=test))\n";

    #[test]
    fn the_template_gets_the_escaped_user_once() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let template = dir.path().join("daas-access.conf.in");
        fs::write(&template, TEMPLATE).expect("write");
        let user = DomainUser {
            name: "bob(x)".into(),
        };
        let text = render(&template, &user).map_err(|e| e.to_string());
        assert_eq!(
            text,
            Ok(TEMPLATE.replace(MARKER, "bob\\28x\\29")),
            "the name escaped, the rest as it was"
        );
    }

    #[test]
    fn a_missing_or_damaged_template_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let template = dir.path().join("daas-access.conf.in");
        let user = DomainUser {
            name: "alice".into(),
        };
        let err = render(&template, &user);
        assert!(
            matches!(err, Err(AccessError::NoTemplate { .. })),
            "{err:?}"
        );
        for (text, found) in [("no marker\n", 0), ("@USER@ @USER@\n", 2)] {
            fs::write(&template, text).expect("write");
            let err = render(&template, &user);
            assert!(
                matches!(err, Err(AccessError::Marker { found: f, .. }) if f == found),
                "{err:?}"
            );
        }
    }

    #[test]
    fn the_file_is_written_whole_and_private() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let dest = dir.path().join("daas-access.conf");
        fs::write(&dest, "old").expect("write");
        // A temporary file a killed helper left is replaced.
        fs::write(dir.path().join(".daas-access.conf.new"), "stale").expect("write");
        write_atomically(&dest, "new\n")
            .map_err(|e| e.to_string())
            .expect("written");
        assert_eq!(fs::read_to_string(&dest).ok().as_deref(), Some("new\n"));
        let mode = fs::metadata(&dest)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the file: {left:?}");
    }
}
