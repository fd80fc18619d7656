//! Bounded, non-blocking reads of system and user files: a file that is
//! unexpectedly huge cannot make the agent allocate without limit, and a
//! FIFO or device put where a file is expected (`~/.Xauthority` is the
//! user's to replace) cannot block it: the file is opened with
//! `O_NONBLOCK` and must be a regular file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// 1 MiB: more than any small system file the agent reads.
pub const SMALL_FILE: u64 = 1 << 20;

/// 16 MiB: for `/proc/net/tcp*`, which grows with the number of sockets.
pub const LARGE_FILE: u64 = 16 << 20;

/// Reads at most `limit` bytes of the regular file `path`; a longer file
/// is cut at `limit`.
pub fn read_capped(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_owned(path, limit).map(|(bytes, _)| bytes)
}

/// Like [`read_capped`], with the uid of the file's owner (of the file
/// opened, so a swap after a check cannot fool the caller).
pub fn read_owned(path: &Path, limit: u64) -> io::Result<(Vec<u8>, u32)> {
    let file = open_regular(path)?;
    let owner = file.metadata()?.uid();
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok((bytes, owner))
}

/// Like [`read_capped`], as text; invalid UTF-8 is replaced, not an error.
pub fn read_text_capped(path: &Path, limit: u64) -> io::Result<String> {
    read_capped(path, limit).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn open_regular(path: &Path) -> io::Result<File> {
    let nonblock = rustix::fs::OFlags::NONBLOCK.bits();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(i32::try_from(nonblock).unwrap_or(0))
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_reads_are_capped() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("f");
        std::fs::write(&file, "0123456789").expect("write");
        assert_eq!(read_capped(&file, 4).ok(), Some(b"0123".to_vec()));
        assert!(read_capped(dir.path(), 4).is_err());
        // A FIFO nobody writes to: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(read_capped(&fifo, 4).is_err());
        }
        assert!(read_capped(Path::new("/dev/zero"), 4).is_err());
        // procfs files are regular files.
        assert!(read_capped(Path::new("/proc/self/stat"), 4096).is_ok());
    }
}
