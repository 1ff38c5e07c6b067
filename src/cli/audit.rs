//! `idnode audit ...`: check a node's operation log against its records and the signed heads
//! (read-only, offline), or show the log entries of one identifier (from a running node).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;

use super::canonical::canonical_identifier;
use super::connect::Connection;
use idnode::api::grpc::pb;
use idnode::audit::{self, SignedHead};
use idnode::store::rocks::{RocksConfig, RocksStore};
use idnode::store::{Store, Table};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the operation log of a node's data directory (read-only; the node may be
    /// running) and check it against its records and the signed heads held by the
    /// top-level node (`--toplevel URL`, else the embedded one in the data directory).
    Verify {
        #[arg(long, default_value = "./idnode-data")]
        data_dir: PathBuf,
        /// gRPC URL of the top-level node holding this node's signed heads.
        #[arg(long)]
        toplevel: Option<String>,
        /// TLS toward an https:// --toplevel.
        #[command(flatten)]
        tls: super::connect::TlsArgs,
    },
    /// The log entries of one identifier, from a running node (owner or admin token).
    Proof {
        identifier: String,
        #[command(flatten)]
        conn: Connection,
    },
}

fn read_only(path: PathBuf) -> anyhow::Result<RocksStore> {
    let mut config = RocksConfig::new(path.clone());
    config.block_cache_bytes = 32 << 20;
    RocksStore::open_read_only(&config)
        .map_err(|e| anyhow!("opening {} read-only: {e}", path.display()))
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            data_dir,
            toplevel,
            tls,
        } => {
            let store = read_only(data_dir.join("db"))?;
            let node_prefix = store
                .get(Table::Meta, b"node_prefix")
                .map_err(|e| anyhow!("{e}"))?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .context("the store has no node prefix: not an idnode data directory?")?;
            let heads: Vec<SignedHead> = match toplevel {
                Some(url) => {
                    let (url, endpoint) = super::connect::endpoint(&url, &tls)?;
                    let channel = super::connect::connect(&url, endpoint).await?;
                    pb::top_level_client::TopLevelClient::new(channel)
                        .get_heads(pb::GetHeadsRequest {
                            node_prefix: node_prefix.clone(),
                        })
                        .await
                        .map_err(|s| anyhow!("GetHeads: {}", s.message()))?
                        .into_inner()
                        .heads
                        .into_iter()
                        .map(|h| SignedHead {
                            node_prefix: node_prefix.clone(),
                            seq: h.seq,
                            hash: h.hash,
                            at: h.at,
                            signature: h.signature,
                            public_key: h.public_key,
                        })
                        .collect()
                }
                None if data_dir.join("toplevel/db").exists() => {
                    let top = read_only(data_dir.join("toplevel/db"))?;
                    let mut start = node_prefix.as_bytes().to_vec();
                    start.push(0);
                    top.scan(Table::Heads, &start, None, usize::MAX)
                        .map_err(|e| anyhow!("{e}"))?
                        .into_iter()
                        .map(|(_, v)| {
                            idnode::store::codec::decode_json(&v).map_err(|e| anyhow!("{e}"))
                        })
                        .collect::<anyhow::Result<_>>()?
                }
                None => Vec::new(),
            };
            let key = match std::fs::read_to_string(data_dir.join("node.key")) {
                Ok(_) => {
                    Some(idnode::secrets::node_key(&data_dir.join("node.key"))?.verifying_key())
                }
                Err(_) => None,
            };
            let report = audit::verify(&store, &heads, key.as_ref()).map_err(|e| anyhow!("{e}"))?;
            println!(
                "node {node_prefix}: {} log entries (head {} {}), {} records, {} signed heads checked",
                report.entries,
                report.head.0,
                &report.head.1[..16.min(report.head.1.len())],
                report.records,
                report.heads
            );
            if report.problems.is_empty() {
                println!("OK: the log, the records and the signed heads agree");
                return Ok(());
            }
            for p in &report.problems {
                println!("BROKEN: {p}");
            }
            bail!("{} problems found", report.problems.len())
        }
        AuditCommand::Proof { identifier, conn } => {
            let c = conn.connect().await?;
            let p = c
                .registry()
                .get_proof(pb::GetProofRequest {
                    identifier: identifier.clone(),
                })
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let identifier = canonical_identifier(&identifier);
            if c.json() {
                let entries: Vec<_> = p
                    .entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "seq": e.seq, "at": e.at, "op": e.op, "actor": e.actor,
                            "content": e.content, "prev": e.prev, "hash": e.hash,
                        })
                    })
                    .collect();
                return c.print_json(&serde_json::json!({
                    "identifier": identifier, "consistent": p.consistent, "entries": entries,
                    "head_seq": p.head_seq, "head_hash": p.head_hash,
                }));
            }
            println!(
                "{identifier}: {} entries, {}",
                p.entries.len(),
                if p.consistent {
                    "consistent"
                } else {
                    "INCONSISTENT"
                }
            );
            for e in p.entries {
                println!(
                    "  #{:<8} {:<8} {:<24} content {} hash {}",
                    e.seq,
                    e.op,
                    e.actor,
                    short(&e.content),
                    short(&e.hash)
                );
            }
            println!("log head: #{} {}", p.head_seq, short(&p.head_hash));
            Ok(())
        }
    }
}

fn short(h: &str) -> &str {
    &h[..16.min(h.len())]
}
