//! The gRPC side: `daas.v1.DesktopService` ([`desktop`]) for people,
//! `daas.v1.AgentService` ([`agent`]) for the in-VM agents, the
//! authentication layer ([`auth`]) and the
//! requests' metrics ([`metered`]).

pub mod agent;
pub mod auth;
pub mod desktop;
pub mod metered;
