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
use crate::toplevel::{Endpoints, Referral, Report, TopLevel};

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
    /// Announces this node's endpoints.
    async fn heartbeat(&self, endpoints: &Endpoints) -> Result<()>;
    /// Reports this node's counts.
    async fn report(&self, report: &Report) -> Result<()>;
    /// For logs and messages.
    fn describe(&self) -> String;
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
    async fn heartbeat(&self, endpoints: &Endpoints) -> Result<()> {
        let top = Arc::clone(&self.top);
        let (caller, endpoints) = (Caller::Node(self.node_prefix.clone()), endpoints.clone());
        crate::blocking::run(move || top.heartbeat(&caller, endpoints).map(|_| ())).await?
    }

    async fn report(&self, report: &Report) -> Result<()> {
        let top = Arc::clone(&self.top);
        let (caller, report) = (Caller::Node(self.node_prefix.clone()), report.clone());
        crate::blocking::run(move || top.report(&caller, report)).await?
    }

    fn describe(&self) -> String {
        "the embedded top-level node".to_owned()
    }
}
