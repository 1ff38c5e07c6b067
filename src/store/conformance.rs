//! One conformance suite for every `Store` implementation.

use std::sync::Arc;

use super::cache::CachedStore;
use super::memory::MemoryStore;
use super::rocks::{RocksConfig, RocksStore};
use super::{Batch, Durability, Store, Table};

fn put(store: &dyn Store, table: Table, k: &str, v: &str) {
    let mut b = Batch::new();
    b.put(table, k.as_bytes(), v.as_bytes().to_vec());
    store.write(b, Durability::Wal).unwrap();
}

fn keys(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    entries
        .iter()
        .map(|(k, _)| String::from_utf8(k.clone()).unwrap())
        .collect()
}

/// The contract every store must meet.
fn suite(store: &dyn Store) {
    // get of a missing key, in every table
    for t in Table::ALL {
        assert_eq!(store.get(t, b"missing").unwrap(), None);
    }

    // put/get, tables are separate namespaces
    put(store, Table::Records, "88.101.5/a", "A");
    assert_eq!(
        store.get(Table::Records, b"88.101.5/a").unwrap(),
        Some(b"A".to_vec())
    );
    assert_eq!(store.get(Table::Enterprises, b"88.101.5/a").unwrap(), None);

    // overwrite, delete
    put(store, Table::Records, "88.101.5/a", "A2");
    assert_eq!(
        store.get(Table::Records, b"88.101.5/a").unwrap(),
        Some(b"A2".to_vec())
    );
    let mut b = Batch::new();
    b.delete(Table::Records, b"88.101.5/a".to_vec());
    store.write(b, Durability::Sync).unwrap();
    assert_eq!(store.get(Table::Records, b"88.101.5/a").unwrap(), None);

    // a batch is applied whole, across tables, ops in order
    let mut b = Batch::new();
    b.put(Table::Records, b"88.101.5/x".to_vec(), b"1".to_vec());
    b.put(Table::Records, b"88.101.5/y".to_vec(), b"2".to_vec());
    b.delete(Table::Records, b"88.101.5/y".to_vec());
    b.put(Table::Meta, b"m".to_vec(), b"meta".to_vec());
    b.add(Table::Counters, b"c".to_vec(), 5);
    b.add(Table::Counters, b"c".to_vec(), -2);
    store.write(b, Durability::Wal).unwrap();
    assert_eq!(
        store.get(Table::Records, b"88.101.5/x").unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(store.get(Table::Records, b"88.101.5/y").unwrap(), None);
    assert_eq!(
        store.get(Table::Meta, b"m").unwrap(),
        Some(b"meta".to_vec())
    );
    assert_eq!(store.counter(Table::Counters, b"c").unwrap(), 3);
    assert_eq!(store.counter(Table::Counters, b"absent").unwrap(), 0);

    // multi_get keeps the order of the keys
    let got = store
        .multi_get(
            Table::Records,
            &[b"88.101.5/x".as_slice(), b"nope", b"88.101.5/x"],
        )
        .unwrap();
    assert_eq!(got, vec![Some(b"1".to_vec()), None, Some(b"1".to_vec())]);

    // scan: prefix bound, order, paging with `after`, limit
    for k in [
        "88.101.5/c",
        "88.101.5/b",
        "88.101.50/z",
        "88.101.4/z",
        "88.101.5/a",
    ] {
        put(store, Table::Templates, k, k);
    }
    let all = store
        .scan(Table::Templates, b"88.101.5/", None, 100)
        .unwrap();
    assert_eq!(keys(&all), ["88.101.5/a", "88.101.5/b", "88.101.5/c"]);
    assert_eq!(all[0].1, b"88.101.5/a".to_vec());
    let page1 = store.scan(Table::Templates, b"88.101.5/", None, 2).unwrap();
    assert_eq!(keys(&page1), ["88.101.5/a", "88.101.5/b"]);
    let page2 = store
        .scan(Table::Templates, b"88.101.5/", Some(b"88.101.5/b"), 2)
        .unwrap();
    assert_eq!(keys(&page2), ["88.101.5/c"]);
    let past_end = store
        .scan(Table::Templates, b"88.101.5/", Some(b"88.101.5/c"), 2)
        .unwrap();
    assert!(past_end.is_empty());
    // `after` before the prefix starts at the prefix
    let from_start = store
        .scan(Table::Templates, b"88.101.5/", Some(b"0"), 10)
        .unwrap();
    assert_eq!(from_start.len(), 3);
    let everything = store.scan(Table::Templates, b"", None, 100).unwrap();
    assert_eq!(everything.len(), 5);

    // concurrent counter increments are never lost
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    let mut b = Batch::new();
                    b.add(Table::Counters, b"n".to_vec(), 1);
                    store.write(b, Durability::Wal).unwrap();
                }
            });
        }
    });
    assert_eq!(store.counter(Table::Counters, b"n").unwrap(), 1000);
    // Staged bulk ingestion, next to existing keys: invisible until ingested, one table
    // at a time, and ingesting again changes nothing.
    let mut staging = store.stage("bulk").unwrap();
    for i in 0..500u32 {
        let key = format!("bulk/{i:05}");
        staging
            .put(Table::Records, key.as_bytes(), &[i as u8])
            .unwrap();
        staging
            .put(Table::OplogIndex, key.as_bytes(), b"i")
            .unwrap();
    }
    assert!(
        staging.put(Table::Records, b"bulk/00001", b"x").is_err(),
        "out of order"
    );
    staging.finish().unwrap();
    assert_eq!(store.get(Table::Records, b"bulk/00007").unwrap(), None);
    store.ingest_staged("bulk", Table::Records).unwrap();
    assert_eq!(
        store.get(Table::Records, b"bulk/00007").unwrap(),
        Some(vec![7])
    );
    assert_eq!(store.get(Table::OplogIndex, b"bulk/00007").unwrap(), None);
    store.ingest_staged("bulk", Table::Records).unwrap();
    store.ingest_staged("bulk", Table::OplogIndex).unwrap();
    assert_eq!(
        store.get(Table::OplogIndex, b"bulk/00499").unwrap(),
        Some(b"i".to_vec())
    );
    assert_eq!(
        store
            .scan(Table::Records, b"bulk/", None, 1000)
            .unwrap()
            .len(),
        500
    );
    // A discarded staging area is never ingested.
    let mut staging = store.stage("dropped").unwrap();
    staging.put(Table::Records, b"bulk/z", b"z").unwrap();
    staging.finish().unwrap();
    store.discard_staged("dropped").unwrap();
    store.ingest_staged("dropped", Table::Records).unwrap();
    assert_eq!(store.get(Table::Records, b"bulk/z").unwrap(), None);
    store.discard_staged("bulk").unwrap();
    assert_eq!(
        store.get(Table::Records, b"88.101.5/x").unwrap(),
        Some(b"1".to_vec())
    );
    store.flush().unwrap();
}

#[test]
fn memory_store_conforms() {
    suite(&MemoryStore::new());
}

#[test]
fn rocks_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(&RocksConfig::new(dir.path())).unwrap();
    suite(&store);
}

#[test]
fn cached_stores_conform() {
    // A cache large enough to hold everything, and one that holds a few records at most.
    for bytes in [1 << 20, 64 * 200] {
        suite(&CachedStore::new(Arc::new(MemoryStore::new()), bytes));
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksStore::open(&RocksConfig::new(dir.path())).unwrap();
        suite(&CachedStore::new(Arc::new(rocks), bytes));
    }
}

#[test]
fn rocks_store_keeps_acknowledged_writes_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = RocksConfig::new(dir.path().join("db"));
    {
        let store = Arc::new(RocksStore::open(&config).unwrap());
        for i in 0..2000 {
            let mut b = Batch::new();
            b.put(
                Table::Records,
                format!("88.101.5/{i:05}").into_bytes(),
                vec![i as u8; 100],
            );
            b.add(Table::Counters, b"count".to_vec(), 1);
            let durability = if i % 2 == 0 {
                Durability::Wal
            } else {
                Durability::Sync
            };
            store.write(b, durability).unwrap();
        }
        // Dropped without flush: the data is only in the WAL and memtable.
    }
    let store = RocksStore::open(&config).unwrap();
    assert_eq!(store.counter(Table::Counters, b"count").unwrap(), 2000);
    let all = store
        .scan(Table::Records, b"88.101.5/", None, usize::MAX)
        .unwrap();
    assert_eq!(all.len(), 2000);
    for (i, (k, v)) in all.iter().enumerate() {
        assert_eq!(k, format!("88.101.5/{i:05}").as_bytes());
        assert_eq!(v, &vec![i as u8; 100]);
    }
}

#[test]
fn cached_reads_never_wait_for_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = RocksConfig::new(dir.path().join("db"));
    {
        let store = RocksStore::open(&config).unwrap();
        put(&store, Table::Records, "88.101.5/on-disk", "v");
        // In the memtable: answered from memory.
        assert_eq!(
            store
                .get_cached(Table::Records, b"88.101.5/on-disk")
                .unwrap(),
            Some(Some(b"v".to_vec()))
        );
        store.flush().unwrap();
    }
    // Reopened: the table file is on disk, its blocks not cached yet.
    let store = RocksStore::open(&config).unwrap();
    assert_eq!(
        store
            .get_cached(Table::Records, b"88.101.5/on-disk")
            .unwrap(),
        None
    );
    assert_eq!(
        store.get(Table::Records, b"88.101.5/on-disk").unwrap(),
        Some(b"v".to_vec())
    );
    // A plain read brought the block into the cache.
    assert_eq!(
        store
            .get_cached(Table::Records, b"88.101.5/on-disk")
            .unwrap(),
        Some(Some(b"v".to_vec()))
    );
    let memory = MemoryStore::new();
    assert_eq!(memory.get_cached(Table::Records, b"x").unwrap(), Some(None));
}
