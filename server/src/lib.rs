//! `daas-server`: the DaaS orchestrator's gRPC server.
//!
//! A request becomes a session in the [`store`]; the [`pipeline`] runs
//! Terraform ([`terraform`]), waits for the VM ([`boot`]) and runs Ansible
//! ([`ansible`]), every tool through [`tool`]; the [`service`] streams the
//! session's events to callers.

pub mod agent_api;
pub mod ansible;
pub mod auth;
pub mod boot;
pub mod config;
pub mod error;
pub mod events;
pub mod inventory;
pub mod limits;
pub mod locks;
pub mod pipeline;
pub mod pki;
pub mod policy;
pub mod reaper;
pub mod retention;
pub mod serve;
pub mod service;
pub mod sshkey;
pub mod state_machine;
pub mod store;
pub mod sweeper;
pub mod terraform;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tool;
pub mod validate;
