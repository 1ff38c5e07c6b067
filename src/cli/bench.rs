//! `idnode bench`: a load generator for operators; `idnode bench-compare`: two of its reports
//! side by side. The reference servers its figures are compared with are in `reference.rs`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use idnode::api::grpc::client::BearerAuth;
use idnode::api::grpc::pb;
use idnode::bulk::gen::{self, GenConfig};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Load generator: throughput and latency percentiles of a running node.
    Bench(Box<BenchArgs>),
    /// Print two `idnode bench` reports side by side.
    BenchCompare {
        a: PathBuf,
        b: PathBuf,
        /// Also plot both runs on one chart (SVG): throughput over time, latency percentiles.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Bench(b) => bench(*b).await,
        BenchCommand::BenchCompare { a, b, plot } => compare(&a, &b, plot.as_deref()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// gRPC Resolve.
    Resolve,
    /// DNS TXT queries over UDP.
    ResolveDns,
    /// gRPC Register of new identifiers.
    Register,
    /// gRPC BatchRegister, 100 records per message.
    BatchRegister,
    /// Resolve and Register in the ratio of --mix.
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    Uniform,
    Zipf,
    /// Every key once, in data-set order, then again (a warm-up pass over all keys).
    Sequential,
}

#[derive(Args, Clone)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "resolve")]
    pub op: Op,
    /// The node's gRPC URL; a site's servers comma-separated: the workers are spread over
    /// them, and one that answers UNAVAILABLE (or cannot be reached) moves to the next.
    #[arg(long, env = "IDNODE_NODE", default_value = "http://127.0.0.1:7000")]
    pub node: String,
    /// Register ops: another server of the same site, where every `--observe-every`th
    /// acknowledged identifier is resolved until it appears: the replication lag, from
    /// the acknowledgement to visibility there.
    #[arg(long)]
    pub observe: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub observe_every: u64,
    #[command(flatten)]
    pub tls: super::connect::TlsArgs,
    /// DNS server for resolve-dns.
    #[arg(long, default_value = "127.0.0.1:5353")]
    pub dns: SocketAddr,
    #[arg(long, default_value = "id.example.")]
    pub zone: String,
    /// Token file for create ops (admin or the enterprise's).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Requests in flight at most (closed loop: always this many).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Open loop: requests per second, each due on schedule whatever the latency (latency
    /// is measured from when it was due, so queueing shows; at most --concurrency in
    /// flight, so a server that stops answering makes every later request late).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Stop after this many seconds...
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// ...or after this many requests.
    #[arg(long)]
    pub count: Option<u64>,
    /// Percentage of resolves in --op mixed.
    #[arg(long, default_value_t = 90)]
    pub mix: u32,
    /// Keys: identifiers of a data set file (JSON Lines or CSV)...
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// ...or of `idnode gen` with these parameters (no file needed).
    #[arg(long, default_value_t = 0)]
    pub gen_count: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 1000)]
    pub enterprises: u32,
    #[arg(long, default_value = "88.101")]
    pub node_prefix: String,
    #[arg(long, value_enum, default_value = "uniform")]
    pub distribution: Distribution,
    /// Zipf exponent.
    #[arg(long, default_value_t = 1.0)]
    pub zipf_exponent: f64,
    /// Fraction of resolves for identifiers that do not exist.
    #[arg(long, default_value_t = 0.0)]
    pub miss_ratio: f64,
    /// Fraction of resolves for identifiers of another node (forwarded), drawn from
    /// --remote-keys.
    #[arg(long, default_value_t = 0.0)]
    pub remote_ratio: f64,
    #[arg(long)]
    pub remote_keys: Option<PathBuf>,
    /// gRPC connections (HTTP/2) shared by the workers.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Prefix new identifiers are created under.
    #[arg(long, default_value = "88.101.1")]
    pub create_prefix: String,
    /// Write the JSON report here, and its plots (throughput over time, latency
    /// percentiles) beside it as SVG (the same name ending in `.svg`).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Label in the report.
    #[arg(long, default_value = "idnode")]
    pub label: String,
    /// Append every identifier whose creation was acknowledged to this file.
    #[arg(long)]
    pub acked: Option<PathBuf>,
    /// Instead of load: resolve every identifier of an --acked file (with --token-file)
    /// and check it holds exactly the values that were acknowledged. Fails if any is
    /// missing or different.
    #[arg(long)]
    pub verify: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyUs {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// The JSON report of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub label: String,
    pub op: Op,
    pub target: String,
    pub concurrency: usize,
    pub rate: Option<u64>,
    pub distribution: Distribution,
    pub keys: u64,
    pub seconds: f64,
    pub requests: u64,
    pub ok: u64,
    /// Errors by kind (gRPC code name, DNS rcode, "timeout", "transport").
    pub errors: BTreeMap<String, u64>,
    pub throughput: f64,
    pub latency_us: LatencyUs,
    /// Workers that moved to the next server of `target` after UNAVAILABLE.
    #[serde(default)]
    pub failovers: u64,
    /// With `--observe`: from a register's acknowledgement until the observed server
    /// resolved it, over the sampled identifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_after_us: Option<LatencyUs>,
    /// With `--observe`: sampled identifiers the observed server did not resolve in 10 s.
    #[serde(default)]
    pub never_visible: u64,
    /// Requests completed in each second of the run.
    #[serde(default)]
    pub per_second: Vec<u64>,
    /// The latency percentile curve: (percentile, µs), from 0 to 100.
    #[serde(default)]
    pub percentiles: Vec<(f64, u64)>,
}

/// The percentiles an HDR plot shows: dense toward the tail (…, 99, 99.9, 99.99, …).
fn percentile_curve(hist: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut points = vec![0.0, 10.0, 25.0, 50.0, 75.0];
    let mut nines = 90.0;
    while nines < 99.9999 {
        points.extend([nines, 100.0 - (100.0 - nines) / 2.0]);
        nines = 100.0 - (100.0 - nines) / 10.0;
    }
    points.push(100.0);
    points
        .into_iter()
        .map(|p| (p, hist.value_at_percentile(p)))
        .collect()
}

impl LatencyUs {
    fn of(hist: &Histogram<u64>) -> LatencyUs {
        LatencyUs {
            p50: hist.value_at_quantile(0.5),
            p90: hist.value_at_quantile(0.9),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            mean: hist.mean(),
        }
    }
}

/// The keys of a run: read from a file, or computed from `idnode gen`'s parameters when
/// drawn (a 100-million-key run holds no list).
enum KeyList {
    Listed(Vec<String>),
    Generated(GenConfig, u64),
}

impl KeyList {
    fn len(&self) -> usize {
        match self {
            KeyList::Listed(v) => v.len(),
            KeyList::Generated(_, n) => *n as usize,
        }
    }

    fn get(&self, i: usize) -> String {
        match self {
            KeyList::Listed(v) => v[i].clone(),
            KeyList::Generated(c, _) => gen::identifier_of(c, i as u64),
        }
    }
}

/// Draws key positions uniformly or Zipf-distributed (rank 0 the most popular).
struct Keys {
    keys: KeyList,
    remote: Vec<String>,
    zipf: Option<Vec<f64>>,
    /// The next position for `Distribution::Sequential`.
    next: std::sync::atomic::AtomicUsize,
}

impl Keys {
    fn pick(&self, rng: &mut StdRng, args: &BenchArgs) -> String {
        let x: f64 = rng.random();
        if x < args.miss_ratio {
            return format!(
                "{}/MISSING-{:016x}",
                args.create_prefix,
                rng.random::<u64>()
            );
        }
        if x < args.miss_ratio + args.remote_ratio && !self.remote.is_empty() {
            return self.remote[rng.random_range(0..self.remote.len())].clone();
        }
        let i = match (args.distribution, &self.zipf) {
            (Distribution::Sequential, _) => {
                self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.keys.len()
            }
            (_, None) => rng.random_range(0..self.keys.len()),
            (_, Some(cdf)) => {
                let u: f64 = rng.random();
                cdf.partition_point(|c| *c < u).min(self.keys.len() - 1)
            }
        };
        self.keys.get(i)
    }
}

fn load_keys(args: &BenchArgs) -> anyhow::Result<Keys> {
    let keys = match (&args.keys, args.gen_count) {
        (Some(path), _) => KeyList::Listed(super::bulk::identifiers(path)?),
        (None, n) if n > 0 => KeyList::Generated(
            GenConfig {
                seed: args.seed,
                node_prefix: args.node_prefix.clone(),
                enterprises: args.enterprises,
            },
            n,
        ),
        _ if matches!(args.op, Op::Register | Op::BatchRegister) => {
            KeyList::Listed(vec!["88.101.1/unused".into()])
        }
        _ => bail!("give --keys FILE or --gen-count N for resolve load"),
    };
    if keys.len() == 0 {
        bail!("no keys");
    }
    let remote = match &args.remote_keys {
        Some(p) => super::bulk::identifiers(p)?,
        None => Vec::new(),
    };
    let zipf = (args.distribution == Distribution::Zipf).then(|| {
        // Cumulative distribution over ranks; keys are shuffled ranks already (gen order).
        let n = keys.len().min(10_000_000);
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(args.zipf_exponent);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        cdf
    });
    Ok(Keys {
        keys,
        remote,
        zipf,
        next: Default::default(),
    })
}

/// Shared counters of a run.
struct Stats {
    hist: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    requests: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    failovers: AtomicU64,
    /// `--observe`: acknowledgement → visible on the observed server, and the misses.
    visible: Mutex<Histogram<u64>>,
    never_visible: AtomicU64,
    /// When the run started, and the requests completed in each second since (bounded: one
    /// counter per second, at most a day's).
    began: Instant,
    per_second: Mutex<Vec<u64>>,
}

impl Stats {
    fn record(&self, started: Instant, outcome: Result<(), String>) {
        let us = started.elapsed().as_micros().max(1) as u64;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let second = (self.began.elapsed().as_secs() as usize).min(86_400);
        {
            let mut per = self.per_second.lock().unwrap_or_else(|e| e.into_inner());
            if per.len() <= second {
                per.resize(second + 1, 0);
            }
            per[second] += 1;
        }
        let _ = self
            .hist
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(us.min(60_000_000));
        match outcome {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(kind) => {
                *self
                    .errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(kind)
                    .or_default() += 1
            }
        }
    }
}

type Resolver = pb::resolver_client::ResolverClient<
    tonic::service::interceptor::InterceptedService<Channel, BearerAuth>,
>;
type Registry = pb::registry_client::RegistryClient<
    tonic::service::interceptor::InterceptedService<Channel, BearerAuth>,
>;

/// One client of the node: gRPC stubs for each server of `--node`, or a DNS socket.
struct Worker {
    /// One (resolver, registry) per server; `current` is the one asked.
    targets: Vec<(Resolver, Registry)>,
    current: usize,
    dns: Option<tokio::net::UdpSocket>,
    zone: hickory_proto::rr::Name,
    acked: Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>>,
    /// `--observe`: the observed server.
    observer: Option<Resolver>,
    /// The run's counters (failovers and the observed figures are recorded here).
    stats: Arc<Stats>,
}

impl Worker {
    /// One request; after UNAVAILABLE (a server down or without a quorum) the next
    /// server of `--node` takes this worker's requests.
    async fn run_one(
        &mut self,
        args: &BenchArgs,
        keys: &Keys,
        rng: &mut StdRng,
        seq: u64,
        run: u64,
    ) -> Result<(), String> {
        let outcome = self.run_op(args, keys, rng, seq, run).await;
        if outcome.as_ref().is_err_and(|e| e == "unavailable") && self.targets.len() > 1 {
            self.current = (self.current + 1) % self.targets.len();
            self.stats.failovers.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    /// Samples every `every`th acknowledged identifier: resolves it on the observed
    /// server until it is there (10 s at most) and records how long after `acked` it was.
    fn observe(&self, id: &str, seq: u64, every: u64, acked: Instant) {
        let Some(resolver) = &self.observer else {
            return;
        };
        let stats = &self.stats;
        if !seq.is_multiple_of(every.max(1)) {
            return;
        }
        let (mut resolver, stats, id) = (resolver.clone(), Arc::clone(stats), id.to_owned());
        tokio::spawn(async move {
            while acked.elapsed() < Duration::from_secs(10) {
                let asked = resolver
                    .resolve(pb::ResolveRequest {
                        identifier: id.clone(),
                        ..Default::default()
                    })
                    .await;
                if asked.is_ok() {
                    let us = acked.elapsed().as_micros().max(1) as u64;
                    let mut h = stats.visible.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = h.record(us.min(60_000_000));
                    return;
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            stats.never_visible.fetch_add(1, Ordering::Relaxed);
        });
    }

    async fn run_op(
        &mut self,
        args: &BenchArgs,
        keys: &Keys,
        rng: &mut StdRng,
        seq: u64,
        run: u64,
    ) -> Result<(), String> {
        let op = match args.op {
            Op::Mixed if rng.random_range(0..100) < args.mix => Op::Resolve,
            Op::Mixed => Op::Register,
            op => op,
        };
        let grpc_err = |s: tonic::Status| match s.code() {
            tonic::Code::NotFound => "not_found".to_owned(),
            c => format!("{c:?}").to_lowercase(),
        };
        match op {
            Op::Resolve | Op::Mixed => {
                let req = pb::ResolveRequest {
                    identifier: keys.pick(rng, args),
                    ..Default::default()
                };
                self.targets[self.current]
                    .0
                    .resolve(req)
                    .await
                    .map(|_| ())
                    .map_err(grpc_err)
            }
            Op::Register => {
                let record = bench_record(&args.create_prefix, run, seq, 0);
                let id = record.identifier.clone();
                self.targets[self.current]
                    .1
                    .register(pb::RegisterRequest {
                        record: Some(record),
                    })
                    .await
                    .map_err(grpc_err)?;
                self.ack([id.as_str()]);
                self.observe(&id, seq, args.observe_every, Instant::now());
                Ok(())
            }
            Op::BatchRegister => {
                let records: Vec<_> = (0..100)
                    .map(|j| bench_record(&args.create_prefix, run, seq, j))
                    .collect();
                let ids: Vec<String> = records.iter().map(|r| r.identifier.clone()).collect();
                let mut s = self.targets[self.current]
                    .1
                    .batch_register(tokio_stream::iter(vec![pb::BatchRegisterRequest {
                        records,
                    }]))
                    .await
                    .map_err(grpc_err)?
                    .into_inner();
                let r = s.message().await.map_err(grpc_err)?.ok_or("empty")?;
                let acked_at = Instant::now();
                if let (Some(first), Some(x)) = (ids.first(), r.results.first()) {
                    if x.code == 0 {
                        self.observe(first, seq, args.observe_every, acked_at);
                    }
                }
                self.ack(
                    ids.iter()
                        .zip(&r.results)
                        .filter(|(_, x)| x.code == 0)
                        .map(|(id, _)| id.as_str()),
                );
                match r.results.iter().find(|x| x.code != 0) {
                    Some(bad) => Err(format!("item_code_{}", bad.code)),
                    None => Ok(()),
                }
            }
            Op::ResolveDns => self.dns_query(keys.pick(rng, args), seq as u16).await,
        }
    }

    /// Records acknowledged creations (`--acked`).
    fn ack<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Some(out) = &self.acked {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            for id in ids {
                let _ = writeln!(out, "{id}");
            }
        }
    }

    async fn dns_query(&mut self, identifier: String, id: u16) -> Result<(), String> {
        use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
        let socket = self.dns.as_ref().ok_or("no DNS socket")?;
        let parsed =
            idnode::identifier::Identifier::parse(&identifier).map_err(|_| "bad_key".to_owned())?;
        let name = idnode::api::dns::naming::encode(&parsed, &self.zone)
            .map_err(|_| "name_too_long".to_owned())?;
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(name, hickory_proto::rr::RecordType::TXT));
        let bytes = m.to_vec().map_err(|_| "encode".to_owned())?;
        socket
            .send(&bytes)
            .await
            .map_err(|_| "transport".to_owned())?;
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = match tokio::time::timeout(left, socket.recv(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => return Err("transport".into()),
                Err(_) => return Err("timeout".into()),
            };
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id {
                continue; // a late answer to an earlier, timed-out query
            }
            let reply = Message::from_vec(&buf[..n]).map_err(|_| "formerr".to_owned())?;
            return match reply.metadata.response_code {
                ResponseCode::NoError => Ok(()),
                ResponseCode::NXDomain => Err("nxdomain".into()),
                other => Err(format!("{other:?}").to_lowercase()),
            };
        }
    }
}

fn bench_record(prefix: &str, run: u64, seq: u64, j: u64) -> pb::Record {
    let text = |index: u32, value_type: &str, data: String| pb::Value {
        index,
        r#type: value_type.into(),
        data: data.into_bytes(),
        ..Default::default()
    };
    pb::Record {
        identifier: format!("{prefix}/BENCH-{run:x}-{seq}-{j}"),
        values: vec![
            text(
                1,
                "URL",
                format!("https://bench.example.cn/{run:x}/{seq}/{j}"),
            ),
            text(2, "batchNo", format!("B{seq:08}")),
            text(3, "productionDate", "2025-06-01".into()),
        ],
    }
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading {}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let auth = BearerAuth::new(token.as_deref()).map_err(|e| anyhow!("{e}"))?;
    if let Some(file) = &args.verify {
        return verify(&args, file, auth).await;
    }
    let keys = Arc::new(load_keys(&args)?);
    let acked = match &args.acked {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?;
            Some(Arc::new(Mutex::new(std::io::BufWriter::new(f))))
        }
        None => None,
    };
    // Per server of --node, `connections` channels. A server that cannot be reached now
    // gets lazy channels (its requests fail over) as long as one server can be.
    let mut channels: Vec<Vec<Channel>> = Vec::new();
    if args.op != Op::ResolveDns {
        let mut reached = None;
        for node in args
            .node
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let (url, endpoint) = super::connect::endpoint(node, &args.tls)?;
            let mut of_node = Vec::new();
            for _ in 0..args.connections.max(1) {
                match super::connect::connect(&url, endpoint.clone()).await {
                    Ok(ch) => {
                        reached = Some(Ok(()));
                        of_node.push(ch);
                    }
                    Err(e) => {
                        if reached.is_none() {
                            reached = Some(Err(e));
                        }
                        of_node.push(endpoint.clone().connect_lazy());
                    }
                }
            }
            channels.push(of_node);
        }
        match reached {
            None => bail!("--node is empty"),
            Some(Err(e)) => return Err(e),
            Some(Ok(())) => {}
        }
    } else {
        channels.push(vec![
            Channel::from_static("http://127.0.0.1:1").connect_lazy()
        ]);
    }
    let observer = match (&args.observe, args.op) {
        (Some(node), Op::Register | Op::BatchRegister | Op::Mixed) => {
            let (url, endpoint) = super::connect::endpoint(node, &args.tls)?;
            let ch = super::connect::connect(&url, endpoint).await?;
            Some(pb::resolver_client::ResolverClient::with_interceptor(
                ch,
                auth.clone(),
            ))
        }
        (Some(_), _) => bail!("--observe is for register ops"),
        (None, _) => None,
    };
    let zone =
        hickory_proto::rr::Name::from_ascii(&args.zone).map_err(|e| anyhow!("--zone: {e}"))?;
    let stats = Arc::new(Stats {
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ok: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        failovers: AtomicU64::new(0),
        visible: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        never_visible: AtomicU64::new(0),
        began: Instant::now(),
        per_second: Mutex::new(Vec::new()),
    });
    let run: u64 = rand::rng().random();
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let limit = args.count.unwrap_or(u64::MAX);
    let issued = Arc::new(AtomicU64::new(0));
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && args.duration >= 5.0 {
        indicatif::ProgressBar::new(args.duration as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let make_worker = |i: usize| -> anyhow::Result<Worker> {
        let targets = channels
            .iter()
            .map(|of_node| {
                let ch = of_node[(i / channels.len()) % of_node.len()].clone();
                (
                    pb::resolver_client::ResolverClient::with_interceptor(ch.clone(), auth.clone()),
                    pb::registry_client::RegistryClient::with_interceptor(ch, auth.clone()),
                )
            })
            .collect();
        Ok(Worker {
            targets,
            current: i % channels.len(),
            dns: None,
            zone: zone.clone(),
            acked: acked.clone(),
            observer: observer.clone(),
            stats: Arc::clone(&stats),
        })
    };
    // Closed loop: each worker sends its next request when the last is answered. Open loop
    // (`--rate`): request n is due at start + n / rate; a worker takes the next one due,
    // waits for its time, sends it and measures its latency from when it was due, so a
    // server that falls behind shows as queueing, never as a slower schedule. (One task per
    // request cost the load generator twice the CPU per request and saturated it first.)
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let mut tasks = Vec::new();
    for i in 0..args.concurrency.max(1) {
        let mut w = make_worker(i)?;
        if args.op == Op::ResolveDns {
            let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            s.connect(args.dns).await?;
            w.dns = Some(s);
        }
        let (args, keys, stats, issued) = (
            args.clone(),
            Arc::clone(&keys),
            Arc::clone(&stats),
            Arc::clone(&issued),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(run ^ i as u64);
            loop {
                let seq = issued.fetch_add(1, Ordering::Relaxed);
                let due = match interval {
                    Some(every) => started + every.mul_f64(seq as f64),
                    None => Instant::now(),
                };
                if seq >= limit || due >= deadline {
                    break;
                }
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                let outcome = w.run_one(&args, &keys, &mut rng, seq, run).await;
                stats.record(due, outcome);
            }
        }));
    }
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                bar.set_position(started.elapsed().as_secs());
            }
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    ticker.abort();
    bar.finish_and_clear();
    if let Some(out) = &acked {
        out.lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush()
            .context("writing --acked")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let hist = stats.hist.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let requests = stats.requests.load(Ordering::Relaxed);
    let report = Report {
        label: args.label.clone(),
        op: args.op,
        target: if args.op == Op::ResolveDns {
            args.dns.to_string()
        } else {
            args.node.clone()
        },
        concurrency: args.concurrency,
        rate: args.rate,
        distribution: args.distribution,
        keys: keys.keys.len() as u64,
        seconds,
        requests,
        ok: stats.ok.load(Ordering::Relaxed),
        errors: stats
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        throughput: requests as f64 / seconds.max(1e-9),
        latency_us: LatencyUs::of(&hist),
        failovers: stats.failovers.load(Ordering::Relaxed),
        visible_after_us: observer
            .as_ref()
            .map(|_| LatencyUs::of(&stats.visible.lock().unwrap_or_else(|e| e.into_inner()))),
        never_visible: stats.never_visible.load(Ordering::Relaxed),
        per_second: stats
            .per_second
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        percentiles: percentile_curve(&hist),
    };
    print_report(&report);
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        let svg = path.with_extension("svg");
        std::fs::write(&svg, plot(&report.label, &[&report]))?;
        println!(
            "report written to {} (plots: {})",
            path.display(),
            svg.display()
        );
    }
    Ok(())
}

/// The values `bench_record` sent for an identifier it made, if it is one of its.
fn expected_record(identifier: &str) -> Option<pb::Record> {
    let (prefix, suffix) = identifier.split_once('/')?;
    let mut parts = suffix.strip_prefix("BENCH-")?.split('-');
    let run = u64::from_str_radix(parts.next()?, 16).ok()?;
    let seq = parts.next()?.parse().ok()?;
    let j = parts.next()?.parse().ok()?;
    Some(bench_record(prefix, run, seq, j))
}

/// `--verify FILE`: every acknowledged identifier resolves to exactly what was sent.
async fn verify(args: &BenchArgs, file: &std::path::Path, auth: BearerAuth) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let ids: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let (url, endpoint) = super::connect::endpoint(&args.node, &args.tls)?;
    let channel = super::connect::connect(&url, endpoint).await?;
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let problems = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let mut resolver =
            pb::resolver_client::ResolverClient::with_interceptor(channel.clone(), auth.clone());
        let (ids, next, problems) = (Arc::clone(&ids), Arc::clone(&next), Arc::clone(&problems));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(i) else { break };
                let problem = match expected_record(id) {
                    None => Some(format!("{id}: not an identifier idnode bench made")),
                    Some(want) => match resolver
                        .resolve(pb::ResolveRequest {
                            identifier: id.clone(),
                            ..Default::default()
                        })
                        .await
                    {
                        Err(s) => Some(format!("{id}: {:?} {}", s.code(), s.message())),
                        Ok(r) => {
                            let got: Vec<_> = r
                                .into_inner()
                                .values
                                .into_iter()
                                .map(|v| (v.index, v.r#type, v.data))
                                .collect();
                            let want: Vec<_> = want
                                .values
                                .into_iter()
                                .map(|v| (v.index, v.r#type, v.data))
                                .collect();
                            (got != want).then(|| format!("{id}: values differ"))
                        }
                    },
                };
                if let Some(p) = problem {
                    problems.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let problems = problems.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!(
        "verified {} acknowledged creations: {} missing or different",
        ids.len(),
        problems.len()
    );
    for p in problems.iter().take(20) {
        println!("  {p}");
    }
    if !problems.is_empty() {
        bail!(
            "{} acknowledged creations are missing or different",
            problems.len()
        );
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!(
        "{} {:?} against {}: {} requests in {:.1} s = {:.0}/s ({} ok)",
        r.label, r.op, r.target, r.requests, r.seconds, r.throughput, r.ok
    );
    let l = &r.latency_us;
    println!(
        "latency µs: p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.0})",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    if !r.errors.is_empty() {
        let errs: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("errors: {}", errs.join(", "));
    }
    if r.failovers > 0 {
        println!("failovers to the next server: {}", r.failovers);
    }
    if let Some(v) = &r.visible_after_us {
        println!(
            "visible on the observed server after µs: p50 {} p90 {} p99 {} max {} ({} not within 10 s)",
            v.p50, v.p90, v.p99, v.max, r.never_visible
        );
    }
}

/// The plots of runs on one chart.
fn plot(title: &str, runs: &[&Report]) -> String {
    let series: Vec<idnode::bulk::plot::Series> = runs
        .iter()
        .map(|r| idnode::bulk::plot::Series {
            label: format!("{} ({:?}, {})", r.label, r.op, r.target),
            per_second: r.per_second.clone(),
            percentiles: r.percentiles.clone(),
        })
        .collect();
    idnode::bulk::plot::svg(title, &series)
}

/// Prints two reports side by side with their ratio (b / a); plots both to `plot_to`.
pub fn compare(a: &PathBuf, b: &PathBuf, plot_to: Option<&std::path::Path>) -> anyhow::Result<()> {
    let read = |p: &PathBuf| -> anyhow::Result<Report> {
        Ok(serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )?)
    };
    let (x, y) = (read(a)?, read(b)?);
    println!("{:<14} {:>14} {:>14} {:>8}", "", x.label, y.label, "b/a");
    let row = |name: &str, u: f64, v: f64| {
        println!("{name:<14} {u:>14.0} {v:>14.0} {:>8.2}", v / u.max(1e-9))
    };
    row("throughput/s", x.throughput, y.throughput);
    row("p50 µs", x.latency_us.p50 as f64, y.latency_us.p50 as f64);
    row("p90 µs", x.latency_us.p90 as f64, y.latency_us.p90 as f64);
    row("p99 µs", x.latency_us.p99 as f64, y.latency_us.p99 as f64);
    row(
        "p99.9 µs",
        x.latency_us.p999 as f64,
        y.latency_us.p999 as f64,
    );
    row("max µs", x.latency_us.max as f64, y.latency_us.max as f64);
    row(
        "errors",
        x.errors.values().sum::<u64>() as f64,
        y.errors.values().sum::<u64>() as f64,
    );
    if let Some(path) = plot_to {
        let title = format!("{} vs {}", x.label, y.label);
        std::fs::write(path, plot(&title, &[&x, &y]))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("plot written to {}", path.display());
    }
    Ok(())
}
