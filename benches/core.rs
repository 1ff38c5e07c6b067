//! Micro-benchmarks of the hot pure paths: identifier parsing and the record codec.
//! Run with `cargo bench --bench core`; not run in CI (clippy checks they compile).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use idnode::identifier::Identifier;
use idnode::record::{Record, Value};
use idnode::store::codec;

fn identifiers(c: &mut Criterion) {
    c.bench_function("identifier/parse", |b| {
        b.iter(|| Identifier::parse(black_box("88.101.5/BAT-2025-000001")).unwrap())
    });
}

fn records(c: &mut Criterion) {
    let record = Record::new(vec![
        Value::text(1, "URL", "https://trace.example-auto.cn/p/BAT-2025-000001"),
        Value::text(2, "partNumber", "DF-BRK-4402"),
        Value::text(3, "productionDate", "2025-03-14"),
        Value::text(4, "weightKg", "3.85"),
        Value::text(1000, "TEMPLATE_ID", "88.101/TPL-AUTO-PARTS"),
    ]);
    let bytes = codec::encode_record(&record);
    c.bench_function("record/encode", |b| {
        b.iter(|| codec::encode_record(black_box(&record)))
    });
    c.bench_function("record/decode", |b| {
        b.iter(|| codec::decode_record(black_box(&bytes)).unwrap())
    });
}

criterion_group!(benches, identifiers, records);
criterion_main!(benches);
