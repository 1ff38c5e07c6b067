//! Audit of the tamper-evident operation log.
//!
//! A node signs its log head (sequence number and hash) with its Ed25519 node key and
//! reports it to the top-level node, which keeps every signed head. [`verify`] recomputes
//! the chain from the stored entries, checks every current record against the last entry
//! about it, and checks the signed heads against the recomputed chain. What it detects and
//! what it does not: see "Threat model" in ARCHITECTURE.md.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oplog::{
    credential_target, credentials_digest, entries_of, entry_hash, indexed_hash, is_bulk,
    is_credential_op, is_register, matches_record, read_head, BulkDigest, LogEntry, PendingImport,
    GENESIS, PENDING_IMPORT,
};
use crate::store::{codec, Store, Table};

/// Every entry of a small table (enterprises, credentials), in key order.
fn scan_all(store: &dyn Store, table: Table) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map(|(k, _): &(Vec<u8>, Vec<u8>)| k.clone());
        let page = store
            .scan(table, b"", after.as_deref(), 4096)
            .map_err(Error::internal)?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// A log head signed by a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub node_prefix: String,
    pub seq: u64,
    pub hash: String,
    /// Seconds since the epoch when signed.
    pub at: i64,
    /// Hex Ed25519 signature over [`SignedHead::message`].
    pub signature: String,
    /// Hex Ed25519 public key of the node.
    pub public_key: String,
}

impl SignedHead {
    pub fn message(node_prefix: &str, seq: u64, hash: &str) -> Vec<u8> {
        format!("idnode-head-v1|{node_prefix}|{seq}|{hash}").into_bytes()
    }

    pub fn sign(key: &SigningKey, node_prefix: &str, seq: u64, hash: &str, at: i64) -> SignedHead {
        let sig = key.sign(&SignedHead::message(node_prefix, seq, hash));
        SignedHead {
            node_prefix: node_prefix.to_owned(),
            seq,
            hash: hash.to_owned(),
            at,
            signature: hex::encode(sig.to_bytes()),
            public_key: hex::encode(key.verifying_key().to_bytes()),
        }
    }

    /// Checks the signature with the head's own public key (callers pin the key).
    pub fn verify(&self) -> bool {
        let Ok(Ok(key)) = hex::decode(&self.public_key).map(|b| {
            <[u8; 32]>::try_from(b.as_slice())
                .map_err(|_| ())
                .and_then(|b| VerifyingKey::from_bytes(&b).map_err(|_| ()))
        }) else {
            return false;
        };
        let Ok(Ok(sig)) = hex::decode(&self.signature)
            .map(|b| <[u8; 64]>::try_from(b.as_slice()).map(|b| Signature::from_bytes(&b)))
        else {
            return false;
        };
        key.verify(
            &SignedHead::message(&self.node_prefix, self.seq, &self.hash),
            &sig,
        )
        .is_ok()
    }
}

/// One thing that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The first entry whose hash or link does not recompute.
    Chain { seq: u64, reason: String },
    /// A record that is not what the log says it should be.
    Record { identifier: String, reason: String },
    /// A signed head that the log does not match.
    Head { seq: u64, reason: String },
    /// A subject's valid credentials (`admin` or an enterprise prefix) that are not what
    /// the log says.
    Credentials { subject: String, reason: String },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Chain { seq, reason } => write!(f, "log entry {seq}: {reason}"),
            Problem::Record { identifier, reason } => write!(f, "record {identifier}: {reason}"),
            Problem::Head { seq, reason } => write!(f, "signed head at {seq}: {reason}"),
            Problem::Credentials { subject, reason } => {
                write!(f, "credentials of {subject}: {reason}")
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub entries: u64,
    pub records: u64,
    pub heads: usize,
    /// The last entry's (seq, hash).
    pub head: (u64, String),
    pub problems: Vec<Problem>,
}

/// Recomputes the log of `store`, checks its records and the given signed heads (with
/// `key`, the node's public key, when known).
pub fn verify(
    store: &dyn Store,
    heads: &[SignedHead],
    key: Option<&VerifyingKey>,
) -> Result<Report> {
    let mut report = Report {
        head: (0, GENESIS.to_owned()),
        ..Default::default()
    };
    // An offline import between its first ingestion and its log entry: the store is half
    // way, on purpose, until the next open completes it. Said plainly, rather than as the
    // records and index entries it has not logged yet.
    if let Some(bytes) = store
        .get(Table::Meta, PENDING_IMPORT)
        .map_err(Error::internal)?
    {
        let import: PendingImport = codec::decode_json(&bytes).map_err(Error::internal)?;
        report.head = read_head(store)?;
        report.problems.push(Problem::Chain {
            seq: import.seq,
            reason: format!(
                "an offline import ({}) was interrupted before this entry was written; \
                 the next `idnode serve` or `idnode import --offline` on this data directory \
                 completes it (the rest is verified after that)",
                import.detail
            ),
        });
        return Ok(report);
    }
    // 1. The chain, in sequence order; the hash at each sequence number for step 3.
    let mut hashes: HashMap<u64, String> = HashMap::from([(0, GENESIS.to_owned())]);
    let mut chain_ok = true;
    // Bulk entries: their `content`, and the digest of their index entries as scanned.
    let mut bulk: HashMap<u64, (String, BulkDigest)> = HashMap::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan(Table::Oplog, b"", after.as_deref(), 4096)
            .map_err(Error::internal)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (k, v) in page {
            report.entries += 1;
            let seq = <[u8; 8]>::try_from(k.as_slice())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let entry: std::result::Result<LogEntry, _> = codec::decode_json(&v);
            let (expected_seq, expected_prev) = (report.head.0 + 1, report.head.1.clone());
            let problem = match &entry {
                Err(e) => Some(format!("unreadable: {e}")),
                Ok(e) if e.seq != seq || seq != expected_seq => Some(format!(
                    "sequence {} where {expected_seq} was expected",
                    e.seq
                )),
                Ok(e) if e.prev != expected_prev => {
                    Some("does not link to the previous entry".into())
                }
                Ok(e) if entry_hash(e) != e.hash => {
                    Some("its hash does not match its content".into())
                }
                Ok(_) => None,
            };
            if let (Some(reason), true) = (problem, chain_ok) {
                report.problems.push(Problem::Chain { seq, reason });
                chain_ok = false;
            }
            if let Ok(e) = entry {
                if is_bulk(&e.op) {
                    bulk.insert(
                        seq,
                        (e.content.clone().unwrap_or_default(), BulkDigest::default()),
                    );
                }
                hashes.insert(seq, e.hash.clone());
                report.head = (seq, e.hash);
            }
        }
    }
    // 2. Every record against the last entry about it, and every logged identifier.
    let mut after: Option<Vec<u8>> = None;
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = store
            .scan(Table::Records, b"", after.as_deref(), 4096)
            .map_err(Error::internal)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (k, v) in page {
            report.records += 1;
            let id = String::from_utf8_lossy(&k).into_owned();
            let entries = entries_of(store, &id)?;
            if !matches_record(entries.last(), Some(&v)) {
                let reason = match entries.last() {
                    None => "present but never logged".to_owned(),
                    Some(e) => format!("differs from log entry {}", e.seq),
                };
                report.problems.push(Problem::Record {
                    identifier: id.clone(),
                    reason,
                });
            }
            seen.insert(id);
        }
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store
            .scan(Table::OplogIndex, b"", after.as_deref(), 4096)
            .map_err(Error::internal)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (k, v) in page {
            // `<target>\0<seq: 8 bytes>`: the separator sits 9 bytes from the end.
            let Some(cut) = k.len().checked_sub(9) else {
                continue;
            };
            let seq = <[u8; 8]>::try_from(&k[cut + 1..])
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if let Some((_, digest)) = bulk.get_mut(&seq).filter(|_| !v.is_empty()) {
                // Scanned in identifier order, the order the digest was made in. An
                // unreadable hash cannot have been digested: all ones make it differ.
                digest.add(&k[..cut], &indexed_hash(&v).unwrap_or([0xff; 32]));
            }
            let target = String::from_utf8_lossy(&k[..cut]).into_owned();
            if !target.contains('/') || seen.contains(&target) || !seen.insert(target.clone()) {
                continue;
            }
            // Logged identifier without a record: its last entry must be a delete or a
            // non-record object (templates live in their own table).
            let entries = entries_of(store, &target)?;
            let is_record_op = entries
                .last()
                .is_some_and(|e| is_register(&e.op) || e.op == "update" || is_bulk(&e.op));
            let in_templates = store
                .get(Table::Templates, target.as_bytes())
                .map_err(Error::internal)?
                .is_some();
            if is_record_op && !in_templates {
                report.problems.push(Problem::Record {
                    identifier: target,
                    reason: "logged but missing from the store".into(),
                });
            }
        }
    }
    // The per-record content hashes of every bulk entry are the ones it committed to.
    let mut bulk: Vec<_> = bulk.into_iter().collect();
    bulk.sort_by_key(|(seq, _)| *seq);
    for (seq, (content, digest)) in bulk {
        if digest.finish() != content {
            report.problems.push(Problem::Chain {
                seq,
                reason: "the content hashes in its index entries differ from its digest".into(),
            });
        }
    }
    // 3. Every subject's valid credentials against its last credential entry (stores
    //    from before credentials were digested have none with content: not checked).
    let mut subjects: std::collections::BTreeMap<String, Vec<(String, Vec<u8>)>> =
        std::collections::BTreeMap::from([("admin".to_owned(), Vec::new())]);
    for (prefix, _) in scan_all(store, Table::Enterprises)? {
        subjects.insert(String::from_utf8_lossy(&prefix).into_owned(), Vec::new());
    }
    for (id, bytes) in scan_all(store, Table::Credentials)? {
        let id = String::from_utf8_lossy(&id).into_owned();
        let target = match codec::decode_json::<crate::auth::Credential>(&bytes) {
            Ok(c) => credential_target(&c.subject),
            Err(e) => {
                report.problems.push(Problem::Credentials {
                    subject: id,
                    reason: format!("unreadable credential: {e}"),
                });
                continue;
            }
        };
        if let Some(target) = target {
            subjects.entry(target).or_default().push((id, bytes));
        }
    }
    for (subject, stored) in subjects {
        let entries = entries_of(store, &subject)?;
        let last = entries
            .iter()
            .rev()
            .find(|e| is_credential_op(&e.op) && e.content.is_some());
        if let Some(e) = last {
            if e.content.as_deref() != Some(credentials_digest(&stored).as_str()) {
                report.problems.push(Problem::Credentials {
                    subject,
                    reason: format!("differ from log entry {}", e.seq),
                });
            }
        }
    }
    // 4. Signed heads.
    for h in heads {
        report.heads += 1;
        let key_ok = match key {
            Some(k) => hex::encode(k.to_bytes()) == h.public_key,
            None => true,
        };
        let reason = if !key_ok {
            Some("signed by another key".to_owned())
        } else if !h.verify() {
            Some("bad signature".to_owned())
        } else {
            match hashes.get(&h.seq) {
                None => Some("the log has no such entry (truncated?)".to_owned()),
                Some(hash) if *hash != h.hash => Some("the log's hash differs".to_owned()),
                Some(_) => None,
            }
        };
        if let Some(reason) = reason {
            report.problems.push(Problem::Head { seq: h.seq, reason });
        }
    }
    Ok(report)
}
