//! Resource limits: over each one a client gets its defined refusal (gRPC
//! RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED, HTTP 429/503, DNS REFUSED, a closed
//! connection), and the node keeps serving once the load is gone.

use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use idnode::api::admission::AdmissionConfig;
use idnode::api::grpc::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use crate::dns::{name_of, request};
use crate::support::{config, resolve, TestNode};

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
    // Two BatchCreate streams left open hold both slots: their response headers have
    // arrived, their request streams are not finished.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::BatchCreateRequest>(1);
        let responses = node
            .registry(Some(&token))
            .batch_create(tokio_stream::wrappers::ReceiverStream::new(rx))
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
    // Three HTTP connections that sent half a request hold every HTTP slot.
    let mut holders = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(http_addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        holders.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
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
        let mut s = TcpStream::connect(grpc).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        grpc_holders.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
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
