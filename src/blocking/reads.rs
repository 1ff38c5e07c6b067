//! The store-read threads: a small fixed pool where resolutions whose record is not in the
//! block cache wait for the disk, so the async workers never do.
//!
//! Why not tokio's blocking pool: it starts a thread per waiting task (up to 512). With 64
//! requests in flight on two cores, a fifth of the node's CPU went to putting those threads
//! to sleep and waking them, and RocksDB made a fresh ZSTD context whenever its per-core
//! one was held by a preempted thread. A few readers taking work from one queue, without
//! sleeping while there is any: 12,124 → 20,906 resolves/s at 100M records, same data and
//! client. How many: fewer threads suit a store the OS page cache holds, more suit one
//! that waits for the disk (measured at 100M, BENCHMARKS.md); four per core does well at
//! both. Writes and other blocking work still use [`super::Core::blocking`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, ErrorKind, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A bounded queue of store reads and the threads that run them. Dropping the pool closes
/// the queue: the threads finish the reads already queued and exit.
///
/// Admission keeps the requests waiting here below `limits.max_in_flight`, the queue's
/// capacity; a read whose request gave up (timed out, disconnected) is skipped when its
/// turn comes. The queue fills only when the store falls that far behind: then a read is
/// refused at once (`ResourceExhausted`, counted) rather than queued.
pub struct ReadPool {
    jobs: crossbeam_channel::Sender<Job>,
    refused: AtomicU64,
}

impl ReadPool {
    /// Starts `threads` readers (at least one) behind a queue of `capacity` reads (at
    /// least one).
    pub fn start(threads: usize, capacity: usize) -> Result<ReadPool> {
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(capacity.max(1));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("store-read-{i}"))
                .spawn(move || {
                    for job in queue {
                        // A panicking read fails its own request (its answer channel is
                        // dropped), not the thread.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .map_err(|e| Error::internal(format!("starting store-read thread {i}: {e}")))?;
        }
        Ok(ReadPool {
            jobs,
            refused: AtomicU64::new(0),
        })
    }

    /// Runs `f` on a reader thread and waits for its result; `f` does not run if this
    /// future is dropped before its turn.
    ///
    /// Errors: `ResourceExhausted` when the queue is full (never waits for room).
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if !answer.is_closed() {
                let _ = answer.send(f());
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Error::new(
                    ErrorKind::ResourceExhausted,
                    "too many reads are waiting for the store: retry later",
                ));
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(Error::internal("the store-read threads have stopped"))
            }
        }
        answered
            .await
            .map_err(|_| Error::internal("a store read failed (its thread panicked)"))?
    }

    /// Reads refused because the queue was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_run_on_the_pool_and_a_panic_fails_only_its_own_read() {
        // One thread: a panic that killed it would leave the later reads unanswered.
        let pool = ReadPool::start(1, 16).unwrap();
        let name = pool
            .run(|| Ok(std::thread::current().name().unwrap_or("").to_string()))
            .await
            .unwrap();
        assert!(name.starts_with("store-read-"), "ran on {name:?}");
        let failed = pool.run::<(), _>(|| panic!("a bad read")).await;
        assert_eq!(failed.unwrap_err().kind, crate::error::ErrorKind::Internal);
        let mut answers = Vec::new();
        for i in 0..8u32 {
            answers.push(pool.run(move || Ok(i * 2)));
        }
        let mut sum = 0;
        for a in answers {
            sum += a.await.unwrap();
        }
        assert_eq!(sum, 56);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_abandoned_reads_are_skipped() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let pool = Arc::new(ReadPool::start(1, 2).unwrap());
        // The only reader waits inside a read until released.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let p = Arc::clone(&pool);
        let blocking = tokio::spawn(async move {
            p.run(move || {
                let _ = started.send(());
                let _ = wait.recv();
                Ok(0u32)
            })
            .await
        });
        running.await.unwrap();
        // Two reads fill the queue; the first is abandoned by its caller.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let mut abandoned = Box::pin(pool.run(move || {
            flag.store(true, Ordering::SeqCst);
            Ok(1u32)
        }));
        assert!(poll_once(abandoned.as_mut()).await.is_none());
        let p = Arc::clone(&pool);
        let kept = tokio::spawn(async move { p.run(|| Ok(2u32)).await });
        while pool.jobs.len() < 2 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run(|| Ok(3u32)).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::ResourceExhausted, "{refused:?}");
        assert_eq!(pool.refused(), 1);
        drop(abandoned);
        release.send(()).unwrap();
        assert_eq!(blocking.await.unwrap().unwrap(), 0);
        assert_eq!(kept.await.unwrap().unwrap(), 2);
        assert!(!ran.load(Ordering::SeqCst), "an abandoned read ran");
    }

    /// Polls `f` once: its output if it was ready.
    async fn poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
