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

/// The configuration reference printed by `daas-server --help`.
pub const REFERENCE: &str = "\
Configuration (TOML file given with --config; every key can be overridden by an
environment variable DAAS_<SECTION>__<KEY>, e.g. DAAS_LIMITS__MAX_PARALLEL_PROVISIONS=8).
Relative paths in the file are relative to the file; in the environment, to the
working directory. Durations read like \"90s\", \"20m\", \"1h\".

  listen = \"127.0.0.1:50051\"     gRPC address (port 0: any free port)
  data_dir = \"/var/lib/daas\"     sessions' Terraform dirs, SSH key, database
  database = \"<data_dir>/daas.sqlite3\"
  log_format = \"text\"            or \"json\"

  [limits]
  max_parallel_provisions = 4    creates that run at once; others wait QUEUED

  [vm]                           defaults passed to the Terraform module
  template = \"debian-12-xfce\"    used when a request names none
  cores = 2
  memory_mb = 4096
  disk_gb = 20

  [terraform]
  module_dir = \"terraform/qemu\"  module implementing the provisioning contract
  binary = \"terraform\"
  plugin_cache_dir = \"<data_dir>/terraform-plugins\"
  init_timeout = \"5m\"
  apply_timeout = \"20m\"
  destroy_timeout = \"10m\"
  [terraform.variables]          extra module variables (e.g. Proxmox node)

  [boot]
  timeout = \"10m\"                SSH reachable and cloud-init done

  [ssh]
  user = \"daas\"                  login the module's cloud-init creates
  private_key = \"<data_dir>/ssh/id_ed25519\"   generated when missing

  [ansible]
  binary = \"ansible-playbook\"
  playbook = \"ansible/playbooks/deploy-desktop.yml\"
  config = \"\"                    ANSIBLE_CONFIG for the run (empty: Ansible's own)
  connection = \"ssh\"             \"local\" runs the playbook on this machine (tests)
  timeout = \"30m\"
  [ansible.extra_vars]           extra variables for every run
";

/// Everything the server reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: PathBuf,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub vm: VmDefaults,
    pub terraform: Terraform,
    pub boot: Boot,
    pub ssh: Ssh,
    pub ansible: Ansible,
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
    pub max_parallel_provisions: usize,
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
    data_dir: RelativePathBuf,
    database: Option<RelativePathBuf>,
    log_format: LogFormat,
    limits: Limits,
    vm: VmDefaults,
    terraform: RawTerraform,
    boot: Boot,
    ssh: RawSsh,
    ansible: RawAnsible,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerraform {
    module_dir: RelativePathBuf,
    binary: String,
    plugin_cache_dir: Option<RelativePathBuf>,
    #[serde(with = "humantime_serde")]
    init_timeout: Duration,
    #[serde(with = "humantime_serde")]
    apply_timeout: Duration,
    #[serde(with = "humantime_serde")]
    destroy_timeout: Duration,
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
    binary: String,
    playbook: RelativePathBuf,
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
            data_dir: PathBuf::from("/var/lib/daas").into(),
            database: None,
            log_format: LogFormat::Text,
            limits: Limits {
                max_parallel_provisions: 4,
            },
            vm: VmDefaults {
                template: "debian-12-xfce".into(),
                cores: 2,
                memory_mb: 4096,
                disk_gb: 20,
            },
            terraform: RawTerraform {
                module_dir: PathBuf::from("terraform/qemu").into(),
                binary: "terraform".into(),
                plugin_cache_dir: None,
                init_timeout: mins(5),
                apply_timeout: mins(20),
                destroy_timeout: mins(10),
                variables: BTreeMap::new(),
            },
            boot: Boot { timeout: mins(10) },
            ssh: RawSsh {
                user: "daas".into(),
                private_key: None,
            },
            ansible: RawAnsible {
                binary: "ansible-playbook".into(),
                playbook: PathBuf::from("ansible/playbooks/deploy-desktop.yml").into(),
                config: None,
                connection: AnsibleConnection::Ssh,
                timeout: mins(30),
                extra_vars: BTreeMap::new(),
            },
        }
    }
}

const SECTIONS: &[&str] = &[
    "listen",
    "data_dir",
    "database",
    "log_format",
    "limits",
    "vm",
    "terraform",
    "boot",
    "ssh",
    "ansible",
];

impl Config {
    /// Loads defaults, then `file` (if given), then the `DAAS_*` variables of
    /// the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(file, Env::prefixed("DAAS_"))
    }

    /// Like [`Config::load`], with another environment (for tests).
    pub fn load_with_env(file: Option<&Path>, env: Env) -> Result<Config, ConfigError> {
        let env = env
            .split("__")
            .filter(|key| SECTIONS.contains(&key.as_str().split('.').next().unwrap_or_default()));
        Self::finish(Self::base(file)?.merge(env))
    }

    fn base(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Raw::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
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
        if raw.limits.max_parallel_provisions == 0 {
            return Err(invalid(
                "limits.max_parallel_provisions",
                "must be at least 1",
            ));
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
        if crate::validate::template(&raw.vm.template).is_err() {
            return Err(invalid(
                "vm.template",
                "letters, digits, '.', '_' and '-' only, at most 64",
            ));
        }
        for (key, timeout) in [
            ("terraform.init_timeout", raw.terraform.init_timeout),
            ("terraform.apply_timeout", raw.terraform.apply_timeout),
            ("terraform.destroy_timeout", raw.terraform.destroy_timeout),
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
            if crate::terraform::CONTRACT_VARIABLES.contains(&key.as_str()) {
                return Err(invalid(
                    &format!("terraform.variables.{key}"),
                    "is a contract variable the server sets itself",
                ));
            }
        }
        let data_dir = raw.data_dir.relative();
        let module_dir = raw.terraform.module_dir.relative();
        if !module_dir.is_dir() {
            return Err(invalid(
                "terraform.module_dir",
                &format!("{} is not a directory", module_dir.display()),
            ));
        }
        let playbook = raw.ansible.playbook.relative();
        if !playbook.is_file() {
            return Err(invalid(
                "ansible.playbook",
                &format!("{} is not a file", playbook.display()),
            ));
        }
        Ok(Config {
            listen,
            database: raw
                .database
                .map(|p| p.relative())
                .unwrap_or_else(|| data_dir.join("daas.sqlite3")),
            log_format: raw.log_format,
            limits: raw.limits,
            vm: raw.vm,
            terraform: Terraform {
                module_dir,
                binary: raw.terraform.binary.into(),
                plugin_cache_dir: raw
                    .terraform
                    .plugin_cache_dir
                    .map(|p| p.relative())
                    .unwrap_or_else(|| data_dir.join("terraform-plugins")),
                init_timeout: raw.terraform.init_timeout,
                apply_timeout: raw.terraform.apply_timeout,
                destroy_timeout: raw.terraform.destroy_timeout,
                variables: raw.terraform.variables,
            },
            boot: raw.boot,
            ssh: Ssh {
                user: raw.ssh.user,
                private_key: raw
                    .ssh
                    .private_key
                    .map(|p| p.relative())
                    .unwrap_or_else(|| data_dir.join("ssh").join("id_ed25519")),
            },
            ansible: Ansible {
                binary: raw.ansible.binary.into(),
                playbook,
                config: raw
                    .ansible
                    .config
                    .map(|p| p.relative())
                    .filter(|p| !p.as_os_str().is_empty()),
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
