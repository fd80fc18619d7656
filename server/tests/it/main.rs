//! The server's integration tests, one test binary (`--test it`): each
//! module is what was a test binary of its own, so the server, the agent and
//! the helpers link once rather than once a file. Run one file's tests with
//! `cargo nextest run -p daas-server --test it web::` (a filter on the
//! module's path).

mod common;
mod fake_xrdp;

mod agent_commands;
mod ansible_injection;
mod api;
mod audit;
mod bad_input;
mod browser;
mod catalog;
mod clipboard;
mod cluster;
mod contract;
mod dashboard;
mod faults;
mod flood;
mod gateway;
mod http;
mod kept_disks;
mod logs;
mod orgs;
mod pki_cli;
mod pool;
mod prestart;
mod provisioning;
mod reaper;
mod recording;
mod replicas;
mod rest;
mod restart;
mod schedules;
mod secrets;
mod security;
mod tools;
mod web;
mod webhooks;
