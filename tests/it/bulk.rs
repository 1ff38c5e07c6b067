//! `idnode gen`, `idnode import` (online, resumable, offline) and `idnode bench`, as an
//! operator runs them, on small data.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use idnode::api::grpc::pb;
use idnode::record::Record;
use idnode::store::rocks::{RocksConfig, RocksStore};
use idnode::store::{codec, Store, Table};

use crate::support::TestNode;

const BIN: &str = env!("CARGO_BIN_EXE_idnode");

pub(crate) fn idnode(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("IDNODE_NODE")
        .env_remove("IDNODE_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_line(out: &str) -> serde_json::Value {
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

/// Records (without timestamps) and the node and per-prefix counts of a stopped node's
/// store.
pub(crate) fn contents(data_dir: &Path) -> (BTreeMap<String, Record>, Vec<(String, i64)>) {
    let store = RocksStore::open_read_only(&RocksConfig::new(data_dir.join("db"))).unwrap();
    let mut records = BTreeMap::new();
    for (k, v) in store.scan(Table::Records, b"", None, usize::MAX).unwrap() {
        let mut r = codec::decode_record(&v).unwrap();
        for v in &mut r.values {
            v.timestamp = 0;
        }
        records.insert(String::from_utf8(k).unwrap(), r);
    }
    let counts = store
        .scan(Table::Counters, b"registered", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), codec::decode_counter(&v)))
        .collect();
    (records, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_and_offline_imports_give_identical_stores() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("d.jsonl");
    let data_s = data.to_str().unwrap();
    idnode(&[
        "gen",
        "--count",
        "3000",
        "--enterprises",
        "20",
        "--seed",
        "9",
        "--out",
        data_s,
    ]);
    // A bad line and a duplicate with other content, to see failures reported by position.
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("{not json\n");
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    // A duplicate of record 2000 (inside the resumed range below) with other content.
    let later: serde_json::Value = serde_json::from_str(text.lines().nth(2000).unwrap()).unwrap();
    let mut dup = later.clone();
    dup["values"][0]["data"] = "https://other.example.cn/x".into();
    text.push_str(&format!("{dup}\n"));
    std::fs::write(&data, text).unwrap();

    // Online, interrupted: the progress file says 1200 records were acknowledged.
    let online_dir = work.path().join("online");
    let node = TestNode::start_in(&online_dir, false).await;
    let url = format!("http://{}", node.addr);
    let token = online_dir.join("admin.token");
    let token = token.to_str().unwrap();
    std::fs::write(work.path().join("d.jsonl.progress"), "1200").unwrap();
    // In several messages (the default is 2000 records per message).
    let r = json_line(&idnode(&[
        "import",
        data_s,
        "--resume",
        "--chunk",
        "500",
        "--node",
        &url,
        "--token-file",
        token,
        "--json",
    ]));
    assert_eq!(
        (
            r["skipped"].as_u64(),
            r["registered"].as_u64(),
            r["failed"].as_u64()
        ),
        (Some(1200), Some(1800), Some(2))
    );
    assert_eq!(r["acknowledged_position"], 3002);
    assert!(r["records_per_second"].as_f64().unwrap() > 0.0);
    let failures = std::fs::read_to_string(work.path().join("d.jsonl.failures.jsonl")).unwrap();
    let positions: Vec<u64> = failures
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["position"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(positions, [3000, 3001]);
    // The rest, from the start: the 1800 already there are harmless.
    let r = json_line(&idnode(&[
        "import",
        data_s,
        "--node",
        &url,
        "--token-file",
        token,
        "--json",
    ]));
    assert_eq!(
        (
            r["registered"].as_u64(),
            r["already_present"].as_u64(),
            r["failed"].as_u64()
        ),
        (Some(1200), Some(1800), Some(2))
    );
    let counts = node
        .registry(Some(&node.admin_token))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 3000);
    node.stop().await;

    // Offline into a fresh directory, twice (the second run changes nothing); a small
    // memory budget forces sorted runs to spill to disk.
    let offline_dir = work.path().join("offline");
    let off = offline_dir.to_str().unwrap();
    let r = json_line(&idnode(&[
        "import",
        "--offline",
        "--create",
        "--data-dir",
        off,
        "--memory-mb",
        "16",
        data_s,
        "--json",
    ]));
    assert_eq!(
        (r["registered"].as_u64(), r["failed"].as_u64()),
        (Some(3000), Some(2))
    );
    let r = json_line(&idnode(&[
        "import",
        "--offline",
        "--data-dir",
        off,
        data_s,
        "--json",
    ]));
    assert_eq!(
        (r["registered"].as_u64(), r["already_present"].as_u64()),
        (Some(0), Some(3000))
    );

    let (online, online_counts) = contents(&online_dir);
    let (offline, offline_counts) = contents(&offline_dir);
    assert_eq!(online.len(), 3000);
    assert!(online == offline, "the same records");
    assert_eq!(online_counts, offline_counts, "the same counts");

    // The offline node starts, serves the imported data, and its log audits clean.
    let node = TestNode::start_in(&offline_dir, false).await;
    let id = first["identifier"].as_str().unwrap();
    let got = node
        .resolver(None)
        .resolve(crate::support::resolve(id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.values[0].data,
        first["values"][0]["data"].as_str().unwrap().as_bytes()
    );
    let proof = node
        .registry(Some(&node.admin_token))
        .get_proof(pb::GetProofRequest {
            identifier: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(proof.consistent);
    assert_eq!(proof.entries[0].op, "import");
    node.stop().await;
    let audit = Command::new(BIN)
        .args(["audit", "verify", "--data-dir", off])
        .output()
        .unwrap();
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );

    // CSV carries the same records.
    let csv = work.path().join("d.csv");
    idnode(&[
        "gen",
        "--count",
        "3000",
        "--enterprises",
        "20",
        "--seed",
        "9",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let csv_dir = work.path().join("csv");
    idnode(&[
        "import",
        "--offline",
        "--create",
        "--data-dir",
        csv_dir.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    assert!(contents(&csv_dir).0 == offline);
}

/// An `idnode bench --report` file.
fn read_report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_what_it_measured() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("d.jsonl");
    idnode(&[
        "gen",
        "--count",
        "500",
        "--enterprises",
        "5",
        "--out",
        data.to_str().unwrap(),
    ]);
    let node = TestNode::start_empty().await;
    let url = format!("http://{}", node.addr);
    let token = node.data_dir.join("admin.token");
    idnode(&[
        "import",
        data.to_str().unwrap(),
        "--node",
        &url,
        "--token-file",
        token.to_str().unwrap(),
    ]);
    let report = work.path().join("r.json");
    let out = idnode(&[
        "bench",
        "--node",
        &url,
        "--keys",
        data.to_str().unwrap(),
        "--count",
        "300",
        "--concurrency",
        "4",
        "--miss-ratio",
        "0.2",
        "--distribution",
        "zipf",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.contains("latency µs: p50"), "{out}");
    let r = read_report(&report);
    assert_eq!(r["requests"], 300);
    let misses = r["errors"]["not_found"].as_u64().unwrap_or(0);
    assert_eq!(
        r["ok"].as_u64().unwrap() + misses,
        300,
        "only misses fail: {r}"
    );
    assert!(misses > 20 && misses < 120, "about 20% misses: {misses}");
    // The latencies are measured, not clamped into shape: ordered percentiles, no loopback
    // round trip through a real server under 10 µs (the clamp at 1 µs cannot pass this),
    // and Little's law ties them to the throughput (4 in flight: rate ≈ 4 / mean latency).
    let l = |field: &str| r["latency_us"][field].as_f64().unwrap();
    let ladder = [l("p50"), l("p90"), l("p99"), l("p999"), l("max")];
    assert!(ladder.windows(2).all(|w| w[0] <= w[1]), "{r}");
    assert!(l("p50") >= 10.0 && l("mean") <= l("max"), "{r}");
    // Throughput over time adds up to the requests, and the plots are beside the report.
    let per_second: u64 = r["per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(per_second, 300, "{r}");
    let curve = r["percentiles"].as_array().unwrap();
    assert_eq!(curve.last().unwrap()[1].as_f64().unwrap(), l("max"));
    let svg = std::fs::read_to_string(report.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
    assert!(svg.contains("<polyline"), "a throughput line");
    let by_little = 4.0 / (l("mean") / 1e6);
    let measured = r["throughput"].as_f64().unwrap();
    assert!(
        (0.25..=4.0).contains(&(measured / by_little)),
        "throughput {measured}/s against 4 in flight at a mean of {} µs: {r}",
        l("mean")
    );
    // A sequential pass resolves every imported key once: all found.
    let seq = work.path().join("seq.json");
    idnode(&[
        "bench",
        "--node",
        &url,
        "--keys",
        data.to_str().unwrap(),
        "--count",
        "500",
        "--distribution",
        "sequential",
        "--report",
        seq.to_str().unwrap(),
    ]);
    let r = read_report(&seq);
    assert_eq!(
        (r["requests"].as_u64(), r["ok"].as_u64()),
        (Some(500), Some(500)),
        "{r}"
    );
    // DNS, open loop, and creates.
    let dns = node.dns_addr.unwrap().to_string();
    let r2 = work.path().join("r2.json");
    idnode(&[
        "bench",
        "--op",
        "resolve-dns",
        "--dns",
        &dns,
        "--keys",
        data.to_str().unwrap(),
        "--count",
        "200",
        "--rate",
        "1000",
        "--report",
        r2.to_str().unwrap(),
    ]);
    let r2v = read_report(&r2);
    assert_eq!(
        (r2v["requests"].as_u64(), r2v["ok"].as_u64()),
        (Some(200), Some(200))
    );
    let acked = work.path().join("acked.txt");
    let out = idnode(&[
        "bench",
        "--op",
        "batch-register",
        "--node",
        &url,
        "--token-file",
        token.to_str().unwrap(),
        "--count",
        "10",
        "--concurrency",
        "2",
        "--acked",
        acked.to_str().unwrap(),
    ]);
    assert!(
        out.contains("10 requests") && out.contains("(10 ok)"),
        "{out}"
    );
    // Every acknowledged creation is listed, and --verify finds each with its values.
    let listed = std::fs::read_to_string(&acked).unwrap();
    assert_eq!(listed.lines().count(), 1000);
    let verify = |file: &std::path::Path| {
        Command::new(BIN)
            .args(["bench", "--node", &url, "--token-file"])
            .arg(&token)
            .arg("--verify")
            .arg(file)
            .output()
            .unwrap()
    };
    let ok = verify(&acked);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("verified 1000 acknowledged creations: 0"),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let first = listed.lines().next().unwrap();
    let forged = work.path().join("forged.txt");
    std::fs::write(&forged, format!("{listed}{}9\n", first)).unwrap();
    let bad = verify(&forged);
    assert!(
        !bad.status.success(),
        "a never-created identifier is reported"
    );
    let counts = node
        .registry(Some(&node.admin_token))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 500 + 1000);
    let cmp = idnode(&[
        "bench-compare",
        report.to_str().unwrap(),
        r2.to_str().unwrap(),
    ]);
    assert!(
        cmp.contains("throughput/s") && cmp.contains("p99.9"),
        "{cmp}"
    );
}

/// The trivial gRPC server `scripts/bench.sh` compares the node with answers what the node
/// answers: loaded from the node's store, for every identifier of the data set the same
/// Resolve response, byte for byte (value timestamps included: from `idnode gen` alone
/// they would be missing, six bytes less per value), and NOT_FOUND for one not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trivial_grpc_reference_answers_what_the_node_answers() {
    use prost::Message;
    use std::process::Stdio;
    let work = tempfile::tempdir().unwrap();
    let (data, dir) = (work.path().join("d.jsonl"), work.path().join("node"));
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    idnode(&[
        "gen",
        "--count",
        "25000",
        "--enterprises",
        "7",
        "--out",
        &path(&data),
    ]);
    idnode(&[
        "import",
        "--offline",
        "--create",
        "--data-dir",
        &path(&dir),
        &path(&data),
    ]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    /// A child process killed (by its PID) when dropped, also when an assertion fails.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let spawn = |args: &[&str]| {
        Killed(
            Command::new(BIN)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let addr = format!("127.0.0.1:{port}");
    let mut trivial = spawn(&[
        "bench-reference",
        "grpc",
        "--addr",
        &addr,
        "--data-dir",
        &path(&dir),
    ]);
    let mut node = spawn(&[
        "serve",
        "--no-seed",
        "--grpc-addr",
        "127.0.0.1:0",
        "--dns-addr",
        "off",
        "--http-addr",
        "off",
        "--data-dir",
        &path(&dir),
    ]);
    let (node_url, _) = crate::support::read_banner(&mut node.0);
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(trivial.0.stdout.take().unwrap()).lines();
        let banner = lines.next().unwrap().unwrap();
        assert!(
            banner.starts_with("trivial Resolver with 25000 records"),
            "{banner}"
        );
    }
    let connect = |url: String| async move {
        for _ in 0..100 {
            if let Ok(ch) = tonic::transport::Channel::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
            {
                return pb::resolver_client::ResolverClient::new(ch);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{url} does not answer");
    };
    let mut a = connect(format!("http://{addr}")).await;
    let mut b = connect(node_url).await;
    let config = idnode::bulk::gen::GenConfig {
        seed: 1,
        node_prefix: "88.101".into(),
        enterprises: 7,
    };
    let ask = |id: String| pb::ResolveRequest {
        identifier: id,
        ..Default::default()
    };
    // The store holds 25,000 records: the reference reads it in pages of 10,000.
    for i in (0..25_000).step_by(125) {
        let id = idnode::bulk::gen::identifier_of(&config, i);
        let x = a.resolve(ask(id.clone())).await.unwrap().into_inner();
        let y = b.resolve(ask(id.clone())).await.unwrap().into_inner();
        assert!(!x.values.is_empty(), "{id}");
        assert_eq!(
            x.encode_to_vec(),
            y.encode_to_vec(),
            "{id}: {x:?} against {y:?}"
        );
    }
    let missing = ask("88.101.1/NOT-THERE".into());
    assert_eq!(
        a.resolve(missing.clone()).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        b.resolve(missing).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    drop((trivial, node));
}

/// What an import left in a store, for comparing the node with the import references:
/// records (timestamps zeroed), every counter, the log index's keys of records, and the
/// log's entries by operation (`None` for the references' entries, which are not JSON).
struct Written {
    records: BTreeMap<String, Record>,
    counters: BTreeMap<String, i64>,
    index_keys: usize,
    log: BTreeMap<Option<String>, usize>,
}

fn written(db: &Path) -> Written {
    let store = RocksStore::open_read_only(&RocksConfig::new(db)).unwrap();
    let all = |t: Table| store.scan(t, b"", None, usize::MAX).unwrap();
    let mut records = BTreeMap::new();
    for (k, v) in all(Table::Records) {
        let mut r = codec::decode_record(&v).unwrap();
        for v in &mut r.values {
            v.timestamp = 0;
        }
        records.insert(String::from_utf8(k).unwrap(), r);
    }
    let counters = all(Table::Counters)
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), codec::decode_counter(&v)))
        .collect();
    let mut log = BTreeMap::new();
    for (_, v) in all(Table::Oplog) {
        let op = codec::decode_json::<idnode::oplog::LogEntry>(&v)
            .ok()
            .map(|e| e.op);
        *log.entry(op).or_default() += 1;
    }
    let index_keys = all(Table::OplogIndex)
        .into_iter()
        .filter(|(k, _)| {
            let target = k.split(|b| *b == 0).next().unwrap();
            records.contains_key(std::str::from_utf8(target).unwrap())
        })
        .count();
    Written {
        records,
        counters,
        index_keys,
        log,
    }
}

/// The import references `scripts/bench.sh` times the node against do the node's work:
/// `bench-reference rocks-batch` writes the records an online import writes (same keys,
/// same content), the same counters, and one log entry per batch of the same size;
/// `bench-reference rocks-sst`, after spilling sorted runs within the same memory budget,
/// ingests the same records and as many log index keys as an offline import, with the
/// same counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_references_write_what_the_node_writes() {
    let work = tempfile::tempdir().unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let data = path(&work.path().join("d.jsonl"));
    idnode(&[
        "gen",
        "--count",
        "6000",
        "--enterprises",
        "9",
        "--out",
        &data,
    ]);
    let dir = |name: &str| work.path().join(name);

    // Online: the node in batches of 500, and the reference with the same batches.
    let node = TestNode::start_in(&dir("online"), false).await;
    let token = path(&dir("online").join("admin.token"));
    let url = format!("http://{}", node.addr);
    let r = json_line(&idnode(&[
        "import",
        &data,
        "--chunk",
        "500",
        "--node",
        &url,
        "--token-file",
        &token,
        "--json",
    ]));
    assert_eq!(r["registered"], 6000);
    node.stop().await;
    let r = json_line(&idnode(&[
        "bench-reference",
        "rocks-batch",
        "--input",
        &data,
        "--dir",
        &path(&dir("rocks-batch")),
        "--batch",
        "500",
    ]));
    assert_eq!(r["records"], 6000);
    let node = written(&dir("online").join("db"));
    let raw = written(&dir("rocks-batch"));
    assert_eq!(node.records.len(), 6000);
    assert!(node.records == raw.records, "the same records");
    assert_eq!(node.counters, raw.counters, "the same counters");
    assert_eq!(node.log.get(&Some("batch_register".into())), Some(&12));
    assert_eq!(raw.log, BTreeMap::from([(None, 12)]), "one entry per batch");
    // The node's own design adds a log index key per record; the reference does not.
    assert_eq!((node.index_keys, raw.index_keys), (6000, 0));

    // Offline: the node and the reference within 1 MiB of sorting memory (runs spill).
    idnode(&[
        "import",
        "--offline",
        "--create",
        "--data-dir",
        &path(&dir("offline")),
        "--memory-mb",
        "1",
        &data,
        "--json",
    ]);
    let r = json_line(&idnode(&[
        "bench-reference",
        "rocks-sst",
        "--input",
        &data,
        "--dir",
        &path(&dir("rocks-sst")),
        "--memory-mb",
        "1",
    ]));
    assert_eq!(r["records"], 6000);
    assert!(r["spilled_runs"].as_u64().unwrap() >= 1, "{r}");
    let node = written(&dir("offline").join("db"));
    let raw = written(&dir("rocks-sst"));
    assert!(node.records == raw.records, "the same records");
    assert_eq!(node.counters, raw.counters, "the same counters");
    assert_eq!((node.index_keys, raw.index_keys), (6000, 6000));
    assert_eq!(raw.log, BTreeMap::from([(None, 1)]));
}
