//! Online backups of a running node (and a top-level node) and offline restores, compared
//! with the source store entry by entry.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use idnode::api::grpc::pb;
use idnode::store::rocks::{RocksConfig, RocksStore};
use idnode::store::{Store, Table};
use tonic::Code;

use crate::support::{record, resolve, text, TestNode};

const BIN: &str = env!("CARGO_BIN_EXE_idnode");
const SEEDED: &str = "88.101.5/BAT-2024-000001";

type Dump = BTreeMap<(&'static str, Vec<u8>), Vec<u8>>;

/// Every entry of every table of the store in `db`, read-only (also while a node runs).
fn dump(db: &Path, tables: &[Table]) -> Dump {
    let store = RocksStore::open_read_only(&RocksConfig::new(db)).unwrap();
    let mut out = BTreeMap::new();
    for &t in tables {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan(t, b"", after.as_deref(), 4096).unwrap();
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in page {
                out.insert((t.name(), k), v);
            }
        }
    }
    out
}

/// The first difference between two dumps, for a readable failure.
fn first_difference(a: &Dump, b: &Dump) -> Option<String> {
    for (k, v) in a {
        match b.get(k) {
            None => return Some(format!("{}/{} only in the first", k.0, show(&k.1))),
            Some(w) if w != v => return Some(format!("{}/{} differs", k.0, show(&k.1))),
            _ => {}
        }
    }
    b.keys()
        .find(|k| !a.contains_key(*k))
        .map(|k| format!("{}/{} only in the second", k.0, show(&k.1)))
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn idnode(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "idnode {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn product(i: usize) -> pb::Record {
    record(
        &format!("88.101.5/BK-{i:06}"),
        vec![
            text(1, "URL", &format!("https://trace.example.cn/bk/{i}")),
            text(2, "batchNo", &format!("B{:03}", i / 100)),
        ],
    )
}

async fn register(node: &TestNode, token: &str, range: std::ops::Range<usize>) {
    register_records(node, token, range.map(product).collect()).await;
}

/// Registers `items` through one `BatchRegister` stream, 500 per message; each must succeed.
async fn register_records(node: &TestNode, token: &str, items: Vec<pb::Record>) {
    let requests = tokio_stream::iter(
        items
            .chunks(500)
            .map(|c| pb::BatchRegisterRequest {
                records: c.to_vec(),
            })
            .collect::<Vec<_>>(),
    );
    let mut responses = node
        .registry(Some(token))
        .batch_register(requests)
        .await
        .unwrap()
        .into_inner();
    while let Some(r) = responses.message().await.unwrap() {
        for item in r.results {
            assert_eq!(item.code, 0, "{item:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backups_restore_to_the_same_store_entry_by_entry() {
    let source = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(source.path(), true).await;
    let token = node.seed_token("88.101.5");
    register(&node, &token, 0..3000).await;
    let dest = tempfile::tempdir().unwrap();
    let dest_dir = dest.path().join("backups");
    let admin_file = node.data_dir.join("admin.token");
    let node_url = format!("http://{}", node.addr);

    // Resolution goes on, without a single failure, while backups are taken.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let mut resolver = node.resolver(None);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match resolver.resolve(resolve(SEEDED)).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    // Backup 1, through the CLI, of the node store and the embedded top-level store.
    let out = idnode(&[
        "backup",
        dest_dir.to_str().unwrap(),
        "--node",
        &node_url,
        "--token-file",
        admin_file.to_str().unwrap(),
        "--json",
    ]);
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stores = first["stores"].as_array().unwrap();
    let names: Vec<_> = stores
        .iter()
        .map(|s| s["store"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "toplevel/db"], "{first}");
    assert_eq!(stores[0]["backup_id"], 1);
    assert!(
        first["files"].as_u64().unwrap() >= 2,
        "node.key and admin.token: {first}"
    );
    let at_first = dump(&node.data_dir.join("db"), &Table::ALL);

    // More writes, a delete, then backup 2 over gRPC: incremental.
    register(&node, &token, 3000..4000).await;
    node.registry(Some(&token))
        .delete(pb::DeleteRequest {
            identifier: "88.101.5/BK-000007".into(),
        })
        .await
        .unwrap();
    let second = node
        .admin(Some(&node.admin_token))
        .backup(pb::BackupRequest {
            destination: dest_dir.to_string_lossy().into_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let db2 = &second.stores[0];
    assert_eq!((db2.store.as_str(), db2.backup_id), ("db", 2));
    assert!(db2.new_files > 0, "{second:?}");
    assert!(
        db2.new_files < db2.files,
        "backup 2 shares table files with backup 1: {second:?}"
    );

    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 0);
    let data_dir = node.data_dir.clone();
    let at_second = dump(&data_dir.join("db"), &Table::ALL);
    node.stop().await;

    // The latest backup is the node as it was at backup 2, entry by entry.
    let restored = tempfile::tempdir().unwrap();
    let r2 = restored.path().join("latest");
    idnode(&[
        "restore",
        dest_dir.to_str().unwrap(),
        "--data-dir",
        r2.to_str().unwrap(),
    ]);
    let got = dump(&r2.join("db"), &Table::ALL);
    assert!(got.len() > 4000, "{} entries", got.len());
    assert_eq!(first_difference(&at_second, &got), None);
    for f in ["node.key", "admin.token", "tokens/88.101.5.token"] {
        assert_eq!(
            std::fs::read(data_dir.join(f)).unwrap(),
            std::fs::read(r2.join(f)).unwrap(),
            "{f}"
        );
    }
    let delegations = [Table::Delegations, Table::Credentials, Table::Meta];
    assert_eq!(
        first_difference(
            &dump(&data_dir.join("toplevel/db"), &delegations),
            &dump(&r2.join("toplevel/db"), &delegations)
        ),
        None
    );

    // Backup 1 is the node as it was then: without the later records, with the deleted one.
    let r1 = restored.path().join("first");
    idnode(&[
        "restore",
        dest_dir.to_str().unwrap(),
        "--data-dir",
        r1.to_str().unwrap(),
        "--backup-id",
        "1",
    ]);
    let got = dump(&r1.join("db"), &Table::ALL);
    assert_eq!(first_difference(&at_first, &got), None);
    assert!(got
        .keys()
        .any(|(t, k)| *t == "records" && k.ends_with(b"BK-000007")));

    // A restored directory is a working node whose log verifies.
    let audit = idnode(&["audit", "verify", "--data-dir", r2.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("OK"),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
    let node = TestNode::start_in(&r2, false).await;
    let r = node
        .resolver(None)
        .resolve(resolve("88.101.5/BK-003999"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.values.len(), 2);
    let e = node
        .resolver(None)
        .resolve(resolve("88.101.5/BK-000007"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    node.stop().await;

    // Restoring over an existing store is refused and changes nothing.
    let out = Command::new(BIN)
        .args(["restore", dest_dir.to_str().unwrap(), "--data-dir"])
        .arg(&r1)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        first_difference(&at_first, &dump(&r1.join("db"), &Table::ALL)),
        None
    );
}

#[tokio::test]
async fn backup_requests_are_checked() {
    let node = TestNode::start().await;
    let dest = tempfile::tempdir().unwrap();
    let request = |d: &str| pb::BackupRequest {
        destination: d.to_owned(),
    };
    let abs = dest.path().to_string_lossy().into_owned();
    let e = node.admin(None).backup(request(&abs)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let token = node.seed_token("88.101.5");
    let e = node
        .admin(Some(&token))
        .backup(request(&abs))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let admin = node.admin_token.clone();
    for bad in [
        String::new(),
        "relative/dir".to_owned(),
        node.data_dir.join("inside").to_string_lossy().into_owned(),
    ] {
        let e = node
            .admin(Some(&admin))
            .backup(request(&bad))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
    }
    assert!(!node.data_dir.join("inside").exists());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_node_is_backed_up_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let top_dir = dir.path().join("top");
    let opened = idnode::node::toplevel::open(
        &top_dir,
        idnode::toplevel::TopLevelConfig::default(),
        16 << 20,
        false,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            idnode::node::toplevel::serve(
                &opened,
                idnode::upstream::ForwardConfig::default(),
                &Default::default(),
                listener,
                None,
                stop,
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap();
        })
    };
    let admin_file = top_dir.join("admin.token");
    let admin = admin_file.to_str().unwrap();
    idnode(&[
        "top-level",
        "delegation",
        "add",
        "88.150",
        "node-150",
        "Backup test node",
        "--node",
        &url,
        "--token-file",
        admin,
    ]);
    let dest = dir.path().join("top-backup");
    let out = idnode(&[
        "top-level",
        "backup",
        dest.to_str().unwrap(),
        "--node",
        &url,
        "--token-file",
        admin,
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stores"][0]["store"], "db", "{report}");
    shutdown.cancel();
    server.await.unwrap();

    let restored = dir.path().join("restored");
    idnode(&[
        "restore",
        dest.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    let tables = [Table::Delegations, Table::Credentials, Table::Meta];
    let source = dump(&top_dir.join("db"), &tables);
    assert!(source
        .keys()
        .any(|(t, k)| *t == "delegations" && k.starts_with(b"88.150")));
    assert_eq!(
        first_difference(&source, &dump(&restored.join("db"), &tables)),
        None
    );
    assert_eq!(
        std::fs::read(&admin_file).unwrap(),
        std::fs::read(restored.join("admin.token")).unwrap()
    );
    assert!(restored.join("node-tokens").read_dir().unwrap().count() > 0);
}

/// `idnode compact` on a stopped node: records deleted after they reached table files leave
/// the disk, and what remains resolves as before. A directory without a store is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_drops_deleted_records_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    // Records of ~4 KB of hex that compresses about twofold, so they outweigh the log.
    let big = |i: usize| {
        let mut x = i as u64 + 1;
        let data: String = (0..4096)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                char::from_digit((x >> 60) as u32, 16).unwrap()
            })
            .collect();
        record(
            &format!("88.101.5/BIG-{i:05}"),
            vec![text(1, "blob", &data)],
        )
    };
    let node = TestNode::start_in(dir.path(), true).await;
    let token = node.seed_token("88.101.5");
    register_records(&node, &token, (0..1000).map(big).collect()).await;
    node.stop().await; // flushed: the records are in a table file
    let node = TestNode::start_in(dir.path(), true).await;
    let mut registry = node.registry(Some(&token));
    for i in 10..1000 {
        let identifier = format!("88.101.5/BIG-{i:05}");
        registry
            .delete(pb::DeleteRequest { identifier })
            .await
            .unwrap();
    }
    node.stop().await;

    let data_dir = dir.path().to_str().unwrap();
    let out = idnode(&["compact", "--data-dir", data_dir, "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (before, after) = (
        r["bytes_before"].as_u64().unwrap(),
        r["bytes_after"].as_u64().unwrap(),
    );
    assert!(before > 1_500_000 && after < before / 3, "{r}");
    // Per table, adding up to the total; `records` keeps the 10 (~2 KB each compressed).
    let tables = r["tables"].as_object().unwrap();
    let sum: u64 = tables.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sum, after, "{r}");
    assert!(tables["records"].as_u64().unwrap() > 10_000, "{r}");

    let node = TestNode::start_in(dir.path(), true).await;
    let mut resolver = node.resolver(None);
    for i in 0..10 {
        let got = resolver
            .resolve(resolve(&format!("88.101.5/BIG-{i:05}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.values[0].data, big(i).values[0].data);
    }
    let gone = resolver.resolve(resolve("88.101.5/BIG-00500")).await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    node.stop().await;

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["compact", "--data-dir", empty.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no node store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
