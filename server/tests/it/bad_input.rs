//! Bad input never hurts: the request checks and the config parser refuse
//! anything (arbitrary unicode, control characters, kilobytes of text)
//! without panicking, and every refusal names what was wrong; through the
//! real server, every malformed field is INVALID_ARGUMENT naming the field
//! and creates nothing.

use std::{collections::BTreeMap, path::Path};

use crate::common::*;
use daas_api::v1::{
    CreateSessionRequest, DestroySessionRequest, GetSessionRequest, ListSessionsRequest,
    WatchSessionRequest,
};
use daas_server::testkit::{TestOptions, TestServer};
use daas_server::{
    config::Config,
    domain::{error::Error, validate},
};
use proptest::{collection::vec, prelude::*, sample::select, test_runner::FileFailurePersistence};
use tonic::Code;
use tonic_types::StatusExt;

/// The runner's settings: `cases` cases, and the failures proptest finds kept
/// beside this file in `bad_input.proptest-regressions` (checked in; their
/// seeds run first). proptest's default place would be
/// `tests/proptest-regressions/bad_input.txt`, as `tests/it/` has a `main.rs`.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------
// Generators

/// Characters that matter to the checks, and any character at all.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('A', 'Z'),
        1 => proptest::char::range('0', '9'),
        2 => select(vec![
            '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
            '.', ' ', '-', '_', '$', '\'', '%', '{', '}', '~',
        ]),
        1 => select(vec![
            '\0', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{9f}', '\u{200b}',
            '\u{202e}', '\u{feff}', '\u{fffd}', '\u{10ffff}', 'é', 'Ω', 'ß', '中', '😀',
        ]),
        2 => any::<char>(),
    ]
}

/// Any string: arbitrary unicode, strings near the checks' length bounds
/// made of the characters that matter, and long ones (up to 4 KiB).
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        4 => vec(interesting_char(), 0..=24).prop_map(String::from_iter),
        2 => vec(interesting_char(), 0..=300).prop_map(String::from_iter),
        1 => vec(any::<char>(), 0..=4096).prop_map(String::from_iter),
        1 => (0usize..=4096, interesting_char()).prop_map(|(n, c)| c.to_string().repeat(n)),
        1 => Just(String::new()),
    ]
}

fn uuid_text(bits: u128, upper: bool) -> String {
    let hex = format!("{bits:032x}");
    let hex = if upper { hex.to_uppercase() } else { hex };
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Session ids: well-formed UUIDs, near misses and anything at all.
fn any_session_id() -> impl Strategy<Value = String> {
    let uuid = (any::<u128>(), any::<bool>()).prop_map(|(bits, upper)| uuid_text(bits, upper));
    prop_oneof![
        2 => uuid.clone(),
        // One character replaced.
        2 => (uuid.clone(), 0usize..36, interesting_char()).prop_map(|(id, at, c)| {
            id.chars()
                .enumerate()
                .map(|(i, old)| if i == at { c } else { old })
                .collect()
        }),
        // The other spellings a UUID parser may know.
        1 => uuid.clone().prop_map(|id| id.replace('-', "")),
        1 => uuid.clone().prop_map(|id| format!("{{{id}}}")),
        1 => uuid.clone().prop_map(|id| format!("urn:uuid:{id}")),
        1 => uuid.prop_map(|id| format!("../../{id}")),
        3 => any_text(),
    ]
}

// ---------------------------------------------------------------------------
// What the validate functions document

/// `validate::account_name`'s doc: 1-20 characters, none of
/// `"/\[]:;|=,+*?<>@`, no control characters, not only dots and spaces.
fn documented_account_name(value: &str) -> bool {
    let count = value.chars().count();
    (1..=20).contains(&count)
        && !value.chars().any(|c| "\"/\\[]:;|=,+*?<>@".contains(c))
        && !value.chars().any(char::is_control)
        && !value.chars().all(|c| c == '.' || c == ' ')
}

/// `validate::password`'s doc: 8-256 characters, no control characters.
fn documented_password(value: &str) -> bool {
    let count = value.chars().count();
    (8..=256).contains(&count) && !value.chars().any(char::is_control)
}

/// `validate::template`'s doc: 1-64 of letters, digits, `.`, `_` and `-`.
fn documented_template(value: &str) -> bool {
    let count = value.chars().count();
    (1..=64).contains(&count)
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `validate::request_id`'s doc: 1-64 of letters, digits, `.`, `_`, `:`
/// and `-`.
fn documented_request_id(value: &str) -> bool {
    let count = value.chars().count();
    (1..=64).contains(&count)
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
}

/// A session id as the server makes them: a hyphenated UUID.
fn documented_session_id(value: &str) -> bool {
    value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A refusal must be INVALID_ARGUMENT naming `field`, in the message too.
fn assert_names_field(result: Result<(), Error>, field: &str) -> Result<(), TestCaseError> {
    if let Err(err) = result {
        let message = err.to_string();
        match err {
            Error::InvalidArgument { field: named, .. } => {
                prop_assert_eq!(named, field, "{}", message);
                prop_assert!(message.starts_with(field), "{}", message);
            }
            other => prop_assert!(false, "not InvalidArgument: {:?}", other),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn account_names_are_checked_as_documented(
        value in any_text(),
        field in select(vec!["username", "session_user", "admin"]),
    ) {
        let result = validate::account_name(field, &value);
        prop_assert_eq!(result.is_ok(), documented_account_name(&value), "{:?}", value);
        assert_names_field(result, field)?;
    }

    #[test]
    fn passwords_are_checked_as_documented_and_never_echoed(
        value in any_text(),
        field in select(vec!["session_password", "password"]),
    ) {
        let result = validate::password(field, &value);
        prop_assert_eq!(result.is_ok(), documented_password(&value), "{:?}", value);
        if let Err(err) = &result {
            let message = err.to_string();
            // The fixed texts are ASCII lowercase, digits and '_': any
            // other character in a refused password must not show.
            let telling = value
                .chars()
                .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || " _-".contains(c)));
            if !value.is_empty() && telling {
                prop_assert!(!message.contains(&value), "{}", message);
            }
        }
        assert_names_field(result, field)?;
    }

    #[test]
    fn templates_are_checked_as_documented(value in any_text()) {
        let result = validate::template(&value);
        prop_assert_eq!(result.is_ok(), documented_template(&value), "{:?}", value);
        assert_names_field(result, "template")?;
    }

    #[test]
    fn request_ids_are_checked_as_documented(value in any_text()) {
        let result = validate::request_id(&value);
        prop_assert_eq!(result.is_ok(), documented_request_id(&value), "{:?}", value);
        assert_names_field(result, "request_id")?;
    }

    #[test]
    fn page_sizes_are_0_to_1000(value in prop_oneof![0u32..=1100, any::<u32>()]) {
        match validate::page_size(value) {
            Ok(size) => {
                prop_assert!(value <= 1000, "{} accepted", value);
                prop_assert_eq!(size, if value == 0 { 100 } else { value });
            }
            Err(err) => {
                prop_assert!(value > 1000, "{} refused", value);
                assert_names_field(Err(err), "page_size")?;
            }
        }
    }

    #[test]
    fn session_ids_are_uuids_or_invalid_argument(value in any_session_id()) {
        let result = validate::session_id(&value);
        prop_assert_eq!(result.is_ok(), documented_session_id(&value), "{:?}", value);
        if result.is_ok() {
            // Never a path outside the data dir.
            prop_assert!(!value.contains(['/', '\\', '.']), "{:?}", value);
        }
        assert_names_field(result, "session_id")?;
    }
}

// ---------------------------------------------------------------------------
// The config parser

/// How a known key's values are made, good and bad.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A usize limit: at least 1.
    Count,
    /// A u32: at least 1.
    Count32,
    /// A positive duration.
    Duration,
    /// `policy.warning`: shorter than every policy timeout.
    Warning,
    Bool,
    Listen,
    LogFormat,
    Template,
    Connection,
    NonEmpty,
    Endpoint,
    Admins,
}

/// Known keys: (table, key, kind). "" is the root table. `tls.plaintext`
/// is set by the base config (the test has no PKI) and not generated.
const KNOWN: &[(&str, &str, Kind)] = &[
    ("", "listen", Kind::Listen),
    ("", "log_format", Kind::LogFormat),
    ("limits", "max_parallel_provisions", Kind::Count),
    ("limits", "max_sessions", Kind::Count),
    ("limits", "max_sessions_per_user", Kind::Count),
    ("limits", "creates_per_minute", Kind::Count32),
    ("limits", "create_burst", Kind::Count32),
    ("limits", "max_streams", Kind::Count),
    ("limits", "max_streams_per_user", Kind::Count),
    ("limits", "output_retention", Kind::Duration),
    ("limits", "audit_retention", Kind::Duration),
    ("vm", "template", Kind::Template),
    ("vm", "cores", Kind::Count32),
    ("vm", "memory_mb", Kind::Count32),
    ("vm", "disk_gb", Kind::Count32),
    ("terraform", "init_timeout", Kind::Duration),
    ("terraform", "apply_timeout", Kind::Duration),
    ("terraform", "destroy_timeout", Kind::Duration),
    ("terraform", "sweep_interval", Kind::Duration),
    ("boot", "timeout", Kind::Duration),
    ("ssh", "user", Kind::NonEmpty),
    ("ansible", "connection", Kind::Connection),
    ("ansible", "timeout", Kind::Duration),
    ("tls", "dev_pki", Kind::Bool),
    ("auth", "admins", Kind::Admins),
    ("agent", "endpoint", Kind::Endpoint),
    ("agent", "report_interval", Kind::Duration),
    ("policy", "idle_timeout", Kind::Duration),
    ("policy", "disconnected_timeout", Kind::Duration),
    ("policy", "max_lifetime", Kind::Duration),
    ("policy", "agent_lost_timeout", Kind::Duration),
    ("policy", "warning", Kind::Warning),
    ("policy", "reaper_interval", Kind::Duration),
];

/// The tables of the keys above, after the top level ("").
fn tables() -> Vec<&'static str> {
    let mut tables = vec![""];
    for (table, _, _) in KNOWN {
        if !tables.contains(table) {
            tables.push(table);
        }
    }
    tables
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// TOML values (as written in the file) a key of `kind` accepts.
fn good_values(kind: Kind) -> Vec<String> {
    match kind {
        Kind::Count => strings(&["1", "3", "8", "1000", "+42", "1_000"]),
        Kind::Count32 => strings(&["1", "2", "64", "4096", "4294967295"]),
        // Policy timeouts must stay longer than the warning (at most 5m).
        Kind::Duration => strings(&["\"10m\"", "\"90m\"", "\"2h\"", "\"1h 30m\"", "\"1day\""]),
        Kind::Warning => strings(&["\"0s\"", "\"1m\"", "\"5m\"", "\"90s\""]),
        Kind::Bool => strings(&["true", "false"]),
        Kind::Listen => strings(&["\"127.0.0.1:0\"", "\"127.0.0.1:50051\"", "\"[::1]:7000\""]),
        Kind::LogFormat => strings(&["\"text\"", "\"json\""]),
        Kind::Template => strings(&["\"debian-12-xfce\"", "\"w11_lab.2\"", "\"x\""]),
        Kind::Connection => strings(&["\"ssh\"", "\"local\""]),
        Kind::NonEmpty => strings(&["\"daas\"", "\"root\"", "\"élodie\""]),
        Kind::Endpoint => strings(&["\"\"", "\"https://10.0.2.2:50051\"", "\"http://h:1\""]),
        Kind::Admins => strings(&["[]", "[\"alice\"]", "[\"alice\", \"j.doe\"]"]),
    }
}

/// TOML values a key of `kind` refuses, whatever the other keys say.
fn bad_values(kind: Kind) -> Vec<String> {
    let mut values = strings(&["[1, 2]", "{ a = 1 }", "1979-05-27T07:32:00Z"]);
    let own = match kind {
        Kind::Count => strings(&[
            "0",
            "-1",
            "\"many\"",
            "1.5",
            "true",
            "\"8\"",
            "-9223372036854775808",
        ]),
        Kind::Count32 => strings(&["0", "-1", "4294967296", "\"two\"", "2.0", "false", "nan"]),
        Kind::Duration => strings(&[
            "\"0s\"",
            "\"-1m\"",
            "\"soon\"",
            "\"\"",
            "90",
            "true",
            "\"90\"",
            "\"1 fortnight\"",
            "\"0m 0s\"",
            "\"∞\"",
        ]),
        Kind::Warning => strings(&["\"-1m\"", "\"soon\"", "\"10d\"", "300", "\"\""]),
        Kind::Bool => strings(&["\"yes\"", "1", "\"true\"", "0"]),
        Kind::Listen => strings(&[
            "\"nowhere\"",
            "\"\"",
            "\"127.0.0.1\"",
            "\"127.0.0.1:99999\"",
            "42",
        ]),
        Kind::LogFormat => strings(&["\"xml\"", "\"TEXT \"", "1", "\"\""]),
        Kind::Template => strings(&["\"../x\"", "\"\"", "\"a b\"", "\"é\"", "7", "\"a/b\""]),
        Kind::Connection => strings(&["\"telnet\"", "\"\"", "true"]),
        Kind::NonEmpty => strings(&["\"\"", "5", "false"]),
        Kind::Endpoint => strings(&["\"10.0.2.2:50051\"", "\"ftp://x\"", "7"]),
        Kind::Admins => strings(&[
            "\"alice\"",
            "[\"a/b\"]",
            "[\"\"]",
            "[1]",
            "[\"ok\", \"x@y\"]",
        ]),
    };
    values.extend(own);
    values
}

/// One generated line: a known key with a good or bad value, or a key no
/// table knows.
#[derive(Debug, Clone)]
struct Line {
    table: &'static str,
    key: String,
    value: String,
    bad: bool,
}

fn known_line() -> impl Strategy<Value = Line> {
    // Mostly good values, so that many configs have none or one bad key.
    let bad = prop::bool::weighted(0.15);
    (select(KNOWN), bad, any::<prop::sample::Index>()).prop_map(
        |((table, key, kind), bad, pick)| {
            let values = if bad {
                bad_values(kind)
            } else {
                good_values(kind)
            };
            Line {
                table,
                key: key.to_string(),
                value: pick.get(&values).clone(),
                bad,
            }
        },
    )
}

/// Whether the config knows `key` in `table` (or it names a section).
fn is_known(table: &str, key: &str) -> bool {
    let other = matches!(
        (table, key),
        ("", "data_dir" | "database" | "secrets")
            | (
                "terraform",
                "module_dir" | "binary" | "plugin_cache_dir" | "variables"
            )
            | ("ssh", "private_key")
            | (
                "ansible",
                "binary" | "playbook" | "teardown_playbook" | "config" | "extra_vars"
            )
            | ("tls", "plaintext" | "ca" | "cert" | "key")
            | ("agent", "tls_server_name" | "binary" | "ca_key")
            | ("policy", "templates")
    );
    other
        || KNOWN.iter().any(|(t, k, _)| *t == table && *k == key)
        || (table.is_empty() && tables().contains(&key))
}

fn unknown_line() -> impl Strategy<Value = Line> {
    let value = select(strings(&["1", "\"x\"", "true", "\"90s\"", "[]"]));
    (select(tables()), "[a-z][a-z_]{2,14}", value)
        .prop_filter("a known key", |(table, key, _)| !is_known(table, key))
        .prop_map(|(table, key, value)| Line {
            table,
            key,
            value,
            bad: true,
        })
}

/// The lines a config needs in the test's folder: paths that exist,
/// plaintext (no PKI).
fn base() -> BTreeMap<(&'static str, String), String> {
    BTreeMap::from([
        (("", "data_dir".into()), "\"data\"".into()),
        (
            ("terraform", "module_dir".into()),
            "\"modules/test\"".into(),
        ),
        (("ansible", "playbook".into()), "\"play.yml\"".into()),
        (("tls", "plaintext".into()), "true".into()),
    ])
}

/// Renders `lines` over the base config; a key given twice keeps its last
/// value. Returns the text and the bad keys (as `table.key`).
fn render(lines: &[Line]) -> (String, Vec<String>) {
    let mut entries: BTreeMap<(&str, String), (String, bool)> =
        base().into_iter().map(|(k, v)| (k, (v, false))).collect();
    for line in lines {
        entries.insert(
            (line.table, line.key.clone()),
            (line.value.clone(), line.bad),
        );
    }
    let mut text = String::new();
    let mut bad = Vec::new();
    for table in tables() {
        if !table.is_empty() {
            text.push_str(&format!("[{table}]\n"));
        }
        for ((t, key), (value, is_bad)) in &entries {
            if *t == table {
                text.push_str(&format!("{key} = {value}\n"));
                if *is_bad {
                    bad.push(if table.is_empty() {
                        key.clone()
                    } else {
                        format!("{table}.{key}")
                    });
                }
            }
        }
    }
    (text, bad)
}

/// A folder with what the base config points at.
fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("modules/test")).unwrap();
    std::fs::write(dir.path().join("play.yml"), "---\n").unwrap();
    dir
}

fn load(dir: &Path, text: &[u8]) -> Result<Config, String> {
    let file = dir.join("daas.toml");
    std::fs::write(&file, text).unwrap();
    Config::load(Some(&file)).map_err(|err| err.to_string())
}

/// Whether `message` names `key` (`table.key`): figment says
/// `for key "default.limits.max_sessions"`, the server's own checks
/// `` `limits.max_sessions`: ``, and an unknown field is named alone.
fn names_key(message: &str, key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    message.contains(key) || message.contains(&format!("`{leaf}`"))
}

/// Limits above what tokio's semaphores take (`usize::MAX >> 3`) used to
/// pass `Config::load` and then panic the server at start ("a semaphore may
/// not have more than MAX_PERMITS permits").
#[test]
fn absurd_limits_are_refused_naming_the_key() {
    let dir = config_dir();
    for key in ["max_streams", "max_parallel_provisions"] {
        let line = Line {
            table: "limits",
            key: key.into(),
            value: "9223372036854775807".into(),
            bad: true,
        };
        let (text, bad) = render(&[line]);
        match load(dir.path(), text.as_bytes()) {
            Ok(_) => panic!("{bad:?} = 9223372036854775807 was accepted"),
            Err(err) => assert!(names_key(&err, &bad[0]), "{err}"),
        }
    }
}

#[test]
fn the_base_config_loads() {
    let dir = config_dir();
    let (text, bad) = render(&[]);
    assert!(bad.is_empty());
    if let Err(err) = load(dir.path(), text.as_bytes()) {
        panic!("{err}\n{text}");
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Good values load; one bad value is refused naming its key; several
    /// are refused naming one of them.
    #[test]
    fn config_mistakes_name_the_key(
        lines in vec(prop_oneof![6 => known_line(), 1 => unknown_line()], 0..8),
    ) {
        let dir = config_dir();
        let (text, bad) = render(&lines);
        let result = load(dir.path(), text.as_bytes());
        match (&result, bad.as_slice()) {
            (Ok(_), []) => {}
            (Err(err), []) => prop_assert!(false, "a good config was refused: {}\n{}", err, text),
            (Ok(_), _) => prop_assert!(false, "{:?} accepted:\n{}", bad, text),
            (Err(err), [key]) => prop_assert!(names_key(err, key), "{} not named: {}\n{}", key, err, text),
            (Err(err), keys) => prop_assert!(
                keys.iter().any(|k| names_key(err, k)),
                "none of {:?} named: {}\n{}", keys, err, text
            ),
        }
    }

    /// Anything at all in the file: no panic, and a refusal says what is
    /// wrong (a key, or where in the file).
    #[test]
    fn any_config_text_is_refused_with_a_message(
        lines in vec(
            prop_oneof![
                3 => known_line().prop_map(|l| format!("{} = {}", l.key, l.value)),
                2 => select(tables()).prop_map(|t| format!("[{t}]")),
                2 => (
                    "[a-z_.]{0,12}",
                    prop_oneof![
                        Just("\"-1m\"".to_string()),
                        Just("\"soon\"".to_string()),
                        Just("[1, \"a\", true]".to_string()),
                        Just("18446744073709551616".to_string()),
                        "-?[0-9]{1,25}",
                        any_text().prop_map(|s| format!("{s:?}")),
                    ],
                ).prop_map(|(k, v)| format!("{k} = {v}")),
                1 => any_text(),
            ],
            0..12,
        ),
        raw in prop::option::weighted(0.1, vec(any::<u8>(), 0..64)),
    ) {
        let dir = config_dir();
        let (base, _) = render(&[]);
        let mut text = base.into_bytes();
        for line in &lines {
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        if let Some(raw) = raw {
            text.extend(raw);
        }
        if let Err(err) = load(dir.path(), &text) {
            prop_assert!(err.starts_with("configuration: "), "{}", err);
            // A value figment could not take names its key (and the file);
            // the server's own checks name the key; a file that is not
            // TOML says where.
            let names_a_key = (err.contains("for key \"default.") && err.contains("daas.toml"))
                || err.starts_with("configuration: `");
            let says_where = (err.contains("TOML parse error at line")
                || err.contains("valid UTF-8"))
                && err.contains("daas.toml");
            prop_assert!(names_a_key || says_where, "{}", err);
        }
    }
}

// ---------------------------------------------------------------------------
// Through the real server

fn create_req(
    username: &str,
    session_user: &str,
    password: &str,
    template: &str,
) -> CreateSessionRequest {
    let mut req = request(username);
    req.session_user = session_user.into();
    req.session_password = password.into();
    req.template = template.into();
    req
}

fn with_request_id(request_id: &str) -> CreateSessionRequest {
    let mut req = request("alice");
    req.request_id = request_id.into();
    req
}

/// INVALID_ARGUMENT whose message and `google.rpc.BadRequest` detail name
/// `field`.
fn assert_invalid(status: &tonic::Status, field: &str, what: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert!(
        status.message().starts_with(field),
        "{what}: the message should name {field}: {}",
        status.message()
    );
    let named: Vec<String> = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert_eq!(named, [field], "{what}: the BadRequest detail");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_refuses_malformed_fields_naming_them() {
    let server = TestServer::start(TestOptions::default()).await;
    let mut client = server.client().await;
    let password = "long-enough-1";
    let long = "x".repeat(4096);
    let creates = [
        (create_req("a/b", "", "", ""), "username"),
        (create_req(&"x".repeat(21), "", "", ""), "username"),
        (create_req("...", "", "", ""), "username"),
        (create_req("nul\0here", "", "", ""), "username"),
        (create_req("bell\u{7}", "", "", ""), "username"),
        (create_req("a@corp", "", "", ""), "username"),
        (create_req(&long, "", "", ""), "username"),
        (create_req("alice", "bob", "", ""), "session_password"),
        (create_req("alice", "", password, ""), "session_password"),
        (create_req("alice", "bob", "short", ""), "session_password"),
        (
            create_req("alice", "bob", &"p".repeat(257), ""),
            "session_password",
        ),
        (
            create_req("alice", "bob", "tab\tinside!", ""),
            "session_password",
        ),
        (
            create_req("alice", "bob\\corp", password, ""),
            "session_user",
        ),
        (
            create_req("alice", &"b".repeat(21), password, ""),
            "session_user",
        ),
        (create_req("alice", " . ", password, ""), "session_user"),
        (create_req("alice", "", "", "a/b"), "template"),
        (create_req("alice", "", "", "../../etc"), "template"),
        (create_req("alice", "", "", "debian 12"), "template"),
        (create_req("alice", "", "", &"t".repeat(65)), "template"),
        (create_req("alice", "", "", "débian"), "template"),
        (create_req("alice", "", "", "x\n"), "template"),
        (with_request_id("a b"), "request_id"),
        (with_request_id("a/b"), "request_id"),
        (with_request_id(&"r".repeat(65)), "request_id"),
        (with_request_id("r\u{0}"), "request_id"),
        (with_request_id("réquest"), "request_id"),
    ];
    for (req, field) in creates {
        let what = format!("{req:?}");
        match client.create_session(req).await {
            Ok(_) => panic!("accepted: {what}"),
            Err(status) => {
                assert_invalid(&status, field, &what);
                assert!(!status.message().contains(password), "{}", status.message());
            }
        }
    }

    let ids = [
        "",
        "not-a-uuid",
        "../../etc/passwd",
        "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d1",
        "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11x",
        "3f0c1d8e8a554c1e9a321b8f7e0c2d11",
        "{3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11}",
        "urn:uuid:3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11",
        "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d1\u{1d7d9}",
        "\0",
        &long,
    ];
    for id in ids {
        let what = format!("{:?}", id.chars().take(40).collect::<String>());
        let status = client
            .get_session(GetSessionRequest {
                session_id: id.into(),
            })
            .await
            .unwrap_err();
        assert_invalid(&status, "session_id", &format!("get {what}"));
        let status = client
            .watch_session(WatchSessionRequest {
                session_id: id.into(),
                after_sequence: 0,
            })
            .await
            .unwrap_err();
        assert_invalid(&status, "session_id", &format!("watch {what}"));
        let status = client
            .destroy_session(DestroySessionRequest {
                session_id: id.into(),
            })
            .await
            .unwrap_err();
        assert_invalid(&status, "session_id", &format!("destroy {what}"));
    }
    // A well-formed id of no session is NOT_FOUND.
    let status = client
        .get_session(GetSessionRequest {
            session_id: "3f0c1d8e-8a55-4c1e-9a32-1b8f7e0c2d11".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    for state in [-1, 10, 99, i32::MAX, i32::MIN] {
        let status = client
            .list_sessions(ListSessionsRequest {
                state,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_invalid(&status, "state", &format!("list state {state}"));
    }

    let lists = [
        (
            ListSessionsRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListSessionsRequest {
                page_size: u32::MAX,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListSessionsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListSessionsRequest {
                page_token: "1.../../etc".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ];
    for (req, field) in lists {
        let what = format!("{req:?}");
        let status = client.list_sessions(req).await.unwrap_err();
        assert_invalid(&status, field, &what);
    }

    let list = client
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        list.sessions.is_empty(),
        "refused requests created {list:?}"
    );
    assert!(
        std::fs::read_dir(server.markers())
            .unwrap()
            .next()
            .is_none(),
        "no VM was made"
    );

    // The server still serves a good request.
    let events = create(&mut client, request("alice")).await;
    assert_eq!(
        stages(&events).last(),
        Some(&daas_api::v1::SessionState::Ready)
    );
    server.stop().await;
}
