//! The RDP half of `daas connect` (whose command is `commands/connect.rs`):
//! a desktop's `.rdp` file, and the platform's RDP client started on it.
//! It never talks to the DaaS server; that is the gRPC channel, `channel`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use daas_api::v1::Session;

use crate::error::{CliError, io_detail};

/// The RDP port when the server gives none.
const DEFAULT_PORT: u32 = 3389;

/// The window the `.rdp` file asks for; it fits a 1366x768 laptop screen.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u32,
    pub username: String,
    /// The desktop's VM name, unique to its session; empty if the server
    /// gave none.
    pub vm_name: String,
}

impl Target {
    /// The RDP endpoint of `session`, logging in as `user`, else as the
    /// session user, else as the desktop's user. `None` without an address.
    pub fn of(session: &Session, user: Option<&str>) -> Option<Target> {
        if session.rdp_host.is_empty() {
            return None;
        }
        let username = match user {
            Some(user) => user,
            None if !session.session_user.is_empty() => &session.session_user,
            None => &session.username,
        };
        Some(Target {
            host: session.rdp_host.clone(),
            port: if session.rdp_port == 0 {
                DEFAULT_PORT
            } else {
                session.rdp_port
            },
            username: username.to_owned(),
            vm_name: session.vm_name.clone(),
        })
    }

    /// `HOST:PORT`, an IPv6 address in brackets.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The `.rdp` file for `target`, with only settings both mstsc and FreeRDP
/// read: a window of [`WIDTH`]x[`HEIGHT`], the password asked for by the
/// client, and a warning (not a refusal) for the desktop's self-signed
/// certificate.
pub fn file_text(target: &Target) -> String {
    [
        format!("full address:s:{}", target.address()),
        format!("username:s:{}", target.username),
        "screen mode id:i:1".to_owned(),
        format!("desktopwidth:i:{WIDTH}"),
        format!("desktopheight:i:{HEIGHT}"),
        "prompt for credentials:i:1".to_owned(),
        "authentication level:i:2".to_owned(),
    ]
    .iter()
    .map(|line| format!("{line}\r\n"))
    .collect()
}

/// `daas-NAME.rdp` in `runtime_dir` (`$XDG_RUNTIME_DIR`) when that is an
/// absolute path, else in `temp_dir`. `name` is the VM name, else the
/// session id; characters other than letters, digits, `-` and `.` become `_`.
pub fn default_path(runtime_dir: Option<&Path>, temp_dir: &Path, name: &str) -> PathBuf {
    let dir = runtime_dir
        .filter(|dir| dir.is_absolute())
        .unwrap_or(temp_dir);
    let name: String = name
        .chars()
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    dir.join(format!("daas-{name}.rdp"))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.'
}

/// Writes `text` to `path`, readable by its owner only: through a new file
/// beside it, renamed over `path`, so that a file or link already there is
/// replaced (or the write fails), never written through.
pub fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    let unwritable = |err: &std::io::Error| CliError::RdpFileUnwritable {
        path: path.to_owned(),
        detail: io_detail(err),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CliError::RdpFileUnwritable {
            path: path.to_owned(),
            detail: "not a file name".to_owned(),
        })?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let mut file = private_file(&temp).map_err(|err| unwritable(&err))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(unwritable(&err));
    }
    Ok(())
}

/// A new file at `path`, mode 0600 on Unix.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The RDP clients `daas connect` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Linux and other Unix-likes: FreeRDP's `xfreerdp` (FreeRDP 2), else
    /// `xfreerdp3` (FreeRDP 3).
    Linux,
    /// Windows: `mstsc`, Remote Desktop Connection.
    Windows,
    /// macOS: `open`, the app registered for `.rdp` files.
    MacOs,
}

impl Platform {
    /// The platform `daas` was built for.
    pub fn current() -> Platform {
        if cfg!(windows) {
            Platform::Windows
        } else if cfg!(target_os = "macos") {
            Platform::MacOs
        } else {
            Platform::Linux
        }
    }

    /// Where to get the RDP client, for messages.
    fn install_hint(self) -> Option<&'static str> {
        match self {
            Platform::Linux => Some("Debian/Ubuntu package freerdp2-x11 or freerdp3-x11"),
            Platform::Windows | Platform::MacOs => None,
        }
    }
}

/// The programs to try, in order, and their arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Candidates for the same client: the first one installed is started.
    pub programs: &'static [&'static str],
    pub args: Vec<OsString>,
}

/// FreeRDP's X11 client: `xfreerdp` in FreeRDP 2 (Debian 12), `xfreerdp3`
/// in FreeRDP 3 (Debian 13, Ubuntu 24.04). Both take the same arguments.
const FREERDP: &[&str] = &["xfreerdp", "xfreerdp3"];

/// How to start `platform`'s RDP client on `target`, whose `.rdp` file is
/// `rdp_file`.
///
/// FreeRDP gets the target on its command line, not the file: started in
/// the background it has no terminal to ask whether to trust the desktop's
/// self-signed certificate, which it would then refuse, and no `.rdp`
/// setting answers that. `/cert:tofu` trusts the certificate the first
/// time; `name:VM` keeps that trust per desktop rather than per address, so
/// a new desktop on a reused address is not refused as a changed
/// certificate.
pub fn launch(platform: Platform, target: &Target, rdp_file: &Path) -> Launch {
    match platform {
        Platform::Linux => {
            let mut cert = String::from("/cert:tofu");
            if !target.vm_name.is_empty() && target.vm_name.chars().all(is_name_char) {
                cert.push_str(",name:");
                cert.push_str(&target.vm_name);
            }
            Launch {
                programs: FREERDP,
                args: vec![
                    format!("/v:{}", target.address()).into(),
                    format!("/u:{}", target.username).into(),
                    cert.into(),
                    "/dynamic-resolution".into(),
                ],
            }
        }
        Platform::Windows => Launch {
            programs: &["mstsc"],
            args: vec![rdp_file.into()],
        },
        Platform::MacOs => Launch {
            programs: &["open"],
            args: vec![rdp_file.into()],
        },
    }
}

/// Starts `platform`'s RDP client on `target` in the background, with no
/// input and its output discarded, and does not wait for it.
pub fn start(platform: Platform, target: &Target, rdp_file: &Path) -> Result<(), CliError> {
    let launch = launch(platform, target, rdp_file);
    spawn_first(
        &launch,
        platform.install_hint(),
        rdp_file,
        |program, args| {
            let mut command = Command::new(program);
            command
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // Its own process group: a Ctrl-C meant for whatever ran `daas` leaves it be.
            #[cfg(unix)]
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            // Dropping the handle neither waits for nor ends the client.
            command.spawn().map(drop)
        },
    )?;
    Ok(())
}

/// Starts the first of `launch`'s programs that `spawn` finds, and returns
/// its name. A program not found (`NotFound`) makes way for the next; any
/// other failure is final. `install` says where to get the client.
fn spawn_first(
    launch: &Launch,
    install: Option<&'static str>,
    rdp_file: &Path,
    mut spawn: impl FnMut(&'static str, &[OsString]) -> std::io::Result<()>,
) -> Result<&'static str, CliError> {
    for &program in launch.programs {
        match spawn(program, &launch.args) {
            Ok(()) => return Ok(program),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(CliError::RdpClientUnstartable {
                    program,
                    detail: io_detail(&err),
                    rdp_file: rdp_file.to_owned(),
                });
            }
        }
    }
    Err(CliError::NoRdpClient {
        programs: launch.programs,
        install,
        rdp_file: rdp_file.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::tests::ready_session;

    fn target() -> Target {
        Target {
            host: "10.0.0.5".into(),
            port: 3389,
            username: "alice".into(),
            vm_name: "desktop-ab12cd".into(),
        }
    }

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().filter_map(|arg| arg.to_str()).collect()
    }

    #[test]
    fn the_target_is_the_sessions_rdp_endpoint() {
        let session = ready_session();
        assert_eq!(Target::of(&session, None), Some(target()));
        let bob = Session {
            session_user: "bob".into(),
            rdp_port: 0,
            ..session.clone()
        };
        let to_bob = Target::of(&bob, None);
        assert_eq!(to_bob.as_ref().map(|t| t.username.as_str()), Some("bob"));
        assert_eq!(to_bob.map(|t| t.port), Some(3389));
        let carol = Target::of(&bob, Some("carol"));
        assert_eq!(carol.map(|t| t.username), Some("carol".to_owned()));
        let nowhere = Session {
            rdp_host: String::new(),
            ..session
        };
        assert_eq!(Target::of(&nowhere, None), None);
    }

    #[test]
    fn the_rdp_file() {
        assert_eq!(
            file_text(&target()),
            "full address:s:10.0.0.5:3389\r\n\
             username:s:alice\r\n\
             screen mode id:i:1\r\n\
             desktopwidth:i:1280\r\n\
             desktopheight:i:720\r\n\
             prompt for credentials:i:1\r\n\
             authentication level:i:2\r\n"
        );
        let v6 = Target {
            host: "fd00::5".into(),
            port: 40001,
            ..target()
        };
        assert!(file_text(&v6).starts_with("full address:s:[fd00::5]:40001\r\n"));
    }

    #[test]
    fn the_default_file_is_in_the_runtime_dir_else_the_temp_dir() {
        let tmp = Path::new("/tmp");
        let run = Path::new("/run/user/1000");
        assert_eq!(
            default_path(Some(run), tmp, "desktop-ab12cd"),
            PathBuf::from("/run/user/1000/daas-desktop-ab12cd.rdp")
        );
        assert_eq!(
            default_path(None, tmp, "desktop-ab12cd"),
            PathBuf::from("/tmp/daas-desktop-ab12cd.rdp")
        );
        // A relative XDG_RUNTIME_DIR is ignored, as the spec says.
        assert_eq!(
            default_path(Some(Path::new("run")), tmp, "x"),
            PathBuf::from("/tmp/daas-x.rdp")
        );
        assert_eq!(
            default_path(None, tmp, "../a/b"),
            PathBuf::from("/tmp/daas-.._a_b.rdp")
        );
    }

    #[test]
    fn xfreerdp_gets_the_target_on_its_command_line() {
        let launch = launch(Platform::Linux, &target(), Path::new("/r/d.rdp"));
        assert_eq!(launch.programs, ["xfreerdp", "xfreerdp3"]);
        assert_eq!(
            strings(&launch.args),
            [
                "/v:10.0.0.5:3389",
                "/u:alice",
                "/cert:tofu,name:desktop-ab12cd",
                "/dynamic-resolution"
            ]
        );
        let unnamed = Target {
            host: "::1".into(),
            vm_name: String::new(),
            ..target()
        };
        let launch = super::launch(Platform::Linux, &unnamed, Path::new("/r/d.rdp"));
        assert_eq!(
            strings(&launch.args),
            [
                "/v:[::1]:3389",
                "/u:alice",
                "/cert:tofu",
                "/dynamic-resolution"
            ]
        );
    }

    #[test]
    fn mstsc_and_open_get_the_file() {
        let file = Path::new("C:\\Users\\a b\\daas-desktop-ab12cd.rdp");
        let launch = launch(Platform::Windows, &target(), file);
        assert_eq!(launch.programs, ["mstsc"]);
        assert_eq!(launch.args, [OsString::from(file)]);
        let file = Path::new("/tmp/daas-desktop-ab12cd.rdp");
        let launch = super::launch(Platform::MacOs, &target(), file);
        assert_eq!(launch.programs, ["open"]);
        assert_eq!(launch.args, [OsString::from(file)]);
    }

    /// A program `spawn_first` tried, and its arguments.
    type Tried = (&'static str, Vec<String>);

    /// Starts `platform`'s client with a fake spawn that finds only the
    /// programs in `installed`; returns what was started, or the error, and
    /// every program tried with its arguments.
    fn spawn_with(
        platform: Platform,
        installed: &[&str],
        failure: Option<std::io::ErrorKind>,
    ) -> (Result<&'static str, String>, Vec<Tried>) {
        let launch = launch(platform, &target(), Path::new("/r/d.rdp"));
        let mut tried = Vec::new();
        let started = spawn_first(
            &launch,
            platform.install_hint(),
            Path::new("/r/d.rdp"),
            |program, args| {
                let args = strings(args).into_iter().map(str::to_owned).collect();
                tried.push((program, args));
                match failure {
                    Some(kind) => Err(kind.into()),
                    None if installed.contains(&program) => Ok(()),
                    None => Err(std::io::ErrorKind::NotFound.into()),
                }
            },
        );
        (started.map_err(|err| err.to_string()), tried)
    }

    #[test]
    fn xfreerdp_is_started_when_installed() {
        let (started, tried) = spawn_with(Platform::Linux, &["xfreerdp", "xfreerdp3"], None);
        assert_eq!(started, Ok("xfreerdp"));
        assert_eq!(tried.len(), 1);
    }

    #[test]
    fn xfreerdp3_is_started_with_the_same_arguments_when_xfreerdp_is_missing() {
        let (started, tried) = spawn_with(Platform::Linux, &["xfreerdp3"], None);
        assert_eq!(started, Ok("xfreerdp3"));
        let args = [
            "/v:10.0.0.5:3389",
            "/u:alice",
            "/cert:tofu,name:desktop-ab12cd",
            "/dynamic-resolution",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            tried,
            [("xfreerdp", args.clone()), ("xfreerdp3", args)].to_vec()
        );
    }

    #[test]
    fn without_freerdp_both_programs_and_packages_are_named() {
        let (started, tried) = spawn_with(Platform::Linux, &[], None);
        assert_eq!(
            started,
            Err("neither xfreerdp nor xfreerdp3 found; install one \
                 (Debian/Ubuntu package freerdp2-x11 or freerdp3-x11) \
                 or open /r/d.rdp with an RDP client"
                .to_owned())
        );
        assert_eq!(tried.len(), 2);
    }

    #[test]
    fn a_client_that_cannot_start_is_not_replaced() {
        let denied = Some(std::io::ErrorKind::PermissionDenied);
        let (started, tried) = spawn_with(Platform::Linux, &["xfreerdp3"], denied);
        assert_eq!(
            started,
            Err("cannot start xfreerdp: permission denied; \
                 open /r/d.rdp with an RDP client"
                .to_owned())
        );
        assert_eq!(tried.len(), 1);
    }

    #[test]
    fn a_missing_client_names_its_package_and_the_file() {
        let err = CliError::NoRdpClient {
            programs: &["xfreerdp", "xfreerdp3"],
            install: Platform::Linux.install_hint(),
            rdp_file: PathBuf::from("/run/user/1000/daas-desktop-ab12cd.rdp"),
        };
        assert_eq!(
            err.to_string(),
            "neither xfreerdp nor xfreerdp3 found; install one \
             (Debian/Ubuntu package freerdp2-x11 or freerdp3-x11) \
             or open /run/user/1000/daas-desktop-ab12cd.rdp with an RDP client"
        );
        assert_eq!(err.exit_code(), 2);
        let (started, tried) = spawn_with(Platform::Windows, &[], None);
        assert_eq!(
            started,
            Err("mstsc not found; open /r/d.rdp with an RDP client".to_owned())
        );
        assert_eq!(tried.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_and_replaces_what_was_there() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("d.rdp");
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "keep").expect("a file");
        std::os::unix::fs::symlink(&elsewhere, &path).expect("a link");
        assert!(write_file(&path, "full address:s:h:1\r\n").is_ok());
        let written = std::fs::read_to_string(&path).ok();
        assert_eq!(written.as_deref(), Some("full address:s:h:1\r\n"));
        let mode = std::fs::symlink_metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        assert_eq!(
            std::fs::read_to_string(&elsewhere).ok().as_deref(),
            Some("keep")
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
    }

    #[test]
    fn an_unwritable_file_is_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("missing/d.rdp");
        let err = write_file(&path, "x").err().map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!(
                "cannot write {}: No such file or directory",
                path.display()
            ))
        );
    }
}
