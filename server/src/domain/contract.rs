//! The provisioning contract's names, as `terraform/CONTRACT.md` words them:
//! the variables the server gives every module, the outputs every module
//! gives back, and the prefix of every VM name (the sweeper and the
//! inventory hook find the server's VMs by it).

/// Every VM name the server gives starts with this.
pub const VM_NAME_PREFIX: &str = "desktop-";

/// Variables every module takes; the server sets them, the config may not.
pub const CONTRACT_VARIABLES: &[&str] = &[
    "vm_name",
    "slot",
    "ssh_public_key",
    "ssh_host_private_key",
    "ssh_host_public_key",
    "template",
    "cores",
    "memory_mb",
    "disk_gb",
    "session_id",
    "username",
    "deployment_id",
    "target_node",
    "vm_id",
    "restore_from",
];

/// Whether `id` can be a deployment id (`deployment_id`): what the store
/// makes is 12 lower-case hex digits; the modules accept 1-32 of `a-z0-9`
/// (and "" from an older server).
pub fn is_deployment_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Outputs every module gives (`boot_wait` is optional).
pub const CONTRACT_OUTPUTS: &[&str] = &["vm_id", "ssh_host", "ssh_port", "rdp_host", "rdp_port"];
