//! Resource limits: over each one a client gets its defined refusal (gRPC
//! RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED, HTTP 429/503, DNS REFUSED, a closed
//! connection), and the node keeps serving once the load is gone. A standalone top-level
//! node has the same limits (the `the_top_level_node_*` tests).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use idnode::api::admission::AdmissionConfig;
use idnode::api::grpc::pb;
use idnode::config::TopLevelLimits;
use idnode::upstream::ForwardConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tonic::Code;

use crate::dns::{name_of, request};
use crate::support::{config, resolve, Svc, TestNode};

const SEEDED: &str = "88.101.5/BAT-2024-000001";

async fn node_with(limits: AdmissionConfig) -> (TestNode, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), true);
    c.admission = limits;
    (TestNode::start_with(c).await, dir)
}

fn http_url(node: &TestNode, path: &str) -> String {
    format!("http://{}{path}", node.http_addr.unwrap())
}

/// `idnode_refused_total{limit="<limit>"}` from the node's `/metrics`.
async fn refused_total(node: &TestNode, limit: &str) -> u64 {
    let text = reqwest::get(http_url(node, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("idnode_refused_total{{limit=\"{limit}\"}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in /metrics"));
    line[prefix.len()..].parse().unwrap()
}

/// An upstream that accepts connections and never answers (the task holds them open).
async fn blackhole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    (url, held)
}

/// A node in `dir` whose upstream is `upstream`, with the `[limits]` lines given.
async fn node_forwarding_to(dir: &Path, upstream: String, limits: &str) -> TestNode {
    let file: idnode::config::FileConfig = toml::from_str(&format!(
        "[limits]\n{limits}\n[upstream]\ntimeout_ms = 10000"
    ))
    .unwrap();
    let c = idnode::config::Config::resolve(
        file,
        idnode::config::Overrides {
            data_dir: Some(dir.to_owned()),
            grpc_addr: Some("127.0.0.1:0".into()),
            dns_addr: Some("127.0.0.1:0".into()),
            http_addr: Some("127.0.0.1:0".into()),
            upstream: Some(upstream),
            block_cache_mb: Some(16),
            ..Default::default()
        },
    )
    .unwrap();
    TestNode::start_with(c).await
}

/// A DNS message with its two-byte length, for DNS over TCP.
fn framed(m: &Message) -> Vec<u8> {
    let bytes = m.to_vec().unwrap();
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
}

/// One query over a new TCP connection: the answer, or None if the connection was closed
/// or silent for a second.
async fn tcp_query(addr: std::net::SocketAddr, m: &Message) -> Option<Message> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(&framed(m)).await.ok()?;
    let mut len = [0u8; 2];
    let read = async {
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(1), read)
        .await
        .ok()?
        .ok()?;
    Message::from_vec(&buf).ok()
}

/// Reads until the peer closes; the bytes, or None if it stayed open past `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

/// An HTTP connection admitted by the node (a first request on it was answered) that then
/// sends half of a second request and nothing more: it holds one connection slot.
async fn http_holder(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let read = async {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before answering: {answer:?}");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .expect("the answer has a Content-Length")
                .parse()
                .unwrap();
            if answer.len() >= end + 4 + length {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the first request is answered");
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    s
}

/// A gRPC connection admitted by the node (its HTTP/2 server sent its SETTINGS frame) that
/// sent half the client preface and nothing more: it holds one connection slot.
async fn grpc_holder(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    // A frame header: 3 bytes of length, the type (4: SETTINGS), flags, stream id.
    let mut header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut header))
        .await
        .expect("the node's HTTP/2 server speaks first")
        .unwrap();
    assert_eq!(header[3], 4, "the first frame is SETTINGS: {header:?}");
    s
}

#[tokio::test]
async fn client_request_rate_is_refused_on_every_interface() {
    let (node, _dir) = node_with(AdmissionConfig {
        client_requests_per_second: 20,
        ..AdmissionConfig::default()
    })
    .await;

    // gRPC: the first second's worth passes, then RESOURCE_EXHAUSTED with reason 603.
    let mut resolver = node.resolver(None);
    let mut ok = 0;
    let mut refused = None;
    for _ in 0..60 {
        match resolver.resolve(resolve(SEEDED)).await {
            Ok(_) => ok += 1,
            Err(s) => {
                refused.get_or_insert(s);
            }
        }
    }
    let s = refused.expect("some resolves are refused");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert_eq!(s.metadata().get("x-idnode-reason").unwrap(), "603");
    assert!((15..=30).contains(&ok), "{ok} admitted");

    // HTTP: 429 with Retry-After and the Handle response code 603.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut refusal = None;
    for _ in 0..60 {
        let r = http
            .get(http_url(&node, &format!("/api/handles/{SEEDED}")))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 && refusal.is_none() {
            let retry = r.headers()["retry-after"].to_str().unwrap().to_owned();
            let body: serde_json::Value = r.json().await.unwrap();
            refusal = Some((retry, body));
        }
    }
    assert!(statuses.contains(&200), "{statuses:?}");
    let (retry, body) = refusal.expect("some GETs get 429");
    assert_eq!(retry, "1");
    assert_eq!(body["responseCode"], 603, "{body}");

    // DNS: REFUSED once over the rate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let dns = node.dns_addr.unwrap();
    let mut codes = Vec::new();
    for _ in 0..60 {
        // Every query is answered (`udp` fails the test otherwise).
        let (m, _) = crate::dns::udp(dns, &request(name_of(SEEDED), RecordType::TXT, None)).await;
        codes.push(m.metadata.response_code);
    }
    assert!(codes.contains(&ResponseCode::NoError), "{codes:?}");
    assert!(codes.contains(&ResponseCode::Refused), "{codes:?}");

    // The limit is per second: after a pause the same client is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    resolver.resolve(resolve(SEEDED)).await.unwrap();
    let metrics = http
        .get(http_url(&node, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("idnode_refused_total{limit=\"client_rate\"}"))
        .expect("refusals are counted");
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3, "{line}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_bounded() {
    let (node, _dir) = node_with(AdmissionConfig {
        max_in_flight: 2,
        ..AdmissionConfig::default()
    })
    .await;
    let token = node.seed_token("88.101.5");
    // Two BatchRegister streams left open hold both slots: their response headers have
    // arrived, their request streams are not finished.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::BatchRegisterRequest>(1);
        let responses = node
            .registry(Some(&token))
            .batch_register(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("the stream is admitted")
            .into_inner();
        held.push((tx, responses));
    }
    let mut resolver = node.resolver(None);
    let refused = resolver.resolve(resolve(SEEDED)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("in flight"), "{refused:?}");
    let r = reqwest::get(http_url(&node, &format!("/api/handles/{SEEDED}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["responseCode"], 3, "{body}");

    // Closing the streams frees the slots.
    for (tx, mut responses) in held {
        drop(tx);
        while responses.message().await.unwrap().is_some() {}
    }
    resolver.resolve(resolve(SEEDED)).await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_slots_come_back() {
    let (node, _dir) = node_with(AdmissionConfig {
        max_connections: 3,
        ..AdmissionConfig::default()
    })
    .await;
    let http_addr = node.http_addr.unwrap();
    // Three HTTP connections that sent half a request hold every HTTP slot (each was
    // answered once first: the node has admitted it).
    let mut holders = Vec::new();
    for _ in 0..3 {
        holders.push(http_holder(http_addr).await);
    }
    let mut extra = TcpStream::connect(http_addr).await.unwrap();
    let answer = read_until_closed(&mut extra, Duration::from_secs(3))
        .await
        .expect("the connection over the limit is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"responseCode\":3"), "{answer}");

    // gRPC: the node's own test channel holds one slot; two silent-but-started
    // connections take the rest; a new client is turned away.
    let grpc = node.addr;
    let mut grpc_holders = Vec::new();
    for _ in 0..2 {
        grpc_holders.push(grpc_holder(grpc).await);
    }
    let refused = async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await?;
        pb::resolver_client::ResolverClient::new(channel)
            .resolve(resolve(SEEDED))
            .await
            .map_err(|e| -> Box<dyn std::error::Error> { Box::new(e) })?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), refused)
            .await
            .expect("refused promptly")
            .is_err(),
        "a client over the connection limit was served"
    );
    // Existing connections are unaffected.
    node.resolver(None).resolve(resolve(SEEDED)).await.unwrap();

    // Freed slots are reused.
    drop(holders);
    drop(grpc_holders);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = reqwest::get(http_url(&node, "/healthz")).await;
        if matches!(&r, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HTTP slots never came back: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::resolver_client::ResolverClient::new(channel)
        .resolve(resolve(SEEDED))
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_stalled_connections_are_closed_after_the_idle_timeout() {
    let (node, _dir) = node_with(AdmissionConfig {
        idle_timeout: Duration::from_secs(1),
        ..AdmissionConfig::default()
    })
    .await;
    let started = Instant::now();
    let mut silent_grpc = TcpStream::connect(node.addr).await.unwrap();
    let mut silent_http = TcpStream::connect(node.http_addr.unwrap()).await.unwrap();
    let mut silent_dns = TcpStream::connect(node.dns_addr.unwrap()).await.unwrap();
    let mut stalled_http = TcpStream::connect(node.http_addr.unwrap()).await.unwrap();
    stalled_http
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for (name, s) in [
        ("silent gRPC", &mut silent_grpc),
        ("silent HTTP", &mut silent_http),
        ("silent DNS", &mut silent_dns),
        ("HTTP stalled in its headers", &mut stalled_http),
    ] {
        assert!(
            read_until_closed(s, Duration::from_secs(5)).await.is_some(),
            "{name} connection still open after 5 s"
        );
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Each close is counted, DNS's included.
    assert!(refused_total(&node, "idle").await >= 4);
    node.resolver(None).resolve(resolve(SEEDED)).await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_end_at_the_request_timeout() {
    // An upstream that accepts connections and never answers: forwarded resolves hang
    // until the request timeout, well before the upstream timeout (2 s).
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", blackhole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = blackhole.accept().await {
            open.push(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file: idnode::config::FileConfig =
        toml::from_str("[limits]\nrequest_timeout_ms = 300\n[upstream]\ntimeout_ms = 5000")
            .unwrap();
    let c = idnode::config::Config::resolve(
        file,
        idnode::config::Overrides {
            data_dir: Some(dir.path().to_owned()),
            grpc_addr: Some("127.0.0.1:0".into()),
            dns_addr: Some("127.0.0.1:0".into()),
            http_addr: Some("127.0.0.1:0".into()),
            upstream: Some(upstream),
            block_cache_mb: Some(16),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.admission.request_timeout, Duration::from_millis(300));
    let node = TestNode::start_with(c).await;

    let t = Instant::now();
    let e = node
        .resolver(None)
        .resolve(resolve("88.199.1/ELSEWHERE"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("request_timeout_ms"), "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // HTTP: a body that never finishes arriving.
    let mut s = TcpStream::connect(node.http_addr.unwrap()).await.unwrap();
    s.write_all(
        b"PUT /api/handles/88.101.5/SLOW HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"va",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut answer))
        .await
        .expect("answered within the timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request_timeout_ms"), "{answer}");

    // Local answers are unaffected.
    node.resolver(None).resolve(resolve(SEEDED)).await.unwrap();
    node.stop().await;
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_flood_that_misses_the_cache_holds_at_most_the_in_flight_slots() {
    // Every query names an identifier of another node behind an upstream that never
    // answers: each would wait until the request timeout while holding a slot.
    const SLOTS: usize = 8;
    const FLOOD: usize = 1000;
    const BATCH: usize = 50;
    let (upstream, held) = blackhole().await;
    let dir = tempfile::tempdir().unwrap();
    let node = node_forwarding_to(
        dir.path(),
        upstream,
        &format!(
            "max_in_flight = {SLOTS}\nclient_requests_per_second = 0\nrequest_timeout_ms = 1500"
        ),
    )
    .await;
    let dns = node.dns_addr.unwrap();
    let flood = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    flood.connect(dns).await.unwrap();
    let mut codes: HashMap<u16, ResponseCode> = HashMap::new();
    let mut buf = vec![0u8; 4096];
    let started = Instant::now();
    for first in (0..FLOOD).step_by(BATCH) {
        for i in first..first + BATCH {
            let mut q = request(
                name_of(&format!("88.199.1/FLOOD-{i}")),
                RecordType::TXT,
                None,
            );
            q.metadata.id = i as u16;
            flood.send(&q.to_vec().unwrap()).await.unwrap();
        }
        // Everything sent is answered at once, except the queries holding a slot.
        let sent = first + BATCH;
        let deadline = Instant::now() + Duration::from_secs(2);
        while codes.len() + SLOTS < sent {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                panic!(
                    "{} of {sent} queries answered after 2 s: the flood waits instead of being refused",
                    codes.len()
                );
            };
            if let Ok(Ok(n)) = tokio::time::timeout(left, flood.recv(&mut buf)).await {
                let m = Message::from_vec(&buf[..n]).unwrap();
                codes.insert(m.metadata.id, m.metadata.response_code);
            }
        }
        if first == 0 {
            // Every slot is held now: other clients are still answered from memory,
            // over UDP and TCP.
            let q = request(name_of(SEEDED), RecordType::TXT, None);
            let (m, _) = crate::dns::udp(dns, &q).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(!m.answers.is_empty(), "{m:?}");
            let m = tcp_query(dns, &q).await.expect("a TCP answer");
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(!m.answers.is_empty(), "{m:?}");
        }
    }
    // The queries that held slots end at the request timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    while codes.len() < FLOOD {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("{} of {FLOOD} queries answered", codes.len()));
        if let Ok(Ok(n)) = tokio::time::timeout(left, flood.recv(&mut buf)).await {
            let m = Message::from_vec(&buf[..n]).unwrap();
            codes.insert(m.metadata.id, m.metadata.response_code);
        }
    }
    let count = |code| codes.values().filter(|c| **c == code).count() as u64;
    let (refused, timed_out) = (count(ResponseCode::Refused), count(ResponseCode::ServFail));
    assert_eq!(refused + timed_out, FLOOD as u64, "{codes:?}");
    // At most SLOTS wait at once; slots come back every 1.5 s.
    let rounds = started.elapsed().as_millis() as u64 / 1500 + 1;
    assert!(
        timed_out <= SLOTS as u64 * rounds,
        "{timed_out} waited in {rounds} rounds"
    );
    assert!(
        refused >= FLOOD as u64 - SLOTS as u64 * rounds,
        "{refused} refused"
    );
    assert!(refused_total(&node, "in_flight").await >= refused);
    assert!(refused_total(&node, "timeout").await >= timed_out);
    node.resolver(None).resolve(resolve(SEEDED)).await.unwrap();
    node.stop().await;
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_tcp_is_under_the_connection_limit_and_a_client_that_never_reads_is_closed() {
    let (node, _dir) = node_with(AdmissionConfig {
        max_connections: 1,
        idle_timeout: Duration::from_secs(1),
        client_requests_per_second: 0,
        ..AdmissionConfig::default()
    })
    .await;
    let dns = node.dns_addr.unwrap();
    let query = request(name_of(SEEDED), RecordType::TXT, None);
    // A client with a small receive window takes the only slot.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut deaf = socket.connect(dns).await.unwrap();
    deaf.write_all(&framed(&query)).await.unwrap();
    let mut len = [0u8; 2];
    deaf.read_exact(&mut len).await.unwrap();
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    deaf.read_exact(&mut answer).await.unwrap();

    // Over the limit: closed at once, and counted.
    let mut extra = TcpStream::connect(dns).await.unwrap();
    assert!(
        read_until_closed(&mut extra, Duration::from_secs(2))
            .await
            .is_some(),
        "a connection over the limit stayed open"
    );
    assert!(refused_total(&node, "connections").await >= 1);

    // Now it sends queries and never reads an answer, until the node stops reading
    // them (its answers have nowhere to go) or closes the connection; 64 MiB at most.
    let chunk = framed(&query).repeat(512);
    let mut sent = 0;
    while sent < 64 << 20 {
        match tokio::time::timeout(Duration::from_millis(500), deaf.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    // The node gives up on it after the idle timeout and its slot serves another client.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = tcp_query(dns, &query).await {
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a client that never reads still holds the only slot after 10 s ({sent} bytes sent)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused_total(&node, "idle").await >= 1);
    drop(deaf);
    node.stop().await;
}

/// A standalone top-level node (`idnode top-level serve`) with the given limits.
struct TopLevelNode {
    addr: std::net::SocketAddr,
    admin_token: String,
    shutdown: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TopLevelNode {
    async fn start(limits: TopLevelLimits, forward: ForwardConfig) -> TopLevelNode {
        let dir = tempfile::tempdir().unwrap();
        let top =
            idnode::node::toplevel::open(dir.path(), Default::default(), 8 << 20, false).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        let handle = tokio::spawn(async move {
            idnode::node::toplevel::serve(
                &top,
                forward,
                &limits,
                listener,
                None,
                stop,
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        });
        TopLevelNode {
            addr,
            admin_token: std::fs::read_to_string(dir.path().join("admin.token"))
                .unwrap()
                .trim()
                .to_owned(),
            shutdown,
            handle,
            _dir: dir,
        }
    }

    /// A client on a connection of its own.
    async fn client(&self, token: Option<&str>) -> pb::top_level_client::TopLevelClient<Svc> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        pb::top_level_client::TopLevelClient::new(
            tonic::service::interceptor::InterceptedService::new(
                channel,
                idnode::api::grpc::client::BearerAuth::new(token).unwrap(),
            ),
        )
        .max_encoding_message_size(64 << 20)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap();
    }
}

fn top_limits(admission: AdmissionConfig) -> TopLevelLimits {
    TopLevelLimits {
        admission,
        ..TopLevelLimits::default()
    }
}

fn locate(prefix: &str) -> pb::LocateRequest {
    pb::LocateRequest {
        prefix: prefix.into(),
    }
}

fn reason(s: &tonic::Status) -> Option<&str> {
    s.metadata()
        .get("x-idnode-reason")
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_top_level_node_refuses_a_client_over_its_request_rate() {
    let top = TopLevelNode::start(
        top_limits(AdmissionConfig {
            client_requests_per_second: 20,
            ..AdmissionConfig::default()
        }),
        ForwardConfig::default(),
    )
    .await;
    let mut client = top.client(None).await;
    let mut ok = 0;
    let mut refused = None;
    for _ in 0..60 {
        match client.locate(locate("88.101")).await {
            Ok(_) => ok += 1,
            Err(s) => {
                refused.get_or_insert(s);
            }
        }
    }
    let s = refused.expect("some requests are refused");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert_eq!(reason(&s), Some("603"));
    assert!((15..=30).contains(&ok), "{ok} admitted");
    top.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_top_level_node_bounds_requests_in_flight_and_ends_slow_ones() {
    // A delegation to a node that never answers: recursive resolutions through it hang
    // until the request timeout (the forwarder would wait 10 s).
    let (blackhole, held) = blackhole().await;
    let top = TopLevelNode::start(
        top_limits(AdmissionConfig {
            max_in_flight: 2,
            request_timeout: Duration::from_millis(1500),
            ..AdmissionConfig::default()
        }),
        ForwardConfig {
            timeout: Duration::from_secs(10),
            retries: 0,
            ..ForwardConfig::default()
        },
    )
    .await;
    top.client(Some(&top.admin_token))
        .await
        .add_delegation(pb::AddDelegationRequest {
            node_prefix: "88.199".into(),
            node_id: "silent".into(),
            name: "never answers".into(),
            endpoints: Some(pb::Endpoints {
                grpc: blackhole,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let started = Instant::now();
    let mut hanging = Vec::new();
    for i in 0..2 {
        let mut client = top.client(None).await;
        hanging.push(tokio::spawn(async move {
            client
                .resolve(resolve(&format!("88.199.1/SLOW-{i}")))
                .await
                .unwrap_err()
        }));
    }
    // Once both slots are taken, another request is refused at once. On a loaded machine the
    // two may take a while to arrive, so try until they do; they hold their slots until the
    // request timeout, so a refusal must come before either of them ends.
    let mut client = top.client(None).await;
    // A probe holds a slot for a moment: let the two arrive first, so none of them is refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = loop {
        match client.locate(locate("88.101")).await {
            Err(s) => break s,
            Ok(_) => {
                assert!(
                    !hanging.iter().any(|h| h.is_finished()),
                    "never refused while both slots were held"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("in flight"), "{refused:?}");
    for h in hanging {
        let e = h.await.unwrap();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
        assert!(e.message().contains("request_timeout_ms"), "{e:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The slots came back.
    client.locate(locate("88.101")).await.unwrap();
    top.stop().await;
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_top_level_node_bounds_connections_and_closes_idle_ones() {
    let top = TopLevelNode::start(
        top_limits(AdmissionConfig {
            max_connections: 2,
            idle_timeout: Duration::from_secs(1),
            ..AdmissionConfig::default()
        }),
        ForwardConfig::default(),
    )
    .await;
    // A client that is served holds one slot, a silent connection the other.
    let mut served = top.client(None).await;
    served.locate(locate("88.101")).await.unwrap();
    let started = Instant::now();
    let mut silent = TcpStream::connect(top.addr).await.unwrap();
    let refused = async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", top.addr))
            .unwrap()
            .connect()
            .await?;
        pb::top_level_client::TopLevelClient::new(channel)
            .locate(locate("88.101"))
            .await
            .map_err(|e| -> Box<dyn std::error::Error> { Box::new(e) })?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), refused)
            .await
            .expect("refused promptly")
            .is_err(),
        "a client over the connection limit was served"
    );
    // The silent connection is closed after the idle timeout; the served one stays.
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_some(),
        "a silent connection stayed open"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    served.locate(locate("88.101")).await.unwrap();
    // Its slot serves a new client.
    top.client(None)
        .await
        .locate(locate("88.101"))
        .await
        .unwrap();
    top.stop().await;
}

#[tokio::test]
async fn the_top_level_node_limits_message_sizes() {
    let top = TopLevelNode::start(
        TopLevelLimits {
            max_message_bytes: 64 << 10,
            ..TopLevelLimits::default()
        },
        ForwardConfig::default(),
    )
    .await;
    let mut admin = top.client(Some(&top.admin_token)).await;
    let e = admin
        .add_delegation(pb::AddDelegationRequest {
            node_prefix: "88.150".into(),
            node_id: "big".into(),
            name: "x".repeat(100 << 10),
            endpoints: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // A message within the limit is served.
    admin
        .add_delegation(pb::AddDelegationRequest {
            node_prefix: "88.150".into(),
            node_id: "small".into(),
            name: "small".into(),
            endpoints: None,
        })
        .await
        .unwrap();
    top.stop().await;
}

#[tokio::test]
async fn the_top_level_node_locks_out_failed_authentications() {
    let top = TopLevelNode::start(TopLevelLimits::default(), ForwardConfig::default()).await;
    let mut admin = top.client(Some(&top.admin_token)).await;
    admin
        .list_delegations(pb::ListDelegationsRequest {})
        .await
        .unwrap();
    // Ten failed authentications lock this client out, even with the admin token.
    for i in 0..10 {
        let forged = format!("idn_{:016x}_{}", i, "0".repeat(64));
        let e = top
            .client(Some(&forged))
            .await
            .list_delegations(pb::ListDelegationsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    }
    let e = admin
        .list_delegations(pb::ListDelegationsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(reason(&e), Some("406"));
    // Anonymous requests go on.
    top.client(None)
        .await
        .locate(locate("88.101"))
        .await
        .unwrap();
    top.stop().await;
}
