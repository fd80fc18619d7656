//! The cluster's nodes in the store, whatever the backend: what the
//! module's `inventory nodes` last reported (refreshed by every server),
//! which an admin drained, and the placement of a new desktop inside the
//! create's transaction: the nodes as reported, plus a reservation for
//! each placed desktop the report does not count yet (its VM is not in
//! the node's `vms`), so two creates never take a node's last room twice.

use std::collections::BTreeMap;

use crate::domain::placement::{self, Capacity, ListedNode, Need, Node, NodeState, Policy};

use super::StoreError;

/// A node as the store keeps it, with what the store knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub listed: ListedNode,
    /// Whether the last `inventory nodes` listed it (a node no longer
    /// listed is kept, offline, so its desktops stay accounted for).
    pub present: bool,
    /// Drained by an admin: no new desktops.
    pub drained: bool,
    /// The last time a report listed it.
    pub seen_ms: i64,
    /// Since when it is offline (reported so, or no longer listed).
    pub offline_since_ms: Option<i64>,
    /// Live user desktops placed on it (claimed pool desktops included).
    pub desktops: u32,
    /// Pool desktops on it nobody has claimed yet.
    pub pool_desktops: u32,
    /// Clones running there now.
    pub clones: u32,
}

impl NodeRecord {
    /// The node as the API shows it.
    pub fn to_proto(&self) -> daas_api::v1::Node {
        use daas_api::v1::NodeState as Wire;
        let c = &self.listed.capacity;
        daas_api::v1::Node {
            name: self.listed.node.clone(),
            state: match self.listed.state {
                NodeState::Online => Wire::Online,
                NodeState::Offline => Wire::Offline,
                NodeState::Maintenance => Wire::Maintenance,
            } as i32,
            drained: self.drained,
            listed: self.present,
            seen_at: Some(crate::domain::time::timestamp(self.seen_ms)),
            offline_since: self.offline_since_ms.map(crate::domain::time::timestamp),
            cpus: c.cpus,
            memory_mb: c.memory_mb,
            used_memory_mb: c.used_memory_mb,
            configured_memory_mb: c.configured_memory_mb,
            configured_cores: c.configured_cores,
            templates: self.listed.templates.clone(),
            template_storage: self
                .listed
                .template_storage
                .iter()
                .map(|(t, s)| (t.clone(), s.clone()))
                .collect(),
            desktops: self.desktops,
            pool_desktops: self.pool_desktops,
            clones: self.clones,
        }
    }
}

/// What a create reserves (its size's memory and cores) and the policy to
/// place it with, as the store builds it from a [`super::NewSession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placing {
    pub policy: Policy,
    pub memory_mb: u64,
    pub cores: u32,
}

impl Placing {
    /// What `new` reserves, when it is to be placed: only with a size.
    pub(super) fn of(new: &super::NewSession) -> Option<Placing> {
        match (new.placing, &new.size) {
            (Some(policy), Some(size)) => Some(Placing {
                policy,
                memory_mb: size.memory_mb,
                cores: size.cores,
            }),
            _ => None,
        }
    }
}

/// A live session placed on a node, as a create counts it.
#[derive(Debug, Clone)]
pub(super) struct Placed {
    pub node: String,
    pub vm_name: String,
    pub memory_mb: u64,
    pub cores: u32,
}

/// Where the create's transaction placed a desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spot {
    pub node: String,
    /// The storage its clone starts from, when the node's report names it
    /// for the template (`template_storage`).
    pub storage: Option<String>,
}

/// Whether a create may start its clone now (`SessionStore::begin_clone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneTurn {
    /// It may (or its VM has no node to count against).
    Go,
    /// Not yet: a limit is reached.
    Wait(Busy),
    /// Its node is not online (or in maintenance) any more: no clone there.
    NodeDown(NodeState),
}

/// The clone limit a create waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// `max_clones_per_node`: this many clones run on its node.
    Node { clones: u32 },
    /// `max_clones_per_storage`: this many clones start from its storage,
    /// on any node.
    Storage { storage: String, clones: u32 },
}

/// The state as the store wrote it (an unknown word reads as offline).
pub(super) fn state_from_text(text: &str) -> NodeState {
    NodeState::parse(text).unwrap_or(NodeState::Offline)
}

/// A JSON array of strings, as the store keeps templates and VM names.
pub(super) fn names_json(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".into())
}

/// The array [`names_json`] wrote (a corrupt one reads as empty).
pub(super) fn names_from_json(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A JSON object of strings, as the store keeps `template_storage`.
pub(super) fn map_json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".into())
}

/// The object [`map_json`] wrote (a corrupt one reads as empty).
pub(super) fn map_from_json(text: &str) -> BTreeMap<String, String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// The node a new desktop goes to (and the storage its clone starts from),
/// given the nodes as stored (with their drained flag) and the live
/// sessions placed so far.
pub(super) fn choose(
    nodes: Vec<(ListedNode, bool)>,
    placed: &[Placed],
    template: &str,
    placing: &Placing,
) -> Result<Spot, StoreError> {
    let storages: Vec<Option<String>> = nodes
        .iter()
        .map(|(listed, _)| listed.template_storage.get(template).cloned())
        .collect();
    let decided: Vec<Node> = nodes
        .into_iter()
        .map(|(listed, drained)| {
            let mut capacity: Capacity = listed.capacity;
            let mut desktops = 0u32;
            for p in placed.iter().filter(|p| p.node == listed.node) {
                desktops += 1;
                if !listed.vms.contains(&p.vm_name) {
                    capacity.configured_memory_mb += p.memory_mb;
                    capacity.configured_cores += p.cores;
                }
            }
            Node {
                name: listed.node,
                state: listed.state,
                drained,
                capacity,
                templates: listed.templates,
                desktops,
            }
        })
        .collect();
    let need = Need {
        template,
        memory_mb: placing.memory_mb,
        cores: placing.cores,
    };
    placement::place(&decided, &need, &placing.policy)
        .map(|i| Spot {
            node: decided[i].name.clone(),
            storage: storages[i].clone(),
        })
        .map_err(StoreError::NoRoom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, vms: &[&str]) -> (ListedNode, bool) {
        let listed = ListedNode {
            node: name.into(),
            state: NodeState::Online,
            capacity: Capacity {
                cpus: 8,
                memory_mb: 8192,
                configured_memory_mb: 2048 * vms.len() as u64,
                ..Capacity::default()
            },
            templates: vec!["debian-12".into()],
            template_storage: BTreeMap::from([("debian-12".into(), format!("{name}/local"))]),
            vms: vms.iter().map(|v| v.to_string()).collect(),
        };
        (listed, false)
    }

    fn placed(node: &str, vm: &str) -> Placed {
        Placed {
            node: node.into(),
            vm_name: vm.into(),
            memory_mb: 2048,
            cores: 2,
        }
    }

    const PLACING: Placing = Placing {
        policy: Policy {
            strategy: placement::Strategy::Spread,
            memory_reserve_mb: 512,
            max_clones_per_node: 2,
            max_clones_per_storage: 2,
        },
        memory_mb: 2048,
        cores: 2,
    };

    #[test]
    fn a_desktop_the_report_does_not_show_yet_is_reserved_once() {
        // n1 holds one desktop the report counts and one it does not yet;
        // n2 one it counts: n2 is less loaded.
        let nodes = vec![listed("n1", &["desktop-a"]), listed("n2", &["desktop-c"])];
        let some = [
            placed("n1", "desktop-a"),
            placed("n1", "desktop-b"),
            placed("n2", "desktop-c"),
        ];
        assert_eq!(
            choose(nodes.clone(), &some, "debian-12", &PLACING).unwrap(),
            Spot {
                node: "n2".into(),
                storage: Some("n2/local".into())
            }
        );
        // A template with no storage named: none.
        let mut other = nodes.clone();
        other[1].0.templates.push("ubuntu-24".into());
        assert_eq!(
            choose(other, &some, "ubuntu-24", &PLACING).unwrap().storage,
            None
        );
        // With three desktops on each (one reported, two reserved), a
        // fourth would leave 8192 - 4 * 2048 = 0 MiB, short of the reserve.
        let more = [
            placed("n1", "desktop-a"),
            placed("n1", "desktop-b"),
            placed("n1", "desktop-f"),
            placed("n2", "desktop-c"),
            placed("n2", "desktop-d"),
            placed("n2", "desktop-e"),
        ];
        let err = choose(nodes, &more, "debian-12", &PLACING).unwrap_err();
        assert!(matches!(err, StoreError::NoRoom(_)), "{err}");
    }

    #[test]
    fn names_and_states_round_trip() {
        let names = vec!["a".to_string(), "b\"c".to_string()];
        assert_eq!(names_from_json(&names_json(&names)), names);
        assert!(names_from_json("not json").is_empty());
        let map = BTreeMap::from([("t".to_string(), "ceph".to_string())]);
        assert_eq!(map_from_json(&map_json(&map)), map);
        assert!(map_from_json("[]").is_empty());
        for state in [
            NodeState::Online,
            NodeState::Offline,
            NodeState::Maintenance,
        ] {
            assert_eq!(state_from_text(state.as_str()), state);
        }
    }
}
