//! HTTP: every bad request of the table (raw HTTP/1.1 on a socket) gets its status and
//! Handle `responseCode`, and writes nothing.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{assert_absent, long_prefix, new, snapshot, Target, OWNER, SEEDED, WAIT};
use crate::support::TestNode;

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
pub(super) fn head(method: &str, path: &str, lines: &[&[u8]]) -> Vec<u8> {
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
pub(super) struct Reply {
    pub(super) status: u16,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Writes `head` and `body` on a new connection while reading the answer (a server may
/// answer before the body is sent, e.g. 413), bounded by `WAIT`.
pub(super) async fn http_exchange(
    addr: SocketAddr,
    head: Vec<u8>,
    body: Vec<u8>,
) -> Result<Reply, String> {
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
