//! Offline import into a stopped node's store: validate like the online path, sort (in
//! memory, spilling sorted runs to disk beyond a budget), merge, skip what is already
//! there, ingest SST files, then one batch of counters and one `import` log entry.
//!
//! Re-running the same import is harmless: records already present with the same content
//! are skipped (and not counted again); different content is reported as a failure.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Item;
use crate::error::{Error, Result};
use crate::record::Record;
use crate::resolver::oplog::{content_digest, index_key, BulkDigest};
use crate::resolver::Core;
use crate::store::{codec, Table};

/// One validated record on its way to the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    key: Vec<u8>,
    /// Position in the input (first wins among duplicates).
    position: u64,
    value: Vec<u8>,
    owner: String,
}

/// What an offline import did.
#[derive(Debug, Clone, Default)]
pub struct OfflineReport {
    pub read: u64,
    pub imported: u64,
    pub already_present: u64,
    /// (input position, identifier, reason)
    pub failures: Vec<(u64, String, String)>,
    pub spilled_runs: usize,
    pub seconds: f64,
}

fn write_entry(w: &mut impl Write, e: &Entry) -> std::io::Result<()> {
    for part in [&e.key[..], &e.value[..], e.owner.as_bytes()] {
        w.write_all(&(part.len() as u32).to_le_bytes())?;
        w.write_all(part)?;
    }
    w.write_all(&e.position.to_le_bytes())
}

fn read_entry(r: &mut impl Read) -> std::io::Result<Option<Entry>> {
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(3);
    for i in 0..3 {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if i == 0 && e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut buf)?;
        parts.push(buf);
    }
    let mut pos = [0u8; 8];
    r.read_exact(&mut pos)?;
    let owner =
        String::from_utf8(parts.pop().unwrap_or_default()).map_err(std::io::Error::other)?;
    let value = parts.pop().unwrap_or_default();
    let key = parts.pop().unwrap_or_default();
    Ok(Some(Entry {
        key,
        position: u64::from_le_bytes(pos),
        value,
        owner,
    }))
}

/// A sorted source of entries: the in-memory run or a spilled file.
enum Run {
    Memory(std::vec::IntoIter<Entry>),
    File(BufReader<std::fs::File>),
}

impl Run {
    fn next(&mut self) -> Result<Option<Entry>> {
        match self {
            Run::Memory(it) => Ok(it.next()),
            Run::File(r) => read_entry(r).map_err(Error::internal),
        }
    }
}

/// Imports `items` into the store behind `core` (the node must be stopped). `memory` bounds
/// the bytes of records held before a sorted run is spilled to `tmp`.
pub fn import(
    core: &Core,
    items: impl Iterator<Item = Item> + Send,
    memory: usize,
    tmp: &Path,
    source: &str,
    mut progress: impl FnMut(u64),
) -> Result<OfflineReport> {
    let started = Instant::now();
    let mut report = OfflineReport::default();
    std::fs::create_dir_all(tmp).map_err(Error::internal)?;
    // 1. Read, validate, encode; spill sorted runs beyond the memory budget.
    let mut run: Vec<Entry> = Vec::new();
    let mut run_bytes = 0usize;
    let mut spilled: Vec<PathBuf> = Vec::new();
    let spill = |run: &mut Vec<Entry>, spilled: &mut Vec<PathBuf>| -> Result<()> {
        run.sort_unstable();
        let path = tmp.join(format!("run-{:05}.bin", spilled.len()));
        let mut w = BufWriter::new(std::fs::File::create(&path).map_err(Error::internal)?);
        for e in run.drain(..) {
            write_entry(&mut w, &e).map_err(Error::internal)?;
        }
        w.flush().map_err(Error::internal)?;
        spilled.push(path);
        Ok(())
    };
    // Parsing, validation and encoding run on a second thread, in chunks; this one
    // gathers, sorts and spills (two cores: about half the work each).
    const CHUNK: usize = 4096;
    type Prepared = std::result::Result<(Vec<u8>, Vec<u8>, String), (String, String)>;
    let gathered = std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u64, Prepared)>>(8);
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            for (position, item) in items.enumerate() {
                let prepared = match item {
                    Err(e) => Err((String::new(), e)),
                    Ok(rec) => rec
                        .to_record()
                        .map_err(|e| Error::invalid(e.to_string()))
                        .and_then(|r| Ok((core.parse_identifier(&rec.identifier)?, r)))
                        .and_then(|(id, r): (_, Record)| core.prepare_import(id, r))
                        .map_err(|e| (rec.identifier, e.message)),
                };
                chunk.push((position as u64, prepared));
                if chunk.len() == CHUNK
                    && tx
                        .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                        .is_err()
                {
                    return; // the gathering side failed
                }
            }
            let _ = tx.send(chunk);
        });
        for (position, prepared) in rx.into_iter().flatten() {
            report.read += 1;
            if report.read % 100_000 == 0 {
                progress(report.read);
            }
            match prepared {
                Ok((key, value, owner)) => {
                    run_bytes += key.len() + value.len() + owner.len() + 48;
                    run.push(Entry {
                        key,
                        position,
                        value,
                        owner,
                    });
                    if run_bytes >= memory {
                        spill(&mut run, &mut spilled)?;
                        run_bytes = 0;
                    }
                }
                Err((identifier, message)) => report.failures.push((position, identifier, message)),
            }
        }
        Ok(())
    });
    gathered?;
    progress(report.read);
    report.spilled_runs = spilled.len();
    run.sort_unstable();
    let mut runs: Vec<Run> = vec![Run::Memory(std::mem::take(&mut run).into_iter())];
    for path in &spilled {
        runs.push(Run::File(BufReader::new(
            std::fs::File::open(path).map_err(Error::internal)?,
        )));
    }

    // 2. Merge in key order; keep the first of duplicates; drop what the store has.
    let store = core.store();
    let (seq, _) = core.log_head();
    let seq = seq + 1;
    let mut heap = BinaryHeap::new();
    for (i, r) in runs.iter_mut().enumerate() {
        if let Some(e) = r.next()? {
            heap.push(Reverse((e, i)));
        }
    }
    let index_path = tmp.join("index.bin");
    let mut index_out =
        BufWriter::new(std::fs::File::create(&index_path).map_err(Error::internal)?);
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut digest = BulkDigest::default();
    let mut last: Option<Entry> = None;
    let mut pending: Vec<Entry> = Vec::new();
    let mut failures = Vec::new();
    let mut duplicates = Vec::new();
    let mut already = 0u64;
    let mut imported = 0u64;
    let mut error: Option<Error> = None;
    // Entries to ingest, produced lazily from the merge and filtered in batches against
    // the store.
    let mut next_unique = || -> Result<Option<Entry>> {
        while let Some(Reverse((e, i))) = heap.pop() {
            if let Some(next) = runs[i].next()? {
                heap.push(Reverse((next, i)));
            }
            match &last {
                Some(prev) if prev.key == e.key => {
                    if prev.value != e.value {
                        let id = String::from_utf8_lossy(&e.key).into_owned();
                        duplicates.push((
                            e.position,
                            id,
                            "appears twice in the input with other values".to_owned(),
                        ));
                    }
                    continue;
                }
                _ => {
                    last = Some(e.clone());
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    };
    let mut fresh = std::iter::from_fn(|| {
        if error.is_some() {
            return None;
        }
        loop {
            if let Some(e) = pending.pop() {
                return Some(e);
            }
            let mut chunk = Vec::with_capacity(1024);
            while chunk.len() < 1024 {
                match next_unique() {
                    Ok(Some(e)) => chunk.push(e),
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        return None;
                    }
                }
            }
            if chunk.is_empty() {
                return None;
            }
            let keys: Vec<&[u8]> = chunk.iter().map(|e| e.key.as_slice()).collect();
            let existing = match store.multi_get(Table::Records, &keys) {
                Ok(x) => x,
                Err(e) => {
                    error = Some(Error::internal(e));
                    return None;
                }
            };
            let mut keep = Vec::with_capacity(chunk.len());
            for (e, old) in chunk.into_iter().zip(existing) {
                match old {
                    None => keep.push(e),
                    Some(old) => {
                        let same = codec::decode_record(&old)
                            .ok()
                            .zip(codec::decode_record(&e.value).ok())
                            .is_some_and(|(a, b)| a.same_content(&b));
                        if same {
                            already += 1;
                        } else {
                            let id = String::from_utf8_lossy(&e.key).into_owned();
                            failures.push((
                                e.position,
                                id,
                                "already registered with other values".into(),
                            ));
                        }
                    }
                }
            }
            keep.reverse();
            pending = keep;
        }
    })
    .map(|e| {
        let hash = content_digest(&e.value);
        digest.add(&e.key, &hash);
        *counts.entry(e.owner.clone()).or_default() += 1;
        imported += 1;
        let id = String::from_utf8_lossy(&e.key).into_owned();
        let _ = index_out
            .write_all(&(index_key(&id, seq).len() as u32).to_le_bytes())
            .and_then(|_| index_out.write_all(&index_key(&id, seq)))
            .and_then(|_| index_out.write_all(&hash));
        (e.key, e.value)
    });
    store
        .ingest_sorted(Table::Records, &mut fresh)
        .map_err(Error::internal)?;
    drop(fresh);
    if let Some(e) = error {
        return Err(e);
    }
    index_out.flush().map_err(Error::internal)?;
    drop(index_out);

    // 3. The log index entries (same order as the records), then counters and the entry.
    let mut index_in = BufReader::new(std::fs::File::open(&index_path).map_err(Error::internal)?);
    let mut index_entries = std::iter::from_fn(|| {
        let mut len = [0u8; 4];
        index_in.read_exact(&mut len).ok()?;
        let mut key = vec![0u8; u32::from_le_bytes(len) as usize];
        index_in.read_exact(&mut key).ok()?;
        let mut hash = vec![0u8; 32];
        index_in.read_exact(&mut hash).ok()?;
        Some((key, hash))
    });
    store
        .ingest_sorted(Table::OplogIndex, &mut index_entries)
        .map_err(Error::internal)?;
    if imported > 0 {
        core.finish_import(
            seq,
            &counts,
            format!("{imported} records from {source}"),
            digest.finish(),
        )?;
    }
    for path in spilled.iter().chain(std::iter::once(&index_path)) {
        let _ = std::fs::remove_file(path);
    }
    report.imported = imported;
    report.already_present = already;
    report.failures.extend(failures);
    report.failures.extend(duplicates);
    report.failures.sort();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
