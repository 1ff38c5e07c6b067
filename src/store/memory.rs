//! The in-memory twin of the RocksDB store: same contract, no durability.
//!
//! Used by unit tests and to check that the `Store` contract does not lean on RocksDB.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::RwLock;

use super::{codec, Batch, Durability, Op, Store, StoreResult, Table};

/// One table: ordered keys, like an LSM's sorted view.
type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// A `Store` held in ordered maps behind one lock (writes are atomic by holding it).
#[derive(Default)]
pub struct MemoryStore {
    tables: RwLock<HashMap<Table, Tree>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        Ok(tables.get(&table).and_then(|t| t.get(key).cloned()))
    }

    fn write(&self, batch: Batch, _durability: Durability) -> StoreResult<()> {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        for op in batch.ops {
            match op {
                Op::Put(t, k, v) => {
                    tables.entry(t).or_default().insert(k, v);
                }
                Op::Delete(t, k) => {
                    tables.entry(t).or_default().remove(&k);
                }
                Op::Add(t, k, delta) => {
                    let entry = tables.entry(t).or_default().entry(k).or_default();
                    let now = codec::decode_counter(entry).wrapping_add(delta);
                    *entry = codec::encode_counter(now).to_vec();
                }
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let Some(t) = tables.get(&table) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(t.range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
