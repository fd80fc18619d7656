//! The server's API: today the gRPC services (`grpc`).

pub mod grpc;
