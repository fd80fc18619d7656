//! The agent's configuration: `/etc/daas/agent.toml`, mode 0600.
//!
//! ```toml
//! endpoint = "https://10.0.2.2:50051"   # the server (http:// only for loopback experiments)
//! session_id = "0b0f…"                   # this desktop's session
//! ca = "/etc/daas/ca.pem"                # the CA that signed the server's certificate
//! cert = "/etc/daas/agent.pem"           # this session's agent certificate
//! key = "/etc/daas/agent-key.pem"        # and its key
//! tls_server_name = "localhost"          # optional: name to check in the server's certificate
//! xrdp_port = 3389                       # optional
//! helper_socket = "/run/daas-agent-helper.sock"  # optional: the root helper's socket
//! ```
//!
//! Relative paths are relative to the file's folder. Unknown keys and
//! values of the wrong type are errors naming the key; a file that group or
//! others can read is accepted with a warning (it names the credentials).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use tonic::transport::Uri;

use crate::files::{SMALL_FILE, read_text_capped};

/// The keys `agent.toml` may hold.
pub const KEYS: [&str; 8] = [
    "endpoint",
    "session_id",
    "ca",
    "cert",
    "key",
    "tls_server_name",
    "xrdp_port",
    "helper_socket",
];

/// Where the agent reads its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/daas/agent.toml";

/// Where the root helper (`daas-agent --apply`, socket-activated) listens.
pub const DEFAULT_HELPER_SOCKET: &str = "/run/daas-agent-helper.sock";

/// Everything the agent needs to sample and report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The server, e.g. `https://10.0.2.2:50051`.
    pub endpoint: String,
    /// The session this VM belongs to.
    pub session_id: String,
    /// CA certificate(s) the server's certificate must chain to (PEM).
    pub ca: PathBuf,
    /// This session's agent certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The name to check in the server's certificate when the endpoint is
    /// an address the certificate does not name (e.g. `localhost`).
    pub tls_server_name: Option<String>,
    /// The port xrdp listens on.
    pub xrdp_port: u16,
    /// The root helper's socket, which runs the server's commands.
    pub helper_socket: PathBuf,
    /// Where procfs is mounted (tests point it at recorded samples).
    pub proc_root: PathBuf,
    /// Where X servers put their sockets (`X<N>` for display `:N`).
    pub x11_socket_dir: PathBuf,
    /// The utmp file.
    pub utmp: PathBuf,
}

impl Default for AgentConfig {
    /// No endpoint, session or credentials; the system's paths and port.
    fn default() -> AgentConfig {
        AgentConfig {
            endpoint: String::new(),
            session_id: String::new(),
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            tls_server_name: None,
            xrdp_port: 3389,
            helper_socket: PathBuf::from(DEFAULT_HELPER_SOCKET),
            proc_root: PathBuf::from("/proc"),
            x11_socket_dir: PathBuf::from("/tmp/.X11-unix"),
            utmp: PathBuf::from("/var/run/utmp"),
        }
    }
}

/// Why `agent.toml` cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error(
        "{}: unknown key `{key}` (expected one of: {})",
        path.display(),
        KEYS.join(", ")
    )]
    UnknownKey { path: PathBuf, key: String },
    #[error("{}: missing key `{key}`{}", path.display(), why.map(|w| format!(" ({w})")).unwrap_or_default())]
    MissingKey {
        path: PathBuf,
        key: &'static str,
        why: Option<&'static str>,
    },
    #[error("{}: key `{key}`: expected {expected}", path.display())]
    BadValue {
        path: PathBuf,
        key: &'static str,
        expected: &'static str,
    },
}

impl ConfigError {
    /// The key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. } => Some(key),
            ConfigError::MissingKey { key, .. } | ConfigError::BadValue { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

impl AgentConfig {
    /// Reads and checks `path`. A file group or others may access is
    /// logged as a warning, not refused.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = read_text_capped(path, SMALL_FILE).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        if let Ok(meta) = std::fs::metadata(path)
            && let Some(warning) = permission_warning(meta.permissions().mode())
        {
            tracing::warn!("{}: {warning}", path.display());
        }
        let base = path.parent().unwrap_or(Path::new("."));
        AgentConfig::parse(&text, path, base)
    }

    /// Checks the text of a configuration file; `path` names it in errors,
    /// relative paths are resolved against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<AgentConfig, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|err: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: err.message().to_owned(),
                })?;
        let bad = |key: &'static str, expected: &'static str| ConfigError::BadValue {
            path: path.to_owned(),
            key,
            expected,
        };
        let mut config = AgentConfig::default();
        let (mut endpoint, mut session_id) = (None, None);
        let (mut ca, mut cert, mut key) = (None, None, None);
        for (name, value) in &table {
            let string = |key: &'static str| match value.as_str() {
                Some(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
                _ => Err(bad(key, "a non-empty string")),
            };
            let file = |key: &'static str| string(key).map(|p| base.join(p));
            match name.as_str() {
                "endpoint" => endpoint = Some(string("endpoint")?),
                "session_id" => session_id = Some(string("session_id")?),
                "ca" => ca = Some(file("ca")?),
                "cert" => cert = Some(file("cert")?),
                "key" => key = Some(file("key")?),
                "tls_server_name" => config.tls_server_name = Some(string("tls_server_name")?),
                "helper_socket" => config.helper_socket = file("helper_socket")?,
                "xrdp_port" => {
                    config.xrdp_port = value
                        .as_integer()
                        .and_then(|port| u16::try_from(port).ok())
                        .filter(|port| *port != 0)
                        .ok_or_else(|| bad("xrdp_port", "a port number (1-65535)"))?;
                }
                other => {
                    return Err(ConfigError::UnknownKey {
                        path: path.to_owned(),
                        key: other.to_owned(),
                    });
                }
            }
        }
        let missing = |key: &'static str, why: Option<&'static str>| ConfigError::MissingKey {
            path: path.to_owned(),
            key,
            why,
        };
        config.endpoint = endpoint.ok_or_else(|| missing("endpoint", None))?;
        let uri = endpoint_uri(&config.endpoint)
            .ok_or_else(|| bad("endpoint", "a URL such as https://10.0.2.2:50051"))?;
        config.session_id = session_id.ok_or_else(|| missing("session_id", None))?;
        if uri.scheme_str() == Some("https") {
            let why = Some("required for an https:// endpoint");
            config.ca = ca.ok_or_else(|| missing("ca", why))?;
            config.cert = cert.ok_or_else(|| missing("cert", why))?;
            config.key = key.ok_or_else(|| missing("key", why))?;
        } else {
            config.ca = ca.unwrap_or_default();
            config.cert = cert.unwrap_or_default();
            config.key = key.unwrap_or_default();
        }
        Ok(config)
    }
}

/// `endpoint` as an `https://` or `http://` URL with a host, if it is one.
pub fn endpoint_uri(endpoint: &str) -> Option<Uri> {
    let uri: Uri = endpoint.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|host| !host.is_empty());
    (scheme_ok && host_ok).then_some(uri)
}

/// A warning for a configuration file with mode `mode`, when group or
/// others may access it.
pub fn permission_warning(mode: u32) -> Option<String> {
    (mode & 0o077 != 0).then(|| {
        format!(
            "mode {:04o} lets group or others read it; it names this desktop's credentials, \
             make it 0600",
            mode & 0o7777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(
            text,
            Path::new("/etc/daas/agent.toml"),
            Path::new("/etc/daas"),
        )
    }

    const FULL: &str = r#"
        endpoint = "https://10.0.2.2:50051"
        session_id = "s-1"
        ca = "ca.pem"
        cert = "/etc/daas/agent.pem"
        key = "/etc/daas/agent-key.pem"
        tls_server_name = "localhost"
        xrdp_port = 3390
        helper_socket = "/run/test-helper.sock"
    "#;

    #[test]
    fn a_full_file_is_read_with_relative_paths_resolved() {
        let config = parse(FULL).map_err(|e| e.to_string());
        assert_eq!(
            config,
            Ok(AgentConfig {
                endpoint: "https://10.0.2.2:50051".into(),
                session_id: "s-1".into(),
                ca: "/etc/daas/ca.pem".into(),
                cert: "/etc/daas/agent.pem".into(),
                key: "/etc/daas/agent-key.pem".into(),
                tls_server_name: Some("localhost".into()),
                xrdp_port: 3390,
                helper_socket: "/run/test-helper.sock".into(),
                ..AgentConfig::default()
            })
        );
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = parse(&format!("{FULL}\nsesion = 1\n")).err();
        assert_eq!(err.as_ref().and_then(ConfigError::key), Some("sesion"));
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("unknown key `sesion`"), "{text}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (line, key) in [
            ("xrdp_port = \"3389\"", "xrdp_port"),
            ("xrdp_port = 70000", "xrdp_port"),
            ("xrdp_port = 0", "xrdp_port"),
            ("tls_server_name = 5", "tls_server_name"),
            ("helper_socket = \"\"", "helper_socket"),
        ] {
            let kept: Vec<&str> = FULL
                .lines()
                .filter(|l| !l.trim_start().starts_with(key))
                .collect();
            let err = parse(&format!("{}\n{line}\n", kept.join("\n"))).err();
            assert_eq!(err.as_ref().and_then(ConfigError::key), Some(key), "{line}");
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains(&format!("key `{key}`")), "{text}");
        }
        let err = parse(&FULL.replace("https://10.0.2.2:50051", "10.0.2.2:50051")).err();
        assert_eq!(err.as_ref().and_then(ConfigError::key), Some("endpoint"));
        let err = parse(&FULL.replace("\"s-1\"", "\"  \"")).err();
        assert_eq!(err.as_ref().and_then(ConfigError::key), Some("session_id"));
    }

    #[test]
    fn missing_keys_are_named() {
        let err = parse(&FULL.replace("session_id", "# session_id")).err();
        assert_eq!(err.as_ref().and_then(ConfigError::key), Some("session_id"));
        let err = parse(&FULL.replace("cert =", "# cert =")).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("missing key `cert`"), "{text}");
        // Plaintext endpoints need no credentials.
        let plain = "endpoint = \"http://127.0.0.1:50051\"\nsession_id = \"s\"\n";
        let config = parse(plain).map_err(|e| e.to_string());
        assert_eq!(
            config.map(|c| c.helper_socket),
            Ok(DEFAULT_HELPER_SOCKET.into())
        );
    }

    #[test]
    fn malformed_toml_is_an_error_not_a_panic() {
        for text in [
            "endpoint = ",
            "[[[",
            "endpoint = \"x\" = 1",
            "\u{0}\u{1}",
            "a.b.c = [1,",
        ] {
            assert!(
                matches!(parse(text), Err(ConfigError::Syntax { .. })),
                "{text:?}"
            );
        }
        // Valid TOML with a table where a string should be.
        let err = parse("endpoint = { a = 1 }").err();
        assert_eq!(err.as_ref().and_then(ConfigError::key), Some("endpoint"));
    }

    #[test]
    fn group_or_world_access_is_a_warning() {
        assert_eq!(permission_warning(0o100600), None);
        assert_eq!(permission_warning(0o100400), None);
        let warning = permission_warning(0o100644).unwrap_or_default();
        assert!(
            warning.contains("0644") && warning.contains("0600"),
            "{warning}"
        );
        assert!(permission_warning(0o100640).is_some());
    }
}
