//! Kept disks as the store keeps them: the disk of a destroyed desktop of
//! a persistent template (`inventory snapshot`, the module's business),
//! named by its session's id, for its user's next create of the template.

pub use super::which::Which;

/// One kept disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The id of the session whose disk it was.
    pub id: String,
    pub username: String,
    pub template: String,
    pub size: String,
    pub org: Option<String>,
    pub vm_name: String,
    pub created_ms: i64,
    pub size_gb: u32,
    /// The live session restored from it now (read, never written).
    pub restoring: Option<String>,
}
