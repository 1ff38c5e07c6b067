//! DNS over UDP: receive threads that answer from memory, tasks for the rest.
//!
//! One OS thread per core blocks in `recvmmsg` on the shared socket, takes every query
//! waiting (up to 32), answers each it can without waiting ([`DnsHandler::handle_now`]:
//! a local identifier whose block is cached, or an answer that needs no resolution) and
//! sends those answers with one `sendmmsg` before reading again.
//! No task, wake-up or thread hop per packet: measured with `scripts/bench.sh dns`, the
//! tokio receive loops this replaces spent about a fifth of the node's CPU scheduling
//! and waking workers. A query that needs the disk or another node takes one of the node's
//! in-flight slots (REFUSED at once when none is free) and becomes a task on the runtime,
//! which sends its answer on the same socket when it has one, or SERVFAIL at the request
//! timeout, so a slow forwarded answer never holds up a receive thread and a flood of
//! queries that miss the cache holds at most `limits.max_in_flight` tasks.

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{DnsHandler, Now, Transport};

/// How often a blocked receive thread looks at the shutdown token.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Serves DNS over UDP until `shutdown`; returns when every receive thread has stopped.
pub async fn serve_udp(handler: Arc<DnsHandler>, socket: UdpSocket, shutdown: CancellationToken) {
    let socket = match prepare(socket) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "DNS over UDP not served");
            return;
        }
    };
    let runtime = tokio::runtime::Handle::current();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut receivers = Vec::with_capacity(threads);
    for i in 0..threads {
        let (handler, socket, shutdown, runtime) = (
            Arc::clone(&handler),
            Arc::clone(&socket),
            shutdown.clone(),
            runtime.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || receive(&handler, &socket, &shutdown, &runtime));
        match spawned {
            Ok(t) => receivers.push(t),
            Err(e) => tracing::error!(error = %e, "DNS UDP receive thread not started"),
        }
    }
    shutdown.cancelled().await;
    let _ = crate::blocking::run(move || {
        for t in receivers {
            let _ = t.join();
        }
    })
    .await;
}

/// The socket in blocking mode with a receive timeout, so threads see the shutdown.
fn prepare(socket: UdpSocket) -> std::io::Result<StdUdpSocket> {
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(SHUTDOWN_POLL))?;
    Ok(socket)
}

/// Datagrams taken from the socket (and answers sent) per system call at most.
const BATCH: usize = 32;
/// A query longer than this is not a query any client sends: FORMERR, from its header.
const MAX_QUERY: usize = 4096;

/// Receives up to [`BATCH`] queries per `recvmmsg` (blocking for the first only), answers
/// what can be answered now and sends those answers with one `sendmmsg`: under load, one
/// pair of system calls carries many queries (in the DNS profile a `sendto` per answer was
/// a third of the node's CPU, most of it waking the client's thread for each datagram).
fn receive(
    handler: &Arc<DnsHandler>,
    socket: &Arc<StdUdpSocket>,
    shutdown: &CancellationToken,
    runtime: &tokio::runtime::Handle,
) {
    use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::AsRawFd;

    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_QUERY]; BATCH];
    let mut received: Vec<(usize, bool, Option<SocketAddr>)> = Vec::with_capacity(BATCH);
    let mut answers: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut peers: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    while !shutdown.is_cancelled() {
        received.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(results) => received.extend(results.map(|r| {
                    let cut = r.flags.contains(MsgFlags::MSG_TRUNC);
                    (r.bytes, cut, r.address.and_then(|a| socket_addr(&a)))
                })),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                    continue;
                }
            }
        }
        answers.clear();
        peers.clear();
        for (i, &(len, cut, peer)) in received.iter().enumerate() {
            let Some(peer) = peer else {
                continue;
            };
            let packet = &bufs[i][..len.min(MAX_QUERY)];
            let answer = match cut {
                // Longer than any query: FORMERR from its header, unread.
                true => handler.malformed(packet, std::time::Instant::now()),
                false => answer_now(handler, packet, peer, socket, runtime),
            };
            if let Some(answer) = answer {
                answers.push(answer);
                peers.push(Some(SockaddrStorage::from(peer)));
            }
        }
        if answers.is_empty() {
            continue;
        }
        let slices: Vec<[IoSlice<'_>; 1]> = answers.iter().map(|a| [IoSlice::new(a)]).collect();
        let sent = sendmmsg(
            fd,
            &mut send_headers,
            &slices,
            &peers,
            [],
            MsgFlags::empty(),
        )
        .map(|r| r.count())
        .unwrap_or(0);
        // What one call did not take (a full send buffer, an error) goes one by one.
        for (answer, peer) in answers.iter().zip(&peers).skip(sent) {
            if let Some(peer) = peer.as_ref().and_then(socket_addr) {
                let _ = socket.send_to(answer, peer);
            }
        }
    }
}

fn socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// The answer to one datagram if it has one now; a question that needs the disk or another
/// node becomes a task that sends its answer itself.
fn answer_now(
    handler: &Arc<DnsHandler>,
    packet: &[u8],
    peer: SocketAddr,
    socket: &Arc<StdUdpSocket>,
    runtime: &tokio::runtime::Handle,
) -> Option<Vec<u8>> {
    match handler.handle_now(packet, Transport::Udp, Some(peer.ip())) {
        Now::Answer(answer) => answer,
        Now::Later(question) => {
            let (handler, socket) = (Arc::clone(handler), Arc::clone(socket));
            runtime.spawn(async move {
                // UDP sends do not wait for the peer; this blocks only while the
                // socket's send buffer is full.
                if let Some(answer) = handler.answer_later(question).await {
                    let _ = socket.send_to(&answer, peer);
                }
            });
            None
        }
    }
}
