//! The seed data set (`seeds/`): a Hubei secondary node's enterprises, industry templates
//! and sample records, loaded once on the first start of a new data directory.
//!
//! Loading goes through the core like any client would (create enterprise, register
//! template, batch create), so seeds obey every rule. Each step is idempotent, and a marker
//! in the store is written last: an interrupted seeding completes on the next start.

use std::path::Path;

use serde::Deserialize;

use crate::auth::Caller;
use crate::dataset::RecordJson;
use crate::resolver::{BatchItem, Core, RegisterOutcome};
use crate::store::{Batch, Table};
use crate::template::Template;

const SEEDED: &[u8] = b"seeded";

/// An enterprise of the seed.
#[derive(Debug, Clone, Deserialize)]
pub struct SeedEnterprise {
    pub prefix: String,
    pub name: String,
    #[serde(default)]
    pub name_en: String,
    #[serde(default)]
    pub industry_code: String,
    #[serde(default)]
    pub industry: String,
    #[serde(default)]
    pub city: String,
}

/// A parsed seed data set.
pub struct Seed {
    pub enterprises: Vec<SeedEnterprise>,
    pub templates: Vec<Template>,
    pub records: Vec<RecordJson>,
}

/// What a seeding run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub enterprises: usize,
    pub templates: usize,
    pub records: usize,
}

impl Seed {
    /// The data set compiled into the binary from `seeds/`.
    pub fn embedded() -> Seed {
        Seed::parse(
            include_str!("../../seeds/enterprises.json"),
            include_str!("../../seeds/templates.json"),
            include_str!("../../seeds/records.jsonl"),
        )
        .expect("the embedded seed parses (checked by tests)")
    }

    pub fn parse(enterprises: &str, templates: &str, records: &str) -> Result<Seed, String> {
        let enterprises =
            serde_json::from_str(enterprises).map_err(|e| format!("enterprises.json: {e}"))?;
        let templates =
            serde_json::from_str(templates).map_err(|e| format!("templates.json: {e}"))?;
        let records = records
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).map_err(|e| format!("records.jsonl line {}: {e}", n + 1))
            })
            .collect::<Result<_, _>>()?;
        Ok(Seed {
            enterprises,
            templates,
            records,
        })
    }
}

/// Loads `seed` unless this store was seeded before. Enterprise tokens minted here are
/// written to `token_dir/<prefix>.token` (mode 0600). Returns `None` when already seeded
/// or when the seed belongs to another node prefix.
pub fn load_once(core: &Core, seed: &Seed, token_dir: &Path) -> Result<Option<SeedReport>, String> {
    let store = core.store();
    if store
        .get(Table::Meta, SEEDED)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(None);
    }
    let node = &core.config().node_prefix;
    let mut report = SeedReport::default();
    for e in &seed.enterprises {
        let prefix = core.parse_prefix(&e.prefix).map_err(|e| e.to_string())?;
        if !core.serves(&prefix) {
            tracing::info!(seed_prefix = %prefix, node = %node, "seed is for another node prefix; not loaded");
            return Ok(None);
        }
        if core.enterprise(&prefix).is_none() {
            let (_, token) = core
                .create_enterprise(&Caller::Admin, &prefix, &e.name, &e.industry_code, None)
                .map_err(|err| format!("seed enterprise {}: {err}", e.prefix))?;
            crate::secrets::write_secret_file(&token_dir.join(format!("{prefix}.token")), &token)
                .map_err(|err| format!("writing token of {prefix}: {err}"))?;
            report.enterprises += 1;
        }
    }
    for t in &seed.templates {
        match core.register_template(&Caller::Admin, t.clone()) {
            Ok(RegisterOutcome::Registered) => report.templates += 1,
            Ok(RegisterOutcome::AlreadyPresent) => {}
            Err(e) => return Err(format!("seed template {}: {e}", t.identifier)),
        }
    }
    for chunk in seed.records.chunks(500) {
        let items: Vec<BatchItem> = chunk
            .iter()
            .map(|r| {
                let record = r
                    .to_record()
                    .map_err(|e| format!("seed record {}: {e}", r.identifier))?;
                Ok((core.parse_identifier(&r.identifier), record))
            })
            .collect::<Result<_, String>>()?;
        for (r, outcome) in chunk.iter().zip(core.batch_register(&Caller::Admin, items)) {
            match outcome {
                Ok(RegisterOutcome::Registered) => report.records += 1,
                Ok(RegisterOutcome::AlreadyPresent) => {}
                Err(e) => return Err(format!("seed record {}: {e}", r.identifier)),
            }
        }
    }
    let mut batch = Batch::new();
    batch.put(Table::Meta, SEEDED, b"1".to_vec());
    store
        .write(batch, core.config().durability)
        .map_err(|e| e.to_string())?;
    Ok(Some(report))
}
