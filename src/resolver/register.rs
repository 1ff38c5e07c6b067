//! Registration: create, update, delete, batch create, list and counts.
//!
//! Every mutation is one atomic store batch that also adjusts the per-prefix and node
//! counters, so counts are exact without ever scanning. Read-check-write sequences hold the
//! identifier's latch.

use std::collections::{BTreeMap, HashMap};

use super::command::{Applied, Op, Stamp};
use super::Core;
use crate::auth::Caller;
use crate::error::{Error, ErrorKind, Reason, Result};
use crate::failpoint;
use crate::identifier::{Identifier, Prefix};
use crate::oplog::{content_digest, BulkDigest, Digest32, Draft, PendingImport, PENDING_IMPORT};
use crate::record::{DataDomain, Record, Risk, Value};
use crate::store::{codec, Batch, Durability, Table};

/// The store's staging area of offline imports ([`crate::store::Store::stage`]).
pub const IMPORT_STAGING: &str = "import";

/// Counter key of the node-wide total.
pub const NODE_COUNT: &[u8] = b"registered";
/// Counter key prefix of per-prefix totals (`registered/88.101.5`).
const PREFIX_COUNT: &str = "registered/";

/// Counter key of the identifiers registered under `prefix` (`registered/88.101.5`).
pub fn prefix_count_key(prefix: &str) -> Vec<u8> {
    format!("{PREFIX_COUNT}{prefix}").into_bytes()
}

/// Counter of registrations under `prefix` on day `day` (days since the epoch, UTC).
pub fn daily_key(prefix: &str, day: i64) -> Vec<u8> {
    format!("daily/{prefix}/{day}").into_bytes()
}

/// Counter key of identifiers with a value of `domain` and `risk` (`class/rd/high`).
pub fn class_key(domain: DataDomain, risk: Risk) -> String {
    format!("class/{}/{}", domain.name(), risk.name())
}

/// Adds `by` to the domain × risk counter of each of `classes`.
fn count_classes(
    batch: &mut Batch,
    classes: impl IntoIterator<Item = (DataDomain, Risk)>,
    by: i64,
) {
    for (d, r) in classes {
        batch.add(Table::Counters, class_key(d, r).into_bytes(), by);
    }
}

pub(super) fn today() -> i64 {
    crate::auth::now().div_euclid(86_400)
}

/// The result of a successful create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The record was written.
    Registered,
    /// An identical record already existed (a retried registration): nothing was written.
    AlreadyPresent,
}

/// A change to an existing record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Replace every value.
    Replace(Vec<Value>),
    /// Add new values (error if the index exists), modify existing ones (error if it does
    /// not), remove indexes (error if absent) and put values (added or replacing, as the
    /// record has the index or not), applied together under the identifier's latch or not
    /// at all: no client reads the record first to decide.
    Edit {
        add: Vec<Value>,
        modify: Vec<Value>,
        remove: Vec<u32>,
        put: Vec<Value>,
    },
}

/// One item of a batch create, already parsed by the adapter (a parse failure travels as
/// an error so the item fails alone).
pub type BatchItem = (Result<Identifier>, Record);

/// Registered-identifier counts, maintained on every write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    pub node_registered: i64,
    /// `(prefix, count)` for each prefix the caller may see, in prefix order.
    pub prefixes: Vec<(String, i64)>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub identifiers: Vec<Identifier>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A record accepted for writing: validated, stamped, template-checked, encoded.
struct Prepared {
    id: Identifier,
    record: Record,
    /// The record as stored.
    bytes: Vec<u8>,
    owner_prefix: String,
}

/// A batch of creates after the checks that need no latch or lock ([`Core::prepare_batch`]),
/// ready for [`Core::write_batch`]. Preparing the next batch while this one is written
/// keeps both cores busy during an online import.
pub struct PreparedBatch {
    /// Per item: its error when it failed the checks, `None` when it is in `prepared`.
    results: Vec<Option<Result<RegisterOutcome>>>,
    prepared: Vec<(usize, Prepared)>,
    /// In a site: the items as received, for one command (checked when applied).
    site: Option<Vec<BatchItem>>,
}

impl Core {
    /// Validates, stamps and template-checks a record for `id` on behalf of `caller`.
    fn prepare(
        &self,
        caller: &Caller,
        id: Identifier,
        mut record: Record,
        at: i64,
    ) -> Result<Prepared> {
        let prefix = id.prefix();
        self.require_owner(caller, &prefix)?;
        if id.suffix() == super::ADMIN_SUFFIX && self.enterprise(&prefix).is_some() {
            return Err(Error::invalid(format!(
                "{id} is the enterprise's admin handle (reserved, made by the node): choose \
                 another suffix"
            )));
        }
        record.validate(&self.config.record_limits)?;
        for v in &mut record.values {
            v.timestamp = at;
        }
        self.check_template(&record)?;
        Ok(Prepared {
            owner_prefix: self.owner_prefix(&prefix),
            bytes: codec::encode_record(&record),
            id,
            record,
        })
    }

    /// Validates a record for a bulk load as the admin would register it: returns the
    /// storage key, the encoded record and the prefix whose count it adds to.
    pub fn prepare_import(
        &self,
        id: Identifier,
        record: Record,
    ) -> Result<(Vec<u8>, Vec<u8>, String)> {
        let p = self.prepare(&Caller::Admin, id, record, crate::auth::now())?;
        Ok((p.id.as_bytes().to_vec(), p.bytes, p.owner_prefix))
    }

    /// Commits an offline import whose records and log index entries are staged in the
    /// store's staging area [`IMPORT_STAGING`] (the node stopped). `seq` is the log entry
    /// the staged index entries point at (the head's plus one), `counts` the records it
    /// adds per counting prefix; `detail` and `content` (the [`BulkDigest`] of its
    /// records) go into its log entry. From the durable [`PendingImport`] written first,
    /// the import completes: now, or at the next [`Core::open`] if this process dies or
    /// fails part way (`Core::complete_import`).
    ///
    /// Errors: `Internal` when the log moved since the import read its head, when another
    /// import is pending, or on a store failure; an error after the pending import was
    /// written says so, and leaves it for the next open to complete.
    pub fn commit_import(
        &self,
        seq: u64,
        counts: BTreeMap<String, i64>,
        classes: BTreeMap<String, i64>,
        detail: String,
        content: String,
    ) -> Result<()> {
        let import = PendingImport {
            seq,
            records: counts.values().sum::<i64>().max(0) as u64,
            counts,
            classes,
            day: today(),
            detail,
            content,
        };
        let head = self.head.lock().unwrap_or_else(|e| e.into_inner());
        if head.0 + 1 != import.seq {
            return Err(Error::internal("the log moved during an offline import"));
        }
        if self.pending_import()?.is_some() {
            return Err(Error::internal("another offline import is pending"));
        }
        let mut batch = Batch::new();
        batch.put(
            Table::Meta,
            PENDING_IMPORT.to_vec(),
            codec::encode_json(&import),
        );
        self.store
            .write(batch, Durability::Sync)
            .map_err(Error::internal)?;
        drop(head);
        failpoint::hit("offline-import:marked")
            .map_err(Error::internal)
            .and_then(|()| self.complete_import())
            .map(|_| ())
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!(
                        "the import was committed but not completed ({}): the next \
                         `idnode serve` or `idnode import --offline` on this data directory \
                         completes it",
                        e.message
                    ),
                )
            })
    }

    /// The offline import that has begun to change the store and not yet been logged.
    pub fn pending_import(&self) -> Result<Option<PendingImport>> {
        self.store
            .get(Table::Meta, PENDING_IMPORT)
            .map_err(Error::internal)?
            .map(|bytes| codec::decode_json(&bytes).map_err(Error::internal))
            .transpose()
    }

    /// Completes the pending offline import, if any: ingests what is still staged of its
    /// log index entries and then of its records (each table all or nothing, and again
    /// harmlessly when it was done before a crash), then writes its counters and its log
    /// entry in one batch that also deletes the pending import. Killed at any point, the
    /// next call starts over and reaches the same state. Returns the import completed.
    ///
    /// rust-rocksdb 0.25 ingests one column family per call (RocksDB's C API has no
    /// multi-family `IngestExternalFiles`), so the tables cannot change together; the
    /// durable pending import is what makes the steps one: nothing else writes until it
    /// is complete, since every `Core::open` completes it first.
    pub(super) fn complete_import(&self) -> Result<Option<PendingImport>> {
        let Some(import) = self.pending_import()? else {
            return Ok(None);
        };
        if self.log_head().0 + 1 != import.seq {
            return Err(Error::internal(format!(
                "the pending offline import would be log entry {}, the log is at {}",
                import.seq,
                self.log_head().0
            )));
        }
        let store = &self.store;
        store
            .ingest_staged(IMPORT_STAGING, Table::OplogIndex)
            .map_err(Error::internal)?;
        failpoint::hit("offline-import:ingested-index").map_err(Error::internal)?;
        store
            .ingest_staged(IMPORT_STAGING, Table::Records)
            .map_err(Error::internal)?;
        failpoint::hit("offline-import:ingested-records").map_err(Error::internal)?;
        let mut batch = Batch::new();
        let mut total = 0;
        for (key, n) in &import.classes {
            batch.add(Table::Counters, key.as_bytes(), *n);
        }
        for (prefix, n) in &import.counts {
            batch.add(Table::Counters, prefix_count_key(prefix), *n);
            batch.add(Table::Counters, daily_key(prefix, import.day), *n);
            total += n;
        }
        batch.add(Table::Counters, NODE_COUNT, total);
        batch.delete(Table::Meta, PENDING_IMPORT.to_vec());
        let draft = Draft {
            op: "import",
            actor: "admin".into(),
            target: "import".into(),
            detail: Some(import.detail.clone()),
            content: Some(import.content.clone()),
            covers: Vec::new(),
        };
        self.commit_logged(batch, vec![draft], &Stamp::at(crate::auth::now()))?;
        failpoint::hit("offline-import:logged").map_err(Error::internal)?;
        store
            .discard_staged(IMPORT_STAGING)
            .map_err(Error::internal)?;
        Ok(Some(import))
    }

    /// Registers a new identifier.
    ///
    /// Errors: `AlreadyExists` if it exists with different content (identical content is
    /// `Ok(AlreadyPresent)`, so retries are safe); `InvalidArgument` for rule violations;
    /// `Unauthenticated`/`PermissionDenied` if the caller does not own the prefix.
    pub fn register(
        &self,
        caller: &Caller,
        id: Identifier,
        record: Record,
    ) -> Result<RegisterOutcome> {
        match self.write(caller, Op::Register { id, record })? {
            Applied::Register(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn apply_register(
        &self,
        caller: &Caller,
        id: Identifier,
        record: Record,
        stamp: &Stamp,
    ) -> Result<RegisterOutcome> {
        let p = self.prepare(caller, id, record, stamp.at)?;
        self.write_prepared(caller, vec![p], false, stamp)?
            .pop()
            .unwrap_or_else(|| Err(Error::internal("registration without outcome")))
    }

    /// Registers `id` with `record`, or replaces the values of the record it has (a Handle
    /// `PUT` that may overwrite). Returns true when it registered. Another writer creating
    /// or deleting `id` in between makes it try again (at most three times), so the
    /// outcome is one or the other, never an error of the race.
    pub fn put(&self, caller: &Caller, id: Identifier, record: Record) -> Result<bool> {
        match self.write(caller, Op::Put { id, record })? {
            Applied::Put(registered) => Ok(registered),
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn apply_put(
        &self,
        caller: &Caller,
        id: Identifier,
        record: Record,
        stamp: &Stamp,
    ) -> Result<bool> {
        for _ in 0..3 {
            match self.apply_update(caller, &id, Update::Replace(record.values.clone()), stamp) {
                Ok(_) => return Ok(false),
                Err(e) if e.kind == ErrorKind::NotFound && e.reason.is_none() => {}
                Err(e) => return Err(e),
            }
            match self.apply_register(caller, id.clone(), record.clone(), stamp) {
                Ok(RegisterOutcome::Registered) => return Ok(true),
                Ok(RegisterOutcome::AlreadyPresent) => return Ok(false),
                Err(e) if e.kind == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("{id} changed under three attempts to write it: retry"),
        ))
    }

    pub(super) fn commit(&self, batch: Batch) -> Result<()> {
        self.store
            .write(batch, self.config.durability)
            .map_err(Error::internal)
    }

    /// Registers many records; one result per item, in order. A bad item fails alone; the
    /// good ones are written in one atomic batch.
    pub fn batch_register(
        &self,
        caller: &Caller,
        items: Vec<BatchItem>,
    ) -> Vec<Result<RegisterOutcome>> {
        // Items that did not parse fail here; the others are one command.
        let mut results: Vec<Option<Result<RegisterOutcome>>> = Vec::with_capacity(items.len());
        let mut good = Vec::with_capacity(items.len());
        for (id, record) in items {
            match id {
                Ok(id) => {
                    good.push((id, record));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !good.is_empty() {
            let n = good.len();
            let outcomes = match self.write(caller, Op::BatchRegister { items: good }) {
                Ok(Applied::Batch(o)) if o.len() == n => o,
                Ok(other) => vec![Err(unexpected(other)); n],
                Err(e) => vec![Err(e); n],
            };
            let mut outcomes = outcomes.into_iter();
            for r in results.iter_mut().filter(|r| r.is_none()) {
                *r = outcomes.next();
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("batch item without result"))))
            .collect()
    }

    /// The first half of [`Core::batch_register`]: every check that reads no record, and the
    /// encoding. Takes no latch or lock, so it may run beside another batch's write.
    pub fn prepare_batch(&self, caller: &Caller, items: Vec<BatchItem>) -> PreparedBatch {
        if self.in_site() {
            return PreparedBatch {
                results: Vec::new(),
                prepared: Vec::new(),
                site: Some(items),
            };
        }
        self.prepare_batch_at(caller, items, crate::auth::now())
    }

    pub(super) fn prepare_batch_at(
        &self,
        caller: &Caller,
        items: Vec<BatchItem>,
        at: i64,
    ) -> PreparedBatch {
        let mut results = Vec::with_capacity(items.len());
        let mut prepared = Vec::with_capacity(items.len());
        for (i, (id, record)) in items.into_iter().enumerate() {
            match id.and_then(|id| self.prepare(caller, id, record, at)) {
                Ok(p) => {
                    prepared.push((i, p));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        PreparedBatch {
            results,
            prepared,
            site: None,
        }
    }

    /// The second half of [`Core::batch_register`]: under the records' latches, the checks
    /// against stored records and quotas, then one atomic, logged write. `caller` must be
    /// the one the batch was prepared for.
    pub fn write_batch(
        &self,
        caller: &Caller,
        batch: PreparedBatch,
    ) -> Vec<Result<RegisterOutcome>> {
        match batch.site {
            Some(items) => self.batch_register(caller, items),
            None => self.write_batch_stamped(caller, batch, &Stamp::at(crate::auth::now())),
        }
    }

    pub(super) fn write_batch_stamped(
        &self,
        caller: &Caller,
        batch: PreparedBatch,
        stamp: &Stamp,
    ) -> Vec<Result<RegisterOutcome>> {
        let PreparedBatch {
            mut results,
            prepared,
            ..
        } = batch;
        if !prepared.is_empty() {
            let (positions, prepared): (Vec<usize>, Vec<Prepared>) = prepared.into_iter().unzip();
            match self.write_prepared(caller, prepared, true, stamp) {
                Ok(outcomes) => {
                    for (i, r) in positions.into_iter().zip(outcomes) {
                        results[i] = Some(r);
                    }
                }
                Err(e) => {
                    for i in positions {
                        results[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("batch item without result"))))
            .collect()
    }

    /// Writes the records of `prepared` that are new, under their latches, with one log
    /// entry per record, or with `bulk` one `batch_register` entry covering them all (a
    /// record's content hash then sits in its log index entry: one small index write per
    /// record instead of a whole entry, which halved the log's share of an online import).
    /// The encoded records move into the write batch (no copy).
    fn write_prepared(
        &self,
        caller: &Caller,
        prepared: Vec<Prepared>,
        bulk: bool,
        stamp: &Stamp,
    ) -> Result<Vec<Result<RegisterOutcome>>> {
        // Enterprises with registration quotas: their creates are serialised by a quota
        // latch so that the check and the write are one step.
        let mut budgets: HashMap<String, Option<u64>> = HashMap::new();
        for p in &prepared {
            budgets.entry(p.owner_prefix.clone()).or_insert(None);
        }
        let limited: Vec<String> = budgets
            .keys()
            .filter(|prefix| self.registration_quota(prefix).is_some())
            .map(|prefix| format!("quota/{prefix}"))
            .collect();
        let _latches = self.latches.lock_many(
            prepared
                .iter()
                .map(|p| p.id.as_str())
                .chain(limited.iter().map(String::as_str)),
        );
        for (prefix, budget) in budgets.iter_mut() {
            *budget = self.registration_budget(prefix, stamp.day())?;
        }
        let keys: Vec<&[u8]> = prepared.iter().map(|p| p.id.as_bytes()).collect();
        let existing = self
            .store
            .multi_get(Table::Records, &keys)
            .map_err(Error::internal)?;
        // First the decisions, reading `prepared`; then the write batch, taking from it.
        let mut drafts = Vec::new();
        let mut covers: Vec<(String, Digest32)> = Vec::new();
        let mut created: HashMap<&str, i64> = HashMap::new();
        let mut in_batch: HashMap<&str, &Record> = HashMap::new();
        let mut outcomes = Vec::with_capacity(prepared.len());
        for (p, old) in prepared.iter().zip(existing) {
            let old = match old {
                Some(bytes) => Some(
                    codec::decode_record(&bytes)
                        .map_err(|e| Error::internal(format!("record {}: {e}", p.id)))?,
                ),
                None => None,
            };
            let earlier = old.as_ref().or(in_batch.get(p.id.as_str()).copied());
            outcomes.push(match earlier {
                Some(r) if r.same_content(&p.record) => Ok(RegisterOutcome::AlreadyPresent),
                Some(_) => Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} is already registered with other values", p.id),
                )),
                None => match budgets.get_mut(&p.owner_prefix) {
                    Some(Some(0)) => Err(Error::limit(
                        Reason::RegistrationLimit,
                        format!("the registration quota of {} is used up", p.owner_prefix),
                    )),
                    budget => {
                        if let Some(Some(left)) = budget {
                            *left -= 1;
                        }
                        // Counter increments are tallied and added once per batch.
                        *created.entry(p.owner_prefix.as_str()).or_default() += 1;
                        if bulk {
                            covers.push((p.id.to_string(), content_digest(&p.bytes)));
                        } else {
                            let id = p.id.to_string();
                            drafts.push(self.entry("register", caller, id, None, Some(&p.bytes)));
                        }
                        in_batch.insert(p.id.as_str(), &p.record);
                        Ok(RegisterOutcome::Registered)
                    }
                },
            });
        }
        if !created.is_empty() {
            let mut batch = Batch::new();
            let day = stamp.day();
            let mut total = 0;
            for (prefix, n) in &created {
                batch.add(Table::Counters, prefix_count_key(prefix), *n);
                batch.add(Table::Counters, daily_key(prefix, day), *n);
                total += n;
            }
            batch.add(Table::Counters, NODE_COUNT, total);
            if !covers.is_empty() {
                // In identifier order, the order `audit::verify` reads the index in.
                covers.sort_unstable();
                let mut draft = self.entry(
                    "batch_register",
                    caller,
                    "batch".into(),
                    Some(format!("{} records", covers.len())),
                    None,
                );
                let mut digest = BulkDigest::default();
                for (id, hash) in &covers {
                    digest.add(id.as_bytes(), hash);
                }
                draft.content = Some(digest.finish());
                draft.covers = covers;
                drafts.push(draft);
            }
            drop((created, in_batch));
            let mut new_records: Vec<Prepared> = prepared
                .into_iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, Ok(RegisterOutcome::Registered)))
                .map(|(p, _)| p)
                .collect();
            // In key order, each insert into the memtable starts its search where the
            // last one ended.
            new_records.sort_unstable_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
            // Domain × risk counters, like the others, are tallied and added once.
            let mut classes: BTreeMap<(DataDomain, Risk), i64> = BTreeMap::new();
            for p in new_records {
                for c in p.record.classes() {
                    *classes.entry(c).or_default() += 1;
                }
                batch.put(Table::Records, p.id.as_bytes(), p.bytes);
            }
            for ((d, r), n) in classes {
                batch.add(Table::Counters, class_key(d, r).into_bytes(), n);
            }
            self.commit_logged(batch, drafts, stamp)?;
        }
        Ok(outcomes)
    }

    /// Changes an existing record; returns the record as stored.
    ///
    /// Errors: `NotFound` if the identifier (or a modified/removed index) does not exist;
    /// `AlreadyExists` when adding an index that exists; rule violations as for create.
    pub fn update(&self, caller: &Caller, id: &Identifier, update: Update) -> Result<Record> {
        let op = Op::Update {
            id: id.clone(),
            update,
        };
        match self.write(caller, op)? {
            Applied::Record(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn apply_update(
        &self,
        caller: &Caller,
        id: &Identifier,
        update: Update,
        stamp: &Stamp,
    ) -> Result<Record> {
        self.require_owner(caller, &id.prefix())?;
        let _latch = self.latches.lock(id.as_str());
        let current = self
            .load(id)?
            .ok_or_else(|| Error::not_found(format!("{id} is not registered")))?;
        let before = current.classes();
        let ts = stamp.at;
        let mut record = match update {
            Update::Replace(mut values) => {
                // Unchanged values keep their timestamps.
                for v in &mut values {
                    v.timestamp = match current.value(v.index) {
                        Some(old) if old.same_content(v) => old.timestamp,
                        _ => ts,
                    };
                }
                Record::new(values)
            }
            Update::Edit {
                add,
                modify,
                remove,
                put,
            } => {
                let mut by_index: std::collections::BTreeMap<u32, Value> =
                    current.values.into_iter().map(|v| (v.index, v)).collect();
                for i in &remove {
                    if by_index.remove(i).is_none() {
                        return Err(Error::value_not_found(format!(
                            "{id} has no value at index {i}"
                        )));
                    }
                }
                for mut v in modify {
                    if !by_index.contains_key(&v.index) {
                        return Err(Error::value_not_found(format!(
                            "{id} has no value at index {} to modify",
                            v.index
                        )));
                    }
                    v.timestamp = ts;
                    by_index.insert(v.index, v);
                }
                for mut v in add {
                    if by_index.contains_key(&v.index) {
                        return Err(Error::value_exists(format!(
                            "{id} already has a value at index {}",
                            v.index
                        )));
                    }
                    v.timestamp = ts;
                    by_index.insert(v.index, v);
                }
                for mut v in put {
                    // An unchanged value keeps its timestamp, as in a replacement.
                    v.timestamp = match by_index.get(&v.index) {
                        Some(old) if old.same_content(&v) => old.timestamp,
                        _ => ts,
                    };
                    by_index.insert(v.index, v);
                }
                Record {
                    values: by_index.into_values().collect(),
                }
            }
        };
        record.validate(&self.config.record_limits)?;
        self.check_template(&record)?;
        let bytes = codec::encode_record(&record);
        let draft = self.entry("update", caller, id.to_string(), None, Some(&bytes));
        let mut batch = Batch::new();
        let after = record.classes();
        if before != after {
            count_classes(&mut batch, before, -1);
            count_classes(&mut batch, after, 1);
        }
        batch.put(Table::Records, id.as_bytes(), bytes);
        self.commit_logged(batch, vec![draft], stamp)?;
        Ok(record)
    }

    /// Deletes a record.
    ///
    /// Errors: `NotFound` if it is not registered.
    pub fn delete(&self, caller: &Caller, id: &Identifier) -> Result<()> {
        match self.write(caller, Op::Delete { id: id.clone() })? {
            Applied::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn apply_delete(
        &self,
        caller: &Caller,
        id: &Identifier,
        stamp: &Stamp,
    ) -> Result<()> {
        let prefix = id.prefix();
        self.require_owner(caller, &prefix)?;
        let _latch = self.latches.lock(id.as_str());
        let Some(old) = self.load(id)? else {
            return Err(Error::not_found(format!("{id} is not registered")));
        };
        let mut batch = Batch::new();
        count_classes(&mut batch, old.classes(), -1);
        batch.delete(Table::Records, id.as_bytes());
        batch.add(Table::Counters, NODE_COUNT, -1);
        batch.add(
            Table::Counters,
            prefix_count_key(&self.owner_prefix(&prefix)),
            -1,
        );
        self.commit_logged(
            batch,
            vec![self.entry("delete", caller, id.to_string(), None, None)],
            stamp,
        )
    }

    /// Lists identifiers whose prefix is exactly `prefix`, in key order, after `cursor`.
    pub fn list(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<Listing> {
        self.require_owner(caller, prefix)?;
        self.page(prefix, "", cursor, page_size)
    }

    /// One page of the identifiers with exactly `prefix` whose suffix starts with `starts`,
    /// in key order, after the suffix `cursor` (one range scan).
    pub(super) fn page(
        &self,
        prefix: &Prefix,
        starts: &str,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<Listing> {
        let page_size = page_size.clamp(1, self.config.max_page_size);
        let scan = format!("{prefix}/{starts}");
        let after = cursor.map(|c| format!("{prefix}/{c}"));
        let rows = self
            .store
            .scan(
                Table::Records,
                scan.as_bytes(),
                after.as_deref().map(str::as_bytes),
                page_size + 1,
            )
            .map_err(Error::internal)?;
        let more = rows.len() > page_size;
        let mut identifiers = Vec::with_capacity(rows.len().min(page_size));
        for (k, _) in rows.into_iter().take(page_size) {
            let text = String::from_utf8(k).map_err(Error::internal)?;
            identifiers.push(Identifier::parse(&text).map_err(Error::internal)?);
        }
        let next_cursor = more
            .then(|| identifiers.last().map(|i| i.suffix().to_owned()))
            .flatten();
        Ok(Listing {
            identifiers,
            next_cursor,
        })
    }

    /// Identifiers per (data domain, risk level) of their classified values, every cell of
    /// the taxonomy (admin only). Kept by every write and import, like the counts.
    pub fn classes(&self, caller: &Caller) -> Result<Vec<(DataDomain, Risk, i64)>> {
        self.require_admin(caller)?;
        let mut out = Vec::new();
        for d in DataDomain::ALL {
            for r in Risk::ALL {
                let n = self
                    .store
                    .counter(Table::Counters, class_key(d, r).as_bytes())
                    .map_err(Error::internal)?;
                out.push((d, r, n));
            }
        }
        Ok(out)
    }

    /// Registered counts: the node total and, per prefix, those the caller owns (all of
    /// them for the admin).
    pub fn counts(&self, caller: &Caller) -> Result<Counts> {
        if *caller == Caller::Anonymous {
            return Err(Error::unauthenticated("counts need a token"));
        }
        let node_registered = self
            .store
            .counter(Table::Counters, NODE_COUNT)
            .map_err(Error::internal)?;
        let mut prefixes = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .store
                .scan(
                    Table::Counters,
                    PREFIX_COUNT.as_bytes(),
                    after.as_deref(),
                    1024,
                )
                .map_err(Error::internal)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in &page {
                let name = String::from_utf8_lossy(&k[PREFIX_COUNT.len()..]).into_owned();
                let Ok(p) = Prefix::parse(&name) else {
                    continue;
                };
                if caller.owns(&p, &self.config.node_prefix) {
                    prefixes.push((name, codec::decode_counter(v)));
                }
            }
        }
        Ok(Counts {
            node_registered,
            prefixes,
        })
    }

    /// The registered count that a listing of `prefix` reports (owner or admin): the
    /// counter of the enterprise owning it (or the node's), kept by every write, never a
    /// scan. For a prefix below an enterprise prefix it is the enterprise's whole count.
    pub fn listing_total(&self, caller: &Caller, prefix: &Prefix) -> Result<i64> {
        self.require_owner(caller, prefix)?;
        self.store
            .counter(
                Table::Counters,
                &prefix_count_key(&self.owner_prefix(prefix)),
            )
            .map_err(Error::internal)
    }

    /// The registered count of one prefix (its enterprise's or the node's own counter).
    pub fn count_of(&self, prefix: &Prefix) -> Result<i64> {
        self.store
            .counter(Table::Counters, &prefix_count_key(prefix.as_str()))
            .map_err(Error::internal)
    }
}

/// An answer of [`Core::apply`] of another kind than its command's: a bug.
pub(super) fn unexpected(applied: Applied) -> Error {
    Error::internal(format!("unexpected result of a write: {applied:?}"))
}
