//! The record cache: encoded records of recently resolved identifiers, in memory, in front
//! of any [`Store`].
//!
//! A resolution served from the block cache still walks RocksDB's read path (memtables,
//! filter and index partitions, the data block's hash index): 27–40 % of the node's CPU
//! in the DNS and gRPC profiles at 1M records (BENCHMARKS.md). This cache answers a
//! repeated identifier with one hash lookup. It holds only `records` entries that exist.
//!
//! Coherence: every write goes through [`Store::write`] here. After the inner store has
//! applied a batch, each `records` key in it is removed from its shard and the shard's
//! generation bumped, under the shard's lock. A reader that missed notes the generation
//! before reading the inner store and inserts what it read only if the generation is
//! unchanged, under the same lock; so a value read before a write committed is never
//! inserted after that write's removal, and once `write` returns no read sees the old
//! value. Offline ingestion (`ingest_staged`) empties the cache.
//!
//! Eviction is CLOCK (second chance) per shard, by bytes (keys, values and a fixed
//! overhead per entry): a record read since it was last passed over is kept for another
//! round, so a hot set stays while a scan of cold identifiers flows through. Keys are
//! hashed with a randomly seeded hasher (they are identifiers clients chose).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::{BackupInfo, Batch, Durability, Op, SharedStore, Staging, Store, StoreResult, Table};

const SHARDS: usize = 64;
/// Bytes counted per entry beyond its key and value (map slot, queue slot, allocations).
const ENTRY_OVERHEAD: usize = 96;

struct Entry {
    value: Box<[u8]>,
    /// Read since eviction last passed over it.
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    /// The clock: keys in the order eviction visits them; may hold keys already removed
    /// (skipped when evicting).
    order: VecDeque<Box<[u8]>>,
    bytes: usize,
    generation: u64,
}

impl Shard {
    fn get(&mut self, key: &[u8]) -> Option<&[u8]> {
        let e = self.map.get_mut(key)?;
        e.referenced = true;
        Some(&e.value)
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.map.remove(key) {
            self.bytes -= key.len() + e.value.len() + ENTRY_OVERHEAD;
        }
    }

    fn insert(&mut self, key: &[u8], value: &[u8], budget: usize) {
        let size = key.len() + value.len() + ENTRY_OVERHEAD;
        if size > budget {
            return;
        }
        self.remove(key);
        while self.bytes + size > budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            match self.map.get_mut(&old) {
                // A second chance: it goes round once more, unmarked.
                Some(e) if e.referenced => {
                    e.referenced = false;
                    self.order.push_back(old);
                }
                Some(_) => self.remove(&old),
                None => {}
            }
        }
        self.map.insert(
            key.into(),
            Entry {
                value: value.into(),
                referenced: false,
            },
        );
        self.order.push_back(key.into());
        self.bytes += size;
        // Removed keys linger in `order`; compact it when they dominate.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }
}

/// A [`Store`] with a record cache in front of it (see the module doc).
pub struct CachedStore {
    inner: SharedStore,
    shards: Box<[Mutex<Shard>]>,
    /// Bytes per shard.
    budget: usize,
}

impl CachedStore {
    /// Caches up to `bytes` of records in front of `inner`.
    pub fn new(inner: SharedStore, bytes: usize) -> CachedStore {
        CachedStore {
            inner,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            budget: bytes / SHARDS,
        }
    }

    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        // FNV-1a: the shard only spreads the lock; the map hashes on its own.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.shards[(h % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The cached record, or else `read` from the inner store (`None`: not in memory
    /// there), filling the cache with a record it finds unless a write got in between.
    fn read_through(
        &self,
        key: &[u8],
        read: impl FnOnce() -> StoreResult<Option<Option<Vec<u8>>>>,
    ) -> StoreResult<Option<Option<Vec<u8>>>> {
        let generation = {
            let mut shard = self.shard(key);
            if let Some(v) = shard.get(key) {
                return Ok(Some(Some(v.to_vec())));
            }
            shard.generation
        };
        let v = read()?;
        if let Some(Some(v)) = &v {
            self.fill(key, v, generation);
        }
        Ok(v)
    }

    /// Inserts what a reader found if no write touched the shard since `generation`.
    fn fill(&self, key: &[u8], value: &[u8], generation: u64) {
        let mut shard = self.shard(key);
        if shard.generation == generation {
            shard.insert(key, value, self.budget);
        }
    }

    fn invalidate(&self, key: &[u8]) {
        let mut shard = self.shard(key);
        shard.generation += 1;
        shard.remove(key);
    }

    fn clear(&self) {
        for s in self.shards.iter() {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.generation += 1;
            s.map.clear();
            s.order.clear();
            s.bytes = 0;
        }
    }

    /// Records held and their bytes (as counted for the budget).
    pub fn usage(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(n, b), s| {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            (n + s.map.len() as u64, b + s.bytes as u64)
        })
    }
}

impl Store for CachedStore {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        if table != Table::Records {
            return self.inner.get(table, key);
        }
        self.read_through(key, || self.inner.get(table, key).map(Some))
            .map(Option::flatten)
    }

    fn get_cached(&self, table: Table, key: &[u8]) -> StoreResult<Option<Option<Vec<u8>>>> {
        if table != Table::Records {
            return self.inner.get_cached(table, key);
        }
        self.read_through(key, || self.inner.get_cached(table, key))
    }

    fn multi_get(&self, table: Table, keys: &[&[u8]]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        self.inner.multi_get(table, keys)
    }

    fn write(&self, batch: Batch, durability: Durability) -> StoreResult<()> {
        let touched: Vec<Vec<u8>> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Put(Table::Records, k, _) | Op::Delete(Table::Records, k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        let written = self.inner.write(batch, durability);
        // Also after a failed write: it may have been applied in part of the engine.
        for k in &touched {
            self.invalidate(k);
        }
        written
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(table, prefix, after, limit)
    }

    fn counter(&self, table: Table, key: &[u8]) -> StoreResult<i64> {
        self.inner.counter(table, key)
    }

    fn flush(&self) -> StoreResult<()> {
        self.inner.flush()
    }

    fn stage(&self, name: &str) -> StoreResult<Box<dyn Staging + '_>> {
        self.inner.stage(name)
    }

    fn ingest_staged(&self, name: &str, table: Table) -> StoreResult<()> {
        let done = self.inner.ingest_staged(name, table);
        if table == Table::Records {
            self.clear();
        }
        done
    }

    fn discard_staged(&self, name: &str) -> StoreResult<()> {
        self.inner.discard_staged(name)
    }

    fn properties(&self) -> Vec<(&'static str, u64)> {
        let mut p = self.inner.properties();
        let (records, bytes) = self.usage();
        p.push(("record-cache-entries", records));
        p.push(("record-cache-bytes", bytes));
        p.push(("record-cache-capacity", (self.budget * SHARDS) as u64));
        p
    }

    fn backup(&self, dest: &std::path::Path) -> StoreResult<BackupInfo> {
        self.inner.backup(dest)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::memory::MemoryStore;

    fn put(store: &dyn Store, key: &[u8], value: &[u8]) {
        let mut b = Batch::new();
        b.put(Table::Records, key.to_vec(), value.to_vec());
        store.write(b, Durability::Wal).unwrap();
    }

    #[test]
    fn a_write_is_seen_by_the_next_read() {
        let store = CachedStore::new(Arc::new(MemoryStore::new()), 1 << 20);
        put(&store, b"88.101/a", b"1");
        assert_eq!(
            store.get(Table::Records, b"88.101/a").unwrap().unwrap(),
            b"1"
        );
        assert_eq!(store.usage().0, 1, "the read filled the cache");
        put(&store, b"88.101/a", b"2");
        assert_eq!(
            store.get_cached(Table::Records, b"88.101/a").unwrap(),
            Some(Some(b"2".to_vec()))
        );
        let mut b = Batch::new();
        b.delete(Table::Records, b"88.101/a".to_vec());
        store.write(b, Durability::Wal).unwrap();
        assert_eq!(store.get(Table::Records, b"88.101/a").unwrap(), None);
        assert_eq!(store.usage().0, 0, "absent records are not cached");
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let store = CachedStore::new(Arc::new(MemoryStore::new()), SHARDS * 1024);
        for i in 0..2000u32 {
            let key = format!("88.101/{i}");
            put(&store, key.as_bytes(), &[7u8; 100]);
            store.get(Table::Records, key.as_bytes()).unwrap();
        }
        let (n, bytes) = store.usage();
        assert!(bytes <= (SHARDS * 1024) as u64, "{bytes} bytes held");
        assert!(n > 0 && n < 2000, "{n} entries held");
        // Every record still reads correctly, cached or not.
        for i in 0..2000u32 {
            let key = format!("88.101/{i}");
            assert_eq!(
                store.get(Table::Records, key.as_bytes()).unwrap().unwrap(),
                vec![7u8; 100]
            );
        }
    }

    #[test]
    fn a_record_read_again_outlives_a_scan_of_cold_ones() {
        // One shard's worth of budget is what matters: every key below lands in some shard,
        // and the hot key's shard sees cold keys pass through many times over.
        let store = CachedStore::new(Arc::new(MemoryStore::new()), SHARDS * 2048);
        put(&store, b"88.101/hot", &[1u8; 100]);
        for i in 0..20_000u32 {
            let key = format!("88.101/cold-{i}");
            put(&store, key.as_bytes(), &[7u8; 100]);
            store.get(Table::Records, key.as_bytes()).unwrap();
            // The hot record, read between the cold ones, is never evicted: each time the
            // clock reaches it, it was read since.
            store.get(Table::Records, b"88.101/hot").unwrap();
            let shard = store.shard(b"88.101/hot");
            assert!(shard.map.contains_key(&b"88.101/hot"[..]), "evicted at {i}");
        }
        // FIFO would have evicted it: far more cold bytes than the budget passed through.
        const { assert!(20_000 * (100 + ENTRY_OVERHEAD) > 20 * SHARDS * 2048) };
    }

    #[test]
    fn readers_racing_a_writer_never_see_an_overwritten_value() {
        // Readers fill the cache while a writer overwrites one record with increasing
        // versions; after each write returns, every read must give at least that version.
        let store = Arc::new(CachedStore::new(Arc::new(MemoryStore::new()), 1 << 20));
        put(store.as_ref(), b"88.101/k", &0u32.to_be_bytes());
        let written = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, written) = (Arc::clone(&store), Arc::clone(&written));
                std::thread::spawn(move || {
                    let mut last = 0;
                    while last < 20_000 {
                        let floor = written.load(std::sync::atomic::Ordering::SeqCst);
                        let v = store.get(Table::Records, b"88.101/k").unwrap().unwrap();
                        let v = u32::from_be_bytes(v.try_into().unwrap());
                        assert!(v >= floor, "read {v} after {floor} was written");
                        last = v;
                    }
                })
            })
            .collect();
        for i in 1..=20_000u32 {
            put(store.as_ref(), b"88.101/k", &i.to_be_bytes());
            written.store(i, std::sync::atomic::Ordering::SeqCst);
        }
        for r in readers {
            r.join().unwrap();
        }
    }
}
