//! A BatchRegister stream far larger than the node may buffer, on the real binary so the
//! resident set measured is the node's alone: the node stays bounded and keeps serving
//! the other interfaces.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use idnode::api::grpc::client::BearerAuth;
use idnode::api::grpc::pb;
use tokio::net::UdpSocket;
use tonic::transport::Channel;
use tonic::Code;

use super::dns::{assert_probe_answer, query, recv, seeded_name, PROBE};
use super::http::{head, http_exchange};
use super::{stalled, too_long_data, value, OWNER, SEEDED, WAIT};
use crate::support::{record, resolve, text};

/// The `idnode serve` child; killed when dropped, whatever the test's outcome.
struct Served {
    child: Child,
    grpc: String,
    dns: SocketAddr,
    http: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let (child, grpc, banner) = crate::support::spawn_node(dir, "error");
    let addr_after = |marker: &str| -> SocketAddr {
        banner
            .iter()
            .find_map(|l| l.split(marker).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {marker:?} in {banner:?}"))
    };
    let dns = addr_after("DNS on ");
    let http = addr_after("HTTP on http://");
    Served {
        child,
        grpc,
        dns,
        http,
    }
}

/// Resident set of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// Messages in the stream; each carries `PER_MESSAGE` records of about 64 KiB: 2 GiB in
/// all (about 6 s). `IDNODE_SLOW_TESTS=1` streams 32 GiB, more than the machine's memory.
const MESSAGES: usize = 2048;
const PER_MESSAGE: usize = 16;
/// Growth of the node's resident set allowed over the whole stream.
const RSS_GROWTH: u64 = 128 << 20;

/// Record `i` of the stream: the first of each message is a small good record; the others
/// carry 64 KiB + 1 of data, rejected one by one after being read in full.
fn stream_record(i: usize) -> (pb::Record, Code) {
    if i.is_multiple_of(PER_MESSAGE) {
        (
            record(&format!("88.101.5/S-{i:08}"), vec![text(1, "URL", "u")]),
            Code::Ok,
        )
    } else {
        (
            record(
                &format!("88.101.5/S-BAD-{i:08}"),
                vec![value(1, "blob", too_long_data(), pb::Format::Binary)],
            ),
            Code::InvalidArgument,
        )
    }
}

async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stream_far_larger_than_memory_keeps_the_node_bounded_and_serving() {
    let messages = if std::env::var_os("IDNODE_SLOW_TESTS").is_some() {
        MESSAGES * 16
    } else {
        MESSAGES
    };
    let dir = tempfile::tempdir().unwrap();
    let node = serve(dir.path());
    let pid = node.child.id();
    let owner = std::fs::read_to_string(dir.path().join("tokens").join(format!("{OWNER}.token")))
        .unwrap()
        .trim()
        .to_owned();
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let auth = |t: &str| BearerAuth::new(Some(t)).unwrap();
    let counts = |channel: Channel| {
        let admin = auth(&admin);
        async move {
            pb::registry_client::RegistryClient::with_interceptor(channel, admin)
                .get_counts(pb::GetCountsRequest {})
                .await
                .unwrap()
                .into_inner()
                .node_registered
        }
    };
    let side = connect(&node.grpc).await;
    let total_before = counts(side.clone()).await;

    // Warm up every interface before the baseline.
    let mut resolver = pb::resolver_client::ResolverClient::new(side.clone());
    resolver.resolve(resolve(SEEDED)).await.unwrap();
    let baseline = rss(pid);
    assert!(baseline > 0, "VmRSS of {pid} is readable");

    // Clients that stall on every interface for the whole stream.
    let mut held = stalled(
        node.http,
        64,
        b"PUT /api/handles/88.101.5/X HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
    )
    .await;
    let grpc_addr: SocketAddr = node.grpc.trim_start_matches("http://").parse().unwrap();
    held.extend(stalled(grpc_addr, 64, b"PRI * HTTP/2.0\r\n").await);
    held.extend(stalled(node.dns, 64, &[0x00]).await);

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Other clients, one of each interface, every 50 ms while the stream runs.
    let others = {
        let (stop, mut resolver, http, dns) =
            (Arc::clone(&stop), resolver.clone(), node.http, node.dns);
        tokio::spawn(async move {
            let probe = query(PROBE, seeded_name(), RecordType::TXT)
                .to_vec()
                .unwrap();
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(dns).await.unwrap();
            let (mut served, mut slowest) = (0u32, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                tokio::time::timeout(WAIT, resolver.resolve(resolve(SEEDED)))
                    .await
                    .expect("gRPC resolve in time during the stream")
                    .expect("gRPC resolve during the stream");
                let r = http_exchange(
                    http,
                    head("GET", &format!("/api/handles/{SEEDED}"), &[]),
                    vec![],
                )
                .await
                .expect("HTTP GET during the stream");
                assert_eq!(r.status, 200);
                socket.send(&probe).await.unwrap();
                let answer = recv(&socket, WAIT)
                    .await
                    .expect("DNS answer during the stream");
                assert_probe_answer(&Message::from_vec(&answer).unwrap(), "during the stream");
                slowest = slowest.max(started.elapsed());
                served += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (served, slowest)
        })
    };

    // The stream, generated lazily: neither side ever holds more than a few messages.
    let started = Instant::now();
    let requests = tokio_stream::iter((0..messages).map(|m| {
        pb::BatchRegisterRequest {
            records: (m * PER_MESSAGE..(m + 1) * PER_MESSAGE)
                .map(|i| stream_record(i).0)
                .collect(),
        }
    }));
    let mut responses = pb::registry_client::RegistryClient::with_interceptor(
        connect(&node.grpc).await,
        auth(&owner),
    )
    .max_encoding_message_size(16 << 20)
    .batch_register(requests)
    .await
    .unwrap()
    .into_inner();
    let (mut seen, mut created) = (0usize, 0i64);
    while let Some(resp) = tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("a BatchRegister answer in time")
        .unwrap()
    {
        for r in resp.results {
            let i = r.position as usize;
            assert_eq!(i, seen, "results in stream order");
            seen += 1;
            let (rec, code) = stream_record(i);
            assert_eq!(r.identifier, rec.identifier);
            assert_eq!(Code::from_i32(r.code), code, "item {i}: {}", r.message);
            created += r.registered as i64;
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let (served, slowest) = others.await.unwrap();
    drop(held);

    let streamed = messages * PER_MESSAGE;
    assert_eq!(seen, streamed);
    assert_eq!(created, messages as i64, "one good record per message");
    assert_eq!(counts(side.clone()).await, total_before + created);
    let mut get = pb::registry_client::RegistryClient::with_interceptor(side, auth(&admin));
    for i in [1, PER_MESSAGE + 1, streamed - 1] {
        let e = get
            .get(pb::GetRequest {
                identifier: stream_record(i).0.identifier,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "rejected item {i} was written");
    }
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    let bytes = streamed as u64 * (64 * 1024);
    eprintln!(
        "BatchRegister: {streamed} records, {} MiB in {elapsed:?}; node RSS {} MiB, peak growth {} MiB; {served} rounds of other clients, slowest {slowest:?}",
        bytes >> 20,
        baseline >> 20,
        growth >> 20
    );
    assert!(
        growth < RSS_GROWTH,
        "the node's resident set grew by {} MiB while {} MiB streamed through it",
        growth >> 20,
        bytes >> 20
    );
    assert!(
        served >= 3,
        "other clients were served during the stream: {served}"
    );
}
