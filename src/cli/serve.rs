//! `idnode serve`: run a secondary node: its flags merged over its configuration file,
//! everything checked and bound before the data directory is touched, and what it serves
//! announced on stdout.

use std::path::PathBuf;

use anyhow::Context;

use idnode::config::{self, Config, Overrides};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (RocksDB, admin token, seed tokens). Default ./idnode-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address. Default 127.0.0.1:7000.
    #[arg(long)]
    grpc_addr: Option<String>,
    /// The node prefix this node is authoritative for. Default 88.101.
    #[arg(long)]
    node_prefix: Option<String>,
    /// The node's display name.
    #[arg(long)]
    node_name: Option<String>,
    /// fsync every write before acknowledging it (survives power loss, slower).
    #[arg(long)]
    sync: bool,
    /// Do not load the seed data set into a new data directory.
    #[arg(long)]
    no_seed: bool,
    /// Shared RocksDB block cache, MiB. Default 256.
    #[arg(long)]
    block_cache_mb: Option<usize>,
    /// Mint a new admin token (the old one stops working) and write it to the token file.
    #[arg(long)]
    reset_admin_token: bool,
    /// Serve as one server of a replicated site: the NATS JetStream servers holding the
    /// site's log, as comma-separated nats:// URLs (`[site] servers`).
    #[arg(long, env = "IDNODE_SITE")]
    site: Option<String>,
    /// Join this top-level node (gRPC URL) instead of running an embedded one.
    #[arg(long)]
    upstream: Option<String>,
    /// This node's node token, issued by the top-level admin (`idnode top-level delegation add`).
    #[arg(long)]
    upstream_token_file: Option<PathBuf>,
    /// The gRPC URL other nodes should use to reach this one.
    #[arg(long)]
    advertise: Option<String>,
    /// DNS listen address (UDP and TCP), or "off". Default 127.0.0.1:5353.
    #[arg(long)]
    dns_addr: Option<String>,
    /// DNS zone identifiers are named under. Default id.example.
    #[arg(long)]
    dns_zone: Option<String>,
    /// HTTP listen address (Handle REST API, /metrics, /healthz), or "off". Default 127.0.0.1:8080.
    #[arg(long)]
    http_addr: Option<String>,
    /// The web console under / on the HTTP port: on (default) or off.
    #[arg(long, value_parser = ["on", "off"])]
    console: Option<String>,
    /// The URL the public reaches the HTTP port at (the links in QR codes), e.g.
    /// https://id.example.cn. Default: the HTTP listener's address.
    #[arg(long)]
    public_url: Option<String>,
    /// TLS certificate (PEM) for gRPC and HTTP; with --tls-key.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// CA to trust for https:// upstream and peer nodes.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// This node's client certificate for mutual TLS toward the upstream; with --upstream-key.
    #[arg(long)]
    upstream_cert: Option<PathBuf>,
    #[arg(long)]
    upstream_key: Option<PathBuf>,
    /// Log level filter (e.g. info, debug, idnode=debug); overrides RUST_LOG.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: String,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = config::read_file(args.config.as_deref())?;
    let config = Config::resolve(
        file,
        Overrides {
            data_dir: args.data_dir,
            grpc_addr: args.grpc_addr,
            node_prefix: args.node_prefix,
            node_name: args.node_name,
            sync: args.sync,
            no_seed: args.no_seed,
            block_cache_mb: args.block_cache_mb,
            upstream: args.upstream,
            upstream_token_file: args.upstream_token_file,
            advertise: args.advertise,
            dns_addr: args.dns_addr,
            dns_zone: args.dns_zone,
            http_addr: args.http_addr,
            console: args.console,
            public_url: args.public_url,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            tls_client_ca: args.tls_client_ca,
            upstream_ca: args.upstream_ca,
            upstream_cert: args.upstream_cert,
            upstream_key: args.upstream_key,
            site: args.site,
        },
    )
    .context("invalid configuration")?;
    // Everything that can fail without touching the data directory fails first: TLS files,
    // then the listeners; only then is the directory created and seeded.
    idnode::node::check_tls(&config)?;
    let listeners = idnode::node::bind(&config).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signalled = crate::signals(shutdown.clone())?;
    // RocksDB's open and seeding block: off the async workers, like all store work.
    let reset = args.reset_admin_token;
    let config = std::sync::Arc::new(config);
    let opening = std::sync::Arc::clone(&config);
    if let Some(seq) = idnode::node::restore_site_snapshot(&config).await? {
        println!("site: restored the newest snapshot (sequence {seq}) into a new data directory");
    }
    let mut opened = idnode::blocking::run(move || idnode::node::open(&opening, reset)).await??;
    if let Some(site) = &config.site {
        if reset {
            anyhow::bail!(
                "--reset-admin-token: a site's admin token is reset on one server, not at start"
            );
        }
        let (joined, bootstrap) = idnode::node::join_site(&mut opened, site, config.seed).await?;
        println!(
            "site: stream {} on {} ({} replicas), applied through sequence {}; this server is {}",
            site.stream,
            site.servers.join(","),
            site.replicas,
            joined.caught_up_to,
            opened.server_name
        );
        opened.admin_bootstrap = bootstrap.clone();
        if bootstrap == idnode::resolver::AdminBootstrap::Existing
            && !opened.admin_token_file.exists()
        {
            println!("admin token: held by the server that bootstrapped the site");
        }
    }
    let addr = listeners.grpc_addr()?;
    match opened.admin_bootstrap {
        idnode::resolver::AdminBootstrap::Created => println!(
            "admin token written to {} (mode 0600; shown nowhere else)",
            opened.admin_token_file.display()
        ),
        idnode::resolver::AdminBootstrap::Existing => {
            println!("admin token file: {}", opened.admin_token_file.display())
        }
    }
    if let Some(s) = &opened.seeded {
        println!(
            "seeded {} enterprises, {} templates, {} records; enterprise tokens in {}",
            s.enterprises,
            s.templates,
            s.records,
            config.data_dir.join("tokens").display()
        );
    }
    match &opened.toplevel {
        Some(t) => println!(
            "embedded top-level node: {} delegations, admin token {}, node tokens in {}",
            t.top.nodes().len(),
            t.admin_token_file.display(),
            t.node_token_dir.display()
        ),
        None => println!("upstream: {}", opened.reporter.describe()),
    }
    if let (Some(dns), Some((_, d))) = (listeners.dns_addr(), &config.dns) {
        println!("DNS on {dns} (UDP and TCP), zone {}", d.zone);
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    if let Some(http) = listeners.http_addr() {
        let console = match &config.console {
            Some(_) => ", web console /",
            None => "",
        };
        println!("HTTP on {scheme}://{http} (/api/handles, /metrics, /healthz{console})");
    }
    println!(
        "idnode {} serving node prefix {} ({} identifiers) on grpc://{addr}{}, data in {}",
        env!("CARGO_PKG_VERSION"),
        config.core.node_prefix,
        opened.core.node_registered()?,
        if config.tls.is_some() { " (TLS)" } else { "" },
        config.data_dir.display()
    );
    tokio::spawn(signalled);
    idnode::node::serve(opened, &config, listeners, shutdown).await?;
    Ok(())
}
