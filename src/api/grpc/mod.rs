//! The gRPC adapter (`proto/idnode/v1`). One file per service: `resolver.rs`, `registry.rs`,
//! `admin.rs`, `toplevel.rs` (the top-level node's); `client.rs` (the clients of other nodes,
//! the bearer-token interceptor); `admission.rs` (the tower layer applying the node's
//! admission); `convert.rs` (protobuf ⇄ domain, `ErrorKind` → gRPC code). This file holds
//! the generated types and what every service shares: the token and address of a request,
//! running the core, counting requests.
//!
//! Each method reads the bearer token, converts the request, runs the core on the blocking
//! pool (`Core::blocking`) and converts the answer. No rules live here.

pub mod admission;
pub mod client;
pub mod convert;
pub mod toplevel;

mod admin;
mod registry;
mod resolver;

pub use admin::AdminService;
pub use registry::RegistryService;
pub use resolver::ResolverService;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::error::Error;
use crate::resolver::{Core, Presented};
use crate::telemetry::Telemetry;
use convert::status;

/// Generated protobuf types and service stubs.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("idnode.v1");

    /// Encoded descriptors of every idnode proto file, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("idnode_descriptor");
}

/// The bearer token of a request, if it carries one.
fn bearer<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    let Some(v) = req.metadata().get("authorization") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| Status::unauthenticated("authorization metadata is not ASCII"))?;
    let token = s
        .strip_prefix("Bearer ")
        .or_else(|| s.strip_prefix("bearer "))
        .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?;
    Ok(Some(token.trim().to_owned()))
}

/// The token and client address of a request.
fn presented<T>(req: &Request<T>) -> Result<Presented, Status> {
    let token = bearer(req)?;
    // The address only serves the failed-authentication limiter: skip it when anonymous.
    let client = match token {
        Some(_) => req.remote_addr().map(|a| a.ip()),
        None => None,
    };
    Ok(Presented { token, client })
}

pub use crate::resolver::REQUEST_ID_HEADER;

fn request_id<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    let Some(v) = req.metadata().get(REQUEST_ID_HEADER) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if crate::resolver::valid_request_id(s) => Ok(Some(s.to_owned())),
        _ => Err(Status::invalid_argument(format!(
            "{REQUEST_ID_HEADER} must be 1-128 visible ASCII characters"
        ))),
    }
}

/// Runs `f` with the authenticated caller on the blocking pool.
async fn call<T, R, F>(
    core: &Arc<Core>,
    telemetry: &Telemetry,
    req: &Request<T>,
    op: &'static str,
    f: F,
) -> Result<Response<R>, Status>
where
    R: Send + 'static,
    F: FnOnce(&Core, &Caller) -> Result<R, Error> + Send + 'static,
{
    let started = std::time::Instant::now();
    let presented = presented(req)?;
    let request = request_id(req)?;
    let r = core
        .blocking(move |c| {
            let caller = c.caller(&presented)?;
            crate::resolver::as_request(request.as_deref(), presented.credential(), || {
                f(c, &caller)
            })
        })
        .await;
    observe(telemetry, op, started, &r);
    r.map(Response::new).map_err(status)
}

/// Counts a request and its latency by outcome (the gRPC code's name).
fn observe<R>(
    telemetry: &Telemetry,
    op: &'static str,
    started: std::time::Instant,
    r: &Result<R, Error>,
) {
    let outcome = match r {
        Ok(_) => "ok",
        Err(e) => e.kind.name(),
    };
    telemetry.request("grpc", op, outcome, started.elapsed());
}
