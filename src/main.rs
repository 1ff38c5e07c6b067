//! The `idnode` binary: `serve` runs a node; the other commands are clients of a running node.

mod cli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use idnode::config::{self, Config, Overrides};

/// jemalloc for every allocation in the process: Rust's, and RocksDB's C++ through the
/// unprefixed `malloc`/`free` symbols. With glibc's allocator, `malloc`, `free` and
/// `malloc_consolidate` took 16 % of the node's CPU when resolving from 100M records
/// (block reads and decompression buffers); see BENCHMARKS.md.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "idnode",
    version,
    about = "Industrial-internet identifier resolution node"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a secondary node (gRPC), creating the data directory and seeding it on first start.
    Serve(Box<ServeArgs>),
    /// Make a development CA with a server and a client certificate (PEM files).
    Cert {
        /// Output directory.
        #[arg(long, default_value = "./idnode-certs")]
        out: PathBuf,
        /// Names and IP addresses the server certificate is valid for.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        hosts: Vec<String>,
    },
    /// The (mock) national top-level node: run one, or administer and query one.
    #[command(subcommand, name = "top-level")]
    TopLevel(cli::toplevel::TopLevelCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
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
    /// Join this top-level node (gRPC URL) instead of running an embedded one.
    #[arg(long)]
    upstream: Option<String>,
    /// This node's node token, issued by the top-level admin (`idnode top-level node add`).
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
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
}

fn main() {
    // Errors for people: the message and its causes, never a backtrace.
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let (level, format) = match &args.command {
        Command::Serve(s) => (s.log_level.clone(), s.log_format.as_str()),
        _ => (None, "text"),
    };
    init_logs(level.as_deref(), format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match args.command {
        Command::Serve(s) => runtime.block_on(serve(*s)),
        Command::Cert { out, hosts } => {
            let c = idnode::tls::dev_certs(&out, &hosts)?;
            println!(
                "CA {}\nserver {} + {} (for {})\nclient {} + {}",
                c.ca.display(),
                c.server_cert.display(),
                c.server_key.display(),
                hosts.join(", "),
                c.client_cert.display(),
                c.client_key.display()
            );
            Ok(())
        }
        Command::TopLevel(c) => runtime.block_on(cli::toplevel::run(c)),
        Command::Client(c) => runtime.block_on(cli::run(c)),
    }
}

/// Logs go to stderr: `--log-level` (else `RUST_LOG`, else info), as text or JSON lines;
/// coloured only when stderr is a terminal (a file or a pipe gets plain text).
fn init_logs(level: Option<&str>, format: &str) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::try_new(l)
            .with_context(|| format!("--log-level {l:?}"))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn".into()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => anyhow::bail!("--log-format {other:?}: use text or json"),
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            tls_client_ca: args.tls_client_ca,
            upstream_ca: args.upstream_ca,
            upstream_cert: args.upstream_cert,
            upstream_key: args.upstream_key,
        },
    )
    .context("invalid configuration")?;
    // Everything that can fail without touching the data directory fails first: TLS files,
    // then the listeners; only then is the directory created and seeded.
    idnode::node::check_tls(&config)?;
    let listeners = idnode::node::bind(&config).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signalled = signals(shutdown.clone())?;
    let opened = idnode::node::open(&config, args.reset_admin_token)?;
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
        println!("HTTP on {scheme}://{http} (/api/handles, /metrics, /healthz)");
    }
    println!(
        "idnode {} serving node prefix {} ({} identifiers) on grpc://{addr}{}, data in {}",
        env!("CARGO_PKG_VERSION"),
        config.core.node_prefix,
        opened.core.node_total()?,
        if config.tls.is_some() { " (TLS)" } else { "" },
        config.data_dir.display()
    );
    tokio::spawn(signalled);
    idnode::node::serve(opened, &config, listeners, shutdown).await?;
    Ok(())
}

/// Takes over SIGINT and SIGTERM at once (a signal that arrives before the returned future
/// runs is kept, not fatal); the future cancels `shutdown` on either. The one place signals
/// are handled. Call it before announcing the addresses: a client may signal right away.
pub(crate) fn signals(
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested");
        shutdown.cancel();
    })
}
