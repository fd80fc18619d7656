//! Terraform, per session: its own working directory and state (a copy of
//! the module made by `init -from-module`), a shared plugin cache that one
//! `init` at a time may fill, `-json` output, and the provisioning contract
//! (`terraform/CONTRACT.md`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use daas_api::v1::Tool;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    config,
    files::write_private,
    provision::tool::{self, Invocation, OutputFormat, SessionLog, StopStyle, ToolError},
    store::{TerraformFiles, VmOutputs},
};

/// The file holding a session's variables, loaded by every plan and destroy.
const VARS_FILE: &str = "terraform.tfvars.json";
/// Where Terraform keeps a session's state (the local backend's default).
const STATE_FILE: &str = "terraform.tfstate";

/// The contract inputs for one session.
#[derive(Debug, Clone)]
pub struct ContractVars {
    pub vm_name: String,
    pub slot: u32,
    pub ssh_public_key: String,
    /// The VM's SSH host key the server made (OpenSSH private key format)
    /// and its public half: the module installs them (cloud-init), so ssh
    /// checks the VM's key from the first connection on.
    pub ssh_host_private_key: String,
    pub ssh_host_public_key: String,
    pub template: String,
    pub cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    pub session_id: String,
    pub username: String,
    /// The store's deployment id: the module records it with the VM, and
    /// `inventory list` reports it (`terraform/CONTRACT.md`).
    pub deployment_id: String,
    /// The node the store placed the VM on; "" when the module reports no
    /// nodes (it places the VM itself).
    pub target_node: String,
    /// `[placement] vm_id_base + slot`: no two live VMs share it.
    pub vm_id: u64,
    /// The kept disk the VM is made from (its id, staged by `inventory
    /// restore`); "" for a fresh clone of `template`.
    pub restore_from: String,
}

/// How the server learns the VM is up, as the module declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootWait {
    /// Wait for SSH, then `cloud-init status --wait` (the default).
    Ssh,
    /// The module has nothing to wait for.
    None,
}

/// What `terraform output -json` told about the VM.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleOutputs {
    pub vm: VmOutputs,
    pub boot_wait: BootWait,
}

#[derive(Debug, thiserror::Error)]
pub enum TerraformError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot prepare the Terraform directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("the Terraform module's outputs are unusable: {0}")]
    Outputs(String),
}

/// Terraform as configured for this server.
pub struct Terraform<'a> {
    pub config: &'a config::Terraform,
    pub secrets: &'a config::Secrets,
    /// Held by `terraform init`: Terraform does not support concurrent use
    /// of one plugin cache.
    pub init_lock: &'a tokio::sync::Mutex<()>,
}

impl Terraform<'_> {
    fn invocation(&self, what: &str, dir: &Path) -> Invocation {
        let mut inv = Invocation::new(Tool::Terraform, what, &self.config.binary, dir)
            .stop(StopStyle::InterruptFirst)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env(
                "TF_PLUGIN_CACHE_DIR",
                self.config.plugin_cache_dir.as_os_str(),
            );
        for (key, value) in self.secrets.provider_env() {
            inv = inv.env(key, value);
        }
        inv
    }

    /// Copies the module into the empty `dir`, installs its providers and
    /// writes the session's variables.
    pub async fn init(
        &self,
        dir: &Path,
        vars: &ContractVars,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), TerraformError> {
        self.init_module(dir, log, cancel).await?;
        write_private(
            &dir.join(VARS_FILE),
            &variables_json(vars, &self.config.variables),
        )
        .map_err(dir_error(dir))?;
        Ok(())
    }

    /// Copies the module into the empty `dir` and installs its providers.
    async fn init_module(
        &self,
        dir: &Path,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), TerraformError> {
        std::fs::create_dir_all(dir).map_err(dir_error(dir))?;
        let mut from_module = std::ffi::OsString::from("-from-module=");
        from_module.push(self.config.module_dir.as_os_str());
        let inv = self
            .invocation("terraform init", dir)
            .arg("init")
            .arg("-input=false")
            .arg("-json")
            .arg(from_module)
            .format(OutputFormat::TerraformJson)
            .timeout(self.config.init_timeout);
        let _cache = self.init_lock.lock().await;
        tool::run(inv, log, cancel).await?;
        Ok(())
    }

    /// The variables and state Terraform left in `dir`, to keep in the
    /// store; None before `init` wrote the variables.
    pub fn saved(dir: &Path) -> Option<TerraformFiles> {
        let vars = std::fs::read(dir.join(VARS_FILE)).ok()?;
        let state = std::fs::read(dir.join(STATE_FILE)).unwrap_or_default();
        Some(TerraformFiles { vars, state })
    }

    /// Makes `dir` again from files another server kept: the module, its
    /// providers, the variables and the state, ready for `destroy`.
    pub async fn restore(
        &self,
        dir: &Path,
        files: &TerraformFiles,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), TerraformError> {
        self.init_module(dir, log, cancel).await?;
        write_private(&dir.join(VARS_FILE), &files.vars).map_err(dir_error(dir))?;
        if !files.state.is_empty() {
            write_private(&dir.join(STATE_FILE), &files.state).map_err(dir_error(dir))?;
        }
        Ok(())
    }

    /// `terraform apply`, then the module's outputs.
    pub async fn apply(
        &self,
        dir: &Path,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<ModuleOutputs, TerraformError> {
        let inv = self
            .invocation("terraform apply", dir)
            .arg("apply")
            .arg("-auto-approve")
            .arg("-input=false")
            .arg("-json")
            .format(OutputFormat::TerraformJson)
            .timeout(self.config.apply_timeout);
        tool::run(inv, log, cancel).await?;
        let inv = self
            .invocation("terraform output", dir)
            .arg("output")
            .arg("-json")
            .arg("-no-color")
            .timeout(self.config.init_timeout)
            .capture_stdout();
        let finished = tool::run(inv, log, cancel).await?;
        parse_outputs(&finished.stdout)
    }

    /// `terraform destroy` in a session's directory. A directory Terraform
    /// never initialised holds nothing to destroy.
    pub async fn destroy(
        &self,
        dir: &Path,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), TerraformError> {
        if !dir.join(VARS_FILE).is_file() {
            return Ok(());
        }
        let inv = self
            .invocation("terraform destroy", dir)
            .arg("destroy")
            .arg("-auto-approve")
            .arg("-input=false")
            .arg("-json")
            .format(OutputFormat::TerraformJson)
            .timeout(self.config.destroy_timeout);
        tool::run(inv, log, cancel).await?;
        Ok(())
    }
}

/// The VM's SSH host key (OpenSSH private key) in kept variables, if
/// they hold one.
pub fn host_key_of(files: &TerraformFiles) -> Option<String> {
    let vars: Value = serde_json::from_slice(&files.vars).ok()?;
    let key = vars.get("ssh_host_private_key")?.as_str()?;
    (!key.is_empty()).then(|| key.to_string())
}

/// The variables file: the config's extra variables, then the contract's.
pub fn variables_json(vars: &ContractVars, extra: &BTreeMap<String, Value>) -> Vec<u8> {
    let mut map: serde_json::Map<String, Value> =
        extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let contract = serde_json::json!({
        "vm_name": vars.vm_name,
        "slot": vars.slot,
        "ssh_public_key": vars.ssh_public_key,
        "ssh_host_private_key": vars.ssh_host_private_key,
        "ssh_host_public_key": vars.ssh_host_public_key,
        "template": vars.template,
        "cores": vars.cores,
        "memory_mb": vars.memory_mb,
        "disk_gb": vars.disk_gb,
        "session_id": vars.session_id,
        "username": vars.username,
        "deployment_id": vars.deployment_id,
        "target_node": vars.target_node,
        "vm_id": vars.vm_id,
        "restore_from": vars.restore_from,
    });
    if let Value::Object(contract) = contract {
        map.extend(contract);
    }
    serde_json::to_vec_pretty(&Value::Object(map)).unwrap_or_default()
}

/// Parses `terraform output -json` into the contract outputs.
pub fn parse_outputs(json: &[u8]) -> Result<ModuleOutputs, TerraformError> {
    let bad = |m: String| TerraformError::Outputs(m);
    let root: Value = serde_json::from_slice(json).map_err(|e| bad(format!("not JSON ({e})")))?;
    let value = |name: &str| root.get(name).and_then(|o| o.get("value"));
    let text = |name: &str| -> Result<String, TerraformError> {
        match value(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(bad(format!("output `{name}` is empty or not a string"))),
            None => Err(bad(format!("output `{name}` is missing"))),
        }
    };
    // Addresses reach ssh, Ansible's inventory and `.rdp` files.
    let host = |name: &str| -> Result<String, TerraformError> {
        let raw = text(name)?;
        daas_api::address::check_host(&raw)
            .map_err(|why| bad(format!("output `{name}` {why}: {}", shown(&raw))))?;
        Ok(raw)
    };
    let vm_id = || -> Result<String, TerraformError> {
        let raw = text("vm_id")?;
        if raw.chars().count() > MAX_VM_ID || raw.chars().any(|c| c.is_control()) {
            return Err(bad(format!(
                "output `vm_id` must be at most {MAX_VM_ID} characters without control characters: {}",
                shown(&raw)
            )));
        }
        Ok(raw)
    };
    let port = |name: &str| -> Result<u16, TerraformError> {
        let raw = text(name)?;
        raw.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("output `{name}` is not a port: {}", shown(&raw))))
    };
    let boot_wait = match value("boot_wait") {
        None => BootWait::Ssh,
        Some(Value::String(s)) if s == "ssh" => BootWait::Ssh,
        Some(Value::String(s)) if s == "none" => BootWait::None,
        Some(other) => {
            return Err(bad(format!(
                "output `boot_wait` must be \"ssh\" or \"none\", not {other}"
            )));
        }
    };
    Ok(ModuleOutputs {
        vm: VmOutputs {
            vm_id: vm_id()?,
            ssh_host: host("ssh_host")?,
            ssh_port: port("ssh_port")?,
            rdp_host: host("rdp_host")?,
            rdp_port: port("rdp_port")?,
            rdp_cert_sha256: String::new(),
        },
        boot_wait,
    })
}

/// The longest `vm_id` output taken.
const MAX_VM_ID: usize = 128;

/// A module's output as an error shows it: quoted and escaped (a line
/// break cannot start a line of its own in the events), at most 80
/// characters.
fn shown(raw: &str) -> String {
    let short: String = raw.chars().take(80).collect();
    let more = if raw.chars().count() > 80 { "..." } else { "" };
    format!("{short:?}{more}")
}

/// How a failure to write in `dir` reads.
fn dir_error(dir: &Path) -> impl Fn(std::io::Error) -> TerraformError + '_ {
    move |source| TerraformError::Dir {
        path: dir.display().to_string(),
        source,
    }
}

/// The Terraform directory of a session directory.
pub fn dir_of(session_dir: &Path) -> PathBuf {
    session_dir.join("terraform")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::contract::CONTRACT_VARIABLES;

    #[test]
    fn outputs_are_parsed_with_their_types_checked() {
        let json = br#"{
            "vm_id": {"sensitive": false, "type": "string", "value": "9001"},
            "vm_name": {"sensitive": false, "type": "string", "value": "desktop-abc123"},
            "ssh_host": {"sensitive": false, "type": "string", "value": "127.0.0.1"},
            "ssh_port": {"sensitive": false, "type": "number", "value": 40001},
            "rdp_host": {"sensitive": false, "type": "string", "value": "127.0.0.1"},
            "rdp_port": {"sensitive": false, "type": "string", "value": "40002"},
            "boot_wait": {"sensitive": false, "type": "string", "value": "none"}
        }"#;
        let out = parse_outputs(json).unwrap();
        assert_eq!(out.vm.vm_id, "9001");
        assert_eq!(out.vm.ssh_port, 40001);
        assert_eq!(out.vm.rdp_port, 40002);
        assert_eq!(out.boot_wait, BootWait::None);

        let missing = br#"{"vm_id": {"value": "1"}}"#;
        let err = parse_outputs(missing).unwrap_err().to_string();
        assert!(err.contains("`ssh_host` is missing"), "{err}");

        let bad_port =
            br#"{"vm_id":{"value":"1"},"ssh_host":{"value":"h"},"ssh_port":{"value":70000},
            "rdp_host":{"value":"h"},"rdp_port":{"value":1}}"#;
        let err = parse_outputs(bad_port).unwrap_err().to_string();
        assert!(err.contains("`ssh_port` is not a port"), "{err}");
    }

    #[test]
    fn garbage_outputs_fail_with_the_output_named() {
        let outputs = |name: &str, value: serde_json::Value| {
            let mut root = serde_json::json!({
                "vm_id": {"value": "9001"}, "ssh_host": {"value": "127.0.0.1"},
                "ssh_port": {"value": 22}, "rdp_host": {"value": "10.0.0.5"},
                "rdp_port": {"value": 3389},
            });
            root[name] = serde_json::json!({ "value": value });
            parse_outputs(root.to_string().as_bytes())
        };
        assert!(outputs("rdp_host", "pve1.example.org".into()).is_ok());
        for (name, value) in [
            ("ssh_host", "-oProxyCommand=touch /tmp/pwned"),
            ("ssh_host", "{{ lookup('pipe', 'id') }}"),
            ("rdp_host", "10.0.0.5\r\nusername:s:evil"),
            ("rdp_host", "10.0.0.5 ; id"),
            ("vm_id", "9001\n[ERROR] fake"),
            ("ssh_port", "22; id"),
            ("rdp_port", "0"),
        ] {
            let err = outputs(name, value.into()).unwrap_err().to_string();
            assert!(err.contains(&format!("output `{name}`")), "{err}");
            assert!(!err.contains('\n') && !err.contains('\r'), "{err}");
        }
        let long = outputs("vm_id", "x".repeat(129).into())
            .unwrap_err()
            .to_string();
        assert!(long.contains("at most 128") && long.len() < 300, "{long}");
    }

    #[test]
    fn contract_variables_win_over_extra_ones() {
        let vars = ContractVars {
            vm_name: "desktop-abc123".into(),
            slot: 3,
            ssh_public_key: "ssh-ed25519 AAAA".into(),
            ssh_host_private_key: "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
            ssh_host_public_key: "ssh-ed25519 BBBB".into(),
            template: "t".into(),
            cores: 2,
            memory_mb: 2048,
            disk_gb: 10,
            session_id: "id".into(),
            username: "alice".into(),
            deployment_id: "0123456789ab".into(),
            target_node: "pve2".into(),
            vm_id: 10_003,
            restore_from: String::new(),
        };
        let extra = BTreeMap::from([
            ("target_node".to_string(), Value::from("pve1")),
            ("slot".to_string(), Value::from(99)),
            ("storage".to_string(), Value::from("local-lvm")),
        ]);
        let json: Value = serde_json::from_slice(&variables_json(&vars, &extra)).unwrap();
        assert_eq!(json["slot"], 3);
        assert_eq!(json["target_node"], "pve2");
        assert_eq!(json["vm_id"], 10_003);
        assert_eq!(json["storage"], "local-lvm");
        for name in CONTRACT_VARIABLES {
            assert!(json.get(name).is_some(), "{name} missing");
        }
        let kept = |vars: Vec<u8>| {
            host_key_of(&TerraformFiles {
                vars,
                state: Vec::new(),
            })
        };
        assert_eq!(
            kept(variables_json(&vars, &extra)).as_deref(),
            Some("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert_eq!(kept(b"{}".to_vec()), None);
        assert_eq!(kept(b"not json".to_vec()), None);
    }
}
