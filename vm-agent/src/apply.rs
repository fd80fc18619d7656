//! The root helper, `daas-agent --apply`: the privileged half of the
//! server's commands. The agent's own unit is sandboxed (no writes, almost
//! no capabilities), so the work that needs root (creating a local login)
//! and letting a domain user in) is done here, one request per process:
//! systemd starts it for each connection to `daas-agent-helper.socket`
//! (root only), with the connection as stdin and stdout.
//!
//! Protocol: one line of JSON in (at most [`MAX_REQUEST`] bytes), e.g.
//! `{"create_local_user":{"name":"alice","password_hash":"$6$..."}}` or
//! `{"allow_domain_user":{"name":"alice"}}`, one line out: `{"ok":true}`,
//! or `{"ok":false,"error":"..."}` (with `"unsupported":true` when this
//! desktop was not built for the request). The request is checked strictly
//! (the rules of the roles' per-user tasks); no error, log line or command
//! line holds the password hash.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::passwd;
use crate::sssd_access::{self, AccessError, DomainUser};

/// The longest request line, without its newline.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Logins the helper never touches: root, and the server's SSH user.
pub const RESERVED_NAMES: [&str; 2] = ["root", "daas"];

/// The shell of a new login.
pub const SHELL: &str = "/bin/bash";

/// The first uid of a person's account; below it, system accounts.
pub const FIRST_USER_UID: u32 = 1000;

/// `nobody`: above the bound, a system account all the same.
const NOBODY_UID: u32 = 65534;

/// The most of a tool's output kept (for its error message).
const OUTPUT_CAP: u64 = 64 * 1024;

/// The most of a tool's stderr put in an error message.
const STDERR_IN_MESSAGE: usize = 400;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Make the session's local login (or set the password of that
    /// person's existing account).
    CreateLocalUser(LocalUser),
    /// Let a domain user (and the site's admin groups) log in: SSSD's
    /// access filter, then SSSD restarted.
    AllowDomainUser(DomainUser),
}

impl Request {
    /// The request as the line the helper reads (newline included).
    pub fn to_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self).map(|json| json + "\n")
    }

    /// What is asked, for logs: the kind and the login, never the hash.
    pub fn describe(&self) -> String {
        match self {
            Request::CreateLocalUser(user) => format!("create_local_user({})", user.name),
            Request::AllowDomainUser(user) => format!("allow_domain_user({})", user.name),
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), RequestError> {
        match self {
            Request::CreateLocalUser(user) => user.validate(),
            Request::AllowDomainUser(user) => user.validate(),
        }
    }

    /// The secret the request carries, masked in whatever is said of it.
    pub fn secret(&self) -> &str {
        match self {
            Request::CreateLocalUser(user) => &user.password_hash,
            Request::AllowDomainUser(_) => "",
        }
    }
}

/// A local login and its password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    pub name: String,
    /// SHA-512 crypt (`$6$...`).
    pub password_hash: String,
}

impl std::fmt::Debug for LocalUser {
    /// Without the hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUser")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

impl LocalUser {
    /// The name rule, not root nor the SSH user, and a SHA-512 crypt hash.
    pub fn validate(&self) -> Result<(), RequestError> {
        if !valid_login(&self.name) {
            return Err(RequestError::BadName);
        }
        if let Some(reserved) = RESERVED_NAMES.iter().find(|r| **r == self.name) {
            return Err(RequestError::ReservedName(reserved));
        }
        if !valid_sha512_crypt(&self.password_hash) {
            return Err(RequestError::BadHash);
        }
        Ok(())
    }
}

/// The helper's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Not done because this desktop was not built for it (the server then
    /// does it another way), rather than failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unsupported: bool,
}

impl Reply {
    /// The reply as one line (newline included).
    pub fn to_line(&self) -> String {
        // A struct of a bool and a string always serializes.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"ok\":false}")) + "\n"
    }
}

/// What is wrong with a request. No variant holds a value of the request.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error("cannot read the request: {0}")]
    Read(io::Error),
    #[error("no request (the connection closed before a line came)")]
    Empty,
    #[error("the request is longer than {MAX_REQUEST} bytes")]
    TooLong,
    #[error("the request is not valid JSON ({0})")]
    Syntax(String),
    #[error("the request is not one the helper knows: {0}")]
    Shape(String),
    #[error(
        "the login name must be 1 to 32 of lower-case letters, digits, '_' and '-', \
         starting with a letter or '_'"
    )]
    BadName,
    #[error("{0} is reserved: choose another session user")]
    ReservedName(&'static str),
    #[error("the password hash is not a SHA-512 crypt hash ($6$...)")]
    BadHash,
    #[error(
        "the domain account name must be 1 to 20 characters, none of \"/\\[]:;|=,+*?<>@ \
         nor a control character, and not only dots and spaces"
    )]
    BadAccountName,
}

/// Why a checked request could not be done.
#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{name} is a system account (uid {uid}): choose another session user")]
    SystemAccount { name: String, uid: u32 },
    #[error("getent gave an entry for {name} that is not a passwd line")]
    BadEntry { name: String },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{program} took more than {}s and was stopped", .timeout.as_secs())]
    Timeout { program: String, timeout: Duration },
    #[error("{program} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl ApplyError {
    /// Whether the desktop was not built for the request (then not done,
    /// rather than failed).
    pub fn unsupported(&self) -> bool {
        matches!(self, ApplyError::Access(AccessError::NoTemplate { .. }))
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// A new login with its home.
    Created { name: String },
    /// The existing login got the password.
    PasswordSet { name: String, uid: u32 },
    /// The domain user may log in (SSSD restarted).
    DomainUserAllowed { name: String },
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Done::Created { name } => write!(f, "created the local login {name}"),
            Done::PasswordSet { name, uid } => {
                write!(
                    f,
                    "set the password of the existing login {name} (uid {uid})"
                )
            }
            Done::DomainUserAllowed { name } => {
                write!(f, "let the domain user {name} log in (SSSD restarted)")
            }
        }
    }
}

/// `^[a-z_][a-z0-9_-]{0,31}$`
pub fn valid_login(name: &str) -> bool {
    let Some((first, rest)) = name.as_bytes().split_first() else {
        return false;
    };
    (first.is_ascii_lowercase() || *first == b'_')
        && rest.len() <= 31
        && rest
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// `^[$]6[$](rounds=[0-9]+[$])?[./0-9A-Za-z]{1,16}[$][./0-9A-Za-z]{86}$`
pub fn valid_sha512_crypt(hash: &str) -> bool {
    let crypt64 = |text: &str| {
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/'))
    };
    let Some(rest) = hash.strip_prefix("$6$") else {
        return false;
    };
    let rest = match rest.strip_prefix("rounds=") {
        Some(after) => match after.split_once('$') {
            Some((digits, tail))
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                tail
            }
            _ => return false,
        },
        None => rest,
    };
    let Some((salt, digest)) = rest.split_once('$') else {
        return false;
    };
    (1..=16).contains(&salt.len()) && crypt64(salt) && digest.len() == 86 && crypt64(digest)
}

/// Reads one request line from `input` and checks it.
pub fn read_request(input: impl Read) -> Result<Request, RequestError> {
    let limit = u64::try_from(MAX_REQUEST).unwrap_or(u64::MAX) + 1;
    let mut reader = BufReader::new(input.take(limit));
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(RequestError::Read)?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    parse_request(&line)
}

/// Parses and checks one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(RequestError::Empty);
    }
    let request: Request = serde_json::from_slice(line).map_err(|err| {
        let at = format!("line {} column {}", err.line(), err.column());
        match err.classify() {
            serde_json::error::Category::Data => {
                // serde's text may quote a value: kept only when it cannot
                // hold a crypt hash.
                let text = err.to_string();
                RequestError::Shape(if text.contains('$') {
                    format!("unexpected field or value at {at}")
                } else {
                    text
                })
            }
            _ => RequestError::Syntax(at),
        }
    })?;
    request.validate()?;
    Ok(request)
}

/// The system tools, and how long each may take.
struct Tools {
    getent: PathBuf,
    useradd: PathBuf,
    chpasswd: PathBuf,
    timeout: Duration,
    systemctl: PathBuf,
    /// How long SSSD may take to restart.
    restart_timeout: Duration,
    /// What the ad-join role left for a claim (`sssd_access`).
    access_template: PathBuf,
    /// Where the access section goes (SSSD's conf.d).
    access_file: PathBuf,
}

impl Tools {
    /// Absolute paths: the helper runs as root and trusts no `PATH`.
    fn system() -> Tools {
        Tools {
            getent: PathBuf::from("/usr/bin/getent"),
            useradd: PathBuf::from("/usr/sbin/useradd"),
            chpasswd: PathBuf::from("/usr/sbin/chpasswd"),
            // Three tools at most, within the agent's 60 s.
            timeout: Duration::from_secs(15),
            systemctl: PathBuf::from("/usr/bin/systemctl"),
            // SSSD alone, within the agent's 60 s: it finds the domain's
            // controllers again as it starts.
            restart_timeout: Duration::from_secs(45),
            access_template: PathBuf::from("/etc/sssd/daas-access.conf.in"),
            access_file: PathBuf::from("/etc/sssd/conf.d/daas-access.conf"),
        }
    }
}

/// The environment the tools run in.
const TOOL_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Does a checked request.
pub fn apply(request: &Request) -> Result<Done, ApplyError> {
    apply_with(&Tools::system(), request)
}

fn apply_with(tools: &Tools, request: &Request) -> Result<Done, ApplyError> {
    request.validate()?;
    match request {
        Request::CreateLocalUser(user) => create_local_user(tools, user),
        Request::AllowDomainUser(user) => allow_domain_user(tools, user),
    }
}

/// SSSD's access section with the user in it, then SSSD restarted (it
/// reads its configuration only as it starts).
fn allow_domain_user(tools: &Tools, user: &DomainUser) -> Result<Done, ApplyError> {
    let text = sssd_access::render(&tools.access_template, user)?;
    sssd_access::write_atomically(&tools.access_file, &text)?;
    run_tool(
        &tools.systemctl,
        &["restart", "sssd.service"],
        None,
        tools.restart_timeout,
        "",
    )?;
    Ok(Done::DomainUserAllowed {
        name: user.name.clone(),
    })
}

/// The account, then the password: `useradd` when there is no account of
/// that name, then `chpasswd --encrypted` with the hash on its stdin.
fn create_local_user(tools: &Tools, user: &LocalUser) -> Result<Done, ApplyError> {
    let name = user.name.as_str();
    let existing = lookup(tools, name)?;
    if let Some(uid) = existing
        && (uid < FIRST_USER_UID || uid == NOBODY_UID)
    {
        return Err(ApplyError::SystemAccount {
            name: name.to_owned(),
            uid,
        });
    }
    let secret = user.password_hash.as_str();
    if existing.is_none() {
        let args = ["--create-home", "--shell", SHELL, name];
        run_tool(&tools.useradd, &args, None, tools.timeout, secret)?;
    }
    let input = format!("{name}:{secret}\n");
    run_tool(
        &tools.chpasswd,
        &["--encrypted"],
        Some(input.as_bytes()),
        tools.timeout,
        secret,
    )?;
    Ok(match existing {
        Some(uid) => Done::PasswordSet {
            name: name.to_owned(),
            uid,
        },
        None => Done::Created {
            name: name.to_owned(),
        },
    })
}

/// The uid of the account `name` (NSS: local files, and a directory when
/// the desktop is joined to one), or `None` when there is none.
fn lookup(tools: &Tools, name: &str) -> Result<Option<u32>, ApplyError> {
    match run_tool(&tools.getent, &["passwd", name], None, tools.timeout, "") {
        Ok(stdout) => {
            let text = String::from_utf8_lossy(&stdout);
            text.lines()
                .filter_map(passwd::parse_line)
                .find(|account| account.name == name)
                .map(|account| Some(account.uid))
                .ok_or_else(|| ApplyError::BadEntry {
                    name: name.to_owned(),
                })
        }
        // getent: 2 is "no such key".
        Err(ApplyError::Failed { status, .. }) if status.code() == Some(2) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Runs `program` with `args` (no shell), `input` on its stdin, stopped
/// after `timeout`; its stdout on success. Its stderr goes into the error,
/// with `secret` (when not empty) masked.
fn run_tool(
    program: &Path,
    args: &[&str],
    input: Option<&[u8]>,
    timeout: Duration,
    secret: &str,
) -> Result<Vec<u8>, ApplyError> {
    let name = program.file_name().map_or_else(
        || program.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", TOOL_PATH)
        .env("LC_ALL", "C")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        // Never the helper's own stdout: that is the reply's socket.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ApplyError::Spawn {
            program: name.clone(),
            source,
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // A tool that exits without reading is judged by its status.
        let _ = stdin.write_all(input);
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ApplyError::Timeout {
                    program: name,
                    timeout,
                });
            }
        }
    };
    // The pipes close when the tool (and anything it started) is gone.
    let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    let stdout = stdout.recv_timeout(wait).unwrap_or_default();
    let stderr = stderr.recv_timeout(wait).unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    Err(ApplyError::Failed {
        program: name,
        status,
        stderr: tidy_stderr(&stderr, secret),
    })
}

/// Reads a pipe to its end (at most [`OUTPUT_CAP`]) on a thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.take(OUTPUT_CAP).read_to_end(&mut bytes);
            let _ = tx.send(bytes);
        });
    }
    rx
}

/// A tool's stderr for a message: trimmed, on one line, cut short, with
/// `secret` masked.
fn tidy_stderr(stderr: &[u8], secret: &str) -> String {
    let mut text = String::from_utf8_lossy(stderr)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if !secret.is_empty() {
        text = text.replace(secret, "<hash>");
    }
    if text.len() > STDERR_IN_MESSAGE {
        let mut cut = STDERR_IN_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The helper's whole run: one request from `input`, one reply to
/// `output`. Returns what was done, or why not (already in the reply).
pub fn serve(input: impl Read, mut output: impl Write) -> io::Result<Result<Done, ApplyError>> {
    let result = read_request(input)
        .map_err(ApplyError::from)
        .and_then(|request| {
            tracing::info!("request: {}", request.describe());
            apply(&request)
        });
    let reply = match &result {
        Ok(_) => Reply {
            ok: true,
            error: None,
            unsupported: false,
        },
        Err(err) => Reply {
            ok: false,
            error: Some(err.to_string()),
            unsupported: err.unsupported(),
        },
    };
    output.write_all(reply.to_line().as_bytes())?;
    output.flush()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A hash as `openssl passwd -6` makes it (salt "saltsalt").
    const HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    fn user_line(name: &str, hash: &str) -> String {
        format!(r#"{{"create_local_user":{{"name":"{name}","password_hash":"{hash}"}}}}"#)
    }

    fn parse(line: &str) -> Result<Request, RequestError> {
        parse_request(line.as_bytes())
    }

    #[test]
    fn a_good_request_is_read() {
        let request = read_request(format!("{}\n", user_line("alice", HASH)).as_bytes());
        let expected = Request::CreateLocalUser(LocalUser {
            name: "alice".into(),
            password_hash: HASH.into(),
        });
        assert_eq!(request.ok(), Some(expected.clone()));
        // What the agent writes is what the helper reads.
        let line = expected.to_line().unwrap_or_default();
        assert!(line.ends_with('\n'));
        assert_eq!(read_request(line.as_bytes()).ok(), Some(expected));
        // With rounds, and without a final newline (the agent closed).
        let rounds = HASH.replacen("$6$", "$6$rounds=5000$", 1);
        assert!(read_request(user_line("_x-1", &rounds).as_bytes()).is_ok());
    }

    #[test]
    fn login_names_follow_the_roles_rule() {
        for good in ["a", "_", "alice", "bob-2", "a_b", &"a".repeat(32)] {
            assert!(valid_login(good), "{good}");
        }
        let long = "a".repeat(33);
        for bad in [
            "", "Alice", "1abc", "-a", "a b", "a:b", "a\n", "é", "a.b", &long,
        ] {
            assert!(!valid_login(bad), "{bad:?}");
            let err = parse(&user_line(&bad.replace('\n', "\\n"), HASH));
            assert!(
                matches!(err, Err(RequestError::BadName)),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn root_and_the_ssh_user_are_refused() {
        for name in ["root", "daas"] {
            let err = parse(&user_line(name, HASH));
            assert!(
                matches!(err, Err(RequestError::ReservedName(n)) if n == name),
                "{err:?}"
            );
        }
    }

    #[test]
    fn only_sha512_crypt_hashes_pass() {
        assert!(valid_sha512_crypt(HASH));
        let digest = &HASH[HASH.len() - 86..];
        for bad in [
            String::new(),
            "x".into(),
            HASH.replacen("$6$", "$5$", 1),
            HASH.replacen("$6$", "$y$", 1),
            HASH.replacen("saltsalt", "", 1),
            HASH.replacen("saltsalt", &"s".repeat(17), 1),
            HASH.replacen("saltsalt", "salt:alt", 1),
            HASH.replacen("$6$", "$6$rounds=$", 1),
            HASH.replacen("$6$", "$6$rounds=5k$", 1),
            format!("{HASH}x"),
            format!("{HASH}\n"),
            HASH[..HASH.len() - 1].to_owned(),
            format!("$6$salt${}", &digest[..85]),
            format!("$6$salt${}:", &digest[..85]),
            format!("$6$salt$salt${digest}"),
        ] {
            assert!(!valid_sha512_crypt(&bad), "{bad:?}");
        }
        let err = parse(&user_line("alice", &HASH.replacen("$6$", "$1$", 1)));
        assert!(matches!(err, Err(RequestError::BadHash)), "{err:?}");
    }

    #[test]
    fn unknown_fields_and_commands_are_refused() {
        let extra = format!(
            r#"{{"create_local_user":{{"name":"alice","password_hash":"{HASH}","uid":0}}}}"#
        );
        assert!(matches!(parse(&extra), Err(RequestError::Shape(_))));
        let outer =
            format!(r#"{{"create_local_user":{{"name":"a","password_hash":"{HASH}"}},"x":1}}"#);
        assert!(parse(&outer).is_err());
        let unknown = r#"{"delete_user":{"name":"alice"}}"#;
        let err = parse(unknown).map_err(|e| e.to_string());
        assert!(
            matches!(&err, Err(text) if text.contains("unknown variant `delete_user`")),
            "{err:?}"
        );
        let missing = r#"{"create_local_user":{"name":"alice"}}"#;
        assert!(matches!(parse(missing), Err(RequestError::Shape(_))));
        assert!(matches!(parse("{"), Err(RequestError::Syntax(_))));
        assert!(parse("[1,2]").is_err());
        assert!(matches!(parse("\"x\""), Err(RequestError::Shape(_))));
        assert!(matches!(parse("  "), Err(RequestError::Empty)));
        assert!(matches!(read_request(&b""[..]), Err(RequestError::Empty)));
        // One line only: what follows the first newline is not read.
        let two = format!(
            "{}\n{}\n",
            user_line("alice", HASH),
            user_line("root", HASH)
        );
        assert!(read_request(two.as_bytes()).is_ok());
        let split = format!("{{\"create_local_user\":\n{}", &user_line("a", HASH)[21..]);
        assert!(matches!(
            read_request(split.as_bytes()),
            Err(RequestError::Syntax(_))
        ));
    }

    #[test]
    fn oversize_lines_are_refused() {
        let padded = format!("{}{}", user_line("alice", HASH), " ".repeat(MAX_REQUEST));
        assert!(matches!(
            read_request(padded.as_bytes()),
            Err(RequestError::TooLong)
        ));
        assert!(matches!(
            read_request(format!("{padded}\n").as_bytes()),
            Err(RequestError::TooLong)
        ));
        // Exactly the limit is fine.
        let line = user_line("alice", HASH);
        let exact = format!("{line}{}", " ".repeat(MAX_REQUEST - line.len()));
        assert!(read_request(format!("{exact}\n").as_bytes()).is_ok());
        // An endless line is not read to its end.
        let endless = std::io::repeat(b' ');
        assert!(matches!(read_request(endless), Err(RequestError::TooLong)));
    }

    #[test]
    fn no_error_holds_the_hash() {
        let wrong_type =
            format!(r#"{{"create_local_user":{{"name":["{HASH}"],"password_hash":"{HASH}"}}}}"#);
        let as_key = format!(r#"{{"create_local_user":{{"{HASH}":1}}}}"#);
        let as_variant = format!(r#"{{"{HASH}":1}}"#);
        let as_name = user_line(HASH, HASH);
        let bad_tail = user_line("alice", &format!("{HASH}!"));
        for line in [wrong_type, as_key, as_variant, as_name, bad_tail] {
            let err = parse(&line).map(|_| ()).map_err(|e| e.to_string());
            let text = err.err().unwrap_or_default();
            assert!(!text.is_empty(), "{line} was accepted");
            assert!(!text.contains(HASH), "{text}");
            assert!(!text.contains("TVLlQcbp"), "{text}");
        }
        let user = LocalUser {
            name: "alice".into(),
            password_hash: HASH.into(),
        };
        assert!(!format!("{user:?}").contains(HASH));
        assert!(!tidy_stderr(format!("bad line: alice:{HASH}").as_bytes(), HASH).contains(HASH));
    }

    #[test]
    fn stderr_is_trimmed_to_one_short_line() {
        assert_eq!(tidy_stderr(b"  useradd: oops\n\n", ""), "useradd: oops");
        assert_eq!(tidy_stderr(b"a\nb\r\n", ""), "a b");
        let long = tidy_stderr("é".repeat(1000).as_bytes(), "");
        assert!(long.len() <= STDERR_IN_MESSAGE + '…'.len_utf8());
    }

    /// Fake tools in a temp dir: shell scripts that record their argument
    /// vectors and stdin.
    struct Fake {
        dir: tempfile::TempDir,
        tools: Tools,
    }

    fn fake_tools(getent: &str, useradd: &str, chpasswd: &str) -> Fake {
        let dir = tempfile::tempdir().expect("a temp dir");
        let write = |name: &str, body: &str| {
            let path = dir.path().join(name);
            let log = dir.path().join(format!("{name}.log"));
            let script = format!(
                "#!/bin/sh\nprintf '%s\\n' \"$@\" >'{}'\ncat >'{}.in'\n{body}\n",
                log.display(),
                log.display()
            );
            std::fs::write(&path, script).expect("write a fake tool");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            path
        };
        let tools = Tools {
            getent: write("getent", getent),
            useradd: write("useradd", useradd),
            chpasswd: write("chpasswd", chpasswd),
            timeout: Duration::from_secs(5),
            systemctl: write("systemctl", "exit 0"),
            restart_timeout: Duration::from_secs(5),
            access_template: dir.path().join("daas-access.conf.in"),
            access_file: dir.path().join("daas-access.conf"),
        };
        Fake { dir, tools }
    }

    impl Fake {
        fn log(&self, name: &str) -> Option<String> {
            std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).ok()
        }
        fn input(&self, name: &str) -> Option<String> {
            std::fs::read_to_string(self.dir.path().join(format!("{name}.log.in"))).ok()
        }
    }

    fn alice() -> Request {
        Request::CreateLocalUser(LocalUser {
            name: "alice".into(),
            password_hash: HASH.into(),
        })
    }

    #[test]
    fn a_missing_login_is_created_and_the_hash_goes_on_stdin() {
        let fake = fake_tools("exit 2", "exit 0", "exit 0");
        let done = apply_with(&fake.tools, &alice()).map_err(|e| e.to_string());
        assert_eq!(
            done,
            Ok(Done::Created {
                name: "alice".into()
            })
        );
        assert_eq!(fake.log("getent").as_deref(), Some("passwd\nalice\n"));
        assert_eq!(
            fake.log("useradd").as_deref(),
            Some("--create-home\n--shell\n/bin/bash\nalice\n")
        );
        assert_eq!(fake.log("chpasswd").as_deref(), Some("--encrypted\n"));
        assert_eq!(fake.input("chpasswd"), Some(format!("alice:{HASH}\n")));
    }

    #[test]
    fn an_existing_login_gets_the_password_a_system_account_nothing() {
        let fake = fake_tools(
            "echo 'alice:x:1001:1001:Alice:/home/alice:/bin/bash'",
            "exit 0",
            "exit 0",
        );
        let done = apply_with(&fake.tools, &alice()).map_err(|e| e.to_string());
        assert_eq!(
            done,
            Ok(Done::PasswordSet {
                name: "alice".into(),
                uid: 1001
            })
        );
        assert_eq!(fake.log("useradd"), None);
        assert_eq!(fake.input("chpasswd"), Some(format!("alice:{HASH}\n")));

        for uid in [1, 999, 65534] {
            let fake = fake_tools(
                &format!("echo 'alice:x:{uid}:1::/var/lib/alice:/usr/sbin/nologin'"),
                "exit 0",
                "exit 0",
            );
            let err = apply_with(&fake.tools, &alice()).map_err(|e| e.to_string());
            assert_eq!(
                err,
                Err(format!(
                    "alice is a system account (uid {uid}): choose another session user"
                ))
            );
            assert_eq!(fake.log("useradd"), None);
            assert_eq!(fake.log("chpasswd"), None);
        }
    }

    #[test]
    fn a_failing_tool_is_named_with_its_stderr_without_the_hash() {
        let fake = fake_tools(
            "exit 2",
            "exit 0",
            &format!("echo \"chpasswd: line 1: cannot use alice:{HASH}\" >&2; exit 1"),
        );
        let err = apply_with(&fake.tools, &alice())
            .map(|_| ())
            .map_err(|e| e.to_string());
        let text = err.err().unwrap_or_default();
        assert!(
            text.starts_with("chpasswd failed (exit status: 1): chpasswd: line 1: cannot use"),
            "{text}"
        );
        assert!(!text.contains(HASH), "{text}");
        let fake = fake_tools("exit 3", "exit 0", "exit 0");
        let err = apply_with(&fake.tools, &alice()).map_err(|e| e.to_string());
        assert!(
            matches!(&err, Err(t) if t.starts_with("getent failed")),
            "{err:?}"
        );
        assert_eq!(fake.log("useradd"), None);
    }

    #[test]
    fn a_hung_tool_is_stopped() {
        let mut fake = fake_tools("exit 2", "exec sleep 30", "exit 0");
        fake.tools.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let err = apply_with(&fake.tools, &alice()).map_err(|e| e.to_string());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err, Err("useradd took more than 0s and was stopped".into()));
        assert_eq!(fake.log("chpasswd"), None);
    }

    #[test]
    fn a_missing_tool_is_an_error() {
        let mut fake = fake_tools("exit 2", "exit 0", "exit 0");
        fake.tools.useradd = fake.dir.path().join("absent");
        let err = apply_with(&fake.tools, &alice()).map_err(|e| e.to_string());
        assert!(
            matches!(&err, Err(t) if t.starts_with("cannot run absent")),
            "{err:?}"
        );
    }

    #[test]
    fn serve_answers_a_bad_request_with_one_line() {
        let mut out = Vec::new();
        let result = serve(&b"{\"create_local_user\":{}}\n"[..], &mut out);
        assert!(matches!(result, Ok(Err(ApplyError::Request(_)))));
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
        let reply: Result<Reply, _> = serde_json::from_str(&text);
        let reply = reply.map_err(|e| e.to_string());
        assert!(
            matches!(&reply, Ok(Reply { ok: false, error: Some(e), unsupported: false }) if e.contains("missing field")),
            "{reply:?}"
        );
        assert_eq!(
            Reply {
                ok: true,
                error: None,
                unsupported: false,
            }
            .to_line(),
            "{\"ok\":true}\n"
        );
    }

    fn domain_user(name: &str) -> Request {
        Request::AllowDomainUser(DomainUser { name: name.into() })
    }

    #[test]
    fn a_domain_user_request_is_read_and_checked() {
        let request = parse(r#"{"allow_domain_user":{"name":"Alice Smith"}}"#);
        assert_eq!(request.ok(), Some(domain_user("Alice Smith")));
        for bad in ["", "a@b", "a*b", &"a".repeat(21)] {
            let line = serde_json::json!({ "allow_domain_user": { "name": bad } }).to_string();
            let err = parse(&line);
            assert!(
                matches!(err, Err(RequestError::BadAccountName)),
                "{bad:?}: {err:?}"
            );
        }
        let err = parse(r#"{"allow_domain_user":{"name":"alice","groups":["x"]}}"#);
        assert!(matches!(err, Err(RequestError::Shape(_))), "{err:?}");
    }

    #[test]
    fn a_domain_user_gets_the_access_section_then_sssd_restarts() {
        let fake = fake_tools("exit 9", "exit 9", "exit 9");
        std::fs::write(
            &fake.tools.access_template,
            "[domain/daas.test]\nad_access_filter = DOM:daas.test:(|(sAMAccountName=@USER@))\n",
        )
        .expect("write the template");
        let done = apply_with(&fake.tools, &domain_user("o(x)")).map_err(|e| e.to_string());
        assert_eq!(
            done,
            Ok(Done::DomainUserAllowed {
                name: "o(x)".into()
            })
        );
        let written = std::fs::read_to_string(&fake.tools.access_file).unwrap_or_default();
        assert!(written.contains("(sAMAccountName=o\\28x\\29)"), "{written}");
        assert_eq!(
            fake.log("systemctl").as_deref(),
            Some("restart\nsssd.service\n")
        );
        assert_eq!(fake.log("useradd"), None, "no local login");
    }

    #[test]
    fn a_desktop_without_the_template_answers_unsupported() {
        let fake = fake_tools("exit 9", "exit 9", "exit 9");
        let err = apply_with(&fake.tools, &domain_user("alice"));
        assert!(matches!(&err, Err(e) if e.unsupported()), "{err:?}");
        assert_eq!(fake.log("systemctl"), None, "SSSD left alone");
        assert!(!fake.tools.access_file.exists());
    }

    #[test]
    fn a_failed_restart_fails_the_request() {
        let fake = fake_tools("exit 9", "exit 9", "exit 9");
        std::fs::write(
            &fake.tools.systemctl,
            "#!/bin/sh\necho 'Job for sssd.service failed' >&2\nexit 1\n",
        )
        .expect("write the fake systemctl");
        std::fs::write(&fake.tools.access_template, "x=@USER@\n").expect("write the template");
        let err = apply_with(&fake.tools, &domain_user("alice")).map_err(|e| e.to_string());
        assert!(
            matches!(&err, Err(e) if e.contains("systemctl failed") && e.contains("Job for sssd.service failed")),
            "{err:?}"
        );
    }
}
