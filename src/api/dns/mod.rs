//! The DNS adapter (hickory-proto), UDP and TCP: identifiers as names under a zone.
//!
//! A query for `<name>.<zone>` decodes the name (`naming`), resolves it through the same
//! core as gRPC (local or forwarded), and answers with one TXT record per public value and
//! one URI record (RFC 7553, type 256) per URL value, each with the value's TTL.
//!
//! TXT text form, one per value: `<index> <format> <type> <data>`, e.g.
//! `1 string URL https://example.cn/p/1`. `format` is `string`, `json` or `binary`; `type` has
//! `%`, space and control bytes percent-escaped so it never contains a space; `data` is the
//! rest of the text (binary data in base64). Texts longer than 255 bytes are split into
//! several character-strings of one TXT record; clients concatenate them.
//!
//! Errors: NXDOMAIN + SOA for names that are not registered identifiers, REFUSED outside the
//! zone or for a class other than IN, FORMERR for malformed queries, NOTIMP for opcodes
//! other than QUERY, SERVFAIL when a remote identifier cannot be resolved now.

pub mod naming;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{NULL, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::admission::Admission;
use crate::error::ErrorKind;
use crate::record::{Format, Value};
use crate::resolver::{Core, Filter, Interface, Presented};

/// The URI record type (RFC 7553), not built into hickory-proto.
pub const URI: RecordType = RecordType::Unknown(256);
/// Largest UDP response we ever send, whatever the client advertises.
pub const MAX_UDP_PAYLOAD: u16 = 4096;
/// UDP payload without EDNS(0).
const CLASSIC_UDP_PAYLOAD: usize = 512;

/// DNS settings.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The zone identifiers live under, e.g. `id.example.`.
    pub zone: Name,
    /// TTL of NXDOMAIN/NODATA answers (SOA minimum).
    pub negative_ttl: u32,
    /// Most TCP connections at once.
    pub max_tcp_connections: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle: Duration,
}

impl DnsConfig {
    pub fn new(zone: Name) -> DnsConfig {
        DnsConfig {
            zone,
            negative_ttl: 60,
            max_tcp_connections: 256,
            tcp_idle: Duration::from_secs(10),
        }
    }
}

/// Maps a core error to the answer's RCODE (the one place this mapping lives).
pub fn rcode(kind: ErrorKind) -> ResponseCode {
    match kind {
        ErrorKind::NotFound | ErrorKind::InvalidArgument => ResponseCode::NXDomain,
        ErrorKind::Unauthenticated | ErrorKind::PermissionDenied | ErrorKind::ResourceExhausted => {
            ResponseCode::Refused
        }
        ErrorKind::AlreadyExists | ErrorKind::Unavailable | ErrorKind::Internal => {
            ResponseCode::ServFail
        }
    }
}

/// Percent-escapes `%`, space and control characters of a value type.
fn escape_type(kind: &str) -> String {
    let mut out = String::with_capacity(kind.len());
    for c in kind.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The documented TXT text of a value.
pub fn txt_text(v: &Value) -> String {
    let data = match v.format {
        Format::Binary => base64::engine::general_purpose::STANDARD.encode(&v.data),
        Format::String | Format::Json => String::from_utf8_lossy(&v.data).into_owned(),
    };
    format!(
        "{} {} {} {data}",
        v.index,
        v.format.name(),
        escape_type(&v.kind)
    )
}

/// Splits text into ≤ 255-byte pieces on character boundaries.
fn character_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > 255 {
        let mut cut = 255;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    out.push(rest.to_owned());
    out
}

/// URI rdata: priority, weight, target (RFC 7553 §4.5).
fn uri_rdata(target: &[u8]) -> RData {
    let mut rdata = Vec::with_capacity(4 + target.len());
    rdata.extend_from_slice(&10u16.to_be_bytes());
    rdata.extend_from_slice(&1u16.to_be_bytes());
    rdata.extend_from_slice(target);
    RData::Unknown {
        code: URI,
        rdata: NULL::with(rdata),
    }
}

/// How a query arrived: UDP responses are bounded by the payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Answers DNS queries from the core.
pub struct DnsHandler {
    core: Arc<Core>,
    config: DnsConfig,
    soa: Record,
    /// Per-client request rate; `None`: no limit (in-process use, fuzzing).
    admission: Option<Arc<Admission>>,
}

impl DnsHandler {
    pub fn new(core: Arc<Core>, config: DnsConfig) -> DnsHandler {
        let zone = config.zone.clone();
        let host = |l: &str| Name::from_ascii(l).and_then(|n| n.append_domain(&zone));
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let soa = SOA::new(
            host("ns").unwrap_or_else(|_| zone.clone()),
            host("hostmaster").unwrap_or_else(|_| zone.clone()),
            serial,
            3600,
            600,
            86_400,
            config.negative_ttl,
        );
        DnsHandler {
            soa: Record::from_rdata(zone, config.negative_ttl, RData::SOA(soa)),
            core,
            config,
            admission: None,
        }
    }

    /// Applies the node's per-client request rate: queries over it are `REFUSED`.
    pub fn with_admission(mut self, admission: Arc<Admission>) -> DnsHandler {
        self.admission = Some(admission);
        self
    }

    pub fn zone(&self) -> &Name {
        &self.config.zone
    }

    /// Answers one DNS message from `client`; `None` when nothing should be sent back
    /// (not a query, or too short to carry an id).
    pub async fn handle(
        &self,
        packet: &[u8],
        transport: Transport,
        client: Option<IpAddr>,
    ) -> Option<Vec<u8>> {
        let started = Instant::now();
        if packet.len() < 12 {
            return None;
        }
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => {
                let id = u16::from_be_bytes([packet[0], packet[1]]);
                if packet[2] & 0x80 != 0 {
                    return None; // a response: never answer those
                }
                let msg = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                self.core
                    .telemetry()
                    .request("dns", "query", "formerr", started.elapsed());
                return msg.to_vec().ok();
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let admitted = match (&self.admission, client) {
            (Some(a), Some(ip)) => a.admit_rate(ip),
            _ => true,
        };
        let (response, outcome) = if admitted {
            self.respond(&request).await
        } else {
            let mut m = Message::error_msg(
                request.metadata.id,
                request.metadata.op_code,
                ResponseCode::Refused,
            );
            m.add_queries(request.queries.iter().cloned());
            (m, "limited")
        };
        self.core
            .telemetry()
            .request("dns", "query", outcome, started.elapsed());
        let limit = match transport {
            Transport::Tcp => u16::MAX as usize,
            Transport::Udp => match &request.edns {
                Some(e) => e.max_payload().clamp(512, MAX_UDP_PAYLOAD) as usize,
                None => CLASSIC_UDP_PAYLOAD,
            },
        };
        let bytes = response.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        // Too big for this transport: header, question and OPT only, TC set.
        response.truncate().to_vec().ok()
    }

    async fn respond(&self, request: &Message) -> (Message, &'static str) {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_UDP_PAYLOAD);
            response.set_edns(edns);
        }
        let fail = |mut m: Message, code: ResponseCode, outcome| {
            m.metadata.response_code = code;
            (m, outcome)
        };
        if request.metadata.op_code != OpCode::Query {
            return fail(response, ResponseCode::NotImp, "notimp");
        }
        if request.queries.len() != 1 {
            return fail(response, ResponseCode::FormErr, "formerr");
        }
        let query = &request.queries[0];
        if query.query_class() != DNSClass::IN || !self.config.zone.zone_of(query.name()) {
            return fail(response, ResponseCode::Refused, "refused");
        }
        response.metadata.authoritative = true;
        let qtype = query.query_type();
        let name = query.name().clone();
        if name.to_lowercase() == self.config.zone.to_lowercase() {
            if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                response.add_answer(self.soa.clone());
            } else {
                response.add_authority(self.soa.clone());
            }
            return (response, "ok");
        }
        let Some(id) = naming::decode(&name, &self.config.zone) else {
            response.add_authority(self.soa.clone());
            return fail(response, ResponseCode::NXDomain, "nxdomain");
        };
        let resolved = self
            .core
            .resolve_routed(
                Presented::anonymous(),
                id.clone(),
                Filter::default(),
                0,
                Interface::Dns,
            )
            .await;
        let resolved = match resolved {
            Ok(r) => r,
            Err(e) => {
                let code = rcode(e.kind);
                if code == ResponseCode::NXDomain {
                    response.add_authority(self.soa.clone());
                    return fail(response, code, "nxdomain");
                }
                tracing::debug!(identifier = %id, error = %e, "DNS query failed");
                return fail(response, code, "error");
            }
        };
        if !self.core.serves(&id.prefix()) {
            // Forwarded: we relay another node's authoritative data.
            response.metadata.authoritative = false;
        }
        let want_txt = matches!(qtype, RecordType::TXT | RecordType::ANY);
        let want_uri = qtype == URI || qtype == RecordType::ANY;
        for v in resolved.values.iter().filter(|v| v.permissions.public_read) {
            if want_txt {
                let txt = TXT::new(character_strings(&txt_text(v)));
                response.add_answer(Record::from_rdata(name.clone(), v.ttl, RData::TXT(txt)));
            }
            if want_uri && v.kind.eq_ignore_ascii_case("URL") && v.format != Format::Binary {
                response.add_answer(Record::from_rdata(name.clone(), v.ttl, uri_rdata(&v.data)));
            }
        }
        if response.answers.is_empty() {
            response.add_authority(self.soa.clone()); // NODATA
        }
        (response, "ok")
    }
}

/// Serves DNS over UDP until `shutdown`: several receive loops share the socket and answer
/// inline (no task per packet; measured faster on 2 cores), so a slow forwarded answer
/// holds up only its own loop.
pub async fn serve_udp(handler: Arc<DnsHandler>, socket: UdpSocket, shutdown: CancellationToken) {
    const LOOPS: usize = 16;
    let socket = Arc::new(socket);
    let loops: Vec<_> = (0..LOOPS)
        .map(|_| {
            let (handler, socket, shutdown) =
                (Arc::clone(&handler), Arc::clone(&socket), shutdown.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                loop {
                    let (len, peer) = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = socket.recv_from(&mut buf) => match r {
                            Ok(x) => x,
                            Err(e) => {
                                tracing::debug!(error = %e, "DNS UDP receive failed");
                                continue;
                            }
                        },
                    };
                    if let Some(answer) = handler
                        .handle(&buf[..len], Transport::Udp, Some(peer.ip()))
                        .await
                    {
                        let _ = socket.send_to(&answer, peer).await;
                    }
                }
            })
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
}

/// Serves DNS over TCP (RFC 7766 framing, several queries per connection) until `shutdown`.
pub async fn serve_tcp(
    handler: Arc<DnsHandler>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(handler.config.max_tcp_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            // Over the connection limit: close at once rather than queue.
            drop(stream);
            continue;
        };
        let (handler, stop) = (Arc::clone(&handler), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(&handler, stream, peer, stop).await {
                tracing::debug!(%peer, error = %e, "DNS TCP connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection(
    handler: &DnsHandler,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let idle = handler.config.tcp_idle;
    loop {
        let mut len = [0u8; 2];
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(idle, stream.read_exact(&mut len)) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()), // idle
            },
        }
        let len = u16::from_be_bytes(len) as usize;
        let mut packet = vec![0u8; len];
        tokio::time::timeout(idle, stream.read_exact(&mut packet))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "half a message"))??;
        if let Some(answer) = handler
            .handle(&packet, Transport::Tcp, Some(peer.ip()))
            .await
        {
            let mut framed = Vec::with_capacity(answer.len() + 2);
            framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
            framed.extend_from_slice(&answer);
            stream.write_all(&framed).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_rcode() {
        let table = [
            (ErrorKind::InvalidArgument, ResponseCode::NXDomain),
            (ErrorKind::NotFound, ResponseCode::NXDomain),
            (ErrorKind::AlreadyExists, ResponseCode::ServFail),
            (ErrorKind::PermissionDenied, ResponseCode::Refused),
            (ErrorKind::Unauthenticated, ResponseCode::Refused),
            (ErrorKind::ResourceExhausted, ResponseCode::Refused),
            (ErrorKind::Unavailable, ResponseCode::ServFail),
            (ErrorKind::Internal, ResponseCode::ServFail),
        ];
        assert_eq!(table.len(), ErrorKind::ALL.len());
        for (kind, code) in table {
            assert_eq!(rcode(kind), code, "{kind:?}");
        }
    }

    #[test]
    fn txt_text_form() {
        let mut v = Value::text(1, "URL", "https://example.cn/p/1");
        assert_eq!(txt_text(&v), "1 string URL https://example.cn/p/1");
        v.kind = "my type%".into();
        v.format = Format::Binary;
        v.data = vec![0, 1, 2];
        assert_eq!(txt_text(&v), "1 binary my%20type%25 AAEC");
        let long = "汉".repeat(100);
        let parts = character_strings(&long);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(parts.concat(), long);
    }
}
