//! The roots a TLS client of the server trusts (the portal's LDAP client,
//! the store's PostgreSQL client): the system's, and a CA file the config
//! names.

use std::path::Path;

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

/// The system's roots, and the certificates of the PEM file `ca_file`
/// when given (an error says why that file cannot be used).
pub fn system_roots_and(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system root rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| e.to_string())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        if certs.is_empty() {
            return Err("no certificate in it".into());
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        }
    }
    Ok(roots)
}
