//! The gRPC adapter of the top-level node (`idnode.v1.TopLevel`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::status;
use super::{bearer, convert, pb};
use crate::auth::Caller;
use crate::error::Result;
use crate::identifier::{Identifier, Prefix};
use crate::toplevel::{Endpoints, InterfaceCount, NodeStatus, Report, ServerStatus, TopLevel};
use crate::upstream::Forwarder;
use convert::{endpoints_to, interface_count_to, prefix_totals_to};

pub struct TopLevelService {
    top: Arc<TopLevel>,
    /// Recursive resolution: this top-level node as the upstream of a forwarder.
    forwarder: Arc<Forwarder>,
}

impl TopLevelService {
    pub fn new(top: Arc<TopLevel>, forwarder: Arc<Forwarder>) -> TopLevelService {
        TopLevelService { top, forwarder }
    }
}

/// Runs `f` with the authenticated caller (under the failed-authentication lockout) on the
/// blocking pool.
async fn call<T, R, F>(top: &Arc<TopLevel>, req: &Request<T>, f: F) -> Result<Response<R>, Status>
where
    R: Send + 'static,
    F: FnOnce(&TopLevel, &Caller) -> Result<R> + Send + 'static,
{
    let token = bearer(req)?;
    let client = req.remote_addr().map(|a| a.ip());
    let top = Arc::clone(top);
    crate::blocking::run(move || {
        let caller = top.caller(token.as_deref(), client)?;
        f(&top, &caller)
    })
    .await
    .and_then(|r| r)
    .map(Response::new)
    .map_err(status)
}

fn endpoints_from(e: Option<pb::Endpoints>) -> Endpoints {
    let e = e.unwrap_or_default();
    Endpoints {
        grpc: e.grpc,
        dns: e.dns,
        http: e.http,
    }
}

pub fn server_to(s: &ServerStatus) -> pb::Server {
    pb::Server {
        name: s.name.clone(),
        endpoints: Some(endpoints_to(&s.endpoints)),
        live: s.live,
        last_heartbeat: s.last_heartbeat,
    }
}

/// The first server's endpoints: where a client that knows one address asks.
fn first_endpoints(servers: &[ServerStatus]) -> Option<pb::Endpoints> {
    Some(
        servers
            .first()
            .map(|s| endpoints_to(&s.endpoints))
            .unwrap_or_default(),
    )
}

fn delegation_to(s: &NodeStatus) -> pb::Delegation {
    pb::Delegation {
        node_prefix: s.delegation.prefix.clone(),
        node_id: s.delegation.node_id.clone(),
        name: s.delegation.name.clone(),
        endpoints: first_endpoints(&s.servers),
        live: s.live,
        last_heartbeat: s.last_heartbeat,
        servers: s.servers.iter().map(server_to).collect(),
    }
}

pub fn head_to(h: crate::audit::SignedHead) -> pb::SignedHead {
    pb::SignedHead {
        seq: h.seq,
        hash: h.hash,
        at: h.at,
        signature: h.signature,
        public_key: h.public_key,
    }
}

fn prefix(text: &str) -> Result<Prefix, Status> {
    Prefix::parse(text).map_err(|e| status(e.into()))
}

#[tonic::async_trait]
impl pb::top_level_server::TopLevel for TopLevelService {
    async fn locate(
        &self,
        req: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::Referral>, Status> {
        let p = prefix(&req.get_ref().prefix)?;
        let r = self.top.locate(&p).map_err(status)?;
        Ok(Response::new(pb::Referral {
            node_prefix: r.node_prefix.to_string(),
            node_id: r.node_id,
            node_name: r.node_name,
            endpoints: first_endpoints(&r.servers),
            ttl: r.ttl,
            servers: r.servers.iter().map(server_to).collect(),
        }))
    }

    async fn resolve(
        &self,
        req: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let r = req.into_inner();
        let id = Identifier::parse(&r.identifier).map_err(|e| status(e.into()))?;
        let values = self.forwarder.resolve(&id).await.map_err(status)?;
        let filter = crate::resolver::Filter {
            types: r.types,
            indexes: r.indexes,
        };
        Ok(Response::new(pb::ResolveResponse {
            identifier: id.to_string(),
            values: values
                .iter()
                .filter(|v| v.permissions.public_read && filter.admits(v))
                .cloned()
                .map(convert::value_to)
                .collect(),
        }))
    }

    async fn heartbeat(
        &self,
        mut req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let endpoints = endpoints_from(req.get_mut().endpoints.take());
        let server = std::mem::take(&mut req.get_mut().server);
        call(&self.top, &req, move |t, caller| {
            let (node_prefix, servers) = t.heartbeat(caller, &server, endpoints)?;
            Ok(pb::HeartbeatResponse {
                servers: servers.iter().map(server_to).collect(),
                node_prefix: node_prefix.to_string(),
                interval: t.config().heartbeat_interval,
            })
        })
        .await
    }

    async fn report_stats(
        &self,
        mut req: Request<pb::ReportStatsRequest>,
    ) -> Result<Response<pb::ReportStatsResponse>, Status> {
        let r = std::mem::take(req.get_mut());
        let report = Report {
            server: r.server,
            registered: r.registered,
            prefixes: r
                .prefixes
                .into_iter()
                .map(|p| (p.prefix, p.registered))
                .collect(),
            resolutions: r
                .resolutions
                .into_iter()
                .map(|c| InterfaceCount {
                    interface: c.interface,
                    local: c.local,
                    forwarded: c.forwarded,
                })
                .collect(),
            received_at: 0,
            head_seq: 0,
            head: r.head.map(|h| crate::audit::SignedHead {
                node_prefix: String::new(),
                seq: h.seq,
                hash: h.hash,
                at: h.at,
                signature: h.signature,
                public_key: h.public_key,
            }),
        };
        call(&self.top, &req, move |t, caller| {
            let mut report = report;
            if let (Some(h), Caller::Node(p)) = (report.head.as_mut(), caller) {
                h.node_prefix = p.to_string();
            }
            t.report(caller, report)?;
            Ok(pb::ReportStatsResponse {})
        })
        .await
    }

    async fn get_stats(
        &self,
        req: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        call(&self.top, &req, |t, _| {
            let s = t.stats()?;
            Ok(pb::GetStatsResponse {
                registered: s.registered,
                goal: s.goal,
                progress: s.progress(),
                nodes: s.nodes.len() as u32,
                live_nodes: s.nodes.iter().filter(|(n, _)| n.live).count() as u32,
                resolutions: s.resolutions,
                per_node: s
                    .nodes
                    .iter()
                    .map(|(n, r)| {
                        let r = r.clone().unwrap_or_default();
                        pb::NodeStats {
                            node_prefix: n.delegation.prefix.clone(),
                            node_id: n.delegation.node_id.clone(),
                            node_name: n.delegation.name.clone(),
                            live: n.live,
                            last_heartbeat: n.last_heartbeat,
                            last_report: r.received_at,
                            registered: r.registered,
                            prefixes: prefix_totals_to(&r.prefixes),
                            resolutions: r.resolutions.iter().map(interface_count_to).collect(),
                        }
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn add_delegation(
        &self,
        mut req: Request<pb::AddDelegationRequest>,
    ) -> Result<Response<pb::AddDelegationResponse>, Status> {
        let r = std::mem::take(req.get_mut());
        let p = prefix(&r.node_prefix)?;
        let endpoints = endpoints_from(r.endpoints);
        call(&self.top, &req, move |t, caller| {
            let (d, token) = t.add_delegation(caller, &p, &r.node_id, &r.name, endpoints)?;
            Ok(pb::AddDelegationResponse {
                delegation: Some(delegation_to(&NodeStatus {
                    servers: t
                        .nodes()
                        .into_iter()
                        .find(|n| n.delegation.prefix == d.prefix)
                        .map(|n| n.servers)
                        .unwrap_or_default(),
                    delegation: d,
                    live: false,
                    last_heartbeat: 0,
                })),
                token,
            })
        })
        .await
    }

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupResponse>, Status> {
        let destination = req.get_ref().destination.clone();
        call(&self.top, &req, move |top, caller| {
            top.backup(caller, std::path::Path::new(&destination))
                .map(convert::backup_to)
        })
        .await
    }

    async fn list_delegations(
        &self,
        req: Request<pb::ListDelegationsRequest>,
    ) -> Result<Response<pb::ListDelegationsResponse>, Status> {
        call(&self.top, &req, |t, _| {
            Ok(pb::ListDelegationsResponse {
                delegations: t.nodes().iter().map(delegation_to).collect(),
            })
        })
        .await
    }

    async fn remove_delegation(
        &self,
        req: Request<pb::RemoveDelegationRequest>,
    ) -> Result<Response<pb::RemoveDelegationResponse>, Status> {
        let p = prefix(&req.get_ref().node_prefix)?;
        call(&self.top, &req, move |t, caller| {
            t.remove_delegation(caller, &p)?;
            Ok(pb::RemoveDelegationResponse {})
        })
        .await
    }

    async fn get_heads(
        &self,
        req: Request<pb::GetHeadsRequest>,
    ) -> Result<Response<pb::GetHeadsResponse>, Status> {
        let p = prefix(&req.get_ref().node_prefix)?;
        call(&self.top, &req, move |t, _| {
            Ok(pb::GetHeadsResponse {
                heads: t.heads(&p)?.into_iter().map(head_to).collect(),
            })
        })
        .await
    }
}
