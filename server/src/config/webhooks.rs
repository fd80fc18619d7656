//! A webhook's settings (`[[webhooks]]`), as written and as checked. The
//! URL is a secret of its own (Slack's and Discord's carry their token in
//! the path): a checked webhook shows only its scheme, host and port.

use std::{collections::BTreeSet, fmt, net::IpAddr, path::PathBuf, time::Duration};

use figment::value::magic::RelativePathBuf;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde::{Deserialize, Serialize};

use super::Secret;

/// The most attempts a delivery may be given.
const MAX_ATTEMPTS: u32 = 20;

/// `[[webhooks]]` as written in the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Its label in the metrics and the log; empty: its index.
    #[serde(default)]
    pub name: String,
    pub url: String,
    /// Which events it gets (READY, FAILED, IDLE_WARNING, DESTROYED, LOST, SCHEDULE_REFUSED).
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    #[serde(default)]
    pub format: Format,
    /// File holding the HMAC key; required for the `json` format.
    #[serde(default)]
    pub secret_file: Option<RelativePathBuf>,
    /// CA of the receiver's certificate, beside the system's (an
    /// enterprise CA).
    #[serde(default)]
    pub ca_file: Option<RelativePathBuf>,
    /// Of one attempt: connection, TLS, request and the response's head.
    #[serde(default = "ten_seconds", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "five")]
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles it.
    #[serde(default = "one_second", with = "humantime_serde")]
    pub retry_base: Duration,
}

fn all_events() -> Vec<String> {
    EventName::ALL
        .iter()
        .map(|e| e.as_str().to_string())
        .collect()
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn five() -> u32 {
    5
}

/// The events a webhook can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventName {
    Ready,
    Failed,
    IdleWarning,
    Destroyed,
    /// The desktop's cluster node went offline.
    Lost,
    /// A user's schedule could not make its desktop (a quota, a limit,
    /// the catalog): no session exists to tell it by.
    ScheduleRefused,
}

impl EventName {
    pub const ALL: [EventName; 6] = [
        EventName::Ready,
        EventName::Failed,
        EventName::IdleWarning,
        EventName::Destroyed,
        EventName::Lost,
        EventName::ScheduleRefused,
    ];

    /// As in the config, the `X-Daas-Event` header and the payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Ready => "READY",
            EventName::Failed => "FAILED",
            EventName::IdleWarning => "IDLE_WARNING",
            EventName::Destroyed => "DESTROYED",
            EventName::Lost => "LOST",
            EventName::ScheduleRefused => "SCHEDULE_REFUSED",
        }
    }

    fn parse(text: &str) -> Option<EventName> {
        EventName::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// How the body is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Our own object (see the README).
    #[default]
    Json,
    /// A Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// A Discord webhook: `{"content": ...}`.
    Discord,
}

/// Where deliveries go. `Debug` and `Display` show the origin only: the
/// path and query may hold a token.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// Without the brackets of an IPv6 address.
    pub host: String,
    pub port: u16,
    /// Path and query, as given ("/" when none).
    pub path: String,
}

impl Target {
    /// The `Host` header.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.https { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}/…\"")
    }
}

/// A CA file's certificates. `Debug` shows its path.
#[derive(Clone)]
pub struct CaFile {
    pub path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.path)
    }
}

/// A checked webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// `name`, or the entry's index: the metrics' `webhook` label.
    pub label: String,
    pub target: Target,
    pub events: BTreeSet<EventName>,
    pub format: Format,
    /// The key deliveries are signed with (HMAC-SHA256); None: they go
    /// unsigned (allowed for slack and discord only).
    pub secret: Option<Secret>,
    pub ca_file: Option<CaFile>,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
}

/// A `[[webhooks]]` entry that cannot be used; `key` names the setting.
#[derive(Debug, thiserror::Error)]
#[error("`{key}`: {why}")]
pub struct SpecError {
    pub key: String,
    pub why: String,
}

/// Checks every entry: their names are unique, each is valid.
pub fn check_all(specs: &[WebhookSpec]) -> Result<Vec<Webhook>, SpecError> {
    let mut hooks: Vec<Webhook> = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        let hook = Webhook::check(index, spec)?;
        if hooks.iter().any(|h| h.label == hook.label) {
            return Err(SpecError {
                key: format!("webhooks[{index}].name"),
                why: format!("another webhook is already called {:?}", hook.label),
            });
        }
        hooks.push(hook);
    }
    Ok(hooks)
}

impl Webhook {
    /// Checks entry `index` and reads its secret file.
    pub fn check(index: usize, spec: &WebhookSpec) -> Result<Webhook, SpecError> {
        let error = |key: &str, why: String| SpecError {
            key: format!("webhooks[{index}].{key}"),
            why,
        };
        let label = if spec.name.is_empty() {
            index.to_string()
        } else if spec.name.len() <= 64
            && spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            spec.name.clone()
        } else {
            return Err(error(
                "name",
                "letters, digits, '.', '_' and '-' only, at most 64".into(),
            ));
        };
        let target = parse_url(&spec.url).map_err(|why| error("url", why))?;
        if !target.https && !target.is_loopback() {
            return Err(error(
                "url",
                format!(
                    "plain HTTP would carry the payloads (and any token in the URL) in clear: \
                     use https, or http to a loopback address only, not {target}"
                ),
            ));
        }
        let mut events = BTreeSet::new();
        for name in &spec.events {
            let event = EventName::parse(name).ok_or_else(|| {
                error(
                    "events",
                    format!("unknown event {name:?}; the events are {}", valid_events()),
                )
            })?;
            events.insert(event);
        }
        if events.is_empty() {
            return Err(error(
                "events",
                format!("name at least one of {}", valid_events()),
            ));
        }
        let secret = match spec
            .secret_file
            .as_ref()
            .filter(|f| !f.original().as_os_str().is_empty())
        {
            Some(file) => Some(read_secret(&path(file)).map_err(|why| error("secret_file", why))?),
            None if spec.format == Format::Json => {
                return Err(error(
                    "secret_file",
                    "is required for the json format: receivers verify the signature with it"
                        .into(),
                ));
            }
            None => None,
        };
        let ca_file = match spec
            .ca_file
            .as_ref()
            .filter(|f| !f.original().as_os_str().is_empty())
        {
            Some(file) => Some(read_ca(&path(file)).map_err(|why| error("ca_file", why))?),
            None => None,
        };
        if ca_file.is_some() && !target.https {
            return Err(error("ca_file", "is for https URLs only".into()));
        }
        if spec.timeout.is_zero() {
            return Err(error("timeout", "must be longer than zero".into()));
        }
        if spec.retry_base.is_zero() {
            return Err(error("retry_base", "must be longer than zero".into()));
        }
        if !(1..=MAX_ATTEMPTS).contains(&spec.max_attempts) {
            return Err(error(
                "max_attempts",
                format!("must be from 1 to {MAX_ATTEMPTS}"),
            ));
        }
        Ok(Webhook {
            label,
            target,
            events,
            format: spec.format,
            secret,
            ca_file,
            timeout: spec.timeout,
            max_attempts: spec.max_attempts,
            retry_base: spec.retry_base,
        })
    }
}

fn valid_events() -> String {
    EventName::ALL.map(EventName::as_str).join(", ")
}

/// A path from the file (relative to the file), made absolute.
fn path(value: &RelativePathBuf) -> PathBuf {
    let path = value.relative();
    std::path::absolute(&path).unwrap_or(path)
}

/// An http or https URL with a host; no credentials in it. The error
/// never repeats the URL.
fn parse_url(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "is not a URL such as https://hooks.example.org/daas".to_string())?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("must start with https:// (or http:// to a loopback address)".into()),
    };
    let authority = uri.authority().ok_or_else(|| "has no host".to_string())?;
    if authority.as_str().contains('@') {
        return Err(
            "must not carry credentials: receivers check the signature (secret_file)".into(),
        );
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err("has no host".into());
    }
    Ok(Target {
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        host,
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into()),
    })
}

/// The key in `file`, its trailing newline trimmed.
fn read_secret(file: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %file.display(), "a webhook's secret file is readable by others; chmod 600 it");
    }
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    Ok(Secret::new(secret.to_string()))
}

/// The certificates of a PEM file.
fn read_ca(file: &std::path::Path) -> Result<CaFile, String> {
    let certs = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", file.display()));
    }
    Ok(CaFile {
        path: file.to_path_buf(),
        certs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> WebhookSpec {
        WebhookSpec {
            name: String::new(),
            url: url.into(),
            events: all_events(),
            format: Format::Slack,
            secret_file: None,
            ca_file: None,
            timeout: ten_seconds(),
            max_attempts: 5,
            retry_base: one_second(),
        }
    }

    fn error_of(spec: &WebhookSpec) -> String {
        match Webhook::check(2, spec) {
            Ok(_) => panic!("{spec:?} was accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn urls_show_only_their_origin() {
        let hook =
            Webhook::check(0, &spec("https://hooks.slack.com/services/T0/B1/SeCrEt")).unwrap();
        assert_eq!(hook.target.to_string(), "https://hooks.slack.com");
        assert_eq!(hook.target.path, "/services/T0/B1/SeCrEt");
        assert_eq!(hook.label, "0");
        let printed = format!("{hook:?}");
        assert!(!printed.contains("SeCrEt"), "{printed}");
        let local = Webhook::check(0, &spec("http://[::1]:8080/in?x=1")).unwrap();
        assert_eq!(local.target.host, "::1");
        assert_eq!(local.target.authority(), "[::1]:8080");
        assert_eq!(local.target.path, "/in?x=1");
        assert_eq!(
            Webhook::check(0, &spec("http://localhost"))
                .unwrap()
                .target
                .path,
            "/"
        );
    }

    #[test]
    fn mistakes_name_the_key_and_never_the_url() {
        let cases: Vec<(WebhookSpec, &str, &str)> = vec![
            (spec("ftp://x/tok-123"), "webhooks[2].url", "https://"),
            (
                spec("http://10.1.2.3/tok-123"),
                "webhooks[2].url",
                "loopback",
            ),
            (
                spec("https://u:tok-123@x/"),
                "webhooks[2].url",
                "credentials",
            ),
            (spec("not a url tok-123"), "webhooks[2].url", "not a URL"),
            (
                WebhookSpec {
                    events: vec!["READY".into(), "READDY".into()],
                    ..spec("https://x/tok-123")
                },
                "webhooks[2].events",
                "READY, FAILED, IDLE_WARNING, DESTROYED, LOST, SCHEDULE_REFUSED",
            ),
            (
                WebhookSpec {
                    events: vec![],
                    ..spec("https://x/tok-123")
                },
                "webhooks[2].events",
                "at least one",
            ),
            (
                WebhookSpec {
                    format: Format::Json,
                    ..spec("https://x/tok-123")
                },
                "webhooks[2].secret_file",
                "required",
            ),
            (
                WebhookSpec {
                    max_attempts: 0,
                    ..spec("https://x/tok-123")
                },
                "webhooks[2].max_attempts",
                "1 to 20",
            ),
            (
                WebhookSpec {
                    timeout: Duration::ZERO,
                    ..spec("https://x/tok-123")
                },
                "webhooks[2].timeout",
                "zero",
            ),
            (
                WebhookSpec {
                    name: "a b".into(),
                    ..spec("https://x/tok-123")
                },
                "webhooks[2].name",
                "letters",
            ),
        ];
        for (spec, key, why) in cases {
            let err = error_of(&spec);
            assert!(err.contains(key) && err.contains(why), "{err}");
            assert!(!err.contains("tok-123"), "the error shows the URL: {err}");
        }
    }

    #[test]
    fn events_are_read_in_any_case_and_names_are_unique() {
        let hook = Webhook::check(
            0,
            &WebhookSpec {
                events: vec!["ready".into(), "Idle_Warning".into()],
                ..spec("https://x/")
            },
        )
        .unwrap();
        assert_eq!(
            hook.events,
            BTreeSet::from([EventName::Ready, EventName::IdleWarning])
        );
        let named = WebhookSpec {
            name: "ops".into(),
            ..spec("https://x/")
        };
        let err = check_all(&[named.clone(), named]).unwrap_err().to_string();
        assert!(err.contains("webhooks[1].name"), "{err}");
    }

    #[test]
    fn the_secret_file_is_read_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "k3y\n").unwrap();
        let with_file = |file: &std::path::Path| WebhookSpec {
            format: Format::Json,
            secret_file: Some(RelativePathBuf::from(file.to_path_buf())),
            ..spec("https://x/")
        };
        let hook = Webhook::check(0, &with_file(&file)).unwrap();
        assert_eq!(hook.secret.expect("signed").expose(), "k3y");
        std::fs::write(&file, "\n").unwrap();
        assert!(error_of(&with_file(&file)).contains("is empty"));
        let err = error_of(&with_file(&dir.path().join("absent")));
        assert!(
            err.contains("webhooks[2].secret_file") && err.contains("cannot read"),
            "{err}"
        );
    }
}
