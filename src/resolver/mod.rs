//! The core of a node: routing, resolution, registration, accounts and templates.
//!
//! Every interface (gRPC, DNS, HTTP) is an adapter that decodes its wire format, calls
//! [`Core`] with typed values and a [`Caller`], and encodes the answer. The core owns every
//! rule (ownership, visibility, limits, templates, counts, edits); it never sees a wire type.
//! It calls the `Store` synchronously: async adapters cross over in [`Core::blocking`],
//! except resolutions: anonymous reads of cached records run inline (measured cheaper), the
//! others on the store-read threads (`crate::blocking::ReadPool`). Identifiers elsewhere go
//! through [`Remote`], which the wiring supplies.

mod accounts;
mod command;
mod console;
mod grants;
mod latch;
mod log;
mod places;
mod quota;
mod register;
mod templates;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use crate::credentials::AdminBootstrap;
pub use command::{
    as_request, valid_request_id, Applied, Command, Op, Requester, SharedLog, REQUEST_ID_HEADER,
    SITE_APPLIED,
};
pub use console::Today;
pub use grants::{Grant, Scope};
pub use places::Place;
pub use quota::Usage;
pub use register::{
    class_key, daily_key, prefix_count_key, BatchItem, Counts, Listing, RegisterOutcome, Update,
    IMPORT_STAGING, NODE_COUNT,
};

/// What a client presented: a bearer token (if any) and where it came from (its IP
/// address, for limiting failed authentications; `None`: unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presented {
    pub token: Option<String>,
    pub client: Option<std::net::IpAddr>,
}

impl Presented {
    pub fn anonymous() -> Presented {
        Presented::default()
    }

    /// The id of the credential the token names, if it has a token's shape: what a
    /// write carries so that it is refused when applied after that credential was revoked.
    pub fn credential(&self) -> Option<&str> {
        self.token
            .as_deref()
            .and_then(crate::auth::split_token)
            .map(|(id, _)| id)
    }
}

use crate::auth::{Caller, Enterprise};
use crate::error::{Error, ErrorKind, Result};
use crate::identifier::{Identifier, Limits, Prefix};
use crate::record::{Classification, Format, Record, RecordLimits, Value};
pub use crate::store::backup::BackupReport;
use crate::store::backup::BackupSet;
use crate::store::{codec, Durability, SharedStore, Table};
use crate::template::Template;
use latch::Latches;

/// The suffix of an enterprise's admin handle (`88.101.5/ADMIN`), reserved.
pub const ADMIN_SUFFIX: &str = "ADMIN";

/// The rules a core enforces, from validated configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The prefix this node is authoritative for (e.g. `88.101`).
    pub node_prefix: Prefix,
    pub node_name: String,
    pub identifier_limits: Limits,
    pub record_limits: RecordLimits,
    pub durability: Durability,
    /// Most records one `BatchRegister` message may carry.
    pub max_batch_items: usize,
    /// Largest page `List` returns.
    pub max_page_size: usize,
    /// Threads that read records from disk for resolutions (default: four per core).
    pub read_threads: usize,
    /// Reads that may wait for those threads; more are refused (`ResourceExhausted`).
    /// The node sets it to `limits.max_in_flight`, which bounds the requests waiting.
    pub read_queue: usize,
}

impl CoreConfig {
    pub fn new(node_prefix: Prefix) -> CoreConfig {
        CoreConfig {
            node_prefix,
            node_name: String::new(),
            identifier_limits: Limits::default(),
            record_limits: RecordLimits::default(),
            durability: Durability::Wal,
            max_batch_items: 2000,
            max_page_size: 1000,
            read_threads: 4 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            // The default of `limits.max_in_flight`.
            read_queue: 4096,
        }
    }
}

/// Which values of a record a resolution asks for. Empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub types: Vec<String>,
    pub indexes: Vec<u32>,
}

impl Filter {
    pub fn admits(&self, v: &Value) -> bool {
        (self.types.is_empty() || self.types.contains(&v.value_type))
            && (self.indexes.is_empty() || self.indexes.contains(&v.index))
    }
}

/// The answer to a resolution: the values the caller may see that match the filter. An
/// empty list means the identifier exists but nothing matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub identifier: Identifier,
    pub values: Vec<Value>,
}

/// The interfaces resolutions arrive through (for statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Grpc,
    Dns,
    Http,
}

impl Interface {
    pub const ALL: [Interface; 3] = [Interface::Grpc, Interface::Dns, Interface::Http];

    pub fn name(self) -> &'static str {
        match self {
            Interface::Grpc => "grpc",
            Interface::Dns => "dns",
            Interface::Http => "http",
        }
    }
}

/// How the core resolves identifiers it does not serve: at another node, found through the
/// top-level node. The core owns this seam; `upstream::Forwarder` implements it (as
/// hickory's forwarder sits behind its authority trait), so the core never sees how.
#[async_trait::async_trait]
pub trait Remote: Send + Sync + 'static {
    /// The public values of `id`. Errors: `NotFound` (authoritative); `Unavailable` saying
    /// which hop failed.
    async fn resolve(&self, id: &Identifier) -> Result<Arc<Vec<Value>>>;
    /// True when another node serves `prefix` or an ancestor of it. Errors: `Unavailable`
    /// when that cannot be asked now.
    async fn delegated(&self, prefix: &Prefix) -> Result<bool>;
    /// Monotonic figures since start, for metrics and node information.
    fn stats(&self) -> RemoteStats;
    /// Where referrals come from: "the top-level node at http://...".
    fn describe(&self) -> String;
}

/// What [`Remote`] did since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Resolutions answered remotely (from its cache or not).
    pub forwarded: u64,
    /// Answers from a fresh cache entry.
    pub cache_hits: u64,
    /// Stale answers served because a refresh failed.
    pub stale_answers: u64,
    /// Calls to the top-level node, retries included.
    pub upstream_calls: u64,
    /// Calls to other secondary nodes, retries included.
    pub remote_calls: u64,
    /// Resolutions that failed with `Unavailable`.
    pub failures: u64,
}

/// Most nodes a resolution may pass through after the first: a node answering a forwarded
/// request never forwards again, so a delegation loop ends after one extra hop.
pub const HOP_LIMIT: u32 = 1;

/// Resolutions served, per interface: `[local, forwarded]`.
#[derive(Debug, Default)]
pub struct ResolutionCounts([[AtomicU64; 2]; 3]);

impl ResolutionCounts {
    fn bump(&self, via: Interface, forwarded: bool) {
        self.0[via as usize][forwarded as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `(local, forwarded)` served through `via`.
    pub fn get(&self, via: Interface) -> (u64, u64) {
        let c = &self.0[via as usize];
        (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed))
    }
}

/// The node's core. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Core {
    store: SharedStore,
    config: CoreConfig,
    /// How identifiers this node does not serve are resolved; `None`: they are not found.
    remote: Option<Arc<dyn Remote>>,
    resolutions: ResolutionCounts,
    /// The operation log's head: (last sequence number, its hash).
    head: std::sync::Mutex<(u64, String)>,
    failures: crate::limits::AuthFailures,
    /// Request rates per enterprise (their quotas).
    rates: crate::limits::Rates<Prefix>,
    latches: Latches,
    /// Where resolutions wait for the disk.
    reads: crate::blocking::ReadPool,
    /// Enterprise accounts by prefix: few, read on every write, so kept in memory and
    /// written through.
    enterprises: RwLock<HashMap<String, Enterprise>>,
    /// Templates by identifier, loaded on first use (they change rarely).
    templates: RwLock<HashMap<String, Arc<Template>>>,
    /// What a backup of this node copies (its stores and key files), set by the wiring.
    backups: std::sync::OnceLock<Arc<BackupSet>>,
    /// The site's log, in site mode (set by the wiring before serving).
    shared_log: std::sync::OnceLock<Arc<dyn SharedLog>>,
}

impl Core {
    /// Opens the core over a store, loading the enterprise table. An offline import left
    /// pending by a crash or failure is completed first; an error doing so is returned
    /// (the store must not serve half an import).
    pub fn open(
        store: SharedStore,
        config: CoreConfig,
        remote: Option<Arc<dyn Remote>>,
    ) -> Result<Core> {
        let mut enterprises = HashMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store
                .scan(Table::Enterprises, b"", after.as_deref(), 1024)
                .map_err(Error::internal)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, v) in &page {
                let e: Enterprise = codec::decode_json(v).map_err(Error::internal)?;
                enterprises.insert(e.prefix.clone(), e);
            }
        }
        let head = crate::oplog::read_head(store.as_ref())?;
        // The node prefix, for offline tools (audit) that open the store without config.
        if store
            .get(Table::Meta, b"node_prefix")
            .map_err(Error::internal)?
            .is_none()
        {
            let mut batch = crate::store::Batch::new();
            batch.put(
                Table::Meta,
                b"node_prefix".to_vec(),
                config.node_prefix.to_string().into_bytes(),
            );
            store
                .write(batch, config.durability)
                .map_err(Error::internal)?;
        }
        let reads = crate::blocking::ReadPool::start(config.read_threads, config.read_queue)?;
        let core = Core {
            store,
            config,
            remote,
            resolutions: ResolutionCounts::default(),
            head: std::sync::Mutex::new(head),
            failures: Default::default(),
            rates: crate::limits::Rates::new(crate::limits::MAX_ENTERPRISE_RATES),
            latches: Latches::new(4096),
            reads,
            enterprises: RwLock::new(enterprises),
            templates: RwLock::new(HashMap::new()),
            backups: std::sync::OnceLock::new(),
            shared_log: std::sync::OnceLock::new(),
        };
        // An offline import killed or failed after it began to change the store is
        // completed before anything else can write (see `Core::complete_import`).
        if let Some(import) = core.complete_import()? {
            tracing::warn!(
                seq = import.seq,
                records = import.records,
                "completed an interrupted offline import: {}",
                import.detail
            );
        }
        Ok(core)
    }

    /// A core over an in-memory store serving `node_prefix`, for unit tests of the
    /// modules above the core (which never import `store` themselves).
    #[cfg(test)]
    pub(crate) fn in_memory(node_prefix: &str) -> Core {
        let store = Arc::new(crate::store::memory::MemoryStore::new());
        let prefix = Prefix::parse(node_prefix).expect("a valid node prefix");
        Core::open(store, CoreConfig::new(prefix), None).expect("an in-memory core opens")
    }

    /// Sets what [`Core::backup`] copies (once; later calls are ignored).
    pub fn set_backups(&self, set: Arc<BackupSet>) {
        let _ = self.backups.set(set);
    }

    /// Adds a backup of the node (its stores and key files) to `dest`, an absolute
    /// directory outside the data directory, while it serves (admin only). Blocking.
    ///
    /// Errors: `PermissionDenied`/`Unauthenticated`; `InvalidArgument` for a bad
    /// destination; `Unavailable` when this node takes no backups; `Internal`.
    pub fn backup(&self, caller: &Caller, dest: &std::path::Path) -> Result<BackupReport> {
        self.require_admin(caller)?;
        self.backups
            .get()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "this server takes no backups"))?
            .run_for_client(dest)
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Runs blocking core work off the async runtime ([`crate::blocking::run`]): how the
    /// adapters reach the synchronous store.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Core) -> Result<T> + Send + 'static,
    {
        let core = Arc::clone(self);
        crate::blocking::run(move || f(&core)).await?
    }

    /// Parses an identifier with this node's limits.
    pub fn parse_identifier(&self, text: &str) -> Result<Identifier> {
        Ok(Identifier::parse_with(
            text,
            &self.config.identifier_limits,
        )?)
    }

    /// Parses a prefix with this node's limits.
    pub fn parse_prefix(&self, text: &str) -> Result<Prefix> {
        Ok(Prefix::parse_with(text, &self.config.identifier_limits)?)
    }

    /// True if this node is authoritative for `prefix`.
    pub fn serves(&self, prefix: &Prefix) -> bool {
        prefix.is_within(&self.config.node_prefix)
    }

    /// True if this node is authoritative for `id` (no prefix is built: a hot-path check).
    pub fn serves_identifier(&self, id: &Identifier) -> bool {
        id.is_within(&self.config.node_prefix)
    }

    /// How identifiers elsewhere are resolved, when they are.
    pub fn remote(&self) -> Option<&Arc<dyn Remote>> {
        self.remote.as_ref()
    }

    pub fn resolutions(&self) -> &ResolutionCounts {
        &self.resolutions
    }

    /// Resolutions refused because too many reads were waiting for the store.
    pub fn reads_refused(&self) -> u64 {
        self.reads.refused()
    }

    /// Resolves any identifier: from the store when this node serves its prefix (never
    /// waiting on the upstream), else through the forwarder. `hops` is how many nodes the
    /// request already passed; at [`HOP_LIMIT`] a non-local identifier is refused rather
    /// than forwarded again.
    ///
    /// Errors: `NotFound`; `Unauthenticated` for a bad token; `Unavailable` when the
    /// identifier is remote and neither the upstream nor a cached answer can serve it.
    pub async fn resolve_routed(
        self: &Arc<Self>,
        presented: Presented,
        id: Identifier,
        filter: Filter,
        hops: u32,
        via: Interface,
    ) -> Result<Resolved> {
        if self.serves_identifier(&id) {
            // Anonymous reads answered from memory run inline: a block-cache read costs a
            // few microseconds, less than a hop to another thread (measured with
            // scripts/bench.sh dns: 32k qps with the hop on 2 cores). A read that needs
            // the disk and reads that authenticate go to the store-read threads, so the
            // async workers never wait for I/O (measured at 100M records: 1,050 rps with
            // every read inline on the two workers).
            let cached = match presented.token {
                None => self.resolve_cached(&id, &filter)?,
                Some(_) => None,
            };
            let resolved = match cached {
                Some(r) => r,
                None => {
                    let core = Arc::clone(self);
                    self.reads
                        .run(move || {
                            let caller = core.caller(&presented)?;
                            core.resolve(&caller, &id, &filter)
                        })
                        .await?
                }
            };
            self.resolutions.bump(via, false);
            return Ok(resolved);
        }
        if hops >= HOP_LIMIT {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{id} is not served by this node (node prefix {}) and the request already \
                     passed {hops} node(s): hop limit reached (a delegation loop?)",
                    self.config.node_prefix
                ),
            ));
        }
        let Some(remote) = &self.remote else {
            return Err(Error::not_found(format!(
                "{id} is not served by this node (node prefix {}) and forwarding is off",
                self.config.node_prefix
            )));
        };
        if presented.token.is_some() {
            // Forwarded answers hold public values only, but a bad token is still an error.
            self.blocking(move |c| c.caller(&presented).map(|_| ()))
                .await?;
        }
        let values = remote.resolve(&id).await?;
        self.resolutions.bump(via, true);
        Ok(Resolved {
            values: values
                .iter()
                .filter(|v| v.permissions.public_read && filter.admits(v))
                .cloned()
                .collect(),
            identifier: id,
        })
    }

    /// Resolves an identifier this node serves to the values `caller` may see.
    ///
    /// Errors: `NotFound` if it is not registered or not served by this node.
    pub fn resolve(&self, caller: &Caller, id: &Identifier, filter: &Filter) -> Result<Resolved> {
        self.check_served(id)?;
        let record = self
            .load(id)?
            .or_else(|| self.admin_handle(id))
            .ok_or_else(|| Error::not_found(format!("{id} is not registered")))?;
        self.visible(caller, id, record, filter)
    }

    /// The admin handle `<enterprise prefix>/ADMIN` that Handle clients (pyhandle,
    /// b2handle) read before they authenticate as `300:<prefix>/ADMIN`, made from the
    /// enterprise's account whenever it is read: it exists for every enterprise, old or
    /// new, follows token rotation and revocation at once, and is no registration (not
    /// counted, no quota). A record an enterprise registered under that suffix before it
    /// was reserved is served as stored instead (`load` finds it first).
    fn admin_handle(&self, id: &Identifier) -> Option<Record> {
        if id.suffix() != ADMIN_SUFFIX {
            return None;
        }
        let enterprise = self.enterprise(&id.prefix())?;
        let mut admin = Value::text(100, "HS_ADMIN", "");
        admin.format = Format::Json;
        admin.data = serde_json::to_vec(&serde_json::json!({
            "handle": id.as_str(),
            "index": 300,
            "permissions": "011111110011",
        }))
        .expect("JSON");
        // Index 300 is where a Handle server keeps the key of `300:<prefix>/ADMIN`; here,
        // which tokens are valid (ids only: secrets are never stored), for the owner.
        let mut tokens = Value::text(300, "IDNODE_TOKENS", "");
        tokens.format = Format::Json;
        tokens.data = serde_json::to_vec(&enterprise.credential_ids).expect("JSON");
        tokens.permissions.classify(Classification::Private);
        let mut record = Record::new(vec![admin, tokens]);
        for v in &mut record.values {
            v.timestamp = enterprise.created_at;
        }
        Some(record)
    }

    /// `resolve` for an anonymous caller if the record's read needs no disk access;
    /// `None` otherwise (then resolve on a thread that may block).
    pub fn resolve_cached(&self, id: &Identifier, filter: &Filter) -> Result<Option<Resolved>> {
        self.check_served(id)?;
        let Some(bytes) = self
            .store
            .get_cached(Table::Records, id.as_bytes())
            .map_err(Error::internal)?
        else {
            return Ok(None);
        };
        let record = match bytes {
            Some(bytes) => codec::decode_record(&bytes)
                .map_err(|e| Error::internal(format!("record {id}: {e}")))?,
            None => self
                .admin_handle(id)
                .ok_or_else(|| Error::not_found(format!("{id} is not registered")))?,
        };
        self.visible(&Caller::Anonymous, id, record, filter)
            .map(Some)
    }

    /// An anonymous resolution of a local identifier answered from memory, without
    /// waiting: `Ok(None)` when it needs the disk or another node (then use
    /// [`Core::resolve_routed`]). For callers that cannot await (the DNS receive threads).
    pub fn resolve_now(
        &self,
        id: &Identifier,
        filter: &Filter,
        via: Interface,
    ) -> Result<Option<Resolved>> {
        if !self.serves_identifier(id) {
            return Ok(None);
        }
        let resolved = self.resolve_cached(id, filter)?;
        if resolved.is_some() {
            self.resolutions.bump(via, false);
        }
        Ok(resolved)
    }

    /// `NotFound` unless this node serves `id`.
    fn check_served(&self, id: &Identifier) -> Result<()> {
        if self.serves_identifier(id) {
            return Ok(());
        }
        Err(Error::not_found(format!(
            "{id} is not served by this node (node prefix {})",
            self.config.node_prefix
        )))
    }

    /// The values of `record` that `caller` may see, through `filter`.
    fn visible(
        &self,
        caller: &Caller,
        id: &Identifier,
        record: Record,
        filter: &Filter,
    ) -> Result<Resolved> {
        let owner = caller.owns_identifier(id, &self.config.node_prefix);
        // Partner values: only for enterprises the owner granted access to.
        let partner = match caller {
            Caller::Enterprise(p)
                if !owner
                    && record
                        .values
                        .iter()
                        .any(|v| v.permissions.classification() == Classification::Partner) =>
            {
                self.granted(p, id)?
            }
            _ => false,
        };
        let values: Vec<Value> = record
            .values
            .into_iter()
            .filter(|v| {
                v.permissions.public_read
                    || (owner && v.permissions.admin_read)
                    || (partner && v.permissions.partner_read)
            })
            .filter(|v| filter.admits(v))
            .collect();
        self.note_admin_read(caller, id, &values);
        Ok(Resolved {
            identifier: id.clone(),
            values,
        })
    }

    /// The node admin reads high-risk values (it operates the store and answers for it), and
    /// each such read is logged (target `idnode::audit`), never silently.
    fn note_admin_read(&self, caller: &Caller, id: &Identifier, values: &[Value]) {
        if *caller != Caller::Admin {
            return;
        }
        let high = values
            .iter()
            .filter(|v| v.risk == Some(crate::record::Risk::High))
            .count();
        if high > 0 {
            tracing::info!(target: "idnode::audit", identifier = %id, values = high, "the node admin read high-risk values");
        }
    }

    /// Reads a whole record, non-public values included: owners and the admin only.
    pub fn get(&self, caller: &Caller, id: &Identifier) -> Result<Record> {
        self.require_owner(caller, &id.prefix())?;
        let record = self
            .load(id)?
            .or_else(|| self.admin_handle(id))
            .ok_or_else(|| Error::not_found(format!("{id} is not registered")))?;
        self.note_admin_read(caller, id, &record.values);
        Ok(record)
    }

    fn load(&self, id: &Identifier) -> Result<Option<Record>> {
        let Some(bytes) = self
            .store
            .get(Table::Records, id.as_bytes())
            .map_err(Error::internal)?
        else {
            return Ok(None);
        };
        codec::decode_record(&bytes)
            .map(Some)
            .map_err(|e| Error::internal(format!("record {id}: {e}")))
    }

    /// Identifiers registered on this node.
    pub fn node_registered(&self) -> Result<i64> {
        self.store
            .counter(Table::Counters, register::NODE_COUNT)
            .map_err(Error::internal)
    }

    /// Number of allocated enterprise prefixes.
    pub fn enterprise_count(&self) -> usize {
        self.enterprises
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Checks that `caller` may write under `prefix`.
    fn require_owner(&self, caller: &Caller, prefix: &Prefix) -> Result<()> {
        if !self.serves(prefix) {
            return Err(Error::denied(format!(
                "prefix {prefix} is not served by this node (node prefix {})",
                self.config.node_prefix
            )));
        }
        match caller {
            Caller::Anonymous => Err(Error::unauthenticated(
                "this operation needs a token (authorization: Bearer <token>)",
            )),
            _ if caller.owns(prefix, &self.config.node_prefix) => Ok(()),
            Caller::Admin | Caller::Enterprise(_) | Caller::Node(_) => Err(Error::denied(format!(
                "the caller does not own prefix {prefix}"
            ))),
        }
    }

    /// The prefix whose count a record under `prefix` adds to: its enterprise's prefix, or
    /// the node prefix for records the admin keeps outside any enterprise.
    fn owner_prefix(&self, prefix: &Prefix) -> String {
        let enterprises = self.enterprises.read().unwrap_or_else(|e| e.into_inner());
        prefix
            .ancestors_or_self()
            .find(|p| enterprises.contains_key(*p))
            .unwrap_or(self.config.node_prefix.as_str())
            .to_owned()
    }
}
