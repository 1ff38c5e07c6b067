//! `idnode.v1.Resolver`: resolution, local or forwarded (`Core::resolve_routed`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, status};
use super::{client, observe, pb, presented};
use crate::resolver::{Core, Filter, Interface};
use crate::telemetry::Telemetry;

/// `idnode.v1.Resolver`.
pub struct ResolverService {
    core: Arc<Core>,
    telemetry: Arc<Telemetry>,
}

impl ResolverService {
    pub fn new(core: Arc<Core>, telemetry: Arc<Telemetry>) -> ResolverService {
        ResolverService { core, telemetry }
    }
}

#[tonic::async_trait]
impl pb::resolver_server::Resolver for ResolverService {
    async fn resolve(
        &self,
        req: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let r = req.get_ref();
        let id = self.core.parse_identifier(&r.identifier).map_err(status)?;
        let filter = Filter {
            types: r.types.clone(),
            indexes: r.indexes.clone(),
        };
        let presented = presented(&req)?;
        let hops = hops(&req)?;
        let started = std::time::Instant::now();
        let resolved = self
            .core
            .resolve_routed(presented, id, filter, hops, Interface::Grpc)
            .await;
        observe(&self.telemetry, "resolve", started, &resolved);
        Ok(Response::new(resolved_to(resolved.map_err(status)?)))
    }
}

pub fn resolved_to(resolved: crate::resolver::Resolved) -> pb::ResolveResponse {
    pb::ResolveResponse {
        identifier: resolved.identifier.into_string(),
        values: resolved.values.into_iter().map(convert::value_to).collect(),
    }
}

/// How many nodes a request already passed through (`x-idnode-hops`, absent = 0).
fn hops<T>(req: &Request<T>) -> Result<u32, Status> {
    match req.metadata().get(client::HOPS_HEADER) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Status::invalid_argument("x-idnode-hops must be a number")),
    }
}
