//! DNS over UDP: receive threads that answer from memory, tasks for the rest.
//!
//! One OS thread per core blocks in `recv_from` on the shared socket and answers every
//! query it can without waiting ([`DnsHandler::handle_now`]: a local identifier whose
//! block is cached, or an answer that needs no resolution) before reading the next one.
//! No task, wake-up or thread hop per packet: measured with `scripts/bench.sh dns`, the
//! tokio receive loops this replaces spent about a fifth of the node's CPU scheduling
//! and waking workers. A query that needs the disk or another node takes one of the node's
//! in-flight slots (REFUSED at once when none is free) and becomes a task on the runtime,
//! which sends its answer on the same socket when it has one, or SERVFAIL at the request
//! timeout, so a slow forwarded answer never holds up a receive thread and a flood of
//! queries that miss the cache holds at most `limits.max_in_flight` tasks.

use std::net::UdpSocket as StdUdpSocket;
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

fn receive(
    handler: &Arc<DnsHandler>,
    socket: &Arc<StdUdpSocket>,
    shutdown: &CancellationToken,
    runtime: &tokio::runtime::Handle,
) {
    let mut buf = vec![0u8; 65_535];
    while !shutdown.is_cancelled() {
        let (len, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        let packet = &buf[..len];
        match handler.handle_now(packet, Transport::Udp, Some(peer.ip())) {
            Now::Answer(Some(answer)) => {
                let _ = socket.send_to(&answer, peer);
            }
            Now::Answer(None) => {}
            Now::Later(question) => {
                let (handler, socket) = (Arc::clone(handler), Arc::clone(socket));
                runtime.spawn(async move {
                    // UDP sends do not wait for the peer; this blocks only while the
                    // socket's send buffer is full.
                    if let Some(answer) = handler.answer_later(question).await {
                        let _ = socket.send_to(&answer, peer);
                    }
                });
            }
        }
    }
}
