//! Protocol adapters: decode a request, call the core, encode the answer. Nothing else.
//!
//! Wire types (protobuf today; DNS messages and HTTP JSON later) stop here; each adapter has
//! one `convert.rs` and maps `ErrorKind` exhaustively in one place.

pub mod grpc;
