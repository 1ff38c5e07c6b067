//! gRPC: every bad request of the table gets its code and writes nothing; hand-made
//! frames (not protobuf, invalid UTF-8, bad framing, oversized) that typed clients cannot
//! send.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use idnode::api::grpc::pb;
use prost::Message as _;
use tonic::codegen::http;
use tonic::codegen::{Body as _, Service as _};
use tonic::transport::Channel;
use tonic::Code;

use super::{
    assert_absent, long_prefix, new, small_limits_node, snapshot, too_long_data, value, Target,
    OWNER, SEEDED, WAIT,
};
use crate::support::{record, register_request, resolve, text, TestNode};

/// A good resolution over gRPC, on a client of its own, within a bound.
async fn assert_grpc_serves(node: &TestNode, case: &str) {
    let r = tokio::time::timeout(WAIT, node.resolver(None).resolve(resolve(SEEDED)))
        .await
        .unwrap_or_else(|_| panic!("after {case}: gRPC resolve timed out"))
        .unwrap_or_else(|e| panic!("after {case}: gRPC resolve failed: {e:?}"))
        .into_inner();
    assert!(!r.values.is_empty(), "after {case}");
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
            put: vec![],
        })),
    }
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Owner,
    Anonymous,
    Forged,
}

enum Call {
    Register(pb::RegisterRequest),
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

fn register_of(id: &str, values: Vec<pb::Value>) -> Call {
    Call::Register(register_request(record(id, values)))
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
            register_of(&long_id, url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "prefix of 65 bytes",
            register_of(&long_prefix_id, url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "value data of 64 KiB + 1",
            register_of(
                "88.101.5/G-DATA",
                vec![value(1, "blob", too_long_data(), pb::Format::Binary)],
            ),
            InvalidArgument,
            new("88.101.5/G-DATA"),
        ),
        grpc_case(
            "1025 values",
            register_of("88.101.5/G-MANY", many(1025)),
            ResourceExhausted,
            new("88.101.5/G-MANY"),
        ),
        grpc_case(
            "record over 1 MiB",
            register_of("88.101.5/G-HEAVY", heavy()),
            ResourceExhausted,
            new("88.101.5/G-HEAVY"),
        ),
        grpc_case(
            "duplicate value indexes",
            register_of(
                "88.101.5/G-DUP",
                vec![text(1, "URL", "a"), text(1, "URL", "b")],
            ),
            InvalidArgument,
            new("88.101.5/G-DUP"),
        ),
        grpc_case(
            "value index 0",
            register_of("88.101.5/G-ZERO", vec![text(0, "URL", "a")]),
            InvalidArgument,
            new("88.101.5/G-ZERO"),
        ),
        grpc_case(
            "U+0001 in the suffix",
            register_of("88.101.5/G-\u{1}", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "line feed in the suffix",
            register_of("88.101.5/G-\n", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "DEL in the suffix",
            register_of("88.101.5/G-\u{7f}", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "C1 control U+0085 in the suffix",
            register_of("88.101.5/G-\u{85}", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "control character in a value type",
            register_of("88.101.5/G-TYPE", vec![text(1, "U\u{1}RL", "u")]),
            InvalidArgument,
            new("88.101.5/G-TYPE"),
        ),
        grpc_case(
            "value type of 129 bytes",
            register_of("88.101.5/G-TLONG", vec![text(1, &"t".repeat(129), "u")]),
            InvalidArgument,
            new("88.101.5/G-TLONG"),
        ),
        grpc_case(
            "empty value type",
            register_of("88.101.5/G-TEMPTY", vec![text(1, "", "u")]),
            InvalidArgument,
            new("88.101.5/G-TEMPTY"),
        ),
        grpc_case(
            "empty identifier",
            register_of("", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "identifier without '/'",
            register_of("88.101.5", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "empty suffix",
            register_of("88.101.5/", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "empty prefix",
            register_of("/G", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "'_' in a prefix segment",
            register_of("88.101.5_1/G", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "doubled '.' in the prefix",
            register_of("88.101..5/G", url()),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "no values",
            register_of("88.101.5/G-EMPTY", vec![]),
            InvalidArgument,
            new("88.101.5/G-EMPTY"),
        ),
        grpc_case(
            "no record",
            Call::Register(pb::RegisterRequest { record: None }),
            InvalidArgument,
            Target::Nothing,
        ),
        grpc_case(
            "string value holding invalid UTF-8",
            register_of(
                "88.101.5/G-UTF8",
                vec![value(1, "URL", vec![0xC3, 0x28], pb::Format::String)],
            ),
            InvalidArgument,
            new("88.101.5/G-UTF8"),
        ),
        grpc_case(
            "json value that is not JSON",
            register_of(
                "88.101.5/G-JSON",
                vec![value(1, "meta", b"{\"a\":".to_vec(), pb::Format::Json)],
            ),
            InvalidArgument,
            new("88.101.5/G-JSON"),
        ),
        grpc_case(
            "unknown value format",
            register_of("88.101.5/G-FMT", vec![bad_format]),
            InvalidArgument,
            new("88.101.5/G-FMT"),
        ),
        grpc_case(
            "unknown classification",
            register_of("88.101.5/G-CLASS", vec![bad_class]),
            InvalidArgument,
            new("88.101.5/G-CLASS"),
        ),
        grpc_case(
            "65 references",
            register_of("88.101.5/G-REFS", vec![reference]),
            InvalidArgument,
            new("88.101.5/G-REFS"),
        ),
        grpc_case(
            "reference to a malformed identifier",
            register_of("88.101.5/G-REF", vec![bad_reference]),
            InvalidArgument,
            new("88.101.5/G-REF"),
        ),
        grpc_case(
            "another enterprise's prefix",
            register_of("88.101.8/G-THEIRS", url()),
            PermissionDenied,
            new("88.101.8/G-THEIRS"),
        ),
        grpc_case(
            "a prefix outside the node",
            register_of("99.1/G-AWAY", url()),
            PermissionDenied,
            Target::Nothing,
        ),
        GrpcCase {
            who: Who::Anonymous,
            ..grpc_case(
                "no token",
                register_of("88.101.5/G-ANON", url()),
                Unauthenticated,
                new("88.101.5/G-ANON"),
            )
        },
        GrpcCase {
            who: Who::Forged,
            ..grpc_case(
                "a forged token",
                register_of("88.101.5/G-FORGED", url()),
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
            Call::Register(r) => client.register(r).await.map(|_| ()),
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
    let create_path = "/idnode.v1.Registry/Register";
    let good = register_request(record("88.101.5/G-RAW", url())).encode_to_vec();
    let mut truncated = good.clone();
    truncated.pop();
    let oversized = register_request(record(
        "88.101.5/G-BIG",
        vec![value(1, "blob", vec![b'x'; 3 << 20], pb::Format::Binary)],
    ))
    .encode_to_vec();
    // RegisterRequest { record: Record { identifier: <0xC3 0x28> } }
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
pub(super) async fn raw_grpc(
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
