//! Ansible, per session: a one-host inventory for the new VM (never the
//! fleet) and extra variables in a private file deleted after the run.
//! Both are YAML whose every value from a request or a tool is `!unsafe`
//! ([`super::ansible_vars`]): Ansible never reads it as a template.

use std::path::{Path, PathBuf};

use daas_api::v1::Tool;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::domain::catalog::Clipboard;
use crate::{
    config::{self, AnsibleConnection},
    files::write_private,
    provision::ansible_vars::{Var, Yaml, mapping},
    provision::identity::{self, Identity},
    provision::tool::{self, Invocation, SessionLog, ToolError},
    store::VmOutputs,
};

/// Names the file holding the vault password of `group_vars` (a path, set
/// in the server's environment, passed on to ansible-playbook).
const VAULT_PASSWORD_FILE: &str = "ANSIBLE_VAULT_PASSWORD_FILE";

#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot write the Ansible files in {path}: {source}")]
    Files {
        path: String,
        source: std::io::Error,
    },
}

/// What the playbook is told about the session.
pub struct PlaybookVars<'a> {
    pub session_id: &'a str,
    pub username: &'a str,
    pub vm_name: &'a str,
    pub session_user: &'a str,
    /// The session user's password as a SHA-512 crypt hash (`$6$...`), or
    /// "": the password itself never reaches Ansible.
    pub session_password_hash: &'a str,
    /// The AD join account's password, when a domain is configured.
    pub ad_join_password: Option<&'a str>,
    pub vm: &'a VmOutputs,
    /// What the in-VM agent needs, when agents are configured.
    pub agent: Option<&'a AgentVars>,
    /// The VM's identities: ssh checks its host key, and xrdp gets its
    /// certificate.
    pub identity: &'a Identity,
    /// Which part of the playbook runs.
    pub phase: Phase,
    /// The template's clipboard policy, which xrdp enforces too.
    pub clipboard: Clipboard,
}

/// Which part of the playbook a run does; its tasks that make a desktop
/// one user's carry the tag `per_user`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Everything: a desktop built for its request.
    All,
    /// All but the per-user tasks: a warm pool's desktop, built for nobody
    /// yet (`username` is empty).
    Base,
    /// The per-user tasks alone: a warm desktop a create claimed.
    User,
}

impl Phase {
    /// The `daas_phase` variable the playbook sees.
    fn name(self) -> &'static str {
        match self {
            Phase::All => "all",
            Phase::Base => "base",
            Phase::User => "user",
        }
    }

    /// The tag selection of ansible-playbook.
    fn tag_args(self) -> &'static [&'static str] {
        match self {
            Phase::All => &[],
            Phase::Base => &["--skip-tags", PER_USER_TAG],
            Phase::User => &["--tags", PER_USER_TAG],
        }
    }
}

/// The tag of the tasks that make a desktop one user's.
pub const PER_USER_TAG: &str = "per_user";

/// The agent's endpoint, binary and this session's credential.
pub struct AgentVars {
    pub endpoint: String,
    pub tls_server_name: Option<String>,
    pub binary: Option<std::path::PathBuf>,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Removes a file when dropped, whatever happened in between.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `ansible-playbook` as configured for this server.
pub struct Ansible<'a> {
    pub config: &'a config::Ansible,
    pub ssh: &'a config::Ssh,
}

impl Ansible<'_> {
    /// Runs the playbook against the session's VM alone.
    pub async fn configure(
        &self,
        session_dir: &Path,
        vars: &PlaybookVars<'_>,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), AnsibleError> {
        let playbook = &self.config.playbook;
        self.run(playbook, "ansible-playbook", session_dir, vars, log, cancel)
            .await
    }

    /// Runs the teardown playbook (e.g. removing the AD computer account)
    /// before the VM is destroyed; does nothing when none is configured.
    pub async fn teardown(
        &self,
        session_dir: &Path,
        vars: &PlaybookVars<'_>,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), AnsibleError> {
        match &self.config.teardown_playbook {
            Some(playbook) => {
                let what = "ansible-playbook (teardown)";
                self.run(playbook, what, session_dir, vars, log, cancel)
                    .await
            }
            None => Ok(()),
        }
    }

    async fn run(
        &self,
        playbook: &Path,
        what: &str,
        session_dir: &Path,
        vars: &PlaybookVars<'_>,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), AnsibleError> {
        let files_error = |source| AnsibleError::Files {
            path: session_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(session_dir).map_err(files_error)?;
        let inventory = session_dir.join("inventory.yml");
        let inventory_yaml = self.inventory(session_dir, vars);
        write_private(&inventory, inventory_yaml.as_str().as_bytes()).map_err(files_error)?;
        let vars_file = session_dir.join("extra-vars.yml");
        let _remove = RemoveOnDrop(vars_file.clone());
        let vars_yaml = self.extra_vars(vars);
        write_private(&vars_file, vars_yaml.as_str().as_bytes()).map_err(files_error)?;

        let mut extra = std::ffi::OsString::from("@");
        extra.push(vars_file.as_os_str());
        let mut inv = Invocation::new(Tool::Ansible, what, &self.config.binary, session_dir)
            .arg("-i")
            .arg(inventory.as_os_str())
            .arg("--limit")
            .arg(vars.vm_name)
            .arg("-e")
            .arg(extra)
            .args(vars.phase.tag_args())
            .arg(playbook.as_os_str())
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("PYTHONUNBUFFERED", "1")
            .timeout(self.config.timeout);
        if let Some(cfg) = &self.config.config {
            inv = inv.env("ANSIBLE_CONFIG", cfg.as_os_str());
        }
        // The one setting a site gives Ansible through the server's
        // environment (a path, not the password): the vault's key file.
        if let Some(file) = std::env::var_os(VAULT_PASSWORD_FILE) {
            inv = inv.env(VAULT_PASSWORD_FILE, file);
        }
        tool::run(inv, log, cancel).await?;
        Ok(())
    }

    /// A YAML inventory naming the one VM; the VM's address (a tool's
    /// output) is data, the rest the server's own settings.
    pub fn inventory(&self, session_dir: &Path, vars: &PlaybookVars<'_>) -> Yaml {
        let host = match self.config.connection {
            AnsibleConnection::Local => mapping([
                ("ansible_connection", Var::Config(json!("local"))),
                (
                    "ansible_python_interpreter",
                    Var::Config(json!("{{ ansible_playbook_python }}")),
                ),
            ]),
            AnsibleConnection::Ssh => mapping([
                ("ansible_host", Var::Data(json!(vars.vm.ssh_host))),
                ("ansible_port", Var::Data(json!(vars.vm.ssh_port))),
                ("ansible_user", Var::Data(json!(self.ssh.user))),
                (
                    "ansible_ssh_private_key_file",
                    Var::Data(json!(self.ssh.private_key)),
                ),
                (
                    "ansible_ssh_common_args",
                    Var::Data(json!(
                        identity::ssh_options(session_dir, vars.vm_name)
                            .iter()
                            .map(|o| format!("-o {o}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )),
                ),
            ]),
        };
        let hosts = mapping([(vars.vm_name, Var::Mapping(host))]);
        let all = mapping([("hosts", Var::Mapping(hosts))]);
        mapping([("all", Var::Mapping(all))])
    }

    /// The config's extra variables (the site's, which may be templates),
    /// then the session's (data, which win).
    pub fn extra_vars(&self, vars: &PlaybookVars<'_>) -> Yaml {
        let mut entries: Vec<(&str, Var)> = self
            .config
            .extra_vars
            .iter()
            .map(|(k, v)| (k.as_str(), Var::Config(v.clone())))
            .collect();
        entries.extend([
            ("session_id", Var::Data(json!(vars.session_id))),
            ("username", Var::Data(json!(vars.username))),
            ("vm_name", Var::Data(json!(vars.vm_name))),
            ("session_user", Var::Data(json!(vars.session_user))),
            (
                "session_password_hash",
                Var::Data(json!(vars.session_password_hash)),
            ),
            ("rdp_port", Var::Data(json!(vars.vm.rdp_port))),
            (
                "daas_rdp_cert_pem",
                Var::Data(json!(vars.identity.rdp_cert_pem)),
            ),
            (
                "daas_rdp_key_pem",
                Var::Data(json!(vars.identity.rdp_key_pem)),
            ),
            ("daas_phase", Var::Data(json!(vars.phase.name()))),
            ("daas_clipboard", Var::Data(json!(vars.clipboard.name()))),
        ]);
        if let Some(password) = vars.ad_join_password {
            entries.push(("ad_join_password", Var::Data(json!(password))));
        }
        if let Some(agent) = vars.agent {
            entries.extend([
                ("daas_agent_endpoint", Var::Data(json!(agent.endpoint))),
                (
                    "daas_agent_tls_server_name",
                    Var::Data(json!(agent.tls_server_name)),
                ),
                ("daas_agent_ca_pem", Var::Data(json!(agent.ca_pem))),
                ("daas_agent_cert_pem", Var::Data(json!(agent.cert_pem))),
                ("daas_agent_key_pem", Var::Data(json!(agent.key_pem))),
            ]);
            if let Some(binary) = &agent.binary {
                entries.push(("daas_agent_binary", Var::Data(json!(binary))));
            }
        }
        mapping(entries)
    }
}
