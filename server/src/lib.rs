//! `daas-server`: the DaaS orchestrator's gRPC server.
//!
//! A request reaches the [`api`] (gRPC services, authentication, limits;
//! the HTTP side's health, readiness and [`metrics`]),
//! becomes a session in the [`store`], and the [`provision`] pipeline runs
//! its stages (Terraform, boot, Ansible) through one tool runner; the
//! [`reaper`] destroys idle desktops and the sweeper VMs no session owns;
//! each [`pool`] keeps desktops built ahead of time for creates to claim;
//! [`webhooks`] tell other systems when a desktop is ready, failed, warned
//! or destroyed.
//! The [`web`] portal lets people sign in with their domain account, get a
//! desktop and use it in the browser tab through its RDP gateway.
//! The [`domain`] holds what every part agrees on: the session state
//! machine, request validation and the error codes. [`app`] wires it all
//! together.

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
