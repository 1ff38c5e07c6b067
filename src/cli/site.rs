//! `idnode site seed`: a new replicated site seeded with a store built offline.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;

use idnode::store::rocks::{RocksConfig, RocksStore};
use idnode::store::{Store, Table};

#[derive(Subcommand)]
pub enum SiteCommand {
    /// Seed a new site with the store of a data directory (e.g. built by `idnode import
    /// --offline`), while no server of the site runs: it becomes the site's first snapshot,
    /// and every server starting on an empty data directory restores it.
    Seed {
        /// The site's NATS URLs, comma-separated.
        #[arg(long, env = "IDNODE_SITE")]
        site: String,
        /// The site's stream (as in `[site] stream`).
        #[arg(long, default_value = "IDNODE")]
        stream: String,
        /// Copies of the snapshot JetStream keeps (as in `[site] replicas`).
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// The data directory holding the store (not served meanwhile).
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub async fn run(cmd: SiteCommand) -> anyhow::Result<()> {
    let SiteCommand::Seed {
        site,
        stream,
        replicas,
        data_dir,
    } = cmd;
    let servers: Vec<String> = site
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        bail!("--site: give the site's nats:// URLs");
    }
    let db = data_dir.join("db");
    if !db.exists() {
        bail!("{}: no store here", db.display());
    }
    let scratch = data_dir.join("site-seed");
    let _ = std::fs::remove_dir_all(&scratch);
    let backup = scratch.join("db");
    let (from, to) = (db.clone(), backup.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let store = RocksStore::open(&RocksConfig::new(from.clone()))
            .map_err(|e| anyhow!("opening {} (is a node serving it?): {e}", from.display()))?;
        if store
            .get(Table::Meta, idnode::resolver::SITE_APPLIED)
            .map_err(|e| anyhow!("{e}"))?
            .is_some()
        {
            bail!(
                "{}: this store is a site server's already; seed a new site from a store built offline",
                from.display()
            );
        }
        store
            .backup(&to)
            .map_err(|e| anyhow!("backing up {}: {e}", from.display()))?;
        Ok(())
    })
    .await??;
    let mut config = idnode::site::SiteConfig::new(servers);
    config.stream = stream;
    config.replicas = replicas;
    let started = std::time::Instant::now();
    let bytes = idnode::site::seed(&config, &scratch)
        .await
        .with_context(|| format!("seeding site stream {}", config.stream))?;
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "site {} seeded with {} ({bytes} bytes uploaded in {:.1} s); start its servers on empty data directories",
        config.stream,
        db.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
