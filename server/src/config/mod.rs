//! Server configuration: built-in defaults, then a TOML file, then `DAAS_*`
//! environment variables (`__` separates sections:
//! `DAAS_LIMITS__MAX_PARALLEL_PROVISIONS=8`).
//!
//! Here: the checked [`Config`] and its sections, and loading it. The
//! shapes as written are in `raw`, the secrets the tools get in `secrets`,
//! the checks from one to the other in `check`; the sections with more to
//! them have their own files ([`policy`], [`pools`], [`schedule`], [`web`],
//! [`webhooks`]).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub mod catalog;
mod check;
pub mod orgs;
pub mod placement;
pub mod policy;
pub mod pools;
mod raw;
pub mod schedule;
pub mod scheduling;
mod secrets;
pub mod store;
pub mod web;
pub mod webhooks;

pub use secrets::{Secret, Secrets};

/// The configuration reference printed by `daas-server --help` (the
/// README shows the same text; a test keeps them equal).
pub const REFERENCE: &str = concat!(
    "Configuration (TOML file given with --config; every key can be overridden\n",
    "by DAAS_<SECTION>__<KEY>, e.g. DAAS_LIMITS__MAX_PARALLEL_PROVISIONS=8).\n",
    "Relative paths in the file are relative to the file. Durations read like\n",
    "\"90s\", \"20m\", \"1h\". Defaults:\n\n",
    include_str!("reference.toml")
);

/// Everything the server reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub http: Http,
    pub audit: AuditTrail,
    pub data_dir: PathBuf,
    /// The embedded SQLite file, unless `store` names a PostgreSQL.
    pub database: PathBuf,
    /// `[store]`: the PostgreSQL several servers share, if one is set.
    pub postgres: Option<store::Postgres>,
    /// `store.lease`: how long a server's hold on a session lasts.
    pub store_lease: Duration,
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
    /// Where READY, FAILED, IDLE_WARNING, DESTROYED, LOST and SCHEDULE_REFUSED are POSTed.
    pub webhooks: Vec<webhooks::Webhook>,
    /// The web portal for browsers; None: off.
    pub web: Option<web::Web>,
    /// Where desktops go on a cluster, and their VM ids.
    pub placement: placement::Placement,
    /// The templates a create may name, their sizes and who may use them.
    pub catalog: crate::domain::catalog::Catalog,
    /// Organisations: their members, administrators and quotas.
    pub orgs: crate::domain::orgs::Orgs,
    /// When users' schedules are acted on.
    pub schedules: scheduling::Scheduling,
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
    /// How long a warm pool's new desktop waits for its agent's first
    /// report before it is READY (zero: not at all).
    pub first_report_wait: Duration,
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

impl Ssh {
    /// Where the server makes its key when `ssh.private_key` is not set.
    pub fn made_key(data_dir: &std::path::Path) -> PathBuf {
        data_dir.join("ssh").join("id_ed25519")
    }
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

impl Ansible {
    /// Whether the playbook joins the desktops to a domain
    /// (`ad_join_domain` in `[ansible.extra_vars]`).
    pub fn joins_domain(&self) -> bool {
        self.extra_vars
            .get("ad_join_domain")
            .and_then(|v| v.as_str())
            .is_some_and(|d| !d.is_empty())
    }
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

impl Config {
    /// Loads defaults, then `file` (if given), then the `DAAS_*` variables of
    /// the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, Env::prefixed("DAAS_"))
    }

    fn load_with_env(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let env = env.split("__").filter(|key| {
            let section = key.as_str().split('.').next().unwrap_or_default();
            raw::SECTIONS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(section))
        });
        check::finish(Self::base(file)?.merge(env))
    }

    fn base(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(raw::Raw::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
            let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
            figment = figment.merge(Toml::file_exact(file));
        }
        Ok(figment)
    }

    /// Where session `id` keeps its Terraform working directory.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("sessions").join(id)
    }
}

#[cfg(test)]
mod tests;
