//! DNS: bad packets get their RCODE or silence over UDP and TCP, random garbage never
//! gets an answer to a response, and idle or half-sent TCP connections are closed.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use idnode::api::dns::naming;
use idnode::identifier::Identifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{closed_within, small_limits_node, snapshot, SEEDED, WAIT};

fn zone() -> Name {
    Name::from_ascii("id.example.").unwrap()
}

pub(super) fn query(id: u16, name: Name, qtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name, qtype));
    m
}

pub(super) fn seeded_name() -> Name {
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
pub(super) const PROBE: u16 = 0xBEEF;

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
pub(super) async fn recv(socket: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65_535];
    match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// The seeded identifier's TXT answer is a NOERROR with answers.
pub(super) fn assert_probe_answer(m: &Message, case: &str) {
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
pub(super) async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) {
    stream
        .write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
}

/// Reads one RFC 7766 frame within `WAIT`.
pub(super) async fn read_frame(stream: &mut TcpStream, case: &str) -> Message {
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
