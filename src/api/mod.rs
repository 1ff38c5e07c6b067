//! Protocol adapters: decode a request, call the core, encode the answer. Nothing else.
//!
//! Wire types (protobuf, DNS messages, Handle JSON) stop here; each adapter has
//! one `convert.rs` and maps `ErrorKind` exhaustively in one place.

pub mod admission;
pub mod console;
pub mod dns;
pub mod grpc;
pub mod http;
