//! The configuration as written: the shapes figment fills from the
//! built-in defaults, the TOML file and the `DAAS_*` environment, before any
//! check. Paths are still relative (to the file, or to the working directory
//! for the environment); `check` resolves and checks them into [`Config`].
//!
//! [`Config`]: super::Config

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use super::{
    AnsibleConnection, Auth, Boot, Limits, LogFormat, VmDefaults, catalog, orgs, placement, policy,
    pools, scheduling, store, web, webhooks,
};

/// The whole file, every section present (from the defaults when not written).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) listen: String,
    pub(super) http: RawHttp,
    pub(super) audit: RawAudit,
    pub(super) data_dir: RelativePathBuf,
    pub(super) database: Option<RelativePathBuf>,
    #[serde(default)]
    pub(super) store: store::StoreSpec,
    pub(super) log_format: LogFormat,
    pub(super) limits: Limits,
    pub(super) vm: VmDefaults,
    pub(super) terraform: RawTerraform,
    pub(super) boot: Boot,
    pub(super) ssh: RawSsh,
    pub(super) ansible: RawAnsible,
    pub(super) tls: RawTls,
    pub(super) auth: Auth,
    pub(super) secrets: RawSecrets,
    pub(super) agent: RawAgent,
    pub(super) policy: RawPolicy,
    #[serde(default)]
    pub(super) pools: BTreeMap<String, pools::PoolSpec>,
    #[serde(default)]
    pub(super) webhooks: Vec<webhooks::WebhookSpec>,
    #[serde(default)]
    pub(super) web: web::WebSpec,
    #[serde(default)]
    pub(super) placement: placement::PlacementSpec,
    #[serde(default)]
    pub(super) templates: BTreeMap<String, catalog::TemplateSpec>,
    #[serde(default)]
    pub(super) orgs: BTreeMap<String, orgs::OrgSpec>,
    #[serde(default)]
    pub(super) schedules: scheduling::Scheduling,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    #[serde(default)]
    pub(super) file: Option<RelativePathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: String,
    pub(super) metrics_listen: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) endpoint: String,
    pub(super) tls_server_name: String,
    pub(super) binary: Option<RelativePathBuf>,
    pub(super) ca_cert: Option<RelativePathBuf>,
    pub(super) ca_key: Option<RelativePathBuf>,
    #[serde(with = "humantime_serde")]
    pub(super) report_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) first_report_wait: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(with = "humantime_serde")]
    pub(super) idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) disconnected_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) max_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) agent_lost_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) warning: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) reaper_interval: Duration,
    #[serde(default)]
    pub(super) templates: BTreeMap<String, policy::PolicyOverride>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) plaintext: bool,
    pub(super) dev_pki: bool,
    pub(super) ca: Option<RelativePathBuf>,
    pub(super) cert: Option<RelativePathBuf>,
    pub(super) key: Option<RelativePathBuf>,
    pub(super) revoked: Option<RelativePathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecrets {
    pub(super) ad_join_password_file: Option<RelativePathBuf>,
    pub(super) ad_join_password_env: Option<String>,
    pub(super) proxmox_token_id: Option<String>,
    pub(super) proxmox_token_secret_file: Option<RelativePathBuf>,
    pub(super) proxmox_token_secret_env: Option<String>,
    pub(super) web_ldap_password_file: Option<RelativePathBuf>,
    pub(super) web_ldap_password_env: Option<String>,
    pub(super) store_password_file: Option<RelativePathBuf>,
    pub(super) store_password_env: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTerraform {
    pub(super) module_dir: RelativePathBuf,
    pub(super) binary: RelativePathBuf,
    pub(super) plugin_cache_dir: Option<RelativePathBuf>,
    #[serde(with = "humantime_serde")]
    pub(super) init_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) apply_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) destroy_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(super) sweep_interval: Duration,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsh {
    pub(super) user: String,
    pub(super) private_key: Option<RelativePathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnsible {
    pub(super) binary: RelativePathBuf,
    pub(super) playbook: RelativePathBuf,
    #[serde(default)]
    pub(super) teardown_playbook: Option<RelativePathBuf>,
    #[serde(default)]
    pub(super) config: Option<RelativePathBuf>,
    pub(super) connection: AnsibleConnection,
    #[serde(with = "humantime_serde")]
    pub(super) timeout: Duration,
    #[serde(default)]
    pub(super) extra_vars: BTreeMap<String, serde_json::Value>,
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
            store: store::StoreSpec::default(),
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
                first_report_wait: Duration::from_secs(60),
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
            placement: placement::PlacementSpec::default(),
            templates: BTreeMap::new(),
            orgs: BTreeMap::new(),
            schedules: scheduling::Scheduling::default(),
        }
    }
}

/// The top-level keys: a `DAAS_*` variable naming none of them is not the
/// server's and is left alone.
pub(super) const SECTIONS: &[&str] = &[
    "listen",
    "http",
    "audit",
    "data_dir",
    "database",
    "store",
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
    "placement",
    "templates",
    "orgs",
    "schedules",
];

/// A path from the file (relative to the file) or the environment
/// (relative to the working directory), made absolute: tools run in other
/// directories.
pub(super) fn path(value: &RelativePathBuf) -> PathBuf {
    let path = value.relative();
    std::path::absolute(&path).unwrap_or(path)
}

/// A program: a bare name is looked up on PATH, a path resolved as [`path`].
pub(super) fn program(value: &RelativePathBuf) -> PathBuf {
    if value.original().components().count() == 1 {
        value.original().to_path_buf()
    } else {
        path(value)
    }
}

/// An optional path: `""` as written means none (resolved, it would be the
/// file's directory).
pub(super) fn given(value: &Option<RelativePathBuf>) -> Option<PathBuf> {
    value
        .as_ref()
        .filter(|p| !p.original().as_os_str().is_empty())
        .map(path)
}
