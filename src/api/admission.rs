//! Admission control, shared by every interface: what a node accepts before any request
//! reaches the core.
//!
//! - connections per TCP listener (gRPC, HTTP, DNS over TCP): over the limit a connection
//!   is closed at once (HTTP first gets a `503`); never queued;
//! - a connection that sends nothing within the idle timeout, or whose peer stops reading
//!   what it is sent for as long, is closed before it reaches a protocol server, so silent
//!   sockets and clients that never read cannot hold connection slots;
//! - requests in flight, node-wide (gRPC calls and streams, HTTP requests, DNS queries that
//!   wait for the disk or another node): over the limit `RESOURCE_EXHAUSTED` / `503` / DNS
//!   `REFUSED`;
//! - requests per second per client address, IPv6 clients per /64 (`limits`:
//!   governor's GCRA, burst one second's worth): `RESOURCE_EXHAUSTED` (reason 603) / `429`
//!   / DNS `REFUSED`;
//! - a request timeout: gRPC `DEADLINE_EXCEEDED`, HTTP `503`, DNS `SERVFAIL`.
//!
//! Enterprise quotas (603/604 in the core) still apply on top: admission protects the
//! node, quotas share it fairly between enterprises.
//!
//! This module knows no protocol: the limits, tickets, refusals (as a protocol-neutral
//! `Error`) and the accepting of TCP connections. Each adapter applies it: a tower layer on
//! the gRPC server (`api::grpc::admission`), a middleware in `api::http`, checks in the DNS
//! handler.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, Reason};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::limits::{ClientKey, Rates};

/// The limits, from `[limits]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Open connections per TCP listener.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per gRPC connection (advertised in SETTINGS).
    pub max_concurrent_streams: u32,
    /// Requests being served at once, node-wide (gRPC, HTTP, and DNS queries that wait).
    pub max_in_flight: usize,
    /// Requests per second from one client address, all interfaces together; 0 = no limit.
    pub client_requests_per_second: u32,
    /// Longest a unary request may take (gRPC streams: until their first response).
    pub request_timeout: Duration,
    /// A connection silent this long (before its first request, or while sending
    /// headers), or whose writes make no progress for this long, is closed.
    pub idle_timeout: Duration,
    /// Largest HTTP request body.
    pub max_http_body_bytes: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_connections: 1024,
            max_concurrent_streams: 128,
            max_in_flight: 4096,
            client_requests_per_second: 20_000,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(20),
            max_http_body_bytes: 4 << 20,
        }
    }
}

/// Why a request was refused before it reached the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client address is over its request rate.
    Rate,
    /// The node is serving `max_in_flight` requests already.
    Busy,
}

impl Refusal {
    /// The refusal as the protocol-neutral error every adapter maps with its one mapping
    /// (gRPC code, HTTP status and Handle code, DNS RCODE).
    pub fn error(self) -> Error {
        match self {
            Refusal::Rate => Error::limit(
                Reason::RequestLimit,
                "too many requests from this address: slow down",
            ),
            Refusal::Busy => Error {
                reason: Some(Reason::Busy),
                ..Error::exhausted("the node is at its limit of requests in flight: retry later")
            },
        }
    }
}

/// Counts of what admission refused, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub rate: u64,
    pub busy: u64,
    pub timeouts: u64,
    pub connections: u64,
    pub idle: u64,
}

/// The node's admission state: one per node, shared by its interfaces.
pub struct Admission {
    config: AdmissionConfig,
    in_flight: Arc<Semaphore>,
    rates: ClientRates,
    counts: Counts,
}

/// What `Refused` reports, counted as it happens.
#[derive(Default)]
struct Counts {
    rate: AtomicU64,
    busy: AtomicU64,
    timeouts: AtomicU64,
    connections: AtomicU64,
    idle: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Held while a request is served; releases its in-flight slot when dropped.
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(config: AdmissionConfig) -> Admission {
        Admission {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            rates: ClientRates::new(config.client_requests_per_second),
            config,
            counts: Counts::default(),
        }
    }

    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Admits one request from `client` (None: address unknown, rate not applied).
    pub fn admit(&self, client: Option<IpAddr>) -> Result<Ticket, Refusal> {
        if let Some(ip) = client {
            self.admit_rate(ip)?;
        }
        self.admit_in_flight()
    }

    /// The rate check alone (DNS: a query answered from memory holds nothing).
    pub fn admit_rate(&self, client: IpAddr) -> Result<(), Refusal> {
        match self.rates.admit(client) {
            true => Ok(()),
            false => Err(self.refuse(Refusal::Rate)),
        }
    }

    /// An in-flight slot alone, for a request whose rate was already admitted (a DNS query
    /// that has to wait for the disk or another node).
    pub fn admit_in_flight(&self) -> Result<Ticket, Refusal> {
        match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(permit) => Ok(Ticket { _permit: permit }),
            Err(_) => Err(self.refuse(Refusal::Busy)),
        }
    }

    fn refuse(&self, r: Refusal) -> Refusal {
        bump(match r {
            Refusal::Rate => &self.counts.rate,
            Refusal::Busy => &self.counts.busy,
        });
        r
    }

    pub fn timed_out(&self) {
        bump(&self.counts.timeouts);
    }

    pub fn refused(&self) -> Refused {
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Refused {
            rate: n(&c.rate),
            busy: n(&c.busy),
            timeouts: n(&c.timeouts),
            connections: n(&c.connections),
            idle: n(&c.idle),
        }
    }

    /// Accepts connections on `listener` until `shutdown`, at most `max_connections` open
    /// at once. Over the limit the stream gets `over_limit` (a refusal to write), if any,
    /// and is closed. A connection with neither reads nor writes for the idle timeout
    /// fails its next read, and a write that the peer leaves unread for as long fails,
    /// which closes it: silent, stalled, half-open and never-reading peers cannot keep a
    /// slot (servers keep a healthy HTTP/2 connection busy with pings every half timeout).
    /// Both closes count as `idle` refusals. The listener is closed when `shutdown` fires,
    /// so new connections are refused from then on.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
        over_limit: Option<&'static [u8]>,
        shutdown: CancellationToken,
    ) -> mpsc::Receiver<std::io::Result<Admitted>> {
        let (tx, rx) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let admission = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of descriptors and the like: pause rather than spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                    bump(&admission.counts.connections);
                    if let Some(reply) = over_limit {
                        tokio::spawn(refuse_connection(stream, reply));
                    }
                    continue;
                };
                let conn = Admitted {
                    stream,
                    peer,
                    idle: Idle::new(admission.config.idle_timeout),
                    admission: Arc::clone(&admission),
                    _permit: permit,
                };
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}

async fn refuse_connection(mut stream: TcpStream, reply: &'static [u8]) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(reply).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// A connection admitted by [`Admission::incoming`]; frees its slot when dropped.
pub struct Admitted {
    stream: TcpStream,
    peer: SocketAddr,
    idle: Idle,
    admission: Arc<Admission>,
    _permit: OwnedSemaphorePermit,
}

/// The inactivity clocks of a connection: the last read or write, and since when a write
/// has been waiting for the peer to read. Each has a timer that is only re-armed when it
/// fires early (no timer work per read or write); the write timer exists once a write had
/// to wait.
struct Idle {
    limit: Duration,
    last: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// When the pending write started waiting (`None`: the last write went through).
    stalled_since: Option<Instant>,
    write_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Idle {
    fn new(limit: Duration) -> Idle {
        Idle {
            limit,
            last: Instant::now(),
            timer: Box::pin(tokio::time::sleep(limit)),
            stalled_since: None,
            write_timer: None,
        }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// A write (or flush) went through: nothing is waiting for the peer.
    fn unstalled(&mut self) {
        self.stalled_since = None;
    }

    /// Ready when the connection has been inactive for the whole limit.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        poll_due(&mut self.timer, self.last + self.limit, cx)
    }

    /// Ready when a write has been waiting for the peer for the whole limit.
    fn poll_write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.stalled_since.get_or_insert_with(Instant::now);
        let due = since + self.limit;
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
        poll_due(timer, due, cx)
    }
}

/// Polls `timer` toward `due`, re-arming it when it fired before `due` (`due` moved).
fn poll_due(
    timer: &mut Pin<Box<tokio::time::Sleep>>,
    due: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if Instant::now() >= due {
            return Poll::Ready(());
        }
        timer.as_mut().reset(due.into());
    }
}

impl Admitted {
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The connection's socket (the gRPC server reads its addresses from it).
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    /// A write that did not go through: fails once the peer has left it unread for the
    /// idle timeout.
    fn write_result<T>(
        &mut self,
        r: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.idle.unstalled();
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle.poll_write_stalled(cx) {
                Poll::Ready(()) => {
                    bump(&self.admission.counts.idle);
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the peer stopped reading (limits.idle_timeout_secs)",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.idle.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.idle.poll_expired(cx) {
                Poll::Ready(()) => {
                    bump(&this.admission.counts.idle);
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "idle connection (limits.idle_timeout_secs)",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.idle.touch();
        }
        this.write_result(r, cx)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_flush(cx);
        this.write_result(r, cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.idle.touch();
        }
        this.write_result(r, cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Requests per second per client (an IPv4 address, an IPv6 /64), at one rate for all.
struct ClientRates {
    /// `None`: no limit.
    rate: Option<NonZeroU32>,
    rates: Rates<ClientKey>,
}

/// Clients whose request rate is tracked at once (those seen within the last second).
const MAX_TRACKED_CLIENTS: usize = 262_144;

impl ClientRates {
    fn new(rate: u32) -> ClientRates {
        ClientRates {
            rate: NonZeroU32::new(rate),
            rates: Rates::new(MAX_TRACKED_CLIENTS),
        }
    }

    fn admit(&self, ip: IpAddr) -> bool {
        match self.rate {
            None => true,
            Some(rate) => self.rates.admit(&ClientKey::of(Some(ip)), rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_rate_is_per_address_and_per_ipv6_64() {
        let rates = ClientRates::new(100);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let admitted = (0..150).filter(|_| rates.admit(ip("192.0.2.1"))).count();
        assert_eq!(admitted, 100, "a burst of one second");
        assert!(
            rates.admit(ip("192.0.2.2")),
            "another address has its own bucket"
        );
        let admitted = (0..150)
            .filter(|i| rates.admit(ip(&format!("2001:db8:0:1::{i:x}"))))
            .count();
        assert_eq!(admitted, 100, "one /64 is one client");
        assert!(
            (0..1000).all(|_| ClientRates::new(0).admit(ip("192.0.2.1"))),
            "0 = off"
        );
    }

    #[test]
    fn in_flight_slots_are_released_with_the_ticket() {
        let admission = Admission::new(AdmissionConfig {
            max_in_flight: 2,
            client_requests_per_second: 0,
            ..AdmissionConfig::default()
        });
        let t1 = admission.admit(None).unwrap();
        let _t2 = admission.admit(None).unwrap();
        assert_eq!(admission.admit(None).err(), Some(Refusal::Busy));
        drop(t1);
        assert!(admission.admit(None).is_ok());
        assert_eq!(admission.refused().busy, 1);
    }
}
