//! The sample's parts against recorded and built system files: RDP clients
//! from `/proc/net/tcp*`, users from utmp, and `sample()` as a whole on a
//! fake procfs with no X display.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use daas_agent::logins::{self, USER_PROCESS, UT_HOST, UT_LINE, UT_PID, UT_USER, UTMP_RECORD};
use daas_agent::{AgentConfig, rdp};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read fixture {}: {err}", path.display()))
}

#[test]
fn established_rdp_clients_are_counted_in_tcp_and_tcp6() {
    let tcp = fixture("proc_net_tcp");
    let tcp6 = fixture("proc_net_tcp6");
    // One IPv4 client, one IPv4 client through the dual-stack listener.
    assert_eq!(rdp::count_established(&tcp, 3389), 1);
    assert_eq!(rdp::count_established(&tcp6, 3389), 1);
    // ssh: one session in each table.
    assert_eq!(rdp::count_established(&tcp, 22), 1);
    assert_eq!(rdp::count_established(&tcp6, 22), 1);
    // Nothing on a port nobody uses.
    assert_eq!(rdp::count_established(&tcp, 3390), 0);
}

#[test]
fn malformed_lines_in_the_recordings_are_skipped() {
    let tcp = fixture("proc_net_tcp");
    let parsed = tcp.lines().filter_map(rdp::parse_line).count();
    // 11 socket lines, three of them malformed; the header is not a socket.
    assert_eq!(tcp.lines().count(), 12);
    assert_eq!(parsed, 8);
    let tcp6 = fixture("proc_net_tcp6");
    assert_eq!(tcp6.lines().filter_map(rdp::parse_line).count(), 6);
    // Garbage of any kind counts as nothing.
    assert_eq!(rdp::count_established("\u{0}\u{1}\n:::\n 1: :\n", 3389), 0);
}

#[test]
fn both_tables_are_read_from_procfs() {
    let proc = FakeProc::new();
    assert_eq!(rdp::rdp_clients(proc.root(), 3389), 2);
    assert_eq!(rdp::rdp_clients(Path::new("/nonexistent"), 3389), 0);
}

/// One utmp record: glibc x86_64 layout.
fn utmp_record(kind: i16, pid: i32, line: &str, user: &[u8], host: &str) -> Vec<u8> {
    let mut record = vec![0u8; UTMP_RECORD];
    record[0..2].copy_from_slice(&kind.to_ne_bytes());
    record[UT_PID..UT_PID + 4].copy_from_slice(&pid.to_ne_bytes());
    record[UT_LINE..UT_LINE + line.len()].copy_from_slice(line.as_bytes());
    record[UT_USER..UT_USER + user.len()].copy_from_slice(user);
    record[UT_HOST..UT_HOST + host.len()].copy_from_slice(host.as_bytes());
    record
}

const BOOT_TIME: i16 = 2;
const INIT_PROCESS: i16 = 5;
const LOGIN_PROCESS: i16 = 6;
const DEAD_PROCESS: i16 = 8;

fn utmp_file() -> Vec<u8> {
    [
        utmp_record(BOOT_TIME, 0, "~", b"reboot", "6.1.0-28-cloud-amd64"),
        utmp_record(INIT_PROCESS, 501, "ttyS0", b"", ""),
        utmp_record(LOGIN_PROCESS, 502, "tty1", b"LOGIN", ""),
        utmp_record(USER_PROCESS, 1200, "pts/0", b"alice", "10.0.2.2"),
        utmp_record(USER_PROCESS, 1300, ":10", b"bob@CORP.EXAMPLE", ""),
        // The same user twice: listed once.
        utmp_record(USER_PROCESS, 1201, "pts/1", b"alice", "10.0.2.2"),
        // A session that ended.
        utmp_record(DEAD_PROCESS, 1400, "pts/2", b"carol", ""),
        // A login whose process is gone (left behind by a crash).
        utmp_record(USER_PROCESS, 9999, "pts/3", b"dave", ""),
        // A full 32-byte name, no NUL.
        utmp_record(USER_PROCESS, 1500, "pts/4", &[b'e'; 32], ""),
        // Garbage names.
        utmp_record(USER_PROCESS, 1501, "pts/5", b"\xff\xfe", ""),
        utmp_record(USER_PROCESS, 1502, "pts/6", b"a b", ""),
        utmp_record(USER_PROCESS, 1503, "pts/7", b"", ""),
    ]
    .concat()
}

#[test]
fn utmp_logins_are_listed_once_and_only_live_ones() {
    let alive = |pid: i32| pid != 9999;
    let users = logins::utmp_users(&utmp_file(), alive);
    let e32 = "e".repeat(32);
    assert_eq!(users, ["alice", "bob@CORP.EXAMPLE", e32.as_str()]);
}

#[test]
fn truncated_or_garbage_utmp_files_do_not_break() {
    let bytes = utmp_file();
    let alive = |_| true;
    // A cut in the middle of a record: the complete ones still count.
    let cut = &bytes[..UTMP_RECORD * 4 + 100];
    assert_eq!(logins::utmp_users(cut, alive), ["alice"]);
    assert!(logins::utmp_users(&bytes[..UTMP_RECORD - 1], alive).is_empty());
    assert!(logins::utmp_users(&[], alive).is_empty());
    // Pseudo-random garbage: whatever it holds, no panic and no junk names.
    let mut state: u32 = 0x1234_5678;
    let garbage: Vec<u8> = (0..UTMP_RECORD * 50)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    for name in logins::utmp_users(&garbage, alive) {
        assert!(!name.is_empty() && !name.chars().any(char::is_control));
    }
}

/// A procfs stand-in: `stat`, `net/tcp*`, and the live pids of the utmp
/// fixture.
struct FakeProc {
    dir: tempfile::TempDir,
}

impl FakeProc {
    fn new() -> FakeProc {
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("net")).expect("mkdir net");
        std::fs::write(root.join("net/tcp"), fixture("proc_net_tcp")).expect("write tcp");
        std::fs::write(root.join("net/tcp6"), fixture("proc_net_tcp6")).expect("write tcp6");
        std::fs::write(
            root.join("stat"),
            "cpu  10 0 10 100 0 0 0 0 0 0\nctxt 100\nbtime 1700000000\nprocesses 42\n",
        )
        .expect("write stat");
        for pid in [1200, 1300] {
            std::fs::create_dir_all(root.join(pid.to_string())).expect("mkdir pid");
        }
        FakeProc { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn a_sample_without_display_is_idle_since_boot() {
    let proc = FakeProc::new();
    let utmp = proc.root().join("utmp");
    std::fs::write(&utmp, utmp_file()).expect("write utmp");
    let empty = tempfile::tempdir().expect("a temp dir");
    let config = AgentConfig {
        proc_root: proc.root().to_owned(),
        x11_socket_dir: empty.path().to_owned(),
        utmp,
        ..AgentConfig::default()
    };
    let activity = daas_agent::sample(&config);
    let boot = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(activity.boot_time, boot);
    assert_eq!(activity.displays, 0);
    assert_eq!(activity.rdp_clients, 2);
    let since_boot = SystemTime::now()
        .duration_since(boot)
        .unwrap_or_default()
        .as_secs();
    assert!(activity.idle_seconds.abs_diff(since_boot) <= 2);
    // Logins of this machine's logind may add to the list; the live utmp
    // ones are there.
    for user in ["alice", "bob@CORP.EXAMPLE"] {
        assert!(
            activity.users.iter().any(|u| u == user),
            "{:?}",
            activity.users
        );
    }
    assert!(!activity.users.iter().any(|u| u == "carol"));
}

#[test]
fn a_sample_with_nothing_readable_still_answers() {
    let config = AgentConfig {
        proc_root: PathBuf::from("/nonexistent/proc"),
        x11_socket_dir: PathBuf::from("/nonexistent/x11"),
        utmp: PathBuf::from("/nonexistent/utmp"),
        ..AgentConfig::default()
    };
    let activity = daas_agent::sample(&config);
    assert_eq!(activity.displays, 0);
    assert_eq!(activity.rdp_clients, 0);
    // No boot time known: boot is taken as now.
    assert!(activity.idle_seconds <= 1);
}

#[test]
fn a_socket_folder_of_junk_yields_no_display() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for name in ["X0", "X1-lock", "Xabc", "X2"] {
        // Regular files, not sockets.
        std::fs::write(dir.path().join(name), "junk").expect("write");
    }
    std::fs::create_dir(dir.path().join("X3")).expect("mkdir");
    let config = AgentConfig {
        x11_socket_dir: dir.path().to_owned(),
        ..AgentConfig::default()
    };
    assert!(daas_agent::x11idle::displays(&config).is_empty());
}

#[test]
fn malformed_config_files_are_errors() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("agent.toml");
    for text in [
        "endpoint = \"https://10.0.2.2:50051\"\nsession_id = ",
        "\u{feff}\u{0}garbage",
        "endpoint = \"https://10.0.2.2:50051\"\nsession_id = \"s\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nport = 1\n",
    ] {
        std::fs::write(&path, text).expect("write config");
        let result = AgentConfig::load(&path);
        assert!(result.is_err(), "{text:?} was accepted");
    }
    std::fs::write(&path, [0xff, 0xfe, 0x00, 0x80]).expect("write config");
    assert!(AgentConfig::load(&path).is_err());
    let missing = AgentConfig::load(&dir.path().join("missing.toml"));
    let text = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("missing.toml"), "{text}");
    // An unknown key is named in the message.
    std::fs::write(
        &path,
        "endpoint = \"http://127.0.0.1:1\"\nsession_id = \"s\"\nintervall = 5\n",
    )
    .expect("write config");
    let text = AgentConfig::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(text.contains("`intervall`"), "{text}");
}

#[test]
fn a_good_config_file_loads_with_paths_relative_to_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "endpoint = \"https://10.0.2.2:50051\"\nsession_id = \"s-9\"\nca = \"ca.pem\"\n\
         cert = \"/etc/daas/agent.pem\"\nkey = \"agent-key.pem\"\ntls_server_name = \"localhost\"\n",
    )
    .expect("write config");
    let config = AgentConfig::load(&path).map_err(|e| e.to_string());
    assert_eq!(
        config,
        Ok(AgentConfig {
            endpoint: "https://10.0.2.2:50051".into(),
            session_id: "s-9".into(),
            ca: dir.path().join("ca.pem"),
            cert: "/etc/daas/agent.pem".into(),
            key: dir.path().join("agent-key.pem"),
            tls_server_name: Some("localhost".into()),
            ..AgentConfig::default()
        })
    );
}

#[test]
fn a_cookie_file_of_another_user_is_not_used() {
    use std::os::unix::fs::MetadataExt;

    use daas_agent::x11idle::{Display, FAMILY_WILD, MIT_MAGIC_COOKIE, cookie_for};
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("Xauthority");
    let mut bytes = FAMILY_WILD.to_be_bytes().to_vec();
    for field in [&b""[..], b"10", MIT_MAGIC_COOKIE, b"0123456789abcdef"] {
        bytes.extend(u16::try_from(field.len()).unwrap_or(0).to_be_bytes());
        bytes.extend(field);
    }
    std::fs::write(&file, bytes).expect("write");
    let owner = std::fs::metadata(&file).expect("stat").uid();
    let display = |uid| Display {
        number: 10,
        socket: dir.path().join("X10"),
        uid,
        user: None,
        xauthority: vec![dir.path().join("missing"), file.clone()],
    };
    let proc = Path::new("/proc");
    let cookie = cookie_for(&display(owner), proc).map(|c| c.data);
    assert_eq!(cookie, Some(b"0123456789abcdef".to_vec()));
    assert_eq!(cookie_for(&display(owner.wrapping_add(1)), proc), None);
}
