//! The server's SSH key, used to reach new VMs (its public half goes to
//! every VM through the Terraform module). Servers sharing a store share
//! one key, kept in the store ([`share`]): a desktop one server made lets
//! any other in (its teardown playbook, say).

use std::path::Path;

use ssh_key::{Algorithm, LineEnding, PrivateKey, rand_core::OsRng};

use crate::files::write_private;

#[derive(Debug, thiserror::Error)]
pub enum SshKeyError {
    #[error("SSH key {path}: {message}")]
    Key { path: String, message: String },
    #[error(
        "ssh.private_key {path} is not the key the other servers of this deployment use: give every server the same file, or leave ssh.private_key unset to use the deployment's (kept in the store)"
    )]
    NotTheDeployments { path: String },
    #[error("cannot share the SSH key through the store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// The name of the deployment's key in the store.
const SECRET: &str = "ssh_private_key";

/// On a store servers share: makes the key at `path` the deployment's.
/// The first server to start proposes its own; the others take it, in
/// place of the one they made themselves (`configured`: the file was
/// named in the config, and a different one is refused, not replaced).
/// Returns the public key.
pub async fn share(
    path: &Path,
    configured: bool,
    store: &crate::store::Store,
) -> Result<String, SshKeyError> {
    let mine = ensure(path)?;
    let err = |message: String| SshKeyError::Key {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let kept = store.deployment_secret(SECRET, pem).await?;
    let kept = std::str::from_utf8(&kept)
        .ok()
        .and_then(|text| PrivateKey::from_openssh(text).ok())
        .ok_or_else(|| err("the deployment's key in the store is not an OpenSSH key".into()))?;
    let theirs = kept
        .public_key()
        .to_openssh()
        .map_err(|e| err(format!("cannot encode the deployment's key: {e}")))?;
    if theirs == mine {
        return Ok(mine);
    }
    if configured {
        return Err(SshKeyError::NotTheDeployments {
            path: path.display().to_string(),
        });
    }
    tracing::warn!(path = %path.display(), "this server's own SSH key is replaced by the deployment's (desktops it made alone before trust the old one)");
    let pem = kept
        .to_openssh(LineEnding::LF)
        .map_err(|e| err(format!("cannot encode: {e}")))?;
    write_private(path, pem.as_bytes()).map_err(|e| err(format!("cannot write: {e}")))?;
    write_public(path, &theirs)?;
    Ok(theirs)
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
    if !path.with_extension("pub").exists() {
        write_public(path, &public)?;
    }
    Ok(public)
}

/// Writes `public` beside the private key at `path` (`.pub`).
fn write_public(path: &Path, public: &str) -> Result<(), SshKeyError> {
    let pub_path = path.with_extension("pub");
    std::fs::write(&pub_path, format!("{public} daas-server\n")).map_err(|e| SshKeyError::Key {
        path: path.display().to_string(),
        message: format!("cannot write {}: {e}", pub_path.display()),
    })
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

    #[tokio::test]
    async fn servers_sharing_a_store_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("db.sqlite3")).unwrap();
        let first = dir.path().join("a/ssh/id_ed25519");
        let second = dir.path().join("b/ssh/id_ed25519");
        let theirs = share(&first, false, &store).await.unwrap();
        let own = ensure(&second).unwrap();
        assert_ne!(own, theirs);
        // The second server's own key gives way to the deployment's.
        assert_eq!(share(&second, false, &store).await.unwrap(), theirs);
        assert_eq!(ensure(&second).unwrap(), theirs);
        let public = std::fs::read_to_string(second.with_extension("pub")).unwrap();
        assert!(public.starts_with(&theirs), "{public}");
        let mode = std::fs::metadata(&second).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A file the config names is never replaced: a different one stops
        // the server, naming it.
        let named = dir.path().join("c/id_ed25519");
        ensure(&named).unwrap();
        let err = share(&named, true, &store).await.unwrap_err().to_string();
        assert!(
            err.contains("c/id_ed25519") && err.contains("same file"),
            "{err}"
        );
        assert_ne!(ensure(&named).unwrap(), theirs);
        std::fs::copy(&first, &named).unwrap();
        assert_eq!(share(&named, true, &store).await.unwrap(), theirs);
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
