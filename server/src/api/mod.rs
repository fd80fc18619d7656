//! The server's API: the gRPC services (`grpc`) and the HTTP side (`http`).

pub mod grpc;
pub mod http;
