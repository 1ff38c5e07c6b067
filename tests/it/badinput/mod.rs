//! Bad input on every interface, table by table: over-long identifiers, prefixes and
//! values, invalid UTF-8, control characters, too many values, duplicate indexes,
//! oversized and malformed messages (protobuf, JSON, DNS), a BatchRegister stream far larger
//! than the node may buffer, idle and half-open connections.
//!
//! Every case checks its defined error (gRPC code, HTTP status + Handle `responseCode`, DNS
//! RCODE or silence), that nothing was written (the identifier stays absent; counts, the
//! seeded record and the log head are unchanged after each table), and that the node still
//! answers a good request on the same interface right after it.
//!
//! - `grpc`: the gRPC table (typed clients) and hand-made gRPC frames;
//! - `http`: the HTTP table, raw HTTP/1.1 on a socket;
//! - `dns`: bad DNS packets over UDP and TCP, random garbage, idle TCP connections;
//! - `connections`: idle and half-open connections on every interface at once;
//! - `batch_stream`: a BatchRegister stream far larger than the node may buffer (the binary).
//!
//! This file holds what they share: what a table must leave untouched, the node they run
//! on, builders and socket helpers.

mod batch_stream;
mod connections;
mod dns;
mod grpc;
mod http;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use idnode::api::grpc::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use crate::support::TestNode;

/// A seeded record of the owner below; tables that target it must leave it as it was.
const SEEDED: &str = "88.101.5/BAT-2024-000001";
/// The seeded enterprise whose token the tables write with.
const OWNER: &str = "88.101.5";
/// Every network wait in this file is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// What a table must leave untouched, and checks that the node still serves.

/// Counts, the seeded record and the log head: none may move while a table of bad input
/// runs.
#[derive(Debug, PartialEq)]
struct Snapshot {
    counts: pb::GetCountsResponse,
    seeded: pb::Record,
    head: (u64, String),
}

async fn snapshot(node: &TestNode) -> Snapshot {
    let mut admin = node.registry(Some(&node.admin_token));
    let counts = admin
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap()
        .into_inner();
    let seeded = admin
        .get(pb::GetRequest {
            identifier: SEEDED.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let proof = admin
        .get_proof(pb::GetProofRequest {
            identifier: SEEDED.into(),
        })
        .await
        .unwrap()
        .into_inner();
    Snapshot {
        counts,
        seeded,
        head: (proof.head_seq, proof.head_hash),
    }
}

/// Where a case would have written.
#[derive(Debug, Clone)]
enum Target {
    /// A new identifier: it must not exist afterwards.
    New(String),
    /// The seeded record: the table's snapshot checks it is unchanged.
    Seeded,
    /// Nothing addressable (the identifier does not parse).
    Nothing,
}

fn new(id: &str) -> Target {
    Target::New(id.to_owned())
}

/// The identifier of a `Target::New` is absent (asked as the admin, who sees everything).
async fn assert_absent(node: &TestNode, target: &Target, case: &str) {
    if let Target::New(id) = target {
        let e = node
            .registry(Some(&node.admin_token))
            .get(pb::GetRequest {
                identifier: id.clone(),
            })
            .await
            .expect_err(case);
        assert_eq!(e.code(), Code::NotFound, "{case}: {id} was written: {e:?}");
    }
}

fn value(index: u32, value_type: &str, data: Vec<u8>, format: pb::Format) -> pb::Value {
    pb::Value {
        index,
        r#type: value_type.into(),
        data,
        format: format as i32,
        ..Default::default()
    }
}

fn too_long_data() -> Vec<u8> {
    vec![b'x'; 64 * 1024 + 1]
}

/// A 65-byte prefix (the limit is 64) under the owner's.
fn long_prefix() -> String {
    format!("{OWNER}.{}", "7".repeat(56))
}

/// A node with a 2 MiB gRPC message limit (so an oversized message is quick to send),
/// connections closed after `idle` without traffic (DNS over TCP included) and a 2 s
/// request timeout. The directory is the caller's to keep.
async fn small_limits_node(dir: &Path, idle: Duration) -> TestNode {
    let mut config = crate::support::config(dir, true);
    config.max_message_bytes = 2 << 20;
    config.admission.idle_timeout = idle;
    config.admission.request_timeout = Duration::from_secs(2);
    TestNode::start_with(config).await
}

/// How long the server took to close `stream` (EOF or reset); `None` if it did not
/// within `bound`.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(
            bound.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Connections that each send `prefix` and then nothing.
async fn stalled(addr: SocketAddr, n: usize, prefix: &[u8]) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if !prefix.is_empty() {
            s.write_all(prefix).await.unwrap();
        }
        out.push(s);
    }
    out
}
