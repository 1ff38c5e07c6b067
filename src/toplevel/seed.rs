//! The seed delegation table (`seeds/delegations.json`): a Hubei-like province's secondary
//! nodes, loaded once into a new top-level node. Nodes start without endpoints: each
//! announces its own by heartbeat with the node token written here.

use std::path::Path;

use serde::Deserialize;

use super::{Endpoints, TopLevel};
use crate::auth::Caller;
use crate::identifier::Prefix;
use crate::secrets::write_secret_file;
use crate::store::{Batch, Table};

const SEEDED: &[u8] = b"delegations_seeded";

#[derive(Debug, Clone, Deserialize)]
pub struct SeedNode {
    pub prefix: String,
    pub node_id: String,
    pub name: String,
    #[serde(default)]
    pub name_en: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub industry: String,
    #[serde(default)]
    pub industry_code: String,
}

/// The delegation table compiled into the binary.
pub fn embedded() -> Vec<SeedNode> {
    serde_json::from_str(include_str!("../../seeds/delegations.json"))
        .expect("the embedded delegation seed parses (checked by tests)")
}

/// Loads `nodes` unless this store was seeded before, writing each node's token to
/// `token_dir/<prefix>.token` (mode 0600). Returns how many delegations were added.
pub fn load_once(
    top: &TopLevel,
    nodes: &[SeedNode],
    token_dir: &Path,
) -> Result<Option<usize>, String> {
    if top
        .store
        .get(Table::Meta, SEEDED)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Ok(None);
    }
    let mut added = 0;
    for n in nodes {
        let prefix =
            Prefix::parse(&n.prefix).map_err(|e| format!("seed node {}: {e}", n.prefix))?;
        if top.read().contains_key(prefix.as_str()) {
            continue;
        }
        let (_, token) = top
            .add_delegation(
                &Caller::Admin,
                &prefix,
                &n.node_id,
                &n.name,
                Endpoints::default(),
            )
            .map_err(|e| format!("seed node {}: {e}", n.prefix))?;
        write_secret_file(&token_dir.join(format!("{prefix}.token")), &token)
            .map_err(|e| format!("writing the token of {prefix}: {e}"))?;
        added += 1;
    }
    let mut batch = Batch::new();
    batch.put(Table::Meta, SEEDED, b"1".to_vec());
    top.store
        .write(batch, top.config.durability)
        .map_err(|e| e.to_string())?;
    Ok(Some(added))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_province_has_at_least_fifteen_secondary_nodes() {
        let nodes = super::embedded();
        assert!(nodes.len() >= 15);
        assert_eq!(nodes[0].prefix, "88.101");
        let mut prefixes: Vec<_> = nodes.iter().map(|n| n.prefix.as_str()).collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), nodes.len());
        for n in &nodes {
            crate::identifier::Prefix::parse(&n.prefix).unwrap();
        }
    }
}
