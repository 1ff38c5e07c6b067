//! The RocksDB store: the only file that imports `rocksdb`.
//!
//! One column family per [`Table`]; one LRU block cache shared by all of them (sized from
//! config); whole-key bloom filters for point reads; LZ4 for recent levels and ZSTD for the
//! bottommost one; counters through an associative i64-add merge operator so increments never
//! need a read.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, MergeOperands, Options,
    ReadOptions, WriteBatch, WriteOptions, DB,
};

use super::{
    codec, BackupInfo, Batch, Durability, Op, Staging, Store, StoreError, StoreResult, Table,
};

/// Tuning of the RocksDB store.
#[derive(Debug, Clone)]
pub struct RocksConfig {
    pub path: PathBuf,
    /// Shared block cache for all column families, in bytes.
    pub block_cache_bytes: usize,
    /// Memtables of all column families together (RocksDB's write buffer manager); a full
    /// budget flushes the largest. `records` and `oplog_index` each flush at half of it.
    /// Bounds memory under writes, with the block cache.
    pub memtable_bytes: usize,
    /// Background compaction/flush threads.
    pub parallelism: i32,
    /// Keep every index and filter partition of the records table in the block cache
    /// (pinned: charged to it, never evicted) instead of caching them like data blocks.
    /// About 2.9 B per record (842 MiB at 300M: BENCHMARKS.md); a lookup then reads at
    /// most its data block.
    pub pin_index_and_filters: bool,
}

impl RocksConfig {
    pub fn new(path: impl Into<PathBuf>) -> RocksConfig {
        RocksConfig {
            path: path.into(),
            block_cache_bytes: 256 << 20,
            memtable_bytes: 1 << 30,
            parallelism: 2,
            pin_index_and_filters: false,
        }
    }
}

pub struct RocksStore {
    db: DB,
    /// The options the store was opened with: they hold RocksDB's statistics (tickers).
    options: Options,
    path: PathBuf,
    /// Read options of `get_cached` (block cache and memtables only), built once.
    cache_only: rocksdb::ReadOptions,
    /// Per table, the options staged table files are written with (its table format,
    /// no block cache): what [`Store::stage`]'s writers borrow.
    staging: Vec<(Table, Options)>,
}

/// The files get each column family's table format: filters and partitioned indexes as
/// if compaction had written them.
fn staging_options() -> Vec<(Table, Options)> {
    Table::ALL
        .iter()
        .map(|t| (*t, table_options(*t, None, None, false)))
        .collect()
}

fn cache_only() -> rocksdb::ReadOptions {
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_read_tier(rocksdb::ReadTier::BlockCache);
    opts
}

fn err(e: rocksdb::Error) -> StoreError {
    StoreError(e.into_string())
}

fn add_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut sum = existing.map(codec::decode_counter).unwrap_or(0);
    for op in operands {
        sum = sum.wrapping_add(codec::decode_counter(op));
    }
    Some(codec::encode_counter(sum).to_vec())
}

/// A column family's options: its table format (block cache when given), compression,
/// and for the two families that take a key per record, the memtable size; `pin`: the
/// records table's index and filter partitions pinned in the cache.
fn table_options(
    table: Table,
    cache: Option<&Cache>,
    memtable_bytes: Option<usize>,
    pin: bool,
) -> Options {
    let mut t = BlockBasedOptions::default();
    if let Some(cache) = cache {
        t.set_block_cache(cache);
    }
    if table == Table::OplogIndex {
        // Read by history lookups and audit scans, never by resolution: 16 KiB blocks
        // compress its keys better (a 10M online-built store: 43.8 → 41.9 B/record).
        t.set_block_size(16 << 10);
    }
    t.set_bloom_filter(10.0, false);
    t.set_cache_index_and_filter_blocks(true);
    t.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Partitioned index and filters: a 256 MB table file's index and filter are ~4 MB
    // each; cached whole, they are evicted by data blocks from their LRU shard and read
    // again on nearly every lookup (measured at 100M records: ~0.5 MB read per lookup,
    // 1,162 lookups/s). In 4 KiB partitions they are cached like data blocks; only the
    // small top level stays pinned.
    t.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    t.set_partition_filters(true);
    t.set_metadata_block_size(4096);
    t.set_pin_top_level_index_and_filter(true);
    t.set_format_version(5);
    if pin && table == Table::Records && cache.is_some() {
        // Loaded when a table file is opened, released when it is deleted.
        t.set_partition_pinning_tier(rocksdb::BlockBasedTablePinningTier::All);
        t.set_unpartitioned_pinning_tier(rocksdb::BlockBasedTablePinningTier::All);
    }
    if table == Table::Records {
        // Every resolution is a point lookup here: a hash index inside each data block
        // finds the key without the binary search and scan of restart intervals (a
        // third of a cached lookup in the DNS profile), for ~1 byte per key.
        t.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
        t.set_data_block_hash_ratio(0.75);
    }
    let mut o = Options::default();
    if table == Table::Records {
        // A bloom filter over the memtable's keys: creates first look their keys up, and
        // during an import nearly all are absent (the skiplist search for them was 11 % of
        // the node's CPU in the online-import profile, 3 % with the filter).
        o.set_memtable_prefix_bloom_ratio(0.02);
        o.set_memtable_whole_key_filtering(true);
    }
    o.set_block_based_table_factory(&t);
    o.set_compression_type(DBCompressionType::Lz4);
    o.set_bottommost_compression_type(DBCompressionType::Zstd);
    o.set_level_compaction_dynamic_level_bytes(true);
    let mut extra = Vec::new();
    if table == Table::Records {
        // The bottommost level holds nearly everything; its 4 KiB blocks of ~20 small
        // records compress better with a dictionary trained per file (16 KiB, from at most
        // 32 MiB of the file's blocks, so an ingested 256 MiB file is not buffered whole):
        // the records of a 1M offline import took 30.8 MB instead of 36.7 MB, hash index
        // included. Only here: the log index's content hashes do not compress, and with a
        // dictionary RocksDB 11.8 creates a ZSTD context for every block it compresses.
        // Level 6 rather than ZSTD's default 3: the records of a 10M online-built store
        // took 30.3 B/record instead of 33.9 (level 7: 29.2, 9: 28.8), compacting them took
        // ~1.3× the time (level 9: ~1.7×), and decompression, what reads pay, is as fast.
        extra.push(
            "bottommost_compression_opts={enabled=true;level=6;max_dict_bytes=16384;\
             zstd_max_train_bytes=1638400;max_dict_buffer_bytes=33554432;\
             use_zstd_dict_trainer=true}",
        );
    }
    if table == Table::Records || table == Table::OplogIndex {
        // Every memtable flush of these two families becomes a level-0 file that is then
        // merged with the overlapping last level, which in an import of identifiers spread
        // over many enterprises is all of it; and every create checks each level-0 file's
        // filter. Half the budget each instead of RocksDB's 64 MiB: a 10M online import
        // went 106,683/s (64 MiB) → 131,386 (128) → 147,536 (256) → 158,131/s (512).
        if let Some(budget) = memtable_bytes {
            o.set_write_buffer_size((budget / 2).max(1 << 20));
        }
        // Creates insert a key per record at a random place in a large memtable; the
        // skiplist search for it was 16 % of the node's CPU in a 10M online import. An
        // enterprise's identifiers mostly arrive in order, so RocksDB keeps the insert
        // position of the last key per 16-byte prefix (`88.101.9.123/BAT`: node,
        // enterprise, the suffix's start) and starts the next search there (under 1 %
        // afterwards). 13 bytes stopped inside longer enterprise prefixes: a 10M import
        // under 88.101.9 into a store of 100M spent 18 % of the node's CPU searching the
        // skiplist, and went 35,757 → 51,662 records/s with 16. A hint is ~220 bytes of
        // the memtable's arena plus a map entry, both counted in the memtable's size, so
        // hints make it flush sooner rather than grow beside it.
        extra.push("memtable_insert_with_hint_prefix_extractor=rocksdb.CappedPrefix.16");
    }
    if extra.is_empty() {
        return o;
    }
    o.get_options_from_string(extra.join(";"))
        .expect("valid column family options")
}

impl RocksStore {
    fn descriptors(config: &RocksConfig) -> (Options, Vec<ColumnFamilyDescriptor>) {
        // HyperClockCache: lookups without a shard mutex (block cache lookups were 7 % of
        // the node's CPU for cached gRPC resolves with the LRU cache, 5 % with this one).
        let cache = Cache::new_hyper_clock_cache(config.block_cache_bytes, 0);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(config.parallelism.max(1));
        db_opts.set_max_background_jobs(config.parallelism.max(2));
        db_opts.set_keep_log_file_num(4);
        // Compactions are background work: RocksDB's compaction threads run at a lower CPU
        // priority (flushes keep theirs, or writes would stall behind reads).
        if let Ok(mut env) = rocksdb::Env::new() {
            env.lower_thread_pool_cpu_priority();
            db_opts.set_env(&env);
        }
        db_opts.set_db_write_buffer_size(config.memtable_bytes);
        // Tickers only (per-core counters, no timers or histograms): they show what RocksDB
        // really did, e.g. how often it fsynced the WAL (`sync` durability), in /metrics.
        db_opts.enable_statistics();
        db_opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);

        let cfs = Table::ALL
            .iter()
            .map(|t| {
                let mut o = table_options(
                    *t,
                    Some(&cache),
                    Some(config.memtable_bytes),
                    config.pin_index_and_filters,
                );
                if *t == Table::Counters {
                    o.set_merge_operator_associative("idnode.i64add", add_merge);
                }
                ColumnFamilyDescriptor::new(t.name(), o)
            })
            .collect();
        (db_opts, cfs)
    }

    /// Opens (creating if needed) the store at `config.path`.
    pub fn open(config: &RocksConfig) -> StoreResult<RocksStore> {
        let (db_opts, cfs) = RocksStore::descriptors(config);
        let db = DB::open_cf_descriptors(&db_opts, &config.path, cfs).map_err(err)?;
        Ok(RocksStore {
            db,
            options: db_opts,
            path: config.path.clone(),
            cache_only: cache_only(),
            staging: staging_options(),
        })
    }

    /// Opens an existing store read-only, also while a node has it open (audits, backups
    /// checks): it sees what was written up to the moment of opening. Writes fail.
    pub fn open_read_only(config: &RocksConfig) -> StoreResult<RocksStore> {
        let (db_opts, cfs) = RocksStore::descriptors(config);
        let db =
            DB::open_cf_descriptors_read_only(&db_opts, &config.path, cfs, false).map_err(err)?;
        Ok(RocksStore {
            db,
            options: db_opts,
            path: config.path.clone(),
            cache_only: cache_only(),
            staging: staging_options(),
        })
    }

    /// Each table's live table-file bytes (RocksDB's `live-sst-files-size`), for where a
    /// store's disk goes.
    pub fn table_bytes(&self) -> Vec<(Table, u64)> {
        Table::ALL
            .iter()
            .filter_map(|t| {
                let cf = self.cf(*t).ok()?;
                let v = self
                    .db
                    .property_int_value_cf(cf, "rocksdb.live-sst-files-size")
                    .ok()
                    .flatten()?;
                Some((*t, v))
            })
            .collect()
    }

    /// Compacts every table down to its last level (dropping deleted and overwritten
    /// versions, and writing the last level's compression) and waits for it: what an
    /// operator runs after a large online import, the node stopped (`idnode compact`).
    pub fn compact(&self) -> StoreResult<()> {
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        opts.set_exclusive_manual_compaction(true);
        for t in Table::ALL {
            let cf = self.cf(t)?;
            self.db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the staging area `name` keeps its table files: inside the database's
    /// directory (RocksDB leaves names it does not know alone), so ingestion hard-links
    /// them rather than copying.
    fn staged_dir(&self, name: &str) -> PathBuf {
        self.path.join("staged").join(name)
    }

    fn staging_options(&self, table: Table) -> StoreResult<&Options> {
        self.staging
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, o)| o)
            .ok_or_else(|| StoreError(format!("no options for {}", table.name())))
    }

    fn cf(&self, table: Table) -> StoreResult<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(table.name())
            .ok_or_else(|| StoreError(format!("column family {} missing", table.name())))
    }
}

impl Store for RocksStore {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        let cf = self.cf(table)?;
        Ok(self
            .db
            .get_pinned_cf(cf, key)
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn get_cached(&self, table: Table, key: &[u8]) -> StoreResult<Option<Option<Vec<u8>>>> {
        let cf = self.cf(table)?;
        match self.db.get_pinned_cf_opt(cf, key, &self.cache_only) {
            Ok(v) => Ok(Some(v.map(|v| v.to_vec()))),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn multi_get(&self, table: Table, keys: &[&[u8]]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let cf = self.cf(table)?;
        self.db
            .batched_multi_get_cf(cf, keys.iter().copied(), false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|s| s.to_vec())).map_err(err))
            .collect()
    }

    fn write(&self, batch: Batch, durability: Durability) -> StoreResult<()> {
        let mut wb = WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put(t, k, v) => wb.put_cf(self.cf(*t)?, k, v),
                Op::Delete(t, k) => wb.delete_cf(self.cf(*t)?, k),
                Op::Add(t, k, d) => wb.merge_cf(self.cf(*t)?, k, codec::encode_counter(*d)),
            }
        }
        let mut wo = WriteOptions::default();
        // The WAL is never disabled: an acknowledged write survives a process crash; with
        // `sync` it also survives a power loss.
        wo.set_sync(durability == Durability::Sync);
        self.db.write_opt(wb, &wo).map_err(err)
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> StoreResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let cf = self.cf(table)?;
        let mut ro = ReadOptions::default();
        if let Some(upper) = prefix_upper_bound(prefix) {
            ro.set_iterate_upper_bound(upper);
        }
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        match after {
            Some(a) if a >= prefix => {
                it.seek(a);
                if it.valid() && it.key() == Some(a) {
                    it.next();
                }
            }
            _ => it.seek(prefix),
        }
        let mut out = Vec::new();
        while it.valid() && out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
            it.next();
        }
        it.status().map_err(err)?;
        Ok(out)
    }

    fn stage(&self, name: &str) -> StoreResult<Box<dyn Staging + '_>> {
        self.discard_staged(name)?;
        let dir = self.staged_dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        Ok(Box::new(RocksStaging {
            store: self,
            dir,
            open: HashMap::new(),
            files: HashMap::new(),
        }))
    }

    fn ingest_staged(&self, name: &str, table: Table) -> StoreResult<()> {
        let dir = self.staged_dir(name).join(table.name());
        let mut files = Vec::new();
        match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&dir, e)),
            Ok(entries) => {
                for entry in entries {
                    let path = entry.map_err(|e| io_err(&dir, e))?.path();
                    if path.extension().is_some_and(|x| x == "sst") {
                        files.push(path);
                    }
                }
            }
        }
        files.sort();
        // An ingestion hard-links the staged files into the database, commits, then
        // removes the staged names. Killed in between, it leaves staged files that are
        // already live table files (the same inode): those are not ingested twice. (Had
        // a compaction already replaced them, they would be: the same puts again, which
        // changes no value, as nothing was written in between.)
        let live: HashSet<(u64, u64)> = self
            .db
            .live_files()
            .map_err(err)?
            .into_iter()
            .filter(|f| f.column_family_name == table.name())
            // A live file a compaction deleted since the listing is not one of ours.
            .filter_map(|f| std::fs::metadata(self.path.join(f.name.trim_start_matches('/'))).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect();
        let mut todo = Vec::new();
        for path in files {
            let m = std::fs::metadata(&path).map_err(|e| io_err(&path, e))?;
            if live.contains(&(m.dev(), m.ino())) {
                std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            } else {
                todo.push(path);
            }
        }
        if !todo.is_empty() {
            // One call: the files of one table go in together or not at all.
            let mut ingest = rocksdb::IngestExternalFileOptions::default();
            ingest.set_move_files(true);
            self.db
                .ingest_external_file_cf_opts(self.cf(table)?, &ingest, todo)
                .map_err(err)?;
        }
        std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))
    }

    fn discard_staged(&self, name: &str) -> StoreResult<()> {
        let dir = self.staged_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&dir, e)),
            _ => {}
        }
        // The last area takes the parent with it: the database's directory as before.
        let parent = self.path.join("staged");
        if std::fs::read_dir(&parent).is_ok_and(|mut d| d.next().is_none()) {
            std::fs::remove_dir(&parent).map_err(|e| io_err(&parent, e))?;
        }
        Ok(())
    }

    fn properties(&self) -> Vec<(&'static str, u64)> {
        // Summed over column families, except the shared block cache (counted once).
        let summed = [
            ("estimate-num-keys", "rocksdb.estimate-num-keys"),
            ("live-sst-files-size", "rocksdb.live-sst-files-size"),
            (
                "estimate-pending-compaction-bytes",
                "rocksdb.estimate-pending-compaction-bytes",
            ),
            ("cur-size-all-mem-tables", "rocksdb.cur-size-all-mem-tables"),
        ];
        let mut out = Vec::new();
        for (short, name) in summed {
            let total = Table::ALL
                .iter()
                .filter_map(|t| self.cf(*t).ok())
                .filter_map(|cf| self.db.property_int_value_cf(cf, name).ok().flatten())
                .sum();
            out.push((short, total));
        }
        use rocksdb::statistics::Ticker;
        for (short, ticker) in [
            // WAL fsyncs since the store opened: one per write group in `sync` mode.
            ("wal-syncs", Ticker::WalFileSynced),
            ("wal-bytes", Ticker::WalFileBytes),
            ("bytes-written", Ticker::BytesWritten),
        ] {
            out.push((short, self.options.get_ticker_count(ticker)));
        }
        // Index and filter blocks of every table file (RocksDB's table properties): what
        // a node's metadata for lookups weighs, cached or not.
        let (mut index, mut filter) = (0, 0);
        for cf in Table::ALL.iter().filter_map(|t| self.cf(*t).ok()) {
            if let Ok(Some(p)) = self
                .db
                .property_value_cf(cf, "rocksdb.aggregated-table-properties")
            {
                index += table_property(&p, "index block size");
                filter += table_property(&p, "filter block size");
            }
        }
        out.push(("index-bytes", index));
        out.push(("filter-bytes", filter));
        if let Ok(cf) = self.cf(Table::Records) {
            for (short, name) in [
                ("block-cache-usage", "rocksdb.block-cache-usage"),
                (
                    "block-cache-pinned-usage",
                    "rocksdb.block-cache-pinned-usage",
                ),
                ("block-cache-capacity", "rocksdb.block-cache-capacity"),
            ] {
                if let Ok(Some(v)) = self.db.property_int_value_cf(cf, name) {
                    out.push((short, v));
                }
            }
        }
        out
    }

    fn flush(&self) -> StoreResult<()> {
        for t in Table::ALL {
            self.db.flush_cf(self.cf(t)?).map_err(err)?;
        }
        self.db.flush_wal(true).map_err(err)
    }

    fn backup(&self, dest: &Path) -> StoreResult<BackupInfo> {
        std::fs::create_dir_all(dest)
            .map_err(|e| StoreError(format!("{}: {e}", dest.display())))?;
        let before = shared_files(dest);
        let mut engine = backup_engine(dest)?;
        // Flushing first makes the backup SST files only (no WAL to replay), and RocksDB
        // keeps files from being deleted while it copies: reads and writes go on.
        engine
            .create_new_backup_flush(&self.db, true)
            .map_err(err)?;
        let latest = engine
            .get_backup_info()
            .into_iter()
            .max_by_key(|b| b.backup_id)
            .ok_or_else(|| StoreError("the backup engine lists no backup".into()))?;
        engine.verify_backup(latest.backup_id).map_err(err)?;
        Ok(BackupInfo {
            id: latest.backup_id,
            timestamp: latest.timestamp,
            size_bytes: latest.size,
            files: latest.num_files,
            new_files: shared_files(dest).saturating_sub(before),
        })
    }
}

/// Table files of a staging area: one open writer per table, a new file every
/// [`MAX_STAGED_FILE`] bytes.
struct RocksStaging<'a> {
    store: &'a RocksStore,
    dir: PathBuf,
    open: HashMap<Table, rocksdb::SstFileWriter<'a>>,
    /// Per table: files started, and the last key of the last finished one.
    files: HashMap<Table, (usize, Vec<u8>)>,
}

/// Staged table files are at most this large (RocksDB's target for ingested files is
/// the level's file size; 256 MiB keeps their number small at 100M records).
const MAX_STAGED_FILE: u64 = 256 << 20;

impl Staging for RocksStaging<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> StoreResult<()> {
        let writer = match self.open.entry(table) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let (n, last) = self.files.entry(table).or_default();
                // A writer checks the order inside its file; across files, here.
                if *n > 0 && key <= last.as_slice() {
                    return Err(StoreError(format!(
                        "staged keys of {} out of order",
                        table.name()
                    )));
                }
                let dir = self.dir.join(table.name());
                std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
                let path = dir.join(format!("{:05}.sst", *n));
                *n += 1;
                let writer = rocksdb::SstFileWriter::create(self.store.staging_options(table)?);
                writer.open(&path).map_err(err)?;
                v.insert(writer)
            }
        };
        writer.put(key, value).map_err(err)?;
        if writer.file_size() >= MAX_STAGED_FILE {
            if let Some(mut full) = self.open.remove(&table) {
                full.finish().map_err(err)?;
            }
            if let Some((_, last)) = self.files.get_mut(&table) {
                *last = key.to_vec();
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> StoreResult<()> {
        // `SstFileWriter::finish` syncs each file; the directories' entries are synced
        // here, so a staging area that finished survives a power loss whole.
        for (_, mut writer) in self.open.drain() {
            writer.finish().map_err(err)?;
        }
        for table in self.files.keys() {
            sync_dir(&self.dir.join(table.name()))?;
        }
        sync_dir(&self.dir)
    }
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError(format!("{}: {e}", path.display()))
}

fn sync_dir(dir: &Path) -> StoreResult<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

fn backup_engine(dir: &Path) -> StoreResult<rocksdb::backup::BackupEngine> {
    let opts = rocksdb::backup::BackupEngineOptions::new(dir).map_err(err)?;
    let env = rocksdb::Env::new().map_err(err)?;
    rocksdb::backup::BackupEngine::open(&opts, &env).map_err(err)
}

/// Table files in a backup directory, shared between its backups.
fn shared_files(dir: &Path) -> u32 {
    ["shared", "shared_checksum"]
        .iter()
        .filter_map(|d| std::fs::read_dir(dir.join(d)).ok())
        .map(|entries| entries.count() as u32)
        .sum()
}

/// The backups in backup directory `dir`, oldest first.
pub fn list_backups(dir: &Path) -> StoreResult<Vec<BackupInfo>> {
    let mut list: Vec<BackupInfo> = backup_engine(dir)?
        .get_backup_info()
        .into_iter()
        .map(|b| BackupInfo {
            id: b.backup_id,
            timestamp: b.timestamp,
            size_bytes: b.size,
            files: b.num_files,
            new_files: 0,
        })
        .collect();
    list.sort_by_key(|b| b.id);
    Ok(list)
}

/// Restores backup `id` (default: the latest) of backup directory `dir` into the store
/// directory `db`, which must not hold a store. The backup is verified first.
pub fn restore_backup(dir: &Path, db: &Path, id: Option<u32>) -> StoreResult<BackupInfo> {
    if db.join("CURRENT").exists() {
        return Err(StoreError(format!(
            "{} already holds a store: restore into an empty directory",
            db.display()
        )));
    }
    let list = list_backups(dir)?;
    let chosen = match id {
        Some(id) => list.iter().find(|b| b.id == id),
        None => list.last(),
    }
    .cloned()
    .ok_or_else(|| match id {
        Some(id) => StoreError(format!("{} has no backup {id}", dir.display())),
        None => StoreError(format!("{} holds no backup", dir.display())),
    })?;
    let mut engine = backup_engine(dir)?;
    engine.verify_backup(chosen.id).map_err(err)?;
    let opts = rocksdb::backup::RestoreOptions::default();
    engine
        .restore_from_backup(db, db, &opts, chosen.id)
        .map_err(err)?;
    Ok(chosen)
}

/// The smallest key greater than every key starting with `prefix`, if one exists.
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// A figure of RocksDB's table properties text (`# entries=10; index block size (user-key?
/// 1, delta-value? 1)=1234; …`): the value of the entry whose name starts with `name`.
fn table_property(text: &str, name: &str) -> u64 {
    text.split("; ")
        .filter(|entry| entry.starts_with(name))
        .find_map(|entry| entry.rsplit_once('=')?.1.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of the store's figures, as `/metrics` shows it.
    fn figure(store: &RocksStore, name: &str) -> Option<u64> {
        store
            .properties()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    #[test]
    fn index_and_filter_bytes_come_from_the_table_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(&RocksConfig::new(dir.path().join("db"))).unwrap();
        let figure = |name| figure(&store, name);
        assert_eq!(figure("index-bytes"), Some(0));
        let mut batch = Batch::new();
        for i in 0..20_000u32 {
            batch.put(
                Table::Records,
                format!("88.101.1/k{i:06}").into_bytes(),
                vec![7; 40],
            );
        }
        store.write(batch, Durability::Wal).unwrap();
        store.flush().unwrap();
        let (index, filter) = (
            figure("index-bytes").unwrap(),
            figure("filter-bytes").unwrap(),
        );
        // 10 bits per key make ~25 KB of filter for 20,000 keys; the index has an entry
        // per 4 KiB data block.
        assert!((20_000..40_000).contains(&filter), "filter {filter}");
        assert!(index > 1_000, "index {index}");
        assert_eq!(
            table_property("# entries=3; index block size (user-key? 1, delta-value? 1)=991; filter block size=12", "index block size"),
            991
        );
    }

    /// Pinned, the records table's partitions stay in the block cache from the moment a
    /// table file opens (here: in the last level, after a compaction and a reopen);
    /// unpinned, only the small top levels are.
    #[test]
    fn pinning_keeps_the_records_partitions_in_the_block_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RocksConfig::new(dir.path().join("db"));
        {
            let store = RocksStore::open(&config).unwrap();
            let mut batch = Batch::new();
            for i in 0..50_000u32 {
                batch.put(
                    Table::Records,
                    format!("88.101.1/k{i:06}").into_bytes(),
                    format!("{i:040}").into_bytes(),
                );
            }
            store.write(batch, Durability::Wal).unwrap();
            store.flush().unwrap();
            store.compact().unwrap();
        }
        let mut pinned = |pin: bool| {
            config.pin_index_and_filters = pin;
            let store = RocksStore::open(&config).unwrap();
            let figure = |name| figure(&store, name).unwrap();
            // A lookup, so that the table file is open whatever RocksDB does at start.
            assert!(store
                .get(Table::Records, b"88.101.1/k000007")
                .unwrap()
                .is_some());
            (figure("block-cache-pinned-usage"), figure("filter-bytes"))
        };
        let (off, _) = pinned(false);
        let (on, filters) = pinned(true);
        assert!(
            on >= filters && filters > 50_000,
            "pinned {on}, filters {filters}"
        );
        assert!(
            off < filters / 4,
            "unpinned: {off} pinned, filters {filters}"
        );
    }

    #[test]
    fn upper_bounds() {
        assert_eq!(prefix_upper_bound(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_upper_bound(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_upper_bound(b"\xff\xff"), None);
        assert_eq!(prefix_upper_bound(b""), None);
    }

    /// Killed after RocksDB committed an ingestion but before it removed the staged
    /// names, the staged files are live table files already: not ingested a second time.
    #[test]
    fn staged_files_already_ingested_are_not_ingested_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(&RocksConfig::new(dir.path().join("db"))).unwrap();
        let mut staging = store.stage("s").unwrap();
        for i in 0..100 {
            staging
                .put(Table::Records, format!("k{i:03}").as_bytes(), b"v")
                .unwrap();
        }
        staging.finish().unwrap();
        let staged = dir.path().join("db/staged/s/records/00000.sst");
        let kept = dir.path().join("kept.sst");
        std::fs::hard_link(&staged, &kept).unwrap();
        store.ingest_staged("s", Table::Records).unwrap();
        assert!(!staged.exists());
        let live = || {
            store
                .db
                .live_files()
                .unwrap()
                .into_iter()
                .filter(|f| f.column_family_name == "records")
                .count()
        };
        let before = live();
        assert_eq!(before, 1);
        // What the kill leaves: the staged name still on the ingested file.
        std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
        std::fs::hard_link(&kept, &staged).unwrap();
        store.ingest_staged("s", Table::Records).unwrap();
        assert_eq!(live(), before);
        assert!(!staged.exists());
        assert_eq!(
            store.get(Table::Records, b"k050").unwrap(),
            Some(b"v".to_vec())
        );
        store.discard_staged("s").unwrap();
        assert!(!dir.path().join("db/staged").exists());
    }

    /// The column family options the measurements rest on land where they belong (RocksDB
    /// records what it applied in its OPTIONS file).
    #[test]
    fn families_get_their_options() {
        let dir = tempfile::tempdir().unwrap();
        drop(RocksStore::open(&RocksConfig::new(dir.path())).unwrap());
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("OPTIONS-")
            })
            .collect();
        files.sort();
        let text = std::fs::read_to_string(files.last().unwrap()).unwrap();
        let section = |header: String| {
            let start = text.find(&header).unwrap();
            let rest = &text[start + 1..];
            rest[..rest.find("\n[").unwrap_or(rest.len())].to_owned()
        };
        let family = |name: &str| section(format!("[CFOptions \"{name}\"]"));
        let table = |name: &str| section(format!("[TableOptions/BlockBasedTable \"{name}\"]"));
        let hint = "memtable_insert_with_hint_prefix_extractor=rocksdb.CappedPrefix.16";
        let records = family("records");
        assert!(records.contains(hint), "{records}");
        assert!(records.contains("max_dict_bytes=16384"), "{records}");
        let bottommost = records
            .lines()
            .find(|l| l.contains("bottommost_compression_opts="))
            .unwrap();
        assert!(bottommost.contains(";level=6;"), "{bottommost}");
        let index = family("oplog_index");
        assert!(index.contains(hint), "{index}");
        assert!(!index.contains("max_dict_bytes=16384"), "{index}");
        assert!(table("oplog_index").contains("\n  block_size=16384\n"));
        assert!(table("records").contains("\n  block_size=4096\n"));
        let meta = family("meta");
        assert!(meta.contains("memtable_insert_with_hint_prefix_extractor=nullptr"));
        // Half the memtable budget (1 GiB by default) for each of the two.
        for f in [&records, &index] {
            assert!(f.contains("\n  write_buffer_size=536870912\n"), "{f}");
        }
        assert!(meta.contains("\n  write_buffer_size=67108864\n"), "{meta}");
    }
}
