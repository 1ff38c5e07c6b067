//! DNS over real UDP and TCP sockets with raw hickory-proto messages.

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use idnode::api::dns::naming;
use idnode::identifier::Identifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{create, private, record, text, TestNode};

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

fn txts(m: &Message) -> Vec<String> {
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
        .create(create(record(
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

#[tokio::test]
async fn large_answers_truncate_over_udp_and_are_complete_over_tcp() {
    let node = TestNode::start_empty().await;
    let t = node.enterprise("88.101.5", "DNS Co").await;
    let values = (1..=12)
        .map(|i| text(i, "note", &"x".repeat(150)))
        .collect();
    node.registry(Some(&t))
        .create(create(record("88.101.5/BIG", values)))
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
        .create(create(record(
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
