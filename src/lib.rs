//! idnode: an industrial-internet identifier resolution node.
//!
//! A secondary node (二级节点) of China's Industrial Internet identifier system: enterprises
//! register identifiers such as `88.101.5/BAT-2025-000001`; anyone resolves them. See
//! `ARCHITECTURE.md` for the map. Modules, one line each:
//!
//! - [`identifier`]: `Identifier` and `Prefix`: parsing, normalisation, limits (pure).
//! - [`record`]: the Handle value model: `Record`, `Value`, permissions, limits (pure).
//! - [`template`]: industry metadata templates and the check of a record against one (pure).
//! - [`auth`]: tokens, credentials, enterprises, callers (pure).
//! - [`credentials`]: tokens to callers, the admin credential's bootstrap (node and top level).
//! - [`error`]: the protocol-neutral `Error` and `ErrorKind`.
//! - [`failpoint`]: failure injection for crash-safety tests (`IDNODE_FAILPOINT`, test-only).
//! - [`audit`]: verification of the hash-chained operation log and of signed log heads.
//! - [`blocking`]: how blocking work leaves the async workers (the blocking pool, the store-read
//!   threads).
//! - [`bulk`]: synthetic data sets, import formats (JSON Lines, CSV), offline import.
//! - [`dataset`]: the JSON record format of files (seeds, `register --file`, output).
//! - [`store`]: the `Store` trait, its RocksDB and in-memory implementations, the on-disk codec.
//! - [`limits`]: the keyed rate limiter and the failed-authentication lockout (node, top-level
//!   node, admission).
//! - [`oplog`]: the hash-chained operation log: entries, hashing, bulk and credential digests.
//! - [`resolver`]: the core: resolve, register, accounts, templates, counts.
//! - [`secrets`]: secret files (tokens, the node key): written with mode 0600, read back.
//! - [`tls`]: rustls server and client identities, the development CA.
//! - [`toplevel`]: the mock national top-level node: delegations, referrals, liveness, statistics.
//! - [`upstream`]: forwarding: the `Locator`, `Reporter` and `Peers` seams and the caching,
//!   single-flight, serve-stale `Forwarder` (the core's `resolver::Remote`).
//! - [`api`]: protocol adapters: gRPC, DNS, HTTP (Handle.Net REST, /metrics, /healthz).
//! - [`telemetry`]: per-node Prometheus metrics.
//! - [`config`]: TOML file + flags → validated `Config`.
//! - [`node`]: wiring: open, seed, serve, shut down.
//!
//! The `idnode` binary (`src/main.rs`, `src/cli/`) holds the operator and client commands.

pub mod api;
pub mod audit;
pub mod auth;
pub mod blocking;
pub mod bulk;
pub mod config;
pub mod credentials;
pub mod dataset;
pub mod error;
pub mod failpoint;
pub mod identifier;
pub mod limits;
#[cfg(feature = "rocks")]
pub mod node;
pub mod oplog;
pub mod record;
pub mod resolver;
pub mod secrets;
pub mod site;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod tls;
pub mod toplevel;
pub mod upstream;
