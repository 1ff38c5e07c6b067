//! Micro-benchmarks of the hot paths: identifier parsing, the record codec, store point
//! reads/writes/batches (RocksDB and memory), and the resolver's local hit in process.
//! Run with `cargo bench --bench core`; not run in CI (clippy checks they compile).

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use idnode::auth::Caller;
use idnode::identifier::{Identifier, Prefix};
use idnode::record::{Record, Value};
use idnode::resolver::{Core, CoreConfig, Filter};
use idnode::store::memory::MemoryStore;
use idnode::store::rocks::{RocksConfig, RocksStore};
use idnode::store::{codec, Batch, Durability, SharedStore, Table};

fn sample() -> Record {
    Record::new(vec![
        Value::text(1, "URL", "https://trace.example-auto.cn/p/BAT-2025-000001"),
        Value::text(2, "partNumber", "DF-BRK-4402"),
        Value::text(3, "productionDate", "2025-03-14"),
        Value::text(4, "weightKg", "3.85"),
    ])
}

fn identifiers(c: &mut Criterion) {
    c.bench_function("identifier/parse", |b| {
        b.iter(|| Identifier::parse(black_box("88.101.5/BAT-2025-000001")).unwrap())
    });
}

fn records(c: &mut Criterion) {
    let record = sample();
    let bytes = codec::encode_record(&record);
    c.bench_function("record/encode", |b| {
        b.iter(|| codec::encode_record(black_box(&record)))
    });
    c.bench_function("record/decode", |b| {
        b.iter(|| codec::decode_record(black_box(&bytes)).unwrap())
    });
}

fn stores(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rocks: SharedStore = Arc::new(RocksStore::open(&RocksConfig::new(dir.path())).unwrap());
    let memory: SharedStore = Arc::new(MemoryStore::new());
    let value = codec::encode_record(&sample());
    for (name, store) in [("rocks", &rocks), ("memory", &memory)] {
        let mut b = Batch::new();
        for i in 0..100_000u32 {
            b.put(
                Table::Records,
                format!("88.101.5/K{i:08}").into_bytes(),
                value.clone(),
            );
        }
        store.write(b, Durability::Wal).unwrap();
        let mut i = 0u32;
        c.bench_function(&format!("store/{name}/get"), |bch| {
            bch.iter(|| {
                i = (i + 7919) % 100_000;
                store
                    .get(Table::Records, format!("88.101.5/K{i:08}").as_bytes())
                    .unwrap()
            })
        });
        let mut n = 0u64;
        c.bench_function(&format!("store/{name}/put"), |bch| {
            bch.iter(|| {
                n += 1;
                let mut b = Batch::new();
                b.put(
                    Table::Records,
                    format!("88.101.6/P{n:010}").into_bytes(),
                    value.clone(),
                );
                store.write(b, Durability::Wal).unwrap()
            })
        });
        c.bench_function(&format!("store/{name}/batch-1000"), |bch| {
            bch.iter(|| {
                let mut b = Batch::new();
                for _ in 0..1000 {
                    n += 1;
                    b.put(
                        Table::Records,
                        format!("88.101.7/B{n:010}").into_bytes(),
                        value.clone(),
                    );
                }
                store.write(b, Durability::Wal).unwrap()
            })
        });
    }
}

fn resolver(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(RocksStore::open(&RocksConfig::new(dir.path())).unwrap());
    let core = Core::open(
        store,
        CoreConfig::new(Prefix::parse("88.101").unwrap()),
        None,
    )
    .unwrap();
    let items = (0..10_000u32)
        .map(|i| {
            (
                Ok(Identifier::parse(&format!("88.101.5/R{i:06}")).unwrap()),
                sample(),
            )
        })
        .collect();
    core.batch_register(&Caller::Admin, items);
    let mut i = 0u32;
    let filter = Filter::default();
    c.bench_function("resolver/local-hit", |b| {
        b.iter(|| {
            i = (i + 7919) % 10_000;
            let id = Identifier::parse(&format!("88.101.5/R{i:06}")).unwrap();
            core.resolve(&Caller::Anonymous, &id, &filter).unwrap()
        })
    });
}

criterion_group!(benches, identifiers, records, stores, resolver);
criterion_main!(benches);
