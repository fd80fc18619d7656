//! The certificate authority and what it signs: a CA made here (the root,
//! and the agents' intermediate under it) or loaded from files (ours or an
//! enterprise CA's), and the server's, users' and agents' certificates,
//! each with its validity. Keys are ECDSA P-256, PKCS#8 PEM.

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
    string::Ia5String,
};
use time::OffsetDateTime;
use x509_parser::pem::Pem;

use super::{
    PkiError,
    certificate::{subject_and_fingerprint, subject_of},
    identity::{
        ADMIN_ROLE_URI, GROUP_URI_PREFIX, agent_uri, check_session_id, check_user, is_group,
    },
};

/// Subject CN of agent certificates.
const AGENT_CN: &str = "daas-agent";

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

    /// Loads a CA: one made by [`init`](fn@super::init), or an enterprise CA's PEM
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

    /// Its private key, PEM (PKCS#8): for writing a CA made here.
    pub(super) fn key_pem(&self) -> &str {
        &self.key_pem
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
    /// name; the URI SAN [`ADMIN_ROLE_URI`] when `admin`; one URI SAN
    /// `urn:daas:group:G` for each of `groups`.
    pub fn issue_user(
        &self,
        name: &str,
        admin: bool,
        groups: &[String],
        validity: &Validity,
    ) -> Result<Issued, PkiError> {
        check_user(name)?;
        let mut sans = Vec::new();
        if admin {
            sans.push(SanType::URI(ia5(ADMIN_ROLE_URI)?));
        }
        for group in groups {
            if !is_group(group) || group.contains(' ') {
                return Err(PkiError::InvalidGroup {
                    name: group.clone(),
                });
            }
            sans.push(SanType::URI(ia5(&format!("{GROUP_URI_PREFIX}{group}"))?));
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::identity::Caller;
    use crate::pki::{identity_of, pem_to_der};
    use x509_parser::{
        certificate::X509Certificate,
        extensions::{ExtendedKeyUsage, GeneralName},
    };

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

    /// The subjectAltNames of a certificate, as `ip:[127, 0, 0, 1]`.
    pub(in crate::pki) fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
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
        let user = ca
            .issue_user("alice", false, &[], &Validity::days(1))
            .unwrap();
        let admin = ca
            .issue_user("Élodie", true, &[], &Validity::days(1))
            .unwrap();
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
                admin: false,
                groups: Vec::new()
            }
        );
        assert_eq!(
            identity_of(&der(&admin)).unwrap(),
            Caller::User {
                name: "Élodie".into(),
                admin: true,
                groups: Vec::new()
            }
        );
    }

    #[test]
    fn a_user_cert_names_its_groups() {
        let ca = ca();
        let groups = ["developers".to_string(), "lab-2".to_string()];
        let dev = ca
            .issue_user("dave", false, &groups, &Validity::days(1))
            .unwrap();
        with_cert(&der(&dev), |cert| {
            assert_eq!(
                sans(cert),
                vec![
                    "uri:urn:daas:group:developers".to_string(),
                    "uri:urn:daas:group:lab-2".to_string()
                ]
            );
        });
        assert_eq!(identity_of(&der(&dev)).unwrap().groups(), groups);
        // A group a URI cannot carry is refused at issue.
        for bad in ["two words", "", "a/b"] {
            let err = ca
                .issue_user("dave", false, &[bad.to_string()], &Validity::days(1))
                .unwrap_err();
            assert!(matches!(err, PkiError::InvalidGroup { .. }), "{bad}: {err}");
        }
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
    fn invalid_user_names_are_refused() {
        let err = ca()
            .issue_user("a/b", false, &[], &Validity::days(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"a/b\"") && err.contains("'/'"), "{err}");
    }

    #[test]
    fn expired_certificates_can_be_issued() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let expired = Validity {
            not_before: now - 2 * day,
            not_after: now - day,
        };
        let issued = ca().issue_user("alice", false, &[], &expired).unwrap();
        with_cert(&der(&issued), |cert| {
            assert!(!cert.validity().is_valid());
            assert!(cert.validity().not_after.timestamp() < now_secs());
        });
        let backwards = Validity {
            not_before: now,
            not_after: now - day,
        };
        assert!(ca().issue_user("alice", false, &[], &backwards).is_err());
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
        let user = ca
            .issue_user("alice", true, &[], &Validity::days(1))
            .unwrap();
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
            .issue_user("alice", false, &[], &Validity::days(1))
            .unwrap();
        assert!(verify(&stranger, webpki::KeyUsage::client_auth()).is_err());

        // Expired certificates do not verify either.
        let now = SystemTime::now();
        let expired = Validity {
            not_before: now - Duration::from_secs(7200),
            not_after: now - Duration::from_secs(3600),
        };
        let old = ca.issue_user("alice", false, &[], &expired).unwrap();
        assert!(verify(&old, webpki::KeyUsage::client_auth()).is_err());
    }

    #[test]
    fn loaded_ca_issues_like_the_original() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = tmp.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let original = ca();
        let server = original
            .issue_server(&[], &["127.0.0.1".parse().unwrap()], &Validity::days(10))
            .unwrap();
        let ca_cert = write("ca.pem", original.cert_pem());
        let ca_key = write("ca-key.pem", original.key_pem());
        let server_cert = write("server.pem", &server.cert_pem);
        let server_key = write("server-key.pem", &server.key_pem);

        let ca = Ca::load(&ca_cert, &ca_key).unwrap();
        let user = ca
            .issue_user("bob", false, &[], &Validity::days(1))
            .unwrap();
        let ca_der = pem_to_der(ca.cert_pem()).unwrap();
        let (_, ca_cert_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let user_der = der(&user);
        let (_, user_cert) = x509_parser::parse_x509_certificate(&user_der).unwrap();
        assert_eq!(user_cert.issuer(), ca_cert_x509.subject());
        user_cert
            .verify_signature(Some(ca_cert_x509.public_key()))
            .unwrap();

        // The server's certificate is not a CA; a mismatched key is refused.
        let err = Ca::load(&server_cert, &server_key).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
        let err = Ca::load(&ca_cert, &server_key).unwrap_err();
        assert!(err.to_string().contains("not the key of"), "{err}");
        let err = Ca::load(&ca_cert, &ca_cert).unwrap_err();
        assert!(err.to_string().contains("no PEM PRIVATE KEY"), "{err}");
    }
}
