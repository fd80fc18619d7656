//! Where the endpoints and the TLS files come from. Each value is taken from
//! the first of: its command-line option (`--endpoint`, `--ca`, `--cert`,
//! `--key`), its environment variable (`DAAS_ENDPOINT`, `DAAS_CA`,
//! `DAAS_CERT`, `DAAS_KEY`), the config file
//! (`$XDG_CONFIG_HOME/daas/config.toml`, by default
//! `~/.config/daas/config.toml`, keys `endpoint`, `ca`, `cert`, `key`), and
//! the default (`http://127.0.0.1:50051`, no files).
//!
//! The endpoint may be a list: the servers (equal replicas) are tried in
//! its order. `--endpoint` may be repeated, and it, `DAAS_ENDPOINT` and the
//! file's `endpoint` string take URLs separated by commas; the file's
//! `endpoint` may also be an array of URLs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{CliError, io_detail, one_line};
use crate::setting_names::{CONFIG_KEYS, TlsFile};

/// The server when nothing names one.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";

/// The config file, relative to the config folder.
const CONFIG_FILE: &str = "daas/config.toml";

/// How hints name the config file when there is no better name.
const DEFAULT_CONFIG_HINT: &str = "~/.config/daas/config.toml";

/// Values from one source (the command line, the environment or the config
/// file); `None` where that source says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    /// The servers' URLs, in the order they are tried.
    pub endpoints: Option<Vec<String>>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Values {
    /// Each value of `self`, else the one of `fallback`.
    fn or(self, fallback: Values) -> Values {
        Values {
            endpoints: self.endpoints.or(fallback.endpoints),
            ca: self.ca.or(fallback.ca),
            cert: self.cert.or(fallback.cert),
            key: self.key.or(fallback.key),
        }
    }

    fn set_file(&mut self, file: TlsFile, path: PathBuf) {
        match file {
            TlsFile::Ca => self.ca = Some(path),
            TlsFile::Cert => self.cert = Some(path),
            TlsFile::Key => self.key = Some(path),
        }
    }
}

/// What every command connects with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The servers' URLs, one or more, in the order they are tried.
    pub endpoints: Vec<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The config file as hints name it, e.g. `~/.config/daas/config.toml`.
    pub config_hint: String,
}

impl Settings {
    /// The default server, no TLS files.
    #[cfg(test)]
    pub fn plaintext(endpoint: &str) -> Settings {
        Settings {
            endpoints: vec![endpoint.to_owned()],
            ca: None,
            cert: None,
            key: None,
            config_hint: DEFAULT_CONFIG_HINT.to_owned(),
        }
    }

    /// Where `file` is, if anything names it.
    pub fn tls_file(&self, file: TlsFile) -> Option<&Path> {
        match file {
            TlsFile::Ca => self.ca.as_deref(),
            TlsFile::Cert => self.cert.as_deref(),
            TlsFile::Key => self.key.as_deref(),
        }
    }
}

/// The settings from `flags`, this process's environment and the config file.
pub fn load(flags: Values) -> Result<Settings, CliError> {
    resolve(flags, &|name| std::env::var_os(name))
}

/// The settings from `flags`, the environment `env` gives (by variable
/// name) and the config file that environment points to.
pub fn resolve(
    flags: Values,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Settings, CliError> {
    let config = config_path(env);
    let home = non_empty(env("HOME")).map(PathBuf::from);
    let from_file = match &config {
        Some(path) => read_config(path)?,
        None => Values::default(),
    };
    let values = flags.or(from_env(env)?).or(from_file);
    Ok(Settings {
        endpoints: values
            .endpoints
            .unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_owned()]),
        ca: values.ca,
        cert: values.cert,
        key: values.key,
        config_hint: config
            .map(|path| tilde(&path, home.as_deref()))
            .unwrap_or_else(|| DEFAULT_CONFIG_HINT.to_owned()),
    })
}

/// `$XDG_CONFIG_HOME/daas/config.toml` when that is an absolute path, else
/// `$HOME/.config/daas/config.toml`; `None` without either.
pub fn config_path(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let xdg = non_empty(env("XDG_CONFIG_HOME"))
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute());
    let dir = match xdg {
        Some(dir) => dir,
        None => PathBuf::from(non_empty(env("HOME"))?).join(".config"),
    };
    Some(dir.join(CONFIG_FILE))
}

/// The values the environment sets; an empty variable (or a list of
/// nothing but commas) counts as unset.
fn from_env(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Values, CliError> {
    let endpoints = match non_empty(env("DAAS_ENDPOINT")) {
        Some(value) => value
            .into_string()
            .map(|text| url_list(&text))
            .map_err(|_| CliError::Usage("DAAS_ENDPOINT is not valid UTF-8".to_owned()))?,
        None => None,
    };
    let mut values = Values {
        endpoints,
        ..Values::default()
    };
    for file in [TlsFile::Ca, TlsFile::Cert, TlsFile::Key] {
        if let Some(path) = non_empty(env(file.env())) {
            values.set_file(file, PathBuf::from(path));
        }
    }
    Ok(values)
}

/// The values of the config file at `path`; none when there is no file.
pub fn read_config(path: &Path) -> Result<Values, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_config(&text, path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Values::default()),
        Err(err) => Err(CliError::ConfigUnreadable {
            file: path.display().to_string(),
            detail: io_detail(&err),
        }),
    }
}

/// The values of a config file's `text`; `path` names the file in errors,
/// and relative paths in it are relative to its folder.
pub fn parse_config(text: &str, path: &Path) -> Result<Values, CliError> {
    let file = path.display().to_string();
    let invalid = |detail: String| CliError::ConfigInvalid {
        file: file.clone(),
        detail,
    };
    let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
        let message = one_line(err.message());
        match err.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                invalid(format!("line {line}: {message}"))
            }
            None => invalid(message),
        }
    })?;
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    let mut values = Values::default();
    for (key, value) in table {
        if key == "endpoint" {
            values.endpoints = Some(config_endpoints(&value).map_err(&invalid)?);
            continue;
        }
        let text = match value.as_str() {
            Some("") => return Err(invalid(format!("`{key}` is empty"))),
            Some(text) => text.to_owned(),
            None if CONFIG_KEYS.contains(&key.as_str()) => {
                return Err(invalid(format!(
                    "`{key}` must be a string, not {}",
                    value.type_str()
                )));
            }
            None => return Err(CliError::ConfigUnknownKey { file, key }),
        };
        match key.as_str() {
            "ca" => values.set_file(TlsFile::Ca, dir.join(text)),
            "cert" => values.set_file(TlsFile::Cert, dir.join(text)),
            "key" => values.set_file(TlsFile::Key, dir.join(text)),
            _ => return Err(CliError::ConfigUnknownKey { file, key }),
        }
    }
    Ok(values)
}

/// The config file's `endpoint`: a string of URLs separated by commas, or
/// an array of URLs.
fn config_endpoints(value: &toml::Value) -> Result<Vec<String>, String> {
    let urls = match value {
        toml::Value::String(text) => url_list(text),
        toml::Value::Array(items) => {
            let urls = items
                .iter()
                .map(|item| match item.as_str().map(str::trim) {
                    Some("") => Err("`endpoint` has an empty URL".to_owned()),
                    Some(url) => Ok(url.to_owned()),
                    None => Err(format!(
                        "`endpoint` must list strings, not {}",
                        item.type_str()
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (!urls.is_empty()).then_some(urls)
        }
        other => {
            return Err(format!(
                "`endpoint` must be a string or an array of strings, not {}",
                other.type_str()
            ));
        }
    };
    urls.ok_or_else(|| "`endpoint` is empty".to_owned())
}

/// The URLs of a comma-separated list, trimmed, without empty items;
/// `None` when nothing is left.
fn url_list(text: &str) -> Option<Vec<String>> {
    let urls: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    (!urls.is_empty()).then_some(urls)
}

fn non_empty(value: Option<OsString>) -> Option<OsString> {
    value.filter(|v| !v.is_empty())
}

/// `path` with the home folder written `~`.
fn tilde(path: &Path, home: Option<&Path>) -> String {
    match home.and_then(|home| path.strip_prefix(home).ok()) {
        Some(rest) => Path::new("~").join(rest).display().to_string(),
        None => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// An environment holding only `vars`.
    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |name| vars.get(name).cloned()
    }

    /// A config folder with `daas/config.toml` holding `text`.
    fn config_dir(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::create_dir(dir.path().join("daas")).expect("the daas folder");
        std::fs::write(dir.path().join(CONFIG_FILE), text).expect("the config file");
        dir
    }

    fn flags(endpoint: Option<&str>, ca: Option<&str>) -> Values {
        Values {
            endpoints: endpoint.map(|url| vec![url.to_owned()]),
            ca: ca.map(PathBuf::from),
            ..Values::default()
        }
    }

    #[test]
    fn nothing_set_means_the_default_endpoint_and_no_files() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let xdg = dir.path().to_str().expect("a UTF-8 temp dir");
        let settings = resolve(Values::default(), &env_of(&[("XDG_CONFIG_HOME", xdg)]));
        let settings = settings.expect("no config file is fine");
        assert_eq!(settings.endpoints, [DEFAULT_ENDPOINT]);
        assert_eq!(
            (settings.ca, settings.cert, settings.key),
            (None, None, None)
        );
        assert_eq!(
            settings.config_hint,
            dir.path().join("daas/config.toml").display().to_string()
        );
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = config_dir(
            "endpoint = \"https://file:1\"\nca = \"file-ca.pem\"\n\
             cert = \"file-cert.pem\"\nkey = \"/abs/file-key.pem\"\n",
        );
        let xdg = dir.path().to_str().expect("a UTF-8 temp dir");
        let env = env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            ("DAAS_ENDPOINT", "https://env:1"),
            ("DAAS_CA", "env-ca.pem"),
            ("DAAS_CERT", "env-cert.pem"),
        ]);
        let settings = resolve(flags(Some("https://flag:1"), Some("flag-ca.pem")), &env)
            .expect("valid settings");
        assert_eq!(settings.endpoints, ["https://flag:1"]);
        assert_eq!(settings.ca, Some(PathBuf::from("flag-ca.pem")));
        assert_eq!(settings.cert, Some(PathBuf::from("env-cert.pem")));
        assert_eq!(settings.key, Some(PathBuf::from("/abs/file-key.pem")));

        let settings = resolve(Values::default(), &env).expect("valid settings");
        assert_eq!(settings.endpoints, ["https://env:1"]);
        assert_eq!(settings.ca, Some(PathBuf::from("env-ca.pem")));

        let settings = resolve(Values::default(), &env_of(&[("XDG_CONFIG_HOME", xdg)]))
            .expect("valid settings");
        assert_eq!(settings.endpoints, ["https://file:1"]);
        assert_eq!(settings.ca, Some(dir.path().join("daas/file-ca.pem")));
        assert_eq!(settings.cert, Some(dir.path().join("daas/file-cert.pem")));
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let dir = config_dir("ca = \"ca.pem\"\n");
        let xdg = dir.path().to_str().expect("a UTF-8 temp dir");
        let env = env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            ("DAAS_CA", ""),
            ("DAAS_ENDPOINT", ""),
        ]);
        let settings = resolve(Values::default(), &env).expect("valid settings");
        assert_eq!(settings.ca, Some(dir.path().join("daas/ca.pem")));
        assert_eq!(settings.endpoints, [DEFAULT_ENDPOINT]);
    }

    #[test]
    fn endpoint_lists_come_from_every_source() {
        let dir = config_dir("endpoint = [\"https://a:1\", \" https://b:1 \"]\n");
        let xdg = dir.path().to_str().expect("a UTF-8 temp dir");
        let settings = resolve(Values::default(), &env_of(&[("XDG_CONFIG_HOME", xdg)]));
        assert_eq!(
            settings.map(|s| s.endpoints).ok(),
            Some(vec!["https://a:1".to_owned(), "https://b:1".to_owned()])
        );
        // Commas in the environment (empty items dropped), and in the file.
        let env = env_of(&[
            ("XDG_CONFIG_HOME", xdg),
            ("DAAS_ENDPOINT", " https://c:1,, https://d:1 ,"),
        ]);
        let settings = resolve(Values::default(), &env);
        assert_eq!(
            settings.map(|s| s.endpoints).ok(),
            Some(vec!["https://c:1".to_owned(), "https://d:1".to_owned()])
        );
        let env = env_of(&[("XDG_CONFIG_HOME", xdg), ("DAAS_ENDPOINT", " , ")]);
        let settings = resolve(Values::default(), &env);
        assert_eq!(settings.map(|s| s.endpoints.len()).ok(), Some(2));
        let path = Path::new("/c/config.toml");
        let values = parse_config("endpoint = \"https://e:1, https://f:1\"\n", path);
        assert_eq!(
            values.ok().and_then(|v| v.endpoints),
            Some(vec!["https://e:1".to_owned(), "https://f:1".to_owned()])
        );
    }

    #[test]
    fn bad_endpoint_lists_are_explained() {
        let path = Path::new("/c/config.toml");
        let message = |text: &str| parse_config(text, path).err().map(|e| e.to_string());
        for (text, why) in [
            ("endpoint = []\n", "`endpoint` is empty"),
            ("endpoint = \" , \"\n", "`endpoint` is empty"),
            ("endpoint = [\"a\", \"\"]\n", "`endpoint` has an empty URL"),
            (
                "endpoint = [\"a\", 1]\n",
                "`endpoint` must list strings, not integer",
            ),
            (
                "endpoint = 1\n",
                "`endpoint` must be a string or an array of strings, not integer",
            ),
        ] {
            assert_eq!(
                message(text),
                Some(format!("invalid /c/config.toml: {why}")),
                "{text}"
            );
        }
    }

    #[test]
    fn the_config_file_is_under_xdg_config_home_else_home() {
        let path = config_path(&env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]));
        assert_eq!(path, Some(PathBuf::from("/x/daas/config.toml")));
        let path = config_path(&env_of(&[("HOME", "/h")]));
        assert_eq!(path, Some(PathBuf::from("/h/.config/daas/config.toml")));
        // A relative XDG_CONFIG_HOME is ignored, as the spec says.
        let path = config_path(&env_of(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/h")]));
        assert_eq!(path, Some(PathBuf::from("/h/.config/daas/config.toml")));
        assert_eq!(config_path(&env_of(&[])), None);
    }

    #[test]
    fn hints_name_the_file_under_home_with_a_tilde() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let home = dir.path().to_str().expect("a UTF-8 temp dir");
        let settings = resolve(Values::default(), &env_of(&[("HOME", home)]));
        assert_eq!(
            settings.map(|s| s.config_hint).ok().as_deref(),
            Some("~/.config/daas/config.toml")
        );
        let settings = resolve(Values::default(), &env_of(&[]));
        assert_eq!(
            settings.map(|s| s.config_hint).ok().as_deref(),
            Some(DEFAULT_CONFIG_HINT)
        );
    }

    #[test]
    fn relative_paths_in_the_file_are_relative_to_it() {
        let path = Path::new("/etc/daas/config.toml");
        let values = parse_config(
            "endpoint = \"https://d:50051\"\nca = \"pki/ca.pem\"\ncert = \"../c.pem\"\nkey = \"/k.pem\"\n",
            path,
        );
        assert_eq!(
            values.ok(),
            Some(Values {
                endpoints: Some(vec!["https://d:50051".to_owned()]),
                ca: Some(PathBuf::from("/etc/daas/pki/ca.pem")),
                cert: Some(PathBuf::from("/etc/daas/../c.pem")),
                key: Some(PathBuf::from("/k.pem")),
            })
        );
        assert_eq!(parse_config("", path).ok(), Some(Values::default()));
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let err = parse_config("ca = \"a\"\ncacert = \"b\"\n", Path::new("/c/config.toml"));
        assert_eq!(
            err.err().map(|e| e.to_string()),
            Some(
                "unknown key `cacert` in /c/config.toml (valid keys: endpoint, ca, cert, key)"
                    .to_owned()
            )
        );
        let err = parse_config("[tls]\nca = \"a\"\n", Path::new("/c/config.toml"));
        assert!(err.err().is_some_and(|e| {
            e.to_string()
                .starts_with("unknown key `tls` in /c/config.toml")
        }));
    }

    #[test]
    fn bad_values_and_syntax_are_explained() {
        let path = Path::new("/c/config.toml");
        let message = |text: &str| parse_config(text, path).err().map(|e| e.to_string());
        assert_eq!(
            message("ca = 3\n"),
            Some("invalid /c/config.toml: `ca` must be a string, not integer".to_owned())
        );
        assert_eq!(
            message("cert = \"\"\n"),
            Some("invalid /c/config.toml: `cert` is empty".to_owned())
        );
        let syntax = message("ca = \"a\"\nendpoint = \n").unwrap_or_default();
        assert!(
            syntax.starts_with("invalid /c/config.toml: line 2: "),
            "{syntax}"
        );
        assert!(!syntax.contains('\n'), "{syntax}");
    }

    #[test]
    fn a_bad_config_file_stops_resolution() {
        let dir = config_dir("endpont = \"https://typo:1\"\n");
        let xdg = dir.path().to_str().expect("a UTF-8 temp dir");
        let err = resolve(Values::default(), &env_of(&[("XDG_CONFIG_HOME", xdg)])).err();
        assert_eq!(err.as_ref().map(CliError::exit_code), Some(2));
        let file = dir.path().join("daas/config.toml");
        assert!(err.is_some_and(|e| {
            e.to_string()
                .contains(&format!("unknown key `endpont` in {}", file.display()))
        }));
    }

    #[test]
    fn an_unreadable_config_file_is_named() {
        // A folder where the file should be cannot be read as a file.
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::create_dir_all(dir.path().join(CONFIG_FILE)).expect("a folder");
        let err = read_config(&dir.path().join(CONFIG_FILE)).err();
        let file = dir.path().join(CONFIG_FILE);
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(format!("cannot read {}: Is a directory", file.display()))
        );
    }
}
