//! Who the CLI calls as, read from its client certificate the way the
//! server reads it (`server/src/pki/identity.rs`): the user its subject CN
//! names, an administrator when it carries the admin-role URI SAN. Only to
//! word output (whether a table needs a USER column): what a caller may do
//! is the server's to decide, and the server may make a user an
//! administrator by name too (`[auth] admins`), which no certificate shows.

use rustls::pki_types::{CertificateDer, pem::PemObject};
use x509_parser::extensions::GeneralName;

use crate::endpoints::Endpoint;
use crate::setting_names::TlsFile;
use crate::settings::Settings;

/// The URI SAN of an administrator's certificate (`daas-server pki issue
/// --admin`).
const ADMIN_ROLE_URI: &str = "urn:daas:role:admin";

/// The user the CLI calls the server at `endpoint` as, when the client
/// certificate names a user and not an administrator. `None` for a
/// plaintext endpoint (the server takes every caller there for an
/// administrator), an administrator's certificate, or a certificate that
/// cannot be read.
pub fn user(settings: &Settings, endpoint: &str) -> Option<String> {
    if !Endpoint::parse(endpoint).ok()?.is_tls() {
        return None;
    }
    let pem = std::fs::read(settings.tls_file(TlsFile::Cert)?).ok()?;
    // The first certificate of the file is the client's own.
    let der = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    user_of(&der)
}

/// The subject CN of a certificate (DER) without the admin role; `None`
/// with it, or without exactly one CN.
fn user_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let admin = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .any(|name| matches!(name, GeneralName::URI(uri) if *uri == ADMIN_ROLE_URI)),
        Ok(None) => false,
        Err(_) => return None,
    };
    let mut names = cert.subject().iter_common_name();
    let name = names.next()?.as_str().ok()?.to_owned();
    (!admin && names.next().is_none()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings naming `user`'s certificate from a test PKI in `dir`
    /// (an administrator's with `admin`).
    fn settings_of(dir: &std::path::Path, user: &str, admin: bool) -> Settings {
        let credentials = daas_server::testkit::credentials(dir, user, admin);
        Settings {
            ca: Some(credentials.ca),
            cert: Some(credentials.cert),
            key: Some(credentials.key),
            ..Settings::plaintext("https://localhost:50051")
        }
    }

    #[test]
    fn a_users_certificate_names_them() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let alice = settings_of(dir.path(), "alice", false);
        assert_eq!(
            user(&alice, "https://localhost:50051").as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn an_administrator_or_a_plaintext_caller_is_no_plain_user() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let admin = settings_of(dir.path(), "root", true);
        assert_eq!(user(&admin, "https://localhost:50051"), None);
        // TLS files are not used on a plaintext endpoint.
        let alice = settings_of(dir.path(), "alice", false);
        assert_eq!(user(&alice, "http://127.0.0.1:50051"), None);
    }

    #[test]
    fn an_unreadable_certificate_names_nobody() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let missing = Settings {
            cert: Some(dir.path().join("missing.pem")),
            ..Settings::plaintext("https://localhost:50051")
        };
        assert_eq!(user(&missing, "https://localhost:50051"), None);
        let garbage = dir.path().join("garbage.pem");
        let body = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&garbage, body).expect("write a file");
        let garbage = Settings {
            cert: Some(garbage),
            ..missing
        };
        assert_eq!(user(&garbage, "https://localhost:50051"), None);
        assert_eq!(user_of(b"not DER"), None);
    }
}
