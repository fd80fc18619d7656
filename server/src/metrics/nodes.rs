//! The cluster's nodes as gauges (`daas_node_*`), read from the store at
//! each scrape like the sessions' counts: state, drain, desktops, clones,
//! memory and cores, per node.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

use super::add;
use crate::domain::placement::NodeState;
use crate::store::nodes::NodeRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

/// Labels of `daas_node_state`: 1 for the node's state, 0 for the others.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    node: String,
    state: String,
}

/// Labels of the gauges split by `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    node: String,
    kind: String,
}

pub(super) struct NodeGauges {
    state: Family<StateLabels, Gauge>,
    drained: Family<NodeLabels, Gauge>,
    desktops: Family<KindLabels, Gauge>,
    clones: Family<NodeLabels, Gauge>,
    memory: Family<KindLabels, Gauge>,
    cpus: Family<KindLabels, Gauge>,
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl NodeGauges {
    pub(super) fn new(r: &mut Registry) -> NodeGauges {
        NodeGauges {
            state: add(
                r,
                "node_state",
                "1 for each node's state (online, offline, maintenance), as the module reports it",
                Family::default(),
            ),
            drained: add(
                r,
                "node_drained",
                "1 for a node an administrator drained (no new desktops)",
                Family::default(),
            ),
            desktops: add(
                r,
                "node_desktops",
                "Live desktops the server placed on each node: kind user (claimed pool desktops too) or pool (unclaimed)",
                Family::default(),
            ),
            clones: add(
                r,
                "node_clones",
                "Clones (terraform apply) running on each node",
                Family::default(),
            ),
            memory: add(
                r,
                "node_memory_mib",
                "Each node's memory in MiB: kind total, used (by its guests now) or configured (for all its guests)",
                Family::default(),
            ),
            cpus: add(
                r,
                "node_cpus",
                "Each node's CPUs: kind total, or configured (cores of all its guests)",
                Family::default(),
            ),
        }
    }

    /// Sets every gauge from `nodes` (a node no longer known disappears).
    pub(super) fn set(&self, nodes: &[NodeRecord]) {
        for family in [&self.drained, &self.clones] {
            family.clear();
        }
        for family in [&self.desktops, &self.memory, &self.cpus] {
            family.clear();
        }
        self.state.clear();
        for n in nodes {
            let node = n.listed.node.clone();
            let by = |kind: &str| KindLabels {
                node: node.clone(),
                kind: kind.to_string(),
            };
            for state in NodeState::ALL {
                let labels = StateLabels {
                    node: node.clone(),
                    state: state.as_str().to_string(),
                };
                self.state
                    .get_or_create(&labels)
                    .set(i64::from(n.listed.state == state));
            }
            let labels = NodeLabels { node: node.clone() };
            self.drained
                .get_or_create(&labels)
                .set(i64::from(n.drained));
            self.clones.get_or_create(&labels).set(i64::from(n.clones));
            self.desktops
                .get_or_create(&by("user"))
                .set(i64::from(n.desktops));
            self.desktops
                .get_or_create(&by("pool"))
                .set(i64::from(n.pool_desktops));
            let c = &n.listed.capacity;
            self.memory
                .get_or_create(&by("total"))
                .set(gauge(c.memory_mb));
            self.memory
                .get_or_create(&by("used"))
                .set(gauge(c.used_memory_mb));
            self.memory
                .get_or_create(&by("configured"))
                .set(gauge(c.configured_memory_mb));
            self.cpus.get_or_create(&by("total")).set(i64::from(c.cpus));
            self.cpus
                .get_or_create(&by("configured"))
                .set(i64::from(c.configured_cores));
        }
    }
}
