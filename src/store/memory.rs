//! The in-memory twin of the RocksDB store: same contract, no durability.
//!
//! Used by unit tests and to check that the `Store` contract does not lean on RocksDB.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, RwLock};

use super::{codec, Batch, Durability, Op, Staging, Store, StoreError, StoreResult, Table};

/// One table: ordered keys, like an LSM's sorted view.
type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// Staged entries per table, in key order.
type Staged = HashMap<Table, Vec<(Vec<u8>, Vec<u8>)>>;

/// A `Store` held in ordered maps behind one lock (writes are atomic by holding it).
#[derive(Default)]
pub struct MemoryStore {
    tables: RwLock<HashMap<Table, Tree>>,
    /// Staging areas by name ([`Store::stage`]).
    staged: Mutex<HashMap<String, Staged>>,
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

    fn stage(&self, name: &str) -> StoreResult<Box<dyn Staging + '_>> {
        self.discard_staged(name)?;
        Ok(Box::new(MemoryStaging {
            store: self,
            name: name.to_owned(),
            tables: HashMap::new(),
        }))
    }

    fn ingest_staged(&self, name: &str, table: Table) -> StoreResult<()> {
        let entries = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(name)
            .and_then(|area| area.remove(&table))
            .unwrap_or_default();
        let mut batch = Batch::new();
        for (k, v) in entries {
            batch.put(table, k, v);
        }
        self.write(batch, Durability::Sync)
    }

    fn discard_staged(&self, name: &str) -> StoreResult<()> {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }
}

struct MemoryStaging<'a> {
    store: &'a MemoryStore,
    name: String,
    tables: Staged,
}

impl Staging for MemoryStaging<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> StoreResult<()> {
        let entries = self.tables.entry(table).or_default();
        if entries
            .last()
            .is_some_and(|(last, _)| last.as_slice() >= key)
        {
            return Err(StoreError(format!(
                "staged keys of {} out of order",
                table.name()
            )));
        }
        entries.push((key.to_vec(), value.to_vec()));
        Ok(())
    }

    fn finish(self: Box<Self>) -> StoreResult<()> {
        self.store
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.name, self.tables);
        Ok(())
    }
}
