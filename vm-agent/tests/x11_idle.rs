//! Idle time from a real X server: `Xvfb` with a cookie this test makes,
//! input sent with `xdotool`. Needs the Debian packages `xvfb` and
//! `xdotool` (scripts/setup.sh installs them); without them these tests
//! fail, they do not pass silently.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daas_agent::AgentConfig;
use daas_agent::x11idle::{self, Cookie, FAMILY_WILD, MIT_MAGIC_COOKIE};

/// The program `name` on PATH, or a failure saying how to install it.
fn require(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run scripts/setup.sh (it installs the Debian \
                 package {package}), or apt-get install -y {package}"
            )
        })
}

/// Stops Xvfb when the test ends, however it ends: SIGTERM first, so that
/// it removes its lock file and socket (SIGKILL would leave them behind and
/// use up the display numbers), SIGKILL if it does not go.
struct Xvfb {
    child: Child,
    number: u32,
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/tmp/.X{}-lock", self.number));
        let _ = std::fs::remove_file(system_socket(self.number));
    }
}

/// The socket Xvfb makes for display `number` (always in /tmp/.X11-unix).
fn system_socket(number: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/.X11-unix/X{number}"))
}

/// Whether a live X server holds display `number` (its lock file names a
/// running process; a stale lock is Xvfb's to replace).
fn display_taken(number: u32) -> bool {
    let lock = std::fs::read_to_string(format!("/tmp/.X{number}-lock")).unwrap_or_default();
    lock.trim()
        .parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Starts `Xvfb :N -auth FILE` on the first free display of 90..=99 (a
/// display another run takes first is skipped: Xvfb refuses it and exits)
/// and waits until it answers with `cookie`.
fn start_xvfb(auth: &Path, cookie: &Cookie) -> Xvfb {
    let program = require("Xvfb", "xvfb");
    for number in 90..=99 {
        if display_taken(number) {
            continue;
        }
        let child = Command::new(&program)
            .arg(format!(":{number}"))
            .arg("-auth")
            .arg(auth)
            // -noreset as xrdp starts Xorg: without it the server resets
            // (and its idle timer with it) whenever its last client leaves.
            .args(["-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()));
        let mut xvfb = Xvfb { child, number };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(_)) = xvfb.child.try_wait() {
                break; // display taken meanwhile: try the next one
            }
            let socket = system_socket(number);
            let answer = x11idle::query_idle(&socket, Some(cookie), Duration::from_secs(1));
            if answer.is_ok() {
                return xvfb;
            }
            assert!(
                Instant::now() < deadline,
                "Xvfb :{number} did not answer in 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("no free X display in :90..:99");
}

/// An Xauthority file with one wildcard MIT-MAGIC-COOKIE-1 entry.
fn write_xauthority(path: &Path, cookie: &[u8]) {
    let mut bytes = FAMILY_WILD.to_be_bytes().to_vec();
    for field in [&b""[..], b"", MIT_MAGIC_COOKIE, cookie] {
        bytes.extend(u16::try_from(field.len()).unwrap_or(0).to_be_bytes());
        bytes.extend(field);
    }
    let mut file = std::fs::File::create(path).expect("create the Xauthority file");
    file.write_all(&bytes).expect("write the Xauthority file");
}

/// `xdotool ARGS` on display `:number`.
fn xdotool(number: u32, auth: &Path, args: &[&str]) {
    let status = Command::new(require("xdotool", "xdotool"))
        .args(args)
        .env("DISPLAY", format!(":{number}"))
        .env("XAUTHORITY", auth)
        .status()
        .expect("run xdotool");
    assert!(status.success(), "xdotool {args:?}: {status}");
}

#[test]
fn idle_time_grows_and_input_resets_it() {
    require("xdotool", "xdotool");
    let dir = tempfile::tempdir().expect("a temp dir");
    let auth = dir.path().join("Xauthority");
    let secret: [u8; 16] = rand::random();
    write_xauthority(&auth, &secret);
    let cookie = Cookie {
        name: MIT_MAGIC_COOKIE.to_vec(),
        data: secret.to_vec(),
    };
    let xvfb = start_xvfb(&auth, &cookie);
    let number = xvfb.number;

    // The agent sees only this display: a socket folder holding a link
    // to Xvfb's socket.
    let sockets = dir.path().join("x11");
    std::fs::create_dir(&sockets).expect("mkdir");
    std::os::unix::fs::symlink(system_socket(number), sockets.join(format!("X{number}")))
        .expect("link the socket");
    let config = AgentConfig {
        x11_socket_dir: sockets,
        ..AgentConfig::default()
    };

    // The display is found with the cookie file its server was started with.
    let displays = x11idle::displays(&config);
    assert_eq!(displays.len(), 1, "{displays:?}");
    assert_eq!(displays[0].number, number);
    assert_eq!(displays[0].xauthority.first(), Some(&auth));

    // Access control is real: without the cookie the server says no.
    let without = x11idle::query_idle(&displays[0].socket, None, Duration::from_secs(2));
    assert!(without.is_err(), "connected without a cookie: {without:?}");
    let wrong = Cookie {
        name: MIT_MAGIC_COOKIE.to_vec(),
        data: vec![0; 16],
    };
    let with_wrong = x11idle::query_idle(&displays[0].socket, Some(&wrong), Duration::from_secs(2));
    assert!(with_wrong.is_err(), "connected with a wrong cookie");

    // Start from fresh input, then nobody touches the display; asking
    // for the idle time is not input.
    xdotool(number, &auth, &["mousemove", "5", "5"]);
    std::thread::sleep(Duration::from_millis(1200));
    let early = x11idle::idle_time(&displays[0], &config.proc_root).expect("idle time");
    assert!(
        early >= Duration::from_secs(1),
        "idle {early:?} after 1.2 s"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let idle = daas_agent::sample(&config);
    assert_eq!(idle.displays, 1, "{idle:?}");
    assert!(
        idle.idle_seconds >= 2,
        "idle {}s after 2.3 s without input",
        idle.idle_seconds
    );
    assert!(
        idle.idle_seconds < 60,
        "idle {}s: not the display's",
        idle.idle_seconds
    );

    // Input resets it.
    xdotool(number, &auth, &["mousemove", "200", "150"]);
    let precise = x11idle::idle_time(&displays[0], &config.proc_root).expect("idle time");
    assert!(
        precise < Duration::from_secs(1),
        "idle {precise:?} right after input"
    );
    let active = daas_agent::sample(&config);
    assert_eq!(active.displays, 1);
    assert_eq!(active.idle_seconds, 0, "{active:?}");

    // Keyboard input counts too.
    std::thread::sleep(Duration::from_millis(1200));
    xdotool(number, &auth, &["key", "shift"]);
    let precise = x11idle::idle_time(&displays[0], &config.proc_root).expect("idle time");
    assert!(
        precise < Duration::from_secs(1),
        "idle {precise:?} right after a key"
    );

    // Once the server is gone, the sample falls back to idle since boot.
    drop(xvfb);
    let gone = daas_agent::sample(&config);
    assert_eq!(gone.displays, 0);
}

#[test]
fn a_hung_x_server_costs_at_most_the_timeout() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // Display :7 of a server that accepts connections and never answers.
    let socket = dir.path().join("X7");
    let _listener = UnixListener::bind(&socket).expect("bind a socket");
    let started = Instant::now();
    let result = x11idle::query_idle(&socket, None, Duration::from_millis(500));
    let took = started.elapsed();
    assert!(result.is_err());
    assert!(took < Duration::from_secs(2), "took {took:?}");

    let config = AgentConfig {
        x11_socket_dir: dir.path().to_owned(),
        ..AgentConfig::default()
    };
    let started = Instant::now();
    let activity = daas_agent::sample(&config);
    assert_eq!(activity.displays, 0);
    let took = started.elapsed();
    assert!(
        took < x11idle::QUERY_TIMEOUT + Duration::from_secs(5),
        "a sample took {took:?}"
    );
}
