//! DNS over real UDP and TCP sockets with raw hickory-proto messages.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use idnode::api::dns::naming;
use idnode::identifier::Identifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{private, record, register_request, text, TestNode};

const URI: RecordType = RecordType::Unknown(256);

fn zone() -> Name {
    Name::from_ascii("id.example.").unwrap()
}

pub(crate) fn name_of(id: &str) -> Name {
    naming::encode(&Identifier::parse(id).unwrap(), &zone()).unwrap()
}

pub(crate) fn request(name: Name, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name, qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    match tokio::time::timeout(
        std::time::Duration::from_millis(500),
        socket.recv_from(&mut buf),
    )
    .await
    {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub(crate) async fn udp(addr: SocketAddr, m: &Message) -> (Message, usize) {
    let bytes = udp_raw(addr, &m.to_vec().unwrap())
        .await
        .expect("an answer over UDP");
    (Message::from_vec(&bytes).unwrap(), bytes.len())
}

async fn tcp(addr: SocketAddr, messages: &[Message]) -> Vec<Message> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    for m in messages {
        let bytes = m.to_vec().unwrap();
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await.unwrap();
        out.push(Message::from_vec(&buf).unwrap());
    }
    out
}

pub(crate) fn txts(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

async fn node_with_records() -> (TestNode, SocketAddr) {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.5", "DNS Co").await;
    let mut url = text(1, "URL", "https://trace.example.cn/p/BAT-2025-000001");
    url.ttl = 120;
    node.registry(Some(&t))
        .register(register_request(record(
            "88.101.5/BAT-2025-000001",
            vec![
                url,
                text(2, "batchNo", "SY2501"),
                private(3, "unitCost", "9.90"),
            ],
        )))
        .await
        .unwrap();
    let addr = node.dns_addr.unwrap();
    (node, addr)
}

#[tokio::test]
async fn txt_and_uri_answers_over_udp_and_tcp() {
    let (_node, addr) = node_with_records().await;
    let name = name_of("88.101.5/BAT-2025-000001");
    let (m, _) = udp(addr, &request(name.clone(), RecordType::TXT, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(
        txts(&m),
        [
            "1 string URL https://trace.example.cn/p/BAT-2025-000001",
            "2 string batchNo SY2501"
        ],
        "public values only, in index order"
    );
    assert_eq!(m.answers[0].ttl, 120, "the value's own TTL");
    assert_eq!(m.answers[1].ttl, 86_400);

    let (m, _) = udp(addr, &request(name.clone(), URI, Some(1232))).await;
    assert_eq!(m.answers.len(), 1);
    let RData::Unknown { code, rdata } = &m.answers[0].data else {
        panic!("URI rdata {:?}", m.answers[0].data)
    };
    assert_eq!(*code, URI);
    let raw = &rdata.anything;
    assert_eq!(&raw[..4], &[0, 10, 0, 1], "priority 10, weight 1");
    assert_eq!(&raw[4..], b"https://trace.example.cn/p/BAT-2025-000001");
    assert!(m.edns.is_some(), "EDNS answered with EDNS");

    // ANY: both kinds. Over TCP, two queries on one connection.
    let answers = tcp(
        addr,
        &[
            request(name.clone(), RecordType::ANY, None),
            request(name.clone(), RecordType::TXT, None),
        ],
    )
    .await;
    assert_eq!(answers[0].answers.len(), 3);
    assert_eq!(txts(&answers[1]).len(), 2);

    // Resolvers may randomise case (0x20): the same identifier.
    let shouted = Name::from_labels(name.iter().map(|l| l.to_ascii_uppercase())).unwrap();
    let (m, _) = udp(addr, &request(shouted, RecordType::TXT, None)).await;
    assert_eq!(txts(&m).len(), 2);

    // A type the identifier has no data for: NODATA with the SOA.
    let (m, _) = udp(addr, &request(name, RecordType::A, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[tokio::test]
async fn error_answers() {
    let (_node, addr) = node_with_records().await;
    // Not registered: NXDOMAIN with the zone's SOA.
    let (m, _) = udp(
        addr,
        &request(name_of("88.101.5/NOPE"), RecordType::TXT, None),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1);
    let RData::SOA(soa) = &m.authorities[0].data else {
        panic!("SOA expected")
    };
    assert_eq!(soa.minimum, 60);
    // A name in the zone that is no identifier's name.
    let (m, _) = udp(
        addr,
        &request(
            Name::from_ascii("www.id.example.").unwrap(),
            RecordType::TXT,
            None,
        ),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Outside the zone.
    let (m, _) = udp(
        addr,
        &request(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::TXT,
            None,
        ),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // Another class.
    let mut chaos = request(name_of("88.101.5/BAT-2025-000001"), RecordType::TXT, None);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        udp(addr, &chaos).await.0.metadata.response_code,
        ResponseCode::Refused
    );
    // Opcode other than QUERY.
    let mut status = request(name_of("88.101.5/BAT-2025-000001"), RecordType::TXT, None);
    status.metadata.op_code = OpCode::Status;
    assert_eq!(
        udp(addr, &status).await.0.metadata.response_code,
        ResponseCode::NotImp
    );
    // Two questions.
    let mut two = request(name_of("88.101.5/BAT-2025-000001"), RecordType::TXT, None);
    two.add_query(Query::query(zone(), RecordType::SOA));
    assert_eq!(
        udp(addr, &two).await.0.metadata.response_code,
        ResponseCode::FormErr
    );
    // Garbage after a valid header: FORMERR with the same id.
    let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0xff; 9]);
    let m = Message::from_vec(&udp_raw(addr, &garbage).await.expect("FORMERR answer")).unwrap();
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (0x1234, ResponseCode::FormErr)
    );
    // Too short to answer, or a response: silence. The server keeps serving after both.
    assert!(udp_raw(addr, &[1, 2, 3]).await.is_none());
    let mut response = request(zone(), RecordType::SOA, None);
    response.metadata.message_type = MessageType::Response;
    assert!(udp_raw(addr, &response.to_vec().unwrap()).await.is_none());
    // The apex: SOA.
    let (m, _) = udp(addr, &request(zone(), RecordType::SOA, None)).await;
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
}

/// A suffix of three chunks (21 + 21 + 3 bytes): its name has two tails above it.
const LONG: &str = "88.101.5/BATCH-2025-04-XIANGYANG-AXLE-0000000000000001";
/// The first chunk ends inside `虾`: the name above it holds the first byte of three.
const SPLIT: &str = "88.101.5/abcdefghijklmnopqrst虾";

/// Parses a name in the zone.
fn dns_name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

/// The name `levels` labels above `name`.
fn up(name: &Name, levels: u8) -> Name {
    name.trim_to((name.num_labels() - levels) as usize)
}

/// Asserts the answer for a name that names no registered identifier, for TXT and A:
/// NODATA (NOERROR without answer) when something lies below it, else NXDOMAIN; both
/// authoritative with the zone's SOA.
async fn assert_nothing_at(addr: SocketAddr, name: &Name, something_below: bool) {
    let expected = if something_below {
        ResponseCode::NoError
    } else {
        ResponseCode::NXDomain
    };
    for qtype in [RecordType::TXT, RecordType::A] {
        let (m, _) = udp(addr, &request(name.clone(), qtype, Some(1232))).await;
        let what = format!("{name} {qtype}");
        assert_eq!(m.metadata.response_code, expected, "{what}");
        assert!(m.answers.is_empty(), "{what}: {:?}", m.answers);
        assert!(m.metadata.authoritative, "{what}");
        let soa: Vec<_> = m.authorities.iter().map(|r| r.record_type()).collect();
        assert_eq!(soa, [RecordType::SOA], "{what}");
    }
}

/// A node with enterprise 88.101.5 holding a short, a long and a split-character suffix
/// and one identifier under 88.101.5.7, and enterprise 88.101.6 without identifiers.
/// Returns the node, its DNS address and 88.101.5's token.
async fn node_with_a_tree() -> (TestNode, SocketAddr, String) {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.5", "DNS Co").await;
    node.enterprise("88.101.6", "Empty Co").await;
    for id in ["88.101.5/BAT-2025-000001", LONG, SPLIT, "88.101.5.7/x"] {
        node.registry(Some(&t))
            .register(register_request(record(
                id,
                vec![text(1, "URL", &format!("https://e.cn/{id}"))],
            )))
            .await
            .unwrap();
    }
    let addr = node.dns_addr.unwrap();
    (node, addr, t)
}

#[tokio::test]
async fn empty_non_terminals_are_nodata_and_names_with_nothing_below_nxdomain() {
    let (node, addr, token) = node_with_a_tree().await;
    let long = name_of(LONG);
    assert_eq!(long.num_labels(), 3 + 1 + 3 + 2, "three chunks: {long}");
    // A whole chunk, like LONG's first, but another one.
    const UNRELATED: &str = "88.101.5/BATCH-2025-04-XIANGYB";
    assert_eq!(UNRELATED.len() - "88.101.5/".len(), naming::CHUNK);
    let something_below = [
        dns_name("88.id.example."),           // the node prefix's ancestor
        dns_name("101.88.id.example."),       // the node prefix
        dns_name("_.101.88.id.example."),     // the node prefix's suffixes
        dns_name("5.101.88.Id.Example."),     // an enterprise prefix
        dns_name("_.5.101.88.id.example."),   // its suffixes
        dns_name("6.101.88.id.example."),     // an enterprise without identifiers
        dns_name("_.6.101.88.id.example."),   // (its identifiers will be there)
        dns_name("7.5.101.88.id.example."),   // a prefix under an enterprise
        dns_name("_.7.5.101.88.id.example."), //
        up(&long, 1),                         // the long suffix's first two chunks
        up(&long, 2),                         // and its first chunk
        up(&name_of(SPLIT), 1),               // a chunk that ends inside a character
        dns_name("102.88.id.example."),       // a prefix delegated to another node
        dns_name("3.102.88.id.example."),     // under it: cannot be seen from here
        dns_name("_.3.102.88.id.example."),   //
    ];
    for name in &something_below {
        assert_nothing_at(addr, name, true).await;
    }
    let nothing_below = [
        name_of("88.101.5/NOPE"),         // an unregistered identifier
        name_of(UNRELATED),               // a whole chunk that starts nothing
        dns_name("9.101.88.id.example."), // no enterprise, no identifier
        dns_name("_.9.101.88.id.example."),
        dns_name("8.5.101.88.id.example."),
        dns_name("_.88.id.example."),   // nobody serves 88 itself
        dns_name("200.88.id.example."), // not delegated
        dns_name("www.id.example."),
        dns_name("x._.x._.5.101.88.id.example."), // not a name of this naming
    ];
    for name in &nothing_below {
        assert_nothing_at(addr, name, false).await;
    }
    // The identifiers themselves answer, the split character included.
    for id in ["88.101.5/BAT-2025-000001", LONG, SPLIT, "88.101.5.7/x"] {
        let (m, _) = udp(addr, &request(name_of(id), RecordType::TXT, None)).await;
        assert_eq!(txts(&m), [format!("1 string URL https://e.cn/{id}")]);
    }
    // Deleting the only identifier below the tails leaves nothing there.
    node.registry(Some(&token))
        .delete(idnode::api::grpc::pb::DeleteRequest {
            identifier: LONG.into(),
        })
        .await
        .unwrap();
    assert_nothing_at(addr, &up(&long, 1), false).await;
    assert_nothing_at(addr, &up(&long, 2), false).await;
    assert_nothing_at(addr, &long, false).await;
}

/// Debian's `unbound` recursive resolver, which `scripts/setup` installs.
const UNBOUND: &str = "/usr/sbin/unbound";

/// An `unbound` process in front of a node's zone, killed (by its PID) when dropped.
struct Unbound {
    child: std::process::Child,
    addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Unbound {
    /// Starts unbound on a free loopback port with strict QNAME minimisation (RFC 9156)
    /// and a stub zone sending every query under the zone to `node`; returns once it
    /// logs that it serves.
    fn start(node: SocketAddr) -> Unbound {
        use std::io::BufRead;
        assert!(
            std::path::Path::new(UNBOUND).exists(),
            "{UNBOUND} is missing: this test needs Debian's `unbound` package, which \
             scripts/setup installs (apt-get install unbound)"
        );
        let dir = tempfile::tempdir().unwrap();
        // A port free for both UDP and TCP right now; unbound binds it a moment later.
        // (Other tests hold TCP ports too: try UDP ports until one is free for both.)
        let port = (0..100)
            .find_map(|_| {
                let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let port = udp.local_addr().unwrap().port();
                std::net::TcpListener::bind(("127.0.0.1", port))
                    .ok()
                    .map(|_| port)
            })
            .expect("a loopback port free for UDP and TCP");
        let d = dir.path().display();
        let config = format!(
            "server:\n\
             \x20 interface: 127.0.0.1\n\
             \x20 port: {port}\n\
             \x20 do-ip6: no\n\
             \x20 do-daemonize: no\n\
             \x20 use-syslog: no\n\
             \x20 logfile: \"\"\n\
             \x20 verbosity: 1\n\
             \x20 chroot: \"\"\n\
             \x20 username: \"\"\n\
             \x20 directory: \"{d}\"\n\
             \x20 pidfile: \"{d}/unbound.pid\"\n\
             \x20 num-threads: 1\n\
             \x20 module-config: \"iterator\"\n\
             \x20 qname-minimisation: yes\n\
             \x20 qname-minimisation-strict: yes\n\
             \x20 do-not-query-localhost: no\n\
             \x20 access-control: 127.0.0.0/8 allow\n\
             remote-control:\n\
             \x20 control-enable: no\n\
             stub-zone:\n\
             \x20 name: \"id.example.\"\n\
             \x20 stub-addr: {}@{}\n",
            node.ip(),
            node.port()
        );
        let file = dir.path().join("unbound.conf");
        std::fs::write(&file, config).unwrap();
        let mut child = std::process::Command::new(UNBOUND)
            .arg("-d")
            .arg("-c")
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {UNBOUND}: {e}"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready, serving) = std::sync::mpsc::channel();
        let (stderr, lines) = (child.stderr.take().unwrap(), std::sync::Arc::clone(&log));
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("start of service") {
                    let _ = ready.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let unbound = Unbound {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: dir,
        };
        if serving
            .recv_timeout(std::time::Duration::from_secs(20))
            .is_err()
        {
            panic!("unbound did not start:\n{}", unbound.log());
        }
        unbound
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Asks unbound (recursion desired) and waits for its answer.
    async fn ask(&self, name: Name, qtype: RecordType) -> Message {
        let mut m = request(name, qtype, Some(1232));
        m.metadata.recursion_desired = true;
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket
            .send_to(&m.to_vec().unwrap(), self.addr)
            .await
            .unwrap();
        let mut buf = vec![0u8; 65_535];
        let wait = std::time::Duration::from_secs(10);
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Message::from_vec(&buf[..n]).unwrap(),
            _ => panic!("no answer from unbound within {wait:?}:\n{}", self.log()),
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_resolver_with_strict_qname_minimisation_resolves_identifiers() {
    // unbound walks down one label at a time (88, 101.88, 5.101.88, _.5.101.88, the tails
    // of a long suffix) and gives up at the first NXDOMAIN.
    let (_node, addr, _) = node_with_a_tree().await;
    let unbound = Unbound::start(addr);
    for id in [LONG, "88.101.5/BAT-2025-000001", SPLIT, "88.101.5.7/x"] {
        let m = unbound.ask(name_of(id), RecordType::TXT).await;
        assert_eq!(
            (m.metadata.response_code, txts(&m)),
            (
                ResponseCode::NoError,
                vec![format!("1 string URL https://e.cn/{id}")]
            ),
            "{id} through unbound:\n{}",
            unbound.log()
        );
    }
    // Nothing is made up: an unregistered identifier is still NXDOMAIN.
    let m = unbound.ask(name_of("88.101.5/NOPE"), RecordType::TXT).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_are_complete_over_tcp() {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.5", "DNS Co").await;
    let values = (1..=12)
        .map(|i| text(i, "note", &"x".repeat(150)))
        .collect();
    node.registry(Some(&t))
        .register(register_request(record("88.101.5/BIG", values)))
        .await
        .unwrap();
    let addr = node.dns_addr.unwrap();
    let name = name_of("88.101.5/BIG");

    let (m, size) = udp(addr, &request(name.clone(), RecordType::TXT, None)).await;
    assert!(m.metadata.truncation, "no EDNS: 512 bytes at most");
    assert!(m.answers.is_empty());
    assert!(size <= 512);
    let (m, size) = udp(addr, &request(name.clone(), RecordType::TXT, Some(1232))).await;
    assert!(m.metadata.truncation, "2 KB do not fit in 1232");
    assert!(size <= 1232);
    let (m, _) = udp(addr, &request(name.clone(), RecordType::TXT, Some(4096))).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 12);
    let over_tcp = tcp(addr, &[request(name, RecordType::TXT, None)]).await;
    assert!(!over_tcp[0].metadata.truncation);
    assert_eq!(txts(&over_tcp[0]).len(), 12);
    assert!(txts(&over_tcp[0])[0].ends_with(&"x".repeat(150)));
}

#[tokio::test]
async fn dns_goes_through_the_same_core_as_grpc() {
    // A value's later change is visible over DNS at once (local answers are not cached).
    let (node, addr) = node_with_records().await;
    let t = node.enterprise("88.101.6", "Other").await;
    node.registry(Some(&t))
        .register(register_request(record(
            "88.101.6/Ab.c/d",
            vec![text(1, "URL", "https://e.cn/abcd")],
        )))
        .await
        .unwrap();
    let (m, _) = udp(
        addr,
        &request(name_of("88.101.6/Ab.c/d"), RecordType::TXT, None),
    )
    .await;
    assert_eq!(txts(&m), ["1 string URL https://e.cn/abcd"]);
    let info = node
        .admin(None)
        .get_node_info(idnode::api::grpc::pb::GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.resolved_local, 1, "counted as a resolution");
}

/// The apex names the node's name server: `ns.<zone>` for a single-process node, with its
/// address as glue, and the host name answers its address. (A site's servers each get one:
/// `site::the_top_level_node_sees_one_node_with_three_servers`.)
#[tokio::test]
async fn the_apex_names_the_name_server_with_its_address() {
    let (_node, addr) = node_with_records().await;
    let (m, _) = udp(addr, &request(zone(), RecordType::NS, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    let ns = Name::from_ascii("ns.id.example.").unwrap();
    let hosts: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            hickory_proto::rr::RData::NS(n) => n.0.to_ascii(),
            other => panic!("not NS: {other:?}"),
        })
        .collect();
    assert_eq!(hosts, [ns.to_ascii()]);
    let glue: Vec<String> = m.additionals.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(glue, [addr.ip().to_string()]);
    let (m, _) = udp(addr, &request(ns.clone(), RecordType::A, None)).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].data.to_string(), addr.ip().to_string());
    // No AAAA for it: NODATA with the SOA.
    let (m, _) = udp(addr, &request(ns, RecordType::AAAA, None)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.authorities.len() == 1);
}

/// Many queries in flight at once from many clients, in rounds (the UDP receive threads take
/// them in batches and send the answers with one system call): every client gets exactly the
/// answers to its own queries, each with its ID and its identifier's texts, and a name
/// that does not exist is NXDOMAIN among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_in_flight_together_each_get_their_own_answer() {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.5", "DNS Co").await;
    let mut reg = node.registry(Some(&t));
    for i in 0..20 {
        reg.register(register_request(record(
            &format!("88.101.5/LOT-{i}"),
            vec![text(1, "URL", &format!("https://lot.example.cn/{i}"))],
        )))
        .await
        .unwrap();
    }
    let addr = node.dns_addr.unwrap();
    let clients = 8;
    let per_client = 40u16;
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(addr).await.unwrap();
            // Rounds of eight: every query of a round is sent before any answer is read (64
            // datagrams at most wait in the node's socket, well inside its receive buffer: a
            // UDP buffer that overflows drops queries, which is not what this test is about).
            let mut seen = std::collections::BTreeSet::new();
            let mut buf = vec![0u8; 4096];
            for round in 0..per_client / 8 {
                for q in round * 8..round * 8 + 8 {
                    let i = (c * 7 + q as usize) % 21; // 20: not registered
                    let mut m =
                        request(name_of(&format!("88.101.5/LOT-{i}")), RecordType::TXT, None);
                    m.metadata.id = q;
                    socket.send(&m.to_vec().unwrap()).await.unwrap();
                }
                while seen.len() < (round as usize + 1) * 8 {
                    let n = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        socket.recv(&mut buf),
                    )
                    .await
                    .expect("every query answered")
                    .unwrap();
                    let m = Message::from_vec(&buf[..n]).unwrap();
                    let q = m.metadata.id;
                    assert!(q < per_client && seen.insert(q), "client {c}: answer {q}");
                    let i = (c * 7 + q as usize) % 21;
                    assert_eq!(
                        m.queries[0].name(),
                        &name_of(&format!("88.101.5/LOT-{i}")),
                        "client {c}: answer {q} to another question"
                    );
                    if i == 20 {
                        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
                    } else {
                        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                        let texts = txts(&m);
                        assert!(
                            texts[0].ends_with(&format!("https://lot.example.cn/{i}")),
                            "client {c}, query {q}: {texts:?}"
                        );
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
