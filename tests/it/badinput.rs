//! Bad input on every interface, table by table: over-long identifiers, prefixes and
//! values, invalid UTF-8, control characters, too many values, duplicate indexes,
//! oversized and malformed messages (protobuf, JSON, DNS), a BatchCreate stream far larger
//! than the node may buffer, idle and half-open connections.
//!
//! Every case checks its defined error (gRPC code, HTTP status + Handle `responseCode`, DNS
//! RCODE or silence), that nothing was written (the identifier stays absent; counts, the
//! seeded record and the log head are unchanged after each table), and that the node still
//! answers a good request on the same interface right after it.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use idnode::api::dns::naming;
use idnode::api::grpc::{pb, BearerAuth};
use idnode::identifier::Identifier;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tonic::codegen::http;
use tonic::codegen::{Body as _, Service as _};
use tonic::transport::Channel;
use tonic::Code;

use crate::support::{create, record, resolve, text, TestNode};

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

/// A good resolution over gRPC, on a client of its own, within a bound.
async fn assert_grpc_serves(node: &TestNode, case: &str) {
    let r = tokio::time::timeout(WAIT, node.resolver(None).resolve(resolve(SEEDED)))
        .await
        .unwrap_or_else(|_| panic!("after {case}: gRPC resolve timed out"))
        .unwrap_or_else(|e| panic!("after {case}: gRPC resolve failed: {e:?}"))
        .into_inner();
    assert!(!r.values.is_empty(), "after {case}");
}

// ---------------------------------------------------------------------------------------
// Builders.

fn value(index: u32, kind: &str, data: Vec<u8>, format: pb::Format) -> pb::Value {
    pb::Value {
        index,
        r#type: kind.into(),
        data,
        format: format as i32,
        ..Default::default()
    }
}

fn url() -> Vec<pb::Value> {
    vec![text(1, "URL", "https://e.cn/u")]
}

/// `n` values with distinct indexes.
fn many(n: u32) -> Vec<pb::Value> {
    (1..=n).map(|i| text(i, "note", "v")).collect()
}

/// Values whose data add up to more than the record limit (1 MiB), each within its own.
fn heavy() -> Vec<pb::Value> {
    (1..=17)
        .map(|i| value(i, "blob", vec![b'x'; 64 * 1024], pb::Format::Binary))
        .collect()
}

fn too_long_data() -> Vec<u8> {
    vec![b'x'; 64 * 1024 + 1]
}

/// A 65-byte prefix (the limit is 64) under the owner's.
fn long_prefix() -> String {
    format!("{OWNER}.{}", "7".repeat(56))
}

fn replace(identifier: &str, values: Vec<pb::Value>) -> pb::UpdateRequest {
    pb::UpdateRequest {
        identifier: identifier.into(),
        change: Some(pb::update_request::Change::Replace(pb::ValueList {
            values,
        })),
    }
}

fn edit(identifier: &str, add: Vec<pb::Value>, modify: Vec<pb::Value>) -> pb::UpdateRequest {
    pb::UpdateRequest {
        identifier: identifier.into(),
        change: Some(pb::update_request::Change::Edit(pb::ValueEdit {
            add,
            modify,
            remove: vec![],
        })),
    }
}

// ---------------------------------------------------------------------------------------
// gRPC.

#[derive(Debug, Clone, Copy)]
enum Who {
    Owner,
    Anonymous,
    Forged,
}

enum Call {
    Create(pb::CreateRequest),
    Update(pb::UpdateRequest),
}

struct GrpcCase {
    name: &'static str,
    who: Who,
    call: Call,
    code: Code,
    target: Target,
}

fn grpc_case(name: &'static str, call: Call, code: Code, target: Target) -> GrpcCase {
    GrpcCase {
        name,
        who: Who::Owner,
        call,
        code,
        target,
    }
}

fn create_of(id: &str, values: Vec<pb::Value>) -> Call {
    Call::Create(create(record(id, values)))
}

fn grpc_table() -> Vec<GrpcCase> {
    use Code::{InvalidArgument, PermissionDenied, ResourceExhausted, Unauthenticated};
    let long_id = format!("{OWNER}/{}", "x".repeat(256 - OWNER.len() - 1));
    assert_eq!(long_id.len(), 256);
    let long_prefix_id = format!("{}/P", long_prefix());
    let mut reference = text(1, "URL", "u");
    reference.references = (0..65)
        .map(|i| pb::Reference {
            identifier: format!("{OWNER}/R{i}"),
            index: 1,
        })
        .collect();
    let mut bad_reference = text(1, "URL", "u");
    bad_reference.references = vec![pb::Reference {
        identifier: "no slash".into(),
        index: 1,
    }];
    let mut bad_format = text(1, "URL", "u");
    bad_format.format = 99;
    let mut bad_class = text(1, "URL", "u");
    bad_class.classification = 99;
    vec![
        grpc_case(
            "identifier of 256 bytes",
            create_of(&long_id, url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "prefix of 65 bytes",
            create_of(&long_prefix_id, url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "value data of 64 KiB + 1",
            create_of(
                "88.101.5/G-DATA",
                vec![value(1, "blob", too_long_data(), pb::Format::Binary)],
            ),
            InvalidArgument,
            new("88.101.5/G-DATA"),
        ),
        grpc_case(
            "1025 values",
            create_of("88.101.5/G-MANY", many(1025)),
            ResourceExhausted,
            new("88.101.5/G-MANY"),
        ),
        grpc_case(
            "record over 1 MiB",
            create_of("88.101.5/G-HEAVY", heavy()),
            ResourceExhausted,
            new("88.101.5/G-HEAVY"),
        ),
        grpc_case(
            "duplicate value indexes",
            create_of(
                "88.101.5/G-DUP",
                vec![text(1, "URL", "a"), text(1, "URL", "b")],
            ),
            InvalidArgument,
            new("88.101.5/G-DUP"),
        ),
        grpc_case(
            "value index 0",
            create_of("88.101.5/G-ZERO", vec![text(0, "URL", "a")]),
            InvalidArgument,
            new("88.101.5/G-ZERO"),
        ),
        grpc_case(
            "U+0001 in the suffix",
            create_of("88.101.5/G-\u{1}", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "line feed in the suffix",
            create_of("88.101.5/G-\n", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "DEL in the suffix",
            create_of("88.101.5/G-\u{7f}", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "C1 control U+0085 in the suffix",
            create_of("88.101.5/G-\u{85}", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "control character in a value type",
            create_of("88.101.5/G-TYPE", vec![text(1, "U\u{1}RL", "u")]),
            InvalidArgument,
            new("88.101.5/G-TYPE"),
        ),
        grpc_case(
            "value type of 129 bytes",
            create_of("88.101.5/G-TLONG", vec![text(1, &"t".repeat(129), "u")]),
            InvalidArgument,
            new("88.101.5/G-TLONG"),
        ),
        grpc_case(
            "empty value type",
            create_of("88.101.5/G-TEMPTY", vec![text(1, "", "u")]),
            InvalidArgument,
            new("88.101.5/G-TEMPTY"),
        ),
        grpc_case(
            "empty identifier",
            create_of("", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "identifier without '/'",
            create_of("88.101.5", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "empty suffix",
            create_of("88.101.5/", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "empty prefix",
            create_of("/G", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "'_' in a prefix segment",
            create_of("88.101.5_1/G", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "doubled '.' in the prefix",
            create_of("88.101..5/G", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "no values",
            create_of("88.101.5/G-EMPTY", vec![]),
            InvalidArgument,
            new("88.101.5/G-EMPTY"),
        ),
        grpc_case(
            "no record",
            Call::Create(pb::CreateRequest { record: None }),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "string value holding invalid UTF-8",
            create_of(
                "88.101.5/G-UTF8",
                vec![value(1, "URL", vec![0xC3, 0x28], pb::Format::String)],
            ),
            InvalidArgument,
            new("88.101.5/G-UTF8"),
        ),
        grpc_case(
            "json value that is not JSON",
            create_of(
                "88.101.5/G-JSON",
                vec![value(1, "meta", b"{\"a\":".to_vec(), pb::Format::Json)],
            ),
            InvalidArgument,
            new("88.101.5/G-JSON"),
        ),
        grpc_case(
            "unknown value format",
            create_of("88.101.5/G-FMT", vec![bad_format]),
            InvalidArgument,
            new("88.101.5/G-FMT"),
        ),
        grpc_case(
            "unknown classification",
            create_of("88.101.5/G-CLASS", vec![bad_class]),
            InvalidArgument,
            new("88.101.5/G-CLASS"),
        ),
        grpc_case(
            "65 references",
            create_of("88.101.5/G-REFS", vec![reference]),
            InvalidArgument,
            new("88.101.5/G-REFS"),
        ),
        grpc_case(
            "reference to a malformed identifier",
            create_of("88.101.5/G-REF", vec![bad_reference]),
            InvalidArgument,
            new("88.101.5/G-REF"),
        ),
        grpc_case(
            "another enterprise's prefix",
            create_of("88.101.8/G-THEIRS", url()),
            PermissionDenied,
            new("88.101.8/G-THEIRS"),
        ),
        grpc_case(
            "a prefix outside the node",
            create_of("99.1/G-AWAY", url()),
            PermissionDenied,
            Target::Nothing,
        ),
        GrpcCase {
            who: Who::Anonymous,
            ..grpc_case(
                "no token",
                create_of("88.101.5/G-ANON", url()),
                Unauthenticated,
                new("88.101.5/G-ANON"),
            )
        },
        GrpcCase {
            who: Who::Forged,
            ..grpc_case(
                "a forged token",
                create_of("88.101.5/G-FORGED", url()),
                Unauthenticated,
                new("88.101.5/G-FORGED"),
            )
        },
        grpc_case(
            "replace the seeded record with duplicate indexes",
            Call::Update(replace(
                SEEDED,
                vec![text(1, "URL", "a"), text(1, "URL", "b")],
            )),
            InvalidArgument,
            Target::Seeded,
        ),
        grpc_case(
            "replace the seeded record with 1025 values",
            Call::Update(replace(SEEDED, many(1025))),
            ResourceExhausted,
            Target::Seeded,
        ),
        grpc_case(
            "edit the seeded record: a good value and an over-long one",
            Call::Update(edit(
                SEEDED,
                vec![
                    text(50, "note", "fine"),
                    value(51, "blob", too_long_data(), pb::Format::Binary),
                ],
                vec![],
            )),
            InvalidArgument,
            Target::Seeded,
        ),
        grpc_case(
            "edit the seeded record: control character in a type",
            Call::Update(edit(SEEDED, vec![], vec![text(1, "U\u{0}RL", "x")])),
            InvalidArgument,
            Target::Seeded,
        ),
        grpc_case(
            "update without a change",
            Call::Update(pb::UpdateRequest {
                identifier: SEEDED.into(),
                change: None,
            }),
            InvalidArgument,
            Target::Seeded,
        ),
        grpc_case(
            "update of an identifier of 256 bytes",
            Call::Update(replace(&long_id, url())),
            InvalidArgument,
            Target::Nothing,
        ),
    ]
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

#[tokio::test]
async fn grpc_rejects_every_bad_request_with_its_code_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = small_limits_node(dir.path(), Duration::from_millis(800)).await;
    let owner = node.seed_token(OWNER);
    let before = snapshot(&node).await;
    let mut failures = Vec::new();
    for case in grpc_table() {
        let mut client = match case.who {
            Who::Owner => node.registry(Some(&owner)),
            Who::Anonymous => node.registry(None),
            Who::Forged => node.registry(Some("idn_0000000000000000_forged")),
        };
        let result = match case.call {
            Call::Create(r) => client.create(r).await.map(|_| ()),
            Call::Update(r) => client.update(r).await.map(|_| ()),
        };
        match result {
            Err(e) if e.code() == case.code => {
                assert!(!e.message().is_empty(), "{}: a message says why", case.name);
            }
            other => failures.push(format!(
                "{}: expected {:?}, got {other:?}",
                case.name, case.code
            )),
        }
        assert_absent(&node, &case.target, case.name).await;
        assert_grpc_serves(&node, case.name).await;
    }
    assert_eq!(
        snapshot(&node).await,
        before,
        "the gRPC table wrote something"
    );

    // What typed clients cannot send: raw gRPC frames on the same HTTP/2 transport.
    let create_path = "/idnode.v1.Registry/Create";
    let good = create(record("88.101.5/G-RAW", url())).encode_to_vec();
    let mut truncated = good.clone();
    truncated.pop();
    let oversized = create(record(
        "88.101.5/G-BIG",
        vec![value(1, "blob", vec![b'x'; 3 << 20], pb::Format::Binary)],
    ))
    .encode_to_vec();
    // CreateRequest { record: Record { identifier: <0xC3 0x28> } }
    let bad_utf8 = vec![0x0a, 0x04, 0x0a, 0x02, 0xC3, 0x28];
    // A record whose length-delimited field claims 2 GiB and carries 3 bytes.
    let mut huge_field = vec![0x0a];
    huge_field.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    huge_field.extend_from_slice(b"abc");
    // Unknown field 15 as 200 nested groups: decoders must not recurse without bound.
    let mut nested = vec![0x7b; 200];
    nested.extend(std::iter::repeat_n(0x7c, 200));
    let mut frame_4gib = vec![0, 0xff, 0xff, 0xff, 0xff];
    frame_4gib.extend_from_slice(&[0; 10]);
    let mut frame_short = vec![0, 0, 0, 0, 100];
    frame_short.extend_from_slice(&[0x0a; 10]);
    let owner_auth = format!("Bearer {owner}").into_bytes();
    // (case, method path, authorization header, request body, expected code)
    let raw: Vec<RawCase> = vec![
        (
            "not protobuf",
            create_path,
            Some(owner_auth.clone()),
            frame(0, &[0xff, 0xff, 0xff]),
            Code::Internal,
        ),
        (
            "invalid UTF-8 in a string field",
            create_path,
            Some(owner_auth.clone()),
            frame(0, &bad_utf8),
            Code::Internal,
        ),
        (
            "invalid UTF-8 in a Resolve identifier",
            "/idnode.v1.Resolver/Resolve",
            None,
            frame(0, &[0x0a, 0x02, 0xC3, 0x28]),
            Code::Internal,
        ),
        (
            "protobuf cut one byte short",
            create_path,
            Some(owner_auth.clone()),
            frame(0, &truncated),
            Code::Internal,
        ),
        (
            "a field claiming 2 GiB",
            create_path,
            Some(owner_auth.clone()),
            frame(0, &huge_field),
            Code::Internal,
        ),
        (
            "wrong wire type for the record",
            create_path,
            Some(owner_auth.clone()),
            frame(0, &[0x08, 0x01]),
            Code::Internal,
        ),
        (
            "200 nested groups",
            create_path,
            Some(owner_auth.clone()),
            frame(0, &nested),
            Code::Internal,
        ),
        (
            "compressed flag without grpc-encoding",
            create_path,
            Some(owner_auth.clone()),
            frame(1, &good),
            Code::Internal,
        ),
        (
            "frame header cut short",
            create_path,
            Some(owner_auth.clone()),
            vec![0, 0, 0],
            Code::Internal,
        ),
        (
            "frame shorter than its length prefix",
            create_path,
            Some(owner_auth.clone()),
            frame_short,
            Code::Internal,
        ),
        (
            "frame length prefix of 4 GiB",
            create_path,
            Some(owner_auth.clone()),
            frame_4gib,
            Code::ResourceExhausted,
        ),
        (
            "message of 3 MiB over a 2 MiB limit",
            create_path,
            Some(owner_auth.clone()),
            frame(0, &oversized),
            Code::ResourceExhausted,
        ),
        (
            "non-ASCII bytes in the authorization header",
            create_path,
            Some(b"Bearer \xC3\x28".to_vec()),
            frame(0, &good),
            Code::Unauthenticated,
        ),
        (
            "authorization that is not Bearer",
            create_path,
            Some(b"Token abc".to_vec()),
            frame(0, &good),
            Code::Unauthenticated,
        ),
        (
            "unknown method",
            "/idnode.v1.Registry/Nope",
            Some(owner_auth.clone()),
            frame(0, &good),
            Code::Unimplemented,
        ),
    ];
    for (name, path, auth, body, expected) in raw {
        let got = raw_grpc(
            node.channel(),
            node.addr,
            path,
            auth.as_deref(),
            axum::body::Body::from(body),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        if got.code() != expected {
            failures.push(format!(
                "{name}: expected {expected:?}, got {:?} ({})",
                got.code(),
                got.message()
            ));
        }
        assert_grpc_serves(&node, name).await;
    }
    for id in ["88.101.5/G-RAW", "88.101.5/G-BIG"] {
        assert_absent(&node, &new(id), "raw gRPC").await;
    }
    assert_eq!(
        snapshot(&node).await,
        before,
        "a raw gRPC case wrote something"
    );
    assert!(failures.is_empty(), "gRPC:\n{}", failures.join("\n"));
}

/// A hand-made gRPC request: case, method path, authorization header, body, expected code.
type RawCase = (&'static str, &'static str, Option<Vec<u8>>, Vec<u8>, Code);

/// One gRPC message frame: compressed flag, big-endian length, payload.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.push(flag);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Sends one hand-made gRPC request and returns the status the server ended it with
/// (from the headers of a trailers-only answer, or from the trailers).
async fn raw_grpc(
    mut channel: Channel,
    addr: SocketAddr,
    path: &str,
    authorization: Option<&[u8]>,
    body: axum::body::Body,
) -> Result<tonic::Status, String> {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(a) = authorization {
        req = req.header(
            "authorization",
            http::HeaderValue::from_bytes(a).map_err(|e| e.to_string())?,
        );
    }
    let req = req
        .body(tonic::body::Body::new(body))
        .map_err(|e| e.to_string())?;
    let exchange = async move {
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(|e| e.to_string())?;
        let resp = channel.call(req).await.map_err(|e| e.to_string())?;
        if let Some(status) = tonic::Status::from_header_map(resp.headers()) {
            return Ok(status);
        }
        let mut body = resp.into_body();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| format!("response body: {e:?}"))?;
            if let Some(status) = frame
                .trailers_ref()
                .and_then(tonic::Status::from_header_map)
            {
                return Ok(status);
            }
        }
        Err("the response ended without a grpc-status".to_owned())
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .map_err(|_| "no answer in time".to_owned())?
}

// ---------------------------------------------------------------------------------------
// HTTP.

/// What an HTTP error body must say.
#[derive(Debug, Clone, Copy)]
enum Handle {
    /// Handle JSON with this `responseCode`.
    Is(i64),
    /// Handle JSON with some `responseCode` (none is defined for the case).
    AnyCode,
    /// The request never reached the API (hyper refused the bytes): the status only.
    Transport,
}

struct HttpCase {
    name: &'static str,
    head: Vec<u8>,
    body: Vec<u8>,
    status: u16,
    handle: Handle,
    target: Target,
}

/// A request head with `Connection: close` and the given extra header lines.
fn head(method: &str, path: &str, lines: &[&[u8]]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n").into_bytes();
    for l in lines {
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn bearer(token: &str) -> Vec<u8> {
    format!("Authorization: Bearer {token}").into_bytes()
}

fn length(n: usize) -> Vec<u8> {
    format!("Content-Length: {n}").into_bytes()
}

const JSON: &[u8] = b"Content-Type: application/json";

/// A PUT of `body` as JSON with the token.
fn put(path: &str, token: &str, body: impl Into<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    let body = body.into();
    (
        head("PUT", path, &[&bearer(token), JSON, &length(body.len())]),
        body,
    )
}

fn json_values(values: impl Iterator<Item = serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "values": values.collect::<Vec<_>>() })).unwrap()
}

fn http_case(
    name: &'static str,
    (head, body): (Vec<u8>, Vec<u8>),
    status: u16,
    handle: Handle,
    target: Target,
) -> HttpCase {
    HttpCase {
        name,
        head,
        body,
        status,
        handle,
        target,
    }
}

fn http_table(owner: &str) -> Vec<HttpCase> {
    use serde_json::json;
    use Handle::{AnyCode, Is, Transport};
    let one = |i: u64| json!({"index": i, "type": "URL", "data": "https://e.cn/h"});
    let good = json_values([one(1)].into_iter());
    let long_id = format!("{OWNER}/{}", "x".repeat(256 - OWNER.len() - 1));
    let big = vec![b' '; (4 << 20) + 1024];
    let mut chunked = b"100000\r\n".to_vec();
    chunked.extend_from_slice(&vec![b' '; 0x100000]);
    chunked.extend_from_slice(b"\r\n");
    let chunked = chunked.repeat(5);
    let mut bad_utf8 = br#"{"values":[{"index":1,"type":"URL","data":""#.to_vec();
    bad_utf8.extend_from_slice(&[0xC3, 0x28]);
    bad_utf8.extend_from_slice(br#""}]}"#);
    vec![
        http_case(
            "malformed JSON",
            put("/api/handles/88.101.5/H-SYNTAX", owner, "{\"values\": ["),
            400,
            Is(4),
            new("88.101.5/H-SYNTAX"),
        ),
        http_case(
            "values that are a number",
            put("/api/handles/88.101.5/H-SHAPE", owner, r#"{"values": 5}"#),
            400,
            Is(4),
            new("88.101.5/H-SHAPE"),
        ),
        http_case(
            "a body that is a string",
            put("/api/handles/88.101.5/H-STR", owner, r#""x""#),
            400,
            Is(4),
            new("88.101.5/H-STR"),
        ),
        http_case(
            "an index that is not a number",
            put(
                "/api/handles/88.101.5/H-IDX",
                owner,
                r#"[{"index": "one", "type": "URL", "data": "u"}]"#,
            ),
            400,
            Is(4),
            new("88.101.5/H-IDX"),
        ),
        http_case(
            "invalid UTF-8 in the body",
            put("/api/handles/88.101.5/H-UTF8", owner, bad_utf8),
            400,
            Is(4),
            new("88.101.5/H-UTF8"),
        ),
        http_case(
            "JSON nested 100,000 deep",
            put("/api/handles/88.101.5/H-DEEP", owner, "[".repeat(100_000)),
            400,
            Is(4),
            new("88.101.5/H-DEEP"),
        ),
        http_case(
            "an empty body",
            put("/api/handles/88.101.5/H-EMPTY", owner, ""),
            400,
            Is(4),
            new("88.101.5/H-EMPTY"),
        ),
        http_case(
            "a text/plain body",
            (
                head(
                    "PUT",
                    "/api/handles/88.101.5/H-TEXT",
                    &[
                        &bearer(owner),
                        b"Content-Type: text/plain",
                        &length(good.len()),
                    ],
                ),
                good.clone(),
            ),
            400,
            Is(4),
            new("88.101.5/H-TEXT"),
        ),
        http_case(
            "a body naming another handle",
            put(
                "/api/handles/88.101.5/H-OTHER",
                owner,
                r#"{"handle": "88.101.5/ELSE", "values": [{"index": 1, "type": "URL", "data": "u"}]}"#,
            ),
            400,
            Is(4),
            new("88.101.5/H-OTHER"),
        ),
        http_case(
            "identifier of 256 bytes in the path",
            put(&format!("/api/handles/{long_id}"), owner, good.clone()),
            400,
            Is(102),
            Target::Nothing,
        ),
        http_case(
            "prefix of 65 bytes in the path",
            put(
                &format!("/api/handles/{}/H", long_prefix()),
                owner,
                good.clone(),
            ),
            400,
            Is(102),
            Target::Nothing,
        ),
        http_case(
            "%01 in the path",
            put("/api/handles/88.101.5/H-%01", owner, good.clone()),
            400,
            Is(102),
            Target::Nothing,
        ),
        http_case(
            "%0A in the path",
            put("/api/handles/88.101.5/H-%0A", owner, good.clone()),
            400,
            Is(102),
            Target::Nothing,
        ),
        http_case(
            "invalid UTF-8 (%C3%28) in the path",
            put("/api/handles/88.101.5/H-%C3%28", owner, good.clone()),
            400,
            Is(102),
            Target::Nothing,
        ),
        http_case(
            "1025 values",
            put(
                "/api/handles/88.101.5/H-MANY",
                owner,
                json_values((1..=1025).map(one)),
            ),
            413,
            Is(202),
            new("88.101.5/H-MANY"),
        ),
        http_case(
            "record over 1 MiB",
            put(
                "/api/handles/88.101.5/H-HEAVY",
                owner,
                json_values(
                    (1..=17).map(
                        |i| json!({"index": i, "type": "blob", "data": "x".repeat(64 * 1024)}),
                    ),
                ),
            ),
            413,
            Is(202),
            new("88.101.5/H-HEAVY"),
        ),
        http_case(
            "value data of 64 KiB + 1",
            put(
                "/api/handles/88.101.5/H-DATA",
                owner,
                json_values(
                    [json!({"index": 1, "type": "blob", "data": "x".repeat(64 * 1024 + 1)})]
                        .into_iter(),
                ),
            ),
            400,
            Is(202),
            new("88.101.5/H-DATA"),
        ),
        http_case(
            "duplicate value indexes",
            put(
                "/api/handles/88.101.5/H-DUP",
                owner,
                json_values([one(1), one(1)].into_iter()),
            ),
            400,
            Is(202),
            new("88.101.5/H-DUP"),
        ),
        http_case(
            "value index 0",
            put(
                "/api/handles/88.101.5/H-ZERO",
                owner,
                json_values([one(0)].into_iter()),
            ),
            400,
            Is(202),
            new("88.101.5/H-ZERO"),
        ),
        http_case(
            "control character in a value type",
            put(
                "/api/handles/88.101.5/H-TYPE",
                owner,
                r#"[{"index": 1, "type": "U\u0001RL", "data": "u"}]"#,
            ),
            400,
            Is(202),
            new("88.101.5/H-TYPE"),
        ),
        http_case(
            "no credentials",
            (
                head(
                    "PUT",
                    "/api/handles/88.101.5/H-ANON",
                    &[JSON, &length(good.len())],
                ),
                good.clone(),
            ),
            401,
            Is(402),
            new("88.101.5/H-ANON"),
        ),
        http_case(
            "a forged token",
            put(
                "/api/handles/88.101.5/H-FORGED",
                "idn_0000000000000000_forged",
                good.clone(),
            ),
            401,
            Is(402),
            new("88.101.5/H-FORGED"),
        ),
        http_case(
            "non-ASCII bytes in Authorization",
            (
                head(
                    "PUT",
                    "/api/handles/88.101.5/H-AUTH",
                    &[b"Authorization: Bearer \xC3\x28", JSON, &length(good.len())],
                ),
                good.clone(),
            ),
            401,
            Is(402),
            new("88.101.5/H-AUTH"),
        ),
        http_case(
            "another enterprise's prefix",
            put("/api/handles/88.101.8/H-THEIRS", owner, good.clone()),
            403,
            Is(401),
            new("88.101.8/H-THEIRS"),
        ),
        http_case(
            "replace the seeded record with duplicate indexes",
            put(
                &format!("/api/handles/{SEEDED}"),
                owner,
                json_values([one(1), one(1)].into_iter()),
            ),
            400,
            Is(202),
            Target::Seeded,
        ),
        http_case(
            "index=2 on the seeded record with data of 64 KiB + 1",
            put(
                &format!("/api/handles/{SEEDED}?index=2"),
                owner,
                json_values(
                    [json!({"index": 2, "type": "blob", "data": "x".repeat(64 * 1024 + 1)})]
                        .into_iter(),
                ),
            ),
            400,
            Is(202),
            Target::Seeded,
        ),
        http_case(
            "index=abc",
            put("/api/handles/88.101.5/H-Q?index=abc", owner, good.clone()),
            400,
            Is(4),
            new("88.101.5/H-Q"),
        ),
        http_case(
            "GET of an identifier of 256 bytes",
            (head("GET", &format!("/api/handles/{long_id}"), &[]), vec![]),
            400,
            Is(102),
            Target::Nothing,
        ),
        http_case(
            "body over 4 MiB",
            put("/api/handles/88.101.5/H-BIG", owner, big),
            413,
            AnyCode,
            new("88.101.5/H-BIG"),
        ),
        http_case(
            "chunked body over 4 MiB",
            (
                head(
                    "PUT",
                    "/api/handles/88.101.5/H-CHUNKED",
                    &[&bearer(owner), JSON, b"Transfer-Encoding: chunked"],
                ),
                chunked,
            ),
            413,
            AnyCode,
            new("88.101.5/H-CHUNKED"),
        ),
        http_case(
            "Content-Length of 1 GiB (5 MiB sent)",
            (
                head(
                    "PUT",
                    "/api/handles/88.101.5/H-GIB",
                    &[&bearer(owner), JSON, &length(1 << 30)],
                ),
                vec![b' '; 5 << 20],
            ),
            413,
            AnyCode,
            new("88.101.5/H-GIB"),
        ),
        http_case(
            "POST to a handle",
            (
                head(
                    "POST",
                    "/api/handles/88.101.5/H-POST",
                    &[&bearer(owner), JSON, &length(good.len())],
                ),
                good.clone(),
            ),
            405,
            AnyCode,
            new("88.101.5/H-POST"),
        ),
        http_case(
            "garbage request line",
            (b"\x00\x01GARBAGE\xff\r\n\r\n".to_vec(), vec![]),
            400,
            Transport,
            Target::Nothing,
        ),
        http_case(
            "header block of 1 MiB",
            (
                head(
                    "GET",
                    &format!("/api/handles/{SEEDED}"),
                    &[format!("X-Filler: {}", "a".repeat(1 << 20)).as_bytes()],
                ),
                vec![],
            ),
            431,
            Transport,
            Target::Nothing,
        ),
    ]
}

/// A parsed HTTP/1.1 answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Writes `head` and `body` on a new connection while reading the answer (a server may
/// answer before the body is sent, e.g. 413), bounded by `WAIT`.
async fn http_exchange(addr: SocketAddr, head: Vec<u8>, body: Vec<u8>) -> Result<Reply, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut r, mut w) = stream.into_split();
    // The writer keeps its half open until dropped with the task: closing it early would
    // end a body the server is still counting.
    let writer = tokio::spawn(async move {
        if w.write_all(&head).await.is_err() {
            return w;
        }
        for chunk in body.chunks(64 * 1024) {
            if w.write_all(chunk).await.is_err() {
                break;
            }
        }
        w
    });
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = r.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(format!("closed before a full head: {buf:?}"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let text = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line: {text}"))?;
        let header = |name: &str| {
            text.split("\r\n").find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let content_type = header("content-type");
        let want = header("content-length").and_then(|v| v.parse::<usize>().ok());
        let mut body = buf[end..].to_vec();
        while want.is_none_or(|w| body.len() < w) {
            match r.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                // Some bytes of the body were read: a reset after them loses nothing we use.
                Err(_) if want.is_none() => break,
                Err(e) => return Err(format!("reading the body: {e}")),
            }
        }
        Ok(Reply {
            status,
            content_type,
            body,
        })
    };
    let reply = tokio::time::timeout(WAIT, read)
        .await
        .map_err(|_| "no answer in time".to_owned())?;
    writer.abort();
    reply
}

async fn assert_http_serves(addr: SocketAddr, case: &str) {
    let r = http_exchange(
        addr,
        head("GET", &format!("/api/handles/{SEEDED}"), &[]),
        vec![],
    )
    .await
    .unwrap_or_else(|e| panic!("after {case}: GET failed: {e}"));
    assert_eq!(r.status, 200, "after {case}");
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["responseCode"], 1, "after {case}");
}

#[tokio::test]
async fn http_rejects_every_bad_request_with_its_status_and_writes_nothing() {
    let node = TestNode::start().await;
    let addr = node.http_addr.unwrap();
    let owner = node.seed_token(OWNER);
    let before = snapshot(&node).await;
    let mut failures = Vec::new();
    for case in http_table(&owner) {
        let r = http_exchange(addr, case.head, case.body)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let json: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
        let code = json.as_ref().and_then(|j| j["responseCode"].as_i64());
        let is_json = r.content_type.as_deref() == Some("application/json");
        let ok = r.status == case.status
            && match case.handle {
                Handle::Is(c) => is_json && code == Some(c),
                Handle::AnyCode => is_json && code.is_some(),
                Handle::Transport => true,
            };
        if !ok {
            failures.push(format!(
                "{}: expected {} {:?}, got {} {:?} {:?}",
                case.name,
                case.status,
                case.handle,
                r.status,
                r.content_type,
                String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
            ));
        }
        assert_absent(&node, &case.target, case.name).await;
        assert_http_serves(addr, case.name).await;
    }
    assert_eq!(
        snapshot(&node).await,
        before,
        "the HTTP table wrote something"
    );
    assert!(failures.is_empty(), "HTTP:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// DNS.

fn zone() -> Name {
    Name::from_ascii("id.example.").unwrap()
}

fn query(id: u16, name: Name, qtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name, qtype));
    m
}

fn seeded_name() -> Name {
    naming::encode(&Identifier::parse(SEEDED).unwrap(), &zone()).unwrap()
}

/// A DNS header: id, flags, then the four section counts.
fn dns_header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut out = id.to_be_bytes().to_vec();
    out.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out
}

/// A TXT query for the seeded identifier, changed by `change`.
fn tweaked(id: u16, change: impl FnOnce(&mut Message)) -> Vec<u8> {
    let mut m = query(id, seeded_name(), RecordType::TXT);
    change(&mut m);
    m.to_vec().unwrap()
}

/// What a bad DNS packet must get back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dns {
    /// No answer at all (too short to carry an id, or not a query).
    Silence,
    /// An answer with the request's id and this RCODE.
    Rcode(ResponseCode),
}

/// Id of the good query sent after every case; no bad packet uses it.
const PROBE: u16 = 0xBEEF;

fn dns_table() -> Vec<(String, Vec<u8>, Dns)> {
    let good = query(0x1111, seeded_name(), RecordType::TXT)
        .to_vec()
        .unwrap();
    let question = |id: u16, name: &[u8]| {
        let mut p = dns_header(id, 0x0100, [1, 0, 0, 0]);
        p.extend_from_slice(name);
        p.extend_from_slice(&[0, 16, 0, 1]); // TXT, IN
        p
    };
    // A name under the zone: the given first label, then `_.5.101.88.id.example.`
    let under = |label: &[u8]| {
        let mut n = vec![label.len() as u8];
        n.extend_from_slice(label);
        n.extend_from_slice(b"\x01_\x015\x03101\x0288\x02id\x07example\x00");
        n
    };
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(63);
        long_name.extend_from_slice(&[b'a'; 63]);
    }
    long_name.push(0);
    let mut filler = dns_header(0x2222, 0x0100, [1, 0, 0, 0]);
    filler.extend_from_slice(&[0xff; 9]);
    let mut jumbo = dns_header(0x2323, 0x0100, [1, 0, 0, 0]);
    jumbo.resize(65_000, 0xff);
    let mut opcode15 = good.clone();
    opcode15[0..2].copy_from_slice(&0x3333u16.to_be_bytes());
    opcode15[2] = (opcode15[2] & 0x87) | (15 << 3);

    let mut cases: Vec<(String, Vec<u8>, Dns)> =
        vec![("empty datagram".into(), vec![], Dns::Silence)];
    for n in 1..12 {
        cases.push((
            format!("the first {n} bytes of a query"),
            good[..n].to_vec(),
            Dns::Silence,
        ));
    }
    let formerr = Dns::Rcode(ResponseCode::FormErr);
    cases.extend([
        (
            "header claiming 5 questions, none present".into(),
            dns_header(0x0101, 0x0100, [5, 0, 0, 0]),
            formerr,
        ),
        (
            "header without a question".into(),
            dns_header(0x0202, 0x0100, [0, 0, 0, 0]),
            formerr,
        ),
        (
            "two questions".into(),
            tweaked(0x0303, |m| {
                m.add_query(Query::query(zone(), RecordType::SOA));
            }),
            formerr,
        ),
        (
            "label running past the end".into(),
            {
                let mut p = dns_header(0x0404, 0x0100, [1, 0, 0, 0]);
                p.extend_from_slice(&[63, b'a', b'b', b'c']);
                p
            },
            formerr,
        ),
        (
            "compression pointer to itself".into(),
            question(0x0505, &[0xC0, 0x0C]),
            formerr,
        ),
        (
            "reserved label type 0x40".into(),
            question(0x0606, &[0x41, b'a', 0]),
            formerr,
        ),
        (
            "name of 321 bytes".into(),
            question(0x0707, &long_name),
            formerr,
        ),
        (
            "question without type and class".into(),
            {
                let mut p = dns_header(0x0808, 0x0100, [1, 0, 0, 0]);
                p.push(0);
                p
            },
            formerr,
        ),
        ("0xff after a header".into(), filler, formerr),
        ("65,000-byte datagram".into(), jumbo, formerr),
        (
            "a response (QR=1)".into(),
            tweaked(0x0909, |m| m.metadata.message_type = MessageType::Response),
            Dns::Silence,
        ),
        (
            "a response that does not parse".into(),
            dns_header(0x0a0a, 0x8000, [5, 0, 0, 0]),
            Dns::Silence,
        ),
        (
            "opcode STATUS".into(),
            tweaked(0x0b0b, |m| m.metadata.op_code = OpCode::Status),
            Dns::Rcode(ResponseCode::NotImp),
        ),
        (
            "opcode UPDATE".into(),
            tweaked(0x0c0c, |m| m.metadata.op_code = OpCode::Update),
            Dns::Rcode(ResponseCode::NotImp),
        ),
        (
            "opcode 15 (unassigned)".into(),
            opcode15,
            Dns::Rcode(ResponseCode::NotImp),
        ),
        (
            "a name outside the zone".into(),
            query(
                0x0d0d,
                Name::from_ascii("example.com.").unwrap(),
                RecordType::TXT,
            )
            .to_vec()
            .unwrap(),
            Dns::Rcode(ResponseCode::Refused),
        ),
        (
            "class CH".into(),
            tweaked(0x0e0e, |m| {
                m.queries[0].set_query_class(DNSClass::CH);
            }),
            Dns::Rcode(ResponseCode::Refused),
        ),
        (
            "an escaped control character in the suffix".into(),
            question(0x0f0f, &under(b"_01")),
            Dns::Rcode(ResponseCode::NXDomain),
        ),
        (
            "escaped invalid UTF-8 in the suffix".into(),
            question(0x1010, &under(b"_c3_28")),
            Dns::Rcode(ResponseCode::NXDomain),
        ),
        (
            "raw invalid UTF-8 bytes in a label".into(),
            question(0x1212, &under(&[0xC3, 0x28])),
            Dns::Rcode(ResponseCode::NXDomain),
        ),
        (
            "raw control bytes in a label".into(),
            question(0x1313, &under(&[0x01, 0x0a])),
            Dns::Rcode(ResponseCode::NXDomain),
        ),
    ]);
    cases
}

/// Receives one datagram within `wait`.
async fn recv(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65_535];
    match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// The seeded identifier's TXT answer is a NOERROR with answers.
fn assert_probe_answer(m: &Message, case: &str) {
    assert_eq!(m.metadata.id, PROBE, "{case}");
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "after {case}"
    );
    assert!(!m.answers.is_empty(), "after {case}");
}

/// Sends `bad` then a good query from one socket; returns the answer to `bad`, if any,
/// after checking the good one came back and waiting `linger` more for a late answer.
async fn udp_case(addr: SocketAddr, bad: &[u8], linger: Duration, case: &str) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(addr).await.unwrap();
    socket.send(bad).await.unwrap();
    // Several receive loops share the server's socket: answers may come in either order.
    let probe = query(PROBE, seeded_name(), RecordType::TXT)
        .to_vec()
        .unwrap();
    socket.send(&probe).await.unwrap();
    let (mut answer, mut probed) = (None, false);
    while let Some(bytes) = recv(&socket, if probed { linger } else { WAIT }).await {
        let m = Message::from_vec(&bytes)
            .unwrap_or_else(|e| panic!("{case}: the node sent an unparsable answer: {e}"));
        assert_eq!(m.metadata.message_type, MessageType::Response, "{case}");
        if m.metadata.id == PROBE && !probed {
            assert_probe_answer(&m, case);
            probed = true;
        } else {
            assert!(answer.is_none(), "{case}: a second answer {m:?}");
            answer = Some(m);
        }
        if probed && answer.is_some() {
            break;
        }
    }
    assert!(probed, "{case}: the node stopped answering over UDP");
    answer
}

/// Writes one RFC 7766 frame.
async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) {
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
}

/// Reads one RFC 7766 frame within `WAIT`.
async fn read_frame(stream: &mut TcpStream, case: &str) -> Message {
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let bytes = tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("{case}: no DNS answer over TCP in time"))
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    Message::from_vec(&bytes).unwrap()
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

/// A deterministic xorshift generator for garbage packets.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn dns_answers_bad_packets_with_their_rcode_or_silence_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = small_limits_node(dir.path(), Duration::from_millis(800)).await;
    let addr = node.dns_addr.unwrap();
    let before = snapshot(&node).await;

    let mut failures = Vec::new();
    for (name, bad, expected) in dns_table() {
        let answer = udp_case(addr, &bad, Duration::from_millis(200), &name).await;
        let got = match &answer {
            None => Dns::Silence,
            Some(m) => {
                assert_eq!(
                    m.metadata.id,
                    u16::from_be_bytes([bad[0], bad[1]]),
                    "{name}: the answer carries the request's id"
                );
                Dns::Rcode(m.metadata.response_code)
            }
        };
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }

    // Garbage: whatever a random packet parses as, an answer (if any) is a response with
    // the packet's id, never an answer to a packet that claims to be a response.
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    for i in 0..200 {
        let len = 12 + (rng.next() % 500) as usize;
        let mut bad: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        bad[0..2].copy_from_slice(&(i as u16).to_be_bytes());
        let case = format!("random packet {i}: {bad:02x?}");
        if let Some(m) = udp_case(addr, &bad, Duration::from_millis(50), &case).await {
            assert_eq!(m.metadata.id, i as u16, "{case}");
            assert_eq!(bad[2] & 0x80, 0, "{case}: a response was answered");
        }
    }

    // TCP: one connection survives packets that get no answer; bad framing ends only the
    // connection that sent it.
    let probe = query(PROBE, seeded_name(), RecordType::TXT)
        .to_vec()
        .unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut garbage = dns_header(0x4444, 0x0100, [1, 0, 0, 0]);
    garbage.extend_from_slice(&[0xff; 28]);
    let response = {
        let mut m = query(0x4545, seeded_name(), RecordType::TXT);
        m.metadata.message_type = MessageType::Response;
        m.to_vec().unwrap()
    };
    for (name, bad, expected) in [
        ("a frame of length 0", vec![], Dns::Silence),
        ("a 9-byte frame", vec![7; 9], Dns::Silence),
        ("a framed response", response, Dns::Silence),
        (
            "a framed 0xff filler",
            garbage,
            Dns::Rcode(ResponseCode::FormErr),
        ),
    ] {
        write_frame(&mut stream, &bad).await;
        write_frame(&mut stream, &probe).await;
        let first = read_frame(&mut stream, name).await;
        let got = if first.metadata.id == PROBE {
            Dns::Silence
        } else {
            assert_probe_answer(&read_frame(&mut stream, name).await, name);
            Dns::Rcode(first.metadata.response_code)
        };
        if got == Dns::Silence {
            assert_probe_answer(&first, name);
        }
        if got != expected {
            failures.push(format!("TCP {name}: expected {expected:?}, got {got:?}"));
        }
    }
    drop(stream);

    // A length prefix of 65535, then the client leaves.
    let mut gone = TcpStream::connect(addr).await.unwrap();
    gone.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    drop(gone);
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut fresh, &probe).await;
    assert_probe_answer(
        &read_frame(&mut fresh, "after a vanished client").await,
        "TCP",
    );

    // Idle and half-sent connections are closed after the idle timeout (800 ms here).
    let bound = Duration::from_secs(4);
    for (name, sent) in [
        ("an idle connection", vec![]),
        ("half a length prefix", vec![0x00]),
        (
            "a length prefix of 65535 and 3 bytes",
            vec![0xff, 0xff, 1, 2, 3],
        ),
        ("a length prefix of 40 and 12 bytes", {
            let mut p = vec![0, 40];
            p.extend_from_slice(&probe[..12]);
            p
        }),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&sent).await.unwrap();
        match closed_within(&mut s, bound).await {
            Some(after) => assert!(
                after >= Duration::from_millis(500),
                "{name}: closed after {after:?}, before the idle time"
            ),
            None => failures.push(format!("TCP {name}: still open after {bound:?}")),
        }
    }
    // And the listener still serves.
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    write_frame(&mut fresh, &probe).await;
    assert_probe_answer(&read_frame(&mut fresh, "after idle clients").await, "TCP");

    assert_eq!(snapshot(&node).await, before, "DNS changed the store");
    assert!(failures.is_empty(), "DNS:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Idle and half-open connections, in process.

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
                "/idnode.v1.Registry/Create",
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

// ---------------------------------------------------------------------------------------
// A BatchCreate stream far larger than the node may buffer, on the real binary so the
// resident set measured is the node's alone.

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
    if i % PER_MESSAGE == 0 {
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
                .node_total
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
        pb::BatchCreateRequest {
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
    .batch_create(requests)
    .await
    .unwrap()
    .into_inner();
    let (mut seen, mut created) = (0usize, 0i64);
    while let Some(resp) = tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("a BatchCreate answer in time")
        .unwrap()
    {
        for r in resp.results {
            let i = r.position as usize;
            assert_eq!(i, seen, "results in stream order");
            seen += 1;
            let (rec, code) = stream_record(i);
            assert_eq!(r.identifier, rec.identifier);
            assert_eq!(Code::from_i32(r.code), code, "item {i}: {}", r.message);
            created += r.created as i64;
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
        "BatchCreate: {streamed} records, {} MiB in {elapsed:?}; node RSS {} MiB, peak growth {} MiB; {served} rounds of other clients, slowest {slowest:?}",
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
