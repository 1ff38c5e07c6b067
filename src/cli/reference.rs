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
use idnode::record::{DataDomain, Risk};

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
    /// The work an online import of a data set must do, in its simplest form, with raw
    /// RocksDB write batches into a fresh directory: per batch of `--batch` records an
    /// absence check (a read) per key, the records, one log entry holding the batch's content
    /// hashes, and the counter merges (every record counted under `--owner`, the node prefix,
    /// as on a node without enterprise accounts); the clock stops when the memtables are
    /// flushed. What the node writes beyond this (a log index key per record, the hash
    /// chain) is its own design's cost.
    RocksBatch {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        /// Records per write batch (as `idnode import --chunk`).
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        #[arg(long, default_value = "88.101")]
        owner: String,
    },
    /// The work an offline import of a data set must do, in its simplest form: read and
    /// encode, an external sort within `--memory-mb` (sorted runs spilled beside `--dir`,
    /// then merged), SstFileWriter files of the records and of a log index key per record
    /// holding its content hash (the tables the node ingests), their ingestion into a fresh
    /// store, and one batch of counters and one log entry. Timed from the first read.
    RocksSst {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        /// Memory for sorting before runs spill to disk, MiB (as `idnode import --memory-mb`).
        #[arg(long, default_value_t = 1024)]
        memory_mb: usize,
        #[arg(long, default_value = "88.101")]
        owner: String,
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

/// A data set's record, as a node stores it.
struct Encoded {
    key: Vec<u8>,
    bytes: Vec<u8>,
    classes: std::collections::BTreeSet<(DataDomain, Risk)>,
}

/// The records of `input`, their values stamped at `at` (as the node stamps them).
fn records(
    input: &PathBuf,
    at: i64,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Encoded>>> {
    let file = std::fs::File::open(input)?;
    let reader = idnode::bulk::Reader::new(
        std::io::BufReader::with_capacity(1 << 20, file),
        idnode::bulk::Format::of(input),
    );
    Ok(reader.map(move |r| {
        let r = r.map_err(|e| anyhow!(e))?;
        let id = idnode::identifier::Identifier::parse(&r.identifier)?;
        let mut rec = r.to_record().map_err(|e| anyhow!("{e}"))?;
        for v in &mut rec.values {
            v.timestamp = at;
        }
        Ok(Encoded {
            key: id.as_bytes().to_vec(),
            bytes: idnode::store::codec::encode_record(&rec),
            classes: rec.classes(),
        })
    }))
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
        ReferenceCommand::RocksBatch {
            input,
            dir,
            batch,
            owner,
        } => {
            let at = idnode::auth::now();
            let entries = records(&input, at)?.collect::<anyhow::Result<Vec<_>>>()?;
            let store = RocksStore::open(&RocksConfig::new(&dir)).map_err(|e| anyhow!("{e}"))?;
            let started = Instant::now();
            let day = at.div_euclid(86_400);
            let mut written = 0usize;
            for (seq, chunk) in (1u64..).zip(entries.chunks(batch.max(1))) {
                let mut b = Batch::new();
                let mut hashes = Vec::with_capacity(chunk.len() * 32);
                let mut classes = std::collections::BTreeMap::new();
                let mut created = 0;
                for e in chunk {
                    if store
                        .get(Table::Records, &e.key)
                        .map_err(|e| anyhow!("{e}"))?
                        .is_some()
                    {
                        continue;
                    }
                    hashes.extend_from_slice(&idnode::oplog::content_digest(&e.bytes));
                    for c in &e.classes {
                        *classes.entry(*c).or_insert(0i64) += 1;
                    }
                    b.put(Table::Records, e.key.clone(), e.bytes.clone());
                    created += 1;
                }
                add_counters(&mut b, &owner, day, created, classes);
                b.put(Table::Oplog, seq.to_be_bytes().to_vec(), hashes);
                store
                    .write(b, Durability::Wal)
                    .map_err(|e| anyhow!("{e}"))?;
                written += created as usize;
            }
            store.flush().map_err(|e| anyhow!("{e}"))?;
            let s = started.elapsed().as_secs_f64();
            println!("{{\"reference\":\"rocks-batch\",\"records\":{written},\"seconds\":{s:.3},\"records_per_second\":{:.0}}}", written as f64 / s);
            Ok(())
        }
        ReferenceCommand::RocksSst {
            input,
            dir,
            memory_mb,
            owner,
        } => {
            let started = Instant::now();
            let at = idnode::auth::now();
            let runs_dir = dir.with_extension("runs");
            let (runs, mut held) = sort_runs(&input, at, memory_mb << 20, &runs_dir)?;
            let spilled = runs.len();
            let store = RocksStore::open(&RocksConfig::new(&dir)).map_err(|e| anyhow!("{e}"))?;
            let mut staging = store.stage("bench").map_err(|e| anyhow!("{e}"))?;
            let mut classes = std::collections::BTreeMap::new();
            let mut n = 0i64;
            let mut merged = Merged::new(runs, &mut held)?;
            while let Some(e) = merged.next()? {
                let hash = idnode::oplog::content_digest(&e.bytes);
                let id = std::str::from_utf8(&e.key)?;
                staging
                    .put(Table::Records, &e.key, &e.bytes)
                    .and_then(|()| {
                        staging.put(Table::OplogIndex, &idnode::oplog::index_key(id, 1), &hash)
                    })
                    .map_err(|e| anyhow!("{e}"))?;
                for c in &e.classes {
                    *classes.entry(*c).or_insert(0i64) += 1;
                }
                n += 1;
            }
            staging.finish().map_err(|e| anyhow!("{e}"))?;
            for t in [Table::OplogIndex, Table::Records] {
                store
                    .ingest_staged("bench", t)
                    .map_err(|e| anyhow!("{e}"))?;
            }
            store.discard_staged("bench").map_err(|e| anyhow!("{e}"))?;
            let mut b = Batch::new();
            add_counters(&mut b, &owner, at.div_euclid(86_400), n, classes);
            b.put(
                Table::Oplog,
                1u64.to_be_bytes().to_vec(),
                format!("import {n}").into_bytes(),
            );
            store
                .write(b, Durability::Wal)
                .map_err(|e| anyhow!("{e}"))?;
            let _ = std::fs::remove_dir_all(&runs_dir);
            let s = started.elapsed().as_secs_f64();
            println!("{{\"reference\":\"rocks-sst\",\"records\":{n},\"spilled_runs\":{spilled},\"seconds\":{s:.3},\"records_per_second\":{:.0}}}", n as f64 / s);
            Ok(())
        }
    }
}

/// The counter merges of `created` new records of `owner` on `day`, with their domain ×
/// risk classes: the keys and amounts the node's registrations add.
fn add_counters(
    b: &mut idnode::store::Batch,
    owner: &str,
    day: i64,
    created: i64,
    classes: std::collections::BTreeMap<(DataDomain, Risk), i64>,
) {
    use idnode::resolver::{class_key, daily_key, prefix_count_key, NODE_COUNT};
    use idnode::store::Table;
    b.add(Table::Counters, prefix_count_key(owner), created);
    b.add(Table::Counters, daily_key(owner, day), created);
    b.add(Table::Counters, NODE_COUNT.to_vec(), created);
    for ((d, r), n) in classes {
        b.add(Table::Counters, class_key(d, r).into_bytes(), n);
    }
}

/// Reads and encodes `input`, sorting by key in memory up to `budget` bytes of records and
/// spilling each full sorted run to a file in `dir`; returns the spilled runs and the last
/// run, still in memory (sorted). Duplicates keep the first.
fn sort_runs(
    input: &PathBuf,
    at: i64,
    budget: usize,
    dir: &std::path::Path,
) -> anyhow::Result<(Vec<std::path::PathBuf>, Vec<Encoded>)> {
    use std::io::Write;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut runs = Vec::new();
    let mut held: Vec<Encoded> = Vec::new();
    let mut bytes = 0;
    let sort = |held: &mut Vec<Encoded>| {
        held.sort_by(|a, b| a.key.cmp(&b.key));
        held.dedup_by(|a, b| a.key == b.key);
    };
    for e in records(input, at)? {
        let e = e?;
        bytes += e.key.len() + e.bytes.len() + 64;
        held.push(e);
        if bytes >= budget {
            sort(&mut held);
            let path = dir.join(format!("run-{}", runs.len()));
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
            for e in held.drain(..) {
                let classes: Vec<u8> = e
                    .classes
                    .iter()
                    .flat_map(|(d, r)| [position(&DataDomain::ALL, d), position(&Risk::ALL, r)])
                    .collect();
                for part in [&e.key, &e.bytes, &classes] {
                    w.write_all(&(part.len() as u32).to_le_bytes())?;
                    w.write_all(part)?;
                }
            }
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            runs.push(path);
            bytes = 0;
        }
    }
    sort(&mut held);
    Ok((runs, held))
}

/// The k-way merge of spilled runs and the run held in memory, in key order; among equal
/// keys the earliest run's wins.
struct Merged {
    readers: Vec<std::io::BufReader<std::fs::File>>,
    held: std::vec::IntoIter<Encoded>,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Vec<u8>, usize)>>,
    heads: Vec<Option<Encoded>>,
    last: Option<Vec<u8>>,
}

impl Merged {
    fn new(runs: Vec<std::path::PathBuf>, held: &mut Vec<Encoded>) -> anyhow::Result<Merged> {
        let readers = runs
            .iter()
            .map(|p| {
                Ok(std::io::BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(p)?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut m = Merged {
            heads: (0..=readers.len()).map(|_| None).collect(),
            readers,
            held: std::mem::take(held).into_iter(),
            heap: Default::default(),
            last: None,
        };
        for i in 0..m.heads.len() {
            m.refill(i)?;
        }
        Ok(m)
    }

    fn refill(&mut self, i: usize) -> anyhow::Result<()> {
        let next = match self.readers.get_mut(i) {
            Some(r) => read_spilled(r)?,
            None => self.held.next(),
        };
        if let Some(e) = &next {
            self.heap.push(std::cmp::Reverse((e.key.clone(), i)));
        }
        self.heads[i] = next;
        Ok(())
    }

    fn next(&mut self) -> anyhow::Result<Option<Encoded>> {
        while let Some(std::cmp::Reverse((key, i))) = self.heap.pop() {
            let e = self.heads[i].take().expect("a head per heap entry");
            self.refill(i)?;
            if self.last.as_deref() != Some(&key[..]) {
                self.last = Some(key);
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

fn position<T: PartialEq>(all: &[T], x: &T) -> u8 {
    all.iter().position(|a| a == x).unwrap_or(0) as u8
}

fn read_spilled(r: &mut impl std::io::Read) -> anyhow::Result<Option<Encoded>> {
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(3);
    for i in 0..3 {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Err(e) if i == 0 && e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        let mut part = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut part)?;
        parts.push(part);
    }
    let classes = parts[2]
        .chunks(2)
        .map(|c| {
            let d = DataDomain::ALL.get(c[0] as usize).copied();
            let r = Risk::ALL.get(c[1] as usize).copied();
            d.zip(r).ok_or_else(|| anyhow!("a spilled run is corrupt"))
        })
        .collect::<anyhow::Result<_>>()?;
    let bytes = parts.swap_remove(1);
    let key = parts.swap_remove(0);
    Ok(Some(Encoded {
        key,
        bytes,
        classes,
    }))
}
