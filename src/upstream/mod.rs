//! Forwarding: how a secondary node finds and asks the node that serves an identifier.
//!
//! The seams are traits this module owns and others implement: [`Locator`] (which node serves
//! a prefix: the top-level node), [`Reporter`] (heartbeats and statistics to it) and
//! [`Peers`] (asking another node). Over gRPC they are `api::grpc::client`'s; the embedded
//! top-level node's are [`LocalLocator`] and [`LocalReporter`] here. [`Forwarder`] sits on a
//! locator and peers — referral and record caches, single-flight misses, retries,
//! serve-stale — and is the core's `resolver::Remote`. Local resolution never comes here.

mod forward;

use std::sync::Arc;

pub use forward::{Answer, ForwardConfig, ForwardStats, Forwarder};

use crate::auth::Caller;
use crate::error::Result;
use crate::identifier::{Identifier, Prefix};
use crate::record::Value;
use crate::toplevel::{Endpoints, Referral, Report, ServerStatus, TopLevel};

/// The top-level node as a secondary node asks it where prefixes are served.
#[async_trait::async_trait]
pub trait Locator: Send + Sync + 'static {
    /// Who serves `prefix`. `NotFound` is authoritative; other errors mean "could not ask".
    async fn locate(&self, prefix: &Prefix) -> Result<Referral>;
    /// For logs and messages: "the top-level node at http://...".
    fn describe(&self) -> String;
}

/// The top-level node as a secondary node reports to it.
#[async_trait::async_trait]
pub trait Reporter: Send + Sync + 'static {
    /// Announces this server's endpoints (`server`: its name in its site, "" for a
    /// single-process node); returns every server of this node the top-level node knows.
    async fn heartbeat(&self, server: &str, endpoints: &Endpoints) -> Result<Vec<ServerStatus>>;
    /// Reports this node's counts.
    async fn report(&self, report: &Report) -> Result<()>;
    /// The top-level node's figures over every node (registrations toward the goal,
    /// liveness), as last reported to it. Errors: `Unavailable` when it cannot be asked.
    async fn federation(&self) -> Result<Federation>;
    /// For logs and messages.
    fn describe(&self) -> String;
}

/// The top-level node's statistics over all nodes, as a node shows them (the console's
/// dashboard): the province's registrations toward its goal, and its nodes' liveness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Federation {
    /// Registrations the nodes last reported, summed.
    pub registered: i64,
    /// The province's registration goal (20,000,000,000 by default).
    pub goal: i64,
    /// Delegated nodes, and those with a recent heartbeat.
    pub nodes: u32,
    pub live_nodes: u32,
    /// Resolutions the nodes last reported, summed.
    pub resolutions: u64,
}

impl Federation {
    /// From the top-level node's statistics.
    pub fn of(s: &crate::toplevel::Stats) -> Federation {
        Federation {
            registered: s.registered,
            goal: s.goal,
            nodes: s.nodes.len() as u32,
            live_nodes: s.nodes.iter().filter(|(n, _)| n.live).count() as u32,
            resolutions: s.resolutions,
        }
    }
}

/// Other secondary nodes, asked anonymously with one hop recorded (they never forward).
#[async_trait::async_trait]
pub trait Peers: Send + Sync + 'static {
    /// The public values of `id` from the node at `url`. `NotFound` is authoritative;
    /// `Unavailable` (with detail for the log, never for clients) means "could not ask".
    async fn resolve(&self, url: &str, id: &Identifier) -> Result<Vec<Value>>;
}

/// A top-level node running in this process (the embedded default, or the top-level node
/// itself for its recursive resolution), as a locator.
pub struct LocalLocator(pub Arc<TopLevel>);

#[async_trait::async_trait]
impl Locator for LocalLocator {
    async fn locate(&self, prefix: &Prefix) -> Result<Referral> {
        self.0.locate(prefix)
    }

    fn describe(&self) -> String {
        "the embedded top-level node".to_owned()
    }
}

/// The embedded top-level node, reported to by the node that embeds it.
pub struct LocalReporter {
    top: Arc<TopLevel>,
    /// The embedding node's own delegation.
    node_prefix: Prefix,
}

impl LocalReporter {
    pub fn new(top: Arc<TopLevel>, node_prefix: Prefix) -> LocalReporter {
        LocalReporter { top, node_prefix }
    }
}

#[async_trait::async_trait]
impl Reporter for LocalReporter {
    async fn heartbeat(&self, server: &str, endpoints: &Endpoints) -> Result<Vec<ServerStatus>> {
        let top = Arc::clone(&self.top);
        let (caller, endpoints) = (Caller::Node(self.node_prefix.clone()), endpoints.clone());
        let server = server.to_owned();
        crate::blocking::run(move || top.heartbeat(&caller, &server, endpoints).map(|(_, s)| s))
            .await?
    }

    async fn report(&self, report: &Report) -> Result<()> {
        let top = Arc::clone(&self.top);
        let (caller, report) = (Caller::Node(self.node_prefix.clone()), report.clone());
        crate::blocking::run(move || top.report(&caller, report)).await?
    }

    async fn federation(&self) -> Result<Federation> {
        let top = Arc::clone(&self.top);
        crate::blocking::run(move || top.stats().map(|s| Federation::of(&s))).await?
    }

    fn describe(&self) -> String {
        "the embedded top-level node".to_owned()
    }
}
