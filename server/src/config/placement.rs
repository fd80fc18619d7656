//! `[placement]`: how the server picks a node for each desktop when the
//! module reports its cluster's nodes (`inventory nodes`), and the VM id
//! it gives each VM (`vm_id_base + slot`). The decision itself is
//! `domain::placement`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::placement::{Policy, Strategy};

/// `[placement]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSpec {
    /// `"spread"` (the least loaded node) or `"pack"` (fill one first).
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// MiB a node keeps free once a new desktop is counted.
    #[serde(default = "default_reserve")]
    pub memory_reserve_mb: u64,
    /// Clones (`terraform apply`) running at once on one node; more wait.
    #[serde(default = "default_clones")]
    pub max_clones_per_node: u32,
    /// Clones running at once from one storage (a shared one counts across
    /// nodes), when the module names the storage of each template; more wait.
    #[serde(default = "default_clones")]
    pub max_clones_per_storage: u32,
    /// A VM's id is this plus its slot (the modules accept 100-999999999).
    #[serde(default = "default_vm_id_base")]
    pub vm_id_base: u64,
    /// How often the server asks the module for its nodes.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// How long a node is offline before its READY desktops are LOST.
    #[serde(default = "default_lost_after", with = "humantime_serde")]
    pub lost_after: Duration,
}

fn default_strategy() -> String {
    "spread".into()
}
fn default_reserve() -> u64 {
    512
}
fn default_clones() -> u32 {
    2
}
fn default_vm_id_base() -> u64 {
    10_000
}
fn default_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_lost_after() -> Duration {
    Duration::from_secs(120)
}

impl Default for PlacementSpec {
    fn default() -> Self {
        PlacementSpec {
            strategy: default_strategy(),
            memory_reserve_mb: default_reserve(),
            max_clones_per_node: default_clones(),
            max_clones_per_storage: default_clones(),
            vm_id_base: default_vm_id_base(),
            refresh_interval: default_refresh(),
            lost_after: default_lost_after(),
        }
    }
}

/// `[placement]`, checked.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub policy: Policy,
    pub vm_id_base: u64,
    pub refresh_interval: Duration,
    pub lost_after: Duration,
}

/// The largest slot the modules accept (`slot` is 0-999).
const MAX_SLOT: u64 = 999;

impl Placement {
    /// The VM id of the VM in `slot`.
    pub fn vm_id(&self, slot: u32) -> u64 {
        self.vm_id_base + u64::from(slot)
    }
}

/// Checks `[placement]`; the error names the key.
pub fn check(spec: &PlacementSpec) -> Result<Placement, String> {
    let strategy = match spec.strategy.as_str() {
        "spread" => Strategy::Spread,
        "pack" => Strategy::Pack,
        other => {
            return Err(format!(
                "`placement.strategy`: \"spread\" or \"pack\", not \"{other}\""
            ));
        }
    };
    if spec.max_clones_per_node == 0 {
        return Err("`placement.max_clones_per_node`: at least 1".into());
    }
    if spec.max_clones_per_storage == 0 {
        return Err("`placement.max_clones_per_storage`: at least 1".into());
    }
    if !(100..=999_999_999 - MAX_SLOT).contains(&spec.vm_id_base) {
        return Err(format!(
            "`placement.vm_id_base`: from 100 to {} (VM ids are 100-999999999 and slots go to {MAX_SLOT}), not {}",
            999_999_999 - MAX_SLOT,
            spec.vm_id_base
        ));
    }
    if spec.refresh_interval < Duration::from_secs(1) {
        return Err("`placement.refresh_interval`: at least 1s".into());
    }
    Ok(Placement {
        policy: Policy {
            strategy,
            memory_reserve_mb: spec.memory_reserve_mb,
            max_clones_per_node: spec.max_clones_per_node,
            max_clones_per_storage: spec.max_clones_per_storage,
        },
        vm_id_base: spec.vm_id_base,
        refresh_interval: spec.refresh_interval,
        lost_after: spec.lost_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_bad_values_name_their_key() {
        let placement = check(&PlacementSpec::default()).unwrap();
        assert_eq!(placement.policy, Policy::default());
        assert_eq!(placement.vm_id(7), 10_007);
        let bad = |spec: PlacementSpec, key: &str| {
            let err = check(&spec).unwrap_err();
            assert!(err.contains(key), "{err}");
        };
        bad(
            PlacementSpec {
                strategy: "random".into(),
                ..Default::default()
            },
            "placement.strategy",
        );
        bad(
            PlacementSpec {
                max_clones_per_node: 0,
                ..Default::default()
            },
            "placement.max_clones_per_node",
        );
        bad(
            PlacementSpec {
                max_clones_per_storage: 0,
                ..Default::default()
            },
            "placement.max_clones_per_storage",
        );
        bad(
            PlacementSpec {
                vm_id_base: 99,
                ..Default::default()
            },
            "placement.vm_id_base",
        );
        bad(
            PlacementSpec {
                vm_id_base: 999_999_500,
                ..Default::default()
            },
            "placement.vm_id_base",
        );
    }
}
