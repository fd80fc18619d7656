//! The cluster's nodes for administrators: list them with what the server
//! placed on each, drain one (no new desktops) and resume it. Drains and
//! resumes are audited.

use daas_api::v1::{Node, SessionState};

use super::{Sessions, admin_only};
use crate::{
    audit::{Act, Actor},
    domain::{error::Error, identity::Caller, placement::NodeState, time::clock_time, validate},
    store::SessionRecord,
};

impl Sessions {
    /// Refuses to destroy a LOST desktop while its node is not online:
    /// its destroy could only fail (the sweeper destroys its VM once the
    /// node is back).
    pub(super) async fn lost_with_its_node(&self, record: &SessionRecord) -> Result<(), Error> {
        if record.state != SessionState::Lost {
            return Ok(());
        }
        let node = record.node.clone().unwrap_or_default();
        let down = self
            .store
            .nodes()
            .await?
            .into_iter()
            .find(|n| n.listed.node == node)
            .filter(|n| n.listed.state != NodeState::Online);
        match down {
            Some(n) => Err(Error::Unavailable(format!(
                "desktop {} is lost with node {node}, {} since {}: its VM is destroyed when the node is back",
                record.id,
                n.listed.state,
                clock_time(n.offline_since_ms.unwrap_or(n.seen_ms))
            ))),
            None => Ok(()),
        }
    }

    /// Every node the store knows, by name (administrators).
    pub async fn nodes(&self, caller: &Caller) -> Result<Vec<Node>, Error> {
        admin_only(caller, "list the cluster's nodes")?;
        let nodes = self.store.nodes().await?;
        Ok(nodes.iter().map(|n| n.to_proto()).collect())
    }

    /// Drains node `name` or resumes it (administrators); the node as it
    /// is now.
    pub async fn set_drained(
        &self,
        caller: &Caller,
        actor: &Actor,
        name: &str,
        drained: bool,
    ) -> Result<Node, Error> {
        let action = if drained { "drain_node" } else { "resume_node" };
        admin_only(caller, "drain or resume a node")?;
        validate::node_name(name)?;
        if !self.store.set_drained(name, drained).await? {
            let err = Error::NoSuchNode(name.to_string());
            self.audit
                .record(actor, Act::new(action).detail(name).failed(&err))
                .await;
            return Err(err);
        }
        self.audit
            .record(actor, Act::new(action).detail(name))
            .await;
        if drained {
            tracing::warn!(node = name, "node drained: it takes no new desktop");
        } else {
            tracing::info!(node = name, "node resumed: it takes new desktops again");
        }
        let nodes = self.store.nodes().await?;
        nodes
            .iter()
            .find(|n| n.listed.node == name)
            .map(|n| n.to_proto())
            .ok_or_else(|| Error::NoSuchNode(name.to_string()))
    }
}
