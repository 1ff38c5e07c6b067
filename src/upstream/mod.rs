//! Forwarding: how a secondary node finds and asks the node that serves an identifier.
//!
//! [`Upstream`] is the seam to the top-level node: [`GrpcUpstream`] talks to an external one,
//! [`LocalUpstream`] calls an embedded one in-process. [`Forwarder`] sits in front of either:
//! referral and record caches, single-flight misses, retries, serve-stale. Local resolution
//! never goes through here.

mod forward;

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::Code;

pub use forward::{Answer, ForwardConfig, ForwardStats, Forwarder};

use crate::api::grpc::{pb, BearerAuth};
use crate::auth::Caller;
use crate::error::{Error, ErrorKind, Result};
use crate::identifier::Prefix;
use crate::toplevel::{Endpoints, InterfaceCount, Referral, Report, TopLevel};

/// gRPC metadata key carrying how many nodes a resolution already passed through.
pub const HOPS_HEADER: &str = "x-idnode-hops";

/// The top-level node, as a secondary node sees it.
#[tonic::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// Who serves `prefix`. `NotFound` is authoritative; other errors mean "could not ask".
    async fn locate(&self, prefix: &Prefix) -> Result<Referral>;
    /// Announces this node's endpoints.
    async fn heartbeat(&self, endpoints: &Endpoints) -> Result<()>;
    /// Reports this node's counts.
    async fn report(&self, report: &Report) -> Result<()>;
    /// For messages: "the top-level node at http://...".
    fn describe(&self) -> String;
}

/// Maps a status from another node to our error: not-found stays not-found, anything else
/// means the other side could not answer.
pub fn remote_error(what: &str, s: tonic::Status) -> Error {
    match s.code() {
        Code::NotFound => Error::not_found(s.message().to_owned()),
        Code::InvalidArgument => Error::invalid(s.message().to_owned()),
        code => Error::new(
            ErrorKind::Unavailable,
            format!("{what} failed: {code:?}: {}", s.message()),
        ),
    }
}

/// An external top-level node over gRPC, authenticated with this node's node token.
pub struct GrpcUpstream {
    url: String,
    client: pb::top_level_client::TopLevelClient<
        tonic::service::interceptor::InterceptedService<Channel, BearerAuth>,
    >,
    timeout: Duration,
}

impl GrpcUpstream {
    /// A lazily connecting client: the node starts even while the top-level node is down.
    pub fn new(
        url: &str,
        token: Option<&str>,
        timeout: Duration,
        tls: Option<&crate::tls::ClientTls>,
    ) -> Result<GrpcUpstream> {
        let channel = crate::tls::lazy_channel(url, timeout, tls)
            .map_err(|e| Error::invalid(format!("upstream: {e}")))?;
        let client = pb::top_level_client::TopLevelClient::with_interceptor(
            channel,
            BearerAuth::new(token)?,
        );
        Ok(GrpcUpstream {
            url: url.to_owned(),
            client,
            timeout,
        })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout);
        req
    }
}

fn endpoints_to(e: &Endpoints) -> pb::Endpoints {
    pb::Endpoints {
        grpc: e.grpc.clone(),
        dns: e.dns.clone(),
        http: e.http.clone(),
    }
}

#[tonic::async_trait]
impl Upstream for GrpcUpstream {
    async fn locate(&self, prefix: &Prefix) -> Result<Referral> {
        let r = self
            .client
            .clone()
            .locate(self.request(pb::LocateRequest {
                prefix: prefix.to_string(),
            }))
            .await
            .map_err(|s| remote_error(&self.describe(), s))?
            .into_inner();
        let e = r.endpoints.unwrap_or_default();
        Ok(Referral {
            node_prefix: Prefix::parse(&r.node_prefix).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("{} sent a bad referral: {e}", self.describe()),
                )
            })?,
            node_id: r.node_id,
            node_name: r.node_name,
            endpoints: Endpoints {
                grpc: e.grpc,
                dns: e.dns,
                http: e.http,
            },
            ttl: r.ttl,
        })
    }

    async fn heartbeat(&self, endpoints: &Endpoints) -> Result<()> {
        self.client
            .clone()
            .heartbeat(self.request(pb::HeartbeatRequest {
                endpoints: Some(endpoints_to(endpoints)),
            }))
            .await
            .map_err(|s| remote_error(&self.describe(), s))?;
        Ok(())
    }

    async fn report(&self, report: &Report) -> Result<()> {
        self.client
            .clone()
            .report_stats(self.request(pb::ReportStatsRequest {
                registered: report.registered,
                prefixes: prefix_totals_to(&report.prefixes),
                resolutions: report.resolutions.iter().map(interface_count_to).collect(),
                head: report.head.clone().map(crate::api::grpc::toplevel::head_to),
            }))
            .await
            .map_err(|s| remote_error(&self.describe(), s))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("the top-level node at {}", self.url)
    }
}

pub fn prefix_totals_to(prefixes: &[(String, i64)]) -> Vec<pb::PrefixTotal> {
    prefixes
        .iter()
        .map(|(prefix, registered)| pb::PrefixTotal {
            prefix: prefix.clone(),
            registered: *registered,
        })
        .collect()
}

pub fn interface_count_to(c: &InterfaceCount) -> pb::InterfaceCount {
    pb::InterfaceCount {
        interface: c.interface.clone(),
        local: c.local,
        forwarded: c.forwarded,
    }
}

/// A top-level node running in this process (the embedded default).
pub struct LocalUpstream {
    top: Arc<TopLevel>,
    /// The embedding node's own delegation, for heartbeats and reports.
    node_prefix: Prefix,
}

impl LocalUpstream {
    pub fn new(top: Arc<TopLevel>, node_prefix: Prefix) -> LocalUpstream {
        LocalUpstream { top, node_prefix }
    }
}

#[tonic::async_trait]
impl Upstream for LocalUpstream {
    async fn locate(&self, prefix: &Prefix) -> Result<Referral> {
        self.top.locate(prefix)
    }

    async fn heartbeat(&self, endpoints: &Endpoints) -> Result<()> {
        let top = Arc::clone(&self.top);
        let (caller, endpoints) = (Caller::Node(self.node_prefix.clone()), endpoints.clone());
        tokio::task::spawn_blocking(move || top.heartbeat(&caller, endpoints).map(|_| ()))
            .await
            .map_err(Error::internal)?
    }

    async fn report(&self, report: &Report) -> Result<()> {
        let top = Arc::clone(&self.top);
        let (caller, report) = (Caller::Node(self.node_prefix.clone()), report.clone());
        tokio::task::spawn_blocking(move || top.report(&caller, report))
            .await
            .map_err(Error::internal)?
    }

    fn describe(&self) -> String {
        "the embedded top-level node".to_owned()
    }
}
