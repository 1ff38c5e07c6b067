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
//! The apex answers SOA and NS: one name server per server of the node, `ns.<zone>` for a
//! single-process node and `<server>.ns.<zone>` for each server of a site, as the top-level
//! node lists them (`DnsHandler::set_name_servers`, after each heartbeat), each with its
//! address as glue when it listens on a specific one.
//!
//! Names that are no registered identifier's: NOERROR with no answer and the SOA (NODATA)
//! when something lies below them (an empty non-terminal: a prefix's name, `_` under it,
//! the first whole chunks of a long suffix; see `naming`), else NXDOMAIN + SOA.
//! Errors: REFUSED outside the zone or for a class other than IN, FORMERR for malformed
//! queries, NOTIMP for opcodes other than QUERY, SERVFAIL when a remote identifier cannot
//! be resolved now.
//!
//! Admission (`api::admission`, shared with gRPC and HTTP): every query counts toward its
//! client's request rate; a query that has to wait for the disk or another node holds an
//! in-flight slot while it waits, for at most the request timeout (SERVFAIL after it);
//! over either limit the answer is REFUSED at once. TCP connections are accepted through
//! the same connection limit and idle/write timeouts as the other listeners.

mod answer;
pub mod naming;
mod udp;
pub mod zonefile;

pub use answer::txt_text;
pub use udp::serve_udp;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::admission::{Admission, Admitted, Refusal, Ticket};
use crate::error::ErrorKind;
use crate::identifier::Identifier;
use crate::resolver::{Core, Filter, Interface, Place, Presented, Resolved};
use crate::telemetry::Telemetry;

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
}

impl DnsConfig {
    pub fn new(zone: Name) -> DnsConfig {
        DnsConfig {
            zone,
            negative_ttl: 60,
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

/// How a query arrived: UDP responses are bounded by the payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One of the zone's name servers, with its address when known (glue).
#[derive(Debug, Clone, PartialEq)]
struct NameServer {
    host: Name,
    addr: Option<IpAddr>,
}

/// Answers DNS queries from the core.
pub struct DnsHandler {
    core: Arc<Core>,
    config: DnsConfig,
    soa: Record,
    /// The zone's name servers: the node's servers.
    name_servers: std::sync::RwLock<Arc<Vec<NameServer>>>,
    /// The node's limits: request rate per client, requests in flight, request timeout,
    /// TCP connections.
    admission: Arc<Admission>,
    /// Where queries are counted.
    telemetry: Arc<Telemetry>,
}

impl DnsHandler {
    pub fn new(
        core: Arc<Core>,
        config: DnsConfig,
        admission: Arc<Admission>,
        telemetry: Arc<Telemetry>,
    ) -> DnsHandler {
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
        let name_servers = vec![NameServer {
            host: host("ns").unwrap_or_else(|_| zone.clone()),
            addr: None,
        }];
        DnsHandler {
            soa: Record::from_rdata(zone, config.negative_ttl, RData::SOA(soa)),
            name_servers: std::sync::RwLock::new(Arc::new(name_servers)),
            core,
            config,
            admission,
            telemetry,
        }
    }

    pub fn zone(&self) -> &Name {
        &self.config.zone
    }

    /// Sets the zone's name servers from the node's servers: `(name in the site, DNS
    /// address "ip:port")`, the name "" for a single-process node. A server listening on
    /// every address gets no glue. Servers with no DNS address are left out; with none left,
    /// the zone keeps the name servers it had.
    pub fn set_name_servers(&self, servers: &[(String, String)]) {
        let zone = &self.config.zone;
        let named: Vec<NameServer> = servers
            .iter()
            .filter(|(_, dns)| !dns.is_empty())
            .filter_map(|(name, dns)| {
                let label = match name.is_empty() {
                    true => "ns".to_owned(),
                    false => format!("{name}.ns"),
                };
                let host = Name::from_ascii(&label)
                    .and_then(|n| n.append_domain(zone))
                    .ok()?;
                let addr = dns
                    .parse::<std::net::SocketAddr>()
                    .ok()
                    .map(|a| a.ip())
                    .filter(|ip| !ip.is_unspecified());
                Some(NameServer { host, addr })
            })
            .collect();
        if !named.is_empty() {
            *self.name_servers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(named);
        }
    }

    fn name_servers(&self) -> Arc<Vec<NameServer>> {
        Arc::clone(&self.name_servers.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A name server's address records of type `t` (A, AAAA or ANY).
    fn glue(&self, ns: &NameServer, t: RecordType) -> Option<Record> {
        let ttl = self.config.negative_ttl.max(3600);
        let rdata = match (ns.addr?, t) {
            (IpAddr::V4(ip), RecordType::A | RecordType::ANY) => RData::A(A(ip)),
            (IpAddr::V6(ip), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(ip)),
            _ => return None,
        };
        Some(Record::from_rdata(ns.host.clone(), ttl, rdata))
    }

    /// Answers one DNS message from `client` (`None`: address unknown, no rate applied);
    /// `None` when nothing should be sent back (not a query, or too short to carry an id).
    pub async fn handle(
        &self,
        packet: &[u8],
        transport: Transport,
        client: Option<IpAddr>,
    ) -> Option<Vec<u8>> {
        match self.handle_now(packet, transport, client) {
            Now::Answer(answer) => answer,
            Now::Later(q) => self.answer_later(q).await,
        }
    }

    /// Answers at once when that needs neither the disk nor another node (a local
    /// identifier in the block cache, or no resolution at all), or when admission refuses
    /// the query; otherwise [`Now::Later`] with the checked question and its in-flight
    /// slot, for [`DnsHandler::answer_later`]. Together they answer as
    /// [`DnsHandler::handle`] does.
    pub fn handle_now(&self, packet: &[u8], transport: Transport, client: Option<IpAddr>) -> Now {
        let q = match self.begin(packet, transport, client) {
            Begun::Done(answer) => return Now::Answer(answer),
            Begun::Resolve(q) => q,
        };
        let now = match &q.asked {
            Asked::Identifier(id) => Some(self.core.resolve_now(
                id,
                &Filter::default(),
                Interface::Dns,
            )),
            Asked::Place(_) => None, // a look at the store, maybe the disk
        };
        let q = match now {
            Some(Ok(Some(resolved))) => return Now::Answer(self.finish(q, Ok(resolved))),
            Some(Err(e)) => match self.above(&q, &e) {
                Some(place) => Question {
                    asked: Asked::Place(place),
                    ..q
                },
                None => return Now::Answer(self.finish(q, Err(e))),
            },
            Some(Ok(None)) | None => q,
        };
        // Waiting holds a slot of the node's requests in flight, so a flood of queries that
        // miss the cache queues nothing: past the limit they are refused here.
        match self.admission.admit_in_flight() {
            Ok(ticket) => Now::Later(Pending {
                question: q,
                _ticket: ticket,
            }),
            Err(refusal) => {
                let (request, limit, started) = (&q.request, q.limit, q.started);
                Now::Answer(self.refuse(request, refusal, limit, started))
            }
        }
    }

    /// Resolves a question [`DnsHandler::handle_now`] could not answer at once, within the
    /// request timeout (SERVFAIL after it). The in-flight slot is released on return.
    pub async fn answer_later(&self, pending: Pending) -> Option<Vec<u8>> {
        let q = pending.question;
        let timeout = self.admission.config().request_timeout;
        match tokio::time::timeout(timeout, self.look_up(&q)).await {
            Ok(Looked::Resolved(resolved)) => self.finish(q, resolved),
            Ok(Looked::Place(occupied)) => self.finish_place(q, occupied),
            Err(_) => {
                self.admission.timed_out();
                let mut response = self.response_to(&q.request);
                response.metadata.response_code = rcode(ErrorKind::Unavailable);
                self.reply(response, q.limit, ErrorKind::Unavailable.name(), q.started)
            }
        }
    }

    /// What a deferred question needs from the core: the identifier's values or, for a name
    /// that names none, whether anything lies below it.
    async fn look_up(&self, q: &Question) -> Looked {
        let id = match &q.asked {
            Asked::Identifier(id) => id.clone(),
            Asked::Place(place) => return Looked::Place(self.core.occupied(place.clone()).await),
        };
        let resolved = self
            .core
            .resolve_routed(
                Presented::anonymous(),
                id,
                Filter::default(),
                0,
                Interface::Dns,
            )
            .await;
        if let Err(e) = &resolved {
            if let Some(place) = self.above(q, e) {
                return Looked::Place(self.core.occupied(place).await);
            }
        }
        Looked::Resolved(resolved)
    }

    /// The answer to a query admission refused: REFUSED, as for every exhausted resource.
    fn refuse(
        &self,
        request: &Message,
        refusal: Refusal,
        limit: usize,
        started: Instant,
    ) -> Option<Vec<u8>> {
        let mut m = Message::error_msg(
            request.metadata.id,
            request.metadata.op_code,
            rcode(refusal.error().kind),
        );
        m.add_queries(request.queries.iter().cloned());
        self.reply(m, limit, refusal.error().kind.name(), started)
    }

    /// The place the question's name stands for, when the identifier it names is not
    /// found and names may lie below it (a suffix of whole chunks).
    fn above(&self, q: &Question, e: &crate::error::Error) -> Option<Place> {
        if rcode(e.kind) != ResponseCode::NXDomain {
            return None;
        }
        naming::place(q.request.queries[0].name(), &self.config.zone)
    }

    /// The answer for a name that names no registered identifier: NODATA when something
    /// lies below it, else NXDOMAIN; both authoritative, with the SOA for negative caching.
    fn finish_place(&self, q: Question, occupied: crate::error::Result<bool>) -> Option<Vec<u8>> {
        match occupied {
            Ok(true) => {
                let mut response = self.response_to(&q.request);
                response.metadata.authoritative = true;
                response.add_authority(self.soa.clone());
                self.reply(response, q.limit, "ok", q.started)
            }
            Ok(false) => self.finish(
                q,
                Err(crate::error::Error::not_found(
                    "nothing lies below this name",
                )),
            ),
            Err(e) => self.finish(q, Err(e)),
        }
    }

    /// The answer to a datagram that is not a DNS message (or was cut short by the
    /// receive buffer): FORMERR with its ID, or nothing for a response or fewer than 12
    /// bytes.
    pub fn malformed(&self, packet: &[u8], started: Instant) -> Option<Vec<u8>> {
        if packet.len() < 12 || packet[2] & 0x80 != 0 {
            return None; // no header, or a response: never answer those
        }
        let id = u16::from_be_bytes([packet[0], packet[1]]);
        let msg = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
        self.count(ErrorKind::InvalidArgument.name(), started);
        msg.to_vec().ok()
    }

    /// Parses and checks a query: answers everything that needs no resolution.
    fn begin(&self, packet: &[u8], transport: Transport, client: Option<IpAddr>) -> Begun {
        let started = Instant::now();
        if packet.len() < 12 {
            return Begun::Done(None);
        }
        let request = match Message::from_vec(packet) {
            Ok(m) => m,
            Err(_) => return Begun::Done(self.malformed(packet, started)),
        };
        if request.metadata.message_type != MessageType::Query {
            return Begun::Done(None);
        }
        let limit = match transport {
            Transport::Tcp => u16::MAX as usize,
            Transport::Udp => match &request.edns {
                Some(e) => e.max_payload().clamp(512, MAX_UDP_PAYLOAD) as usize,
                None => CLASSIC_UDP_PAYLOAD,
            },
        };
        if let Some(ip) = client {
            if let Err(refusal) = self.admission.admit_rate(ip) {
                return Begun::Done(self.refuse(&request, refusal, limit, started));
            }
        }
        let mut response = self.response_to(&request);
        let fail = |mut m: Message, code: ResponseCode, outcome| {
            m.metadata.response_code = code;
            Begun::Done(self.reply(m, limit, outcome, started))
        };
        if request.metadata.op_code != OpCode::Query {
            return fail(
                response,
                ResponseCode::NotImp,
                ErrorKind::InvalidArgument.name(),
            );
        }
        if request.queries.len() != 1 {
            return fail(
                response,
                ResponseCode::FormErr,
                ErrorKind::InvalidArgument.name(),
            );
        }
        let query = &request.queries[0];
        if query.query_class() != DNSClass::IN || !self.config.zone.zone_of(query.name()) {
            // Not a name of this zone: nothing here answers for it.
            return fail(response, ResponseCode::Refused, ErrorKind::NotFound.name());
        }
        response.metadata.authoritative = true;
        if query.name().num_labels() == self.config.zone.num_labels() {
            let t = query.query_type();
            if matches!(t, RecordType::SOA | RecordType::ANY) {
                response.add_answer(self.soa.clone());
            }
            if matches!(t, RecordType::NS | RecordType::ANY) {
                let ttl = self.config.negative_ttl.max(3600);
                for ns in self.name_servers().iter() {
                    let rdata = RData::NS(NS(ns.host.clone()));
                    response.add_answer(Record::from_rdata(self.config.zone.clone(), ttl, rdata));
                    response.add_additionals(self.glue(ns, RecordType::ANY));
                }
            }
            if !matches!(t, RecordType::SOA | RecordType::NS | RecordType::ANY) {
                response.add_authority(self.soa.clone());
            }
            return Begun::Done(self.reply(response, limit, "ok", started));
        }
        if let Some(ns) = self
            .name_servers()
            .iter()
            .find(|ns| ns.host == *query.name())
        {
            match self.glue(ns, query.query_type()) {
                Some(glue) => response.add_answer(glue),
                None => response.add_authority(self.soa.clone()),
            };
            return Begun::Done(self.reply(response, limit, "ok", started));
        }
        let asked = match naming::decode(query.name(), &self.config.zone) {
            Some(id) => Asked::Identifier(id),
            None => match naming::place(query.name(), &self.config.zone) {
                Some(place) => Asked::Place(place),
                None => {
                    response.add_authority(self.soa.clone());
                    return fail(response, ResponseCode::NXDomain, ErrorKind::NotFound.name());
                }
            },
        };
        Begun::Resolve(Question {
            request,
            asked,
            limit,
            started,
        })
    }

    /// The answer to a resolved question: its public values, or the error's RCODE.
    fn finish(&self, q: Question, resolved: crate::error::Result<Resolved>) -> Option<Vec<u8>> {
        match resolved {
            Ok(resolved) => {
                // Forwarded answers relay another node's authoritative data.
                let authoritative = self.core.serves_identifier(&resolved.identifier);
                let mut out = Vec::with_capacity(512);
                let values = &resolved.values;
                if answer::write(&mut out, &q.request, authoritative, values, q.limit) {
                    self.count("ok", q.started);
                    return Some(out);
                }
                // No public value of the asked type: NODATA.
                let mut response = self.response_to(&q.request);
                response.metadata.authoritative = authoritative;
                response.add_authority(self.soa.clone());
                self.reply(response, q.limit, "ok", q.started)
            }
            Err(e) => {
                let mut response = self.response_to(&q.request);
                response.metadata.authoritative = true;
                response.metadata.response_code = rcode(e.kind);
                if response.metadata.response_code == ResponseCode::NXDomain {
                    response.add_authority(self.soa.clone());
                    return self.reply(response, q.limit, e.kind.name(), q.started);
                }
                let name = q.request.queries[0].name();
                tracing::debug!(%name, error = %e, "DNS query failed");
                self.reply(response, q.limit, e.kind.name(), q.started)
            }
        }
    }

    /// An empty response echoing the request's ID, opcode, RD flag, question and EDNS.
    fn response_to(&self, request: &Message) -> Message {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_UDP_PAYLOAD);
            response.set_edns(edns);
        }
        response
    }

    /// Encodes `response` within `limit` bytes (truncated, TC set, when larger) and counts it.
    fn reply(
        &self,
        response: Message,
        limit: usize,
        outcome: &'static str,
        started: Instant,
    ) -> Option<Vec<u8>> {
        self.count(outcome, started);
        let bytes = response.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        // Too big for this transport: header, question and OPT only, TC set.
        response.truncate().to_vec().ok()
    }

    fn count(&self, outcome: &'static str, started: Instant) {
        self.telemetry
            .request("dns", "query", outcome, started.elapsed());
    }
}

/// The result of [`DnsHandler::handle_now`]: consumed at once, never stored in bulk.
#[allow(clippy::large_enum_variant)]
pub enum Now {
    /// The answer (`None`: send nothing).
    Answer(Option<Vec<u8>>),
    /// The query needs the disk or another node: answer it with
    /// [`DnsHandler::answer_later`].
    Later(Pending),
}

/// A checked query naming an identifier or a place, to be resolved.
struct Question {
    request: Message,
    asked: Asked,
    /// Largest answer the transport takes.
    limit: usize,
    started: Instant,
}

/// What a checked query asks about.
enum Asked {
    /// An identifier's values.
    Identifier(Identifier),
    /// Whether anything lies below a name that names no identifier.
    Place(Place),
}

/// What [`DnsHandler::look_up`] found: returned once per deferred query, never stored.
#[allow(clippy::large_enum_variant)]
enum Looked {
    Resolved(crate::error::Result<Resolved>),
    Place(crate::error::Result<bool>),
}

/// A question waiting for the disk or another node, holding an in-flight slot until it is
/// answered or dropped.
pub struct Pending {
    question: Question,
    _ticket: Ticket,
}

enum Begun {
    Done(Option<Vec<u8>>),
    Resolve(Question),
}

/// Serves DNS over TCP (RFC 7766 framing, several queries per connection) until `shutdown`.
/// Connections come through the node's admission: its connection limit for this listener,
/// and its idle timeout for reads and for answers the client leaves unread.
pub async fn serve_tcp(
    handler: Arc<DnsHandler>,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    let mut incoming = handler.admission.incoming(listener, None, shutdown.clone());
    while let Some(conn) = incoming.recv().await {
        let Ok(conn) = conn else { continue };
        let (handler, stop) = (Arc::clone(&handler), shutdown.clone());
        tokio::spawn(async move {
            let peer = conn.peer();
            if let Err(e) = connection(&handler, conn, stop).await {
                tracing::debug!(%peer, error = %e, "DNS TCP connection ended");
            }
        });
    }
}

/// Queries and answers on one connection until the client closes it, it times out (read
/// or write: an error from [`Admitted`]) or `shutdown`.
async fn connection(
    handler: &DnsHandler,
    mut stream: Admitted,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let client = stream.peer().ip();
    loop {
        let mut len = [0u8; 2];
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = stream.read_exact(&mut len) => match r {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            },
        }
        let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = stream.read_exact(&mut packet) => r?,
        };
        if let Some(answer) = handler.handle(&packet, Transport::Tcp, Some(client)).await {
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
    use crate::record::{Format, Value};

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
        // Admission refusals, as `refuse` maps them.
        for r in [Refusal::Rate, Refusal::Busy] {
            assert_eq!(rcode(r.error().kind), ResponseCode::Refused, "{r:?}");
        }
    }

    #[test]
    fn txt_text_form() {
        let mut v = Value::text(1, "URL", "https://example.cn/p/1");
        assert_eq!(txt_text(&v), "1 string URL https://example.cn/p/1");
        v.value_type = "my type%".into();
        v.format = Format::Binary;
        v.data = vec![0, 1, 2];
        assert_eq!(txt_text(&v), "1 binary my%20type%25 AAEC");
    }
}
