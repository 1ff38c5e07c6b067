//! `idnode backup`, `idnode restore`, `idnode top-level backup`: online backups of a
//! running node into a directory on its machine, and offline restores from one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use super::connect::{Client, Connection};
use idnode::api::grpc::pb;

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Back up the running node (admin token): its stores and key files, into DEST on the
    /// node's machine. Incremental: repeat into the same DEST.
    Backup {
        dest: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// Rebuild a data directory from a backup directory (the node must not be running on
    /// it; the directory must hold no store yet).
    Restore {
        src: PathBuf,
        /// The data directory to create (required unless --list).
        #[arg(long, required_unless_present = "list")]
        data_dir: Option<PathBuf>,
        /// The backup number (default: the latest).
        #[arg(long)]
        backup_id: Option<u32>,
        /// List the backups in SRC instead.
        #[arg(long)]
        list: bool,
    },
}

pub async fn run(cmd: BackupCommand) -> anyhow::Result<()> {
    match cmd {
        BackupCommand::Backup { dest, conn } => backup(&conn.connect().await?, &dest, false).await,
        BackupCommand::Restore {
            src,
            data_dir,
            backup_id,
            list,
        } => restore(&src, data_dir.as_deref(), backup_id, list),
    }
}

/// The backup directory as the node must see it: absolute (the node's working directory
/// is not the caller's).
pub fn absolute(dest: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    dest.canonicalize()
        .with_context(|| format!("resolving {}", dest.display()))
}

pub fn print_report(c: &Client, r: &pb::BackupResponse, dest: &Path) -> anyhow::Result<()> {
    if c.json() {
        let stores: Vec<_> = r
            .stores
            .iter()
            .map(|s| {
                serde_json::json!({
                    "store": s.store, "backup_id": s.backup_id, "timestamp": s.timestamp,
                    "size_bytes": s.size_bytes, "files": s.files, "new_files": s.new_files,
                })
            })
            .collect();
        return c.print_json(&serde_json::json!({
            "destination": dest, "stores": stores, "files": r.files,
        }));
    }
    for s in &r.stores {
        println!(
            "{}: backup {} ({} bytes in {} files, {} new) in {}",
            s.store,
            s.backup_id,
            s.size_bytes,
            s.files,
            s.new_files,
            dest.join(&s.store).display()
        );
    }
    println!("key and token files: {}", r.files);
    Ok(())
}

/// Asks the node (or, with `top_level`, the top-level node) for a backup into `dest`.
pub async fn backup(c: &Client, dest: &Path, top_level: bool) -> anyhow::Result<()> {
    let dest = absolute(dest)?;
    let request = pb::BackupRequest {
        destination: dest.to_string_lossy().into_owned(),
    };
    let r = if top_level {
        c.toplevel().backup(request).await
    } else {
        c.admin().backup(request).await
    }
    .map_err(|s| c.fail(s))?
    .into_inner();
    print_report(c, &r, &dest)
}

pub fn restore(
    src: &Path,
    data_dir: Option<&Path>,
    id: Option<u32>,
    list: bool,
) -> anyhow::Result<()> {
    if list {
        for dir in idnode::store::backup::store_dirs(src) {
            for b in idnode::store::rocks::list_backups(&src.join(dir))? {
                println!(
                    "{dir}: backup {} taken at {} ({} bytes in {} files)",
                    b.id, b.timestamp, b.size_bytes, b.files
                );
            }
        }
        return Ok(());
    }
    let data_dir = data_dir.context("--data-dir is required")?;
    let r = idnode::store::backup::restore(src, data_dir, id)
        .with_context(|| format!("restoring {} into {}", src.display(), data_dir.display()))?;
    for (dir, b) in &r.stores {
        println!(
            "{dir}: backup {} ({} bytes) restored into {}",
            b.id,
            b.size_bytes,
            data_dir.join(dir).display()
        );
    }
    println!("key and token files: {}", r.files);
    Ok(())
}
