//! The operation log: every mutation appends a hash-chained entry in the same atomic batch
//! as the change itself, so the log and the data cannot disagree without detection.
//!
//! Entry `n` carries `prev` = hash of entry `n-1` and `hash` = SHA-256 over its own fields
//! and `prev` (see [`entry_hash`]). Creates and updates carry `content`, the SHA-256 of the
//! record bytes written, so the current records can be checked against the log
//! (`audit::verify`). Appends are serialised by the head mutex, held across the store write
//! (inside any key latches, never the other way round).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::store::{codec, Store, Table};

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    /// Seconds since the epoch.
    pub at: i64,
    /// `create`, `update`, `delete`, `grant`, `revoke_grant`, `enterprise`, `tokens`
    /// (every change of a subject's valid credentials, the admin's included), `quota`,
    /// `template`.
    pub op: String,
    /// Who: `admin`, `enterprise:<prefix>`, `node:<prefix>`.
    pub actor: String,
    /// What: an identifier, a prefix or a grant scope.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Hex SHA-256 of the record bytes written (creates and updates), or of the subject's
    /// valid credentials ([`credentials_digest`], credential entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Hex hash of the previous entry (64 zeros for the first).
    pub prev: String,
    /// Hex hash of this entry.
    pub hash: String,
}

/// An entry before it has a place in the chain.
#[derive(Debug, Clone)]
pub struct Draft {
    pub op: &'static str,
    pub actor: String,
    pub target: String,
    pub detail: Option<String>,
    pub content: Option<String>,
    /// For an entry covering many records ([`is_bulk`]): each record's identifier and
    /// content hash, kept in its log index entry.
    pub covers: Vec<(String, Digest32)>,
}

/// A SHA-256 digest.
pub type Digest32 = [u8; 32];

/// True for the operations whose one entry covers many records (an offline `import`, a
/// `batch_register` message); each record's content hash is in its log index entry (32
/// bytes; 64 hex digits in stores written before that), and the entry's `content` is the
/// SHA-256 over every (identifier, hex content hash) pair in order. Stores written before
/// the glossary's renames name the message `batch_create`; their entries stay as written
/// (the chain hashes them), so both names are read.
pub fn is_bulk(op: &str) -> bool {
    matches!(op, "import" | "batch_register" | "batch_create")
}

/// True for an entry that registered one identifier's record (`create` in stores written
/// before the renames).
pub fn is_register(op: &str) -> bool {
    matches!(op, "register" | "create")
}

/// The `content` of a bulk entry, built pair by pair: SHA-256 over its records'
/// (identifier, content hash) pairs, in identifier order. Written by the online and
/// offline imports, recomputed by `audit::verify`.
#[derive(Default)]
pub struct BulkDigest(Sha256);

impl BulkDigest {
    pub fn add(&mut self, id: &[u8], content_hash: &Digest32) {
        let mut hex = [0u8; 64];
        hex::encode_to_slice(content_hash, &mut hex).expect("64 digits for 32 bytes");
        self.0.update(id);
        self.0.update(hex);
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// True for the operations that set a subject's valid credentials (`content` is their
/// [`credentials_digest`] in entries written since credentials are audited).
pub fn is_credential_op(op: &str) -> bool {
    op == "tokens" || op == "enterprise"
}

/// The log target of a subject's credentials: `admin`, or the enterprise prefix. Node
/// tokens live in the top-level node's store, which keeps no log.
pub fn credential_target(subject: &crate::auth::Subject) -> Option<String> {
    match subject {
        crate::auth::Subject::Admin => Some("admin".to_owned()),
        crate::auth::Subject::Enterprise { prefix } => Some(prefix.clone()),
        crate::auth::Subject::Node { .. } => None,
    }
}

/// The `content` of a credential entry: SHA-256 over a subject's valid credentials as
/// stored (id, then the stored bytes; in id order), so `audit::verify` can recompute it
/// from the store. Holds only hashes of secrets, never a secret.
pub fn credentials_digest(credentials: &[(String, Vec<u8>)]) -> String {
    let mut sorted: Vec<_> = credentials.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = Sha256::new();
    h.update(b"idnode-credentials-v1");
    for (id, bytes) in sorted {
        h.update((id.len() as u64).to_be_bytes());
        h.update(id.as_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

/// `meta` key of a [`PendingImport`].
pub const PENDING_IMPORT: &[u8] = b"import_pending";

/// An offline import that has begun to change the store: everything its log entry and
/// counters need, written durably before the first of its tables is ingested and deleted
/// in the batch that appends that entry. While it is there, the store is between the
/// state before the import and the state after it; opening a `Core` completes it
/// (`Core::open`), and `audit::verify` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingImport {
    /// The sequence number of its log entry (the head's plus one).
    pub seq: u64,
    /// Records it adds.
    pub records: u64,
    /// Records it adds per counting prefix.
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Records it adds per domain × risk counter key (`class/<domain>/<risk>`).
    #[serde(default)]
    pub classes: std::collections::BTreeMap<String, i64>,
    /// The day its daily counters count in (days since the epoch, UTC).
    pub day: i64,
    /// The log entry's `detail` and `content` (the [`BulkDigest`] of its records).
    pub detail: String,
    pub content: String,
}

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 over the entry's fields (not `hash`), length-prefixed so no two entries collide
/// by moving bytes between fields.
pub fn entry_hash(e: &LogEntry) -> String {
    let mut h = Sha256::new();
    h.update(b"idnode-log-v1");
    h.update(e.seq.to_be_bytes());
    h.update(e.at.to_be_bytes());
    for field in [
        e.op.as_str(),
        e.actor.as_str(),
        e.target.as_str(),
        e.detail.as_deref().unwrap_or("\u{0}"),
        e.content.as_deref().unwrap_or("\u{0}"),
        e.prev.as_str(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(content_digest(bytes))
}

pub fn content_digest(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

/// The content hash a log index entry holds: 32 bytes, or (stores written before) 64 hex
/// digits; `None` for an entry that carries none, or an unreadable one.
pub fn indexed_hash(value: &[u8]) -> Option<Digest32> {
    match value.len() {
        32 => value.try_into().ok(),
        64 => {
            let mut d = [0u8; 32];
            hex::decode_to_slice(value, &mut d).ok().map(|_| d)
        }
        _ => None,
    }
}

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn index_key(target: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(target.len() + 9);
    k.extend_from_slice(target.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn actor(caller: &Caller) -> String {
    match caller {
        Caller::Anonymous => "anonymous".into(),
        Caller::Admin => "admin".into(),
        Caller::Enterprise(p) => format!("enterprise:{p}"),
        Caller::Node(p) => format!("node:{p}"),
    }
}

/// The last entry's (seq, hash), or (0, genesis) for an empty log.
pub fn read_head(store: &dyn Store) -> Result<(u64, String)> {
    // Keys are big-endian sequence numbers: the last one sorts last. Scan backwards by
    // probing from the highest possible key is not in the Store trait, so keep the head in
    // Meta, written in the same batch as every append.
    match store
        .get(Table::Meta, b"log_head")
        .map_err(Error::internal)?
    {
        None => Ok((0, GENESIS.to_owned())),
        Some(bytes) => codec::decode_json(&bytes).map_err(Error::internal),
    }
}

/// The log entries of one identifier and whether they hold together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub entries: Vec<LogEntry>,
    /// Every entry's hash recomputes, and the last entry matches the stored record.
    pub consistent: bool,
    pub head: (u64, String),
}

/// Reads the entries indexed under `target`, oldest first.
pub fn entries_of(store: &dyn Store, target: &str) -> Result<Vec<LogEntry>> {
    let mut prefix = target.as_bytes().to_vec();
    prefix.push(0);
    let rows = store
        .scan(Table::OplogIndex, &prefix, None, 1_000_000)
        .map_err(Error::internal)?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, v) in rows {
        let seq = &k[prefix.len()..];
        match store.get(Table::Oplog, seq).map_err(Error::internal)? {
            Some(bytes) => {
                let mut e: LogEntry = codec::decode_json(&bytes).map_err(Error::internal)?;
                // A bulk entry covers many records; each one's content hash is in its
                // index entry.
                if is_bulk(&e.op) {
                    e.content = indexed_hash(&v).map(hex::encode);
                    e.target = target.to_owned();
                }
                out.push(e)
            }
            None => {
                return Err(Error::internal(format!(
                    "log index of {target} points at a missing entry"
                )))
            }
        }
    }
    Ok(out)
}

/// True if the stored record bytes (`None`: absent) are what the last entry says.
pub fn matches_record(last: Option<&LogEntry>, record: Option<&[u8]>) -> bool {
    match (last, record) {
        (None, None) => true,
        (Some(e), None) => e.op == "delete",
        (Some(e), Some(bytes)) => {
            e.op != "delete" && e.content.as_deref() == Some(&content_hash(bytes))
        }
        (None, Some(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_written_before_the_renames_are_still_read() {
        assert!(is_register("register") && is_register("create"));
        assert!(is_bulk("batch_register") && is_bulk("batch_create") && is_bulk("import"));
        assert!(!is_register("update") && !is_bulk("register"));
    }

    #[test]
    fn index_values_hold_raw_or_hex_hashes() {
        let d = content_digest(b"record");
        assert_eq!(indexed_hash(&d), Some(d));
        assert_eq!(indexed_hash(hex::encode(d).as_bytes()), Some(d));
        assert_eq!(indexed_hash(b""), None);
        assert_eq!(indexed_hash(&[0u8; 31]), None);
        assert_eq!(indexed_hash(&[b'z'; 64]), None);
        // The digest of a bulk entry is over the hex form, whatever the index holds.
        let mut a = BulkDigest::default();
        a.add(b"88.101.5/A", &d);
        let mut h = Sha256::new();
        h.update(b"88.101.5/A");
        h.update(content_hash(b"record"));
        assert_eq!(a.finish(), hex::encode(h.finalize()));
    }
}
