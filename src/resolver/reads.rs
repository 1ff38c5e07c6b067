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

use crate::error::{Error, Result};

type Job = Box<dyn FnOnce() + Send>;

/// A queue of store reads and the threads that run them. Dropping the pool closes the
/// queue: the threads finish the reads already queued and exit.
pub(crate) struct ReadPool {
    jobs: crossbeam_channel::Sender<Job>,
}

impl ReadPool {
    /// Starts `threads` readers (at least one).
    pub(crate) fn start(threads: usize) -> Result<ReadPool> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
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
        Ok(ReadPool { jobs })
    }

    /// Runs `f` on a reader thread and waits for its result.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(f());
            }))
            .map_err(|_| Error::internal("the store-read threads have stopped"))?;
        answered
            .await
            .map_err(|_| Error::internal("a store read failed (its thread panicked)"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_run_on_the_pool_and_a_panic_fails_only_its_own_read() {
        // One thread: a panic that killed it would leave the later reads unanswered.
        let pool = ReadPool::start(1).unwrap();
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
}
