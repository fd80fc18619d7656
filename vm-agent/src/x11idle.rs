//! Idle time of the X displays (xorgxrdp's Xorg, one per RDP session): the
//! MIT-SCREEN-SAVER extension's `ms_since_user_input`, which counts real
//! keyboard and mouse input, not open connections.
//!
//! Each socket `X<N>` in the socket folder is display `:N`; its owner is
//! the session's user. The agent connects to the socket itself (no
//! `DISPLAY`, no `XAUTHORITY`: nothing process-wide) with an
//! MIT-MAGIC-COOKIE-1 taken from, in order:
//! 1. the file the X server was started with (`-auth FILE` on its command
//!    line, found under procfs; a relative path is relative to the server's
//!    working directory, as xrdp's `-auth .Xauthority` is);
//! 2. the owner's `~/.Xauthority` (home from the server's `HOME`, else
//!    `/etc/passwd`, else `getent`).
//!
//! Only files owned by the display's owner are used (a user cannot make
//! the agent send them another account's cookie by a symlink), and only an
//! X server process running as that owner is believed.
//!
//! Every step has a deadline: the connect never blocks (non-blocking
//! socket), and every wait for the server is a `poll` bounded by what is
//! left of the deadline, so a hung X server costs at most that.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use thiserror::Error;
use x11rb::connection::Connection;
use x11rb::protocol::screensaver::ConnectionExt as _;
use x11rb::rust_connection::{DefaultStream, PollMode, RustConnection, Stream};
use x11rb::utils::RawFdContainer;

use crate::config::AgentConfig;
use crate::files::{SMALL_FILE, read_capped, read_owned, read_text_capped};
use crate::passwd::{self, environ_var};

/// How long one display may take to answer, connect included.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The only authorization x11rb can send by itself.
pub const MIT_MAGIC_COOKIE: &[u8] = b"MIT-MAGIC-COOKIE-1";

/// `FamilyLocal` and `FamilyWild` in an Xauthority file.
pub const FAMILY_LOCAL: u16 = 256;
pub const FAMILY_WILD: u16 = 65535;

/// One X display found in the socket folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Display {
    /// `N` of `:N`.
    pub number: u32,
    /// Its socket.
    pub socket: PathBuf,
    /// The socket's owner: the session's user.
    pub uid: u32,
    /// The owner's name, when it can be found.
    pub user: Option<String>,
    /// Xauthority files to look for the display's cookie in, best first.
    pub xauthority: Vec<PathBuf>,
}

/// Why a display's idle time could not be read.
#[derive(Debug, Error)]
pub enum X11Error {
    #[error("cannot connect to {}: {source}", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("X connection setup failed: {0}")]
    Setup(#[from] x11rb::errors::ConnectError),
    #[error("X connection failed: {0}")]
    Connection(#[from] x11rb::errors::ConnectionError),
    #[error("the X server refused the request: {0}")]
    Reply(#[from] x11rb::errors::ReplyError),
    #[error("the X server has no screen")]
    NoScreen,
}

/// The X displays in the socket folder of `config`, with what is needed
/// to connect to each. Anything that is not a socket named `X<N>` is
/// skipped.
pub fn displays(config: &AgentConfig) -> Vec<Display> {
    let Ok(entries) = std::fs::read_dir(&config.x11_socket_dir) else {
        return Vec::new();
    };
    let mut found: Vec<Display> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = display_number(name.to_str()?)?;
            let socket = entry.path();
            // Follows symlinks: the owner of the socket itself.
            let meta = std::fs::metadata(&socket).ok()?;
            meta.file_type()
                .is_socket()
                .then(|| describe(config, number, socket, meta.uid()))
        })
        .collect();
    found.sort_by_key(|display| display.number);
    found
}

/// `N` for a socket named `X<N>`.
pub fn display_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('X')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What is known of display `:number` and its server.
fn describe(config: &AgentConfig, number: u32, socket: PathBuf, uid: u32) -> Display {
    let server = find_server(&config.proc_root, number, uid);
    let env = |key| server.as_ref().and_then(|s| environ_var(&s.environ, key));
    let mut user = env("USER").or_else(|| env("LOGNAME"));
    let mut home = env("HOME").map(PathBuf::from);
    if (user.is_none() || home.is_none())
        && let Some(account) = passwd::account_for_uid(uid)
    {
        user = user.or(Some(account.name));
        home = home.or(Some(account.home));
    }
    let mut xauthority = Vec::new();
    if let Some(auth) = server.as_ref().and_then(|s| s.auth.as_ref()) {
        if auth.is_absolute() {
            xauthority.push(auth.clone());
        } else if let Some(cwd) = server.as_ref().and_then(|s| s.cwd.as_ref()) {
            xauthority.push(cwd.join(auth));
        } else if let Some(home) = &home {
            xauthority.push(home.join(auth));
        }
    }
    if let Some(home) = home {
        let file = home.join(".Xauthority");
        if !xauthority.contains(&file) {
            xauthority.push(file);
        }
    }
    Display {
        number,
        socket,
        uid,
        user,
        xauthority,
    }
}

/// The process serving a display, as procfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProcess {
    pub pid: u32,
    /// The `-auth` argument, as given.
    pub auth: Option<PathBuf>,
    /// Its working directory, when it can be read.
    pub cwd: Option<PathBuf>,
    /// Its environment (NUL-separated), when it can be read.
    pub environ: Vec<u8>,
}

/// The X server process of display `:number` under `proc_root`: a process
/// of user `uid` whose program is named `X…` (Xorg, Xvfb, Xvnc…) with
/// `:number` among its arguments.
pub fn find_server(proc_root: &Path, number: u32, uid: u32) -> Option<ServerProcess> {
    let wanted = format!(":{number}");
    std::fs::read_dir(proc_root)
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find_map(|pid| {
            let dir = proc_root.join(pid.to_string());
            if std::fs::metadata(&dir).ok()?.uid() != uid {
                return None;
            }
            let cmdline = read_capped(&dir.join("cmdline"), 64 * 1024).ok()?;
            let auth = server_auth_arg(&cmdline, &wanted)?;
            Some(ServerProcess {
                pid,
                auth,
                cwd: std::fs::read_link(dir.join("cwd")).ok(),
                environ: read_capped(&dir.join("environ"), SMALL_FILE).unwrap_or_default(),
            })
        })
}

/// For the NUL-separated command line of an X server of display `wanted`
/// (`":N"`): `Some(its -auth argument)`; `None` when it is not one.
pub fn server_auth_arg(cmdline: &[u8], wanted: &str) -> Option<Option<PathBuf>> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let program = args.first()?;
    let base = program.rsplit(|b| *b == b'/').next()?;
    if !base.starts_with(b"X") || !args.iter().skip(1).any(|a| *a == wanted.as_bytes()) {
        return None;
    }
    let auth = args
        .windows(2)
        .find(|pair| pair[0] == b"-auth")
        .and_then(|pair| std::str::from_utf8(pair[1]).ok())
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    Some(auth)
}

/// An X authorization: protocol name and data.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: Vec<u8>,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Cookie {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cookie")
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

/// One entry of an Xauthority file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XauthEntry {
    pub family: u16,
    pub address: Vec<u8>,
    pub number: Vec<u8>,
    pub name: Vec<u8>,
    pub data: Vec<u8>,
}

/// The entries of an Xauthority file (big-endian `family`, then four
/// length-prefixed fields); parsing stops at the first truncated entry.
pub fn parse_xauthority(mut bytes: &[u8]) -> Vec<XauthEntry> {
    fn u16_at(bytes: &mut &[u8]) -> Option<u16> {
        let (head, rest) = bytes.split_first_chunk::<2>()?;
        *bytes = rest;
        Some(u16::from_be_bytes(*head))
    }
    fn field(bytes: &mut &[u8]) -> Option<Vec<u8>> {
        let len = usize::from(u16_at(bytes)?);
        let (head, rest) = bytes.split_at_checked(len)?;
        *bytes = rest;
        Some(head.to_vec())
    }
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let entry = (|| {
            Some(XauthEntry {
                family: u16_at(&mut bytes)?,
                address: field(&mut bytes)?,
                number: field(&mut bytes)?,
                name: field(&mut bytes)?,
                data: field(&mut bytes)?,
            })
        })();
        match entry {
            Some(entry) => entries.push(entry),
            None => break,
        }
    }
    entries
}

/// The best MIT-MAGIC-COOKIE-1 for local display `number` among
/// `entries`: this host's local entry, then a wildcard one, then another
/// host's local one (a renamed VM); an entry for this display before one
/// for any display.
pub fn find_cookie(entries: &[XauthEntry], number: u32, hostname: Option<&[u8]>) -> Option<Cookie> {
    let number = number.to_string();
    entries
        .iter()
        .filter(|e| e.name == MIT_MAGIC_COOKIE && !e.data.is_empty())
        .filter_map(|e| {
            let display_rank = if e.number == number.as_bytes() {
                0
            } else if e.number.is_empty() {
                1
            } else {
                return None;
            };
            let family_rank = match e.family {
                FAMILY_LOCAL if Some(e.address.as_slice()) == hostname => 0,
                FAMILY_WILD => 1,
                FAMILY_LOCAL => 2,
                _ => return None,
            };
            Some(((display_rank, family_rank), e))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, e)| Cookie {
            name: e.name.clone(),
            data: e.data.clone(),
        })
}

/// The cookie for `display` from the first of its Xauthority files that
/// has one and belongs to the display's owner.
pub fn cookie_for(display: &Display, proc_root: &Path) -> Option<Cookie> {
    let hostname = read_text_capped(&proc_root.join("sys/kernel/hostname"), 4096)
        .ok()
        .map(|h| h.trim().as_bytes().to_vec());
    display.xauthority.iter().find_map(|file| {
        let (bytes, owner) = read_owned(file, SMALL_FILE).ok()?;
        let expected = display.uid;
        if owner != expected {
            let path = file.display();
            tracing::debug!("{path}: owned by uid {owner}, not the display's owner {expected}");
            return None;
        }
        find_cookie(
            &parse_xauthority(&bytes),
            display.number,
            hostname.as_deref(),
        )
    })
}

/// How long ago the last keyboard or mouse input on `display` was.
pub fn idle_time(display: &Display, proc_root: &Path) -> Result<Duration, X11Error> {
    let cookie = cookie_for(display, proc_root);
    query_idle(&display.socket, cookie.as_ref(), QUERY_TIMEOUT)
}

/// Connects to the X server at `socket` with `cookie` (none: the server
/// must allow the agent otherwise, e.g. `xhost si:localuser:root`) and
/// asks for the time since the last input; everything within `timeout`.
pub fn query_idle(
    socket: &Path,
    cookie: Option<&Cookie>,
    timeout: Duration,
) -> Result<Duration, X11Error> {
    let deadline = Instant::now() + timeout;
    let stream = connect_nonblocking(socket).map_err(|source| X11Error::Connect {
        socket: socket.to_owned(),
        source,
    })?;
    let (inner, _) =
        DefaultStream::from_unix_stream(stream).map_err(|source| X11Error::Connect {
            socket: socket.to_owned(),
            source,
        })?;
    let stream = DeadlineStream { inner, deadline };
    let (name, data) = cookie.map_or_else(Default::default, |c| (c.name.clone(), c.data.clone()));
    let conn = RustConnection::connect_to_stream_with_auth_info(stream, 0, name, data)?;
    let root = conn.setup().roots.first().ok_or(X11Error::NoScreen)?.root;
    let info = conn.screensaver_query_info(root)?.reply()?;
    Ok(Duration::from_millis(u64::from(info.ms_since_user_input)))
}

/// A connect that cannot block: a Unix socket connect either succeeds at
/// once or fails (`EAGAIN` when the server's backlog is full).
fn connect_nonblocking(socket: &Path) -> std::io::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(socket)?)?;
    Ok(UnixStream::from(fd))
}

/// x11rb's stream with every wait bounded by a deadline.
struct DeadlineStream {
    inner: DefaultStream,
    deadline: Instant,
}

impl Stream for DeadlineStream {
    fn poll(&self, mode: PollMode) -> std::io::Result<()> {
        let mut flags = PollFlags::empty();
        if mode.readable() {
            flags |= PollFlags::IN;
        }
        if mode.writable() {
            flags |= PollFlags::OUT;
        }
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let timed_out = || {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "X server did not answer in time",
                )
            };
            if left.is_zero() {
                return Err(timed_out());
            }
            let timeout = Timespec::try_from(left).map_err(|_| timed_out())?;
            let mut fds = [PollFd::from_borrowed_fd(
                std::os::fd::AsFd::as_fd(&self.inner),
                flags,
            )];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Err(timed_out()),
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn read(&self, buf: &mut [u8], fd_storage: &mut Vec<RawFdContainer>) -> std::io::Result<usize> {
        self.inner.read(buf, fd_storage)
    }

    fn write(&self, buf: &[u8], fds: &mut Vec<RawFdContainer>) -> std::io::Result<usize> {
        self.inner.write(buf, fds)
    }

    fn write_vectored(
        &self,
        bufs: &[std::io::IoSlice<'_>],
        fds: &mut Vec<RawFdContainer>,
    ) -> std::io::Result<usize> {
        self.inner.write_vectored(bufs, fds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(family: u16, address: &str, number: &str, data: &[u8]) -> XauthEntry {
        XauthEntry {
            family,
            address: address.into(),
            number: number.into(),
            name: MIT_MAGIC_COOKIE.to_vec(),
            data: data.to_vec(),
        }
    }

    /// The bytes of an Xauthority file holding `entries`.
    fn file(entries: &[XauthEntry]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for e in entries {
            bytes.extend(e.family.to_be_bytes());
            for field in [&e.address, &e.number, &e.name, &e.data] {
                bytes.extend(u16::try_from(field.len()).unwrap_or(0).to_be_bytes());
                bytes.extend(field);
            }
        }
        bytes
    }

    #[test]
    fn socket_names_are_display_numbers() {
        assert_eq!(display_number("X10"), Some(10));
        assert_eq!(display_number("X0"), Some(0));
        for bad in ["X", "Y10", "X10-lock", "X-1", "x10", "X99999999999"] {
            assert_eq!(display_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn xauthority_files_are_parsed_and_truncation_tolerated() {
        let entries = vec![
            entry(FAMILY_LOCAL, "vm1", "10", b"0123456789abcdef"),
            entry(FAMILY_WILD, "", "11", b"fedcba9876543210"),
        ];
        let bytes = file(&entries);
        assert_eq!(parse_xauthority(&bytes), entries);
        for cut in 0..bytes.len() {
            let parsed = parse_xauthority(&bytes[..cut]);
            assert!(parsed.len() <= 1, "cut at {cut}");
        }
        assert_eq!(parse_xauthority(b"\xff\xff\xff\xff\xff"), vec![]);
    }

    #[test]
    fn the_best_cookie_is_chosen() {
        let local = entry(FAMILY_LOCAL, "vm1", "10", b"local");
        let wild = entry(FAMILY_WILD, "", "10", b"wild");
        let other_host = entry(FAMILY_LOCAL, "old-name", "10", b"other");
        let any_display = entry(FAMILY_LOCAL, "vm1", "", b"any");
        let other_display = entry(FAMILY_LOCAL, "vm1", "11", b"eleven");
        let data = |entries: &[XauthEntry]| {
            find_cookie(entries, 10, Some(b"vm1".as_slice())).map(|c| c.data)
        };
        let all = [
            other_display.clone(),
            any_display.clone(),
            other_host.clone(),
            wild.clone(),
            local,
        ];
        assert_eq!(data(&all), Some(b"local".to_vec()));
        assert_eq!(data(&all[..4]), Some(b"wild".to_vec()));
        assert_eq!(data(&all[..3]), Some(b"other".to_vec()));
        assert_eq!(data(&all[..2]), Some(b"any".to_vec()));
        assert_eq!(data(&all[..1]), None);
        let mut xdm = entry(FAMILY_LOCAL, "vm1", "10", b"k");
        xdm.name = b"XDM-AUTHORIZATION-1".to_vec();
        assert_eq!(data(&[xdm]), None);
    }

    #[test]
    fn x_servers_are_recognised_by_their_command_line() {
        let xorgxrdp = b"/usr/lib/xorg/Xorg\0:10\0-auth\0.Xauthority\0-config\0xrdp/xorg.conf\0-noreset\0-nolisten\0tcp\0";
        assert_eq!(
            server_auth_arg(xorgxrdp, ":10"),
            Some(Some(PathBuf::from(".Xauthority")))
        );
        assert_eq!(server_auth_arg(xorgxrdp, ":1"), None);
        assert_eq!(server_auth_arg(b"Xvfb\0:90\0", ":90"), Some(None));
        assert_eq!(server_auth_arg(b"xterm\0-display\0:90\0", ":90"), None);
        assert_eq!(server_auth_arg(b"Xvfb\0:90\0-auth\0", ":90"), Some(None));
        assert_eq!(server_auth_arg(b"", ":90"), None);
    }

    #[test]
    fn cookies_never_show_in_debug_output() {
        let cookie = Cookie {
            name: MIT_MAGIC_COOKIE.to_vec(),
            data: b"secret".to_vec(),
        };
        let text = format!("{cookie:?}");
        assert!(
            !text.contains("secret") && text.contains("6 bytes"),
            "{text}"
        );
    }
}
