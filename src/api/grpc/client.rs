//! The gRPC clients of other nodes: the top-level node as a [`Locator`] and [`Reporter`]
//! ([`GrpcUpstream`]), other secondary nodes as [`Peers`] ([`GrpcPeers`]), and the bearer
//! token every call carries. They implement the traits `upstream` owns, so forwarding never
//! sees a wire type.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::{convert, pb};
use crate::error::{Error, ErrorKind, Result};
use crate::identifier::{Identifier, Prefix};
use crate::record::Value;
use crate::toplevel::{Endpoints, Referral, Report, ServerStatus};
use crate::upstream::{Federation, Locator, Peers, Reporter};

/// gRPC metadata key carrying how many nodes a resolution already passed through.
pub const HOPS_HEADER: &str = "x-idnode-hops";

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

fn servers_from(servers: Vec<pb::Server>) -> Vec<ServerStatus> {
    servers
        .into_iter()
        .map(|s| {
            let e = s.endpoints.unwrap_or_default();
            ServerStatus {
                name: s.name,
                endpoints: Endpoints {
                    grpc: e.grpc,
                    dns: e.dns,
                    http: e.http,
                },
                live: s.live,
                last_heartbeat: s.last_heartbeat,
            }
        })
        .collect()
}

#[async_trait::async_trait]
impl Locator for GrpcUpstream {
    async fn locate(&self, prefix: &Prefix) -> Result<Referral> {
        let r = self
            .client
            .clone()
            .locate(self.request(pb::LocateRequest {
                prefix: prefix.to_string(),
            }))
            .await
            .map_err(|s| remote_error(&Locator::describe(self), s))?
            .into_inner();
        let mut servers = servers_from(r.servers);
        // A top-level node from before sites names one server.
        if let (true, Some(e)) = (servers.is_empty(), r.endpoints) {
            servers.push(ServerStatus {
                name: String::new(),
                endpoints: Endpoints {
                    grpc: e.grpc,
                    dns: e.dns,
                    http: e.http,
                },
                live: true,
                last_heartbeat: 0,
            });
        }
        Ok(Referral {
            node_prefix: Prefix::parse(&r.node_prefix).map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("{} sent a bad referral: {e}", Locator::describe(self)),
                )
            })?,
            node_id: r.node_id,
            node_name: r.node_name,
            servers,
            ttl: r.ttl,
        })
    }

    fn describe(&self) -> String {
        format!("the top-level node at {}", self.url)
    }
}

#[async_trait::async_trait]
impl Reporter for GrpcUpstream {
    async fn heartbeat(&self, server: &str, endpoints: &Endpoints) -> Result<Vec<ServerStatus>> {
        let r = self
            .client
            .clone()
            .heartbeat(self.request(pb::HeartbeatRequest {
                endpoints: Some(convert::endpoints_to(endpoints)),
                server: server.to_owned(),
            }))
            .await
            .map_err(|s| remote_error(&Locator::describe(self), s))?;
        Ok(servers_from(r.into_inner().servers))
    }

    async fn report(&self, report: &Report) -> Result<()> {
        self.client
            .clone()
            .report_stats(
                self.request(pb::ReportStatsRequest {
                    registered: report.registered,
                    prefixes: convert::prefix_totals_to(&report.prefixes),
                    resolutions: report
                        .resolutions
                        .iter()
                        .map(convert::interface_count_to)
                        .collect(),
                    head: report.head.clone().map(super::toplevel::head_to),
                    server: report.server.clone(),
                }),
            )
            .await
            .map_err(|s| remote_error(&Locator::describe(self), s))?;
        Ok(())
    }

    async fn federation(&self) -> Result<Federation> {
        let s = self
            .client
            .clone()
            .get_stats(self.request(pb::GetStatsRequest {}))
            .await
            .map_err(|s| remote_error(&Locator::describe(self), s))?
            .into_inner();
        Ok(Federation {
            registered: s.registered,
            goal: s.goal,
            nodes: s.nodes,
            live_nodes: s.live_nodes,
            resolutions: s.resolutions,
        })
    }

    fn describe(&self) -> String {
        Locator::describe(self)
    }
}

/// Other secondary nodes over gRPC: one lazily connecting channel per URL (at most
/// [`MAX_PEER_CHANNELS`]), anonymous requests with one hop recorded.
pub struct GrpcPeers {
    timeout: Duration,
    tls: Option<crate::tls::ClientTls>,
    channels: Mutex<HashMap<String, Channel>>,
}

/// Channels to other nodes kept at once (the table is emptied when full).
const MAX_PEER_CHANNELS: usize = 1024;

impl GrpcPeers {
    /// `timeout` bounds each call; `tls` is trusted for `https://` peers.
    pub fn new(timeout: Duration, tls: Option<crate::tls::ClientTls>) -> GrpcPeers {
        GrpcPeers {
            timeout,
            tls,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, url: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        if channels.len() >= MAX_PEER_CHANNELS {
            channels.clear();
        }
        let channel = crate::tls::lazy_channel(url, self.timeout, self.tls.as_ref())
            .map_err(|e| Error::new(ErrorKind::Unavailable, e))?;
        channels.insert(url.to_owned(), channel.clone());
        Ok(channel)
    }
}

#[async_trait::async_trait]
impl Peers for GrpcPeers {
    async fn resolve(&self, url: &str, id: &Identifier) -> Result<Vec<Value>> {
        let what = format!("the node at {url}");
        let mut client = pb::resolver_client::ResolverClient::new(self.channel(url)?);
        let mut req = tonic::Request::new(pb::ResolveRequest {
            identifier: id.to_string(),
            ..Default::default()
        });
        req.set_timeout(self.timeout);
        req.metadata_mut()
            .insert(HOPS_HEADER, tonic::metadata::MetadataValue::from(1u32));
        let r = client
            .resolve(req)
            .await
            .map_err(|s| remote_error(&what, s))?
            .into_inner();
        r.values
            .into_iter()
            .map(|v| {
                let timestamp = v.timestamp;
                convert::value_from(v)
                    .map(|mut v| {
                        v.timestamp = timestamp;
                        v
                    })
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Unavailable,
                            format!("{what} sent an invalid value: {}", e.message),
                        )
                    })
            })
            .collect()
    }
}

/// Client-side interceptor adding `authorization: Bearer <token>` to every call (used by the
/// CLI and by nodes talking to each other).
#[derive(Clone, Default)]
pub struct BearerAuth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl BearerAuth {
    /// Errors if the token has characters that cannot go in a header.
    pub fn new(token: Option<&str>) -> Result<BearerAuth, Error> {
        token
            .map(|t| {
                format!("Bearer {}", t.trim()).parse().map_err(|_| {
                    Error::invalid("the token contains characters not allowed in a header")
                })
            })
            .transpose()
            .map(BearerAuth)
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}
