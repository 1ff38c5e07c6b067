//! Configuration: an optional TOML file, command-line flags merged over it in one function,
//! validated into a [`Config`] before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identifier::{Limits, Prefix};
use crate::record::RecordLimits;
use crate::resolver::CoreConfig;
use crate::store::Durability;

/// The TOML file as written by an operator. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub node: NodeSection,
    pub grpc: GrpcSection,
    pub store: StoreSection,
    pub limits: LimitsSection,
    /// Load the embedded seed data set on the first start of a new data directory.
    pub seed: Option<bool>,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// The node prefix, e.g. "88.101".
    pub prefix: Option<String>,
    pub name: Option<String>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcSection {
    pub addr: Option<String>,
    pub max_message_bytes: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub block_cache_mb: Option<usize>,
    /// "wal" (default: survives a process crash) or "sync" (fsync: survives power loss).
    pub durability: Option<Durability>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_identifier_bytes: Option<usize>,
    pub max_prefix_bytes: Option<usize>,
    pub max_data_bytes: Option<usize>,
    pub max_values: Option<usize>,
    pub max_record_bytes: Option<usize>,
    pub max_batch_items: Option<usize>,
}

/// Command-line values that override the file (`None` = not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub grpc_addr: Option<String>,
    pub node_prefix: Option<String>,
    pub node_name: Option<String>,
    pub sync: bool,
    pub no_seed: bool,
    pub block_cache_mb: Option<usize>,
}

/// A validated configuration of `idnode serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub core: CoreConfig,
    pub block_cache_bytes: usize,
    pub max_message_bytes: usize,
    pub seed: bool,
    pub shutdown_grace: Duration,
}

/// Why a configuration was rejected; names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

pub const DEFAULT_DATA_DIR: &str = "./idnode-data";
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:7000";
pub const DEFAULT_NODE_PREFIX: &str = "88.101";
pub const DEFAULT_NODE_NAME: &str = "湖北工业互联网标识解析二级节点 (Hubei secondary node)";

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// Reads the optional file.
pub fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

impl Config {
    /// Merges flags over the file over defaults and validates the result.
    pub fn resolve(file: FileConfig, flags: Overrides) -> Result<Config, ConfigError> {
        let prefix_text = flags
            .node_prefix
            .or(file.node.prefix)
            .unwrap_or_else(|| DEFAULT_NODE_PREFIX.to_owned());
        let node_prefix = Prefix::parse(&prefix_text)
            .map_err(|e| invalid("node.prefix", format!("{prefix_text:?}: {e}")))?;
        let addr_text = flags
            .grpc_addr
            .or(file.grpc.addr)
            .unwrap_or_else(|| DEFAULT_GRPC_ADDR.to_owned());
        let grpc_addr: SocketAddr = addr_text
            .parse()
            .map_err(|e| invalid("grpc.addr", format!("{addr_text:?}: {e}")))?;

        let d = RecordLimits::default();
        let l = &file.limits;
        let record_limits = RecordLimits {
            max_type_bytes: d.max_type_bytes,
            max_data_bytes: l.max_data_bytes.unwrap_or(d.max_data_bytes),
            max_values: l.max_values.unwrap_or(d.max_values),
            max_record_bytes: l.max_record_bytes.unwrap_or(d.max_record_bytes),
            max_references: d.max_references,
        };
        let identifier_limits = Limits {
            max_identifier_bytes: l
                .max_identifier_bytes
                .unwrap_or(crate::identifier::MAX_IDENTIFIER_BYTES),
            max_prefix_bytes: l
                .max_prefix_bytes
                .unwrap_or(crate::identifier::MAX_PREFIX_BYTES),
        };
        if !(16..=4096).contains(&identifier_limits.max_identifier_bytes) {
            return Err(invalid("limits.max_identifier_bytes", "must be 16..=4096"));
        }
        if !(2..=identifier_limits.max_identifier_bytes)
            .contains(&identifier_limits.max_prefix_bytes)
        {
            return Err(invalid(
                "limits.max_prefix_bytes",
                "must be 2..=max_identifier_bytes",
            ));
        }
        if node_prefix.as_str().len() >= identifier_limits.max_prefix_bytes {
            return Err(invalid(
                "node.prefix",
                "leaves no room for enterprise prefixes under limits.max_prefix_bytes",
            ));
        }
        if !(1..=16 << 20).contains(&record_limits.max_data_bytes) {
            return Err(invalid("limits.max_data_bytes", "must be 1..=16 MiB"));
        }
        if !(1..=100_000).contains(&record_limits.max_values) {
            return Err(invalid("limits.max_values", "must be 1..=100000"));
        }
        if !(1024..=64 << 20).contains(&record_limits.max_record_bytes) {
            return Err(invalid("limits.max_record_bytes", "must be 1 KiB..=64 MiB"));
        }
        let max_batch_items = l.max_batch_items.unwrap_or(2000);
        if !(1..=100_000).contains(&max_batch_items) {
            return Err(invalid("limits.max_batch_items", "must be 1..=100000"));
        }
        // A message must hold a full record plus framing, and a full batch of typical ones.
        let max_message_bytes = file
            .grpc
            .max_message_bytes
            .unwrap_or((record_limits.max_record_bytes * 4).max(16 << 20));
        if max_message_bytes < record_limits.max_record_bytes + 4096 {
            return Err(invalid(
                "grpc.max_message_bytes",
                "must exceed limits.max_record_bytes by at least 4 KiB",
            ));
        }
        let block_cache_mb = flags
            .block_cache_mb
            .or(file.store.block_cache_mb)
            .unwrap_or(256);
        if !(8..=1 << 20).contains(&block_cache_mb) {
            return Err(invalid("store.block_cache_mb", "must be 8..=1048576"));
        }
        let durability = if flags.sync {
            Durability::Sync
        } else {
            file.store.durability.unwrap_or_default()
        };
        let node_name = flags
            .node_name
            .or(file.node.name)
            .unwrap_or_else(|| DEFAULT_NODE_NAME.to_owned());
        let data_dir = flags
            .data_dir
            .or(file.node.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let mut core = CoreConfig::new(node_prefix);
        core.node_name = node_name;
        core.identifier_limits = identifier_limits;
        core.record_limits = record_limits;
        core.durability = durability;
        core.max_batch_items = max_batch_items;
        Ok(Config {
            data_dir,
            grpc_addr,
            core,
            block_cache_bytes: block_cache_mb << 20,
            max_message_bytes,
            seed: !flags.no_seed && file.seed.unwrap_or(true),
            shutdown_grace: Duration::from_secs(file.shutdown_grace_secs.unwrap_or(10)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<Config, String> {
        let file: FileConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Config::resolve(file, Overrides::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.grpc_addr.to_string(), DEFAULT_GRPC_ADDR);
        assert_eq!(c.core.node_prefix.as_str(), "88.101");
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.core.durability, Durability::Wal);
        assert!(c.seed);
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig = toml::from_str(
            "[node]\nprefix = \"88.102\"\n[grpc]\naddr = \"127.0.0.1:9\"\n[store]\ndurability = \"sync\"",
        )
        .unwrap();
        let c = Config::resolve(
            file.clone(),
            Overrides {
                grpc_addr: Some("127.0.0.1:0".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:0");
        assert_eq!(c.core.node_prefix.as_str(), "88.102");
        assert_eq!(c.core.durability, Durability::Sync);
    }

    #[test]
    fn rejections_name_the_setting() {
        for (text, setting) in [
            ("[grpc]\naddr = \"nowhere\"", "grpc.addr"),
            ("[node]\nprefix = \"88..1\"", "node.prefix"),
            ("[limits]\nmax_values = 0", "limits.max_values"),
            ("[store]\nblock_cache_mb = 1", "store.block_cache_mb"),
            ("[grpc]\nmax_message_bytes = 10", "grpc.max_message_bytes"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(setting), "{text}: {e}");
        }
        let e = parse("[grpc]\nport = 1").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
