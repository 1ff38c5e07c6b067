//! Wiring: open the store and the core, bootstrap the admin token and seed data, serve gRPC
//! on an already-bound listener until the shutdown token fires, then drain and flush.
//!
//! Owns process-level concerns (files in the data directory, listeners, shutdown). Holds no
//! rules: those live in `resolver`.

pub mod seed;
pub mod toplevel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::api::admission::Admission;
use crate::api::console;
use crate::api::dns::{self, DnsHandler};
use crate::api::grpc::admission::GrpcAdmissionLayer;
use crate::api::grpc::client::{GrpcPeers, GrpcUpstream};
use crate::api::grpc::toplevel::TopLevelService;
use crate::api::grpc::{pb, AdminService, RegistryService, ResolverService};
use crate::api::http;
use crate::auth::Caller;
use crate::config::Config;
use crate::resolver::{AdminBootstrap, Core, Interface};
use crate::store::backup::BackupSet;
use crate::store::cache::CachedStore;
use crate::store::rocks::{RocksConfig, RocksStore};
use crate::store::SharedStore;
use crate::telemetry::Telemetry;
use crate::toplevel::{Endpoints, InterfaceCount, Report};
use crate::upstream::{Forwarder, LocalLocator, LocalReporter, Locator, Reporter};

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
    Setup(String),
}

/// An opened node, ready to serve.
pub struct Opened {
    pub core: Arc<Core>,
    /// Where the admin token is (written on first start, mode 0600).
    pub admin_token_file: PathBuf,
    pub admin_bootstrap: AdminBootstrap,
    /// What seeding did, if it ran on this start.
    pub seeded: Option<seed::SeedReport>,
    /// The embedded top-level node, when no upstream is configured.
    pub toplevel: Option<toplevel::OpenedTopLevel>,
    pub forwarder: Arc<Forwarder>,
    /// Where heartbeats and statistics go: the external or the embedded top-level node.
    pub reporter: Arc<dyn Reporter>,
    /// Signs the operation-log heads reported upstream (`<data_dir>/node.key`, mode 0600).
    pub node_key: ed25519_dalek::SigningKey,
    /// This server's name in its site ("" for a single-process node): as configured, else
    /// `s-` and the start of its node key's public half, stable for its data directory.
    pub server_name: String,
}

/// The RocksDB directory inside a data directory.
pub fn db_path(config: &Config) -> PathBuf {
    config.data_dir.join("db")
}

fn open_store(
    path: PathBuf,
    block_cache_bytes: usize,
    memtable_bytes: usize,
    record_cache_bytes: usize,
    pin_index_and_filters: bool,
) -> Result<SharedStore, NodeError> {
    let mut rocks = RocksConfig::new(path);
    rocks.block_cache_bytes = block_cache_bytes;
    rocks.memtable_bytes = memtable_bytes;
    rocks.pin_index_and_filters = pin_index_and_filters;
    let store = RocksStore::open(&rocks).map_err(|e| NodeError::Store {
        path: rocks.path.clone(),
        detail: e.to_string(),
    })?;
    if record_cache_bytes == 0 {
        return Ok(Arc::new(store));
    }
    Ok(Arc::new(CachedStore::new(
        Arc::new(store),
        record_cache_bytes,
    )))
}

/// Reads and parses the TLS files the node serves with and connects upstream with, so that a
/// bad file is reported before anything is bound or created.
pub fn check_tls(config: &Config) -> Result<(), NodeError> {
    if let Some(t) = &config.tls {
        t.rustls()
            .and_then(|_| t.grpc())
            .map_err(|e| NodeError::Setup(format!("TLS: {e}")))?;
    }
    if let Some(t) = &config.upstream_tls {
        t.grpc()
            .map_err(|e| NodeError::Setup(format!("upstream TLS: {e}")))?;
    }
    Ok(())
}

/// Opens (creating on first start) the node's data directory: store, core, admin token,
/// seed data when enabled and not yet loaded, and the upstream: an external top-level node,
/// or an embedded one in `<data_dir>/toplevel`. An external upstream (its token file, its
/// URL) is set up before the directory is created, so its errors leave nothing behind.
pub fn open(config: &Config, reset_admin_token: bool) -> Result<Opened, NodeError> {
    let external: Option<Arc<GrpcUpstream>> = match &config.upstream {
        Some(u) => {
            let token = match &u.token_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| NodeError::Setup(format!("reading {}: {e}", path.display())))?
                        .trim()
                        .to_owned(),
                ),
                None => {
                    tracing::warn!(
                        "no upstream token file: heartbeats and statistics reports will be refused"
                    );
                    None
                }
            };
            let upstream = GrpcUpstream::new(
                &u.url,
                token.as_deref(),
                config.forward.timeout,
                config.upstream_tls.as_ref(),
            )?;
            Some(Arc::new(upstream))
        }
        None => None,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::Store {
        path: config.data_dir.clone(),
        detail: e.to_string(),
    })?;
    let (locator, reporter, embedded): (Arc<dyn Locator>, Arc<dyn Reporter>, _) = match external {
        Some(upstream) => (upstream.clone(), upstream, None),
        None => {
            let top = toplevel::open(
                &config.data_dir.join("toplevel"),
                config.toplevel.clone(),
                config.block_cache_bytes / 8,
                false,
            )?;
            // The embedding node serves its own prefix: make sure it is delegated.
            let me = &config.core.node_prefix;
            if top
                .top
                .locate(me)
                .map(|r| &r.node_prefix != me)
                .unwrap_or(true)
            {
                top.top.add_delegation(
                    &Caller::Admin,
                    me,
                    "self",
                    &config.core.node_name,
                    Default::default(),
                )?;
            }
            let locator = Arc::new(LocalLocator(Arc::clone(&top.top)));
            let reporter = Arc::new(LocalReporter::new(Arc::clone(&top.top), me.clone()));
            (locator, reporter, Some(top))
        }
    };
    let peers = Arc::new(GrpcPeers::new(
        config.forward.timeout,
        config.upstream_tls.clone(),
    ));
    let forwarder = Arc::new(Forwarder::new(locator, peers, config.forward.clone()));
    let store = open_store(
        db_path(config),
        config.block_cache_bytes,
        config.memtable_bytes,
        config.record_cache_bytes,
        config.pin_index_and_filters,
    )?;
    let core = Arc::new(Core::open(
        store,
        config.core.clone(),
        Some(Arc::clone(&forwarder) as Arc<dyn crate::resolver::Remote>),
    )?);
    let admin_token_file = config.data_dir.join("admin.token");
    // A site's admin credential and seed data come through its log (`join_site`).
    let admin_bootstrap = match &config.site {
        None => core.ensure_admin_token(&admin_token_file, reset_admin_token)?,
        Some(_) => AdminBootstrap::Existing,
    };
    let seeded = if config.seed && config.site.is_none() {
        seed::load_once(
            &core,
            &seed::Seed::embedded(),
            &config.data_dir.join("tokens"),
        )
        .map_err(NodeError::Setup)?
    } else {
        None
    };
    let node_key = crate::secrets::node_key(&config.data_dir.join("node.key"))
        .map_err(|e| NodeError::Setup(format!("node key in {}: {e}", config.data_dir.display())))?;
    let server_name = match &config.site {
        None => String::new(),
        Some(s) if !s.server_name.is_empty() => s.server_name.clone(),
        Some(_) => format!(
            "s-{}",
            hex::encode(&node_key.verifying_key().as_bytes()[..4])
        ),
    };
    Ok(Opened {
        core,
        admin_token_file,
        admin_bootstrap,
        seeded,
        toplevel: embedded,
        forwarder,
        reporter,
        node_key,
        server_name,
    })
}

/// For a new server of a site (no store in its data directory yet): when the site's stream
/// no longer starts at its first message, restores the newest snapshot into the data
/// directory, so that joining replays only what came after it. Returns its sequence.
pub async fn restore_site_snapshot(config: &Config) -> Result<Option<u64>, NodeError> {
    let Some(site) = &config.site else {
        return Ok(None);
    };
    if db_path(config).exists() {
        return Ok(None);
    }
    let scratch = config.data_dir.join("snapshot-restore");
    let _ = std::fs::remove_dir_all(&scratch);
    let Some(seq) = crate::site::download_newest_snapshot(site, &scratch).await? else {
        return Ok(None);
    };
    let (from, to) = (scratch.clone(), config.data_dir.clone());
    crate::blocking::run(move || {
        crate::store::backup::restore(&from, &to, None)
            .map_err(|e| crate::error::Error::internal(format!("restoring the snapshot: {e}")))
    })
    .await??;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Some(seq))
}

/// Joins the replicated site of `config`: applies its log up to the end, routes every
/// write of the core through it, and makes sure the site has an admin credential (the
/// first server wins and writes the token file). That server also loads the seed data when
/// `seed` is set, through the log like any write: the site is seeded once, and the seeded
/// enterprises' tokens are in that server's data directory, with the admin token.
pub async fn join_site(
    opened: &mut Opened,
    config: &crate::site::SiteConfig,
    seed: bool,
) -> Result<(crate::site::Joined, AdminBootstrap), NodeError> {
    let config = crate::site::SiteConfig {
        server_name: opened.server_name.clone(),
        ..config.clone()
    };
    let config = &config;
    let (site, joined) = crate::site::Site::join(Arc::clone(&opened.core), config.clone()).await?;
    opened.core.set_shared_log(Arc::new(site.clone()));
    // The lag metric: how far the log's end is ahead of this server, looked at each second.
    let watcher = site.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            if let Err(e) = watcher.refresh_lag().await {
                tracing::debug!("site lag: {e}");
            }
        }
    });
    let created = site.bootstrap_admin(&opened.admin_token_file).await?;
    if let Some(every) = config.snapshot_interval {
        let snapshots = site.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match snapshots.snapshot().await {
                    Ok(seq) => {
                        tracing::info!(
                            seq,
                            "site snapshot taken; the stream starts at the previous one"
                        )
                    }
                    Err(e) => tracing::warn!("site snapshot: {e}"),
                }
            }
        });
    }
    let bootstrap = match created {
        true => AdminBootstrap::Created,
        false => AdminBootstrap::Existing,
    };
    if created && seed {
        let core = Arc::clone(&opened.core);
        let tokens = opened
            .admin_token_file
            .parent()
            .map(|d| d.join("tokens"))
            .unwrap_or_else(|| PathBuf::from("tokens"));
        opened.seeded =
            crate::blocking::run(move || seed::load_once(&core, &seed::Seed::embedded(), &tokens))
                .await
                .map_err(|e| NodeError::Setup(e.to_string()))?
                .map_err(NodeError::Setup)?;
    }
    Ok((joined, bootstrap))
}

/// This node's statistics and signed log head, as reported to the top-level node.
pub fn report(core: &Core, key: &ed25519_dalek::SigningKey) -> Result<Report, crate::error::Error> {
    let counts = core.counts(&Caller::Admin)?;
    let (seq, hash) = core.log_head();
    let head = crate::audit::SignedHead::sign(
        key,
        core.config().node_prefix.as_str(),
        seq,
        &hash,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    );
    Ok(Report {
        server: String::new(),
        head_seq: 0,
        head: Some(head),
        registered: counts.node_registered,
        prefixes: counts.prefixes,
        resolutions: Interface::ALL
            .iter()
            .map(|via| {
                let (local, forwarded) = core.resolutions().get(*via);
                InterfaceCount {
                    interface: via.name().to_owned(),
                    local,
                    forwarded,
                }
            })
            .collect(),
        received_at: 0,
    })
}

async fn heartbeat_and_report(
    core: &Arc<Core>,
    key: &ed25519_dalek::SigningKey,
    upstream: &Arc<dyn Reporter>,
    server: &str,
    endpoints: &Endpoints,
    dns: Option<&DnsHandler>,
) {
    match upstream.heartbeat(server, endpoints).await {
        Ok(servers) => {
            if let Some(dns) = dns {
                let named: Vec<(String, String)> = servers
                    .into_iter()
                    .map(|s| (s.name, s.endpoints.dns))
                    .collect();
                dns.set_name_servers(&named);
            }
        }
        Err(e) => {
            tracing::warn!(upstream = %upstream.describe(), error = %e, "heartbeat failed");
            return;
        }
    }
    let key = key.clone();
    let report = match core.blocking(move |c| report(c, &key)).await {
        Ok(r) => Report {
            server: server.to_owned(),
            ..r
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot compute the statistics report");
            return;
        }
    };
    if let Err(e) = upstream.report(&report).await {
        tracing::warn!(upstream = %upstream.describe(), error = %e, "statistics report failed");
    }
}

/// Serves the gRPC API on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish for up to the configured grace period, reports final statistics
/// upstream and flushes the stores. Heartbeats and reports run every `report_interval`.
pub async fn serve(
    node: Opened,
    config: &Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    let core = node.core;
    let local = listeners
        .grpc_addr()
        .map_err(|e| NodeError::Setup(e.to_string()))?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let endpoints = Endpoints {
        grpc: config
            .advertise_grpc
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}")),
        dns: listeners
            .dns_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        http: listeners
            .http_addr()
            .map(|a| format!("{scheme}://{a}"))
            .unwrap_or_default(),
    };
    let http_tls = match &config.tls {
        Some(t) => Some(
            t.rustls()
                .map_err(|e| NodeError::Setup(format!("HTTP TLS: {e}")))?,
        ),
        None => None,
    };
    let admission = Arc::new(Admission::new(config.admission.clone()));
    // The node's one metrics registry: every adapter records into it, `/metrics` renders it.
    let telemetry = Arc::new(Telemetry::new());
    let mut side_servers = Vec::new();
    let mut dns_handler = None;
    if let (Some((udp, tcp)), Some((_, dns_config))) = (listeners.dns, &config.dns) {
        let handler = Arc::new(DnsHandler::new(
            Arc::clone(&core),
            dns_config.clone(),
            Arc::clone(&admission),
            Arc::clone(&telemetry),
        ));
        // Until the top-level node lists the node's servers: this one.
        handler.set_name_servers(&[(node.server_name.clone(), endpoints.dns.clone())]);
        dns_handler = Some(Arc::clone(&handler));
        side_servers.push(tokio::spawn(dns::serve_udp(
            Arc::clone(&handler),
            udp,
            shutdown.clone(),
        )));
        side_servers.push(tokio::spawn(dns::serve_tcp(handler, tcp, shutdown.clone())));
    }
    if let Some(listener) = listeners.http {
        let console = match (&config.console, listener.local_addr()) {
            (Some(c), Ok(addr)) => {
                side_servers.push(tokio::spawn(console::sample_resolutions(
                    Arc::clone(&core),
                    Arc::clone(&telemetry),
                    shutdown.clone(),
                )));
                Some(Arc::new(console::Console::new(
                    Arc::clone(&core),
                    Arc::clone(&telemetry),
                    Arc::clone(&node.reporter),
                    c.public_url.clone(),
                    addr,
                    http_tls.is_some(),
                    config.admission.max_http_body_bytes,
                )))
            }
            _ => None,
        };
        let router = http::router(http::HttpState {
            core: Arc::clone(&core),
            admission: Arc::clone(&admission),
            telemetry: Arc::clone(&telemetry),
            console,
        });
        let stop = shutdown.clone();
        let admission = Arc::clone(&admission);
        side_servers.push(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, router, http_tls, admission, stop).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));
    }
    let upstream = Arc::clone(&node.reporter);
    // A site's servers are told apart by name at the top-level node.
    let server_name = node.server_name.clone();
    let reporter = {
        let server = server_name.clone();
        let dns = dns_handler.clone();
        let (core, upstream, endpoints, stop) = (
            Arc::clone(&core),
            Arc::clone(&upstream),
            endpoints.clone(),
            shutdown.clone(),
        );
        let every = config.report_interval;
        let key = node.node_key.clone();
        tokio::spawn(async move {
            loop {
                heartbeat_and_report(&core, &key, &upstream, &server, &endpoints, dns.as_deref())
                    .await;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    };

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
    let max = config.max_message_bytes;
    let resolver = pb::resolver_server::ResolverServer::new(ResolverService::new(
        Arc::clone(&core),
        Arc::clone(&telemetry),
    ))
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let registry = pb::registry_server::RegistryServer::new(RegistryService::new(
        Arc::clone(&core),
        Arc::clone(&telemetry),
    ))
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let mut backup = BackupSet::new(&config.data_dir).store("db", Arc::clone(core.store()));
    if let Some(t) = &node.toplevel {
        backup = backup.store("toplevel/db", Arc::clone(&t.store));
    }
    for file in [
        "node.key",
        "admin.token",
        "tokens",
        "toplevel/admin.token",
        "toplevel/node-tokens",
    ] {
        backup = backup.file(file);
    }
    core.set_backups(Arc::new(backup));
    let admin = AdminService::new(Arc::clone(&core), Arc::clone(&telemetry));
    let admin = pb::admin_server::AdminServer::new(admin)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let top_service = match &node.toplevel {
        Some(t) => {
            health
                .set_serving::<pb::top_level_server::TopLevelServer<TopLevelService>>()
                .await;
            Some(toplevel::service(
                t,
                config.forward.clone(),
                config.upstream_tls.clone(),
                max,
            ))
        }
        None => None,
    };

    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        let tls = tls
            .grpc()
            .map_err(|e| NodeError::Setup(format!("gRPC TLS: {e}")))?;
        builder = builder.tls_config(tls)?;
    }
    let limits = &config.admission;
    let incoming = tokio_stream::wrappers::ReceiverStream::new(admission.incoming(
        listeners.grpc,
        None,
        shutdown.clone(),
    ));
    let server = builder
        // Pings every half idle timeout keep healthy connections active (see
        // `Admission::incoming`); a peer that stops answering them is dropped.
        .http2_keepalive_interval(Some(limits.idle_timeout / 2))
        .http2_keepalive_timeout(Some(limits.idle_timeout))
        .max_concurrent_streams(limits.max_concurrent_streams)
        .layer(GrpcAdmissionLayer::new(Arc::clone(&admission)))
        .add_service(health_service)
        .add_service(reflection()?)
        .add_service(reflection_v1alpha()?)
        .add_service(resolver)
        .add_service(registry)
        .add_service(admin)
        .add_optional_service(top_service)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        _ = shutdown.cancelled() => {
            if tokio::time::timeout(config.shutdown_grace, &mut server).await.is_err() {
                tracing::warn!(grace = ?config.shutdown_grace, "grace period over; closing remaining connections");
            }
        }
    }
    for s in side_servers {
        if tokio::time::timeout(config.shutdown_grace, s)
            .await
            .is_err()
        {
            tracing::warn!("a DNS/HTTP server did not stop within the grace period");
        }
    }
    let _ = reporter.await;
    // Final statistics, bounded by the upstream timeout.
    heartbeat_and_report(
        &core,
        &node.node_key,
        &upstream,
        &server_name,
        &endpoints,
        dns_handler.as_deref(),
    )
    .await;
    core.store().flush().map_err(|e| NodeError::Store {
        path: db_path(config),
        detail: e.to_string(),
    })?;
    if let Some(t) = &node.toplevel {
        t.top.flush().map_err(NodeError::Core)?;
    }
    tracing::info!("node stopped; store flushed");
    Ok(())
}

/// Server reflection over every idnode service and the health service.
fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    NodeError,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Setup(format!("reflection: {e}")))
}

/// The same reflection service in its v1alpha version, which older clients (grpcurl 1.8)
/// still ask for.
fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    NodeError,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| NodeError::Setup(format!("reflection: {e}")))
}

/// The sockets a node serves on, bound before serving starts (after the configuration
/// was validated), so tests and operators can use port 0.
pub struct Listeners {
    pub grpc: TcpListener,
    /// UDP and TCP on the same port.
    pub dns: Option<(UdpSocket, TcpListener)>,
    pub http: Option<TcpListener>,
}

impl Listeners {
    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().and_then(|(u, _)| u.local_addr().ok())
    }
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|h| h.local_addr().ok())
    }
}

/// Binds every configured listener. An error names the listener, its address and the
/// setting that chose it.
pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
    let named = |what: &'static str, addr: SocketAddr| {
        move |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}"))
        }
    };
    let grpc = TcpListener::bind(config.grpc_addr)
        .await
        .map_err(named("gRPC (--grpc-addr, [grpc] addr)", config.grpc_addr))?;
    let dns = match &config.dns {
        Some((addr, _)) => Some(bind_dns(*addr).await.map_err(named(
            "DNS over UDP and TCP (--dns-addr, [dns] addr)",
            *addr,
        ))?),
        None => None,
    };
    let http = match config.http_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(named("HTTP (--http-addr, [http] addr)", addr))?,
        ),
        None => None,
    };
    Ok(Listeners { grpc, dns, http })
}

/// UDP and TCP on one port; with port 0, retries until both get the same free port.
async fn bind_dns(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no common DNS port")))
}
