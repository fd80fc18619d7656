//! The server's SSH key, used to reach new VMs (its public half goes to
//! every VM through the Terraform module).

use std::path::Path;

use ssh_key::{Algorithm, LineEnding, PrivateKey, rand_core::OsRng};

use crate::files::write_private;

#[derive(Debug, thiserror::Error)]
pub enum SshKeyError {
    #[error("SSH key {path}: {message}")]
    Key { path: String, message: String },
}

/// Reads the key at `path`, generating an ed25519 key (0600) if there is
/// none; returns the public key in OpenSSH format.
pub fn ensure(path: &Path) -> Result<String, SshKeyError> {
    let err = |message: String| SshKeyError::Key {
        path: path.display().to_string(),
        message,
    };
    let key = if path.exists() {
        let key = PrivateKey::read_openssh_file(path).map_err(|e| err(e.to_string()))?;
        if key.is_encrypted() {
            return Err(err(
                "is protected by a passphrase; the server needs a key it can use unattended".into(),
            ));
        }
        key
    } else {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("cannot create its folder: {e}")))?;
        }
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|e| err(format!("cannot generate: {e}")))?;
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| err(format!("cannot encode: {e}")))?;
        write_private(path, pem.as_bytes()).map_err(|e| err(format!("cannot write: {e}")))?;
        key
    };
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| err(format!("cannot encode its public half: {e}")))?;
    let pub_path = path.with_extension("pub");
    if !pub_path.exists() {
        std::fs::write(&pub_path, format!("{public} daas-server\n"))
            .map_err(|e| err(format!("cannot write {}: {e}", pub_path.display())))?;
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh").join("id_ed25519");
        let first = ensure(&path).unwrap();
        assert!(first.starts_with("ssh-ed25519 "));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ensure(&path).unwrap(), first, "the same key is reused");
    }

    #[test]
    fn a_broken_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        std::fs::write(&path, "not a key").unwrap();
        let err = ensure(&path).unwrap_err().to_string();
        assert!(err.contains("id_ed25519"), "{err}");
    }
}
