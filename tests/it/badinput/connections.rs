//! Idle and half-open connections on every interface at once, in process: other clients
//! are still served, and the node closes them after the idle time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use idnode::api::grpc::pb;
use tokio::net::{TcpStream, UdpSocket};
use tonic::transport::Channel;
use tonic::Code;

use super::dns::{assert_probe_answer, query, read_frame, recv, seeded_name, write_frame, PROBE};
use super::grpc::raw_grpc;
use super::http::{head, http_exchange};
use super::{
    assert_absent, closed_within, new, small_limits_node, snapshot, stalled, OWNER, SEEDED,
};
use crate::support::{resolve, TestNode};

/// A fresh client on every interface is answered within `bound`.
async fn fresh_clients_served(node: &TestNode, bound: Duration, when: &str) {
    let started = Instant::now();
    let grpc = async {
        let channel = Channel::from_shared(format!("http://{}", node.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = pb::resolver_client::ResolverClient::new(channel);
        client.resolve(resolve(SEEDED)).await.unwrap();
    };
    tokio::time::timeout(bound, grpc)
        .await
        .unwrap_or_else(|_| panic!("{when}: a fresh gRPC client waited over {bound:?}"));
    let http = http_exchange(
        node.http_addr.unwrap(),
        head("GET", &format!("/api/handles/{SEEDED}"), &[]),
        vec![],
    );
    let r = tokio::time::timeout(bound, http)
        .await
        .unwrap_or_else(|_| panic!("{when}: a fresh HTTP client waited over {bound:?}"))
        .unwrap();
    assert_eq!(r.status, 200, "{when}");
    let dns = node.dns_addr.unwrap();
    let probe = query(PROBE, seeded_name(), RecordType::TXT)
        .to_vec()
        .unwrap();
    let udp = async {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(dns).await.unwrap();
        socket.send(&probe).await.unwrap();
        recv(&socket, bound).await
    };
    let answer = udp.await.unwrap_or_else(|| panic!("{when}: no UDP answer"));
    assert_probe_answer(&Message::from_vec(&answer).unwrap(), when);
    let tcp = async {
        let mut s = TcpStream::connect(dns).await.unwrap();
        write_frame(&mut s, &probe).await;
        read_frame(&mut s, when).await
    };
    let m = tokio::time::timeout(bound, tcp)
        .await
        .unwrap_or_else(|_| panic!("{when}: a fresh DNS TCP client waited over {bound:?}"));
    assert_probe_answer(&m, when);
    assert!(started.elapsed() < bound * 4, "{when}");
}

#[tokio::test]
async fn idle_and_half_open_connections_do_not_starve_other_clients_and_are_closed() {
    const N: usize = 64;
    let idle = Duration::from_secs(1);
    let dir = tempfile::tempdir().unwrap();
    let node = small_limits_node(dir.path(), idle).await;
    let owner = node.seed_token(OWNER);
    let before = snapshot(&node).await;
    let (grpc, http, dns) = (node.addr, node.http_addr.unwrap(), node.dns_addr.unwrap());
    let half_put = |i: usize| {
        format!(
            "PUT /api/handles/88.101.5/HALF-{i} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {owner}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"values\": [{{\"index\": 1, "
        )
    };
    let groups: Vec<(String, SocketAddr, Vec<u8>)> = vec![
        ("gRPC, nothing sent".into(), grpc, vec![]),
        (
            "gRPC, half the HTTP/2 preface".into(),
            grpc,
            b"PRI * HTTP/2.0\r\n".to_vec(),
        ),
        ("HTTP, nothing sent".into(), http, vec![]),
        (
            "HTTP, half the headers".into(),
            http,
            format!("GET /api/handles/{SEEDED} HTTP/1.1\r\nHost: x\r\n").into_bytes(),
        ),
        ("DNS TCP, nothing sent".into(), dns, vec![]),
        ("DNS TCP, half a length prefix".into(), dns, vec![0x00]),
        (
            "DNS TCP, 2 of 64 bytes".into(),
            dns,
            vec![0x00, 0x40, 0x12, 0x34],
        ),
    ];
    let held_at = Instant::now();
    let mut held: Vec<(String, TcpStream)> = Vec::new();
    for (name, addr, prefix) in groups {
        for s in stalled(addr, N, &prefix).await {
            held.push((name.clone(), s));
        }
    }
    for i in 0..N {
        for s in stalled(http, 1, half_put(i).as_bytes()).await {
            held.push(("HTTP, headers and 30 of 100 body bytes".into(), s));
        }
    }

    // Half-sent gRPC calls on one fresh HTTP/2 connection, kept alive by its pings: a frame
    // that promises 100 bytes and delivers 10, then nothing.
    let channel = Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut calls = Vec::new();
    for _ in 0..16 {
        let mut partial = vec![0, 0, 0, 0, 100];
        partial.extend_from_slice(&[0x0a; 10]);
        let body = tokio_stream::StreamExt::chain(
            tokio_stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(partial))]),
            tokio_stream::pending(),
        );
        let (channel, auth) = (channel.clone(), format!("Bearer {owner}").into_bytes());
        calls.push(tokio::spawn(async move {
            raw_grpc(
                channel,
                grpc,
                "/idnode.v1.Registry/Register",
                Some(&auth),
                axum::body::Body::from_stream(body),
            )
            .await
        }));
    }

    // While they all stall, fresh clients are served on every interface.
    fresh_clients_served(&node, Duration::from_secs(3), "with stalled clients").await;

    // Then the node lets go of them: half-sent calls end with DEADLINE_EXCEEDED after the
    // request timeout (2 s), stalled connections are closed after the idle time (1 s).
    let mut failures = Vec::new();
    for c in calls {
        match tokio::time::timeout(Duration::from_secs(6), c).await {
            Ok(Ok(Ok(status))) if status.code() == Code::DeadlineExceeded => {}
            Ok(Ok(other)) => failures.push(format!("half-sent gRPC call: ended with {other:?}")),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => failures.push("half-sent gRPC call: still pending after 6 s".into()),
        }
    }
    let deadline = held_at + idle + Duration::from_secs(5);
    for (name, mut s) in held {
        let left = deadline.saturating_duration_since(Instant::now());
        if closed_within(&mut s, left).await.is_none() {
            failures.push(format!(
                "{name}: still open {:?} after it stalled",
                deadline - held_at
            ));
        }
    }
    failures.dedup();

    fresh_clients_served(&node, Duration::from_secs(3), "after stalled clients").await;
    for i in 0..N {
        assert_absent(&node, &new(&format!("88.101.5/HALF-{i}")), "half-sent PUT").await;
    }
    assert_eq!(
        snapshot(&node).await,
        before,
        "stalled clients wrote something"
    );
    assert!(
        failures.is_empty(),
        "stalled clients:\n{}",
        failures.join("\n")
    );
}
