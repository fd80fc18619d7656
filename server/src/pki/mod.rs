//! A small certificate authority for mutual TLS: the CA, the server's
//! certificate, user certificates (CN = AD account name, optional admin
//! role) and agent certificates (bound to one session), and reading who a
//! verified client certificate names.
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM; `ring` is the only crypto provider.

use std::{
    fs::DirBuilder,
    net::IpAddr,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
    string::Ia5String,
};
use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, pem::Pem};

use crate::{
    domain::error::Error, domain::identity::Caller, domain::validate, files::write_private,
};

/// URI SAN marking a user certificate as an administrator's.
pub const ADMIN_ROLE_URI: &str = "urn:daas:role:admin";

/// Prefix of the URI SAN naming an agent certificate's session.
const SESSION_URI_PREFIX: &str = "urn:daas:session:";

/// Subject CN of agent certificates.
const AGENT_CN: &str = "daas-agent";

/// Subject CN of the CA `init` and `ensure_dev` create.
const CA_CN: &str = "DaaS CA";

/// Subject CN of the intermediate CA that signs agent certificates alone.
const AGENTS_CA_CN: &str = "DaaS agents CA";

/// Validity of the CA `init` and `ensure_dev` create.
const CA_DAYS: u32 = 3650;

/// Validity of the server certificate `ensure_dev` creates.
const DEV_SERVER_DAYS: u32 = 825;

/// Validity of the user certificate `ensure_dev` creates.
const DEV_USER_DAYS: u32 = 365;

/// What can go wrong; every message names the file or the name involved.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot create the directory {}: {error}", path.display())]
    CreateDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{} does not exist; create the CA first with `daas-server pki init`",
        path.display()
    )]
    NoCa { path: PathBuf },
    #[error(
        "the root CA's key {} is not there (kept offline?): pass --ca-key with its path",
        path.display()
    )]
    OfflineRoot { path: PathBuf },
    #[error("certificate {subject} {why}")]
    WrongIssuer { subject: String, why: String },
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists { path: PathBuf },
    #[error(
        "{} exists but {} does not; restore it or remove both",
        present.display(),
        missing.display()
    )]
    Incomplete { present: PathBuf, missing: PathBuf },
    #[error("cannot use {}: {why}", path.display())]
    BadFile { path: PathBuf, why: String },
    #[error("invalid user name {name:?}: {why}")]
    InvalidUser { name: String, why: String },
    #[error("invalid session id {id:?}: {why}")]
    InvalidSession { id: String, why: String },
    #[error("invalid server name {name:?}: {why}")]
    InvalidServerName { name: String, why: String },
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerName,
    #[error("invalid validity: {0}")]
    InvalidValidity(String),
    #[error("cannot make {what}: {error}")]
    Generate { what: String, error: rcgen::Error },
    #[error("client certificate {subject}: {why}")]
    BadCertificate { subject: String, why: String },
    #[error("the revocation list {}: {why}", path.display())]
    Revocations { path: PathBuf, why: String },
    #[error(
        "client certificate sha256 {fingerprint} is revoked (daas-server pki revoke): ask an administrator for a new one"
    )]
    Revoked { fingerprint: String },
}

pub mod revoked;

/// The SHA-256 fingerprint and the serial number (both hex) of a
/// certificate (DER); the serial is empty when it cannot be read.
pub fn fingerprint_and_serial(der: &[u8]) -> (String, String) {
    let serial = x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| hex::encode(cert.raw_serial()))
        .unwrap_or_default();
    (fingerprint(der), serial)
}

/// URI SAN naming the session an agent certificate belongs to.
pub fn agent_uri(session_id: &str) -> String {
    format!("{SESSION_URI_PREFIX}{session_id}")
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From five minutes ago (clock skew) to `n` days from now.
    pub fn days(n: u32) -> Validity {
        let now = SystemTime::now();
        let skew = Duration::from_secs(5 * 60);
        let span = Duration::from_secs(u64::from(n) * 86_400);
        Validity {
            not_before: now.checked_sub(skew).unwrap_or(now),
            not_after: now.checked_add(span).unwrap_or(now),
        }
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<(), PkiError> {
        if self.not_after <= self.not_before {
            return Err(PkiError::InvalidValidity(
                "not_after must be later than not_before".into(),
            ));
        }
        params.not_before = offset(self.not_before)?;
        params.not_after = offset(self.not_after)?;
        Ok(())
    }
}

/// A `SystemTime` as the date-time rcgen writes, to the second.
fn offset(t: SystemTime) -> Result<OffsetDateTime, PkiError> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok(),
        Err(before) => i64::try_from(before.duration().as_secs()).ok().map(|s| -s),
    };
    secs.and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .filter(|d| (1950..=9999).contains(&d.year()))
        .ok_or_else(|| PkiError::InvalidValidity("dates must lie in the years 1950-9999".into()))
}

/// A certificate and its private key, both PEM (the key PKCS#8).
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// The certificate's subject and SHA-256 fingerprint, for the audit
    /// trail ([`subject_and_fingerprint`]).
    pub fn subject_and_fingerprint(&self) -> (String, String) {
        match x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes()) {
            Ok((_, pem)) => subject_and_fingerprint(&pem.contents),
            Err(_) => ("(unparsable)".into(), String::new()),
        }
    }
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// What the server gives each desktop's agent: a certificate from `ca`
/// (the agents' CA, or the root of a PKI made before it), and the CA that
/// signed the server's own certificate, to check the server with.
#[derive(Debug)]
pub struct AgentAuthority {
    pub ca: Ca,
    /// `tls.ca`'s PEM: what agents trust.
    pub server_ca_pem: String,
}

/// A certificate authority that signs server, user and agent certificates.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// An intermediate's own certificate, sent after each leaf it signs
    /// (so clients present the chain); empty for a root.
    chain_pem: String,
    /// The CA certificate's subject, DER (what its leaves name as issuer).
    subject_der: Vec<u8>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA (CA:TRUE, pathlen 1: it may sign the agents'
    /// intermediate, which signs leaves only; keyCertSign), ECDSA P-256.
    pub fn generate(common_name: &str, validity: &Validity) -> Result<Ca, PkiError> {
        Ca::make(common_name, validity, 1, None)
    }

    /// An intermediate CA signed by this one (CA:TRUE, pathlen 0): the
    /// agents' CA, whose key is the only one the server keeps online.
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        validity: &Validity,
    ) -> Result<Ca, PkiError> {
        Ca::make(common_name, validity, 0, Some(self))
    }

    fn make(
        common_name: &str,
        validity: &Validity,
        pathlen: u8,
        parent: Option<&Ca>,
    ) -> Result<Ca, PkiError> {
        let what = || format!("the CA {common_name:?}");
        let gen_err = |error| PkiError::Generate {
            what: what(),
            error,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(pathlen));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        validity.apply(&mut params)?;
        let cert = match parent {
            None => params.self_signed(&key),
            Some(parent) => {
                params.use_authority_key_identifier_extension = true;
                params.signed_by(&key, &parent.issuer)
            }
        }
        .map_err(gen_err)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let subject_der = subject_of(cert.der()).unwrap_or_default();
        let issuer = Issuer::new(params, key);
        Ok(Ca {
            chain_pem: if parent.is_some() {
                cert_pem.clone()
            } else {
                String::new()
            },
            cert_pem,
            key_pem,
            issuer,
            subject_der,
        })
    }

    /// Loads a CA: one made by [`init`], or an enterprise CA's PEM
    /// certificate (the first one in the file signs) and its unencrypted
    /// PKCS#8 key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Ca, PkiError> {
        let cert_pem = read_text(cert_path)?;
        let key_pem = read_text(key_path)?;
        let bad = |path: &Path, why: String| PkiError::BadFile {
            path: path.to_path_buf(),
            why,
        };

        let cert_der = Pem::iter_from_buffer(cert_pem.as_bytes())
            .filter_map(Result::ok)
            .find(|p| p.label == "CERTIFICATE")
            .map(|p| p.contents)
            .ok_or_else(|| bad(cert_path, "no PEM CERTIFICATE in it".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| bad(cert_path, format!("not an X.509 certificate ({e})")))?;
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            return Err(bad(
                cert_path,
                "not a CA certificate (no basicConstraints CA:TRUE)".into(),
            ));
        }

        let key = load_key(key_path, &key_pem)?;
        if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(bad(
                key_path,
                format!("it is not the key of {}", cert_path.display()),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(|e| bad(cert_path, format!("cannot sign with it ({e})")))?;
        let subject_der = cert.subject().as_raw().to_vec();
        let self_signed = cert.issuer().as_raw() == cert.subject().as_raw();
        let chain_pem = if self_signed {
            String::new()
        } else {
            first_pem_certificate(&cert_pem)
        };
        Ok(Ca {
            cert_pem,
            key_pem,
            issuer,
            chain_pem,
            subject_der,
        })
    }

    /// Whether this CA is an intermediate (its certificate is not self-signed).
    pub fn is_intermediate(&self) -> bool {
        !self.chain_pem.is_empty()
    }

    /// The subject of this CA's certificate, DER: the issuer its leaves name.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// The CA certificate, PEM (for a loaded CA: the file's contents).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate (EKU serverAuth) for these names and addresses.
    pub fn issue_server(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        validity: &Validity,
    ) -> Result<Issued, PkiError> {
        if dns.is_empty() && ips.is_empty() {
            return Err(PkiError::NoServerName);
        }
        let mut sans = Vec::with_capacity(dns.len() + ips.len());
        for name in dns {
            check_dns_name(name)?;
            let ia5 =
                Ia5String::try_from(name.as_str()).map_err(|e| PkiError::InvalidServerName {
                    name: name.clone(),
                    why: e.to_string(),
                })?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(ips.iter().copied().map(SanType::IpAddress));
        let cn = match (dns.first(), ips.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => return Err(PkiError::NoServerName),
        };
        self.issue_leaf(
            &format!("the server certificate for {cn}"),
            &cn,
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            validity,
        )
    }

    /// A user certificate (EKU clientAuth): CN = `name`, an AD account
    /// name; the URI SAN [`ADMIN_ROLE_URI`] when `admin`.
    pub fn issue_user(
        &self,
        name: &str,
        admin: bool,
        validity: &Validity,
    ) -> Result<Issued, PkiError> {
        check_user(name)?;
        let mut sans = Vec::new();
        if admin {
            sans.push(SanType::URI(ia5(ADMIN_ROLE_URI)?));
        }
        self.issue_leaf(
            &format!("the certificate for user {name:?}"),
            name,
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    /// An agent certificate (EKU clientAuth): CN `daas-agent`, URI SAN
    /// [`agent_uri`]`(session_id)`.
    pub fn issue_agent(&self, session_id: &str, validity: &Validity) -> Result<Issued, PkiError> {
        check_session_id(session_id)?;
        let sans = vec![SanType::URI(ia5(&agent_uri(session_id))?)];
        self.issue_leaf(
            &format!("the agent certificate for session {session_id}"),
            AGENT_CN,
            sans,
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    fn issue_leaf(
        &self,
        what: &str,
        common_name: &str,
        sans: Vec<SanType>,
        eku: ExtendedKeyUsagePurpose,
        validity: &Validity,
    ) -> Result<Issued, PkiError> {
        let gen_err = |error| PkiError::Generate {
            what: what.to_string(),
            error,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn(common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        validity.apply(&mut params)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(Issued {
            cert_pem: format!("{}{}", cert.pem(), self.chain_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The subject of a certificate (DER), DER.
pub fn subject_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().as_raw().to_vec())
}

/// The issuer a certificate (DER) names, DER.
pub fn issuer_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.issuer().as_raw().to_vec())
}

/// The first `CERTIFICATE` block of a PEM text, with its markers.
fn first_pem_certificate(pem: &str) -> String {
    const END: &str = "-----END CERTIFICATE-----";
    match (pem.find("-----BEGIN CERTIFICATE-----"), pem.find(END)) {
        (Some(start), Some(end)) if start < end => format!("{}\n", &pem[start..end + END.len()]),
        _ => String::new(),
    }
}

fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A positive 128-bit random serial number.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn ia5(uri: &str) -> Result<Ia5String, PkiError> {
    Ia5String::try_from(uri).map_err(|e| PkiError::Generate {
        what: format!("the URI {uri:?}"),
        error: e,
    })
}

fn read_text(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|error| PkiError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// The first private key in a PEM file; PKCS#8 only (what ring reads).
fn load_key(path: &Path, pem: &str) -> Result<KeyPair, PkiError> {
    let bad = |why: String| PkiError::BadFile {
        path: path.to_path_buf(),
        why,
    };
    let block = Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|p| p.label.ends_with("PRIVATE KEY"))
        .ok_or_else(|| bad("no PEM PRIVATE KEY in it".into()))?;
    match block.label.as_str() {
        "PRIVATE KEY" => KeyPair::try_from(block.contents.as_slice())
            .map_err(|e| bad(format!("unusable private key ({e})"))),
        "ENCRYPTED PRIVATE KEY" => Err(bad(
            "the key is encrypted; the server needs an unencrypted PKCS#8 key".into(),
        )),
        other => Err(bad(format!(
            "a {other} is not PKCS#8; convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`"
        ))),
    }
}

fn check_user(name: &str) -> Result<(), PkiError> {
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

fn check_session_id(id: &str) -> Result<(), PkiError> {
    match session_id_problem(id) {
        None => Ok(()),
        Some(why) => Err(PkiError::InvalidSession {
            id: id.to_string(),
            why: why.into(),
        }),
    }
}

/// A DNS name: labels of letters, digits and `-`, optionally `*.` first.
fn check_dns_name(name: &str) -> Result<(), PkiError> {
    let invalid = |why: &str| PkiError::InvalidServerName {
        name: name.to_string(),
        why: why.into(),
    };
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() || name.len() > 253 {
        return Err(invalid("must be 1-253 characters"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(invalid("is an IP address; give it with --ip"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if rest.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(invalid(
            "must be dot-separated labels of letters, digits and '-'",
        ))
    }
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
    Ok(Caller::User {
        name: name.to_string(),
        admin,
    })
}

/// "subject X (serial Y)" for error messages.
/// A certificate (DER) as the audit trail names it: its subject, and the
/// SHA-256 of the DER in hex (what `openssl x509 -fingerprint -sha256`
/// prints, without the colons).
pub fn subject_and_fingerprint(der: &[u8]) -> (String, String) {
    let subject = x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_else(|_| "(unparsable)".into());
    (subject, fingerprint(der))
}

/// The SHA-256 of `der`, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

fn describe(cert: &X509Certificate<'_>) -> String {
    format!(
        "\"{}\" (serial {})",
        cert.subject(),
        cert.raw_serial_as_string()
    )
}

/// The files of a PKI directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(dir: &Path) -> PkiPaths {
        PkiPaths {
            dir: dir.to_path_buf(),
        }
    }
    /// The CA certificate, for clients and the server to trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// The root CA's key (0600): signs the server's, the users' and the
    /// agents' CA's certificates. `init --offline-root` keeps it elsewhere.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
    /// The agents' CA (an intermediate): signs agent certificates alone.
    pub fn agents_ca(&self) -> PathBuf {
        self.dir.join("agents-ca.pem")
    }
    /// Its key (0600): the only CA key the server keeps online.
    pub fn agents_ca_key(&self) -> PathBuf {
        self.dir.join("agents-ca-key.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }
    /// The users' directory (0700 when created here).
    pub fn users(&self) -> PathBuf {
        self.dir.join("users")
    }
    pub fn user_cert(&self, name: &str) -> PathBuf {
        self.users().join(format!("{name}.pem"))
    }
    pub fn user_key(&self, name: &str) -> PathBuf {
        self.users().join(format!("{name}-key.pem"))
    }
}

/// Creates `dir` and its missing parents, 0700; an existing dir is left as
/// it is.
fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| PkiError::CreateDir {
            path: dir.to_path_buf(),
            error,
        })
}

fn refuse_existing(paths: &[PathBuf]) -> Result<(), PkiError> {
    match paths.iter().find(|p| p.exists()) {
        Some(path) => Err(PkiError::Exists { path: path.clone() }),
        None => Ok(()),
    }
}

/// Writes a certificate (default mode) and its key (0600), neither of which
/// may exist.
fn write_pair(issued: &Issued, cert: &Path, key: &Path) -> Result<(), PkiError> {
    refuse_existing(&[cert.to_path_buf(), key.to_path_buf()])?;
    write_private(key, issued.key_pem.as_bytes()).map_err(|error| PkiError::Write {
        path: key.to_path_buf(),
        error,
    })?;
    std::fs::write(cert, issued.cert_pem.as_bytes()).map_err(|error| PkiError::Write {
        path: cert.to_path_buf(),
        error,
    })
}

/// What state a certificate + key pair of files is in.
enum Pair {
    Present,
    Missing,
}

fn pair_state(cert: &Path, key: &Path) -> Result<Pair, PkiError> {
    match (cert.exists(), key.exists()) {
        (true, true) => Ok(Pair::Present),
        (false, false) => Ok(Pair::Missing),
        (true, false) => Err(PkiError::Incomplete {
            present: cert.to_path_buf(),
            missing: key.to_path_buf(),
        }),
        (false, true) => Err(PkiError::Incomplete {
            present: key.to_path_buf(),
            missing: cert.to_path_buf(),
        }),
    }
}

/// The names of the dev server certificate, and of `pki init`'s when
/// given none: `localhost`, `127.0.0.1` and `::1`.
pub fn localhost_names() -> (Vec<String>, Vec<IpAddr>) {
    (
        vec!["localhost".to_string()],
        vec![
            IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ],
    )
}

/// Creates a root CA (10 years), the agents' intermediate CA under it (10
/// years) and a server certificate (`days`) for `dns` and `ips` in `dir`;
/// the root's key goes to `offline_root` when given (a folder to keep
/// away from the server), else beside the CA. Refuses when any of those
/// files exists. Returns the PKI's paths and where the root key is.
pub fn init(
    dir: &Path,
    dns: &[String],
    ips: &[IpAddr],
    days: u32,
    offline_root: Option<&Path>,
) -> Result<(PkiPaths, PathBuf), PkiError> {
    let paths = PkiPaths::new(dir);
    let root_key = match offline_root {
        Some(folder) => folder.join("ca-key.pem"),
        None => paths.ca_key(),
    };
    refuse_existing(&[
        paths.ca(),
        paths.ca_key(),
        root_key.clone(),
        paths.agents_ca(),
        paths.agents_ca_key(),
        paths.server_cert(),
        paths.server_key(),
    ])?;
    let ca = Ca::generate(CA_CN, &Validity::days(CA_DAYS))?;
    let agents = ca.issue_intermediate(AGENTS_CA_CN, &Validity::days(CA_DAYS))?;
    let server = ca.issue_server(dns, ips, &Validity::days(days))?;
    create_private_dir(dir)?;
    if let Some(folder) = offline_root {
        create_private_dir(folder)?;
    }
    write_ca(&ca, &paths.ca(), &root_key)?;
    write_ca(&agents, &paths.agents_ca(), &paths.agents_ca_key())?;
    write_pair(&server, &paths.server_cert(), &paths.server_key())?;
    Ok((paths, root_key))
}

fn write_ca(ca: &Ca, cert: &Path, key: &Path) -> Result<(), PkiError> {
    let issued = Issued {
        cert_pem: ca.cert_pem.clone(),
        key_pem: ca.key_pem.clone(),
    };
    write_pair(&issued, cert, key)
}

/// Issues a certificate for user `name` with the root CA in `dir` (its key
/// `ca_key`, by default beside it); writes `users/NAME.pem` and
/// `users/NAME-key.pem` (neither may exist) and returns their paths.
pub fn issue_user_files(
    dir: &Path,
    name: &str,
    admin: bool,
    days: u32,
    ca_key: Option<&Path>,
) -> Result<(PathBuf, PathBuf), PkiError> {
    check_user(name)?;
    let paths = PkiPaths::new(dir);
    if !paths.ca().exists() {
        return Err(PkiError::NoCa { path: paths.ca() });
    }
    let key = ca_key.map_or_else(|| paths.ca_key(), Path::to_path_buf);
    if !key.exists() {
        return Err(PkiError::OfflineRoot { path: key });
    }
    let ca = Ca::load(&paths.ca(), &key)?;
    let (cert, key) = (paths.user_cert(name), paths.user_key(name));
    refuse_existing(&[cert.clone(), key.clone()])?;
    let issued = ca.issue_user(name, admin, &Validity::days(days))?;
    create_private_dir(&paths.users())?;
    write_pair(&issued, &cert, &key)?;
    Ok((cert, key))
}

/// Dev mode: creates what is missing in `dir` (CA + server cert for
/// localhost, 127.0.0.1, ::1; and a user certificate for `user`, admin),
/// leaves existing files alone. Returns true when it created something.
pub fn ensure_dev(dir: &Path, user: &str) -> Result<bool, PkiError> {
    check_user(user)?;
    let paths = PkiPaths::new(dir);
    let server = pair_state(&paths.server_cert(), &paths.server_key())?;
    let client = pair_state(&paths.user_cert(user), &paths.user_key(user))?;
    let mut created = false;
    let ca = match pair_state(&paths.ca(), &paths.ca_key())? {
        Pair::Present => Ca::load(&paths.ca(), &paths.ca_key())?,
        Pair::Missing => {
            // Certificates without the CA that signed them are useless.
            for (cert, state) in [
                (paths.server_cert(), &server),
                (paths.user_cert(user), &client),
            ] {
                if matches!(state, Pair::Present) {
                    return Err(PkiError::Incomplete {
                        present: cert,
                        missing: paths.ca(),
                    });
                }
            }
            let ca = Ca::generate(CA_CN, &Validity::days(CA_DAYS))?;
            let agents = ca.issue_intermediate(AGENTS_CA_CN, &Validity::days(CA_DAYS))?;
            create_private_dir(dir)?;
            write_ca(&ca, &paths.ca(), &paths.ca_key())?;
            write_ca(&agents, &paths.agents_ca(), &paths.agents_ca_key())?;
            created = true;
            ca
        }
    };
    if let Pair::Missing = server {
        let (dns, ips) = localhost_names();
        let issued = ca.issue_server(&dns, &ips, &Validity::days(DEV_SERVER_DAYS))?;
        write_pair(&issued, &paths.server_cert(), &paths.server_key())?;
        created = true;
    }
    if let Pair::Missing = client {
        let issued = ca.issue_user(user, true, &Validity::days(DEV_USER_DAYS))?;
        create_private_dir(&paths.users())?;
        write_pair(&issued, &paths.user_cert(user), &paths.user_key(user))?;
        created = true;
    }
    Ok(created)
}

/// The DER of the first certificate in PEM text (tests and callers that
/// hold PEM).
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    (block.label == "CERTIFICATE").then_some(block.contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::extensions::ExtendedKeyUsage;

    fn ca() -> Ca {
        Ca::generate("Test CA", &Validity::days(30)).unwrap()
    }

    fn der(issued: &Issued) -> Vec<u8> {
        pem_to_der(&issued.cert_pem).unwrap()
    }

    fn with_cert<T>(der: &[u8], f: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        f(&cert)
    }

    fn eku(cert: &X509Certificate<'_>) -> ExtendedKeyUsage<'static> {
        let e = cert.extended_key_usage().unwrap().unwrap().value;
        ExtendedKeyUsage {
            any: e.any,
            server_auth: e.server_auth,
            client_auth: e.client_auth,
            code_signing: e.code_signing,
            email_protection: e.email_protection,
            time_stamping: e.time_stamping,
            ocsp_signing: e.ocsp_signing,
            other: Vec::new(),
        }
    }

    fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
        cert.subject_alternative_name()
            .unwrap()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        GeneralName::DNSName(d) => format!("dns:{d}"),
                        GeneralName::URI(u) => format!("uri:{u}"),
                        GeneralName::IPAddress(b) => format!("ip:{b:?}"),
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn cn(cert: &X509Certificate<'_>) -> String {
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn ca_is_a_ca() {
        let ca = ca();
        let der = pem_to_der(ca.cert_pem()).unwrap();
        with_cert(&der, |cert| {
            assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
            assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
            assert_eq!(cn(cert), "Test CA");
        });
    }

    #[test]
    fn server_cert_has_server_auth_and_sans() {
        let issued = ca()
            .issue_server(
                &["daas.example.org".into()],
                &["10.0.0.5".parse().unwrap()],
                &Validity::days(10),
            )
            .unwrap();
        assert!(issued.key_pem.contains("BEGIN PRIVATE KEY"));
        with_cert(&der(&issued), |cert| {
            let eku = eku(cert);
            assert!(eku.server_auth && !eku.client_auth);
            assert_eq!(sans(cert), vec!["dns:daas.example.org", "ip:[10, 0, 0, 5]"]);
            assert_eq!(cn(cert), "daas.example.org");
            assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        });
    }

    #[test]
    fn server_names_are_checked() {
        let ca = ca();
        let v = Validity::days(1);
        assert!(matches!(
            ca.issue_server(&[], &[], &v),
            Err(PkiError::NoServerName)
        ));
        for bad in ["", "a b", "-x.org", "x..org", "é.org", "1.2.3.4"] {
            let err = ca.issue_server(&[bad.into()], &[], &v).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "{bad}: {err}"
            );
        }
        assert!(ca.issue_server(&["*.example.org".into()], &[], &v).is_ok());
    }

    #[test]
    fn user_and_admin_certs() {
        let ca = ca();
        let user = ca.issue_user("alice", false, &Validity::days(1)).unwrap();
        let admin = ca.issue_user("Élodie", true, &Validity::days(1)).unwrap();
        with_cert(&der(&user), |cert| {
            let eku = eku(cert);
            assert!(eku.client_auth && !eku.server_auth);
            assert_eq!(cn(cert), "alice");
            assert!(sans(cert).is_empty());
        });
        with_cert(&der(&admin), |cert| {
            assert_eq!(cn(cert), "Élodie");
            assert_eq!(sans(cert), vec![format!("uri:{ADMIN_ROLE_URI}")]);
        });
        assert_eq!(
            identity_of(&der(&user)).unwrap(),
            Caller::User {
                name: "alice".into(),
                admin: false
            }
        );
        assert_eq!(
            identity_of(&der(&admin)).unwrap(),
            Caller::User {
                name: "Élodie".into(),
                admin: true
            }
        );
    }

    #[test]
    fn agent_cert() {
        let id = "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11";
        let agent = ca().issue_agent(id, &Validity::days(1)).unwrap();
        with_cert(&der(&agent), |cert| {
            assert!(eku(cert).client_auth);
            assert_eq!(cn(cert), "daas-agent");
            assert_eq!(sans(cert), vec![format!("uri:urn:daas:session:{id}")]);
        });
        assert_eq!(
            identity_of(&der(&agent)).unwrap(),
            Caller::Agent {
                session_id: id.into()
            }
        );
        let err = ca()
            .issue_agent("../x", &Validity::days(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"../x\""), "{err}");
    }

    #[test]
    fn invalid_names_are_refused() {
        let ca = ca();
        let err = ca
            .issue_user("a/b", false, &Validity::days(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"a/b\"") && err.contains("'/'"), "{err}");

        // A certificate (from some other tool) whose CN is not an account name.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name_dn("bad/name");
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let err = identity_of(cert.der()).unwrap_err().to_string();
        assert!(err.contains("bad/name") && err.contains("'/'"), "{err}");

        // No CN at all.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::DnsName("x.org".try_into().unwrap())];
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let err = identity_of(cert.der()).unwrap_err().to_string();
        assert!(err.contains("no subject common name"), "{err}");

        // Two sessions.
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::URI(ia5(&agent_uri("a")).unwrap()),
            SanType::URI(ia5(&agent_uri("b")).unwrap()),
        ];
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let err = identity_of(cert.der()).unwrap_err().to_string();
        assert!(err.contains("2 sessions"), "{err}");

        assert!(identity_of(b"not a certificate").is_err());
    }

    #[test]
    fn expired_certificates_can_be_issued() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let expired = Validity {
            not_before: now - 2 * day,
            not_after: now - day,
        };
        let issued = ca().issue_user("alice", false, &expired).unwrap();
        with_cert(&der(&issued), |cert| {
            assert!(!cert.validity().is_valid());
            assert!(cert.validity().not_after.timestamp() < now_secs());
        });
        let backwards = Validity {
            not_before: now,
            not_after: now - day,
        };
        assert!(ca().issue_user("alice", false, &backwards).is_err());
    }

    fn now_secs() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn certificates_chain_to_the_ca() {
        use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
        let ca = ca();
        let ca_der = pem_to_der(ca.cert_pem()).unwrap();
        let ca_der = CertificateDer::from(ca_der);
        let anchors = [webpki::anchor_from_trusted_cert(&ca_der).unwrap()];
        let algs = [webpki::ring::ECDSA_P256_SHA256];
        let verify = |issued: &Issued, usage: webpki::KeyUsage| {
            let leaf = CertificateDer::from(der(issued));
            let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
            ee.verify_for_usage(&algs, &anchors, &[], UnixTime::now(), usage, None, None)
                .map(|_| ())
        };
        let user = ca.issue_user("alice", true, &Validity::days(1)).unwrap();
        verify(&user, webpki::KeyUsage::client_auth()).unwrap();
        assert!(verify(&user, webpki::KeyUsage::server_auth()).is_err());
        let agent = ca.issue_agent("s-1", &Validity::days(1)).unwrap();
        verify(&agent, webpki::KeyUsage::client_auth()).unwrap();

        let server = ca
            .issue_server(
                &["localhost".into()],
                &["127.0.0.1".parse().unwrap()],
                &Validity::days(1),
            )
            .unwrap();
        verify(&server, webpki::KeyUsage::server_auth()).unwrap();
        let leaf = CertificateDer::from(der(&server));
        let ee = webpki::EndEntityCert::try_from(&leaf).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        ee.verify_is_valid_for_subject_name(&name).unwrap();

        // Another CA's certificates do not verify.
        let other = Ca::generate("Other CA", &Validity::days(1)).unwrap();
        let stranger = other
            .issue_user("alice", false, &Validity::days(1))
            .unwrap();
        assert!(verify(&stranger, webpki::KeyUsage::client_auth()).is_err());

        // Expired certificates do not verify either.
        let now = SystemTime::now();
        let expired = Validity {
            not_before: now - Duration::from_secs(7200),
            not_after: now - Duration::from_secs(3600),
        };
        let old = ca.issue_user("alice", false, &expired).unwrap();
        assert!(verify(&old, webpki::KeyUsage::client_auth()).is_err());
    }

    #[test]
    fn init_writes_private_keys_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let (paths, _) = init(&dir, &["localhost".into()], &[], 10, None).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&paths.ca_key()), 0o600);
        assert_eq!(mode(&paths.server_key()), 0o600);
        assert!(paths.ca().exists() && paths.server_cert().exists());
        let ca_before = std::fs::read(paths.ca_key()).unwrap();

        let err = init(&dir, &["localhost".into()], &[], 10, None).unwrap_err();
        assert!(
            err.to_string().contains(&paths.ca().display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read(paths.ca_key()).unwrap(), ca_before);

        let (cert, key) = issue_user_files(&dir, "alice", true, 5, None).unwrap();
        assert_eq!(cert, paths.user_cert("alice"));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&paths.users()), 0o700);
        let pem = std::fs::read_to_string(&cert).unwrap();
        assert_eq!(
            identity_of(&pem_to_der(&pem).unwrap()).unwrap(),
            Caller::User {
                name: "alice".into(),
                admin: true
            }
        );
        let err = issue_user_files(&dir, "alice", false, 5, None).unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
        let err = issue_user_files(&dir, "a/b", false, 5, None).unwrap_err();
        assert!(err.to_string().contains("\"a/b\""), "{err}");

        // Without a CA there is nothing to issue with.
        let err = issue_user_files(&tmp.path().join("none"), "bob", false, 5, None).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn loaded_ca_issues_like_the_original() {
        let tmp = tempfile::tempdir().unwrap();
        let (paths, _) = init(tmp.path(), &[], &["127.0.0.1".parse().unwrap()], 10, None).unwrap();
        let ca = Ca::load(&paths.ca(), &paths.ca_key()).unwrap();
        let user = ca.issue_user("bob", false, &Validity::days(1)).unwrap();
        let ca_der = pem_to_der(ca.cert_pem()).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let user_der = der(&user);
        let (_, user_cert) = x509_parser::parse_x509_certificate(&user_der).unwrap();
        assert_eq!(user_cert.issuer(), ca_cert.subject());
        user_cert
            .verify_signature(Some(ca_cert.public_key()))
            .unwrap();

        // The server's certificate is not a CA; a mismatched key is refused.
        let err = Ca::load(&paths.server_cert(), &paths.server_key()).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
        let err = Ca::load(&paths.ca(), &paths.server_key()).unwrap_err();
        assert!(err.to_string().contains("not the key of"), "{err}");
        let err = Ca::load(&paths.ca(), &paths.ca()).unwrap_err();
        assert!(err.to_string().contains("no PEM PRIVATE KEY"), "{err}");
    }

    #[test]
    fn ensure_dev_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        assert!(ensure_dev(&dir, "dev").unwrap());
        let paths = PkiPaths::new(&dir);
        for key in [paths.ca_key(), paths.server_key(), paths.user_key("dev")] {
            assert_eq!(mode(&key), 0o600, "{}", key.display());
        }
        let before = std::fs::read(paths.ca_key()).unwrap();
        assert!(!ensure_dev(&dir, "dev").unwrap());
        assert_eq!(std::fs::read(paths.ca_key()).unwrap(), before);

        let pem = std::fs::read_to_string(paths.user_cert("dev")).unwrap();
        assert_eq!(
            identity_of(&pem_to_der(&pem).unwrap()).unwrap(),
            Caller::User {
                name: "dev".into(),
                admin: true
            }
        );
        let pem = std::fs::read_to_string(paths.server_cert()).unwrap();
        with_cert(&pem_to_der(&pem).unwrap(), |cert| {
            assert_eq!(
                sans(cert),
                vec![
                    "dns:localhost".to_string(),
                    "ip:[127, 0, 0, 1]".into(),
                    format!("ip:{:?}", std::net::Ipv6Addr::LOCALHOST.octets()),
                ]
            );
        });

        // A missing user certificate is added with the existing CA.
        std::fs::remove_file(paths.user_cert("dev")).unwrap();
        std::fs::remove_file(paths.user_key("dev")).unwrap();
        assert!(ensure_dev(&dir, "dev").unwrap());
        assert_eq!(std::fs::read(paths.ca_key()).unwrap(), before);

        // Half a pair is an error naming both files.
        std::fs::remove_file(paths.server_key()).unwrap();
        let err = ensure_dev(&dir, "dev").unwrap_err().to_string();
        assert!(
            err.contains("server.pem") && err.contains("server-key.pem"),
            "{err}"
        );
    }
}
