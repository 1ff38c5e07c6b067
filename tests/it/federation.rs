//! Federation over loopback: one top-level node, secondary nodes A (88.101) and B (88.102).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use idnode::api::grpc::pb;
use idnode::toplevel::TopLevelConfig;
use idnode::upstream::ForwardConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{config, record, register_request, resolve, text, TestNode};

struct TopNode {
    addr: SocketAddr,
    admin_token: String,
    dir: PathBuf,
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
}

impl TopNode {
    /// A standalone top-level node on `addr` (port 0 for any), referrals cached 1 s.
    async fn start(dir: &Path, addr: &str) -> TopNode {
        let config = TopLevelConfig {
            referral_ttl: 1,
            heartbeat_interval: 1,
            ..Default::default()
        };
        let top = idnode::node::toplevel::open(dir, config, 8 << 20, false).unwrap();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let handle = tokio::spawn(async move {
            idnode::node::toplevel::serve(
                &top,
                fast(),
                &Default::default(),
                listener,
                None,
                stop,
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        });
        TopNode {
            addr,
            admin_token: std::fs::read_to_string(dir.join("admin.token"))
                .unwrap()
                .trim()
                .to_owned(),
            dir: dir.to_owned(),
            shutdown,
            handle,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap();
    }

    async fn client(
        &self,
        token: Option<&str>,
    ) -> pb::top_level_client::TopLevelClient<crate::support::Svc> {
        let channel = Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        pb::top_level_client::TopLevelClient::with_interceptor(
            channel,
            idnode::api::grpc::client::BearerAuth::new(token).unwrap(),
        )
    }
}

/// Forwarding tuned for tests: short timeouts, one retry, brief negative and stale windows.
fn fast() -> ForwardConfig {
    ForwardConfig {
        timeout: Duration::from_millis(500),
        retries: 1,
        backoff: Duration::from_millis(20),
        negative_ttl: Duration::from_secs(1),
        serve_stale: Duration::from_secs(2),
        stale_refresh: Duration::from_millis(100),
        ..Default::default()
    }
}

/// A secondary node for `prefix`, joined to `top` with the seeded node token.
async fn secondary(top: &TopNode, dir: &Path, prefix: &str) -> TestNode {
    let mut c = config(dir, false);
    c.core.node_prefix = idnode::identifier::Prefix::parse(prefix).unwrap();
    c.upstream = Some(idnode::config::UpstreamConfig {
        url: top.url(),
        token_file: Some(top.dir.join("node-tokens").join(format!("{prefix}.token"))),
    });
    c.forward = fast();
    c.report_interval = Duration::from_millis(200);
    TestNode::start_with(c).await
}

struct Province {
    top: TopNode,
    a: TestNode,
    b: TestNode,
    /// Token of enterprise 88.102.3 on B.
    b_token: String,
    _dirs: [tempfile::TempDir; 3],
}

async fn province() -> Province {
    let dirs = [
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    ];
    let top = TopNode::start(dirs[0].path(), "127.0.0.1:0").await;
    let a = secondary(&top, dirs[1].path(), "88.101").await;
    let b = secondary(&top, dirs[2].path(), "88.102").await;
    let b_token = b.enterprise("88.102.3", "襄阳车桥").await;
    // Both nodes announce their endpoints at start; wait until the table shows them.
    let mut client = top.client(None).await;
    wait_until(|| {
        let mut client = client.clone();
        async move {
            let nodes = client
                .list_delegations(pb::ListDelegationsRequest {})
                .await
                .unwrap()
                .into_inner()
                .delegations;
            nodes
                .iter()
                .filter(|n| n.node_prefix == "88.101" || n.node_prefix == "88.102")
                .all(|n| n.live && !n.endpoints.clone().unwrap_or_default().grpc.is_empty())
        }
    })
    .await;
    let _ = &mut client;
    Province {
        top,
        a,
        b,
        b_token,
        _dirs: dirs,
    }
}

/// Polls `check` every 50 ms for at most 10 s.
async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "condition not reached within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn axle(suffix: &str, ttl: u32) -> pb::Record {
    let mut v = text(1, "URL", &format!("https://example-axle.cn/p/{suffix}"));
    v.ttl = ttl;
    let mut w = text(2, "batchNo", "XY-2025-07");
    w.ttl = ttl;
    record(&format!("88.102.3/{suffix}"), vec![v, w])
}

async fn info(node: &TestNode) -> pb::GetNodeInfoResponse {
    node.admin(None)
        .get_node_info(pb::GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn remote_identifiers_resolve_through_the_top_level_and_are_cached() {
    let p = province().await;
    p.b.registry(Some(&p.b_token))
        .register(register_request(axle("AXLE-1", 2)))
        .await
        .unwrap();

    let first =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/AXLE-1"))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(first.values.len(), 2);
    assert_eq!(first.values[0].data, b"https://example-axle.cn/p/AXLE-1");
    assert!(
        first.values[0].timestamp > 0,
        "the serving node's timestamps are kept"
    );
    let after_first = info(&p.a).await;
    assert_eq!(
        (
            after_first.upstream_calls,
            after_first.remote_calls,
            after_first.cache_hits
        ),
        (1, 1, 0)
    );

    let second =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/AXLE-1"))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(second.values, first.values);
    let after_second = info(&p.a).await;
    assert_eq!(
        after_second.cache_hits, 1,
        "the second resolve is a cache hit"
    );
    assert_eq!(after_second.remote_calls, 1);
    assert_eq!(after_second.resolved_forwarded, 2);

    // Filters apply to forwarded answers too.
    let filtered =
        p.a.resolver(None)
            .resolve(pb::ResolveRequest {
                identifier: "88.102.3/AXLE-1".into(),
                types: vec!["batchNo".into()],
                indexes: vec![],
            })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(filtered.values.len(), 1);

    // The top-level node resolves recursively for clients that ask it.
    let via_top = p
        .top
        .client(None)
        .await
        .resolve(resolve("88.102.3/AXLE-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(via_top.values, first.values);

    // B deletes it; A's answer changes no later than the TTL (2 s).
    p.b.registry(Some(&p.b_token))
        .delete(pb::DeleteRequest {
            identifier: "88.102.3/AXLE-1".into(),
        })
        .await
        .unwrap();
    let deleted_at = Instant::now();
    wait_until(|| {
        let mut r = p.a.resolver(None);
        async move { r.resolve(resolve("88.102.3/AXLE-1")).await.is_err() }
    })
    .await;
    assert!(
        deleted_at.elapsed() <= Duration::from_millis(2500),
        "changed after {:?}",
        deleted_at.elapsed()
    );
    let e =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/AXLE-1"))
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn a_prefix_delegated_to_nobody_is_not_found_everywhere() {
    let p = province().await;
    let e =
        p.a.resolver(None)
            .resolve(resolve("88.199.1/X"))
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let mut top = p.top.client(None).await;
    assert_eq!(
        top.resolve(resolve("88.199.1/X")).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        top.locate(pb::LocateRequest {
            prefix: "88.199.1".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    // A registered prefix with an unregistered identifier is not found either.
    let e =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/NOPE"))
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let referral = top
        .locate(pb::LocateRequest {
            prefix: "88.102.3".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(referral.node_prefix, "88.102");
    assert_eq!(
        referral.endpoints.unwrap().grpc,
        format!("http://{}", p.b.addr)
    );
}

#[tokio::test]
async fn top_level_outage_and_recovery() {
    let p = province().await;
    let a_token = p.a.enterprise("88.101.5", "A Co").await;
    p.a.registry(Some(&a_token))
        .register(register_request(record(
            "88.101.5/OWN",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap();
    p.b.registry(Some(&p.b_token))
        .register(register_request(axle("CACHED", 1)))
        .await
        .unwrap();
    p.b.registry(Some(&p.b_token))
        .register(register_request(axle("UNCACHED", 1)))
        .await
        .unwrap();
    p.a.resolver(None)
        .resolve(resolve("88.102.3/CACHED"))
        .await
        .unwrap();

    let (addr, dir) = (p.top.addr, p.top.dir.clone());
    p.top.stop().await;
    // Past the referral and record TTLs (1 s): A must ask upstream again, and cannot.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    p.a.resolver(None)
        .resolve(resolve("88.101.5/OWN"))
        .await
        .expect("own identifiers never need the upstream");
    let stale =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/CACHED"))
            .await
            .expect("stale answer");
    assert_eq!(stale.into_inner().values.len(), 2);
    assert!(info(&p.a).await.stale_answers >= 1);
    let e =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/UNCACHED"))
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("top-level node"), "{}", e.message());
    assert!(e.message().contains("88.102.3"), "{}", e.message());
    // Anonymous callers get the kind and the prefix; addresses and remote status text stay
    // in the node's log.
    assert!(!e.message().contains(&addr.to_string()), "{}", e.message());
    assert!(!e.message().contains("http"), "{}", e.message());

    // The top-level node comes back on the same address; A recovers without a restart.
    let top = TopNode::start(&dir, &addr.to_string()).await;
    let ok =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/UNCACHED"))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(ok.values.len(), 2);
    top.stop().await;
}

#[tokio::test]
async fn remote_node_outage_serves_stale_within_the_bound_then_unavailable() {
    let p = province().await;
    p.b.registry(Some(&p.b_token))
        .register(register_request(axle("STALE", 1)))
        .await
        .unwrap();
    p.a.resolver(None)
        .resolve(resolve("88.102.3/STALE"))
        .await
        .unwrap();
    let cached_at = Instant::now();
    let b_addr = p.b.addr;
    p.b.stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stale =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/STALE"))
            .await
            .expect("served stale");
    assert_eq!(stale.into_inner().values.len(), 2);
    assert!(info(&p.a).await.stale_answers >= 1);
    // TTL 1 s + serve-stale 2 s: after that, UNAVAILABLE naming node B.
    let bound = Duration::from_millis(3300);
    tokio::time::sleep(bound.saturating_sub(cached_at.elapsed())).await;
    let e =
        p.a.resolver(None)
            .resolve(resolve("88.102.3/STALE"))
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("the node serving 88.102 "),
        "{}",
        e.message()
    );
    assert!(
        !e.message().contains(&b_addr.to_string()),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("http"), "{}", e.message());
}

#[tokio::test]
async fn a_delegation_loop_ends_in_an_error_within_the_timeout() {
    let p = province().await;
    // 88.150 is delegated to A itself: A would forward to A forever without the hop limit.
    p.top
        .client(Some(&p.top.admin_token))
        .await
        .add_delegation(pb::AddDelegationRequest {
            node_prefix: "88.150".into(),
            node_id: "loop".into(),
            name: "points back at A".into(),
            endpoints: Some(pb::Endpoints {
                grpc: format!("http://{}", p.a.addr),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let started = Instant::now();
    let e =
        p.a.resolver(None)
            .resolve(resolve("88.150.1/X"))
            .await
            .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(e.code(), Code::Unavailable);
    // The second pass through A ends at the hop limit; the first tells its client which
    // prefix's node failed, not the remote status text (that goes to A's log).
    assert!(
        e.message().contains("the node serving 88.150 "),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("http"), "{}", e.message());
}

#[tokio::test]
async fn concurrent_misses_share_one_upstream_call() {
    let p = province().await;
    p.b.registry(Some(&p.b_token))
        .register(register_request(axle("HOT", 60)))
        .await
        .unwrap();
    let before = info(&p.a).await;
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let mut r = p.a.resolver(None);
            tokio::spawn(async move {
                r.resolve(resolve("88.102.3/HOT"))
                    .await
                    .map(|r| r.into_inner().values.len())
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), 2);
    }
    let after = info(&p.a).await;
    assert_eq!(
        after.upstream_calls - before.upstream_calls,
        1,
        "one Locate"
    );
    assert_eq!(
        after.remote_calls - before.remote_calls,
        1,
        "one Resolve at B"
    );
    assert_eq!(after.resolved_forwarded - before.resolved_forwarded, 1000);
}

#[tokio::test]
async fn statistics_of_both_nodes_are_summed_at_the_top_level() {
    let p = province().await;
    let a_token = p.a.enterprise("88.101.5", "A Co").await;
    for i in 0..7 {
        p.a.registry(Some(&a_token))
            .register(register_request(record(
                &format!("88.101.5/S{i}"),
                vec![text(1, "URL", "u")],
            )))
            .await
            .unwrap();
    }
    for i in 0..4 {
        p.b.registry(Some(&p.b_token))
            .register(register_request(axle(&format!("S{i}"), 60)))
            .await
            .unwrap();
    }
    p.a.resolver(None)
        .resolve(resolve("88.102.3/S0"))
        .await
        .unwrap();
    let mut top = p.top.client(None).await;
    wait_until(|| {
        let mut top = top.clone();
        async move {
            let s = top
                .get_stats(pb::GetStatsRequest {})
                .await
                .unwrap()
                .into_inner();
            s.registered == 11 && s.resolutions >= 2
        }
    })
    .await;
    let s = top
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.goal, 20_000_000_000);
    assert!(s.nodes >= 15, "the seeded province");
    assert_eq!(s.live_nodes, 2);
    let node = |prefix: &str| {
        s.per_node
            .iter()
            .find(|n| n.node_prefix == prefix)
            .unwrap()
            .clone()
    };
    assert_eq!(node("88.101").registered, 7);
    assert_eq!(node("88.102").registered, 4);
    assert_eq!(
        node("88.102").prefixes,
        vec![pb::PrefixTotal {
            prefix: "88.102.3".into(),
            registered: 4
        }]
    );
    let a_grpc = node("88.101")
        .resolutions
        .into_iter()
        .find(|r| r.interface == "grpc")
        .unwrap();
    assert_eq!(a_grpc.forwarded, 1);
    assert!((s.progress - 11.0 / 2e10).abs() < 1e-15);
    let _ = &mut top;
}

fn new_node() -> pb::AddDelegationRequest {
    pb::AddDelegationRequest {
        node_prefix: "88.160".into(),
        node_id: "x".into(),
        name: "x".into(),
        endpoints: None,
    }
}

#[tokio::test]
async fn node_calls_need_a_node_token_and_admin_calls_the_admin_token() {
    let p = province().await;
    let mut anon = p.top.client(None).await;
    let e = anon
        .heartbeat(pb::HeartbeatRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = anon.add_delegation(new_node()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let node_token = std::fs::read_to_string(p.top.dir.join("node-tokens/88.101.token")).unwrap();
    let mut as_node = p.top.client(Some(node_token.trim())).await;
    let e = as_node.add_delegation(new_node()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = p
        .top
        .client(Some(&p.top.admin_token))
        .await
        .heartbeat(pb::HeartbeatRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = as_node
        .heartbeat(pb::HeartbeatRequest {
            endpoints: Some(pb::Endpoints {
                grpc: "ftp://nope".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_embedded_top_level_serves_other_nodes() {
    // The default `serve` runs a top-level node in-process; another node can join it.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = TestNode::start_in(dirs[0].path(), true).await;
    let mut c = config(dirs[1].path(), false);
    c.core.node_prefix = idnode::identifier::Prefix::parse("88.102").unwrap();
    c.upstream = Some(idnode::config::UpstreamConfig {
        url: format!("http://{}", a.addr),
        token_file: Some(dirs[0].path().join("toplevel/node-tokens/88.102.token")),
    });
    c.forward = fast();
    let b = TestNode::start_with(c).await;
    let t = b.enterprise("88.102.3", "B Co").await;
    b.registry(Some(&t))
        .register(register_request(axle("EMB-1", 60)))
        .await
        .unwrap();
    // B announced itself to A's embedded top-level node: A forwards to B...
    wait_until(|| {
        let mut r = a.resolver(None);
        async move { r.resolve(resolve("88.102.3/EMB-1")).await.is_ok() }
    })
    .await;
    // ...and B forwards to A's seeded records through A's top-level service.
    let r = b
        .resolver(None)
        .resolve(resolve("88.101.5/BAT-2024-000001"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.values[0].r#type, "URL");
    let info = info(&a).await;
    assert_eq!(info.upstream, "the embedded top-level node");
}

#[tokio::test]
async fn dns_and_http_forward_like_grpc() {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let p = province().await;
    p.b.registry(Some(&p.b_token))
        .register(register_request(axle("DNS-1", 60)))
        .await
        .unwrap();
    let zone = Name::from_ascii("id.example.").unwrap();
    let id = idnode::identifier::Identifier::parse("88.102.3/DNS-1").unwrap();
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(
        idnode::api::dns::naming::encode(&id, &zone).unwrap(),
        RecordType::TXT,
    ));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&q.to_vec().unwrap(), p.a.dns_addr.unwrap())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.answers.len(), 2, "{m:?}");
    assert!(
        !m.metadata.authoritative,
        "a forwarded answer is not authoritative"
    );
    let RData::TXT(t) = &m.answers[0].data else {
        panic!("TXT expected")
    };
    assert_eq!(
        t.txt_data[0].as_ref(),
        b"1 string URL https://example-axle.cn/p/DNS-1"
    );

    // The HTTP interface of A forwards too, and hits the answer A cached for DNS.
    let body: serde_json::Value = reqwest::get(format!(
        "http://{}/api/handles/88.102.3/DNS-1",
        p.a.http_addr.unwrap()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(body["values"][1]["data"]["value"], "XY-2025-07");
    let info = info(&p.a).await;
    assert_eq!(
        (info.remote_calls, info.cache_hits, info.resolved_forwarded),
        (1, 1, 2)
    );
}
