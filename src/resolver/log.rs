//! The core's side of the operation log (`crate::oplog`): drafting entries, appending them
//! in the same atomic batch as the change, the head, and one identifier's history.

use super::command::Stamp;
use super::Core;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::oplog::{
    actor, content_hash, entries_of, entry_hash, index_key, is_bulk, matches_record, seq_key,
    Draft, LogEntry, Proof,
};
use crate::store::{codec, Batch, Table};

impl Core {
    /// A draft entry for a change made by `caller`.
    pub(super) fn entry(
        &self,
        op: &'static str,
        caller: &Caller,
        target: String,
        detail: Option<String>,
        content: Option<&[u8]>,
    ) -> Draft {
        Draft {
            op,
            actor: actor(caller),
            target,
            detail,
            content: content.map(content_hash),
            covers: Vec::new(),
        }
    }

    /// Writes `batch` with `drafts` appended to the log (entries of the stamp's time) and
    /// the stamp's site log position, atomically and durably.
    pub(super) fn commit_logged(
        &self,
        mut batch: Batch,
        drafts: Vec<Draft>,
        stamp: &Stamp,
    ) -> Result<()> {
        stamp.seal(&mut batch)?;
        let mut head = self.head.lock().unwrap_or_else(|e| e.into_inner());
        let (mut seq, mut prev) = head.clone();
        let at = stamp.at;
        for d in drafts {
            seq += 1;
            let mut e = LogEntry {
                seq,
                at,
                op: d.op.to_owned(),
                actor: d.actor,
                target: d.target,
                detail: d.detail,
                content: d.content,
                prev: prev.clone(),
                hash: String::new(),
            };
            e.hash = entry_hash(&e);
            batch.put(Table::OplogIndex, index_key(&e.target, seq), Vec::new());
            for (target, hash) in d.covers {
                batch.put(Table::OplogIndex, index_key(&target, seq), hash.to_vec());
            }
            prev = e.hash.clone();
            batch.put(Table::Oplog, seq_key(seq), codec::encode_json(&e));
        }
        batch.put(
            Table::Meta,
            b"log_head".to_vec(),
            codec::encode_json(&(seq, prev.clone())),
        );
        self.commit(batch)?;
        *head = (seq, prev);
        Ok(())
    }

    /// The log head: (last sequence number, its hash).
    pub fn log_head(&self) -> (u64, String) {
        self.head.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Core {
    /// The history of one identifier from the log (owner or admin).
    pub fn proof(&self, caller: &Caller, id: &crate::identifier::Identifier) -> Result<Proof> {
        self.require_owner(caller, &id.prefix())?;
        let entries = entries_of(self.store.as_ref(), id.as_str())?;
        let record = self
            .store
            .get(Table::Records, id.as_bytes())
            .map_err(Error::internal)?;
        // A bulk entry carries the per-record hash from its index (see `entries_of`).
        let consistent = entries
            .iter()
            .all(|e| is_bulk(&e.op) || entry_hash(e) == e.hash)
            && matches_record(entries.last(), record.as_deref());
        Ok(Proof {
            entries,
            consistent,
            head: self.log_head(),
        })
    }
}
