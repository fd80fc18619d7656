//! Facts read from a certificate's bytes (DER, or the PEM that holds it):
//! its SHA-256 fingerprint and serial (the revocation check, the desktop
//! certificate pin), its subject (the audit trail) and the issuer it names
//! (which CA signed an agent's certificate). None of them checks anything:
//! the certificate was verified, or is only being named.

/// The SHA-256 fingerprint and the serial number (both hex) of a
/// certificate (DER); the serial is empty when it cannot be read.
pub fn fingerprint_and_serial(der: &[u8]) -> (String, String) {
    let serial = x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| hex::encode(cert.raw_serial()))
        .unwrap_or_default();
    (fingerprint(der), serial)
}

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

/// The DER of the first certificate in PEM text (tests and callers that
/// hold PEM).
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    (block.label == "CERTIFICATE").then_some(block.contents)
}
