//! The `idnode` binary: the process (allocator, logs, runtime, signals, exit status); the
//! command tree and the commands are in `cli`.

mod cli;

use anyhow::Context;
use clap::Parser;

/// jemalloc for every allocation in the process: Rust's, and RocksDB's C++ through the
/// unprefixed `malloc`/`free` symbols. With glibc's allocator, `malloc`, `free` and
/// `malloc_consolidate` took 16 % of the node's CPU when resolving from 100M records
/// (block reads and decompression buffers); see BENCHMARKS.md.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    // Errors for people: the message and its causes, never a backtrace.
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    let (level, format) = match &args.command {
        cli::Command::Serve(s) => (s.log_level.clone(), s.log_format.as_str()),
        _ => (None, "text"),
    };
    init_logs(level.as_deref(), format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(cli::run(args.command))
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
