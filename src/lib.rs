//! The DaaS orchestrator's wire API (`daas.v1`), generated from `proto/`.
//!
//! Every other crate of the workspace talks to the others through these types.

/// Protobuf package `daas.v1`.
pub mod v1 {
    tonic::include_proto!("daas.v1");

    /// The encoded `FileDescriptorSet` of every proto in `proto/`, for
    /// server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("daas_descriptor");
}

pub mod address;
pub mod state;
