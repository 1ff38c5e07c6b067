//! Offline import into a stopped node's store: validate like the online path, sort (in
//! memory, spilling LZ4-compressed sorted runs to disk beyond a budget), merge, skip what
//! is already there, stage the records' and log index's table files, then commit the
//! import through [`Core::commit_import`]: one durable pending import, the two ingestions,
//! then one batch of counters and the one `import` log entry.
//!
//! Crash safety: until the pending import is written, the store is untouched (a failure
//! or a kill leaves it exactly as before; what was staged is discarded by the next run).
//! From then on the import completes: now, or at the next `Core::open` (a re-run of the
//! import, `idnode serve`) if this process is killed or fails part way. Every I/O error
//! propagates; failure points for the tests: [`crate::failpoint`], named
//! `offline-import:{spill,merge,staged}` here and `offline-import:{marked,
//! ingested-index,ingested-records,logged}` in `Core::commit_import`.
//!
//! Re-running the same import is harmless: records already present with the same content
//! are skipped (and not counted again); different content is reported as a failure.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Item;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::oplog::{content_digest, index_key, BulkDigest};
use crate::record::Record;
use crate::resolver::{Core, IMPORT_STAGING};
use crate::store::{codec, Staging, Table};

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
    /// The spilled runs' bytes on disk (LZ4-compressed) and before compression: the
    /// scratch space the import needed beside the store.
    pub spilled_bytes: u64,
    pub spilled_raw_bytes: u64,
    pub seconds: f64,
}

fn write_entry(w: &mut impl Write, e: &Entry) -> std::io::Result<()> {
    for part in [&e.key[..], &e.value[..], e.owner.as_bytes()] {
        w.write_all(&(part.len() as u32).to_le_bytes())?;
        w.write_all(part)?;
    }
    w.write_all(&e.position.to_le_bytes())
}

/// Reads one entry; the caller knows how many a run holds, so any end of file here is
/// an error (a truncated run is never taken for a shorter one).
fn read_entry(r: &mut impl Read) -> std::io::Result<Entry> {
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(3);
    for _ in 0..3 {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
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
    Ok(Entry {
        key,
        position: u64::from_le_bytes(pos),
        value,
        owner,
    })
}

/// A sorted run spilled to disk: its file and how many entries it holds.
struct Spilled {
    path: PathBuf,
    entries: u64,
}

/// Writes `run` to `path` as one LZ4 frame (fast level, linked blocks, block and content
/// checksums): scratch space, not CPU, is what a large import runs out of (300M generated
/// records spilled 63.6 GB as written, 13.6 GB compressed). Returns the bytes written to
/// disk and the bytes before compression.
fn write_run(path: &Path, run: &[Entry]) -> std::io::Result<(u64, u64)> {
    let encoder = lz4::EncoderBuilder::new()
        .level(1)
        .build(std::fs::File::create(path)?)?;
    let mut w = CountingWriter {
        inner: BufWriter::with_capacity(1 << 18, encoder),
        bytes: 0,
    };
    for e in run {
        write_entry(&mut w, e)?;
    }
    let encoder = w.inner.into_inner().map_err(|e| e.into_error())?;
    let (file, finished) = encoder.finish();
    finished?;
    Ok((file.metadata()?.len(), w.bytes))
}

/// Opens a run written by [`write_run`].
fn open_run(path: &Path) -> std::io::Result<BufReader<lz4::Decoder<std::fs::File>>> {
    Ok(BufReader::with_capacity(
        1 << 16,
        lz4::Decoder::new(std::fs::File::open(path)?)?,
    ))
}

/// Counts the bytes written through it.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A sorted source of entries: the in-memory run or a spilled file.
enum Run {
    Memory(std::vec::IntoIter<Entry>),
    File {
        reader: BufReader<lz4::Decoder<std::fs::File>>,
        path: PathBuf,
        left: u64,
    },
}

impl Run {
    fn next(&mut self) -> Result<Option<Entry>> {
        match self {
            Run::Memory(it) => Ok(it.next()),
            Run::File { left: 0, .. } => Ok(None),
            Run::File { reader, path, left } => {
                let e = read_entry(reader).map_err(|e| {
                    Error::internal(format!("reading the sorted run {}: {e}", path.display()))
                })?;
                *left -= 1;
                Ok(Some(e))
            }
        }
    }
}

/// The runs merged in key order, the first of duplicate keys kept.
struct Merge {
    runs: Vec<Run>,
    heap: BinaryHeap<Reverse<(Entry, usize)>>,
    /// The last key returned and its value.
    last: Option<(Vec<u8>, Vec<u8>)>,
}

impl Merge {
    fn new(mut runs: Vec<Run>) -> Result<Merge> {
        let mut heap = BinaryHeap::new();
        for (i, r) in runs.iter_mut().enumerate() {
            if let Some(e) = r.next()? {
                heap.push(Reverse((e, i)));
            }
        }
        Ok(Merge {
            runs,
            heap,
            last: None,
        })
    }

    /// The next entry with a new key; later entries with the same key and other values
    /// go to `duplicates`.
    fn next(&mut self, duplicates: &mut Vec<(u64, String, String)>) -> Result<Option<Entry>> {
        while let Some(Reverse((e, i))) = self.heap.pop() {
            if let Some(next) = self.runs[i].next()? {
                self.heap.push(Reverse((next, i)));
            }
            match &self.last {
                Some((key, value)) if *key == e.key => {
                    if *value != e.value {
                        duplicates.push((
                            e.position,
                            String::from_utf8_lossy(&e.key).into_owned(),
                            "appears twice in the input with other values".to_owned(),
                        ));
                    }
                }
                _ => {
                    self.last = Some((e.key.clone(), e.value.clone()));
                    return Ok(Some(e));
                }
            }
        }
        Ok(None)
    }
}

/// What the merge keeps: the records to add, in key order, staged with their log index
/// entries, and what they add up to.
struct Fresh<'a> {
    /// Until finished.
    staging: Option<Box<dyn Staging + 'a>>,
    seq: u64,
    counts: BTreeMap<String, i64>,
    /// Records per domain × risk counter key.
    classes: BTreeMap<String, i64>,
    digest: BulkDigest,
    imported: u64,
    already: u64,
    failures: Vec<(u64, String, String)>,
}

impl Fresh<'_> {
    /// Checks a chunk of merged entries against the store and stages the new ones.
    fn add(&mut self, core: &Core, chunk: &mut Vec<Entry>) -> Result<()> {
        let keys: Vec<&[u8]> = chunk.iter().map(|e| e.key.as_slice()).collect();
        let existing = core
            .store()
            .multi_get(Table::Records, &keys)
            .map_err(Error::internal)?;
        for (e, old) in chunk.drain(..).zip(existing) {
            if let Some(old) = old {
                let same = codec::decode_record(&old)
                    .ok()
                    .zip(codec::decode_record(&e.value).ok())
                    .is_some_and(|(a, b)| a.same_content(&b));
                if same {
                    self.already += 1;
                } else {
                    self.failures.push((
                        e.position,
                        String::from_utf8_lossy(&e.key).into_owned(),
                        "already registered with other values".into(),
                    ));
                }
                continue;
            }
            let hash = content_digest(&e.value);
            self.digest.add(&e.key, &hash);
            let id = String::from_utf8_lossy(&e.key);
            let staging = self
                .staging
                .as_mut()
                .ok_or_else(|| Error::internal("staging finished"))?;
            staging
                .put(Table::Records, &e.key, &e.value)
                .and_then(|()| staging.put(Table::OplogIndex, &index_key(&id, self.seq), &hash))
                .map_err(Error::internal)?;
            *self.counts.entry(e.owner).or_default() += 1;
            // Only records with classified values are written in format 2.
            if e.value.first() == Some(&crate::store::codec::RECORD_FORMAT_V2) {
                let record = crate::store::codec::decode_record(&e.value)
                    .map_err(|err| Error::internal(format!("record {id}: {err}")))?;
                for (d, r) in record.classes() {
                    *self
                        .classes
                        .entry(crate::resolver::class_key(d, r))
                        .or_default() += 1;
                }
            }
            self.imported += 1;
        }
        Ok(())
    }
}

/// Merges `runs`, checks the entries against the store and stages the new ones with
/// their log index entries (pointing at log entry `seq`), completely: the staging area is
/// finished when this returns `Ok`. Changes no table.
fn stage_fresh<'a>(
    core: &'a Core,
    runs: Vec<Run>,
    seq: u64,
    duplicates: &mut Vec<(u64, String, String)>,
) -> Result<Fresh<'a>> {
    let mut fresh = Fresh {
        staging: Some(
            core.store()
                .stage(IMPORT_STAGING)
                .map_err(Error::internal)?,
        ),
        seq,
        counts: BTreeMap::new(),
        classes: BTreeMap::new(),
        digest: BulkDigest::default(),
        imported: 0,
        already: 0,
        failures: Vec::new(),
    };
    let mut merge = Merge::new(runs)?;
    let mut chunk = Vec::with_capacity(1024);
    let mut chunks = 0u64;
    loop {
        let next = merge.next(duplicates)?;
        let done = next.is_none();
        chunk.extend(next);
        if chunk.len() == 1024 || (done && !chunk.is_empty()) {
            fresh.add(core, &mut chunk)?;
            chunks += 1;
            if chunks == 1 {
                failpoint::hit("offline-import:merge").map_err(Error::internal)?;
            }
        }
        if done {
            break;
        }
    }
    if let Some(staging) = fresh.staging.take() {
        staging.finish().map_err(Error::internal)?;
    }
    Ok(fresh)
}

/// Imports `items` into the store behind `core` (the node must be stopped). `memory` bounds
/// the bytes of records held before a sorted run is spilled to `tmp`.
///
/// Errors: `InvalidArgument` for the store of a replicated site's server; any I/O or store
/// failure. Before the import is committed the store is left
/// as it was; after, the import is completed by the next `Core::open` (module doc).
pub fn import(
    core: &Core,
    items: impl Iterator<Item = Item> + Send,
    memory: usize,
    tmp: &Path,
    source: &str,
    mut progress: impl FnMut(u64),
) -> Result<OfflineReport> {
    let started = Instant::now();
    // A replicated site's servers hold what their shared log says: records written into one
    // store directly would exist on no other server. A site is fed through its log.
    let applied = core.site_applied()?;
    if applied > 0 {
        return Err(Error::invalid(format!(
            "this store is a server of a replicated site (its log applied through sequence \
             {applied}): an offline import would make it differ from the other servers; \
             import online through any server instead (idnode import --node ...)"
        )));
    }
    let mut report = OfflineReport::default();
    std::fs::create_dir_all(tmp).map_err(Error::internal)?;
    // 1. Read, validate, encode; spill sorted runs beyond the memory budget.
    let mut run: Vec<Entry> = Vec::new();
    let mut run_bytes = 0usize;
    let mut spilled: Vec<Spilled> = Vec::new();
    let (mut spilled_bytes, mut spilled_raw_bytes) = (0u64, 0u64);
    let mut spill = |run: &mut Vec<Entry>, spilled: &mut Vec<Spilled>| -> Result<()> {
        run.sort_unstable();
        let path = tmp.join(format!("run-{:05}.lz4", spilled.len()));
        let (bytes, raw) = write_run(&path, run)
            .and_then(|sizes| failpoint::hit("offline-import:spill").map(|()| sizes))
            .map_err(|e| {
                Error::internal(format!("writing the sorted run {}: {e}", path.display()))
            })?;
        spilled_bytes += bytes;
        spilled_raw_bytes += raw;
        spilled.push(Spilled {
            path,
            entries: run.len() as u64,
        });
        run.clear();
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
    (report.spilled_bytes, report.spilled_raw_bytes) = (spilled_bytes, spilled_raw_bytes);
    run.sort_unstable();
    let mut runs: Vec<Run> = vec![Run::Memory(std::mem::take(&mut run).into_iter())];
    for s in &spilled {
        let reader =
            open_run(&s.path).map_err(|e| Error::internal(format!("{}: {e}", s.path.display())))?;
        runs.push(Run::File {
            reader,
            path: s.path.clone(),
            left: s.entries,
        });
    }

    // 2. Merge in key order; keep the first of duplicates; drop what the store has; stage
    // the rest. The store is not changed: a failure here leaves it as it was.
    let store = core.store();
    let seq = core.log_head().0 + 1;
    let mut duplicates = Vec::new();
    let staged = stage_fresh(core, runs, seq, &mut duplicates).and_then(|fresh| {
        failpoint::hit("offline-import:staged").map_err(Error::internal)?;
        for s in &spilled {
            std::fs::remove_file(&s.path)
                .map_err(|e| Error::internal(format!("{}: {e}", s.path.display())))?;
        }
        Ok(fresh)
    });
    let Fresh {
        counts,
        classes,
        digest,
        imported,
        already,
        failures,
        ..
    } = match staged {
        Ok(fresh) => fresh,
        Err(e) => {
            // The error to report is this one; what was staged is discarded again by the
            // next import in any case.
            if let Err(cleanup) = store.discard_staged(IMPORT_STAGING) {
                tracing::warn!("discarding the staged import: {cleanup}");
            }
            return Err(e);
        }
    };

    // 3. Commit: from the durable pending import on, the import completes (now, or at
    // the next open of the store if this process dies or fails).
    if imported > 0 {
        core.commit_import(
            seq,
            counts,
            classes,
            format!("{imported} records from {source}"),
            digest.finish(),
        )?;
    } else {
        store
            .discard_staged(IMPORT_STAGING)
            .map_err(Error::internal)?;
    }
    report.imported = imported;
    report.already_present = already;
    report.failures.extend(failures);
    report.failures.extend(duplicates);
    report.failures.sort();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> Entry {
        Entry {
            key: format!("88.101.5/BAT-{i:08}").into_bytes(),
            position: i,
            value: format!("{{\"batch\":{i},\"line\":\"总装 A 线\"}}").into_bytes(),
            owner: "88.101.5".into(),
        }
    }

    #[test]
    fn a_spilled_run_reads_back_whole_and_a_truncated_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-00000.lz4");
        let run: Vec<Entry> = (0..20_000).map(entry).collect();
        let (on_disk, raw) = write_run(&path, &run).unwrap();
        assert_eq!(on_disk, std::fs::metadata(&path).unwrap().len());
        assert!(on_disk * 3 < raw, "{on_disk} of {raw} bytes");

        let mut reader = open_run(&path).unwrap();
        for want in &run {
            assert_eq!(&read_entry(&mut reader).unwrap(), want);
        }

        // Cut the file in the middle: reading the run to its count fails, never ends early.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let mut reader = open_run(&path).unwrap();
        let read = (0..run.len())
            .map(|_| read_entry(&mut reader))
            .take_while(|r| r.is_ok())
            .count();
        assert!(read < run.len(), "a half file gave all {read} entries");
    }
}
