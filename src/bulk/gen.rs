//! Synthetic, realistic, reproducible data sets (`idnode gen`).
//!
//! Record `i` of a data set depends only on the seed and `i`: prefixes spread over
//! `enterprises` enterprise prefixes under the node prefix, 2–5 values (URL, product
//! attributes, batch, date), about 200 bytes of data per record.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dataset::{RecordJson, ValueJson};

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    pub node_prefix: String,
    pub enterprises: u32,
}

const PRODUCTS: [(&str, &str); 8] = [
    ("BRK", "制动盘"),
    ("AXL", "驱动桥"),
    ("FIB", "G.652.D 光纤"),
    ("CBL", "光缆 24 芯"),
    ("CRF", "潜江小龙虾"),
    ("TEA", "恩施硒茶"),
    ("STL", "热轧卷板"),
    ("PCB", "电路板组件"),
];

fn value(index: u32, value_type: &str, data: String) -> ValueJson {
    ValueJson {
        index,
        value_type: value_type.to_owned(),
        data,
        format: None,
        ttl: None,
        permissions: None,
        classification: None,
        references: Vec::new(),
        timestamp: None,
        domain: None,
        risk: None,
    }
}

/// The enterprise prefix of record `i`.
pub fn prefix_of(config: &GenConfig, i: u64) -> String {
    let e = 1 + (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) % config.enterprises.max(1) as u64;
    format!("{}.{e}", config.node_prefix)
}

/// The identifier of record `i` (cheap: for load generators that only need keys).
pub fn identifier_of(config: &GenConfig, i: u64) -> String {
    let (code, _) = PRODUCTS[(i % PRODUCTS.len() as u64) as usize];
    format!("{}/{code}-{:010}", prefix_of(config, i), i)
}

/// Record `i` of the data set.
pub fn record(config: &GenConfig, i: u64) -> RecordJson {
    let mut rng = StdRng::seed_from_u64(config.seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407));
    let (code, name) = PRODUCTS[(i % PRODUCTS.len() as u64) as usize];
    let identifier = identifier_of(config, i);
    let prefix = prefix_of(config, i);
    let host = prefix.replace('.', "-");
    let mut values = vec![value(
        1,
        "URL",
        format!("https://trace.e{host}.example.cn/p/{code}-{i:010}"),
    )];
    let year = 2024 + rng.random_range(0..2);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=28);
    values.push(value(
        2,
        "batchNo",
        format!("{code}{year}{month:02}-B{:04}", rng.random_range(0..10_000)),
    ));
    let extra = rng.random_range(0..=3);
    if extra >= 1 {
        values.push(value(
            3,
            "productionDate",
            format!("{year}-{month:02}-{day:02}"),
        ));
    }
    if extra >= 2 {
        values.push(value(4, "productName", name.to_owned()));
    }
    if extra >= 3 {
        values.push(value(
            5,
            "weightKg",
            format!(
                "{}.{:02}",
                rng.random_range(0..500),
                rng.random_range(0..100)
            ),
        ));
    }
    RecordJson { identifier, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_valid_and_about_200_bytes() {
        let c = GenConfig {
            seed: 7,
            node_prefix: "88.101".into(),
            enterprises: 100,
        };
        assert_eq!(record(&c, 42), record(&c, 42));
        assert_ne!(
            record(&c, 42),
            record(
                &GenConfig {
                    seed: 8,
                    ..c.clone()
                },
                42
            )
        );
        let mut total = 0;
        for i in 0..1000 {
            let r = record(&c, i);
            assert_eq!(r.identifier, identifier_of(&c, i));
            let mut rec = r.to_record().unwrap();
            rec.validate(&Default::default()).unwrap();
            crate::identifier::Identifier::parse(&r.identifier).unwrap();
            assert!((2..=5).contains(&rec.values.len()));
            total += rec
                .values
                .iter()
                .map(|v| v.data.len() + v.value_type.len())
                .sum::<usize>();
        }
        let mean = total / 1000;
        assert!((100..300).contains(&mean), "mean {mean} bytes");
        let prefixes: std::collections::HashSet<_> = (0..1000).map(|i| prefix_of(&c, i)).collect();
        assert!(
            prefixes.len() > 90,
            "spread over enterprises: {}",
            prefixes.len()
        );
    }
}
