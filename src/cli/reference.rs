//! `idnode bench-reference` (hidden): the reference servers and loaders that `idnode bench`
//! figures are compared with: a trivial tonic Resolver answering from a HashMap, raw RocksDB
//! WriteBatch puts and raw SST ingestion of a data set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use clap::Subcommand;

use idnode::api::grpc::pb;
use idnode::bulk::gen::{self, GenConfig};

#[derive(Subcommand)]
pub enum ReferenceCommand {
    /// A trivial tonic server answering Resolve from a HashMap: of the records in a node's
    /// store (`--data-dir`: the same answers, byte for byte, the node gives anonymous
    /// clients), or of `idnode gen` records (`--gen-count`; their values carry no timestamp).
    Grpc {
        #[arg(long, default_value = "127.0.0.1:7900")]
        addr: SocketAddr,
        /// A node's data directory (read-only; it may be serving).
        #[arg(long, conflicts_with = "gen_count")]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        gen_count: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        enterprises: u32,
        #[arg(long, default_value = "88.101")]
        node_prefix: String,
    },
    /// Raw RocksDB WriteBatch puts of a data set's keys and encoded records, into a fresh
    /// directory.
    RocksBatch {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        /// Puts per WriteBatch (as `idnode import --chunk`).
        #[arg(long, default_value_t = 2000)]
        batch: usize,
    },
    /// Raw SstFileWriter + ingest of a data set's keys and encoded records, sorted
    /// beforehand (the sort is not timed).
    RocksSst {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        dir: PathBuf,
    },
}

struct Trivial {
    answers: std::collections::HashMap<String, pb::ResolveResponse>,
}

#[tonic::async_trait]
impl pb::resolver_server::Resolver for Trivial {
    async fn resolve(
        &self,
        req: tonic::Request<pb::ResolveRequest>,
    ) -> Result<tonic::Response<pb::ResolveResponse>, tonic::Status> {
        match self.answers.get(&req.get_ref().identifier) {
            Some(a) => Ok(tonic::Response::new(a.clone())),
            None => Err(tonic::Status::not_found("not registered")),
        }
    }
}

fn encoded(input: &PathBuf) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let file = std::fs::File::open(input)?;
    let reader = idnode::bulk::Reader::new(
        std::io::BufReader::with_capacity(1 << 20, file),
        idnode::bulk::Format::of(input),
    );
    reader
        .map(|r| {
            let r = r.map_err(|e| anyhow!(e))?;
            let id = idnode::identifier::Identifier::parse(&r.identifier)?;
            let rec = r.to_record().map_err(|e| anyhow!("{e}"))?;
            Ok((
                id.as_bytes().to_vec(),
                idnode::store::codec::encode_record(&rec),
            ))
        })
        .collect()
}

pub async fn run(cmd: ReferenceCommand) -> anyhow::Result<()> {
    use idnode::store::rocks::{RocksConfig, RocksStore};
    use idnode::store::{Batch, Durability, Store, Table};
    match cmd {
        ReferenceCommand::Grpc {
            addr,
            data_dir,
            gen_count,
            seed,
            enterprises,
            node_prefix,
        } => {
            let c = GenConfig {
                seed,
                node_prefix,
                enterprises,
            };
            let mut answers = std::collections::HashMap::with_capacity(gen_count as usize);
            if let Some(dir) = &data_dir {
                // Every record of the store, public values only: what the node answers.
                let mut config = RocksConfig::new(dir.join("db"));
                config.block_cache_bytes = 32 << 20;
                let store = RocksStore::open_read_only(&config)
                    .map_err(|e| anyhow!("opening {}: {e}", dir.display()))?;
                let mut after: Option<Vec<u8>> = None;
                loop {
                    let page = store
                        .scan(Table::Records, b"", after.as_deref(), 10_000)
                        .map_err(|e| anyhow!("{e}"))?;
                    let Some((last, _)) = page.last() else { break };
                    after = Some(last.clone());
                    for (k, v) in page {
                        let identifier = String::from_utf8(k)?;
                        let rec = idnode::store::codec::decode_record(&v)
                            .map_err(|e| anyhow!("{identifier}: {e}"))?;
                        let values = rec
                            .values
                            .into_iter()
                            .filter(|v| v.permissions.public_read)
                            .map(idnode::api::grpc::convert::value_to)
                            .collect();
                        answers.insert(
                            identifier.clone(),
                            pb::ResolveResponse { identifier, values },
                        );
                    }
                }
            }
            for i in 0..gen_count {
                let r = gen::record(&c, i);
                let rec = r.to_record().map_err(|e| anyhow!("{e}"))?;
                answers.insert(
                    r.identifier.clone(),
                    pb::ResolveResponse {
                        identifier: r.identifier,
                        values: rec
                            .values
                            .into_iter()
                            .map(idnode::api::grpc::convert::value_to)
                            .collect(),
                    },
                );
            }
            println!("trivial Resolver with {} records on {addr}", answers.len());
            tonic::transport::Server::builder()
                .add_service(pb::resolver_server::ResolverServer::new(Trivial {
                    answers,
                }))
                .serve_with_shutdown(addr, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            Ok(())
        }
        ReferenceCommand::RocksBatch { input, dir, batch } => {
            let entries = encoded(&input)?;
            let store = RocksStore::open(&RocksConfig::new(&dir)).map_err(|e| anyhow!("{e}"))?;
            let started = Instant::now();
            for chunk in entries.chunks(batch.max(1)) {
                let mut b = Batch::new();
                for (k, v) in chunk {
                    b.put(Table::Records, k.clone(), v.clone());
                }
                store
                    .write(b, Durability::Wal)
                    .map_err(|e| anyhow!("{e}"))?;
            }
            let s = started.elapsed().as_secs_f64();
            println!("{{\"reference\":\"rocks-batch\",\"records\":{},\"seconds\":{s:.3},\"records_per_second\":{:.0}}}", entries.len(), entries.len() as f64 / s);
            Ok(())
        }
        ReferenceCommand::RocksSst { input, dir } => {
            let mut entries = encoded(&input)?;
            entries.sort_unstable();
            entries.dedup_by(|a, b| a.0 == b.0);
            let store = RocksStore::open(&RocksConfig::new(&dir)).map_err(|e| anyhow!("{e}"))?;
            let started = Instant::now();
            let n = entries.len();
            let mut staging = store.stage("bench").map_err(|e| anyhow!("{e}"))?;
            for (k, v) in &entries {
                staging
                    .put(Table::Records, k, v)
                    .map_err(|e| anyhow!("{e}"))?;
            }
            staging.finish().map_err(|e| anyhow!("{e}"))?;
            store
                .ingest_staged("bench", Table::Records)
                .map_err(|e| anyhow!("{e}"))?;
            store.discard_staged("bench").map_err(|e| anyhow!("{e}"))?;
            let s = started.elapsed().as_secs_f64();
            println!("{{\"reference\":\"rocks-sst\",\"records\":{n},\"seconds\":{s:.3},\"records_per_second\":{:.0}}}", n as f64 / s);
            Ok(())
        }
    }
}
