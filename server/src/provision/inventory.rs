//! The module's `inventory` hook (`terraform/CONTRACT.md`): which VMs the
//! module made still exist, and destroying one without its Terraform state.
//! The sweeper and every teardown use it to leave no VM behind, even after
//! a power cut took the Terraform state with it. A VM recorded with another
//! deployment's id is another deployment's: never destroyed here.

use std::{collections::BTreeMap, ffi::OsString, path::Path, time::Duration};

use daas_api::v1::Tool;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    config,
    domain::{
        contract::VM_NAME_PREFIX,
        placement::{Capacity, ListedNode, NodeState},
        validate,
    },
    provision::tool::{self, Invocation, SessionLog, ToolError},
};

/// How long `inventory list` may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("the module's `inventory list` printed a line that is not a VM ({line}): {reason}")]
    BadLine { line: String, reason: String },
    #[error("the module's `inventory nodes` printed a line that is not a node ({line}): {reason}")]
    BadNode { line: String, reason: String },
    #[error("the module's `inventory snapshot` printed no kept disk ({line}): {reason}")]
    BadSnapshot { line: String, reason: String },
}

/// One line of `inventory nodes`, before it is checked.
#[derive(Deserialize)]
struct NodeLine {
    node: String,
    state: String,
    cpus: u32,
    memory_mb: u64,
    #[serde(default)]
    used_memory_mb: u64,
    #[serde(default)]
    configured_memory_mb: u64,
    #[serde(default)]
    configured_cores: u32,
    #[serde(default)]
    templates: Vec<String>,
    #[serde(default)]
    template_storage: BTreeMap<String, String>,
    vms: Vec<String>,
}

/// A VM the module says it made.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedVm {
    pub vm_name: String,
    #[serde(default)]
    pub session_id: String,
    /// The deployment it was made for; empty: unknown (made before
    /// deployments were recorded, or by a module that does not record them).
    #[serde(default)]
    pub deployment: String,
}

/// What `inventory list` printed, split by deployment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    /// This deployment's VMs, and those of no known deployment (which are
    /// ours by their name alone, as before deployments were recorded).
    pub ours: Vec<ListedVm>,
    /// The VMs of other deployments: never destroyed here.
    pub others: Vec<ListedVm>,
}

/// The exit status of a hook that does not know the subcommand (a usage
/// error): a module without `inventory nodes`.
const USAGE: i32 = 2;

/// The inventory hook of the configured module.
pub struct Inventory<'a> {
    pub config: &'a config::Terraform,
    pub secrets: &'a config::Secrets,
    /// Where the hook runs (an empty folder of the server's).
    pub work_dir: &'a Path,
    /// This deployment's id (the store's).
    pub deployment: &'a str,
}

impl Inventory<'_> {
    /// Whether the module has the hook (a module without it opts out of
    /// the sweeper).
    pub fn exists(&self) -> bool {
        self.config.module_dir.join("inventory").is_file()
    }

    fn invocation(&self, what: &str) -> Invocation {
        let program = self.config.module_dir.join("inventory");
        let mut inv = Invocation::new(Tool::Terraform, what, &program, self.work_dir)
            .env("DAAS_VM_NAME_PREFIX", VM_NAME_PREFIX)
            .env("DAAS_DEPLOYMENT_ID", self.deployment);
        for (name, value) in &self.config.variables {
            let value: OsString = match value {
                Value::String(s) => s.into(),
                Value::Number(n) => n.to_string().into(),
                Value::Bool(b) => b.to_string().into(),
                _ => continue,
            };
            inv = inv.env(&format!("DAAS_VAR_{name}"), value);
        }
        for (key, value) in self.secrets.provider_env() {
            inv = inv.env(key, value);
        }
        inv
    }

    /// The VMs the module made that still exist (named with
    /// [`VM_NAME_PREFIX`]), this deployment's apart from the others'.
    pub async fn list(
        &self,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<Listing, InventoryError> {
        let inv = self
            .invocation("inventory list")
            .arg("list")
            .timeout(LIST_TIMEOUT)
            .capture_stdout();
        let finished = tool::run(inv, log, cancel).await?;
        parse_list(&finished.stdout, self.deployment)
    }

    /// Destroys `vm_name` and everything the module made for it; a VM
    /// already gone is no error.
    pub async fn destroy(
        &self,
        vm_name: &str,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), InventoryError> {
        let inv = self
            .invocation(&format!("inventory destroy {vm_name}"))
            .arg("destroy")
            .arg(vm_name)
            .timeout(self.config.destroy_timeout);
        tool::run(inv, log, cancel).await?;
        Ok(())
    }

    /// Whether the module keeps disks: its hook knows `snapshots` (a hook
    /// without it exits 2, as for any unknown word).
    pub async fn keeps_disks(
        &self,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<bool, InventoryError> {
        if !self.exists() {
            return Ok(false);
        }
        let inv = self
            .invocation("inventory snapshots")
            .arg("snapshots")
            .timeout(LIST_TIMEOUT)
            .capture_stdout();
        match tool::run(inv, log, cancel).await {
            Ok(_) => Ok(true),
            Err(ToolError::Failed { status, .. }) if status.code() == Some(USAGE) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Keeps `vm_name`'s disk as kept disk `id` (`inventory snapshot`):
    /// its size in GiB as the module reports it. Keeping the same id again
    /// is no error.
    pub async fn snapshot(
        &self,
        vm_name: &str,
        id: &str,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<u32, InventoryError> {
        let inv = self
            .invocation(&format!("inventory snapshot {vm_name}"))
            .arg("snapshot")
            .arg(vm_name)
            .arg(id)
            .timeout(self.config.destroy_timeout)
            .capture_stdout();
        let finished = tool::run(inv, log, cancel).await?;
        parse_kept(&finished.stdout, id)
    }

    /// Stages kept disk `id` for the next apply of `vm_name` (`inventory
    /// restore`).
    pub async fn restore(
        &self,
        id: &str,
        vm_name: &str,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), InventoryError> {
        let inv = self
            .invocation(&format!("inventory restore {id}"))
            .arg("restore")
            .arg(id)
            .arg(vm_name)
            .timeout(self.config.apply_timeout);
        tool::run(inv, log, cancel).await?;
        Ok(())
    }

    /// Deletes kept disk `id` (`inventory forget`); one already gone is no
    /// error.
    pub async fn forget(
        &self,
        id: &str,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<(), InventoryError> {
        let inv = self
            .invocation(&format!("inventory forget {id}"))
            .arg("forget")
            .arg(id)
            .timeout(self.config.destroy_timeout);
        tool::run(inv, log, cancel).await?;
        Ok(())
    }

    /// The cluster's nodes (`inventory nodes`); None: the module does not
    /// report nodes (it has no hook, or its hook predates `nodes`).
    pub async fn nodes(
        &self,
        log: &SessionLog,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<ListedNode>>, InventoryError> {
        if !self.exists() {
            return Ok(None);
        }
        let inv = self
            .invocation("inventory nodes")
            .arg("nodes")
            .timeout(LIST_TIMEOUT)
            .capture_stdout();
        match tool::run(inv, log, cancel).await {
            Ok(finished) => parse_nodes(&finished.stdout).map(Some),
            Err(ToolError::Failed { status, .. }) if status.code() == Some(USAGE) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

/// The size of kept disk `id` from `inventory snapshot`'s line
/// `{"snapshot": ID, "size_gb": N}`.
fn parse_kept(stdout: &[u8], id: &str) -> Result<u32, InventoryError> {
    #[derive(Deserialize)]
    struct Kept {
        snapshot: String,
        size_gb: u32,
    }
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let bad = |reason: String| InventoryError::BadSnapshot {
        line: line.chars().take(200).collect(),
        reason,
    };
    let kept: Kept = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
    if kept.snapshot != id {
        return Err(bad(format!("it names {:?}, not {id}", kept.snapshot)));
    }
    Ok(kept.size_gb)
}

/// Parses `inventory nodes` output (one JSON object per line), checking
/// each node's name, state and templates.
pub fn parse_nodes(stdout: &[u8]) -> Result<Vec<ListedNode>, InventoryError> {
    let text = String::from_utf8_lossy(stdout);
    let mut nodes: Vec<ListedNode> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = |reason: String| InventoryError::BadNode {
            line: line.chars().take(200).collect(),
            reason,
        };
        let raw: NodeLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if !validate::is_node_name(&raw.node) {
            return Err(bad("`node` must be a Proxmox node name".into()));
        }
        if nodes.iter().any(|n| n.node == raw.node) {
            return Err(bad(format!("node {} is listed twice", raw.node)));
        }
        let Some(state) = NodeState::parse(&raw.state) else {
            return Err(bad(format!(
                "`state` must be online, offline or maintenance, not {:?}",
                raw.state
            )));
        };
        for template in &raw.templates {
            validate::template(template).map_err(|e| bad(e.to_string()))?;
        }
        for (template, storage) in &raw.template_storage {
            if !raw.templates.contains(template) {
                return Err(bad(format!(
                    "{template:?} in `template_storage` is not in `templates`"
                )));
            }
            if !is_storage(storage) {
                return Err(bad(format!(
                    "{storage:?} in `template_storage` is not a storage: 1-200 of letters, digits, '.', '-', '_', '/' and '+'"
                )));
            }
        }
        if let Some(vm) = raw.vms.iter().find(|vm| !is_vm_name(vm)) {
            return Err(bad(format!("{vm:?} in `vms` is not a VM name")));
        }
        nodes.push(ListedNode {
            node: raw.node,
            state,
            capacity: Capacity {
                cpus: raw.cpus,
                memory_mb: raw.memory_mb,
                used_memory_mb: raw.used_memory_mb,
                configured_memory_mb: raw.configured_memory_mb,
                configured_cores: raw.configured_cores,
            },
            templates: raw.templates,
            template_storage: raw.template_storage,
            vms: raw.vms,
        });
    }
    Ok(nodes)
}

/// A VM's name as `vms` may hold it: 1-63 of letters, digits, '.', '-'
/// and '_' (a VM of ours, or another one with our prefix).
fn is_vm_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A storage as `template_storage` names it (a PVE storage id, or one
/// qualified by its node, such as `pve1/local-lvm`).
fn is_storage(name: &str) -> bool {
    (1..=200).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'+'))
}

/// Parses `inventory list` output (one JSON object per line) for the
/// deployment `deployment`.
pub fn parse_list(stdout: &[u8], deployment: &str) -> Result<Listing, InventoryError> {
    let text = String::from_utf8_lossy(stdout);
    let mut listing = Listing::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let vm: ListedVm = serde_json::from_str(line).map_err(|e| InventoryError::BadLine {
            line: line.chars().take(200).collect(),
            reason: e.to_string(),
        })?;
        if !vm.vm_name.starts_with(VM_NAME_PREFIX) {
            continue;
        }
        if vm.deployment.is_empty() || vm.deployment == deployment {
            listing.ours.push(vm);
        } else {
            listing.others.push(vm);
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, session: &str, deployment: &str) -> ListedVm {
        ListedVm {
            vm_name: name.into(),
            session_id: session.into(),
            deployment: deployment.into(),
        }
    }

    #[test]
    fn nodes_are_parsed_and_checked() {
        let out = br#"{"node":"pve1","state":"online","cpus":16,"memory_mb":131072,"used_memory_mb":4096,"configured_memory_mb":8192,"configured_cores":4,"templates":["debian-12"],"template_storage":{"debian-12":"pve1/local-lvm"},"vms":["desktop-aaa111"]}

{"node":"pve2.lab","state":"maintenance","cpus":8,"memory_mb":65536,"vms":[],"extra":"ignored"}
"#;
        let nodes = parse_nodes(out).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].state, NodeState::Online);
        assert_eq!(nodes[0].templates, ["debian-12"]);
        assert_eq!(nodes[0].vms, ["desktop-aaa111"]);
        assert_eq!(
            nodes[0]
                .template_storage
                .get("debian-12")
                .map(String::as_str),
            Some("pve1/local-lvm")
        );
        assert!(nodes[1].template_storage.is_empty());
        assert_eq!(
            (
                nodes[1].node.as_str(),
                nodes[1].state,
                nodes[1].capacity.configured_memory_mb
            ),
            ("pve2.lab", NodeState::Maintenance, 0)
        );
        for (line, why) in [
            (
                r#"{"node":"-x","state":"online","cpus":1,"memory_mb":1,"vms":[]}"#,
                "node name",
            ),
            (
                r#"{"node":"a b","state":"online","cpus":1,"memory_mb":1,"vms":[]}"#,
                "node name",
            ),
            (
                r#"{"node":"p","state":"gone","cpus":1,"memory_mb":1,"vms":[]}"#,
                "online, offline or maintenance",
            ),
            (
                r#"{"node":"p","state":"online","cpus":-1,"memory_mb":1,"vms":[]}"#,
                "invalid value",
            ),
            (
                r#"{"node":"p","state":"online","cpus":1,"memory_mb":1,"templates":["{{ x }}"],"vms":[]}"#,
                "template",
            ),
            (
                r#"{"node":"p","state":"online","cpus":1,"memory_mb":1,"templates":["t"],"template_storage":{"u":"s"},"vms":[]}"#,
                "not in `templates`",
            ),
            (
                r#"{"node":"p","state":"online","cpus":1,"memory_mb":1,"templates":["t"],"template_storage":{"t":"a b"},"vms":[]}"#,
                "not a storage",
            ),
            (
                r#"{"node":"p","state":"online","cpus":1,"memory_mb":1,"vms":["a b"]}"#,
                "not a VM name",
            ),
            (
                r#"{"node":"p","state":"online","cpus":1,"memory_mb":1}"#,
                "missing field `vms`",
            ),
            ("not json", "expected"),
        ] {
            let err = parse_nodes(line.as_bytes()).unwrap_err().to_string();
            assert!(
                err.contains("`inventory nodes`") && err.contains(why),
                "{line}: {err}"
            );
        }
        let twice = "{\"node\":\"p\",\"state\":\"online\",\"cpus\":1,\"memory_mb\":1,\"vms\":[]}\n"
            .repeat(2);
        let err = parse_nodes(twice.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
        assert!(parse_nodes(b"").unwrap().is_empty());
    }

    #[test]
    fn lists_are_parsed_and_foreign_names_dropped() {
        let out = b"{\"vm_name\":\"desktop-abc123\",\"session_id\":\"s1\"}\n\n\
            {\"vm_name\":\"desktop-def456\"}\n{\"vm_name\":\"web-01\",\"session_id\":\"\"}\n";
        let listing = parse_list(out, "0123456789ab").unwrap();
        assert_eq!(
            listing.ours,
            [vm("desktop-abc123", "s1", ""), vm("desktop-def456", "", "")]
        );
        assert!(listing.others.is_empty());
        let err = parse_list(b"desktop-abc123\n", "0123456789ab")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a VM (desktop-abc123)"), "{err}");
    }

    #[test]
    fn vms_of_other_deployments_are_set_apart() {
        let out = br#"{"vm_name":"desktop-aaa111","session_id":"s1","deployment":"0123456789ab"}
            {"vm_name":"desktop-bbb222","session_id":"s2","deployment":"ba9876543210"}
            {"vm_name":"desktop-ccc333","session_id":"s3","deployment":""}
            {"vm_name":"desktop-ddd444","session_id":"s4"}
            {"vm_name":"web-01","deployment":"ba9876543210"}"#;
        let listing = parse_list(out, "0123456789ab").unwrap();
        assert_eq!(
            listing,
            Listing {
                // Ours, and those of no known deployment (by their name).
                ours: vec![
                    vm("desktop-aaa111", "s1", "0123456789ab"),
                    vm("desktop-ccc333", "s3", ""),
                    vm("desktop-ddd444", "s4", ""),
                ],
                others: vec![vm("desktop-bbb222", "s2", "ba9876543210")],
            }
        );
    }
}
