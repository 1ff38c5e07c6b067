//! A replicated site: several idnode servers that are one node, sharing one log on NATS
//! JetStream (a stream replicated by Raft across three or five NATS servers).
//!
//! - Every write is a [`Command`] appended to the site's stream; every server applies the
//!   stream in order into its own store ([`Core::apply`], which records the position in the
//!   same atomic batch). Servers that applied the same sequence hold the same records,
//!   counts and operation log.
//! - Any server accepts writes (no leader): it checks the command against its state
//!   ([`Core::check`]) and appends it expecting the last sequence it applied of the
//!   command's subject (`<stream>.i.<owner>.<bucket>` for a command on one identifier, one
//!   of 256 per owner prefix by its hash; `<stream>.o.<owner>` for the owner's other
//!   commands), so a conflicting append is refused by JetStream; it then catches up and
//!   checks again. What
//!   the client is told is the outcome of applying the command, identical on every server.
//! - A write is acknowledged only after JetStream acknowledged the append (a quorum holds
//!   it) and this server applied it (read-your-writes here).
//! - Reads never touch the stream: every server answers from its own store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt;

use crate::auth::{self, Caller, Subject};
use crate::error::{Error, ErrorKind, Result};
use crate::resolver::{Applied, Command, Core, Op, SharedLog};

/// How a server joins its site.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// NATS server URLs (`nats://127.0.0.1:4222`); the client fails over between them.
    pub servers: Vec<String>,
    /// The stream's name; its subjects are `<lower-case name>.>`.
    pub stream: String,
    /// Copies JetStream keeps of every message (3 or 5).
    pub replicas: usize,
    /// The largest command (a whole batch message), which sets the stream's message limit.
    pub max_command_bytes: usize,
    /// How long a write keeps trying before the client is told UNAVAILABLE.
    pub write_deadline: Duration,
    /// This server's name in the site (in logs and the NATS connection's name).
    pub server_name: String,
    /// How often this server snapshots its store into the site's object store and purges
    /// the stream below the snapshot (`None`: never).
    pub snapshot_interval: Option<Duration>,
    /// Where a snapshot is assembled before its upload (emptied after).
    pub snapshot_dir: std::path::PathBuf,
}

impl SiteConfig {
    pub fn new(servers: Vec<String>) -> SiteConfig {
        SiteConfig {
            servers,
            stream: "IDNODE".into(),
            replicas: 3,
            max_command_bytes: 17 << 20,
            write_deadline: Duration::from_secs(15),
            // Empty: `node::open` names it after its node key.
            server_name: String::new(),
            snapshot_interval: Some(Duration::from_secs(3600)),
            snapshot_dir: std::path::PathBuf::from("snapshot"),
        }
    }
}

/// Outcomes of the commands applied here, by sequence, for the writers waiting for them
/// (this server's, and a client's retry of a request first sent through another server);
/// bounded: the oldest go first.
const MAX_KEPT_OUTCOMES: usize = 4096;

/// Subjects whose last applied sequence a server keeps (for the expected sequence of its
/// next append there); beyond it the table starts again.
const MAX_KNOWN_SUBJECTS: usize = 1 << 18;

struct Shared {
    core: Arc<Core>,
    js: jetstream::Context,
    stream: stream::Stream,
    config: SiteConfig,
    subject_root: String,
    /// The last sequence applied to the store.
    applied: watch::Sender<u64>,
    /// The last sequence applied per subject (the expected sequence of the next append).
    subjects: Mutex<HashMap<String, u64>>,
    outcomes: Mutex<BTreeMap<u64, Result<Applied>>>,
    /// The stream's last sequence when last asked (for the lag).
    last_seen: std::sync::atomic::AtomicU64,
    /// The apply thread's queue (set when the apply loop starts).
    jobs: std::sync::OnceLock<std::sync::mpsc::SyncSender<Job>>,
}

/// A joined site: the core's [`SharedLog`].
#[derive(Clone)]
pub struct Site {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

/// What joining found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The stream's last sequence at join time, now applied here.
    pub caught_up_to: u64,
}

fn unavailable(what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("the site's log is unavailable: {what}"),
    )
}

impl Site {
    /// Connects to the site's NATS servers, creates the stream if it is new, starts
    /// applying it from where this store stopped, and returns once everything the stream
    /// held at the start is applied. Call from the runtime.
    pub async fn join(core: Arc<Core>, config: SiteConfig) -> Result<(Site, Joined)> {
        if config.servers.is_empty() {
            return Err(Error::invalid("a site needs at least one NATS server URL"));
        }
        let client = async_nats::ConnectOptions::new()
            .name(&config.server_name)
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None)
            .retry_on_initial_connect()
            .connect(config.servers.as_slice())
            .await
            .map_err(|e| unavailable(format!("connecting to {:?}: {e}", config.servers)))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(3))
            .build(client);
        let subject_root = config.stream.to_ascii_lowercase();
        let stream_config = stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{subject_root}.>")],
            num_replicas: config.replicas,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            max_message_size: i32::try_from(config.max_command_bytes).unwrap_or(i32::MAX),
            duplicate_window: Duration::from_secs(120),
            deny_delete: true,
            ..Default::default()
        };
        // The stream's leader may not be elected yet when the servers just started.
        let deadline = Instant::now() + config.write_deadline;
        let stream = loop {
            match js.get_or_create_stream(stream_config.clone()).await {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("site stream not ready: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(unavailable(format!("stream {}: {e}", config.stream))),
            }
        };
        let applied = {
            let c = Arc::clone(&core);
            crate::blocking::run(move || c.site_applied()).await??
        };
        let (applied_tx, _) = watch::channel(applied);
        let shared = Arc::new(Shared {
            core,
            js,
            stream,
            config,
            subject_root,
            applied: applied_tx,
            subjects: Mutex::new(HashMap::new()),
            outcomes: Mutex::new(BTreeMap::new()),
            last_seen: Default::default(),
            jobs: std::sync::OnceLock::new(),
        });
        let site = Site {
            shared: Arc::clone(&shared),
            runtime: tokio::runtime::Handle::current(),
        };
        let info = shared
            .stream
            .get_info()
            .await
            .map_err(|e| unavailable(format!("stream info: {e}")))?;
        if info.state.messages > 0 && applied + 1 < info.state.first_sequence {
            return Err(unavailable(format!(
                "this store applied the site's log up to {applied}, but the stream now starts at \
                 {} (purged below a snapshot): move the data directory away, and the server \
                 rejoins from the newest snapshot",
                info.state.first_sequence
            )));
        }
        let last = site.last_sequence().await?;
        tokio::spawn(apply_loop(Arc::clone(&shared)));
        site.wait_applied(last, Instant::now() + Duration::from_secs(3600))
            .await?;
        Ok((site, Joined { caught_up_to: last }))
    }

    /// The last sequence applied to this server's store.
    pub fn applied(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// Messages in the stream this server has not applied yet (as of the last look at the
    /// stream's end; refreshed by [`Site::refresh_lag`]).
    pub fn lag(&self) -> u64 {
        self.shared
            .last_seen
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(self.applied())
    }

    /// Looks at the stream's end again; returns the lag.
    pub async fn refresh_lag(&self) -> Result<u64> {
        self.last_sequence().await?;
        Ok(self.lag())
    }

    async fn last_sequence(&self) -> Result<u64> {
        let info = self
            .shared
            .stream
            .get_info()
            .await
            .map_err(|e| unavailable(format!("stream info: {e}")))?;
        let last = info.state.last_sequence;
        self.shared
            .last_seen
            .fetch_max(last, std::sync::atomic::Ordering::Relaxed);
        Ok(last)
    }

    /// Waits until this server has applied everything the stream holds now.
    async fn catch_up_by(&self, deadline: Instant) -> Result<()> {
        let last = self.last_sequence().await?;
        self.wait_applied(last, deadline).await
    }

    async fn wait_applied(&self, seq: u64, deadline: Instant) -> Result<()> {
        let mut rx = self.shared.applied.subscribe();
        let outcome = tokio::time::timeout_at(deadline.into(), rx.wait_for(|a| *a >= seq)).await;
        match outcome.map(|r| r.is_ok()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(unavailable("this server stopped applying the log")),
            Err(_) => Err(unavailable(format!(
                "this server has not applied sequence {seq} in time"
            ))),
        }
    }

    /// The subject of a command: its owner prefix's, the site's (node-wide changes), or
    /// the one for batches that span owners.
    /// The subject a command is appended on, and whether its append expects that subject's
    /// last sequence. A command on one identifier goes to one of 256 subjects of its owner
    /// (by a hash of the identifier), so that writes of different identifiers of one
    /// enterprise rarely conflict while two writes of one identifier always do; other
    /// commands of one owner (batches, its account) share the owner's subject.
    fn subject(&self, command: &Command) -> (String, bool) {
        let root = &self.shared.subject_root;
        match (
            &command.op,
            command.owner(&self.shared.core),
            command.identifier(),
        ) {
            (Op::AdminCredential { .. }, _, _) => (format!("{root}.s"), true),
            (_, Some(owner), Some(id)) => {
                use sha2::Digest;
                let bucket = sha2::Sha256::digest(id.as_str().as_bytes())[0];
                (format!("{root}.i.{owner}.{bucket:02x}"), true)
            }
            (_, Some(owner), None) => (format!("{root}.o.{owner}"), true),
            (_, None, _) => (format!("{root}.m"), false),
        }
    }

    /// Appends `command` and waits until it is applied here; see the module documentation.
    pub async fn submit_async(&self, command: Command) -> Result<Applied> {
        let payload = Bytes::from(command.encode());
        if payload.len() > self.shared.config.max_command_bytes {
            return Err(Error::new(
                ErrorKind::ResourceExhausted,
                format!(
                    "the write is {} bytes; a site takes at most {}",
                    payload.len(),
                    self.shared.config.max_command_bytes
                ),
            ));
        }
        let (subject, checked) = self.subject(&command);
        // A client's request id names the write in the log (per caller, so one client cannot
        // collide with another's): its retry through any server is a duplicate, answered
        // with the first outcome.
        let message_id = match &command.request {
            Some(r) => {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(format!("{:?}\0{r}", command.caller));
                hex::encode(&digest[..16])
            }
            None => format!("{:032x}", rand::random::<u128>()),
        };
        let deadline = Instant::now() + self.shared.config.write_deadline;
        let mut confirmed = false;
        let mut backoff = Duration::from_millis(20);
        loop {
            // Refused here only once this server has applied everything in the stream. A
            // request with an id goes to the log unchecked: it may be a repeat, which only
            // the log recognises (and answers with the first outcome); applying decides.
            let check = if command.request.is_some() {
                Ok(())
            } else {
                let (core, c) = (Arc::clone(&self.shared.core), command.clone());
                crate::blocking::run(move || core.check(&c)).await?
            };
            if let Err(e) = check {
                if confirmed {
                    return Err(e);
                }
                self.catch_up_by(deadline).await?;
                confirmed = true;
                continue;
            }
            let mut publish = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(&message_id);
            if checked {
                let expected = self
                    .shared
                    .subjects
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&subject)
                    .copied()
                    .unwrap_or(0);
                publish = publish.expected_last_subject_sequence(expected);
            }
            let ack = match self.shared.js.send_publish(subject.clone(), publish).await {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            };
            match ack {
                Ok(ack) => {
                    self.wait_applied(ack.sequence, deadline).await?;
                    let outcome = self
                        .shared
                        .outcomes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&ack.sequence)
                        .cloned();
                    return outcome.unwrap_or_else(|| {
                        Err(unavailable(format!(
                            "the outcome of sequence {} is no longer known here: read the \
                             identifier to see it",
                            ack.sequence
                        )))
                    });
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    // Another server wrote this owner's subject: catch up and check again.
                    let last = match self
                        .shared
                        .stream
                        .get_last_raw_message_by_subject(&subject)
                        .await
                    {
                        Ok(m) => m.sequence,
                        Err(e) => return Err(unavailable(format!("reading {subject}: {e}"))),
                    };
                    self.wait_applied(last, deadline).await?;
                    self.shared
                        .subjects
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(subject.clone())
                        .and_modify(|s| *s = (*s).max(last))
                        .or_insert(last);
                    confirmed = false;
                }
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    return Err(Error::new(
                        ErrorKind::ResourceExhausted,
                        "the write exceeds the site's message limit",
                    ));
                }
                Err(e) => {
                    // No quorum, no stream leader yet, or a lost connection: try again (the
                    // message id makes a repeated append a duplicate, never a second write).
                    if Instant::now() + backoff >= deadline {
                        return Err(unavailable(e));
                    }
                    tracing::debug!(error = %e, "site append failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Makes sure the site has an admin credential: the first server to append one wins
    /// (it alone holds the token, which it writes to `token_file`); the others apply it.
    /// Returns true when this server created it.
    pub async fn bootstrap_admin(&self, token_file: &std::path::Path) -> Result<bool> {
        let core = Arc::clone(&self.shared.core);
        if crate::blocking::run(move || core.has_admin_credential()).await?? {
            return Ok(false);
        }
        let minted = auth::mint(Subject::Admin, auth::now());
        let command = Command {
            request: None,
            credential: None,
            caller: Caller::Admin,
            at: auth::now(),
            op: Op::AdminCredential {
                credential: minted.credential.clone(),
            },
        };
        match self.submit_async(command).await {
            Ok(_) => {
                crate::secrets::write_secret_file(token_file, &minted.token).map_err(|e| {
                    Error::internal(format!("writing {}: {e}", token_file.display()))
                })?;
                Ok(true)
            }
            Err(e) if e.kind == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl SharedLog for Site {
    fn submit(&self, command: Command) -> Result<Applied> {
        // Called by the core on a blocking thread, never on an async worker.
        self.runtime.block_on(self.submit_async(command))
    }

    fn position(&self) -> (u64, u64) {
        (self.applied(), self.lag())
    }

    fn catch_up(&self) -> Result<()> {
        let deadline = Instant::now() + self.shared.config.write_deadline;
        self.runtime.block_on(self.catch_up_by(deadline))
    }
}

/// How long the apply loop waits for the next message before it checks whether the stream
/// holds more than it applied (a stalled reader).
const STALL: Duration = Duration::from_secs(1);

/// Work for the apply thread.
enum Job {
    /// Apply the message at this sequence; where its outcome goes.
    Apply(u64, Box<Result<Command>>, oneshot::Sender<Result<Applied>>),
    /// Back the store up into this directory between two messages; the sequence it holds.
    Snapshot(std::path::PathBuf, oneshot::Sender<Result<u64>>),
}

/// Reads the stream from the first sequence this store has not applied, in order, and
/// applies each message on one dedicated thread (never the blocking pool, where writers
/// wait for exactly this). Re-reads after a broken subscription.
async fn apply_loop(shared: Arc<Shared>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(64);
    let _ = shared.jobs.set(tx.clone());
    let core = Arc::clone(&shared.core);
    let spawned = std::thread::Builder::new()
        .name("site-apply".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                match job {
                    Job::Apply(seq, command, reply) => {
                        let outcome = match *command {
                            Ok(c) => core.apply(c, Some(seq)),
                            Err(e) => core.apply_nothing(seq).and(Err(e)),
                        };
                        let _ = reply.send(outcome);
                    }
                    Job::Snapshot(dir, reply) => {
                        // Nothing is applied meanwhile: the backup holds exactly `seq`.
                        let taken = core
                            .store()
                            .backup(&dir.join("db"))
                            .map_err(|e| Error::internal(format!("snapshot: {e}")))
                            .and_then(|_| core.site_applied());
                        let _ = reply.send(taken);
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the site's apply thread: {e}");
        return;
    }
    loop {
        let from = *shared.applied.borrow() + 1;
        let consumer = shared
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                },
                // Pull requests of 2 s, so the server's idle heartbeat comes every second and
                // a reader cut off by a lost NATS server is replaced within about 2 s (the
                // client's default is 30 s and 15 s).
                max_expires: Duration::from_secs(2),
                ..Default::default()
            })
            .await;
        let mut messages = match consumer {
            Ok(c) => match c.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("site log: subscribing: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!("site log: creating a reader from {from}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // A reader whose NATS server died can stall without an error: when nothing arrives
        // for two STALL periods in a row while the stream holds more, it is replaced.
        let mut stalled = 0;
        loop {
            let m = match tokio::time::timeout(STALL, messages.next()).await {
                Ok(Some(Ok(m))) => {
                    stalled = 0;
                    m
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!("site log: reading: {e}");
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    let end = match shared.stream.get_info().await {
                        Ok(info) => info.state.last_sequence,
                        Err(_) => continue,
                    };
                    if end <= *shared.applied.borrow() {
                        stalled = 0;
                        continue;
                    }
                    stalled += 1;
                    if stalled >= 2 {
                        tracing::warn!(
                            applied = *shared.applied.borrow(),
                            end,
                            "site log: the reader stalled; replacing it"
                        );
                        break;
                    }
                    continue;
                }
            };
            let Ok(info) = m.info() else {
                tracing::warn!("site log: a message without its sequence");
                break;
            };
            let seq = info.stream_sequence;
            let applied = *shared.applied.borrow();
            if seq <= applied {
                continue;
            }
            if seq != applied + 1 {
                // The stream no longer holds what this store needs next (purged below a
                // snapshot): this server cannot apply on and must be restored.
                tracing::error!(
                    applied,
                    next = seq,
                    "site log: sequences {}..{} are gone from the stream; this server stops \
                     applying",
                    applied + 1,
                    seq - 1
                );
                return;
            }
            let subject = m.subject.to_string();
            let command = Command::decode(&m.payload);
            let (reply, outcome) = oneshot::channel();
            if tx.send(Job::Apply(seq, Box::new(command), reply)).is_err() {
                tracing::error!("site log: the apply thread is gone");
                return;
            }
            let outcome = match outcome.await {
                Ok(o) => o,
                Err(_) => {
                    tracing::error!("site log: the apply thread stopped");
                    return;
                }
            };
            if let Err(e) = &outcome {
                if e.kind == ErrorKind::Internal {
                    // A store failure: the position was not recorded; stop rather than skip.
                    tracing::error!(seq, "site log: applying failed: {}", e.message);
                    if shared.core.site_applied().ok() != Some(seq) {
                        return;
                    }
                }
            }
            {
                let mut subjects = shared.subjects.lock().unwrap_or_else(|e| e.into_inner());
                // Bounded: a subject forgotten here costs its next append one conflict, after
                // which the stream tells its last sequence again.
                if subjects.len() >= MAX_KNOWN_SUBJECTS && !subjects.contains_key(&subject) {
                    subjects.clear();
                }
                subjects.insert(subject, seq);
            }
            {
                let mut kept = shared.outcomes.lock().unwrap_or_else(|e| e.into_inner());
                kept.insert(seq, outcome);
                while kept.len() > MAX_KEPT_OUTCOMES {
                    kept.pop_first();
                }
            }
            shared.applied.send_replace(seq);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The object-store bucket of a stream's snapshots.
fn bucket_name(stream: &str) -> String {
    format!("{stream}_SNAPSHOTS")
}

/// Objects of the snapshot at `seq`: `snapshot-<seq>/<path>`, then `snapshot-<seq>.manifest`
/// (JSON: the sequence and the paths), written last: a snapshot without a manifest is
/// incomplete and never used.
fn snapshot_prefix(seq: u64) -> String {
    format!("snapshot-{seq:020}")
}

/// The sequence of the snapshot an object belongs to (its name's `snapshot-<seq>` start).
fn snapshot_of(name: &str) -> Option<u64> {
    name.strip_prefix("snapshot-")?.get(..20)?.parse().ok()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Manifest {
    seq: u64,
    files: Vec<String>,
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn bucket(
    js: &jetstream::Context,
    config: &SiteConfig,
) -> Result<jetstream::object_store::ObjectStore> {
    let name = bucket_name(&config.stream);
    if let Ok(b) = js.get_object_store(&name).await {
        return Ok(b);
    }
    js.create_object_store(jetstream::object_store::Config {
        bucket: name.clone(),
        num_replicas: config.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| unavailable(format!("snapshot bucket {name}: {e}")))
}

/// The snapshot sequences whose manifest the bucket lists, and every object name.
async fn listing(bucket: &jetstream::object_store::ObjectStore) -> Result<(Vec<u64>, Vec<String>)> {
    let mut names = Vec::new();
    let mut list = bucket
        .list()
        .await
        .map_err(|e| unavailable(format!("listing snapshots: {e}")))?;
    while let Some(info) = list.next().await {
        match info {
            Ok(i) if !i.deleted => names.push(i.name),
            Ok(_) => {}
            Err(e) => return Err(unavailable(format!("listing snapshots: {e}"))),
        }
    }
    let mut manifests: Vec<u64> = names
        .iter()
        .filter(|n| n.ends_with(".manifest"))
        .filter_map(|n| snapshot_of(n))
        .collect();
    manifests.sort_unstable();
    Ok((manifests, names))
}

/// Uploads the snapshot of `seq` from `dir` (`files`, relative to it), its manifest last.
async fn upload(
    bucket: &jetstream::object_store::ObjectStore,
    dir: &std::path::Path,
    seq: u64,
    files: Vec<String>,
) -> Result<()> {
    let prefix = snapshot_prefix(seq);
    for f in &files {
        let mut file = tokio::fs::File::open(dir.join(f))
            .await
            .map_err(|e| Error::internal(format!("{f}: {e}")))?;
        let meta = jetstream::object_store::ObjectMetadata {
            name: format!("{prefix}/{f}"),
            chunk_size: Some(1 << 20),
            ..Default::default()
        };
        bucket
            .put(meta, &mut file)
            .await
            .map_err(|e| unavailable(format!("uploading {f}: {e}")))?;
    }
    let manifest = serde_json::to_vec(&Manifest { seq, files }).map_err(Error::internal)?;
    bucket
        .put(
            format!("{prefix}.manifest").as_str(),
            &mut manifest.as_slice(),
        )
        .await
        .map_err(|e| unavailable(format!("uploading the manifest: {e}")))?;
    Ok(())
}

/// Seeds a new site with a store built elsewhere (by an offline import): `backup_dir` holds
/// a backup of that store (`db/…`), uploaded as the site's first snapshot, at sequence 0.
/// Every server that starts on an empty data directory restores it and applies the log
/// after it. Refused when the site's stream holds a message or the site has a snapshot.
pub async fn seed(config: &SiteConfig, backup_dir: &std::path::Path) -> Result<u64> {
    let client = async_nats::ConnectOptions::new()
        .name("idnode site seed")
        .connection_timeout(Duration::from_secs(2))
        .connect(config.servers.as_slice())
        .await
        .map_err(|e| unavailable(format!("connecting to {:?}: {e}", config.servers)))?;
    let js = jetstream::new(client);
    if let Ok(s) = js.get_stream(&config.stream).await {
        let info = s
            .get_info()
            .await
            .map_err(|e| unavailable(format!("stream info: {e}")))?;
        if info.state.last_sequence > 0 {
            return Err(Error::invalid(format!(
                "site stream {} already holds {} messages: only a new site is seeded",
                config.stream, info.state.last_sequence
            )));
        }
    }
    let bucket = bucket(&js, config).await?;
    if let Some(seq) = listing(&bucket).await?.0.last() {
        return Err(Error::invalid(format!(
            "the site already has a snapshot (sequence {seq}): only a new site is seeded"
        )));
    }
    let files = {
        let d = backup_dir.to_owned();
        crate::blocking::run(move || files_under(&d).map_err(|e| Error::internal(e.to_string())))
            .await??
    };
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(backup_dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    upload(&bucket, backup_dir, 0, files).await?;
    Ok(bytes)
}

impl Site {
    /// Takes a snapshot: the store backed up between two messages (it holds exactly the
    /// sequence applied then), uploaded to the site's object store with its manifest last,
    /// snapshots older than the previous one deleted, and the stream purged below the
    /// previous one's sequence. Returns the new snapshot's sequence.
    pub async fn snapshot(&self) -> Result<u64> {
        let dir = self.shared.config.snapshot_dir.clone();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::internal(format!("{}: {e}", dir.display())))?;
        let jobs = self
            .shared
            .jobs
            .get()
            .ok_or_else(|| unavailable("not applying yet"))?
            .clone();
        let (reply, taken) = oneshot::channel();
        let sent = dir.clone();
        crate::blocking::run(move || jobs.send(Job::Snapshot(sent, reply)).map_err(|_| ()))
            .await?
            .map_err(|_| unavailable("the apply thread is gone"))?;
        let seq = taken
            .await
            .map_err(|_| unavailable("the apply thread is gone"))??;
        let bucket = bucket(&self.shared.js, &self.shared.config).await?;
        let files = {
            let d = dir.clone();
            crate::blocking::run(move || {
                files_under(&d).map_err(|e| Error::internal(e.to_string()))
            })
            .await??
        };
        upload(&bucket, &dir, seq, files).await?;
        // The newest two snapshots are kept; older objects go. The stream is purged below
        // the older of the two: a server that listed the snapshots just before this one
        // and is restoring the previous can still replay after it.
        let (manifests, names) = listing(&bucket).await?;
        let Some(&keep_from) = manifests
            .len()
            .checked_sub(2)
            .and_then(|i| manifests.get(i))
        else {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(seq);
        };
        for n in &names {
            if snapshot_of(n).is_some_and(|s| s < keep_from) {
                let _ = bucket.delete(n).await;
            }
        }
        if keep_from > 0 {
            self.shared
                .stream
                .purge()
                .sequence(keep_from)
                .await
                .map_err(|e| unavailable(format!("purging below {keep_from}: {e}")))?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(seq)
    }
}

/// For a server joining with an empty data directory: when the stream's start was purged,
/// downloads the newest snapshot into `dest` (a backup directory: `dest/db/...`) and
/// returns its sequence; `None` when the stream still starts at its first message (the
/// server replays it whole).
pub async fn download_newest_snapshot(
    config: &SiteConfig,
    dest: &std::path::Path,
) -> Result<Option<u64>> {
    let client = async_nats::ConnectOptions::new()
        .name(&config.server_name)
        .connection_timeout(Duration::from_secs(2))
        .connect(config.servers.as_slice())
        .await
        .map_err(|e| unavailable(format!("connecting to {:?}: {e}", config.servers)))?;
    let js = jetstream::new(client);
    let first = match js.get_stream(&config.stream).await {
        Ok(s) => {
            s.get_info()
                .await
                .map_err(|e| unavailable(format!("stream info: {e}")))?
                .state
                .first_sequence
        }
        Err(_) => 0, // a new site, or one seeded with a snapshot only
    };
    // The newest snapshot, whenever there is one: a site seeded from an offline-built store
    // starts from it, and replaying a snapshot is cheaper than replaying the log before it.
    let bucket = match js.get_object_store(bucket_name(&config.stream)).await {
        Ok(b) => b,
        Err(_) if first <= 1 => return Ok(None),
        Err(e) => return Err(unavailable(format!("snapshot bucket: {e}"))),
    };
    let Some(seq) = listing(&bucket).await?.0.last().copied() else {
        if first <= 1 {
            return Ok(None);
        }
        return Err(unavailable(format!(
            "the stream starts at {first} but the site has no snapshot to start from"
        )));
    };
    let prefix = snapshot_prefix(seq);
    let mut manifest = Vec::new();
    let mut object = bucket
        .get(format!("{prefix}.manifest"))
        .await
        .map_err(|e| unavailable(format!("reading the manifest: {e}")))?;
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut manifest)
        .await
        .map_err(|e| unavailable(format!("reading the manifest: {e}")))?;
    let manifest: Manifest = serde_json::from_slice(&manifest).map_err(Error::internal)?;
    for f in &manifest.files {
        let path = dest.join(f);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::internal(format!("{}: {e}", parent.display())))?;
        }
        let mut object = bucket
            .get(format!("{prefix}/{f}"))
            .await
            .map_err(|e| unavailable(format!("downloading {f}: {e}")))?;
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Error::internal(format!("{}: {e}", path.display())))?;
        tokio::io::copy(&mut object, &mut file)
            .await
            .map_err(|e| unavailable(format!("downloading {f}: {e}")))?;
    }
    Ok(Some(manifest.seq))
}
