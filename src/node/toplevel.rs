//! Wiring of a top-level node: standalone (`idnode top-level serve`) or embedded in a
//! secondary node (`idnode serve` without an upstream).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use super::{open_store, reflection, reflection_v1alpha, NodeError};
use crate::api::admission::Admission;
use crate::api::grpc::admission::GrpcAdmissionLayer;
use crate::api::grpc::client::GrpcPeers;
use crate::api::grpc::pb;
use crate::api::grpc::toplevel::TopLevelService;
use crate::config::TopLevelLimits;
use crate::resolver::AdminBootstrap;
use crate::store::backup::BackupSet;
use crate::store::SharedStore;
use crate::tls::ClientTls;
use crate::toplevel::{seed, TopLevel, TopLevelConfig};
use crate::upstream::{ForwardConfig, Forwarder, LocalLocator};

/// An opened top-level node.
pub struct OpenedTopLevel {
    pub top: Arc<TopLevel>,
    pub store: SharedStore,
    pub admin_token_file: PathBuf,
    pub admin_bootstrap: AdminBootstrap,
    /// Delegations added from the seed on this start.
    pub seeded: Option<usize>,
    /// Where the seeded nodes' tokens were written.
    pub node_token_dir: PathBuf,
}

/// Opens a top-level node's directory: store in `dir/db`, admin token `dir/admin.token`,
/// the seed delegation table on first start (node tokens in `dir/node-tokens/`).
pub fn open(
    dir: &Path,
    config: TopLevelConfig,
    block_cache_bytes: usize,
    reset_admin_token: bool,
) -> Result<OpenedTopLevel, NodeError> {
    std::fs::create_dir_all(dir).map_err(|e| NodeError::Store {
        path: dir.to_owned(),
        detail: e.to_string(),
    })?;
    let store = open_store(
        dir.join("db"),
        block_cache_bytes.max(8 << 20),
        64 << 20,
        0,
        false,
    )?;
    let backup = Arc::new(
        BackupSet::new(dir)
            .store("db", Arc::clone(&store))
            .file("admin.token")
            .file("node-tokens"),
    );
    let top = Arc::new(TopLevel::open(Arc::clone(&store), config)?);
    top.set_backups(Arc::clone(&backup));
    let admin_token_file = dir.join("admin.token");
    let admin_bootstrap = top.ensure_admin_token(&admin_token_file, reset_admin_token)?;
    let node_token_dir = dir.join("node-tokens");
    let seeded =
        seed::load_once(&top, &seed::embedded(), &node_token_dir).map_err(NodeError::Setup)?;
    Ok(OpenedTopLevel {
        top,
        store,
        admin_token_file,
        admin_bootstrap,
        seeded,
        node_token_dir,
    })
}

/// The `TopLevel` gRPC service, taking and sending messages of at most
/// `max_message_bytes`; recursive resolution goes through a forwarder that locates with
/// this top-level node itself and asks the serving nodes over gRPC (trusting `peer_tls`).
pub fn service(
    top: &OpenedTopLevel,
    forward: ForwardConfig,
    peer_tls: Option<ClientTls>,
    max_message_bytes: usize,
) -> pb::top_level_server::TopLevelServer<TopLevelService> {
    let top = &top.top;
    let locator = Arc::new(LocalLocator(Arc::clone(top)));
    let peers = Arc::new(GrpcPeers::new(forward.timeout, peer_tls));
    let forwarder = Arc::new(Forwarder::new(locator, peers, forward));
    pb::top_level_server::TopLevelServer::new(TopLevelService::new(Arc::clone(top), forwarder))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// Serves a standalone top-level node until `shutdown`, then drains for `grace`, under the
/// same admission as a node's gRPC server (`limits`: connections, idle and write
/// timeouts, requests in flight, per-client rate, request timeout, message sizes).
pub async fn serve(
    top: &OpenedTopLevel,
    forward: ForwardConfig,
    limits: &TopLevelLimits,
    listener: TcpListener,
    tls: Option<&crate::tls::ServerTls>,
    shutdown: CancellationToken,
    grace: std::time::Duration,
) -> Result<(), NodeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::top_level_server::TopLevelServer<TopLevelService>>()
        .await;
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        let config = tls
            .grpc()
            .map_err(|e| NodeError::Setup(format!("gRPC TLS: {e}")))?;
        builder = builder.tls_config(config)?;
    }
    let admission = Arc::new(Admission::new(limits.admission.clone()));
    let incoming = tokio_stream::wrappers::ReceiverStream::new(admission.incoming(
        listener,
        None,
        shutdown.clone(),
    ));
    let idle = limits.admission.idle_timeout;
    let server = builder
        // As on a node: pings every half idle timeout keep healthy connections active.
        .http2_keepalive_interval(Some(idle / 2))
        .http2_keepalive_timeout(Some(idle))
        .max_concurrent_streams(limits.admission.max_concurrent_streams)
        .layer(GrpcAdmissionLayer::new(admission))
        .add_service(health_service)
        .add_service(reflection()?)
        .add_service(reflection_v1alpha()?)
        .add_service(service(top, forward, None, limits.max_message_bytes))
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        _ = shutdown.cancelled() => {
            if tokio::time::timeout(grace, &mut server).await.is_err() {
                tracing::warn!(?grace, "grace period over; closing remaining connections");
            }
        }
    }
    top.top.flush()?;
    tracing::info!("top-level node stopped; store flushed");
    Ok(())
}
