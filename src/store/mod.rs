//! Storage: one narrow, synchronous key-value trait and its two implementations.
//!
//! Owns the tables (column families), the batch/durability contract, the on-disk encodings
//! (`codec`) and the record cache that can front any store (`cache`). Knows nothing of
//! gRPC, identifiers' syntax rules or authorisation; `rocks` is the only file that imports
//! `rocksdb`. The in-memory twin and the cached store run the same conformance suite
//! (`conformance`, test-only) as RocksDB.
//!
//! Calls block: async callers cross over through `resolver::Core` (see there).

pub mod backup;
pub mod cache;
pub mod codec;
pub mod memory;
#[cfg(feature = "rocks")]
pub mod rocks;

#[cfg(all(test, feature = "rocks"))]
mod conformance;

use std::sync::Arc;

/// The tables of a node. Each is a RocksDB column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// identifier → encoded record.
    Records,
    /// enterprise prefix → encoded enterprise.
    Enterprises,
    /// credential id → encoded credential (token hash, subject).
    Credentials,
    /// template identifier → encoded template.
    Templates,
    /// counter name → i64, changed only by [`Op::Add`].
    Counters,
    /// node-level settings (schema version, seed marker, node identity).
    Meta,
    /// Top-level node only: node prefix → delegation (serving node, endpoints).
    Delegations,
    /// Top-level node only: node prefix → the node's latest statistics report.
    Reports,
    /// `<scope>\0<grantee prefix>` → grant: partner read access to a prefix or identifier.
    Grants,
    /// Operation log: sequence number (u64 big-endian) → hash-chained entry.
    Oplog,
    /// `<identifier>\0<seq>` → the log entries of one identifier: empty, or for a bulk
    /// entry the record's 32-byte content hash (64 hex digits in stores written before).
    OplogIndex,
    /// Top-level node only: `<node prefix>\0<seq>` → a signed log head reported by the node.
    Heads,
}

impl Table {
    pub const ALL: [Table; 12] = [
        Table::Records,
        Table::Enterprises,
        Table::Credentials,
        Table::Templates,
        Table::Counters,
        Table::Meta,
        Table::Delegations,
        Table::Reports,
        Table::Grants,
        Table::Oplog,
        Table::OplogIndex,
        Table::Heads,
    ];

    /// Column family name; part of the on-disk format.
    pub fn name(self) -> &'static str {
        match self {
            Table::Records => "records",
            Table::Enterprises => "enterprises",
            Table::Credentials => "credentials",
            Table::Templates => "templates",
            Table::Counters => "counters",
            Table::Meta => "meta",
            Table::Delegations => "delegations",
            Table::Reports => "reports",
            Table::Grants => "grants",
            Table::Oplog => "oplog",
            Table::OplogIndex => "oplog_index",
            Table::Heads => "heads",
        }
    }
}

/// One change inside an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Table, Vec<u8>, Vec<u8>),
    Delete(Table, Vec<u8>),
    /// Adds a signed delta to an i64 counter (missing counts as 0). Commutative, so
    /// concurrent writers never lose an increment.
    Add(Table, Vec<u8>, i64),
}

/// An atomic group of changes: all are applied or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.ops.push(Op::Put(table, key.into(), value));
    }
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(table, key.into()));
    }
    pub fn add(&mut self, table: Table, key: impl Into<Vec<u8>>, delta: i64) {
        self.ops.push(Op::Add(table, key.into(), delta));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// How durable a write must be before `write` returns (and the client is told "done").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// In the write-ahead log (OS page cache): survives a process crash, not a power loss.
    #[default]
    Wal,
    /// In the write-ahead log and fsynced: survives a power loss.
    Sync,
}

/// A storage failure. Carries detail for the log, never for clients.
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage seam. Implementations must make each `write` atomic and durable to the
/// requested level before returning, and `get`/`scan` must see every returned write.
pub trait Store: Send + Sync + 'static {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;

    /// A point read that never waits for the disk: `None` when the answer is not in memory
    /// (RocksDB: memtables and block cache), so the caller can move the read to a thread
    /// that may block. Stores held in memory always answer.
    fn get_cached(&self, table: Table, key: &[u8]) -> StoreResult<Option<Option<Vec<u8>>>> {
        self.get(table, key).map(Some)
    }

    /// Point reads of many keys in one call, results in the order of `keys`.
    fn multi_get(&self, table: Table, keys: &[&[u8]]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(table, k)).collect()
    }

    /// Applies every op atomically.
    fn write(&self, batch: Batch, durability: Durability) -> StoreResult<()>;

    /// Up to `limit` entries with keys starting with `prefix` and strictly greater than
    /// `after` (when given), in key order.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Reads an `Op::Add` counter (0 when absent).
    fn counter(&self, table: Table, key: &[u8]) -> StoreResult<i64> {
        Ok(self
            .get(table, key)?
            .map(|v| codec::decode_counter(&v))
            .unwrap_or(0))
    }

    /// Flushes memtables to disk (used at shutdown; a no-op where meaningless).
    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Starts the staging area `name` (emptied first): entries written through the
    /// returned [`Staging`] wait outside every table, on disk for RocksDB, until
    /// [`Store::ingest_staged`] moves them in. For offline bulk loads, with the node
    /// stopped. Errors: I/O, or a read-only store.
    fn stage(&self, name: &str) -> StoreResult<Box<dyn Staging + '_>>;

    /// Moves what the staging area `name` holds for `table` into `table`, all of it or
    /// nothing (RocksDB: one ingestion of its table files). Idempotent: once it has
    /// returned `Ok`, or after a crash at any point inside it, calling it again with
    /// nothing written in between leaves `table` exactly as one successful call would.
    /// Nothing staged for `table` is a no-op. Not atomic with other tables or writes.
    fn ingest_staged(&self, name: &str, table: Table) -> StoreResult<()>;

    /// Removes the staging area `name` and whatever it still holds (absent: no-op).
    fn discard_staged(&self, name: &str) -> StoreResult<()>;

    /// Engine figures for monitoring, e.g. `("estimate-num-keys", n)`; empty by default.
    fn properties(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Adds a consistent backup of the store, taken while it serves, to the backup
    /// directory `dest` (created if needed); files already there from earlier backups are
    /// shared, not copied again.
    fn backup(&self, dest: &std::path::Path) -> StoreResult<BackupInfo> {
        let _ = dest;
        Err(StoreError("this store cannot be backed up".into()))
    }
}

/// One backup in a backup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub id: u32,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    /// Bytes of the files this backup consists of (shared ones included).
    pub size_bytes: u64,
    pub files: u32,
    /// Files this backup added to the directory (the rest were shared with earlier ones).
    pub new_files: u32,
}

pub type SharedStore = Arc<dyn Store>;

/// Entries being staged for [`Store::ingest_staged`] ([`Store::stage`]).
pub trait Staging {
    /// Adds an entry for `table`. Per table, keys must come in strictly ascending order
    /// (an error otherwise); tables may interleave.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> StoreResult<()>;

    /// Completes the staged entries durably (RocksDB: table files finished and synced).
    /// Until it returns `Ok`, nothing staged may be ingested.
    fn finish(self: Box<Self>) -> StoreResult<()>;
}
