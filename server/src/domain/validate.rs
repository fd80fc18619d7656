//! Checks on everything a request carries before it reaches Terraform or
//! Ansible.

use crate::domain::error::Error;

/// Characters Active Directory forbids in a sAMAccountName.
const FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
];

/// Checks an AD sAMAccountName: 1-20 characters, none of `"/\[]:;|=,+*?<>@`,
/// no control characters, not only dots and spaces.
pub fn account_name(field: &'static str, value: &str) -> Result<(), Error> {
    let invalid = |why: String| Error::InvalidArgument { field, why };
    let count = value.chars().count();
    if count == 0 {
        return Err(invalid("is required".into()));
    }
    if count > 20 {
        return Err(invalid(format!(
            "has {count} characters; at most 20 are allowed"
        )));
    }
    if let Some(c) = value.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(invalid(format!(
            "contains '{c}'; none of \"/\\[]:;|=,+*?<>@ is allowed"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("contains a control character".into()));
    }
    if value.chars().all(|c| c == '.' || c == ' ') {
        return Err(invalid("must not consist only of dots and spaces".into()));
    }
    Ok(())
}

/// Checks a password for a local login: 8-256 characters (the desktop is
/// reachable over RDP), no control characters. The value itself never
/// appears in the error.
pub fn password(field: &'static str, value: &str) -> Result<(), Error> {
    let invalid = |why: &str| Error::InvalidArgument {
        field,
        why: why.into(),
    };
    if value.is_empty() {
        return Err(invalid("is required when session_user is set"));
    }
    if value.chars().count() < 8 {
        return Err(invalid("must have at least 8 characters"));
    }
    if value.chars().count() > 256 {
        return Err(invalid("is longer than 256 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid("contains a control character"));
    }
    Ok(())
}

/// Checks a template name: 1-64 of letters, digits, `.`, `_` and `-`.
/// A cluster node's name (a Proxmox node name): 1-63 letters, digits,
/// '.' and '-', starting and ending with a letter or digit.
pub fn is_node_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-';
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(inner)
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// `name` of a node request.
pub fn node_name(value: &str) -> Result<(), Error> {
    if is_node_name(value) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            field: "name",
            why: "must be a node name: 1-63 letters, digits, '.' or '-' (`daas node list` shows them)"
                .into(),
        })
    }
}

pub fn template(value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            field: "template",
            why: "must be 1-64 letters, digits, '.', '_' or '-'".into(),
        })
    }
}

/// Checks an organisation's name as a request gives it (`[orgs.NAME]`):
/// 1-32 lower-case letters, digits and '-', starting with a letter.
pub fn org(value: &str) -> Result<(), Error> {
    let b = value.as_bytes();
    let ok = (1..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            field: "org",
            why: "must be 1-32 lower-case letters, digits or '-', starting with a letter".into(),
        })
    }
}

/// Checks a create's idempotency key: 1-64 of letters, digits, `.`, `_`,
/// `:` and `-`.
pub fn request_id(value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            field: "request_id",
            why: "must be 1-64 letters, digits, '.', '_', ':' or '-'".into(),
        })
    }
}

/// Checks a ListSessions page size: 0 (the default, 100) to 1000.
pub fn page_size(value: u32) -> Result<u32, Error> {
    match value {
        0 => Ok(100),
        1..=1000 => Ok(value),
        _ => Err(Error::InvalidArgument {
            field: "page_size",
            why: format!("must be at most 1000, not {value}"),
        }),
    }
}

/// Checks a session id as the server makes them (a hyphenated UUID), so
/// that an id never becomes a path outside the data dir. A malformed id is
/// INVALID_ARGUMENT (the value is not echoed); a well-formed id of no
/// session is the caller's NOT_FOUND.
pub fn session_id(value: &str) -> Result<(), Error> {
    uuid_field("session_id", "session", value)
}

/// Checks a schedule id: a hyphenated UUID, as the server makes them.
pub fn schedule_id(value: &str) -> Result<(), Error> {
    uuid_field("schedule_id", "schedule", value)
}

/// Checks a field that holds a hyphenated UUID (`what`'s id).
pub fn uuid_of(field: &'static str, what: &str, value: &str) -> Result<(), Error> {
    uuid_field(field, what, value)
}

fn uuid_field(field: &'static str, what: &str, value: &str) -> Result<(), Error> {
    let invalid = |why: String| Error::InvalidArgument { field, why };
    if value.is_empty() {
        return Err(invalid("is required".into()));
    }
    // `Uuid::try_parse` also takes the simple, braced and URN spellings;
    // the server makes (and stores) only the hyphenated one.
    if value.len() == 36 && uuid::Uuid::try_parse(value).is_ok() {
        Ok(())
    } else {
        Err(invalid(format!(
            "is not a {what} id (a UUID such as 3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_follow_ad_rules() {
        for ok in [
            "alice",
            "j.doe",
            "Élodie",
            "a",
            "x_y-z$",
            "twenty-characters-xx",
        ] {
            assert!(account_name("username", ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", "is required"),
            ("twenty-one-characters", "at most 20"),
            ("a/b", "contains '/'"),
            ("a@b", "contains '@'"),
            ("a\"b", "contains '\"'"),
            ("a\tb", "control character"),
            ("a\nb", "control character"),
            ("...", "only of dots"),
            ("  ", "only of dots"),
        ];
        for (bad, why) in cases {
            let err = account_name("username", bad).unwrap_err().to_string();
            assert!(err.contains("username"), "{err}");
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn password_errors_never_echo_the_password() {
        let secret = format!("s3cret{}", "\u{7}");
        let err = password("session_password", &secret)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("session_password"));
        assert!(password("session_password", "").is_err());
        assert!(password("session_password", &"x".repeat(257)).is_err());
        assert!(password("session_password", "correct horse").is_ok());
    }

    #[test]
    fn templates_and_ids() {
        assert!(template("debian-12-xfce").is_ok());
        assert!(template("../etc").is_err());
        assert!(template("").is_err());
        assert!(session_id("../../etc").is_err());
        assert!(session_id("3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11").is_ok());
        for bad in [
            "not-a-uuid",
            "3f0c1d8e8a554c1e9a321b8f7e0c2d11",
            "urn:uuid:3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11",
        ] {
            let err = session_id(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidArgument {
                        field: "session_id",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
        }
    }
}
