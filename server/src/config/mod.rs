//! Server configuration: built-in defaults, then a TOML file, then `DAAS_*`
//! environment variables (`__` separates sections:
//! `DAAS_LIMITS__MAX_PARALLEL_PROVISIONS=8`).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
    value::magic::RelativePathBuf,
};
use serde::{Deserialize, Serialize};

pub mod policy;
pub mod pools;
pub mod schedule;
pub mod web;
pub mod webhooks;

/// The configuration reference printed by `daas-server --help` (the
/// README shows the same text; a test keeps them equal).
pub const REFERENCE: &str = concat!(
    "Configuration (TOML file given with --config; every key can be overridden\n",
    "by DAAS_<SECTION>__<KEY>, e.g. DAAS_LIMITS__MAX_PARALLEL_PROVISIONS=8).\n",
    "Relative paths in the file are relative to the file. Durations read like\n",
    "\"90s\", \"20m\", \"1h\". Defaults:\n\n",
    include_str!("reference.toml")
);

/// The largest `limits.max_parallel_provisions` and `limits.max_streams`.
const MAX_LIMIT: usize = 1_000_000;

/// Everything the server reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub http: Http,
    pub audit: AuditTrail,
    pub data_dir: PathBuf,
    pub database: PathBuf,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub vm: VmDefaults,
    pub terraform: Terraform,
    pub boot: Boot,
    pub ssh: Ssh,
    pub ansible: Ansible,
    pub tls: Tls,
    pub auth: Auth,
    pub secrets: Secrets,
    pub agent: Agent,
    pub policies: policy::Policies,
    /// How often the reaper looks at READY sessions.
    pub reaper_interval: Duration,
    /// Warm pools, by name.
    pub pools: BTreeMap<String, pools::Pool>,
    /// Where READY, FAILED, IDLE_WARNING and DESTROYED are POSTed.
    pub webhooks: Vec<webhooks::Webhook>,
    /// The web portal for browsers; None: off.
    pub web: Option<web::Web>,
}

/// The HTTP side: health, readiness and metrics.
#[derive(Debug, Clone, Default)]
pub struct Http {
    /// Under the gRPC port's TLS and client-certificate rules; None: off.
    pub listen: Option<SocketAddr>,
    /// Plain HTTP on a loopback address, for a local Prometheus; None: off.
    pub metrics_listen: Option<SocketAddr>,
}

/// The audit trail: always in the store; also appended as JSON lines to
/// `file` when set (for a SIEM).
#[derive(Debug, Clone, Default)]
pub struct AuditTrail {
    pub file: Option<PathBuf>,
}

/// The in-VM agent: how it reaches the server and how it is credentialed.
#[derive(Debug, Clone)]
pub struct Agent {
    /// URL the agent inside a VM calls (e.g. https://10.0.2.2:50051); None:
    /// desktops get no agent credentials and report nothing.
    pub endpoint: Option<String>,
    /// Name the agent checks in the server's certificate, when the
    /// endpoint is an address the certificate does not name.
    pub tls_server_name: Option<String>,
    /// The daas-agent binary the playbook installs.
    pub binary: Option<PathBuf>,
    /// `agent.ca_cert` and `agent.ca_key` as given (see [`Agent::ca_files`]).
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// `tls.ca` (the dev PKI's with TLS off), where the defaults are.
    pub tls_ca: PathBuf,
    /// How often agents report.
    pub report_interval: Duration,
}

impl Agent {
    /// The CA that signs per-session agent certificates, and its key: as
    /// given, else the agents' CA beside `tls.ca` (`agents-ca.pem`, made by
    /// `pki init`) when it is there, else `tls.ca` itself (a PKI made
    /// before). Read when the server starts, after a dev PKI is made.
    pub fn ca_files(&self) -> (PathBuf, PathBuf) {
        let agents_ca = self.tls_ca.with_file_name("agents-ca.pem");
        let cert = self.ca_cert.clone().unwrap_or_else(|| {
            if agents_ca.exists() {
                agents_ca.clone()
            } else {
                self.tls_ca.clone()
            }
        });
        let key = self.ca_key.clone().unwrap_or_else(|| {
            let name = if cert == agents_ca {
                "agents-ca-key.pem"
            } else {
                "ca-key.pem"
            };
            self.tls_ca.with_file_name(name)
        });
        (cert, key)
    }
}

/// Transport security of the gRPC port.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Mutual TLS: the server's certificate and key, and the CA that signs
    /// client (user and agent) certificates.
    Mutual {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        /// Client certificates revoked (`daas-server pki revoke`); a missing
        /// file revokes nothing.
        revoked: PathBuf,
        /// Create the CA and certificates under `data_dir/pki` when missing.
        dev_pki: bool,
    },
    /// No TLS, no client identity: allowed on a loopback address only, and
    /// every caller is an administrator.
    Plaintext,
}

/// Who may do what.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// User names with the admin role (a certificate may also carry it).
    #[serde(default)]
    pub admins: Vec<String>,
}

/// A secret value: never printed, not even by `Debug`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "(none)"
        } else {
            "********"
        })
    }
}

/// Secrets for the tools, read at start from files or environment
/// variables the config names (never from the config itself).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Password of the account that joins desktops to the AD domain; given
    /// to Ansible as `ad_join_password`.
    pub ad_join_password: Option<Secret>,
    /// Proxmox API token id and secret; given to Terraform as
    /// `PM_API_TOKEN_ID` and `PM_API_TOKEN_SECRET`.
    pub proxmox_token_id: Option<String>,
    pub proxmox_token_secret: Option<Secret>,
    /// Password of `web.ldap.bind_user`, the account the portal reads the
    /// directory as to recheck signed-in users' groups.
    pub web_ldap_password: Option<Secret>,
}

impl Secrets {
    /// Every secret value, for masking tool output.
    /// The environment a Terraform provider (and the module's inventory)
    /// reads its credentials from: never a file, never a command line.
    pub fn provider_env(&self) -> Vec<(&'static str, &str)> {
        match (&self.proxmox_token_id, &self.proxmox_token_secret) {
            (Some(id), Some(secret)) => vec![
                ("PM_API_TOKEN_ID", id.as_str()),
                ("PM_API_TOKEN_SECRET", secret.expose()),
            ],
            _ => Vec::new(),
        }
    }

    pub fn values(&self) -> Vec<String> {
        [
            &self.ad_join_password,
            &self.proxmox_token_secret,
            &self.web_ldap_password,
        ]
        .into_iter()
        .flatten()
        .map(|s| s.expose().to_string())
        .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Creates that run at once; others wait QUEUED.
    pub max_parallel_provisions: usize,
    /// Live sessions (neither FAILED nor DESTROYED) on the server.
    pub max_sessions: usize,
    /// Live sessions per user.
    pub max_sessions_per_user: usize,
    /// Creates a user may start per minute (token bucket refill rate).
    pub creates_per_minute: u32,
    /// Creates a user may start at once before the rate applies.
    pub create_burst: u32,
    /// CreateSession and WatchSession streams open at once.
    pub max_streams: usize,
    /// Of which one user may hold this many.
    pub max_streams_per_user: usize,
    /// How long tool output lines are kept (stage changes stay forever).
    #[serde(with = "humantime_serde")]
    pub output_retention: Duration,
    /// How long audit entries are kept.
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDefaults {
    pub template: String,
    pub cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
}

#[derive(Debug, Clone)]
pub struct Terraform {
    pub module_dir: PathBuf,
    pub binary: PathBuf,
    pub plugin_cache_dir: PathBuf,
    pub init_timeout: Duration,
    pub apply_timeout: Duration,
    pub destroy_timeout: Duration,
    /// How often the sweeper asks the module's inventory for VMs nothing
    /// will destroy (and once at start).
    pub sweep_interval: Duration,
    pub variables: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Ssh {
    pub user: String,
    pub private_key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnsibleConnection {
    Ssh,
    Local,
}

#[derive(Debug, Clone)]
pub struct Ansible {
    pub binary: PathBuf,
    pub playbook: PathBuf,
    /// Run before `terraform destroy` of a configured VM.
    pub teardown_playbook: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub connection: AnsibleConnection,
    pub timeout: Duration,
    pub extra_vars: BTreeMap<String, serde_json::Value>,
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(String),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        // One line per problem, each naming the key and where it came from.
        let lines: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        ConfigError::Invalid(lines.join("; "))
    }
}

// ---- what the file and the environment provide (paths still relative) ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: String,
    http: RawHttp,
    audit: RawAudit,
    data_dir: RelativePathBuf,
    database: Option<RelativePathBuf>,
    log_format: LogFormat,
    limits: Limits,
    vm: VmDefaults,
    terraform: RawTerraform,
    boot: Boot,
    ssh: RawSsh,
    ansible: RawAnsible,
    tls: RawTls,
    auth: Auth,
    secrets: RawSecrets,
    agent: RawAgent,
    policy: RawPolicy,
    #[serde(default)]
    pools: BTreeMap<String, pools::PoolSpec>,
    #[serde(default)]
    webhooks: Vec<webhooks::WebhookSpec>,
    #[serde(default)]
    web: web::WebSpec,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    file: Option<RelativePathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    metrics_listen: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    endpoint: String,
    tls_server_name: String,
    binary: Option<RelativePathBuf>,
    ca_cert: Option<RelativePathBuf>,
    ca_key: Option<RelativePathBuf>,
    #[serde(with = "humantime_serde")]
    report_interval: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    disconnected_timeout: Duration,
    #[serde(with = "humantime_serde")]
    max_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    agent_lost_timeout: Duration,
    #[serde(with = "humantime_serde")]
    warning: Duration,
    #[serde(with = "humantime_serde")]
    reaper_interval: Duration,
    #[serde(default)]
    templates: BTreeMap<String, policy::PolicyOverride>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    plaintext: bool,
    dev_pki: bool,
    ca: Option<RelativePathBuf>,
    cert: Option<RelativePathBuf>,
    key: Option<RelativePathBuf>,
    revoked: Option<RelativePathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    ad_join_password_file: Option<RelativePathBuf>,
    ad_join_password_env: Option<String>,
    proxmox_token_id: Option<String>,
    proxmox_token_secret_file: Option<RelativePathBuf>,
    proxmox_token_secret_env: Option<String>,
    web_ldap_password_file: Option<RelativePathBuf>,
    web_ldap_password_env: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerraform {
    module_dir: RelativePathBuf,
    binary: RelativePathBuf,
    plugin_cache_dir: Option<RelativePathBuf>,
    #[serde(with = "humantime_serde")]
    init_timeout: Duration,
    #[serde(with = "humantime_serde")]
    apply_timeout: Duration,
    #[serde(with = "humantime_serde")]
    destroy_timeout: Duration,
    #[serde(with = "humantime_serde")]
    sweep_interval: Duration,
    #[serde(default)]
    variables: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    user: String,
    private_key: Option<RelativePathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnsible {
    binary: RelativePathBuf,
    playbook: RelativePathBuf,
    #[serde(default)]
    teardown_playbook: Option<RelativePathBuf>,
    #[serde(default)]
    config: Option<RelativePathBuf>,
    connection: AnsibleConnection,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    #[serde(default)]
    extra_vars: BTreeMap<String, serde_json::Value>,
}

impl Default for Raw {
    fn default() -> Self {
        let mins = |m: u64| Duration::from_secs(60 * m);
        Raw {
            listen: "127.0.0.1:50051".into(),
            http: RawHttp::default(),
            audit: RawAudit::default(),
            data_dir: PathBuf::from("/var/lib/daas").into(),
            database: None,
            log_format: LogFormat::Text,
            limits: Limits {
                max_parallel_provisions: 4,
                max_sessions: 50,
                max_sessions_per_user: 2,
                creates_per_minute: 6,
                create_burst: 3,
                max_streams: 1000,
                max_streams_per_user: 32,
                output_retention: Duration::from_secs(14 * 86_400),
                audit_retention: Duration::from_secs(400 * 86_400),
            },
            vm: VmDefaults {
                template: "debian-12-xfce".into(),
                cores: 2,
                memory_mb: 4096,
                disk_gb: 20,
            },
            terraform: RawTerraform {
                module_dir: PathBuf::from("terraform/qemu").into(),
                binary: PathBuf::from("terraform").into(),
                plugin_cache_dir: None,
                init_timeout: mins(5),
                apply_timeout: mins(20),
                destroy_timeout: mins(10),
                sweep_interval: mins(5),
                variables: BTreeMap::new(),
            },
            boot: Boot { timeout: mins(10) },
            ssh: RawSsh {
                user: "daas".into(),
                private_key: None,
            },
            ansible: RawAnsible {
                binary: PathBuf::from("ansible-playbook").into(),
                playbook: PathBuf::from("ansible/playbooks/deploy-desktop.yml").into(),
                teardown_playbook: None,
                config: None,
                connection: AnsibleConnection::Ssh,
                timeout: mins(30),
                extra_vars: BTreeMap::new(),
            },
            tls: RawTls {
                plaintext: false,
                dev_pki: false,
                ca: None,
                cert: None,
                key: None,
                revoked: None,
            },
            auth: Auth::default(),
            secrets: RawSecrets::default(),
            agent: RawAgent {
                endpoint: String::new(),
                tls_server_name: String::new(),
                binary: None,
                ca_cert: None,
                ca_key: None,
                report_interval: Duration::from_secs(30),
            },
            policy: {
                let p = policy::Policy::default();
                RawPolicy {
                    idle_timeout: p.idle_timeout,
                    disconnected_timeout: p.disconnected_timeout,
                    max_lifetime: p.max_lifetime,
                    agent_lost_timeout: p.agent_lost_timeout,
                    warning: p.warning,
                    reaper_interval: Duration::from_secs(15),
                    templates: BTreeMap::new(),
                }
            },
            pools: BTreeMap::new(),
            webhooks: Vec::new(),
            web: web::WebSpec::default(),
        }
    }
}

const SECTIONS: &[&str] = &[
    "listen",
    "http",
    "audit",
    "data_dir",
    "database",
    "log_format",
    "limits",
    "vm",
    "terraform",
    "boot",
    "ssh",
    "ansible",
    "tls",
    "auth",
    "secrets",
    "agent",
    "policy",
    "pools",
    "webhooks",
    "web",
];

/// Reads one secret from the file or the environment variable named.
fn load_secret(
    key: &str,
    file: &Option<RelativePathBuf>,
    env: &Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(format!("`secrets.{key}_*`: {why}"));
    // An empty value means "not set", as in the reference.
    let file = file
        .as_ref()
        .filter(|f| !f.original().as_os_str().is_empty());
    let env = env.as_ref().filter(|e| !e.is_empty());
    let value = match (file, env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "set either the _file or the _env key, not both".into(),
            ));
        }
        (Some(file), None) => {
            let file = path(file);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(&file)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(file = %file.display(), "a secret file is readable by others; chmod 600 it");
            }
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, Some(var)) => std::env::var(var)
            .map_err(|_| invalid(format!("the environment variable {var} is not set")))?,
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(invalid("the secret is empty".into()));
    }
    Ok(Some(Secret(value)))
}

fn load_secrets(raw: &RawSecrets) -> Result<Secrets, ConfigError> {
    let secrets = Secrets {
        ad_join_password: load_secret(
            "ad_join_password",
            &raw.ad_join_password_file,
            &raw.ad_join_password_env,
        )?,
        proxmox_token_id: raw.proxmox_token_id.clone().filter(|s| !s.is_empty()),
        proxmox_token_secret: load_secret(
            "proxmox_token_secret",
            &raw.proxmox_token_secret_file,
            &raw.proxmox_token_secret_env,
        )?,
        web_ldap_password: load_secret(
            "web_ldap_password",
            &raw.web_ldap_password_file,
            &raw.web_ldap_password_env,
        )?,
    };
    if secrets.proxmox_token_secret.is_some() != secrets.proxmox_token_id.is_some() {
        return Err(ConfigError::Invalid(
            "`secrets.proxmox_token_id`: set it together with the token secret".into(),
        ));
    }
    Ok(secrets)
}

/// A path from the file (relative to the file) or the environment
/// (relative to the working directory), made absolute: tools run in other
/// directories.
fn path(value: &RelativePathBuf) -> PathBuf {
    let path = value.relative();
    std::path::absolute(&path).unwrap_or(path)
}

/// A program: a bare name is looked up on PATH, a path resolved as [`path`].
fn program(value: &RelativePathBuf) -> PathBuf {
    if value.original().components().count() == 1 {
        value.original().to_path_buf()
    } else {
        path(value)
    }
}

impl Config {
    /// Loads defaults, then `file` (if given), then the `DAAS_*` variables of
    /// the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, Env::prefixed("DAAS_"))
    }

    fn load_with_env(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let env = env.split("__").filter(|key| {
            let section = key.as_str().split('.').next().unwrap_or_default();
            SECTIONS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(section))
        });
        Self::finish(Self::base(file)?.merge(env))
    }

    fn base(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Raw::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
            let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
            figment = figment.merge(Toml::file_exact(file));
        }
        Ok(figment)
    }

    fn finish(figment: Figment) -> Result<Config, ConfigError> {
        let raw: Raw = figment.extract()?;
        let invalid = |key: &str, why: &str| ConfigError::Invalid(format!("`{key}`: {why}"));
        let listen: SocketAddr = raw
            .listen
            .parse()
            .map_err(|_| invalid("listen", "expected an address such as 127.0.0.1:50051"))?;
        let optional_addr = |key: &str, text: &str| -> Result<Option<SocketAddr>, ConfigError> {
            if text.is_empty() {
                return Ok(None);
            }
            text.parse().map(Some).map_err(|_| {
                invalid(
                    key,
                    "expected an address such as 127.0.0.1:50052, or \"\" for none",
                )
            })
        };
        let http = Http {
            listen: optional_addr("http.listen", &raw.http.listen)?,
            metrics_listen: optional_addr("http.metrics_listen", &raw.http.metrics_listen)?,
        };
        if let Some(addr) = http.metrics_listen.filter(|a| !a.ip().is_loopback()) {
            return Err(invalid(
                "http.metrics_listen",
                &format!(
                    "is plain HTTP without authentication: a loopback address only, not {addr}"
                ),
            ));
        }
        for (key, value) in [
            (
                "limits.max_parallel_provisions",
                raw.limits.max_parallel_provisions,
            ),
            ("limits.max_sessions", raw.limits.max_sessions),
            (
                "limits.max_sessions_per_user",
                raw.limits.max_sessions_per_user,
            ),
            (
                "limits.creates_per_minute",
                raw.limits.creates_per_minute as usize,
            ),
            ("limits.create_burst", raw.limits.create_burst as usize),
            ("limits.max_streams", raw.limits.max_streams),
            (
                "limits.max_streams_per_user",
                raw.limits.max_streams_per_user,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        // Semaphores count these: bounded so the server cannot panic at start.
        for (key, value) in [
            (
                "limits.max_parallel_provisions",
                raw.limits.max_parallel_provisions,
            ),
            ("limits.max_streams", raw.limits.max_streams),
        ] {
            if value > MAX_LIMIT {
                return Err(invalid(key, &format!("must be at most {MAX_LIMIT}")));
            }
        }
        for (i, admin) in raw.auth.admins.iter().enumerate() {
            if crate::domain::validate::account_name("admin", admin).is_err() {
                return Err(invalid(
                    &format!("auth.admins[{i}]"),
                    "is not a valid user name",
                ));
            }
        }
        for (key, value) in [
            ("vm.cores", raw.vm.cores),
            ("vm.memory_mb", raw.vm.memory_mb),
            ("vm.disk_gb", raw.vm.disk_gb),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if crate::domain::validate::template(&raw.vm.template).is_err() {
            return Err(invalid(
                "vm.template",
                "letters, digits, '.', '_' and '-' only, at most 64",
            ));
        }
        for (key, timeout) in [
            ("terraform.init_timeout", raw.terraform.init_timeout),
            ("terraform.apply_timeout", raw.terraform.apply_timeout),
            ("terraform.destroy_timeout", raw.terraform.destroy_timeout),
            ("terraform.sweep_interval", raw.terraform.sweep_interval),
            ("limits.output_retention", raw.limits.output_retention),
            ("limits.audit_retention", raw.limits.audit_retention),
            ("boot.timeout", raw.boot.timeout),
            ("ansible.timeout", raw.ansible.timeout),
        ] {
            if timeout.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if raw.ssh.user.is_empty() {
            return Err(invalid("ssh.user", "must not be empty"));
        }
        for key in raw.terraform.variables.keys() {
            if crate::domain::contract::CONTRACT_VARIABLES.contains(&key.as_str()) {
                return Err(invalid(
                    &format!("terraform.variables.{key}"),
                    "is a contract variable the server sets itself",
                ));
            }
        }
        let data_dir = path(&raw.data_dir);
        let module_dir = path(&raw.terraform.module_dir);
        if !module_dir.is_dir() {
            return Err(invalid(
                "terraform.module_dir",
                &format!("{} is not a directory", module_dir.display()),
            ));
        }
        let playbook = path(&raw.ansible.playbook);
        let teardown_playbook = raw
            .ansible
            .teardown_playbook
            .as_ref()
            .filter(|p| !p.original().as_os_str().is_empty())
            .map(path);
        if let Some(file) = &teardown_playbook
            && !file.is_file()
        {
            return Err(invalid(
                "ansible.teardown_playbook",
                &format!("{} is not a file", file.display()),
            ));
        }
        if !playbook.is_file() {
            return Err(invalid(
                "ansible.playbook",
                &format!("{} is not a file", playbook.display()),
            ));
        }
        let tls = if raw.tls.plaintext {
            for addr in std::iter::once(listen).chain(http.listen) {
                if !addr.ip().is_loopback() {
                    return Err(invalid(
                        "tls.plaintext",
                        &format!(
                            "is allowed only on loopback addresses, not {addr}: use mutual TLS"
                        ),
                    ));
                }
            }
            Tls::Plaintext
        } else {
            let pki = data_dir.join("pki");
            let pick = |value: &Option<RelativePathBuf>, default: &str| {
                value
                    .as_ref()
                    .map(path)
                    .unwrap_or_else(|| pki.join(default))
            };
            let ca = pick(&raw.tls.ca, "ca.pem");
            let revoked = raw
                .tls
                .revoked
                .as_ref()
                .filter(|p| !p.original().as_os_str().is_empty())
                .map(path)
                .unwrap_or_else(|| ca.with_file_name(crate::pki::revoked::FILE_NAME));
            let tls = Tls::Mutual {
                ca,
                cert: pick(&raw.tls.cert, "server.pem"),
                key: pick(&raw.tls.key, "server-key.pem"),
                revoked,
                dev_pki: raw.tls.dev_pki,
            };
            if let Tls::Mutual {
                ca,
                cert,
                key,
                dev_pki: false,
                ..
            } = &tls
            {
                for (name, file) in [("tls.ca", ca), ("tls.cert", cert), ("tls.key", key)] {
                    if !file.is_file() {
                        return Err(invalid(
                            name,
                            &format!(
                                "{} does not exist (create a PKI with `daas-server pki init`, \
                                 or set tls.dev_pki = true for a local trial)",
                                file.display()
                            ),
                        ));
                    }
                }
            }
            tls
        };
        let secrets = load_secrets(&raw.secrets)?;
        let policy = &raw.policy;
        for (key, value) in [
            ("policy.idle_timeout", policy.idle_timeout),
            ("policy.disconnected_timeout", policy.disconnected_timeout),
            ("policy.max_lifetime", policy.max_lifetime),
            ("policy.agent_lost_timeout", policy.agent_lost_timeout),
            ("policy.reaper_interval", policy.reaper_interval),
            ("agent.report_interval", raw.agent.report_interval),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        for (key, timeout) in [
            ("policy.idle_timeout", policy.idle_timeout),
            ("policy.disconnected_timeout", policy.disconnected_timeout),
            ("policy.max_lifetime", policy.max_lifetime),
            ("policy.agent_lost_timeout", policy.agent_lost_timeout),
        ] {
            if policy.warning >= timeout {
                return Err(invalid(
                    "policy.warning",
                    &format!("must be shorter than {key}, or the warning comes at once"),
                ));
            }
        }
        let agent_endpoint = Some(raw.agent.endpoint.clone()).filter(|e| !e.is_empty());
        if let Some(endpoint) = &agent_endpoint
            && !endpoint.starts_with("https://")
            && !endpoint.starts_with("http://")
        {
            return Err(invalid(
                "agent.endpoint",
                "must be a URL such as https://10.0.2.2:50051",
            ));
        }
        let tls_ca = match &tls {
            Tls::Mutual { ca, .. } => ca.clone(),
            Tls::Plaintext => data_dir.join("pki").join("ca.pem"),
        };
        let given = |p: &Option<RelativePathBuf>| {
            p.as_ref()
                .filter(|p| !p.original().as_os_str().is_empty())
                .map(path)
        };
        let (ca_cert, ca_key) = (given(&raw.agent.ca_cert), given(&raw.agent.ca_key));
        let agent = Agent {
            endpoint: agent_endpoint,
            tls_server_name: Some(raw.agent.tls_server_name.clone()).filter(|s| !s.is_empty()),
            binary: raw
                .agent
                .binary
                .as_ref()
                .filter(|b| !b.original().as_os_str().is_empty())
                .map(path),
            ca_cert,
            ca_key,
            tls_ca,
            report_interval: raw.agent.report_interval,
        };
        let policies = policy::Policies {
            default: policy::Policy {
                idle_timeout: policy.idle_timeout,
                disconnected_timeout: policy.disconnected_timeout,
                max_lifetime: policy.max_lifetime,
                agent_lost_timeout: policy.agent_lost_timeout,
                warning: policy.warning,
            },
            templates: raw.policy.templates.clone(),
        };
        let mut pools = BTreeMap::new();
        for (name, spec) in &raw.pools {
            let pool = pools::Pool::check(name, spec, &raw.vm.template)
                .map_err(|why| invalid(&format!("pools.{name}"), &why))?;
            pools.insert(name.clone(), pool);
        }
        let webhooks = webhooks::check_all(&raw.webhooks)
            .map_err(|err| ConfigError::Invalid(err.to_string()))?;
        let web = web::check(&raw.web).map_err(ConfigError::Invalid)?;
        if let Some(web) = &web
            && web.ldap.bind_user.is_some() != secrets.web_ldap_password.is_some()
        {
            return Err(invalid(
                "web.ldap.bind_user",
                "and secrets.web_ldap_password_file (or _env) go together: the account the portal rechecks signed-in users' groups as",
            ));
        }
        if let (Tls::Plaintext, Some(web)) = (&tls, &web)
            && !web.listen.ip().is_loopback()
        {
            return Err(invalid(
                "web.listen",
                &format!(
                    "is plain HTTP when tls.plaintext = true: a loopback address only, not {}",
                    web.listen
                ),
            ));
        }
        Ok(Config {
            web,
            pools,
            webhooks,
            agent,
            policies,
            reaper_interval: raw.policy.reaper_interval,
            listen,
            http,
            audit: AuditTrail {
                file: raw
                    .audit
                    .file
                    .as_ref()
                    // "" as written: off (resolved, it would be the file's dir).
                    .filter(|p| !p.original().as_os_str().is_empty())
                    .map(path),
            },
            tls,
            auth: raw.auth,
            secrets,
            database: raw
                .database
                .map(|p| path(&p))
                .unwrap_or_else(|| data_dir.join("daas.sqlite3")),
            log_format: raw.log_format,
            limits: raw.limits,
            vm: raw.vm,
            terraform: Terraform {
                module_dir,
                binary: program(&raw.terraform.binary),
                plugin_cache_dir: raw
                    .terraform
                    .plugin_cache_dir
                    .map(|p| path(&p))
                    .unwrap_or_else(|| data_dir.join("terraform-plugins")),
                init_timeout: raw.terraform.init_timeout,
                apply_timeout: raw.terraform.apply_timeout,
                destroy_timeout: raw.terraform.destroy_timeout,
                sweep_interval: raw.terraform.sweep_interval,
                variables: raw.terraform.variables,
            },
            boot: raw.boot,
            ssh: Ssh {
                user: raw.ssh.user,
                private_key: raw
                    .ssh
                    .private_key
                    .map(|p| path(&p))
                    .unwrap_or_else(|| data_dir.join("ssh").join("id_ed25519")),
            },
            ansible: Ansible {
                binary: program(&raw.ansible.binary),
                playbook,
                teardown_playbook,
                config: raw
                    .ansible
                    .config
                    .filter(|p| !p.original().as_os_str().is_empty())
                    .map(|p| path(&p)),
                connection: raw.ansible.connection,
                timeout: raw.ansible.timeout,
                extra_vars: raw.ansible.extra_vars,
            },
            data_dir,
        })
    }

    /// Where session `id` keeps its Terraform working directory.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("sessions").join(id)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API returns figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    fn with_layout(jail: &mut Jail) -> figment::error::Result<()> {
        std::fs::create_dir_all(jail.directory().join("etc/modules/test"))
            .map_err(|e| e.to_string())?;
        jail.create_file("etc/play.yml", "---\n")?;
        Ok(())
    }

    fn error_of(result: Result<Config, ConfigError>) -> String {
        match result {
            Ok(_) => panic!("the config was accepted"),
            Err(err) => err.to_string(),
        }
    }

    const GOOD: &str = r#"
        data_dir = "data"
        [limits]
        max_parallel_provisions = 3
        [terraform]
        module_dir = "modules/test"
        binary = "bin/terraform"
        [terraform.variables]
        target_node = "pve1"
        [ansible]
        playbook = "play.yml"
        timeout = "90s"
        [tls]
        plaintext = true
    "#;

    #[test]
    fn file_then_environment_with_paths_relative_to_the_file() {
        Jail::expect_with(|jail| {
            with_layout(jail)?;
            jail.create_file("etc/daas.toml", GOOD)?;
            jail.set_env("DAAS_LIMITS__MAX_PARALLEL_PROVISIONS", "8");
            jail.set_env("DAAS_ENDPOINT", "http://elsewhere:1");
            let config =
                Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
            let etc = jail.directory().join("etc");
            assert_eq!(
                config.limits.max_parallel_provisions, 8,
                "the environment wins"
            );
            assert_eq!(config.data_dir, etc.join("data"));
            assert_eq!(config.database, etc.join("data/daas.sqlite3"));
            assert_eq!(config.terraform.module_dir, etc.join("modules/test"));
            assert_eq!(config.terraform.binary, etc.join("bin/terraform"));
            assert_eq!(config.ansible.binary, PathBuf::from("ansible-playbook"));
            assert_eq!(config.ansible.timeout, Duration::from_secs(90));
            assert_eq!(config.terraform.variables["target_node"], "pve1");
            assert_eq!(config.ssh.private_key, etc.join("data/ssh/id_ed25519"));
            assert!(matches!(config.tls, Tls::Plaintext));
            assert_eq!(config.audit.file, None, "off by default");
            Ok(())
        });
    }

    #[test]
    fn the_audit_file_is_off_when_empty_and_relative_to_the_file() {
        Jail::expect_with(|jail| {
            with_layout(jail)?;
            jail.create_file("etc/daas.toml", &format!("{GOOD}\n[audit]\nfile = \"\"\n"))?;
            let config =
                Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.audit.file, None);
            let text = format!("{GOOD}\n[audit]\nfile = \"log/audit.jsonl\"\n");
            jail.create_file("etc/daas.toml", &text)?;
            let config =
                Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
            let etc = jail.directory().join("etc");
            assert_eq!(config.audit.file, Some(etc.join("log/audit.jsonl")));
            Ok(())
        });
    }

    #[test]
    fn secrets_come_from_files_or_the_environment_and_never_print() {
        Jail::expect_with(|jail| {
            with_layout(jail)?;
            jail.create_file("etc/ad-password", "Join-Me-42\n")?;
            jail.set_env("PM_SECRET_FOR_TEST", "tok-7f3a");
            let text = format!(
                "{GOOD}\n[secrets]\nad_join_password_file = \"ad-password\"\n\
                 proxmox_token_id = \"daas@pve!daas\"\n\
                 proxmox_token_secret_env = \"PM_SECRET_FOR_TEST\"\n"
            );
            jail.create_file("etc/daas.toml", &text)?;
            let config =
                Config::load(Some(Path::new("etc/daas.toml"))).map_err(|e| e.to_string())?;
            let secrets = &config.secrets;
            assert_eq!(
                secrets.ad_join_password.as_ref().map(Secret::expose),
                Some("Join-Me-42")
            );
            assert_eq!(
                secrets.proxmox_token_secret.as_ref().map(Secret::expose),
                Some("tok-7f3a")
            );
            let printed = format!("{config:?}");
            assert!(
                !printed.contains("Join-Me-42") && !printed.contains("tok-7f3a"),
                "{printed}"
            );
            Ok(())
        });
    }

    #[test]
    fn the_readme_shows_the_reference_of_help() {
        let readme = include_str!("../../../README.md");
        assert!(readme.contains(include_str!("reference.toml")));
    }

    #[test]
    fn mistakes_name_the_key() {
        Jail::expect_with(|jail| {
            with_layout(jail)?;
            let cases = [
                ("[limits]\nmax_paralel = 3", "max_paralel"),
                (
                    "[limits]\nmax_parallel_provisions = \"many\"",
                    "max_parallel_provisions",
                ),
                (
                    "[limits]\nmax_parallel_provisions = 0",
                    "limits.max_parallel_provisions",
                ),
                ("listen = \"nowhere\"", "listen"),
                ("[ansible]\ntimeout = \"soon\"", "timeout"),
                (
                    "[terraform]\nmodule_dir = \"missing\"",
                    "terraform.module_dir",
                ),
                (
                    "[terraform.variables]\nslot = 3",
                    "terraform.variables.slot",
                ),
                ("[vm]\ntemplate = \"../x\"", "vm.template"),
                ("[limits]\nmax_sessions = 0", "limits.max_sessions"),
                (
                    "[policy]\nwarning = \"10m\"\nagent_lost_timeout = \"10m\"",
                    "policy.warning",
                ),
                (
                    "[policy]\nwarning = \"10m\"\nagent_lost_timeout = \"10m\"",
                    "policy.warning",
                ),
                ("[auth]\nadmins = [\"a/b\"]", "auth.admins[0]"),
                ("listen = \"0.0.0.0:1\"", "tls.plaintext"),
                ("[http]\nlisten = \"0.0.0.0:9\"", "tls.plaintext"),
                ("[http]\nlisten = \"here\"", "http.listen"),
                (
                    "[http]\nmetrics_listen = \"0.0.0.0:9\"",
                    "http.metrics_listen",
                ),
                (
                    "[secrets]\nad_join_password_env = \"DAAS_TEST_NO_SUCH_VAR\"",
                    "DAAS_TEST_NO_SUCH_VAR",
                ),
                (
                    "[[webhooks]]\nurl = \"https://x/\"\nformat = \"slack\"\nevents = [\"READDY\"]",
                    "webhooks[0].events",
                ),
                (
                    "[[webhooks]]\nurl = \"https://x/\"",
                    "webhooks[0].secret_file",
                ),
            ];
            for (bad, key) in cases {
                let text = format!(
                    "{bad}\n{}",
                    if bad.starts_with("[terraform]") {
                        ""
                    } else {
                        "[terraform]\nmodule_dir = \"modules/test\""
                    }
                );
                let text = if bad.starts_with("[ansible]") {
                    format!("{text}\nplaybook = \"play.yml\"")
                } else {
                    format!("{text}\n[ansible]\nplaybook = \"play.yml\"")
                };
                let text = format!("{text}\n[tls]\nplaintext = true\n");
                jail.create_file("etc/daas.toml", &text)?;
                let result = Config::load(Some(Path::new("etc/daas.toml")));
                assert!(result.is_err(), "{bad:?} was accepted");
                let err = error_of(result);
                assert!(err.contains(key), "{bad:?} -> {err}");
            }
            jail.create_file(
                "etc/daas.toml",
                "[terraform]\nmodule_dir = \"modules/test\"\n[ansible]\nplaybook = \"play.yml\"\n",
            )?;
            let err = error_of(Config::load(Some(Path::new("etc/daas.toml"))));
            assert!(err.contains("tls.ca") && err.contains("pki init"), "{err}");
            let err = error_of(Config::load(Some(Path::new("etc/absent.toml"))));
            assert!(err.contains("etc/absent.toml does not exist"), "{err}");
            Ok(())
        });
    }
}
