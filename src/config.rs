//! Configuration: an optional TOML file, command-line flags merged over it in one function,
//! validated into a [`Config`] before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::admission::AdmissionConfig;
use crate::api::dns::DnsConfig;
use crate::identifier::{Limits, Prefix};
use crate::record::RecordLimits;
use crate::resolver::CoreConfig;
use crate::store::Durability;
use crate::tls::{ClientTls, ServerTls};
use crate::toplevel::TopLevelConfig;
use crate::upstream::ForwardConfig;

/// The TOML file as written by an operator. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub node: NodeSection,
    pub grpc: GrpcSection,
    pub store: StoreSection,
    pub limits: LimitsSection,
    pub upstream: UpstreamSection,
    pub cache: CacheSection,
    pub dns: DnsSection,
    pub http: HttpSection,
    pub tls: TlsSection,
    pub toplevel: TopLevelSection,
    pub site: SiteSection,
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
    /// The gRPC URL other nodes should use to reach this one (default: http://<bound address>).
    pub advertise: Option<String>,
}

/// The top-level node this node joins. Absent `url`: run an embedded one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSection {
    pub url: Option<String>,
    /// This node's node token, issued by the top-level admin.
    pub token_file: Option<PathBuf>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub report_interval_secs: Option<u64>,
    /// CA trusted for `https://` upstream and peer nodes.
    pub ca: Option<PathBuf>,
    /// This node's client certificate and key, for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Caches of forwarded answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    pub answers: Option<u64>,
    pub referrals: Option<u64>,
    pub max_ttl_secs: Option<u64>,
    pub negative_ttl_secs: Option<u64>,
    pub serve_stale_secs: Option<u64>,
}

/// The top-level node's settings (embedded or standalone).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopLevelSection {
    pub referral_ttl_secs: Option<u32>,
    pub heartbeat_interval_secs: Option<u32>,
    pub goal: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub block_cache_mb: Option<usize>,
    /// The records table's index and filter partitions pinned in the block cache
    /// (default false).
    pub pin_index_and_filters: Option<bool>,
    /// Memtables of all column families together, MiB (default 1024).
    pub memtable_mb: Option<usize>,
    /// "wal" (default: survives a process crash) or "sync" (fsync: survives power loss).
    pub durability: Option<Durability>,
    /// Threads that read records from disk for resolutions (default: four per core).
    pub read_threads: Option<usize>,
    /// Recently resolved records kept in memory in front of the store, MiB (default 320;
    /// 0 turns the cache off).
    pub record_cache_mb: Option<usize>,
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
    /// Open connections per TCP listener (gRPC, HTTP, DNS over TCP).
    pub max_connections: Option<usize>,
    /// Concurrent streams per gRPC connection.
    pub max_concurrent_streams: Option<u32>,
    /// gRPC and HTTP requests served at once, node-wide.
    pub max_in_flight: Option<usize>,
    /// Requests per second from one client address; 0 = no limit.
    pub client_requests_per_second: Option<u32>,
    pub request_timeout_ms: Option<u64>,
    /// Seconds a connection may stay silent before its first request or mid-headers.
    pub idle_timeout_secs: Option<u64>,
    pub max_http_body_bytes: Option<usize>,
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
    pub upstream: Option<String>,
    pub upstream_token_file: Option<PathBuf>,
    pub advertise: Option<String>,
    pub dns_addr: Option<String>,
    pub dns_zone: Option<String>,
    pub http_addr: Option<String>,
    /// `--console on|off`.
    pub console: Option<String>,
    pub public_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_cert: Option<PathBuf>,
    pub upstream_key: Option<PathBuf>,
    /// `--site`: NATS server URLs, comma-separated.
    pub site: Option<String>,
}

/// TLS for this node's gRPC and HTTP servers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain and key; both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// When set, gRPC and HTTP clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// The DNS interface.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// UDP and TCP listen address; "off" disables DNS.
    pub addr: Option<String>,
    /// The zone identifiers are named under, e.g. "id.example.".
    pub zone: Option<String>,
    pub negative_ttl_secs: Option<u32>,
}

/// A replicated site: the NATS JetStream servers whose stream this server shares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteSection {
    /// `nats://host:port` URLs; empty: a single-process node.
    pub servers: Vec<String>,
    /// The stream's name (default `IDNODE`).
    pub stream: Option<String>,
    /// Copies of every message: 1, 3 or 5 (default 3).
    pub replicas: Option<usize>,
    /// This server's name in the site (default: unique per process).
    pub server_name: Option<String>,
    /// Seconds a write keeps trying to reach the log before UNAVAILABLE (default 15).
    pub write_deadline_secs: Option<u64>,
    /// Seconds between this server's snapshots (default 3600; 0: none). Each snapshot goes
    /// to the site's object store, and the stream is purged below it.
    pub snapshot_interval_secs: Option<u64>,
}

/// The HTTP interface (Handle REST API, /metrics, /healthz, the web console).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Listen address; "off" disables HTTP.
    pub addr: Option<String>,
    /// The web console under `/`: "on" (default) or "off".
    pub console: Option<String>,
    /// The URL the public reaches this node's HTTP interface at (e.g.
    /// `https://id.example.cn`): the start of the links in QR codes.
    pub public_url: Option<String>,
}

/// The web console (`api::console`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Where the public reaches the node, without a trailing `/` (`None`: the HTTP
    /// listener's own address).
    pub public_url: Option<String>,
}

/// The top-level node a secondary node joins.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: String,
    pub token_file: Option<PathBuf>,
}

/// A validated configuration of `idnode serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub core: CoreConfig,
    pub block_cache_bytes: usize,
    /// `[store] pin_index_and_filters`.
    pub pin_index_and_filters: bool,
    /// The record cache in front of the store (0: none).
    pub record_cache_bytes: usize,
    /// Memtables of all column families together (`[store] memtable_mb`, 1 GiB by default).
    pub memtable_bytes: usize,
    pub max_message_bytes: usize,
    pub seed: bool,
    pub shutdown_grace: Duration,
    /// `None`: run an embedded top-level node.
    pub upstream: Option<UpstreamConfig>,
    pub forward: ForwardConfig,
    /// Trust (and identity) for `https://` upstream and peer nodes.
    pub upstream_tls: Option<ClientTls>,
    /// Heartbeat and statistics report period.
    pub report_interval: Duration,
    /// gRPC URL announced to the top-level node (`None`: derived from the bound address).
    pub advertise_grpc: Option<String>,
    pub toplevel: TopLevelConfig,
    /// `None`: DNS is off.
    pub dns: Option<(SocketAddr, DnsConfig)>,
    /// `None`: HTTP is off.
    pub http_addr: Option<SocketAddr>,
    /// `None`: the web console is off (`[http] console = "off"`).
    pub console: Option<ConsoleConfig>,
    /// TLS for the gRPC and HTTP servers; `None`: plaintext.
    pub tls: Option<ServerTls>,
    /// Connection, request-rate, in-flight and timeout limits of every interface.
    pub admission: AdmissionConfig,
    /// `None`: a single-process node.
    pub site: Option<crate::site::SiteConfig>,
}

/// The file of a standalone top-level node (`idnode top-level serve --config`): the
/// `[limits]` that protect a node's gRPC server, and `[grpc]` `addr` and
/// `max_message_bytes`, as in a node's file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopLevelFile {
    pub grpc: GrpcSection,
    pub limits: LimitsSection,
}

/// What protects a standalone top-level node's gRPC server: the same admission and
/// message limits as a node's, with the same defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopLevelLimits {
    pub admission: AdmissionConfig,
    pub max_message_bytes: usize,
}

impl Default for TopLevelLimits {
    fn default() -> Self {
        TopLevelLimits {
            admission: AdmissionConfig::default(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl TopLevelLimits {
    /// Validates the limits of a top-level node's file; the settings that only concern
    /// records or HTTP are refused, since a top-level node has neither.
    pub fn resolve(file: &TopLevelFile) -> Result<TopLevelLimits, ConfigError> {
        let l = &file.limits;
        for (set, setting) in [
            (
                l.max_identifier_bytes.is_some(),
                "limits.max_identifier_bytes",
            ),
            (l.max_prefix_bytes.is_some(), "limits.max_prefix_bytes"),
            (l.max_data_bytes.is_some(), "limits.max_data_bytes"),
            (l.max_values.is_some(), "limits.max_values"),
            (l.max_record_bytes.is_some(), "limits.max_record_bytes"),
            (l.max_batch_items.is_some(), "limits.max_batch_items"),
            (
                l.max_http_body_bytes.is_some(),
                "limits.max_http_body_bytes",
            ),
            (file.grpc.advertise.is_some(), "grpc.advertise"),
        ] {
            if set {
                return Err(invalid(setting, "does not apply to a top-level node"));
            }
        }
        let max_message_bytes = file
            .grpc
            .max_message_bytes
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if !(64 << 10..=1 << 30).contains(&max_message_bytes) {
            return Err(invalid("grpc.max_message_bytes", "must be 64 KiB..=1 GiB"));
        }
        Ok(TopLevelLimits {
            admission: admission(l, &RecordLimits::default())?,
            max_message_bytes,
        })
    }
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
pub const DEFAULT_DNS_ADDR: &str = "127.0.0.1:5353";
pub const DEFAULT_DNS_ZONE: &str = "id.example.";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_NODE_PREFIX: &str = "88.101";
/// Largest gRPC message of a top-level node (a node's default, with its default records).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;
pub const DEFAULT_NODE_NAME: &str = "湖北工业互联网标识解析二级节点 (Hubei secondary node)";

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// Reads the optional file.
pub fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    read_toml(path)
}

/// Reads the optional file of a standalone top-level node.
pub fn read_toplevel_file(path: Option<&Path>) -> Result<TopLevelFile, ConfigError> {
    read_toml(path)
}

fn read_toml<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
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
        let read_threads = file.store.read_threads;
        if read_threads.is_some_and(|n| !(1..=256).contains(&n)) {
            return Err(invalid("store.read_threads", "must be 1..=256"));
        }
        // 320 MiB holds 1M records (~280 B each as counted) with room: the DNS hits row at 1M
        // answered 49k qps with 64 MiB (a quarter held) and 85k with 384 (BENCHMARKS.md).
        let record_cache_mb = file.store.record_cache_mb.unwrap_or(320);
        if record_cache_mb > 1 << 20 {
            return Err(invalid("store.record_cache_mb", "must be 0..=1048576"));
        }
        let memtable_mb = file.store.memtable_mb.unwrap_or(1024);
        if !(8..=64 << 10).contains(&memtable_mb) {
            return Err(invalid("store.memtable_mb", "must be 8..=65536"));
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
        let upstream = match flags.upstream.or(file.upstream.url.clone()) {
            None => None,
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Some(UpstreamConfig {
                    url,
                    token_file: flags
                        .upstream_token_file
                        .or(file.upstream.token_file.clone()),
                })
            }
            Some(url) => {
                return Err(invalid(
                    "upstream.url",
                    format!("{url:?} must be an http:// or https:// URL"),
                ))
            }
        };
        let advertise_grpc = flags.advertise.or(file.grpc.advertise);
        if let Some(a) = &advertise_grpc {
            if !(a.starts_with("http://") || a.starts_with("https://")) {
                return Err(invalid(
                    "grpc.advertise",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        let secs = |v: Option<u64>, default: u64, setting: &'static str, max: u64| {
            let v = v.unwrap_or(default);
            if v > max {
                Err(invalid(setting, format!("must be at most {max}")))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        let d = ForwardConfig::default();
        let u = &file.upstream;
        let timeout = Duration::from_millis(u.timeout_ms.unwrap_or(2000));
        if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(60) {
            return Err(invalid("upstream.timeout_ms", "must be 10..=60000"));
        }
        let retries = u.retries.unwrap_or(d.retries);
        if retries > 10 {
            return Err(invalid("upstream.retries", "must be at most 10"));
        }
        let c = &file.cache;
        let forward = ForwardConfig {
            timeout,
            retries,
            max_ttl: secs(c.max_ttl_secs, 3600, "cache.max_ttl_secs", 7 * 86_400)?,
            negative_ttl: secs(c.negative_ttl_secs, 30, "cache.negative_ttl_secs", 86_400)?,
            serve_stale: secs(
                c.serve_stale_secs,
                600,
                "cache.serve_stale_secs",
                7 * 86_400,
            )?,
            answer_capacity: c.answers.unwrap_or(d.answer_capacity).max(1),
            referral_capacity: c.referrals.unwrap_or(d.referral_capacity).max(1),
            ..d
        };
        let report_interval = secs(
            u.report_interval_secs,
            60,
            "upstream.report_interval_secs",
            86_400,
        )?
        .max(Duration::from_millis(100));
        let t = &file.toplevel;
        let top_default = TopLevelConfig::default();
        let toplevel = TopLevelConfig {
            referral_ttl: t.referral_ttl_secs.unwrap_or(top_default.referral_ttl),
            heartbeat_interval: t
                .heartbeat_interval_secs
                .unwrap_or(top_default.heartbeat_interval)
                .max(1),
            goal: t.goal.unwrap_or(top_default.goal),
            durability,
        };
        if toplevel.goal <= 0 {
            return Err(invalid("toplevel.goal", "must be positive"));
        }
        let addr_or_off =
            |v: String, setting: &'static str| -> Result<Option<SocketAddr>, ConfigError> {
                if v == "off" {
                    return Ok(None);
                }
                v.parse()
                    .map(Some)
                    .map_err(|e| invalid(setting, format!("{v:?}: {e} (or \"off\")")))
            };
        let dns_addr = addr_or_off(
            flags
                .dns_addr
                .or(file.dns.addr.clone())
                .unwrap_or_else(|| DEFAULT_DNS_ADDR.to_owned()),
            "dns.addr",
        )?;
        let zone_text = flags
            .dns_zone
            .or(file.dns.zone.clone())
            .unwrap_or_else(|| DEFAULT_DNS_ZONE.to_owned());
        let mut zone = hickory_proto::rr::Name::from_ascii(&zone_text)
            .map_err(|e| invalid("dns.zone", format!("{zone_text:?}: {e}")))?;
        zone.set_fqdn(true);
        if zone.is_root() || zone.len() > 128 {
            return Err(invalid(
                "dns.zone",
                "must be a non-root name of at most 128 bytes",
            ));
        }
        let dns = dns_addr.map(|addr| {
            let mut d = DnsConfig::new(zone.to_lowercase());
            d.negative_ttl = file.dns.negative_ttl_secs.unwrap_or(60);
            (addr, d)
        });
        let http_addr = addr_or_off(
            flags
                .http_addr
                .or(file.http.addr.clone())
                .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_owned()),
            "http.addr",
        )?;
        let console = console(
            flags.console.or(file.http.console.clone()),
            flags.public_url.or(file.http.public_url.clone()),
        )?;
        let tls = match (
            flags.tls_cert.or(file.tls.cert.clone()),
            flags.tls_key.or(file.tls.key.clone()),
        ) {
            (Some(cert), Some(key)) => Some(ServerTls {
                cert,
                key,
                client_ca: flags.tls_client_ca.or(file.tls.client_ca.clone()),
            }),
            (None, None) => None,
            _ => return Err(invalid("tls", "cert and key go together")),
        };
        let upstream_ca = flags.upstream_ca.or(file.upstream.ca.clone());
        let upstream_identity = match (
            flags.upstream_cert.or(file.upstream.cert.clone()),
            flags.upstream_key.or(file.upstream.key.clone()),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(invalid("upstream", "cert and key go together")),
        };
        let upstream_tls = match (upstream_ca, upstream_identity) {
            (Some(ca), identity) => Some(ClientTls { ca, identity }),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid(
                    "upstream.ca",
                    "a client certificate needs the CA to trust",
                ))
            }
        };
        let admission = admission(l, &record_limits)?;
        let servers: Vec<String> = match flags.site {
            Some(list) => list
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            None => file.site.servers.clone(),
        };
        let site = if servers.is_empty() {
            None
        } else {
            if let Some(bad) = servers.iter().find(|s| !s.starts_with("nats://")) {
                return Err(invalid(
                    "site.servers",
                    format!("{bad:?} must be a nats:// URL"),
                ));
            }
            let mut s = crate::site::SiteConfig::new(servers);
            if let Some(name) = &file.site.stream {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(invalid("site.stream", "letters, digits and _ only"));
                }
                s.stream = name.clone();
            }
            s.replicas = file.site.replicas.unwrap_or(3);
            if ![1, 3, 5].contains(&s.replicas) {
                return Err(invalid("site.replicas", "must be 1, 3 or 5"));
            }
            s.write_deadline = secs(
                file.site.write_deadline_secs,
                15,
                "site.write_deadline_secs",
                600,
            )?
            .max(Duration::from_secs(1));
            if let Some(name) = &file.site.server_name {
                if name.is_empty() || !crate::toplevel::valid_server_name(name) {
                    return Err(invalid(
                        "site.server_name",
                        "must be 1-63 lowercase letters, digits or '-' (a DNS label)",
                    ));
                }
                s.server_name = name.clone();
            }
            s.snapshot_interval = match file.site.snapshot_interval_secs {
                Some(0) => None,
                Some(n) => Some(Duration::from_secs(n)),
                None => s.snapshot_interval,
            };
            s.snapshot_dir = data_dir.join("snapshot");
            // A whole batch message is one command, plus its envelope.
            s.max_command_bytes = max_message_bytes.saturating_mul(2).max(1 << 20);
            Some(s)
        };
        let mut core = CoreConfig::new(node_prefix);
        core.node_name = node_name;
        core.identifier_limits = identifier_limits;
        core.record_limits = record_limits;
        core.durability = durability;
        core.max_batch_items = max_batch_items;
        if let Some(n) = read_threads {
            core.read_threads = n;
        }
        core.read_queue = admission.max_in_flight;
        Ok(Config {
            data_dir,
            grpc_addr,
            core,
            block_cache_bytes: block_cache_mb << 20,
            pin_index_and_filters: file.store.pin_index_and_filters.unwrap_or(false),
            record_cache_bytes: record_cache_mb << 20,
            memtable_bytes: memtable_mb << 20,
            max_message_bytes,
            seed: !flags.no_seed && file.seed.unwrap_or(true),
            shutdown_grace: Duration::from_secs(file.shutdown_grace_secs.unwrap_or(10)),
            upstream,
            forward,
            upstream_tls,
            report_interval,
            advertise_grpc,
            toplevel,
            dns,
            http_addr,
            console,
            tls,
            admission,
            site,
        })
    }
}

/// `[http] console` and `public_url` (flags over the file).
fn console(
    switch: Option<String>,
    public_url: Option<String>,
) -> Result<Option<ConsoleConfig>, ConfigError> {
    let on = match switch.as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(invalid(
                "http.console",
                format!("{other:?} must be \"on\" or \"off\""),
            ))
        }
    };
    let public_url = match public_url {
        None => None,
        Some(url) => {
            let url = url.trim_end_matches('/').to_owned();
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let valid = rest.is_some_and(|r| {
                !r.is_empty()
                    && r.bytes().all(|b| {
                        b.is_ascii_graphic()
                            && !matches!(b, b'?' | b'#' | b'"' | b'<' | b'>' | b'\\')
                    })
            });
            if !valid || url.len() > 200 {
                return Err(invalid(
                    "http.public_url",
                    "must be an http:// or https:// URL without query or fragment, at most 200 bytes",
                ));
            }
            Some(url)
        }
    };
    Ok(on.then_some(ConsoleConfig { public_url }))
}

fn admission(l: &LimitsSection, records: &RecordLimits) -> Result<AdmissionConfig, ConfigError> {
    let d = AdmissionConfig::default();
    let c = AdmissionConfig {
        max_connections: l.max_connections.unwrap_or(d.max_connections),
        max_concurrent_streams: l.max_concurrent_streams.unwrap_or(d.max_concurrent_streams),
        max_in_flight: l.max_in_flight.unwrap_or(d.max_in_flight),
        client_requests_per_second: l
            .client_requests_per_second
            .unwrap_or(d.client_requests_per_second),
        request_timeout: l
            .request_timeout_ms
            .map_or(d.request_timeout, Duration::from_millis),
        idle_timeout: l
            .idle_timeout_secs
            .map_or(d.idle_timeout, Duration::from_secs),
        max_http_body_bytes: l.max_http_body_bytes.unwrap_or(d.max_http_body_bytes),
    };
    if !(1..=1_000_000).contains(&c.max_connections) {
        return Err(invalid("limits.max_connections", "must be 1..=1000000"));
    }
    if !(1..=10_000).contains(&c.max_concurrent_streams) {
        return Err(invalid(
            "limits.max_concurrent_streams",
            "must be 1..=10000",
        ));
    }
    if !(1..=1_000_000).contains(&c.max_in_flight) {
        return Err(invalid("limits.max_in_flight", "must be 1..=1000000"));
    }
    if c.request_timeout < Duration::from_millis(10)
        || c.request_timeout > Duration::from_secs(3600)
    {
        return Err(invalid("limits.request_timeout_ms", "must be 10..=3600000"));
    }
    if c.idle_timeout.is_zero() || c.idle_timeout > Duration::from_secs(3600) {
        return Err(invalid("limits.idle_timeout_secs", "must be 1..=3600"));
    }
    if c.max_http_body_bytes < records.max_record_bytes {
        return Err(invalid(
            "limits.max_http_body_bytes",
            "must be at least limits.max_record_bytes",
        ));
    }
    Ok(c)
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
        assert_eq!(c.console, Some(ConsoleConfig { public_url: None }));
        let c = parse("[http]\nconsole = \"off\"").unwrap();
        assert_eq!(c.console, None);
        let c = parse("[http]\npublic_url = \"https://id.example.cn/\"").unwrap();
        let url = c.console.and_then(|c| c.public_url);
        assert_eq!(url.as_deref(), Some("https://id.example.cn"));
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
            ("[store]\nread_threads = 0", "store.read_threads"),
            (
                "[store]\nrecord_cache_mb = 2000000",
                "store.record_cache_mb",
            ),
            ("[grpc]\nmax_message_bytes = 10", "grpc.max_message_bytes"),
            ("[upstream]\nurl = \"ftp://x\"", "upstream.url"),
            ("[upstream]\ntimeout_ms = 0", "upstream.timeout_ms"),
            ("[cache]\nmax_ttl_secs = 99999999", "cache.max_ttl_secs"),
            ("[toplevel]\ngoal = 0", "toplevel.goal"),
            ("[dns]\naddr = \"localhost\"", "dns.addr"),
            ("[dns]\nzone = \".\"", "dns.zone"),
            ("[http]\naddr = \"nowhere:80\"", "http.addr"),
            ("[http]\nconsole = \"yes\"", "http.console"),
            ("[http]\npublic_url = \"ftp://x\"", "http.public_url"),
            ("[http]\npublic_url = \"https://x/?a\"", "http.public_url"),
            ("[limits]\nmax_connections = 0", "limits.max_connections"),
            (
                "[limits]\nrequest_timeout_ms = 1",
                "limits.request_timeout_ms",
            ),
            (
                "[limits]\nmax_http_body_bytes = 10",
                "limits.max_http_body_bytes",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(setting), "{text}: {e}");
        }
        let e = parse("[grpc]\nport = 1").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn top_level_limits() {
        let resolve = |text: &str| {
            let file: TopLevelFile = toml::from_str(text).map_err(|e| e.to_string())?;
            TopLevelLimits::resolve(&file).map_err(|e| e.to_string())
        };
        assert_eq!(resolve("").unwrap(), TopLevelLimits::default());
        let l = resolve(
            "[grpc]\naddr = \"127.0.0.1:9\"\nmax_message_bytes = 1048576\n\
             [limits]\nmax_in_flight = 8\nclient_requests_per_second = 0",
        )
        .unwrap();
        assert_eq!(l.max_message_bytes, 1 << 20);
        assert_eq!(l.admission.max_in_flight, 8);
        assert_eq!(l.admission.client_requests_per_second, 0);
        for (text, setting) in [
            ("[limits]\nmax_values = 5", "limits.max_values"),
            (
                "[limits]\nmax_http_body_bytes = 5000000",
                "limits.max_http_body_bytes",
            ),
            ("[limits]\nmax_in_flight = 0", "limits.max_in_flight"),
            ("[grpc]\nmax_message_bytes = 10", "grpc.max_message_bytes"),
            ("[grpc]\nadvertise = \"http://x\"", "grpc.advertise"),
        ] {
            let e = resolve(text).unwrap_err();
            assert!(e.starts_with(setting), "{text}: {e}");
        }
        assert!(
            resolve("[node]\nprefix = \"88.101\"").is_err(),
            "unknown section"
        );
    }
}
