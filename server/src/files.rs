//! Secrets at rest and in output: files only their owner reads (keys, the
//! Terraform variables holding a desktop's host key), and the mask that
//! replaces a secret wherever a line may show it (tool output, webhooks).

use std::{io::Write, os::unix::fs::OpenOptionsExt, path::Path};

/// What replaces a secret in an output line.
pub const MASK: &str = "********";

/// Writes `contents` to a new file readable by the owner alone.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_file_is_the_owners_alone_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        super::write_private(&path, b"a longer first secret").unwrap();
        super::write_private(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
