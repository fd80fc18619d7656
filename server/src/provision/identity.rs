//! The identities a desktop proves to the server, made by the server before
//! the VM exists so nothing is trusted on first use: an SSH host key (its
//! private half goes to the VM through the Terraform module, which installs
//! it with cloud-init; ssh then checks it with `StrictHostKeyChecking=yes`)
//! and xrdp's TLS certificate (installed by Ansible over that checked SSH;
//! the portal's gateway accepts only that certificate).
//!
//! They live in the session's folder (`identity/`, files 0600), so a
//! restarted server, a retried stage and the destroy find the same ones.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use ssh_key::{Algorithm, LineEnding, PrivateKey, rand_core::OsRng};

use crate::files::write_private;

/// The folder of a session's identity files.
const DIR: &str = "identity";
const SSH_KEY: &str = "ssh_host_ed25519_key";
const RDP_CERT: &str = "rdp-cert.pem";
const RDP_KEY: &str = "rdp-key.pem";
/// How long xrdp's certificate is valid: longer than any desktop lives.
const RDP_CERT_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot keep the desktop's identity in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the desktop's identity file {path} is unusable ({message}): destroy the session")]
    Unusable { path: String, message: String },
    #[error("cannot generate the desktop's {what}: {message}")]
    Generate { what: &'static str, message: String },
}

/// A desktop's identities.
#[derive(Clone)]
pub struct Identity {
    /// The SSH host key, OpenSSH private key format (for the module).
    pub ssh_host_private_key: String,
    /// Its public half, one OpenSSH line without comment.
    pub ssh_host_public_key: String,
    /// xrdp's certificate and its key, PEM (for Ansible).
    pub rdp_cert_pem: String,
    pub rdp_key_pem: String,
    /// SHA-256 of the certificate's DER, lower-case hex: what the gateway pins.
    pub rdp_cert_sha256: String,
    known_hosts: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("ssh_host_public_key", &self.ssh_host_public_key)
            .field("rdp_cert_sha256", &self.rdp_cert_sha256)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity of the session whose folder is `session_dir`: read if it
    /// was made, else made now (`vm_name` names the certificate). Writes the
    /// `known_hosts` ssh reads (the host key under the alias `vm_name`).
    pub fn ensure(session_dir: &Path, vm_name: &str) -> Result<Identity, IdentityError> {
        let dir = session_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
        let (ssh_host_private_key, ssh_host_public_key) = ssh_host_key(&dir.join(SSH_KEY))?;
        let (rdp_cert_pem, rdp_key_pem) = rdp_cert(&dir, vm_name)?;
        let rdp_cert_sha256 = cert_sha256(&rdp_cert_pem)
            .ok_or_else(|| unusable(&dir.join(RDP_CERT), "no PEM certificate".into()))?;
        let known_hosts = known_hosts_path(session_dir);
        let line = format!("{} {ssh_host_public_key}\n", host_alias(vm_name));
        write_private(&known_hosts, line.as_bytes()).map_err(|e| io(&known_hosts, e))?;
        Ok(Identity {
            ssh_host_private_key,
            ssh_host_public_key,
            rdp_cert_pem,
            rdp_key_pem,
            rdp_cert_sha256,
            known_hosts,
        })
    }

    /// Puts the SSH host key another server made for the desktop (kept in
    /// the store with its Terraform variables) in the session's folder, so
    /// that this server's ssh checks the VM against the key it really has.
    /// A key already there is kept; a key that does not parse is refused.
    pub fn adopt_host_key(session_dir: &Path, private_key: &str) -> Result<(), IdentityError> {
        let dir = session_dir.join(DIR);
        let path = dir.join(SSH_KEY);
        if path.exists() {
            return Ok(());
        }
        PrivateKey::from_openssh(private_key).map_err(|e| unusable(&path, e.to_string()))?;
        std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
        write_private(&path, private_key.as_bytes()).map_err(|e| io(&path, e))
    }

    /// Lines of the private keys long enough to mask in a tool's output.
    pub fn secret_lines(&self) -> impl Iterator<Item = &str> {
        self.ssh_host_private_key
            .lines()
            .chain(self.rdp_key_pem.lines())
            .filter(|l| l.len() > 16 && !l.starts_with("-----"))
    }

    /// The `known_hosts` file holding the desktop's host key alone.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }
}

/// The `known_hosts` of a session's desktop.
pub fn known_hosts_path(session_dir: &Path) -> PathBuf {
    session_dir.join(DIR).join("known_hosts")
}

/// The name ssh looks the desktop's key up by (`-o HostKeyAlias=`), whatever
/// address the module reported: the VM's name.
pub fn host_alias(vm_name: &str) -> String {
    format!("daas-{vm_name}")
}

/// The options that make ssh check the desktop's host key against the one
/// the server made, and nothing else.
pub fn ssh_options(session_dir: &Path, vm_name: &str) -> [String; 4] {
    [
        "StrictHostKeyChecking=yes".into(),
        format!(
            "UserKnownHostsFile={}",
            known_hosts_path(session_dir).display()
        ),
        "GlobalKnownHostsFile=/dev/null".into(),
        format!("HostKeyAlias={}", host_alias(vm_name)),
    ]
}

/// SHA-256 of the first certificate of `pem`, lower-case hex.
pub fn cert_sha256(pem: &str) -> Option<String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    Some(crate::pki::fingerprint(&der))
}

fn ssh_host_key(path: &Path) -> Result<(String, String), IdentityError> {
    let key = if path.exists() {
        PrivateKey::read_openssh_file(path).map_err(|e| unusable(path, e.to_string()))?
    } else {
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| {
            IdentityError::Generate {
                what: "SSH host key",
                message: e.to_string(),
            }
        })?;
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| unusable(path, e.to_string()))?;
        write_private(path, pem.as_bytes()).map_err(|e| io(path, e))?;
        key
    };
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| unusable(path, e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| unusable(path, e.to_string()))?;
    Ok((private.to_string(), public))
}

fn rdp_cert(dir: &Path, vm_name: &str) -> Result<(String, String), IdentityError> {
    let (cert_path, key_path) = (dir.join(RDP_CERT), dir.join(RDP_KEY));
    if cert_path.exists() && key_path.exists() {
        let cert = std::fs::read_to_string(&cert_path).map_err(|e| io(&cert_path, e))?;
        let key = std::fs::read_to_string(&key_path).map_err(|e| io(&key_path, e))?;
        return Ok((cert, key));
    }
    let generate = |e: rcgen::Error| IdentityError::Generate {
        what: "RDP certificate",
        message: e.to_string(),
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
    let mut params = CertificateParams::new(vec![vm_name.to_string()]).map_err(generate)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, vm_name);
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(RDP_CERT_DAYS);
    let cert = params.self_signed(&key).map_err(generate)?;
    let (cert, key) = (cert.pem(), key.serialize_pem());
    write_private(&key_path, key.as_bytes()).map_err(|e| io(&key_path, e))?;
    write_private(&cert_path, cert.as_bytes()).map_err(|e| io(&cert_path, e))?;
    Ok((cert, key))
}

fn io(path: &Path, source: std::io::Error) -> IdentityError {
    IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn unusable(path: &Path, message: String) -> IdentityError {
    IdentityError::Unusable {
        path: path.display().to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_identity_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::ensure(dir.path(), "desktop-abc123").unwrap();
        assert!(first.ssh_host_public_key.starts_with("ssh-ed25519 "));
        assert!(
            first
                .ssh_host_private_key
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert!(first.rdp_cert_pem.contains("BEGIN CERTIFICATE"));
        assert_eq!(first.rdp_cert_sha256.len(), 64);
        for name in [SSH_KEY, RDP_CERT, RDP_KEY, "known_hosts"] {
            let mode = std::fs::metadata(dir.path().join(DIR).join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let known = std::fs::read_to_string(first.known_hosts()).unwrap();
        assert_eq!(
            known,
            format!("daas-desktop-abc123 {}\n", first.ssh_host_public_key)
        );
        let again = Identity::ensure(dir.path(), "desktop-abc123").unwrap();
        assert_eq!(again.ssh_host_private_key, first.ssh_host_private_key);
        assert_eq!(again.rdp_cert_sha256, first.rdp_cert_sha256);
        let other =
            Identity::ensure(tempfile::tempdir().unwrap().path(), "desktop-abc123").unwrap();
        assert_ne!(other.ssh_host_public_key, first.ssh_host_public_key);
        assert_ne!(other.rdp_cert_sha256, first.rdp_cert_sha256);
        // Nothing secret in what a log would print.
        let shown = format!("{first:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn another_servers_host_key_is_adopted_and_checked() {
        let made = tempfile::tempdir().unwrap();
        let first = Identity::ensure(made.path(), "desktop-abc123").unwrap();
        let here = tempfile::tempdir().unwrap();
        Identity::adopt_host_key(here.path(), &first.ssh_host_private_key).unwrap();
        let adopted = Identity::ensure(here.path(), "desktop-abc123").unwrap();
        assert_eq!(adopted.ssh_host_public_key, first.ssh_host_public_key);
        let known = std::fs::read_to_string(adopted.known_hosts()).unwrap();
        assert!(known.contains(&first.ssh_host_public_key), "{known}");
        // A key already there stays; junk is refused and names the file.
        let other = Identity::ensure(tempfile::tempdir().unwrap().path(), "x").unwrap();
        Identity::adopt_host_key(here.path(), &other.ssh_host_private_key).unwrap();
        let kept = Identity::ensure(here.path(), "desktop-abc123").unwrap();
        assert_eq!(kept.ssh_host_public_key, first.ssh_host_public_key);
        let fresh = tempfile::tempdir().unwrap();
        let err = Identity::adopt_host_key(fresh.path(), "junk")
            .unwrap_err()
            .to_string();
        assert!(err.contains(SSH_KEY), "{err}");
        assert!(!fresh.path().join(DIR).join(SSH_KEY).exists());
    }

    #[test]
    fn a_broken_identity_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        std::fs::write(dir.path().join(DIR).join(SSH_KEY), "junk").unwrap();
        let err = Identity::ensure(dir.path(), "desktop-x")
            .unwrap_err()
            .to_string();
        assert!(err.contains(SSH_KEY) && err.contains("destroy"), "{err}");
    }

    #[test]
    fn ssh_checks_the_key_strictly_under_the_alias() {
        let options = ssh_options(Path::new("/d/s"), "desktop-x");
        assert!(options.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(options.contains(&"HostKeyAlias=daas-desktop-x".to_string()));
        assert!(options.contains(&"UserKnownHostsFile=/d/s/identity/known_hosts".to_string()));
    }
}
