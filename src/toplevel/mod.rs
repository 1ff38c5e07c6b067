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
    pub fn is_empty(&self) -> bool {
        self.grpc.is_empty() && self.dns.is_empty() && self.http.is_empty()
    }

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

/// Most servers one node may have announced; a new one beyond it replaces the server
/// silent longest, if that one is not live.
pub const MAX_SERVERS: usize = 16;

/// Whether `name` may name a server of a site: a DNS label of lowercase letters, digits
/// and '-' (its DNS name server is `<name>.ns.<zone>`). The empty name is the one server
/// of a single-process node.
pub fn valid_server_name(name: &str) -> bool {
    name.is_empty()
        || (name.len() <= 63
            && !name.starts_with('-')
            && !name.ends_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
}

/// One server of a node: the only one of a single-process node (named ""), or one of the
/// servers of a site, each announced by its own heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    #[serde(default)]
    pub name: String,
    pub endpoints: Endpoints,
    /// Hex public key that signs this server's log heads, pinned at its first report.
    #[serde(default)]
    pub log_key: Option<String>,
}

/// A node prefix delegated to a secondary node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    pub prefix: String,
    pub node_id: String,
    pub name: String,
    /// The node's servers, in the order they were first announced.
    #[serde(default)]
    pub servers: Vec<Server>,
    pub created_at: i64,
    #[serde(default)]
    pub credential_ids: Vec<String>,
    /// Stores written before sites: the one server's endpoints and key, moved into
    /// `servers` when read.
    #[serde(default, skip_serializing)]
    endpoints: Option<Endpoints>,
    #[serde(default, skip_serializing)]
    log_key: Option<String>,
}

impl Delegation {
    fn upgraded(mut self) -> Delegation {
        if let Some(endpoints) = self.endpoints.take() {
            if self.servers.is_empty() && (!endpoints.is_empty() || self.log_key.is_some()) {
                self.servers.push(Server {
                    name: String::new(),
                    endpoints,
                    log_key: self.log_key.take(),
                });
            }
        }
        self.log_key = None;
        self
    }
}

/// A server of a node with its liveness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub name: String,
    pub endpoints: Endpoints,
    pub live: bool,
    pub last_heartbeat: i64,
}

/// The answer to "who serves this prefix".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub node_prefix: Prefix,
    pub node_id: String,
    pub node_name: String,
    /// Every server of the node: live ones first, the most recently heard first.
    pub servers: Vec<ServerStatus>,
    /// Seconds the referral may be cached.
    pub ttl: u32,
}

impl Referral {
    /// The gRPC URLs to ask, in order (servers that announced none are skipped).
    pub fn grpc_urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| !s.endpoints.grpc.is_empty())
            .map(|s| s.endpoints.grpc.clone())
            .collect()
    }
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
    /// The reporting server's name ("" for a single-process node).
    #[serde(default)]
    pub server: String,
    pub registered: i64,
    pub prefixes: Vec<(String, i64)>,
    pub resolutions: Vec<InterfaceCount>,
    /// Set by the top-level node on receipt.
    #[serde(default)]
    pub received_at: i64,
    /// Set by the top-level node: the sequence of the head that came with it.
    #[serde(default)]
    pub head_seq: u64,
    /// The node's signed log head (kept separately, in `Heads`).
    #[serde(default, skip_serializing)]
    pub head: Option<SignedHead>,
}

/// One delegation with its liveness: live while any of its servers is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub delegation: Delegation,
    pub live: bool,
    pub last_heartbeat: i64,
    /// Its servers, live ones first (as in a referral).
    pub servers: Vec<ServerStatus>,
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
    /// Last heartbeat per (node prefix, server name), seconds since the epoch; liveness
    /// is volatile.
    heartbeats: RwLock<HashMap<(String, String), i64>>,
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

/// A server's statistics report: under the node prefix, then 0 and the server's name.
fn report_key(prefix: &str, server: &str) -> Vec<u8> {
    let mut k = prefix.as_bytes().to_vec();
    if !server.is_empty() {
        k.push(0);
        k.extend_from_slice(server.as_bytes());
    }
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
            let d = d.upgraded();
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
            servers: self.servers(d),
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
        let servers = match endpoints.is_empty() {
            true => Vec::new(),
            false => vec![Server {
                endpoints,
                ..Server::default()
            }],
        };
        let d = Delegation {
            prefix: prefix.to_string(),
            node_id: node_id.to_owned(),
            name: name.to_owned(),
            servers,
            created_at: now(),
            credential_ids: vec![minted.credential.id.clone()],
            endpoints: None,
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
        for s in &d.servers {
            batch.delete(Table::Reports, report_key(prefix.as_str(), &s.name));
        }
        for id in &d.credential_ids {
            batch.delete(Table::Credentials, id.as_bytes());
        }
        self.commit(batch)?;
        delegations.remove(prefix.as_str());
        self.heartbeats
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, _), _| p != prefix.as_str());
        Ok(())
    }

    /// When `server` of `prefix` was last heard, and whether that is within the window.
    fn liveness(&self, prefix: &str, server: &str) -> (bool, i64) {
        let last = self
            .heartbeats
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(prefix.to_owned(), server.to_owned()))
            .copied()
            .unwrap_or(0);
        let window = 3 * self.config.heartbeat_interval as i64;
        (last > 0 && now() - last <= window, last)
    }

    /// A delegation's servers with liveness: live ones first, the most recently heard
    /// first, then in the order they were announced.
    fn servers(&self, d: &Delegation) -> Vec<ServerStatus> {
        let mut servers: Vec<ServerStatus> = d
            .servers
            .iter()
            .map(|s| {
                let (live, last_heartbeat) = self.liveness(&d.prefix, &s.name);
                ServerStatus {
                    name: s.name.clone(),
                    endpoints: s.endpoints.clone(),
                    live,
                    last_heartbeat,
                }
            })
            .collect();
        servers.sort_by_key(|s| (!s.live, std::cmp::Reverse(s.last_heartbeat)));
        servers
    }

    /// The servers of the node serving `node_prefix` exactly (empty when none does).
    fn servers_of(&self, node_prefix: &Prefix) -> Vec<ServerStatus> {
        self.read()
            .get(node_prefix.as_str())
            .map(|d| self.servers(d))
            .unwrap_or_default()
    }

    /// The delegation table with liveness, by prefix.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.read()
            .values()
            .map(|d| {
                let servers = self.servers(d);
                NodeStatus {
                    delegation: d.clone(),
                    live: servers.iter().any(|s| s.live),
                    last_heartbeat: servers.iter().map(|s| s.last_heartbeat).max().unwrap_or(0),
                    servers,
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

    /// Records the heartbeat of one server of a node (`server`: its name in the site, ""
    /// for a single-process node) and its current endpoints; returns the node prefix and
    /// the node's servers (a site's servers learn each other's addresses from them).
    /// A server not seen before is added to the delegation; beyond [`MAX_SERVERS`] it
    /// replaces the server silent longest, unless every one is live.
    pub fn heartbeat(
        &self,
        caller: &Caller,
        server: &str,
        endpoints: Endpoints,
    ) -> Result<(Prefix, Vec<ServerStatus>)> {
        let prefix = Self::node_prefix_of(caller)?.clone();
        endpoints.validate()?;
        if !valid_server_name(server) {
            return Err(Error::invalid(
                "a server name is 1-63 lowercase letters, digits or '-' (a DNS label)",
            ));
        }
        {
            let mut delegations = self.delegations.write().unwrap_or_else(|e| e.into_inner());
            let d = delegations
                .get_mut(prefix.as_str())
                .ok_or_else(|| Error::denied(format!("prefix {prefix} is no longer delegated")))?;
            let mut changed = d.clone();
            let mut batch = Batch::new();
            match changed.servers.iter_mut().find(|s| s.name == server) {
                Some(s) if s.endpoints == endpoints => {}
                Some(s) => s.endpoints = endpoints,
                None => {
                    if changed.servers.len() >= MAX_SERVERS {
                        let silent = self
                            .servers(&changed)
                            .into_iter()
                            .rev()
                            .find(|s| !s.live)
                            .ok_or_else(|| {
                                Error::exhausted(format!(
                                    "node {prefix} already has {MAX_SERVERS} live servers"
                                ))
                            })?;
                        changed.servers.retain(|s| s.name != silent.name);
                        batch.delete(Table::Reports, report_key(prefix.as_str(), &silent.name));
                        tracing::info!(node = %prefix, server = %silent.name, "silent server dropped");
                    }
                    changed.servers.push(Server {
                        name: server.to_owned(),
                        endpoints,
                        ..Server::default()
                    });
                }
            }
            if changed != *d {
                batch.put(
                    Table::Delegations,
                    prefix.as_str(),
                    codec::encode_json(&changed),
                );
                self.commit(batch)?;
                *d = changed;
                tracing::info!(node = %prefix, server, "node servers changed");
            }
        }
        self.heartbeats
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((prefix.to_string(), server.to_owned()), now());
        let servers = self.servers_of(&prefix);
        Ok((prefix, servers))
    }

    /// Keeps the latest statistics report of one server of a node and its signed log
    /// head. Each server's key is pinned at its first report; a head signed by another key,
    /// with a bad signature, older than that server's last, or with another hash than a
    /// head another server of the node reported at the same sequence (their logs diverged)
    /// is refused.
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
        let mut changed = d.clone();
        let server = changed
            .servers
            .iter_mut()
            .find(|s| s.name == report.server)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "server {:?} of {prefix} has not announced itself by a heartbeat",
                    report.server
                ))
            })?;
        // A server's heads never go back; its last report holds the last one.
        let last = self
            .store
            .get(Table::Reports, &report_key(prefix.as_str(), &report.server))
            .map_err(Error::internal)?
            .map(|b| codec::decode_json::<Report>(&b))
            .transpose()
            .map_err(Error::internal)?
            .map_or(0, |r| r.head_seq);
        report.head_seq = last;
        if let Some(head) = report.head.take() {
            if head.node_prefix != prefix.as_str() || !head.verify() {
                return Err(Error::denied("the signed log head does not verify"));
            }
            match &server.log_key {
                Some(k) if *k != head.public_key => {
                    return Err(Error::denied(format!(
                        "the log head of {prefix} is signed by another key than the one pinned for server {:?}",
                        server.name
                    )))
                }
                Some(_) => {}
                None => server.log_key = Some(head.public_key.clone()),
            }
            if head.seq < last {
                return Err(Error::invalid(format!(
                    "log head {} is older than the reported {last}: a rolled-back log?",
                    head.seq
                )));
            }
            report.head_seq = head.seq;
            let key = head_key(prefix.as_str(), head.seq);
            match self
                .store
                .get(Table::Heads, &key)
                .map_err(Error::internal)?
            {
                Some(b) => {
                    let known: SignedHead = codec::decode_json(&b).map_err(Error::internal)?;
                    if known.hash != head.hash {
                        tracing::error!(node = %prefix, seq = head.seq, "servers of one node report different log heads");
                        return Err(Error::invalid(format!(
                            "log head {} of {prefix} differs from the one reported earlier at the same sequence: the node's logs diverged",
                            head.seq
                        )));
                    }
                }
                None => batch.put(Table::Heads, key, codec::encode_json(&head)),
            }
        }
        if changed != *d {
            batch.put(
                Table::Delegations,
                prefix.as_str(),
                codec::encode_json(&changed),
            );
        }
        batch.put(
            Table::Reports,
            report_key(prefix.as_str(), &report.server),
            codec::encode_json(&report),
        );
        self.commit(batch)?;
        *d = changed;
        Ok(())
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

    /// One node's statistics from its servers' reports: the identifiers as the server
    /// with the newest log head counted them (a site's servers hold the same records, so
    /// they count once), resolutions summed over the servers (each serves its own).
    fn node_report(&self, d: &Delegation) -> Result<Option<Report>> {
        let mut merged: Option<Report> = None;
        let mut resolutions: BTreeMap<String, InterfaceCount> = BTreeMap::new();
        for s in &d.servers {
            let Some(b) = self
                .store
                .get(Table::Reports, &report_key(&d.prefix, &s.name))
                .map_err(Error::internal)?
            else {
                continue;
            };
            let r: Report = codec::decode_json(&b).map_err(Error::internal)?;
            for c in &r.resolutions {
                let sum =
                    resolutions
                        .entry(c.interface.clone())
                        .or_insert_with(|| InterfaceCount {
                            interface: c.interface.clone(),
                            ..InterfaceCount::default()
                        });
                sum.local += c.local;
                sum.forwarded += c.forwarded;
            }
            let newer = merged
                .as_ref()
                .is_none_or(|m| (r.head_seq, r.received_at) > (m.head_seq, m.received_at));
            if newer {
                merged = Some(r);
            }
        }
        Ok(merged.map(|mut r| {
            r.server.clear();
            r.resolutions = resolutions.into_values().collect();
            r
        }))
    }

    /// Statistics per node and in total.
    pub fn stats(&self) -> Result<Stats> {
        let mut nodes = Vec::new();
        let (mut registered, mut resolutions) = (0i64, 0u64);
        for status in self.nodes() {
            let report = self.node_report(&status.delegation)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::SignedHead;
    use ed25519_dalek::SigningKey;

    fn top() -> (TopLevel, Caller) {
        let store: SharedStore = Arc::new(crate::store::memory::MemoryStore::new());
        let top = TopLevel::open(store, TopLevelConfig::default()).unwrap();
        let prefix = Prefix::parse("88.101").unwrap();
        top.add_delegation(
            &Caller::Admin,
            &prefix,
            "hubei",
            "Hubei",
            Endpoints::default(),
        )
        .unwrap();
        (top, Caller::Node(prefix))
    }

    fn at(grpc: &str) -> Endpoints {
        Endpoints {
            grpc: grpc.into(),
            ..Endpoints::default()
        }
    }

    fn report(server: &str, key: &SigningKey, seq: u64, hash: &str, registered: i64) -> Report {
        Report {
            server: server.into(),
            registered,
            resolutions: vec![InterfaceCount {
                interface: "grpc".into(),
                local: 10,
                forwarded: 1,
            }],
            head: Some(SignedHead::sign(key, "88.101", seq, hash, 1)),
            ..Report::default()
        }
    }

    #[test]
    fn a_site_is_one_node_with_every_server_in_its_referral() {
        let (top, node) = top();
        for (name, url) in [("s1", "http://a"), ("s2", "http://b"), ("s3", "http://c")] {
            top.heartbeat(&node, name, at(url)).unwrap();
        }
        // A server that moved keeps its place; no fourth server appears.
        top.heartbeat(&node, "s2", at("http://b2")).unwrap();
        let referral = top.locate(&Prefix::parse("88.101.5").unwrap()).unwrap();
        let mut urls = referral.grpc_urls();
        urls.sort();
        assert_eq!(urls, ["http://a", "http://b2", "http://c"]);
        assert!(referral.servers.iter().all(|s| s.live));
        let nodes = top.nodes();
        assert_eq!(nodes.len(), 1, "a site is one node");
        assert_eq!(nodes[0].servers.len(), 3);
        assert!(top.heartbeat(&node, "Bad_Name", at("http://d")).is_err());

        // The identifiers count once, from the newest head; resolutions add up.
        let keys: Vec<SigningKey> = (1..=3u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect();
        top.report(&node, report("s1", &keys[0], 7, "h7", 70))
            .unwrap();
        top.report(&node, report("s2", &keys[1], 9, "h9", 90))
            .unwrap();
        top.report(&node, report("s3", &keys[2], 7, "h7", 70))
            .unwrap();
        let stats = top.stats().unwrap();
        assert_eq!(stats.registered, 90);
        assert_eq!(stats.resolutions, 33);

        // Each server's key is pinned for it alone; its heads never go back; two servers
        // never report different heads at one sequence.
        let e = top
            .report(&node, report("s1", &keys[1], 8, "h8", 80))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::PermissionDenied, "{e}");
        let e = top
            .report(&node, report("s2", &keys[1], 8, "h8", 80))
            .unwrap_err();
        assert!(e.message.contains("older"), "{e}");
        let e = top
            .report(&node, report("s3", &keys[2], 9, "other", 90))
            .unwrap_err();
        assert!(e.message.contains("diverged"), "{e}");
        let e = top
            .report(&node, report("s4", &keys[0], 9, "h9", 90))
            .unwrap_err();
        assert!(e.message.contains("heartbeat"), "{e}");
        assert_eq!(
            top.heads(&Prefix::parse("88.101").unwrap()).unwrap().len(),
            2
        );
    }

    #[test]
    fn servers_are_bounded_and_a_silent_one_makes_room() {
        let (top, node) = top();
        for i in 0..MAX_SERVERS {
            top.heartbeat(&node, &format!("s{i}"), at("http://x"))
                .unwrap();
        }
        let e = top
            .heartbeat(&node, "one-more", at("http://y"))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceExhausted);
        // s0 falls silent (its last heartbeat ages past the window).
        top.heartbeats
            .write()
            .unwrap()
            .insert(("88.101".into(), "s0".into()), 1);
        top.heartbeat(&node, "one-more", at("http://y")).unwrap();
        let names: Vec<String> = top.nodes()[0]
            .servers
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names.len(), MAX_SERVERS);
        assert!(!names.contains(&"s0".to_owned()) && names.contains(&"one-more".to_owned()));
    }

    #[test]
    fn a_delegation_stored_before_sites_reads_as_one_server() {
        let old = r#"{"prefix":"88.102","node_id":"wuhan","name":"Wuhan","endpoints":{"grpc":"http://w","dns":"","http":""},"created_at":1,"credential_ids":[],"log_key":"abcd"}"#;
        let d: Delegation = serde_json::from_str(old).unwrap();
        let d = d.upgraded();
        assert_eq!(d.servers.len(), 1);
        assert_eq!(d.servers[0].name, "");
        assert_eq!(d.servers[0].endpoints.grpc, "http://w");
        assert_eq!(d.servers[0].log_key.as_deref(), Some("abcd"));
        let again = serde_json::to_string(&d).unwrap();
        let json: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert!(json.get("endpoints").is_none() && json.get("log_key").is_none());
        let back: Delegation = serde_json::from_str(&again).unwrap();
        assert_eq!(back.upgraded(), d);
    }
}
