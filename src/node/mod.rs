//! Wiring: open the store and the core, bootstrap the admin token and seed data, serve gRPC
//! on an already-bound listener until the shutdown token fires, then drain and flush.
//!
//! Owns process-level concerns (files in the data directory, listeners, shutdown). Holds no
//! rules: those live in `resolver`.

pub mod seed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::api::grpc::{pb, AdminService, RegistryService, ResolverService};
use crate::config::Config;
use crate::resolver::{AdminBootstrap, Core};
use crate::store::rocks::{RocksConfig, RocksStore};
use crate::store::SharedStore;

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("opening the store in {path}: {detail}")]
    Store { path: PathBuf, detail: String },
    #[error("{0}")]
    Core(#[from] crate::error::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Seed(String),
}

/// An opened node, ready to serve.
pub struct Opened {
    pub core: Arc<Core>,
    /// Where the admin token is (written on first start, mode 0600).
    pub admin_token_file: PathBuf,
    pub admin_bootstrap: AdminBootstrap,
    /// What seeding did, if it ran on this start.
    pub seeded: Option<seed::SeedReport>,
}

/// The RocksDB directory inside a data directory.
pub fn db_path(config: &Config) -> PathBuf {
    config.data_dir.join("db")
}

/// Opens (creating on first start) the node's data directory: store, core, admin token,
/// and seed data when enabled and not yet loaded.
pub fn open(config: &Config, reset_admin_token: bool) -> Result<Opened, NodeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::Store {
        path: config.data_dir.clone(),
        detail: e.to_string(),
    })?;
    let mut rocks = RocksConfig::new(db_path(config));
    rocks.block_cache_bytes = config.block_cache_bytes;
    let store = RocksStore::open(&rocks).map_err(|e| NodeError::Store {
        path: rocks.path.clone(),
        detail: e.to_string(),
    })?;
    let store: SharedStore = Arc::new(store);
    let core = Arc::new(Core::open(store, config.core.clone())?);
    let admin_token_file = config.data_dir.join("admin.token");
    let admin_bootstrap = core.ensure_admin_token(&admin_token_file, reset_admin_token)?;
    let seeded = if config.seed {
        seed::load_once(
            &core,
            &seed::Seed::embedded(),
            &config.data_dir.join("tokens"),
        )
        .map_err(NodeError::Seed)?
    } else {
        None
    };
    Ok(Opened {
        core,
        admin_token_file,
        admin_bootstrap,
        seeded,
    })
}

/// Serves the gRPC API on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish for up to the configured grace period and flushes the store.
pub async fn serve(
    core: Arc<Core>,
    config: &Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::resolver_server::ResolverServer<ResolverService>>()
        .await;
    health
        .set_serving::<pb::registry_server::RegistryServer<RegistryService>>()
        .await;
    health
        .set_serving::<pb::admin_server::AdminServer<AdminService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Seed(format!("reflection: {e}")))?;
    let max = config.max_message_bytes;
    let resolver =
        pb::resolver_server::ResolverServer::new(ResolverService::new(Arc::clone(&core)))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
    let registry =
        pb::registry_server::RegistryServer::new(RegistryService::new(Arc::clone(&core)))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
    let admin = pb::admin_server::AdminServer::new(AdminService::new(Arc::clone(&core)))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let server = Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(resolver)
        .add_service(registry)
        .add_service(admin)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            shutdown.clone().cancelled_owned(),
        );
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        _ = shutdown.cancelled() => {
            if tokio::time::timeout(config.shutdown_grace, &mut server).await.is_err() {
                tracing::warn!(grace = ?config.shutdown_grace, "grace period over; closing remaining connections");
            }
        }
    }
    core.store().flush().map_err(|e| NodeError::Store {
        path: db_path(config),
        detail: e.to_string(),
    })?;
    tracing::info!("node stopped; store flushed");
    Ok(())
}

/// Binds the gRPC listener (after the configuration was validated).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
