//! Where a new desktop goes in a Proxmox cluster, decided apart from doing
//! it: a pure function of the nodes (as the module's inventory reports them,
//! with what the store has reserved on each for desktops the inventory does
//! not show yet), what the desktop needs and the site's policy. The store
//! calls it inside the create's transaction, so two creates never take the
//! last room of a node twice.
//!
//! A node can take the desktop when it is online and not drained, holds the
//! template, and keeps `memory_reserve_mb` free once the desktop's memory is counted (against
//! the larger of what its guests use and what they are configured for).
//! Among those, the score is its memory share plus half its CPU share,
//! both counting the new desktop (configured memory over total; cores of
//! its guests over its CPUs). `spread` takes the lowest score (the least
//! loaded node), `pack` the highest (fill a node before starting the next);
//! ties go to the node with fewer of our desktops, then by name.

use std::{collections::BTreeMap, fmt};

/// A node's state, as the inventory reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Online,
    Offline,
    /// In Proxmox maintenance mode (`ha-manager crm-command node-maintenance`).
    Maintenance,
}

impl NodeState {
    pub const ALL: [NodeState; 3] = [
        NodeState::Online,
        NodeState::Offline,
        NodeState::Maintenance,
    ];

    /// The word `inventory nodes`, the store and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Offline => "offline",
            NodeState::Maintenance => "maintenance",
        }
    }

    /// The state [`NodeState::as_str`] names.
    pub fn parse(word: &str) -> Option<NodeState> {
        NodeState::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// As messages say it: "online", "offline", "in maintenance".
impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeState::Maintenance => write!(f, "in maintenance"),
            other => write!(f, "{}", other.as_str()),
        }
    }
}

/// A node's room, as the inventory reports it (MiB and cores).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub cpus: u32,
    pub memory_mb: u64,
    /// Memory its guests use now.
    pub used_memory_mb: u64,
    /// Memory and cores its guests are configured for (the decision's
    /// caller adds the store's reservations for desktops under way there).
    pub configured_memory_mb: u64,
    pub configured_cores: u32,
}

/// A node of the cluster, as the module's `inventory nodes` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedNode {
    pub node: String,
    pub state: NodeState,
    pub capacity: Capacity,
    pub templates: Vec<String>,
    /// For each template (some or none), the storage a clone of it there
    /// starts from: the same name on two nodes is one (shared) storage.
    pub template_storage: BTreeMap<String, String>,
    /// The VMs on it named like ours: its `configured_memory_mb` counts
    /// them already.
    pub vms: Vec<String>,
}

/// One node, as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub state: NodeState,
    /// Drained by an admin (`daas node drain`): no new desktops.
    pub drained: bool,
    pub capacity: Capacity,
    /// Templates it can clone (on its local storage or a shared one).
    pub templates: Vec<String>,
    /// Our desktops on it.
    pub desktops: u32,
}

/// What the new desktop needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need<'a> {
    pub template: &'a str,
    pub memory_mb: u64,
    pub cores: u32,
}

/// `[placement] strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The least loaded node first.
    #[default]
    Spread,
    /// The most loaded node that still has room first.
    Pack,
}

/// The site's `[placement]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub strategy: Strategy,
    pub memory_reserve_mb: u64,
    /// Clones running at once on one node: not a reason to go elsewhere
    /// (the create waits for its turn there, see `SessionStore::begin_clone`).
    pub max_clones_per_node: u32,
    /// Clones running at once from one storage, whichever node they go to
    /// (a create waits for its turn as above).
    pub max_clones_per_storage: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            strategy: Strategy::Spread,
            memory_reserve_mb: 512,
            max_clones_per_node: 2,
            max_clones_per_storage: 2,
        }
    }
}

/// Why a node cannot take the desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// Offline or in maintenance.
    Down(NodeState),
    Drained,
    NoTemplate,
    /// Not enough memory: what it has free (MiB, counting what its
    /// guests and our desktops there are configured for; negative when
    /// overcommitted), what the desktop needs and the reserve it keeps.
    Full {
        free_mb: i64,
        need_mb: u64,
        reserve_mb: u64,
    },
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Down(state) => write!(f, "{state}"),
            Unfit::Drained => write!(f, "drained"),
            Unfit::NoTemplate => write!(f, "does not hold the template"),
            Unfit::Full {
                free_mb,
                need_mb,
                reserve_mb,
            } => {
                write!(
                    f,
                    "has {free_mb} MiB free, needs {need_mb} MiB and keeps {reserve_mb}"
                )
            }
        }
    }
}

/// No node can take the desktop: why, node by node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRoom {
    pub template: String,
    pub nodes: Vec<(String, Unfit)>,
}

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes.is_empty() {
            return write!(f, "the cluster reports no node");
        }
        write!(f, "no node can take a desktop of '{}': ", self.template)?;
        for (i, (node, why)) in self.nodes.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{node} {why}")?;
        }
        Ok(())
    }
}

/// Why `node` cannot take `need`, if it cannot.
pub fn unfit(node: &Node, need: &Need<'_>, policy: &Policy) -> Option<Unfit> {
    if node.state != NodeState::Online {
        return Some(Unfit::Down(node.state));
    }
    if node.drained {
        return Some(Unfit::Drained);
    }
    if !node.templates.iter().any(|t| t == need.template) {
        return Some(Unfit::NoTemplate);
    }
    let room = &node.capacity;
    let committed = room.used_memory_mb.max(room.configured_memory_mb);
    let free_after = i128::from(room.memory_mb)
        - i128::from(committed)
        - i128::from(need.memory_mb)
        - i128::from(policy.memory_reserve_mb);
    if free_after < 0 {
        let free = i128::from(room.memory_mb) - i128::from(committed);
        return Some(Unfit::Full {
            free_mb: i64::try_from(free).unwrap_or(i64::MIN),
            need_mb: need.memory_mb,
            reserve_mb: policy.memory_reserve_mb,
        });
    }
    None
}

/// The node's load with the desktop on it (see the module's comment).
pub fn score(node: &Node, need: &Need<'_>) -> f64 {
    let share = |used: f64, total: f64| if total > 0.0 { used / total } else { 1.0 };
    let room = &node.capacity;
    let memory = share(
        (room.configured_memory_mb + need.memory_mb) as f64,
        room.memory_mb as f64,
    );
    let cpu = share(
        f64::from(room.configured_cores + need.cores),
        f64::from(room.cpus),
    );
    memory + cpu / 2.0
}

/// The node the desktop goes to (its index in `nodes`), or why none can
/// take it.
pub fn place(nodes: &[Node], need: &Need<'_>, policy: &Policy) -> Result<usize, NoRoom> {
    let mut best: Option<(usize, f64)> = None;
    let mut refused = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        if let Some(why) = unfit(node, need, policy) {
            refused.push((node.name.clone(), why));
            continue;
        }
        let score = score(node, need);
        let better = match best {
            None => true,
            Some((j, best_score)) => {
                let by_score = match policy.strategy {
                    Strategy::Spread => score.total_cmp(&best_score),
                    Strategy::Pack => best_score.total_cmp(&score),
                };
                by_score
                    .then(node.desktops.cmp(&nodes[j].desktops))
                    .then(node.name.cmp(&nodes[j].name))
                    .is_lt()
            }
        };
        if better {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i).ok_or_else(|| NoRoom {
        template: need.template.to_string(),
        nodes: refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, memory_gb: u64, configured_gb: u64) -> Node {
        Node {
            name: name.into(),
            state: NodeState::Online,
            drained: false,
            capacity: Capacity {
                cpus: 64,
                memory_mb: memory_gb * 1024,
                used_memory_mb: configured_gb * 512,
                configured_memory_mb: configured_gb * 1024,
                // As the desktops: 2 cores per 4 GiB.
                configured_cores: u32::try_from(configured_gb / 2).unwrap(),
            },
            templates: vec!["debian-12".into()],
            desktops: 0,
        }
    }

    const NEED: Need<'static> = Need {
        template: "debian-12",
        memory_mb: 4096,
        cores: 2,
    };

    /// Places `count` desktops one after the other, counting each on its
    /// node as the store's reservation would; the desktops per node.
    fn fill(nodes: &mut [Node], count: usize, policy: &Policy) -> Vec<u32> {
        for _ in 0..count {
            let i = place(nodes, &NEED, policy).expect("room");
            nodes[i].capacity.configured_memory_mb += NEED.memory_mb;
            nodes[i].capacity.configured_cores += NEED.cores;
            nodes[i].desktops += 1;
        }
        nodes.iter().map(|n| n.desktops).collect()
    }

    #[test]
    fn spread_goes_to_the_least_loaded_node_and_stays_even() {
        let mut nodes = vec![
            node("pve1", 128, 64),
            node("pve2", 128, 0),
            node("pve3", 128, 32),
        ];
        assert_eq!(place(&nodes, &NEED, &Policy::default()), Ok(1));
        let spread = fill(&mut nodes, 40, &Policy::default());
        // 64 GiB and 32 GiB configured before: pve2 took the most.
        let loads: Vec<u64> = nodes
            .iter()
            .map(|n| n.capacity.configured_memory_mb)
            .collect();
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(max - min <= NEED.memory_mb, "{loads:?} {spread:?}");
    }

    #[test]
    fn pack_fills_one_node_before_the_next() {
        let mut nodes = vec![node("pve1", 64, 0), node("pve2", 64, 0)];
        let policy = Policy {
            strategy: Strategy::Pack,
            ..Policy::default()
        };
        // 64 GiB less the 512 MiB reserve: 15 desktops of 4 GiB fit on one.
        assert_eq!(fill(&mut nodes, 15, &policy), [15, 0]);
        assert_eq!(fill(&mut nodes, 1, &policy), [15, 1]);
    }

    #[test]
    fn nodes_that_cannot_take_it_are_skipped_and_named() {
        let mut offline = node("pve1", 128, 0);
        offline.state = NodeState::Offline;
        let mut maintenance = node("pve2", 128, 0);
        maintenance.state = NodeState::Maintenance;
        let mut drained = node("pve3", 128, 0);
        drained.drained = true;
        let mut other = node("pve4", 128, 0);
        other.templates = vec!["ubuntu".into()];
        let full = node("pve5", 8, 4);
        let fits = node("pve6", 16, 8);
        let mut nodes = vec![offline, maintenance, drained, other, full, fits];
        assert_eq!(place(&nodes, &NEED, &Policy::default()), Ok(5));
        nodes.pop();
        let err = place(&nodes, &NEED, &Policy::default()).unwrap_err();
        let text = err.to_string();
        for part in [
            "no node can take a desktop of 'debian-12'",
            "pve1 offline",
            "pve2 in maintenance",
            "pve3 drained",
            "pve4 does not hold the template",
            "pve5 has 4096 MiB free, needs 4096 MiB and keeps 512",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert_eq!(
            place(&[], &NEED, &Policy::default())
                .unwrap_err()
                .to_string(),
            "the cluster reports no node"
        );
    }

    #[test]
    fn memory_in_use_above_the_configured_counts() {
        let mut hot = node("pve1", 16, 0);
        hot.capacity.used_memory_mb = 12 * 1024;
        assert!(matches!(
            unfit(&hot, &NEED, &Policy::default()),
            Some(Unfit::Full { .. })
        ));
        // The reserve is the site's: without it, the last 4 GiB fit.
        let policy = Policy {
            memory_reserve_mb: 0,
            ..Policy::default()
        };
        assert_eq!(unfit(&hot, &NEED, &policy), None);
    }

    #[test]
    fn equal_nodes_go_to_the_one_with_fewer_desktops_then_by_name() {
        let mut nodes = vec![node("pve2", 64, 0), node("pve1", 64, 0)];
        assert_eq!(place(&nodes, &NEED, &Policy::default()), Ok(1), "by name");
        nodes[1].desktops = 1;
        assert_eq!(place(&nodes, &NEED, &Policy::default()), Ok(0));
    }
}
