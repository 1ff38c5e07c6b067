//! Classification × caller, grants, quotas, token expiry, failed-auth limiting, the
//! tamper-evident log, and TLS.

use std::time::Duration;

use idnode::api::grpc::pb;
use tonic::Code;

use crate::support::{record, register_request, resolve, text, TestNode};

fn classified(index: u32, value_type: &str, class: pb::Classification) -> pb::Value {
    pb::Value {
        classification: class as i32,
        ..text(index, value_type, &format!("{value_type}-data"))
    }
}

/// Indexes of the values `token` sees for `id` over gRPC.
async fn seen(node: &TestNode, token: Option<&str>, id: &str) -> Vec<u32> {
    let r = node
        .resolver(token)
        .resolve(resolve(id))
        .await
        .unwrap()
        .into_inner();
    r.values.iter().map(|v| v.index).collect()
}

#[tokio::test]
async fn classification_by_caller_on_every_interface() {
    let node = TestNode::start_empty().await;
    let owner = node.enterprise("88.101.5", "Owner").await;
    let partner = node.enterprise("88.101.8", "Partner").await;
    let other = node.enterprise("88.101.12", "Other").await;
    let values = vec![
        classified(1, "URL", pb::Classification::Public),
        classified(2, "supplier", pb::Classification::Partner),
        classified(3, "unitCost", pb::Classification::Private),
    ];
    for id in ["88.101.5/C-1", "88.101.5/C-2", "88.101.5.9/C-3"] {
        node.registry(Some(&owner))
            .register(register_request(record(id, values.clone())))
            .await
            .unwrap();
    }
    // Grant on one identifier only; the other identifiers stay closed to the partner.
    node.registry(Some(&owner))
        .grant(pb::GrantRequest {
            scope: "88.101.5/C-1".into(),
            grantee: "88.101.8".into(),
        })
        .await
        .unwrap();
    let admin = node.admin_token.clone();
    let table: [(&str, Option<&str>, &str, &[u32]); 10] = [
        ("anonymous", None, "88.101.5/C-1", &[1]),
        ("owner", Some(&owner), "88.101.5/C-1", &[1, 2, 3]),
        ("granted partner", Some(&partner), "88.101.5/C-1", &[1, 2]),
        (
            "partner, ungranted identifier",
            Some(&partner),
            "88.101.5/C-2",
            &[1],
        ),
        ("other enterprise", Some(&other), "88.101.5/C-1", &[1]),
        ("admin", Some(&admin), "88.101.5/C-1", &[1, 2, 3]),
        (
            "owner, sub-prefix",
            Some(&owner),
            "88.101.5.9/C-3",
            &[1, 2, 3],
        ),
        ("anonymous, sub-prefix", None, "88.101.5.9/C-3", &[1]),
        (
            "partner, sub-prefix ungranted",
            Some(&partner),
            "88.101.5.9/C-3",
            &[1],
        ),
        ("other, sub-prefix", Some(&other), "88.101.5.9/C-3", &[1]),
    ];
    for (who, token, id, expected) in table {
        assert_eq!(seen(&node, token, id).await, expected, "{who} reading {id}");
    }
    // A prefix grant covers every identifier under it, sub-prefixes included.
    node.registry(Some(&owner))
        .grant(pb::GrantRequest {
            scope: "88.101.5".into(),
            grantee: "88.101.8".into(),
        })
        .await
        .unwrap();
    assert_eq!(seen(&node, Some(&partner), "88.101.5/C-2").await, [1, 2]);
    assert_eq!(seen(&node, Some(&partner), "88.101.5.9/C-3").await, [1, 2]);
    assert_eq!(seen(&node, Some(&other), "88.101.5/C-2").await, [1]);
    // Only the owner grants; revocation closes access again.
    let e = node
        .registry(Some(&partner))
        .grant(pb::GrantRequest {
            scope: "88.101.5".into(),
            grantee: "88.101.12".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let grants = node
        .registry(Some(&owner))
        .list_grants(pb::ListGrantsRequest {
            prefix: "88.101.5".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grants.grants.len(), 2);
    for scope in ["88.101.5", "88.101.5/C-1"] {
        node.registry(Some(&owner))
            .revoke_grant(pb::GrantRequest {
                scope: scope.into(),
                grantee: "88.101.8".into(),
            })
            .await
            .unwrap();
    }
    assert_eq!(seen(&node, Some(&partner), "88.101.5/C-1").await, [1]);

    // HTTP: anonymous sees public values; a token shows what it may see.
    node.registry(Some(&owner))
        .grant(pb::GrantRequest {
            scope: "88.101.5/C-1".into(),
            grantee: "88.101.8".into(),
        })
        .await
        .unwrap();
    let http = format!(
        "http://{}/api/handles/88.101.5/C-1",
        node.http_addr.unwrap()
    );
    let client = reqwest::Client::new();
    for (token, expected) in [
        (None, 1usize),
        (Some(&partner), 2),
        (Some(&other), 1),
        (Some(&owner), 3),
    ] {
        let mut req = client.get(&http);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let body: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        assert_eq!(
            body["values"].as_array().unwrap().len(),
            expected,
            "{token:?}"
        );
    }
    // DNS: public values only, always.
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let zone = Name::from_ascii("id.example.").unwrap();
    let name = idnode::api::dns::naming::encode(
        &idnode::identifier::Identifier::parse("88.101.5/C-1").unwrap(),
        &zone,
    )
    .unwrap();
    let mut q = Message::new(1, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(name, RecordType::TXT));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&q.to_vec().unwrap(), node.dns_addr.unwrap())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).await.unwrap();
    assert_eq!(Message::from_vec(&buf[..n]).unwrap().answers.len(), 1);
    // The classification is part of the value on output.
    let r = node
        .registry(Some(&owner))
        .get(pb::GetRequest {
            identifier: "88.101.5/C-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let classes: Vec<i32> = r
        .record
        .unwrap()
        .values
        .iter()
        .map(|v| v.classification)
        .collect();
    assert_eq!(classes, [1, 2, 3]);
}

fn reason(s: &tonic::Status) -> Option<String> {
    s.metadata()
        .get("x-idnode-reason")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn quotas_refuse_with_a_machine_readable_reason() {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.5", "Quota Co").await;
    let other = node.enterprise("88.101.8", "Other").await;
    let set = |q: pb::Quota| pb::SetQuotaRequest {
        prefix: "88.101.5".into(),
        quota: Some(q),
    };
    // Only the admin sets quotas.
    let e = node
        .admin(Some(&t))
        .set_quota(set(pb::Quota::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    node.admin(Some(&node.admin_token))
        .set_quota(set(pb::Quota {
            max_registrations: 3,
            ..Default::default()
        }))
        .await
        .unwrap();
    for i in 0..3 {
        node.registry(Some(&t))
            .register(register_request(record(
                &format!("88.101.5/Q{i}"),
                vec![text(1, "URL", "u")],
            )))
            .await
            .unwrap();
    }
    let e = node
        .registry(Some(&t))
        .register(register_request(record(
            "88.101.5/Q3",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(reason(&e).as_deref(), Some("604"));
    assert!(e.message().starts_with("[604]"), "{}", e.message());
    // A retry of an existing record is still fine; a delete frees room.
    node.registry(Some(&t))
        .register(register_request(record(
            "88.101.5/Q0",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap();
    node.registry(Some(&t))
        .delete(pb::DeleteRequest {
            identifier: "88.101.5/Q0".into(),
        })
        .await
        .unwrap();
    // In a batch, items beyond the quota fail alone.
    let mut stream = node
        .registry(Some(&t))
        .batch_register(tokio_stream::iter(vec![pb::BatchRegisterRequest {
            records: (10..13)
                .map(|i| record(&format!("88.101.5/B{i}"), vec![text(1, "URL", "u")]))
                .collect(),
        }]))
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .results
        .iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(
        codes,
        [0, 8, 8],
        "one slot left: OK, RESOURCE_EXHAUSTED, RESOURCE_EXHAUSTED"
    );
    // Usage is visible to the enterprise, not to others.
    let u = node
        .admin(Some(&t))
        .get_usage(pb::GetUsageRequest {
            prefix: "88.101.5".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            u.registered,
            u.registered_today,
            u.quota.unwrap().max_registrations
        ),
        (3, 4, 3)
    );
    let e = node
        .admin(Some(&other))
        .get_usage(pb::GetUsageRequest {
            prefix: "88.101.5".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Per day: today already has 4 registrations.
    node.admin(Some(&node.admin_token))
        .set_quota(set(pb::Quota {
            max_registrations_per_day: 4,
            ..Default::default()
        }))
        .await
        .unwrap();
    let e = node
        .registry(Some(&t))
        .register(register_request(record(
            "88.101.5/D1",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap_err();
    assert_eq!(reason(&e).as_deref(), Some("604"));

    // Request rate: 5 per second; a burst of 20 sees refusals with 603, over HTTP too.
    node.admin(Some(&node.admin_token))
        .set_quota(set(pb::Quota {
            max_requests_per_second: 5,
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut refused = 0;
    for _ in 0..20 {
        if let Err(e) = node
            .resolver(Some(&t))
            .resolve(resolve("88.101.5/Q1"))
            .await
        {
            assert_eq!(reason(&e).as_deref(), Some("603"));
            refused += 1;
        }
    }
    assert!(refused >= 10, "{refused} of 20 refused");
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "http://{}/api/handles/88.101.5/Q1",
            node.http_addr.unwrap()
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["responseCode"], 603);
    // Anonymous resolution is not the enterprise's traffic.
    node.resolver(None)
        .resolve(resolve("88.101.5/Q1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn tokens_expire_and_failed_authentications_are_limited() {
    let node = TestNode::start_empty().await;
    let short = node
        .admin(Some(&node.admin_token))
        .create_enterprise(pb::CreateEnterpriseRequest {
            prefix: "88.101.5".into(),
            name: "Short-lived".into(),
            industry_code: String::new(),
            token_ttl_secs: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    node.registry(Some(&short))
        .register(register_request(record(
            "88.101.5/E1",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = node
        .registry(Some(&short))
        .register(register_request(record(
            "88.101.5/E2",
            vec![text(1, "URL", "u")],
        )))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unauthenticated, "token expired")
    );

    // Ten failures from this client (the expired token above was the first) lock it out
    // for a minute, even with a valid token.
    let good = node.enterprise("88.101.8", "Good").await;
    for i in 0..8 {
        let forged = format!("idn_{:016x}_{}", i, "0".repeat(64));
        let e = node
            .registry(Some(&forged))
            .get_counts(pb::GetCountsRequest {})
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    node.registry(Some(&good))
        .get_counts(pb::GetCountsRequest {})
        .await
        .expect("not locked yet");
    let e = node
        .registry(Some("idn_bad"))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = node
        .registry(Some(&good))
        .get_counts(pb::GetCountsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(reason(&e).as_deref(), Some("406"));
    // Anonymous reads go on.
    node.resolver(None)
        .resolve(resolve("88.101.5/E1"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operation_log_detects_tampering() {
    use idnode::audit::{self, Problem};
    use idnode::store::rocks::{RocksConfig, RocksStore};
    use idnode::store::{codec, Batch, Durability, Store, Table};

    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path(), false).await;
    let t = node.enterprise("88.101.5", "Log Co").await;
    for i in 0..5 {
        node.registry(Some(&t))
            .register(register_request(record(
                &format!("88.101.5/L{i}"),
                vec![text(1, "URL", &format!("u{i}"))],
            )))
            .await
            .unwrap();
    }
    node.registry(Some(&t))
        .update(pb::UpdateRequest {
            identifier: "88.101.5/L1".into(),
            change: Some(pb::update_request::Change::Replace(pb::ValueList {
                values: vec![text(1, "URL", "changed")],
            })),
        })
        .await
        .unwrap();
    node.registry(Some(&t))
        .delete(pb::DeleteRequest {
            identifier: "88.101.5/L4".into(),
        })
        .await
        .unwrap();
    let proof = node
        .registry(Some(&t))
        .get_proof(pb::GetProofRequest {
            identifier: "88.101.5/L1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let ops: Vec<_> = proof.entries.iter().map(|e| e.op.as_str()).collect();
    assert_eq!(ops, ["register", "update"]);
    assert!(proof.consistent);
    assert!(proof.entries[0].seq < proof.entries[1].seq);
    assert_eq!(
        proof.head_seq,
        proof.entries[1].seq + 1,
        "one change (the delete of L4) came after the update"
    );
    let e = node
        .registry(None)
        .get_proof(pb::GetProofRequest {
            identifier: "88.101.5/L1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // Stopping reports the final signed head to the (embedded) top-level node.
    node.stop().await;

    let heads = |top: &RocksStore| -> Vec<audit::SignedHead> {
        top.scan(Table::Heads, b"88.101\0", None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, v)| codec::decode_json(&v).unwrap())
            .collect()
    };
    let top =
        RocksStore::open_read_only(&RocksConfig::new(dir.path().join("toplevel/db"))).unwrap();
    let signed = heads(&top);
    drop(top);
    assert!(!signed.is_empty(), "the node reported signed heads");
    let key = idnode::secrets::node_key(&dir.path().join("node.key"))
        .unwrap()
        .verifying_key();

    let store = RocksStore::open(&RocksConfig::new(dir.path().join("db"))).unwrap();
    let clean = audit::verify(&store, &signed, Some(&key)).unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    let last = signed.last().unwrap();
    assert_eq!(
        (last.seq, last.hash.as_str()),
        (clean.head.0, clean.head.1.as_str())
    );

    // Alter a past log entry (seq 3) and a past record (L2), directly in RocksDB.
    let entry_3 = store
        .get(Table::Oplog, &3u64.to_be_bytes())
        .unwrap()
        .unwrap();
    let mut e3: idnode::oplog::LogEntry = codec::decode_json(&entry_3).unwrap();
    e3.actor = "admin".into();
    let mut b = Batch::new();
    b.put(
        Table::Oplog,
        3u64.to_be_bytes().to_vec(),
        codec::encode_json(&e3),
    );
    let mut l2 =
        codec::decode_record(&store.get(Table::Records, b"88.101.5/L2").unwrap().unwrap()).unwrap();
    l2.values[0].data = b"forged".to_vec();
    b.put(
        Table::Records,
        b"88.101.5/L2".to_vec(),
        codec::encode_record(&l2),
    );
    store.write(b, Durability::Sync).unwrap();
    let report = audit::verify(&store, &signed, Some(&key)).unwrap();
    assert_eq!(
        report.problems[0],
        Problem::Chain {
            seq: 3,
            reason: "its hash does not match its content".into()
        }
    );
    assert!(report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::Record { identifier, .. } if identifier == "88.101.5/L2")));

    // An attacker who also recomputes every later hash keeps the chain consistent, but the
    // heads signed earlier and held by the top-level node no longer match.
    let mut prev = e3.prev.clone();
    let mut seq = 3u64;
    let mut b = Batch::new();
    while let Some(bytes) = store.get(Table::Oplog, &seq.to_be_bytes()).unwrap() {
        let mut e: idnode::oplog::LogEntry = codec::decode_json(&bytes).unwrap();
        if seq == 3 {
            e.actor = "admin".into();
        }
        e.prev = prev.clone();
        e.hash = idnode::oplog::entry_hash(&e);
        prev = e.hash.clone();
        b.put(
            Table::Oplog,
            seq.to_be_bytes().to_vec(),
            codec::encode_json(&e),
        );
        seq += 1;
    }
    store.write(b, Durability::Sync).unwrap();
    let report = audit::verify(&store, &signed, Some(&key)).unwrap();
    assert!(
        !report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Chain { .. })),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Head { .. })),
        "{:?}",
        report.problems
    );
    drop(store);

    // The CLI says the same and fails.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_idnode"))
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BROKEN: record 88.101.5/L2"), "{text}");
    assert!(text.contains("BROKEN: signed head"), "{text}");
}

#[tokio::test]
async fn mutual_tls_between_nodes_and_https() {
    use idnode::tls::{dev_certs, ClientTls, ServerTls};
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = dev_certs(certs_dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
    // A top-level node that requires client certificates from our CA.
    let top_dir = tempfile::tempdir().unwrap();
    let top =
        idnode::node::toplevel::open(top_dir.path(), Default::default(), 8 << 20, false).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let top_addr = listener.local_addr().unwrap();
    let server_tls = ServerTls {
        cert: certs.server_cert.clone(),
        key: certs.server_key.clone(),
        client_ca: Some(certs.ca.clone()),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let (tls, s) = (server_tls.clone(), stop.clone());
    tokio::spawn(async move {
        idnode::node::toplevel::serve(
            &top,
            Default::default(),
            &Default::default(),
            listener,
            Some(&tls),
            s,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    });
    let client_tls = ClientTls {
        ca: certs.ca.clone(),
        identity: Some((certs.client_cert.clone(), certs.client_key.clone())),
    };

    // Two secondary nodes serving TLS themselves, joined over mutual TLS.
    let node = |dir: &std::path::Path, prefix: &str| {
        let mut c = crate::support::config(dir, false);
        c.core.node_prefix = idnode::identifier::Prefix::parse(prefix).unwrap();
        c.upstream = Some(idnode::config::UpstreamConfig {
            url: format!("https://127.0.0.1:{}", top_addr.port()),
            token_file: Some(top_dir.path().join(format!("node-tokens/{prefix}.token"))),
        });
        c.upstream_tls = Some(client_tls.clone());
        c.forward.timeout = Duration::from_secs(2);
        c.tls = Some(server_tls.clone());
        c
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestNode::start_tls(node(a_dir.path(), "88.101"), &client_tls).await;
    let b = TestNode::start_tls(node(b_dir.path(), "88.102"), &client_tls).await;
    let t = b.enterprise("88.102.3", "TLS Co").await;
    b.registry(Some(&t))
        .register(register_request(record(
            "88.102.3/TLS-1",
            vec![text(1, "URL", "https://e.cn/tls")],
        )))
        .await
        .unwrap();
    // A resolves B's identifier: A→top-level over mTLS, A→B over TLS with A's client cert.
    let mut resolved = None;
    for _ in 0..100 {
        if let Ok(r) = a.resolver(None).resolve(resolve("88.102.3/TLS-1")).await {
            resolved = Some(r.into_inner());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        resolved.expect("resolved over TLS").values[0].data,
        b"https://e.cn/tls"
    );

    // Without a client certificate, or without trusting our CA, the top-level node refuses.
    let url = format!("https://127.0.0.1:{}", top_addr.port());
    let no_cert = ClientTls {
        ca: certs.ca.clone(),
        identity: None,
    }
    .grpc()
    .unwrap();
    assert!(
        list_delegations_over(&url, no_cert).await.is_err(),
        "a client without a certificate must be refused"
    );
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = dev_certs(other_dir.path(), &["127.0.0.1".into()]).unwrap();
    let untrusting = ClientTls {
        ca: other_ca.ca,
        identity: Some((certs.client_cert.clone(), certs.client_key.clone())),
    }
    .grpc()
    .unwrap();
    assert!(
        list_delegations_over(&url, untrusting).await.is_err(),
        "a server certificate from another CA must be refused"
    );
    // With the right client certificate: served.
    let ok = ClientTls {
        ca: certs.ca.clone(),
        identity: Some((certs.client_cert.clone(), certs.client_key.clone())),
    }
    .grpc()
    .unwrap();
    let nodes = list_delegations_over(&url, ok)
        .await
        .expect("served with a valid certificate");
    let a_node = nodes
        .delegations
        .iter()
        .find(|n| n.node_prefix == "88.101")
        .unwrap();
    assert!(a_node
        .endpoints
        .clone()
        .unwrap()
        .grpc
        .starts_with("https://"));

    // HTTPS with a client certificate: /healthz answers; without one the handshake fails.
    let http = a.http_addr.unwrap();
    let status = https_get(http, &certs, true, "/healthz")
        .await
        .expect("HTTPS with a client certificate");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(https_get(http, &certs, false, "/healthz").await.is_err());
    stop.cancel();
}

/// Lists the top-level node's delegations over TLS with the given client configuration.
async fn list_delegations_over(
    url: &str,
    tls: tonic::transport::ClientTlsConfig,
) -> Result<pb::ListDelegationsResponse, Box<dyn std::error::Error>> {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())?
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(pb::top_level_client::TopLevelClient::new(channel)
        .list_delegations(pb::ListDelegationsRequest {})
        .await?
        .into_inner())
}

/// A raw HTTP/1.1 GET over TLS with tokio-rustls; the status line on success.
async fn https_get(
    addr: std::net::SocketAddr,
    certs: &idnode::tls::DevCerts,
    with_cert: bool,
    path: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&certs.ca)? {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = if with_cert {
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(&certs.client_cert)?
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&certs.client_key)?;
        builder.with_client_auth_cert(chain, key)?
    } else {
        builder.with_no_client_auth()
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned(),
            tcp,
        )
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    if text.is_empty() {
        return Err("empty answer".into());
    }
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// A BatchRegister message is one log entry; each record's content hash sits in its index
/// entry, and the entry's digest over them makes rewriting a record and its hash together
/// detectable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_entry_commits_to_every_record_it_covers() {
    use idnode::audit::{self, Problem};
    use idnode::oplog::{content_digest, index_key};
    use idnode::store::rocks::{RocksConfig, RocksStore};
    use idnode::store::{codec, Batch, Durability, Store, Table};

    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path(), false).await;
    let t = node.enterprise("88.101.5", "Batch Log Co").await;
    let message = |from: usize| pb::BatchRegisterRequest {
        records: (from..from + 40)
            .map(|i| {
                record(
                    &format!("88.101.5/B{i}"),
                    vec![text(1, "URL", &format!("u{i}"))],
                )
            })
            .collect(),
    };
    let mut answers = node
        .registry(Some(&t))
        .batch_register(tokio_stream::iter(vec![message(0), message(40)]))
        .await
        .unwrap()
        .into_inner();
    while let Some(a) = answers.message().await.unwrap() {
        assert!(a.results.iter().all(|r| r.code == 0), "{a:?}");
    }
    let proof = node
        .registry(Some(&t))
        .get_proof(pb::GetProofRequest {
            identifier: "88.101.5/B45".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.entries.len(), 1);
    assert_eq!(proof.entries[0].op, "batch_register");
    assert!(proof.consistent);
    node.stop().await;

    let store = RocksStore::open(&RocksConfig::new(dir.path().join("db"))).unwrap();
    let clean = audit::verify(&store, &[], None).unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.records, 80);
    let seq = proof.entries[0].seq;

    // Stores written before index values were 32 bytes hold 64 hex digits: still read.
    let b45 = store.get(Table::Records, b"88.101.5/B45").unwrap().unwrap();
    let mut b = Batch::new();
    b.put(
        Table::OplogIndex,
        index_key("88.101.5/B45", seq),
        hex::encode(content_digest(&b45)).into_bytes(),
    );
    store.write(b, Durability::Sync).unwrap();
    let legacy = audit::verify(&store, &[], None).unwrap();
    assert!(legacy.problems.is_empty(), "{:?}", legacy.problems);

    // Forge B45 and the content hash in its index entry consistently: the record matches
    // its (forged) hash, but the batch entry's digest no longer does.
    let mut forged =
        codec::decode_record(&store.get(Table::Records, b"88.101.5/B45").unwrap().unwrap())
            .unwrap();
    forged.values[0].data = b"forged".to_vec();
    let bytes = codec::encode_record(&forged);
    let mut b = Batch::new();
    b.put(
        Table::OplogIndex,
        index_key("88.101.5/B45", seq),
        content_digest(&bytes).to_vec(),
    );
    b.put(Table::Records, b"88.101.5/B45".to_vec(), bytes);
    store.write(b, Durability::Sync).unwrap();
    let report = audit::verify(&store, &[], None).unwrap();
    assert_eq!(
        report.problems,
        [Problem::Chain {
            seq,
            reason: "the content hashes in its index entries differ from its digest".into()
        }]
    );
}

/// Every change of who may authenticate is a log entry (the admin token's creation and
/// reset included), and the audit checks each subject's stored credentials against the
/// last entry about them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_credential_change_is_logged_and_audited() {
    use idnode::audit::{self, Problem};
    use idnode::oplog::entries_of;
    use idnode::store::rocks::{RocksConfig, RocksStore};
    use idnode::store::{codec, Batch, Durability, Store, Table};

    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(dir.path(), false).await;
    node.enterprise("88.101.5", "Credential Co").await;
    let mut admin = node.admin(Some(&node.admin_token));
    admin
        .rotate_token(pb::RotateTokenRequest {
            prefix: "88.101.5".into(),
            keep_previous: true,
            token_ttl_secs: 3600,
        })
        .await
        .unwrap();
    admin
        .revoke_tokens(pb::RevokeTokensRequest {
            prefix: "88.101.5".into(),
        })
        .await
        .unwrap();
    node.stop().await;
    // `idnode serve --reset-admin-token`.
    let config = crate::support::config(dir.path(), false);
    drop(idnode::node::open(&config, true).unwrap());

    let store = RocksStore::open(&RocksConfig::new(dir.path().join("db"))).unwrap();
    let ops = |target: &str| -> Vec<(String, String)> {
        entries_of(&store, target)
            .unwrap()
            .into_iter()
            .map(|e| (e.op, e.detail.unwrap_or_default()))
            .collect()
    };
    let admin_entries = ops("admin");
    assert_eq!(admin_entries.len(), 2, "{admin_entries:?}");
    assert!(admin_entries[0].1.starts_with("admin token created"));
    assert!(admin_entries[1].1.starts_with("admin token reset"));
    let enterprise: Vec<_> = ops("88.101.5").into_iter().map(|(op, _)| op).collect();
    assert_eq!(enterprise, ["enterprise", "tokens", "tokens"]);
    assert!(ops("88.101.5")[1].1.contains("expires at"));
    let clean = audit::verify(&store, &[], None).unwrap();
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);

    // A credential slipped into the store without a log entry is found.
    let (admin_id, admin_cred) = store
        .scan(Table::Credentials, b"", None, 100)
        .unwrap()
        .into_iter()
        .find(|(_, v)| {
            codec::decode_json::<idnode::auth::Credential>(v)
                .unwrap()
                .subject
                == idnode::auth::Subject::Admin
        })
        .unwrap();
    let mut forged: idnode::auth::Credential = codec::decode_json(&admin_cred).unwrap();
    forged.id = "forged".into();
    let mut b = Batch::new();
    b.put(
        Table::Credentials,
        b"forged".to_vec(),
        codec::encode_json(&forged),
    );
    store.write(b, Durability::Sync).unwrap();
    let report = audit::verify(&store, &[], None).unwrap();
    let seq = entries_of(&store, "admin").unwrap()[1].seq;
    assert_eq!(
        report.problems,
        [Problem::Credentials {
            subject: "admin".into(),
            reason: format!("differ from log entry {seq}")
        }]
    );
    // So is an expiry changed in place.
    let mut b = Batch::new();
    b.delete(Table::Credentials, b"forged".to_vec());
    let mut longer: idnode::auth::Credential = codec::decode_json(&admin_cred).unwrap();
    longer.expires_at = Some(i64::MAX);
    b.put(Table::Credentials, admin_id, codec::encode_json(&longer));
    store.write(b, Durability::Sync).unwrap();
    let report = audit::verify(&store, &[], None).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
}
