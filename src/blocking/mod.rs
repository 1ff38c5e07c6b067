//! How blocking work leaves the async workers: the one policy, used by every caller.
//!
//! - [`run`]: everything that may block (store writes and admin work, backups, `/metrics`,
//!   the embedded top-level node's calls, opening a node, joining threads) runs on tokio's
//!   blocking pool.
//! - [`ReadPool`]: resolutions that may wait for the disk run on a few store-read threads
//!   instead (measured: see its module).
//! - [`spawn_bulk`]: a bulk load (a `BatchRegister` stream: decoding its messages,
//!   checking and writing them) runs on a runtime of its own whose threads have a lower CPU
//!   priority (nice +10), so resolutions keep the cores they need while an import uses
//!   the rest (BENCHMARKS.md, reads during an online import).
//!
//! Anonymous reads that memory answers stay on the async worker or the DNS receive thread
//! that asked (`Core::resolve_routed`, `Core::resolve_now`): they never block.

mod reads;

pub use reads::ReadPool;

use std::future::Future;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// How much lower the bulk runtime's threads run than the node's (added to their nice
/// value; 19 at most).
const BULK_NICENESS: i32 = 10;
/// Blocking threads of the bulk runtime: a stream has at most one message being checked
/// and one being written (its tasks wait for room beyond that).
const BULK_BLOCKING_THREADS: usize = 4;

static BULK: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();

/// Spawns `task` on the bulk runtime (one async worker, a few blocking threads, all at a
/// lower CPU priority); [`run`] inside it uses that runtime's blocking threads. Where the
/// runtime cannot be started, the task runs on the caller's runtime (logged once).
pub fn spawn_bulk<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match BULK.get_or_init(start_bulk) {
        Some(runtime) => runtime.spawn(task),
        None => tokio::spawn(task),
    }
}

fn start_bulk() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(BULK_BLOCKING_THREADS)
        .thread_name("bulk")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
        .map_err(|e| tracing::warn!(error = %e, "no bulk runtime: imports share the node's"))
        .ok()
}

/// Sets the calling thread's nice value to the process's (its main thread's) plus
/// [`BULK_NICENESS`]: on Linux a nice value is per thread, and a thread inherits its
/// creator's. Raising a nice value needs no privilege; a failure only costs priority.
fn lower_priority() {
    let base = rustix::process::getpriority_process(Some(rustix::process::getpid())).unwrap_or(0);
    let me = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(me), (base + BULK_NICENESS).min(19)) {
        tracing::debug!(error = %e, "bulk thread keeps its CPU priority");
    }
}

/// Runs `f` on the blocking pool and waits for it. Errors: `Internal` when `f` panicked.
pub async fn run<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("blocking task failed: {e}")))
}

#[cfg(test)]
mod tests {
    fn niceness() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    #[tokio::test]
    async fn bulk_work_runs_at_a_lower_priority_than_the_callers() {
        let mine = niceness();
        let (worker, blocking) = crate::blocking::spawn_bulk(async {
            let blocking = crate::blocking::run(niceness).await.unwrap();
            (niceness(), blocking)
        })
        .await
        .unwrap();
        let lower = (mine + crate::blocking::BULK_NICENESS).min(19);
        assert_eq!((worker, blocking), (lower, lower));
        assert_eq!(niceness(), mine, "the caller's thread keeps its priority");
    }
}
