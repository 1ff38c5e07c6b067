//! Striped latches: serialise read-check-write sequences on the same key.
//!
//! RocksDB batches are atomic but a create must read "absent" and write in one step. Holding
//! the key's stripe across the read and the write makes that step atomic between writers of
//! this process (readers never take latches). Many keys are latched in stripe order, so two
//! batches can never deadlock.

use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};

pub struct Latches {
    stripes: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Latches {
    pub fn new(stripes: usize) -> Latches {
        Latches {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }

    fn stripe<K: Hash + ?Sized>(&self, key: &K) -> usize {
        (self.hasher.hash_one(key) % self.stripes.len() as u64) as usize
    }

    /// Latches one key until the guard drops.
    pub fn lock<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, ()> {
        let i = self.stripe(key);
        self.stripes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Latches every key (deduplicated, in stripe order) until the guards drop.
    pub fn lock_many<'k, K: Hash + ?Sized + 'k>(
        &self,
        keys: impl IntoIterator<Item = &'k K>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = keys.into_iter().map(|k| self.stripe(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|i| self.stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{self, RecvTimeoutError};
    use std::time::Duration;

    /// Far more than the batches take (milliseconds): only a deadlock reaches it.
    const BOUND: Duration = Duration::from_secs(30);

    #[test]
    fn overlapping_batches_do_not_deadlock() {
        // The batches run on a thread of their own: a deadlock fails the test after
        // `BOUND` instead of hanging the suite (the stuck threads are left behind).
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let latches = Latches::new(8);
            std::thread::scope(|s| {
                for t in 0..4 {
                    let latches = &latches;
                    s.spawn(move || {
                        for i in 0..500 {
                            let keys: Vec<String> = (0..5)
                                .map(|k| format!("{}", (i * 7 + k * (t + 1)) % 50))
                                .collect();
                            let _g = latches.lock_many(keys.iter().map(String::as_str));
                        }
                    });
                }
            });
            let _ = done.send(());
        });
        match finished.recv_timeout(BOUND) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                panic!("overlapping batches deadlocked: not done within {BOUND:?}")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("a batch thread panicked"),
        }
    }
}
