//! The SQLite store's own tests: databases made at every older schema
//! version still open (`tests/migrations.rs`). What every backend must do
//! is the conformance suite's (`store/conformance.rs`).

mod migrations;
