//! Crash safety: SIGKILL the node while clients write, restart it on the same data
//! directory, and check that every acknowledged write is there with its values and that
//! the counts equal the records present. `IDNODE_SLOW_TESTS=1` runs 20 rounds per mode.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idnode::api::grpc::client::BearerAuth;
use idnode::api::grpc::pb;
use tonic::transport::Channel;

use crate::support::{record, text};

const BIN: &str = env!("CARGO_BIN_EXE_idnode");

/// A node process, killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// node behind.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the node; returns it, its gRPC URL and its HTTP base URL (for /metrics).
fn start(dir: &Path, sync: bool) -> (Running, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--dns-addr",
        "off",
        "--http-addr",
        "127.0.0.1:0",
        "--no-seed",
        "--data-dir",
    ])
    .arg(dir)
    .env("RUST_LOG", "error")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if sync {
        cmd.arg("--sync");
    }
    let mut child = cmd.spawn().unwrap();
    let (url, banner) = crate::support::read_banner(&mut child);
    let http = banner
        .iter()
        .find_map(|l| l.strip_prefix("HTTP on "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the banner names the HTTP address")
        .to_owned();
    (Running(child), url, http)
}

/// How many times RocksDB fsynced the WAL since the node started (its statistics, as
/// /metrics exports them).
async fn wal_syncs(http: &str) -> u64 {
    let text = reqwest::get(format!("{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("idnode_rocksdb{property=\"wal-syncs\"} "))
        .unwrap_or_else(|| panic!("no wal-syncs in /metrics:\n{text}"))
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

type Svc = tonic::service::interceptor::InterceptedService<Channel, BearerAuth>;

async fn clients(
    url: &str,
    token: &str,
) -> (
    pb::registry_client::RegistryClient<Svc>,
    pb::resolver_client::ResolverClient<Svc>,
) {
    let ch = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth = BearerAuth::new(Some(token)).unwrap();
    (
        pb::registry_client::RegistryClient::with_interceptor(ch.clone(), auth.clone()),
        pb::resolver_client::ResolverClient::with_interceptor(ch, auth),
    )
}

fn value_of(round: usize, n: u64) -> String {
    format!("https://crash.example.cn/{round}/{n}")
}

async fn rounds(sync: bool) {
    let rounds = if std::env::var_os("IDNODE_SLOW_TESTS").is_some() {
        20
    } else {
        3
    };
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut token = String::new();
    for round in 0..rounds {
        let (mut child, url, http) = start(dir.path(), sync);
        if round == 0 {
            let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
            let ch = Channel::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            token = pb::admin_client::AdminClient::with_interceptor(
                ch,
                BearerAuth::new(Some(admin.trim())).unwrap(),
            )
            .create_enterprise(pb::CreateEnterpriseRequest {
                prefix: "88.101.5".into(),
                name: "Crash Co".into(),
                industry_code: String::new(),
                token_ttl_secs: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        }
        let (registry, _) = clients(&url, &token).await;
        // Writers: two streaming BatchRegister clients and two single-Register clients.
        const WRITERS: u64 = 4;
        // Acknowledged calls (a Register or a BatchRegister message: one store write each).
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (mut registry, acked) = (registry.clone(), Arc::clone(&acked));
            let calls = Arc::clone(&calls);
            writers.push(tokio::spawn(async move {
                for chunk in 0u64.. {
                    if w < 2 {
                        let records: Vec<_> = (0..50)
                            .map(|i| {
                                let n = (w << 40) | (chunk << 8) | i;
                                record(
                                    &format!("88.101.5/R{round}-{n}"),
                                    vec![text(1, "URL", &value_of(round, n))],
                                )
                            })
                            .collect();
                        let Ok(resp) = registry
                            .batch_register(tokio_stream::iter(vec![pb::BatchRegisterRequest {
                                records,
                            }]))
                            .await
                        else {
                            return;
                        };
                        let mut stream = resp.into_inner();
                        let Ok(Some(answer)) = stream.message().await else {
                            return;
                        };
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let mut a = acked.lock().unwrap();
                        for r in answer.results.iter().filter(|r| r.code == 0) {
                            let n: u64 = r.identifier.rsplit('-').next().unwrap().parse().unwrap();
                            a.insert(r.identifier.clone(), value_of(round, n));
                        }
                    } else {
                        let n = (w << 40) | chunk;
                        let id = format!("88.101.5/R{round}-{n}");
                        let req = pb::RegisterRequest {
                            record: Some(record(&id, vec![text(1, "URL", &value_of(round, n))])),
                        };
                        if registry.register(req).await.is_err() {
                            return;
                        }
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        acked.lock().unwrap().insert(id, value_of(round, n));
                    }
                }
            }));
        }
        // Kill at a varying moment, mid-write.
        tokio::time::sleep(Duration::from_millis(150 + 97 * (round as u64 % 7))).await;
        // SIGKILL loses nothing that reached the page cache, so survival alone cannot show
        // a missing fsync: RocksDB's own count of WAL syncs does. With `sync` every
        // acknowledged write waited for an fsync, shared at most by the writers in flight
        // together; with `wal` there are none.
        let acknowledged = calls.load(std::sync::atomic::Ordering::SeqCst);
        let syncs = wal_syncs(&http).await;
        assert!(
            acknowledged >= WRITERS,
            "round {round}: {acknowledged} calls acknowledged"
        );
        if sync {
            assert!(
                syncs * WRITERS >= acknowledged,
                "round {round}: {syncs} WAL syncs for {acknowledged} acknowledged writes"
            );
        } else {
            assert!(
                syncs * WRITERS < acknowledged,
                "round {round}: {syncs} WAL syncs for {acknowledged} writes without --sync"
            );
        }
        Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        for w in writers {
            let _ = w.await;
        }

        // Restart and check every acknowledged write, and the counts.
        let (mut child, url, _) = start(dir.path(), sync);
        let (mut registry, mut resolver) = clients(&url, &token).await;
        let expected = acked.lock().unwrap().clone();
        let this_round = format!("88.101.5/R{round}-");
        assert!(
            expected.keys().any(|k| k.starts_with(&this_round)),
            "round {round}: some writes were acknowledged"
        );
        // Every write acknowledged in this round, and a sample of earlier rounds' (all of
        // them were checked after their own crash; the counts below cover the rest).
        let checks: Vec<_> = expected
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| k.starts_with(&this_round) || i % 50 == 0)
            .map(|(_, kv)| kv)
            .collect();
        for (id, url_value) in checks {
            let r = resolver
                .resolve(crate::support::resolve(id))
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged {id} lost: {e}"))
                .into_inner();
            assert_eq!(r.values.len(), 1);
            assert_eq!(
                r.values[0].data,
                url_value.as_bytes(),
                "round {round}: {id}"
            );
        }
        let mut present = 0i64;
        let mut cursor = String::new();
        loop {
            let page = registry
                .list(pb::ListRequest {
                    prefix: "88.101.5".into(),
                    page_size: 1000,
                    cursor: cursor.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            present += page.identifiers.len() as i64;
            cursor = page.next_cursor;
            if cursor.is_empty() {
                break;
            }
        }
        let counts = registry
            .get_counts(pb::GetCountsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            counts.node_registered, present,
            "round {round}: counts equal the records present"
        );
        assert!(present as usize >= expected.len());
        Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_with_wal_durability() {
    rounds(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_with_sync_durability() {
    rounds(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_streams_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, _) = start(dir.path(), false);
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let (mut registry, _) = clients(&url, admin.trim()).await;
    // A BatchRegister stream in flight: one chunk answered before SIGTERM, one after.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut answers = registry
        .batch_register(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let chunk = |k: u32| pb::BatchRegisterRequest {
        records: (0..10)
            .map(|i| record(&format!("88.101/T{k}-{i}"), vec![text(1, "URL", "u")]))
            .collect(),
    };
    tx.send(chunk(1)).await.unwrap();
    assert_eq!(answers.message().await.unwrap().unwrap().results.len(), 10);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    // New connections are refused once the node has taken the signal (delivered
    // asynchronously: polled, within a bound)...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = Channel::from_shared(url.clone())
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await;
        if fresh.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a new connection after SIGTERM must be refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the stream already in flight still gets its answer.
    tx.send(chunk(2)).await.unwrap();
    let second = answers.message().await.unwrap().unwrap();
    assert!(second.results.iter().all(|r| r.code == 0), "{second:?}");
    drop(tx);
    assert!(answers.message().await.unwrap().is_none());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit 0 after draining: {status:?}");
    // Everything acknowledged is there after a restart.
    let (mut child, url, _) = start(dir.path(), false);
    let (mut registry, _) = clients(&url, admin.trim()).await;
    let counts = registry
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.node_registered, 20);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}
