//! Who a client certificate names, read from it on every call: an agent
//! (the URI SAN naming its session) or a user (the subject CN, an AD
//! account name; an administrator with the admin-role URI SAN). The names
//! and URIs here are also what the issuing side writes, so both keep the
//! same rules.

use x509_parser::{certificate::X509Certificate, extensions::GeneralName};

use super::PkiError;
use crate::{domain::error::Error, domain::identity::Caller, domain::validate};

/// URI SAN marking a user certificate as an administrator's.
pub const ADMIN_ROLE_URI: &str = "urn:daas:role:admin";

/// Prefix of the URI SANs naming a user certificate's groups.
pub const GROUP_URI_PREFIX: &str = "urn:daas:group:";

/// Prefix of the URI SAN naming an agent certificate's session.
const SESSION_URI_PREFIX: &str = "urn:daas:session:";

/// URI SAN naming the session an agent certificate belongs to.
pub fn agent_uri(session_id: &str) -> String {
    format!("{SESSION_URI_PREFIX}{session_id}")
}

/// Reads a (already TLS-verified) client certificate, DER: an agent when it
/// has a URI SAN `urn:daas:session:ID`; else a user named by its subject CN
/// (an AD account name), an administrator when it has the URI SAN
/// [`ADMIN_ROLE_URI`].
pub fn identity_of(der: &[u8]) -> Result<Caller, PkiError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::BadCertificate {
            subject: "(unparsable)".into(),
            why: format!("is not X.509 DER ({e})"),
        })?;
    let bad = |why: String| PkiError::BadCertificate {
        subject: describe(&cert),
        why,
    };

    let uris: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(bad(format!("has an unreadable subjectAltName ({e})"))),
    };
    let sessions: Vec<&str> = uris
        .iter()
        .filter_map(|u| u.strip_prefix(SESSION_URI_PREFIX))
        .collect();
    let admin = uris.contains(&ADMIN_ROLE_URI);

    match sessions.as_slice() {
        [] => {}
        [id] => {
            if let Some(why) = session_id_problem(id) {
                return Err(bad(format!("names an invalid session id {id:?}: {why}")));
            }
            if admin {
                return Err(bad("names both a session and the admin role".into()));
            }
            return Ok(Caller::Agent {
                session_id: (*id).to_string(),
            });
        }
        _ => {
            return Err(bad(format!(
                "names {} sessions; an agent certificate names one",
                sessions.len()
            )));
        }
    }

    let mut names = cert.subject().iter_common_name();
    let cn = names
        .next()
        .ok_or_else(|| bad("has no subject common name (CN)".into()))?;
    if names.next().is_some() {
        return Err(bad("has several subject common names (CN)".into()));
    }
    let name = cn
        .as_str()
        .map_err(|e| bad(format!("has a subject CN that is not text ({e})")))?;
    check_user(name).map_err(|e| bad(format!("has a CN that is not a user name: {e}")))?;
    // Its groups: the URI SANs `urn:daas:group:NAME` (`pki issue
    // --group`) and the subject's OUs (a site's own CA may set those).
    let mut groups: Vec<String> = uris
        .iter()
        .filter_map(|u| u.strip_prefix(GROUP_URI_PREFIX))
        .map(str::to_string)
        .collect();
    for ou in cert.subject().iter_organizational_unit() {
        let ou = ou
            .as_str()
            .map_err(|e| bad(format!("has a subject OU that is not text ({e})")))?;
        groups.push(ou.to_string());
    }
    if let Some(g) = groups.iter().find(|g| !is_group(g)) {
        return Err(bad(format!("names a group {g:?} that is not a group name")));
    }
    groups.sort();
    groups.dedup();
    Ok(Caller::User {
        name: name.to_string(),
        admin,
        groups,
    })
}

/// A group name as a certificate may carry it: 1-64 of letters, digits,
/// '.', '_', '-' and spaces (OUs), not starting or ending with a space.
pub fn is_group(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b' '))
}

/// "subject X (serial Y)" for error messages.
fn describe(cert: &X509Certificate<'_>) -> String {
    format!(
        "\"{}\" (serial {})",
        cert.subject(),
        cert.raw_serial_as_string()
    )
}

/// A user name must be an AD account name.
pub(super) fn check_user(name: &str) -> Result<(), PkiError> {
    match validate::account_name("user", name) {
        Ok(()) => Ok(()),
        Err(Error::InvalidArgument { why, .. }) => Err(PkiError::InvalidUser {
            name: name.to_string(),
            why,
        }),
        Err(other) => Err(PkiError::InvalidUser {
            name: name.to_string(),
            why: other.to_string(),
        }),
    }
}

/// Session ids go into a URI: 1-64 of letters, digits, `.`, `_`, `~`, `-`
/// (the server's UUIDs fit).
fn session_id_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("is empty")
    } else if id.len() > 64 {
        Some("is longer than 64 characters")
    } else if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
    {
        Some("may hold only letters, digits, '.', '_', '~' and '-'")
    } else {
        None
    }
}

pub(super) fn check_session_id(id: &str) -> Result<(), PkiError> {
    match session_id_problem(id) {
        None => Ok(()),
        Some(why) => Err(PkiError::InvalidSession {
            id: id.to_string(),
            why: why.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
    };

    /// A certificate from some other tool: identity_of reads what it
    /// says, whoever signed it (TLS checked that before).
    fn self_signed(params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_site_cas_ou_is_a_group_and_a_bad_one_is_refused() {
        let cert = |ou: &str| {
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, "erin");
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, ou);
            params.subject_alt_names = vec![SanType::URI(
                format!("{GROUP_URI_PREFIX}developers").try_into().unwrap(),
            )];
            self_signed(params)
        };
        assert_eq!(
            identity_of(&cert("Lab Staff")).unwrap().groups(),
            ["Lab Staff", "developers"]
        );
        let err = identity_of(&cert("a;b")).unwrap_err().to_string();
        assert!(err.contains("a group \"a;b\""), "{err}");
    }

    #[test]
    fn what_names_no_one_is_refused() {
        // A CN that is not an account name.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "bad/name");
        let err = identity_of(&self_signed(params)).unwrap_err().to_string();
        assert!(err.contains("bad/name") && err.contains("'/'"), "{err}");

        // No CN at all.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::DnsName("x.org".try_into().unwrap())];
        let err = identity_of(&self_signed(params)).unwrap_err().to_string();
        assert!(err.contains("no subject common name"), "{err}");

        // Two sessions.
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::URI(agent_uri("a").try_into().unwrap()),
            SanType::URI(agent_uri("b").try_into().unwrap()),
        ];
        let err = identity_of(&self_signed(params)).unwrap_err().to_string();
        assert!(err.contains("2 sessions"), "{err}");

        assert!(identity_of(b"not a certificate").is_err());
    }
}
