//! The mock national top-level node (Wuhan): delegations, referrals, liveness, statistics.
//!
//! Synchronous logic over its own `Store` (its own directory), like `resolver::Core` for a
//! secondary node. It knows which secondary node serves which node prefix and what they
//! report; it never stores identifiers' records. The gRPC adapter is `api::grpc::toplevel`;
//! recursive resolution reuses `upstream::Forwarder` with this node as the upstream.

pub mod seed;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::audit::SignedHead;
use crate::auth::{self, now, Caller, Subject};
use crate::credentials::{authenticate, ensure_admin_token, AdminBootstrap};
use crate::error::{Error, ErrorKind, Result};
use crate::identifier::Prefix;
use crate::limits::AuthFailures;
use crate::store::backup::BackupReport;
use crate::store::backup::BackupSet;
use crate::store::{codec, Batch, Durability, SharedStore, Table};

/// Default registration goal: the province's 20 billion identifiers.
pub const DEFAULT_GOAL: i64 = 20_000_000_000;

/// Settings of a top-level node.
#[derive(Debug, Clone)]
pub struct TopLevelConfig {
    /// Seconds a referral may be cached by secondary nodes.
    pub referral_ttl: u32,
    /// Seconds between the heartbeats nodes are asked to send; 3 missed = not live.
    pub heartbeat_interval: u32,
    pub goal: i64,
    pub durability: Durability,
}

impl Default for TopLevelConfig {
    fn default() -> Self {
        TopLevelConfig {
            referral_ttl: 300,
            heartbeat_interval: 30,
            goal: DEFAULT_GOAL,
            durability: Durability::Wal,
        }
    }
}

/// Where a secondary node serves. Empty strings: not announced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    #[serde(default)]
    pub grpc: String,
    #[serde(default)]
    pub dns: String,
    #[serde(default)]
    pub http: String,
}

impl Endpoints {
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("grpc", &self.grpc),
            ("dns", &self.dns),
            ("http", &self.http),
        ] {
            if v.len() > 256 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(Error::invalid(format!(
                    "{name} endpoint must be at most 256 bytes without spaces"
                )));
            }
        }
        for (name, v) in [("grpc", &self.grpc), ("http", &self.http)] {
            if !(v.is_empty() || v.starts_with("http://") || v.starts_with("https://")) {
                return Err(Error::invalid(format!(
                    "{name} endpoint {v:?} must be an http:// or https:// URL"
                )));
            }
        }
        Ok(())
    }
}

/// A node prefix delegated to a secondary node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub prefix: String,
    pub node_id: String,
    pub name: String,
    pub endpoints: Endpoints,
    pub created_at: i64,
    #[serde(default)]
    pub credential_ids: Vec<String>,
    /// Hex public key that signs the node's log heads, pinned at its first report.
    #[serde(default)]
    pub log_key: Option<String>,
}

/// The answer to "who serves this prefix".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub node_prefix: Prefix,
    pub node_id: String,
    pub node_name: String,
    pub endpoints: Endpoints,
    /// Seconds the referral may be cached.
    pub ttl: u32,
}

/// Resolutions a node served through one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceCount {
    pub interface: String,
    pub local: u64,
    pub forwarded: u64,
}

/// A node's statistics report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub registered: i64,
    pub prefixes: Vec<(String, i64)>,
    pub resolutions: Vec<InterfaceCount>,
    /// Set by the top-level node on receipt.
    #[serde(default)]
    pub received_at: i64,
    /// The node's signed log head (kept separately, in `Heads`).
    #[serde(default, skip_serializing)]
    pub head: Option<SignedHead>,
}

/// One delegation with its liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub delegation: Delegation,
    pub live: bool,
    pub last_heartbeat: i64,
}

/// Aggregated statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub registered: i64,
    pub goal: i64,
    pub resolutions: u64,
    pub nodes: Vec<(NodeStatus, Option<Report>)>,
}

impl Stats {
    pub fn progress(&self) -> f64 {
        if self.goal <= 0 {
            0.0
        } else {
            self.registered as f64 / self.goal as f64
        }
    }
}

/// The top-level node's state.
pub struct TopLevel {
    store: SharedStore,
    config: TopLevelConfig,
    /// The delegation table, by node prefix (small; written through).
    delegations: RwLock<BTreeMap<String, Delegation>>,
    /// Last heartbeat per node prefix (seconds since the epoch); liveness is volatile.
    heartbeats: RwLock<HashMap<String, i64>>,
    /// The failed-authentication lockout, as on a secondary node.
    failures: AuthFailures,
    /// What a backup copies (its store and key files), set by the wiring.
    backups: std::sync::OnceLock<Arc<BackupSet>>,
}

fn head_key(prefix: &str, seq: u64) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl TopLevel {
    /// Opens the top-level state over its store.
    pub fn open(store: SharedStore, config: TopLevelConfig) -> Result<TopLevel> {
        let rows = store
            .scan(Table::Delegations, b"", None, usize::MAX)
            .map_err(Error::internal)?;
        let mut delegations = BTreeMap::new();
        for (_, v) in rows {
            let d: Delegation = codec::decode_json(&v).map_err(Error::internal)?;
            delegations.insert(d.prefix.clone(), d);
        }
        Ok(TopLevel {
            store,
            config,
            delegations: RwLock::new(delegations),
            heartbeats: RwLock::new(HashMap::new()),
            failures: AuthFailures::default(),
            backups: std::sync::OnceLock::new(),
        })
    }

    /// Sets what [`TopLevel::backup`] copies (once; later calls are ignored).
    pub fn set_backups(&self, set: Arc<BackupSet>) {
        let _ = self.backups.set(set);
    }

    /// Adds a backup of this top-level node's store and key files to `dest` (admin only),
    /// as the core of a secondary node does for it. Blocking.
    pub fn backup(&self, caller: &Caller, dest: &Path) -> Result<BackupReport> {
        TopLevel::require_admin(caller)?;
        self.backups
            .get()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "this server takes no backups"))?
            .run_for_client(dest)
    }

    pub fn config(&self) -> &TopLevelConfig {
        &self.config
    }

    /// Flushes the store (at shutdown).
    pub fn flush(&self) -> Result<()> {
        self.store.flush().map_err(Error::internal)
    }

    /// Authenticates a bearer token against this node's credentials.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller> {
        authenticate(self.store.as_ref(), token)
    }

    /// Authenticates what `client` presented (`None`: address unknown) under the
    /// failed-authentication lockout: no token is the anonymous caller.
    ///
    /// Errors: `ResourceExhausted` (reason 406) while the client is locked out;
    /// `Unauthenticated` for a bad token (counted toward the lockout).
    pub fn caller(&self, token: Option<&str>, client: Option<IpAddr>) -> Result<Caller> {
        let Some(token) = token else {
            return Ok(Caller::Anonymous);
        };
        self.failures
            .authenticate(client, || self.authenticate(Some(token)))
    }

    /// Makes sure the top-level admin token exists (written to `token_file`, mode 0600).
    pub fn ensure_admin_token(&self, token_file: &Path, reset: bool) -> Result<AdminBootstrap> {
        // The top-level node keeps no operation log: the batch is written as it is.
        ensure_admin_token(self.store.as_ref(), token_file, reset, |batch, _, _| {
            self.store
                .write(batch, self.config.durability)
                .map_err(Error::internal)
        })
    }

    pub fn require_admin(caller: &Caller) -> Result<()> {
        match caller {
            Caller::Admin => Ok(()),
            Caller::Anonymous => Err(Error::unauthenticated(
                "this operation needs the top-level admin token",
            )),
            Caller::Enterprise(_) | Caller::Node(_) => {
                Err(Error::denied("only the top-level admin may do this"))
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Delegation>> {
        self.delegations.read().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, batch: Batch) -> Result<()> {
        self.store
            .write(batch, self.config.durability)
            .map_err(Error::internal)
    }

    /// The longest delegated node prefix covering `prefix`.
    ///
    /// Errors: `NotFound` (authoritative) when no delegation covers it.
    pub fn locate(&self, prefix: &Prefix) -> Result<Referral> {
        let delegations = self.read();
        let d = prefix
            .ancestors_or_self()
            .find_map(|p| delegations.get(p))
            .ok_or_else(|| Error::not_found(format!("no secondary node serves prefix {prefix}")))?;
        Ok(Referral {
            node_prefix: Prefix::parse(&d.prefix).map_err(Error::internal)?,
            node_id: d.node_id.clone(),
            node_name: d.name.clone(),
            endpoints: d.endpoints.clone(),
            ttl: self.config.referral_ttl,
        })
    }

    /// Delegates `prefix` to a node and mints its node token (top-level admin only).
    pub fn add_delegation(
        &self,
        caller: &Caller,
        prefix: &Prefix,
        node_id: &str,
        name: &str,
        endpoints: Endpoints,
    ) -> Result<(Delegation, String)> {
        Self::require_admin(caller)?;
        if !valid_node_id(node_id) {
            return Err(Error::invalid(
                "node id must be 1-64 lowercase letters, digits or '-'",
            ));
        }
        let name = name.trim();
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "node name must be 1-256 bytes without control characters",
            ));
        }
        endpoints.validate()?;
        let mut delegations = self.delegations.write().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = delegations.get(prefix.as_str()) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("prefix {prefix} is already delegated to node {}", d.node_id),
            ));
        }
        if let Some(d) = delegations.values().find(|d| d.node_id == node_id) {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("node id {node_id} already serves {}", d.prefix),
            ));
        }
        let minted = auth::mint(
            Subject::Node {
                prefix: prefix.to_string(),
            },
            now(),
        );
        let d = Delegation {
            prefix: prefix.to_string(),
            node_id: node_id.to_owned(),
            name: name.to_owned(),
            endpoints,
            created_at: now(),
            credential_ids: vec![minted.credential.id.clone()],
            log_key: None,
        };
        let mut batch = Batch::new();
        batch.put(Table::Delegations, prefix.as_str(), codec::encode_json(&d));
        batch.put(
            Table::Credentials,
            minted.credential.id.as_bytes(),
            codec::encode_json(&minted.credential),
        );
        self.commit(batch)?;
        delegations.insert(d.prefix.clone(), d.clone());
        Ok((d, minted.token))
    }

    /// Removes a delegation, its node tokens and its last report (top-level admin only).
    pub fn remove_delegation(&self, caller: &Caller, prefix: &Prefix) -> Result<()> {
        Self::require_admin(caller)?;
        let mut delegations = self.delegations.write().unwrap_or_else(|e| e.into_inner());
        let d = delegations
            .get(prefix.as_str())
            .ok_or_else(|| Error::not_found(format!("prefix {prefix} is not delegated")))?;
        let mut batch = Batch::new();
        batch.delete(Table::Delegations, prefix.as_str());
        batch.delete(Table::Reports, prefix.as_str());
        for id in &d.credential_ids {
            batch.delete(Table::Credentials, id.as_bytes());
        }
        self.commit(batch)?;
        delegations.remove(prefix.as_str());
        self.heartbeats
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(prefix.as_str());
        Ok(())
    }

    fn liveness(&self, prefix: &str) -> (bool, i64) {
        let last = self
            .heartbeats
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(prefix)
            .copied()
            .unwrap_or(0);
        let window = 3 * self.config.heartbeat_interval as i64;
        (last > 0 && now() - last <= window, last)
    }

    /// The delegation table with liveness, by prefix.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.read()
            .values()
            .map(|d| {
                let (live, last_heartbeat) = self.liveness(&d.prefix);
                NodeStatus {
                    delegation: d.clone(),
                    live,
                    last_heartbeat,
                }
            })
            .collect()
    }

    fn node_prefix_of(caller: &Caller) -> Result<&Prefix> {
        match caller {
            Caller::Node(p) => Ok(p),
            Caller::Anonymous => Err(Error::unauthenticated("this operation needs a node token")),
            Caller::Admin | Caller::Enterprise(_) => {
                Err(Error::denied("only registered secondary nodes may do this"))
            }
        }
    }

    /// Records a node's heartbeat and its current endpoints; returns its node prefix.
    pub fn heartbeat(&self, caller: &Caller, endpoints: Endpoints) -> Result<Prefix> {
        let prefix = Self::node_prefix_of(caller)?.clone();
        endpoints.validate()?;
        {
            let mut delegations = self.delegations.write().unwrap_or_else(|e| e.into_inner());
            let d = delegations
                .get_mut(prefix.as_str())
                .ok_or_else(|| Error::denied(format!("prefix {prefix} is no longer delegated")))?;
            if d.endpoints != endpoints {
                let mut changed = d.clone();
                changed.endpoints = endpoints;
                let mut batch = Batch::new();
                batch.put(
                    Table::Delegations,
                    prefix.as_str(),
                    codec::encode_json(&changed),
                );
                self.commit(batch)?;
                *d = changed;
                tracing::info!(node = %prefix, grpc = %d.endpoints.grpc, "node endpoints changed");
            }
        }
        self.heartbeats
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(prefix.to_string(), now());
        Ok(prefix)
    }

    /// Keeps a node's latest statistics report and its signed log head. The head's key
    /// is pinned at the first report; a head signed by another key, with a bad signature,
    /// or older than the last one is refused.
    pub fn report(&self, caller: &Caller, mut report: Report) -> Result<()> {
        let prefix = Self::node_prefix_of(caller)?.clone();
        if report.prefixes.len() > 1_000_000 || report.resolutions.len() > 16 {
            return Err(Error::exhausted("statistics report too large"));
        }
        report.received_at = now();
        let mut batch = Batch::new();
        let mut delegations = self.delegations.write().unwrap_or_else(|e| e.into_inner());
        let d = delegations
            .get_mut(prefix.as_str())
            .ok_or_else(|| Error::denied(format!("prefix {prefix} is no longer delegated")))?;
        if let Some(head) = report.head.take() {
            if head.node_prefix != prefix.as_str() || !head.verify() {
                return Err(Error::denied("the signed log head does not verify"));
            }
            match &d.log_key {
                Some(k) if *k != head.public_key => {
                    return Err(Error::denied(format!(
                        "the log head of {prefix} is signed by another key than the pinned one"
                    )))
                }
                Some(_) => {}
                None => {
                    d.log_key = Some(head.public_key.clone());
                    batch.put(Table::Delegations, prefix.as_str(), codec::encode_json(&*d));
                }
            }
            let last = self.heads(&prefix)?.pop();
            if last.as_ref().is_some_and(|l| l.seq > head.seq) {
                return Err(Error::invalid(format!(
                    "log head {} is older than the reported {}: a rolled-back log?",
                    head.seq,
                    last.map(|l| l.seq).unwrap_or(0)
                )));
            }
            if last.as_ref().map(|l| l.seq) != Some(head.seq) {
                batch.put(
                    Table::Heads,
                    head_key(prefix.as_str(), head.seq),
                    codec::encode_json(&head),
                );
            }
        }
        batch.put(Table::Reports, prefix.as_str(), codec::encode_json(&report));
        self.commit(batch)
    }

    /// The signed heads a node reported, oldest first.
    pub fn heads(&self, node_prefix: &Prefix) -> Result<Vec<SignedHead>> {
        let mut start = node_prefix.as_str().as_bytes().to_vec();
        start.push(0);
        self.store
            .scan(Table::Heads, &start, None, usize::MAX)
            .map_err(Error::internal)?
            .into_iter()
            .map(|(_, v)| codec::decode_json(&v).map_err(Error::internal))
            .collect()
    }

    /// Statistics per node and in total.
    pub fn stats(&self) -> Result<Stats> {
        let mut nodes = Vec::new();
        let (mut registered, mut resolutions) = (0i64, 0u64);
        for status in self.nodes() {
            let report: Option<Report> = self
                .store
                .get(Table::Reports, status.delegation.prefix.as_bytes())
                .map_err(Error::internal)?
                .map(|b| codec::decode_json(&b))
                .transpose()
                .map_err(Error::internal)?;
            if let Some(r) = &report {
                registered += r.registered;
                resolutions += r
                    .resolutions
                    .iter()
                    .map(|c| c.local + c.forwarded)
                    .sum::<u64>();
            }
            nodes.push((status, report));
        }
        Ok(Stats {
            registered,
            goal: self.config.goal,
            resolutions,
            nodes,
        })
    }
}
