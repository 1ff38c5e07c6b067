//! Offline import crash safety, through the real binary: an import killed (the failpoint
//! aborts the process, as a SIGKILL at that moment would) or failed (the failpoint returns
//! an I/O error) at each of its phases leaves the store exactly as before, or with a
//! pending import that the next open completes; after a re-run, the store is the one an
//! uninterrupted import gives, counts equal a full scan and `audit verify` is clean.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use idnode::api::grpc::pb;
use idnode::oplog::{LogEntry, PENDING_IMPORT};
use idnode::store::rocks::{RocksConfig, RocksStore};
use idnode::store::{codec, Store, Table};

use crate::bulk::{contents, idnode};
use crate::support::TestNode;

const BIN: &str = env!("CARGO_BIN_EXE_idnode");

/// Records imported first (the store "before"); the big import repeats 100 of them.
const BASE: usize = 300;
/// Records of the big import: with `--memory-mb 1`, several sorted runs spill to disk.
const BIG: usize = 16_000;

/// `idnode import --offline --create` of `data` into `dir` (new or not), with
/// `IDNODE_FAILPOINT=failpoint`.
fn import(dir: &Path, data: &Path, failpoint: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "import",
        "--offline",
        "--create",
        "--memory-mb",
        "1",
        "--json",
        "--data-dir",
    ])
    .arg(dir)
    .arg(data)
    .env_remove("IDNODE_FAILPOINT")
    .env_remove("RUST_LOG");
    if let Some(f) = failpoint {
        cmd.env("IDNODE_FAILPOINT", f);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The summary of a successful import.
fn summary(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// (seq, op, actor, target, detail, content) of a log entry.
type LogLine = (u64, String, String, String, Option<String>, Option<String>);

/// Everything an import writes, minus what differs between runs by time alone (the log
/// entries' timestamps and hence hashes, the daily counters).
#[derive(Debug, PartialEq)]
struct State {
    records: BTreeMap<String, idnode::record::Record>,
    counts: Vec<(String, i64)>,
    log: Vec<LogLine>,
    index: Vec<(Vec<u8>, Vec<u8>)>,
    pending: bool,
    staged: bool,
}

fn state(dir: &Path) -> State {
    let (records, counts) = contents(dir);
    let store = RocksStore::open_read_only(&RocksConfig::new(dir.join("db"))).unwrap();
    let log = store
        .scan(Table::Oplog, b"", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, v)| {
            let e: LogEntry = codec::decode_json(&v).unwrap();
            (e.seq, e.op, e.actor, e.target, e.detail, e.content)
        })
        .collect();
    State {
        records,
        counts,
        log,
        index: store
            .scan(Table::OplogIndex, b"", None, usize::MAX)
            .unwrap(),
        pending: store.get(Table::Meta, PENDING_IMPORT).unwrap().is_some(),
        staged: dir.join("db/staged/import").exists(),
    }
}

/// Log entries without their `content` (the digest of records stamped at import time).
fn timeless(log: &[LogLine]) -> Vec<(u64, String, String, String, Option<String>)> {
    log.iter()
        .map(|e| (e.0, e.1.clone(), e.2.clone(), e.3.clone(), e.4.clone()))
        .collect()
}

/// `got` is `want`, table by table (a difference named, not printed whole), but for what
/// the time of the import decides: the records' timestamps, hence their content hashes (in
/// the log index) and the log entry's digest over them. (`audit verify` checks those
/// against the records.)
fn assert_same(got: &State, want: &State, context: &str) {
    assert_eq!(got.counts, want.counts, "{context}: counts");
    assert_eq!(
        timeless(&got.log),
        timeless(&want.log),
        "{context}: log entries"
    );
    assert_eq!(
        (got.pending, got.staged),
        (want.pending, want.staged),
        "{context}: pending import, staged files"
    );
    let differing = |a: &BTreeMap<String, _>, b: &BTreeMap<String, _>| {
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .take(3)
            .collect::<Vec<String>>()
    };
    let (extra, missing) = (
        differing(&got.records, &want.records),
        differing(&want.records, &got.records),
    );
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{context}: records differ: {extra:?} / {missing:?}"
    );
    let index_differs = got.index.len() != want.index.len()
        || got.index.iter().zip(&want.index).any(|(a, b)| a.0 != b.0);
    assert!(
        !index_differs,
        "{context}: log index ({} / {} entries)",
        got.index.len(),
        want.index.len()
    );
}

/// The node's count equals a full scan, and the per-prefix counts add up to it.
fn assert_counts_match_scan(s: &State) {
    let total = s
        .counts
        .iter()
        .find(|(k, _)| k == "registered")
        .map_or(0, |(_, n)| *n);
    let per_prefix: i64 = s
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with("registered/"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(total, s.records.len() as i64, "counts {:?}", s.counts);
    assert_eq!(per_prefix, total, "counts {:?}", s.counts);
}

fn audit(dir: &Path) -> Output {
    Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap()
}

fn assert_audit_clean(dir: &Path, context: &str) {
    let out = audit(dir);
    assert!(
        out.status.success(),
        "{context}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

struct Setup {
    work: tempfile::TempDir,
    big: PathBuf,
    /// A store holding the base records, stopped.
    base_dir: PathBuf,
    before: State,
    after: State,
}

/// A base store, and the state an uninterrupted import of the big data set gives on it.
fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.jsonl");
    idnode(&[
        "gen",
        "--count",
        &BIG.to_string(),
        "--enterprises",
        "20",
        "--seed",
        "5",
        "--out",
        big.to_str().unwrap(),
    ]);
    // The base: 200 records of its own and 100 of the big set (already present later).
    let other = work.path().join("other.jsonl");
    idnode(&[
        "gen",
        "--count",
        "200",
        "--enterprises",
        "3",
        "--seed",
        "6",
        "--out",
        other.to_str().unwrap(),
    ]);
    let mut base_text = String::new();
    for line in std::fs::read_to_string(&other).unwrap().lines() {
        let mut r: serde_json::Value = serde_json::from_str(line).unwrap();
        r["identifier"] = format!("{}-BASE", r["identifier"].as_str().unwrap()).into();
        base_text.push_str(&format!("{r}\n"));
    }
    let big_text = std::fs::read_to_string(&big).unwrap();
    for line in big_text.lines().skip(5000).take(BASE - 200) {
        base_text.push_str(line);
        base_text.push('\n');
    }
    let base = work.path().join("base.jsonl");
    std::fs::write(&base, base_text).unwrap();
    let base_dir = work.path().join("base");
    let r = summary(&import(&base_dir, &base, None));
    assert_eq!(r["registered"], BASE as u64, "{r}");
    let before = state(&base_dir);

    let reference = work.path().join("reference");
    copy_dir(&base_dir, &reference);
    let r = summary(&import(&reference, &big, None));
    assert_eq!(
        (r["registered"].as_u64(), r["already_present"].as_u64()),
        (Some((BIG - 100) as u64), Some(100)),
        "{r}"
    );
    assert!(
        r["spilled_runs"].as_u64().unwrap() >= 3,
        "a real merge: {r}"
    );
    // The runs are compressed on disk: generated records at least halve.
    let (on_disk, raw) = (
        r["spilled_bytes"].as_u64().unwrap(),
        r["spilled_raw_bytes"].as_u64().unwrap(),
    );
    assert!(raw > 0 && on_disk * 2 < raw, "{r}");
    let after = state(&reference);
    assert_counts_match_scan(&after);
    assert_eq!(after.records.len(), BIG + 200);
    assert!(!after.pending && !after.staged);
    assert_audit_clean(&reference, "uninterrupted");
    Setup {
        work,
        big,
        base_dir,
        before,
        after,
    }
}

impl Setup {
    fn fresh_copy(&self, name: &str) -> PathBuf {
        let dir = self.work.path().join(name);
        copy_dir(&self.base_dir, &dir);
        dir
    }

    /// A re-run of the big import gives the uninterrupted state; returns its stderr.
    fn assert_rerun_converges(&self, dir: &Path, context: &str) -> String {
        let out = import(dir, &self.big, None);
        summary(&out);
        self.assert_converged(dir, context);
        stderr(&out)
    }

    /// The store is the uninterrupted one, its counts equal a scan, its audit is clean.
    fn assert_converged(&self, dir: &Path, context: &str) {
        let s = state(dir);
        assert_counts_match_scan(&s);
        assert_same(&s, &self.after, context);
        assert_audit_clean(dir, context);
    }
}

/// Phases before the durable pending import: the store stays exactly as it was.
const UNTOUCHED: &[&str] = &[
    "offline-import:spill",
    "offline-import:merge",
    "offline-import:staged",
];
/// Phases after it: the import is completed by the next open.
const PENDING: &[&str] = &[
    "offline-import:marked",
    "offline-import:ingested-index",
    "offline-import:ingested-records",
];

#[test]
fn offline_import_killed_at_any_phase_converges() {
    let s = setup();
    for point in UNTOUCHED
        .iter()
        .chain(PENDING)
        .chain(&["offline-import:logged"])
    {
        let dir = s.fresh_copy(&point.replace(':', "-"));
        let out = import(&dir, &s.big, Some(point));
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{point}: killed there (SIGABRT): {}",
            stderr(&out)
        );
        let mut now = state(&dir);
        if UNTOUCHED.contains(point) {
            // Staged files may be left beside the tables; the next import discards them.
            now.staged = false;
            assert!(now == s.before, "{point}: the store is exactly as before");
            assert_counts_match_scan(&now);
            assert_audit_clean(&dir, point);
            s.assert_rerun_converges(&dir, point);
        } else if PENDING.contains(point) {
            assert!(
                now.pending,
                "{point}: the store changed ({} records, counts {:?}) and no import is \
                 pending to complete it",
                now.records.len(),
                now.counts
            );
            // The audit says what happened instead of listing unlogged records.
            let out = audit(&dir);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!out.status.success(), "{point}: {text}");
            assert!(text.contains("was interrupted"), "{point}: {text}");
            let log = s.assert_rerun_converges(&dir, point);
            assert!(
                log.contains("completed an interrupted offline import"),
                "{point}: {log}"
            );
        } else {
            // Logged: only the staged files are left, and the next run discards them.
            assert!(!now.pending && now.staged, "{point}");
            assert_counts_match_scan(&now);
            assert_audit_clean(&dir, point);
            s.assert_rerun_converges(&dir, point);
        }
    }

    // Killed again while the next open completes the import: the open after that does;
    // and once complete, another run adds nothing.
    let dir = s.fresh_copy("twice");
    let out = import(&dir, &s.big, Some("offline-import:ingested-records"));
    assert_eq!(out.status.signal(), Some(6));
    let out = import(&dir, &s.big, Some("offline-import:ingested-index"));
    assert_eq!(out.status.signal(), Some(6), "killed inside the completion");
    assert!(state(&dir).pending);
    s.assert_rerun_converges(&dir, "killed during the completion");
    let r = summary(&import(&dir, &s.big, None));
    assert_eq!(
        (r["registered"].as_u64(), r["already_present"].as_u64()),
        (Some(0), Some(BIG as u64)),
        "{r}"
    );
    s.assert_converged(&dir, "run again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_import_failing_at_any_phase_converges() {
    let s = setup();
    for point in UNTOUCHED.iter().chain(PENDING) {
        let dir = s.fresh_copy(&format!("{}-error", point.replace(':', "-")));
        let out = import(&dir, &s.big, Some(&format!("{point}=error")));
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{point}: {message}");
        assert!(message.contains(&format!("failpoint {point}")), "{message}");
        let now = state(&dir);
        if UNTOUCHED.contains(point) {
            assert!(now == s.before, "{point}: the store is exactly as before");
            assert!(!now.staged, "{point}: nothing left staged");
            assert_audit_clean(&dir, point);
            s.assert_rerun_converges(&dir, point);
            continue;
        }
        assert!(
            now.pending,
            "{point}: the store changed ({} records) and no import is pending to complete it",
            now.records.len()
        );
        assert!(message.contains("completes it"), "{point}: {message}");
        // The next open, by the node this time, completes the import before serving.
        let node = TestNode::start_in(&dir, false).await;
        let counts = node
            .registry(Some(&node.admin_token))
            .get_counts(pb::GetCountsRequest {})
            .await
            .unwrap()
            .into_inner();
        node.stop().await;
        let now = state(&dir);
        assert_eq!(counts.node_registered, now.records.len() as i64, "{point}");
        assert!(!now.pending && !now.staged, "{point}");
        assert_counts_match_scan(&now);
        assert_audit_clean(&dir, point);
        // The node wrote its admin credential and log entries of its own since; records,
        // counts and the import's log entry are the uninterrupted ones.
        assert!(now.records == s.after.records, "{point}");
        assert_eq!(now.counts, s.after.counts, "{point}");
        assert_eq!(
            timeless(&now.log[..2]),
            timeless(&s.after.log),
            "{point}: both imports' entries"
        );
        let r = summary(&import(&dir, &s.big, None));
        assert_eq!(r["registered"].as_u64(), Some(0), "{point}: {r}");
    }
}

/// The offline import keeps the registrations by data domain × risk level like an online
/// write: an identifier counts once in each cell its classified values fall in.
#[test]
fn an_offline_import_counts_identifiers_by_domain_and_risk() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("c.jsonl");
    let value = |index: u32, domain: &str, risk: &str, class: &str| {
        serde_json::json!({ "index": index, "type": "QC", "data": "x", "domain": domain,
                            "risk": risk, "classification": class })
    };
    let mut lines = String::new();
    for i in 0..3 {
        let record = serde_json::json!({
            "identifier": format!("88.101.5/CLS-{i}"),
            "values": [
                { "index": 1, "type": "URL", "data": "https://c.cn" },
                value(2, "production", "high", "private"),
                value(3, "production", "high", "private"),
                value(4, "rd", "low", "public"),
            ],
        });
        lines.push_str(&format!("{record}\n"));
    }
    lines.push_str("{\"identifier\":\"88.101.5/PLAIN\",\"values\":[{\"index\":1,\"type\":\"URL\",\"data\":\"u\"}]}\n");
    std::fs::write(&data, lines).unwrap();
    let dir = work.path().join("node");
    let out = import(&dir, &data, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let store = RocksStore::open_read_only(&RocksConfig::new(dir.join("db"))).unwrap();
    let classes: BTreeMap<String, i64> = store
        .scan(Table::Counters, b"class/", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), codec::decode_counter(&v)))
        .collect();
    assert_eq!(
        classes,
        BTreeMap::from([
            ("class/production/high".to_owned(), 3),
            ("class/rd/low".to_owned(), 3)
        ])
    );
}
