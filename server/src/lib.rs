//! `daas-server`: the DaaS orchestrator's gRPC server.
//!
//! The modules, bottom to top (each imports only from its own floor or
//! below; `scripts/check-layers.py` checks it):
//! - [`domain`] (errors and codes, validation, the state machine, the
//!   caller's identity, time, the contract's names) and [`files`];
//! - the [`store`] of sessions and events, the [`config`], the [`pki`];
//! - the [`audit`] trail and the [`metrics`];
//! - the [`provision`] pipeline (Terraform, boot, Ansible, through one tool
//!   runner; the sweeper) and the [`webhooks`];
//! - the warm [`pool`]s and the [`reaper`] of idle desktops;
//! - the [`sessions`] service: create, claim, watch, list, destroy, with
//!   who may do what, limits and the audit trail;
//! - the [`api`] (gRPC and HTTP adapters, authentication, metering) and the
//!   [`web`] portal (sign-in, the page, the RDP gateway);
//! - [`app`], which wires it all together.

pub mod api;
pub mod app;
pub mod audit;
pub mod config;
pub mod domain;
pub mod files;
pub mod metrics;
pub mod pki;
pub mod pool;
pub mod provision;
pub mod reaper;
pub mod sessions;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod web;
pub mod webhooks;
