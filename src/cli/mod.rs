//! The command tree of the `idnode` binary: its top level here, and one file per command
//! group, each with its clap arguments, its `run` and its printing. `serve` and `top-level
//! serve` run nodes; most other commands are clients of a running node over gRPC
//! (`connect.rs`), printing for people or, with `--json`, for scripts; `cert`, `dns-name`,
//! `restore`, `gen`, `import --offline`, `audit verify` and `bench-reference` work locally.

pub mod audit;
pub mod backup;
pub mod bench;
pub mod bulk;
pub mod canonical;
pub mod cert;
pub mod connect;
pub mod enterprise;
pub mod grant;
pub mod info;
pub mod record_print;
pub mod records;
pub mod reference;
pub mod serve;
pub mod site;
pub mod template;
pub mod toplevel;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "idnode",
    version,
    about = "Industrial-internet identifier resolution node"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

// In the order `idnode --help` lists them; a flattened group's commands, and their help,
// are in its file.
#[derive(Subcommand)]
pub enum Command {
    /// Run a secondary node (gRPC), creating the data directory and seeding it on first start.
    Serve(Box<serve::ServeArgs>),
    /// Make a development CA with a server and a client certificate (PEM files).
    Cert(cert::CertArgs),
    /// The (mock) national top-level node: run one, or administer and query one.
    #[command(subcommand, name = "top-level")]
    TopLevel(toplevel::TopLevelCommand),
    // resolve, register, update, get, delete, list.
    #[command(flatten)]
    Records(records::RecordCommand),
    // counts, dns-name, info.
    #[command(flatten)]
    Info(info::InfoCommand),
    // backup, restore.
    #[command(flatten)]
    Backup(backup::BackupCommand),
    /// Enterprise accounts (admin token).
    #[command(subcommand)]
    Enterprise(enterprise::EnterpriseCommand),
    /// Industry metadata templates.
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Partner read access to PARTNER-classified values.
    #[command(subcommand)]
    Grant(grant::GrantCommand),
    /// The tamper-evident operation log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Replicated sites: seed a new one with a store built offline.
    #[command(subcommand)]
    Site(site::SiteCommand),
    // gen, import.
    #[command(flatten)]
    Bulk(bulk::BulkCommand),
    // bench, bench-compare.
    #[command(flatten)]
    Bench(bench::BenchCommand),
    /// Reference servers and loaders for side-by-side figures.
    #[command(subcommand, hide = true)]
    BenchReference(reference::ReferenceCommand),
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Serve(s) => serve::run(*s).await,
        Command::Cert(c) => cert::run(c),
        Command::TopLevel(c) => toplevel::run(c).await,
        Command::Records(c) => records::run(c).await,
        Command::Info(c) => info::run(c).await,
        Command::Backup(c) => backup::run(c).await,
        Command::Enterprise(c) => enterprise::run(c).await,
        Command::Template(c) => template::run(c).await,
        Command::Grant(c) => grant::run(c).await,
        Command::Audit(c) => audit::run(c).await,
        Command::Site(c) => site::run(c).await,
        Command::Bulk(c) => bulk::run(c).await,
        Command::Bench(c) => bench::run(c).await,
        Command::BenchReference(c) => reference::run(c).await,
    }
}
