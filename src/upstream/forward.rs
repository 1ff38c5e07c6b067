//! The forwarder: resolve an identifier this node does not serve.
//!
//! 1. A fresh cached answer (positive or negative) is returned at once.
//! 2. Otherwise one upstream call per identifier is in flight at a time (single-flight):
//!    the referral cache (longest-prefix match) or the upstream says which node serves the
//!    prefix; that node is asked with a hop count, so it never forwards again.
//! 3. Answers are cached for the smallest TTL of their values (capped), negative answers
//!    briefly. When the upstream or the remote node fails, a stale answer is served for a
//!    bounded time (RFC 8767), else the error names what failed.
//!
//! Caches are bounded (moka). Local identifiers never come here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use tokio::sync::OnceCell;

use super::{Locator, Peers};
use crate::error::{Error, ErrorKind, Result};
use crate::identifier::{Identifier, Prefix};
use crate::record::Value;
use crate::resolver::{Remote, RemoteStats};
use crate::toplevel::Referral;

/// Forwarding policy.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Bound on one call to the upstream or to a remote node.
    pub timeout: Duration,
    /// Extra attempts after a failed call (not after an authoritative answer).
    pub retries: u32,
    /// Wait before the first retry; doubles each time.
    pub backoff: Duration,
    /// Cap on how long an answer is cached, whatever its values' TTLs.
    pub max_ttl: Duration,
    /// How long "not found" is cached.
    pub negative_ttl: Duration,
    /// How long past its TTL an answer may still be served when the upstream fails.
    pub serve_stale: Duration,
    /// While serving stale, how long before asking upstream again.
    pub stale_refresh: Duration,
    /// Most answers cached.
    pub answer_capacity: u64,
    /// Most referrals cached.
    pub referral_capacity: u64,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(50),
            max_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(30),
            serve_stale: Duration::from_secs(600),
            stale_refresh: Duration::from_secs(5),
            answer_capacity: 100_000,
            referral_capacity: 10_000,
        }
    }
}

/// A cached answer about one identifier.
#[derive(Debug)]
pub struct Answer {
    /// The public values, or why it does not exist.
    pub values: std::result::Result<Arc<Vec<Value>>, String>,
    fresh_until: Instant,
    stale_until: Instant,
}

impl Answer {
    fn result(&self) -> Result<Arc<Vec<Value>>> {
        self.values.clone().map_err(Error::not_found)
    }
}

struct CachedReferral {
    referral: Referral,
    expires: Instant,
}

/// Expire cache entries at the instant their value carries.
struct ByValue;

impl Expiry<String, Arc<Answer>> for ByValue {
    fn expire_after_create(&self, _: &String, v: &Arc<Answer>, now: Instant) -> Option<Duration> {
        Some(v.stale_until.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<Answer>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.stale_until.saturating_duration_since(now))
    }
}

impl Expiry<String, Arc<CachedReferral>> for ByValue {
    fn expire_after_create(
        &self,
        _: &String,
        v: &Arc<CachedReferral>,
        now: Instant,
    ) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Arc<CachedReferral>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(now))
    }
}

/// Counters of the forwarder (monotonic since start).
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Resolutions answered by forwarding (from cache or not).
    pub forwarded: AtomicU64,
    /// Answers served from a fresh cache entry.
    pub cache_hits: AtomicU64,
    /// Stale answers served because a refresh failed.
    pub stale_answers: AtomicU64,
    /// Calls to the upstream (top-level node), retries included.
    pub upstream_calls: AtomicU64,
    /// Calls to remote secondary nodes, retries included.
    pub remote_calls: AtomicU64,
    /// Resolutions that failed with UNAVAILABLE.
    pub failures: AtomicU64,
}

impl ForwardStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

type Flight = Arc<OnceCell<Result<Arc<Answer>>>>;

pub struct Forwarder {
    locator: Arc<dyn Locator>,
    peers: Arc<dyn Peers>,
    config: ForwardConfig,
    answers: Cache<String, Arc<Answer>>,
    referrals: Cache<String, Arc<CachedReferral>>,
    flights: Mutex<HashMap<String, Flight>>,
    stats: ForwardStats,
}

/// What a client is told when forwarding fails: the kind and which prefix's node could not
/// be reached. The detail (peer URLs, remote status text, attempts) goes to the log only.
fn withhold(id: &Identifier, e: Error, public: String) -> Error {
    if e.kind != ErrorKind::Unavailable {
        return e;
    }
    tracing::warn!(identifier = %id, detail = %e.message, "forwarding failed");
    Error::new(ErrorKind::Unavailable, public)
}

/// One waiter's share of a single-flight entry. The entry leaves the table when its round
/// has finished or when its last waiter goes away, cancelled or not: a request whose
/// client hung up must not leave an entry behind (the table would grow without bound).
struct FlightGuard<'a> {
    table: &'a Mutex<HashMap<String, Flight>>,
    key: &'a str,
    flight: Option<Flight>,
}

impl<'a> FlightGuard<'a> {
    fn join(table: &'a Mutex<HashMap<String, Flight>>, key: &'a str) -> FlightGuard<'a> {
        let mut flights = table.lock().unwrap_or_else(|e| e.into_inner());
        let flight = Arc::clone(flights.entry(key.to_owned()).or_default());
        FlightGuard {
            table,
            key,
            flight: Some(flight),
        }
    }

    fn cell(&self) -> &Flight {
        self.flight.as_ref().expect("present until drop")
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut flights = self.table.lock().unwrap_or_else(|e| e.into_inner());
        // Every clone is made and dropped under the lock, so the count is exact here:
        // 2 = the table's and this waiter's.
        let mine = self.flight.take().expect("dropped once");
        if flights.get(self.key).is_some_and(|f| Arc::ptr_eq(f, &mine))
            && (mine.initialized() || Arc::strong_count(&mine) == 2)
        {
            flights.remove(self.key);
        }
        drop(mine);
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Forwarder {
    /// A forwarder that asks `locator` where prefixes are served and `peers` for records.
    pub fn new(
        locator: Arc<dyn Locator>,
        peers: Arc<dyn Peers>,
        config: ForwardConfig,
    ) -> Forwarder {
        Forwarder {
            answers: Cache::builder()
                .max_capacity(config.answer_capacity)
                .expire_after(ByValue)
                .build(),
            referrals: Cache::builder()
                .max_capacity(config.referral_capacity)
                .expire_after(ByValue)
                .build(),
            locator,
            peers,
            config,
            flights: Mutex::new(HashMap::new()),
            stats: ForwardStats::default(),
        }
    }

    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// Identifiers with an upstream round in progress (the single-flight table).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The public values of a remote identifier.
    ///
    /// Errors: `NotFound` (authoritative, from the upstream or the serving node);
    /// `Unavailable` saying which hop failed (the top-level node, or the node serving the
    /// prefix) when nothing usable is cached; the detail is logged, never returned.
    pub async fn resolve(&self, id: &Identifier) -> Result<Arc<Vec<Value>>> {
        bump(&self.stats.forwarded);
        let cached = self.answers.get(id.as_str()).await;
        if let Some(a) = &cached {
            if Instant::now() < a.fresh_until {
                bump(&self.stats.cache_hits);
                return a.result();
            }
        }
        let flight = FlightGuard::join(&self.flights, id.as_str());
        let outcome = flight
            .cell()
            .get_or_init(|| self.refresh(id, cached))
            .await
            .clone();
        drop(flight);
        match outcome {
            Ok(answer) => answer.result(),
            Err(e) => {
                bump(&self.stats.failures);
                Err(e)
            }
        }
    }

    /// One upstream round for `id`; falls back to `stale` when it fails.
    async fn refresh(&self, id: &Identifier, stale: Option<Arc<Answer>>) -> Result<Arc<Answer>> {
        match self.fetch(id).await {
            Ok(answer) => {
                let answer = Arc::new(answer);
                self.answers
                    .insert(id.to_string(), Arc::clone(&answer))
                    .await;
                Ok(answer)
            }
            Err(e) => {
                let now = Instant::now();
                match stale {
                    Some(s) if now < s.stale_until => {
                        bump(&self.stats.stale_answers);
                        tracing::warn!(identifier = %id, error = %e, "serving a stale answer");
                        // Do not ask again on every request while the upstream is down.
                        let again = Arc::new(Answer {
                            values: s.values.clone(),
                            fresh_until: (now + self.config.stale_refresh).min(s.stale_until),
                            stale_until: s.stale_until,
                        });
                        self.answers
                            .insert(id.to_string(), Arc::clone(&again))
                            .await;
                        Ok(again)
                    }
                    _ => Err(e),
                }
            }
        }
    }

    fn answer(
        &self,
        values: std::result::Result<Arc<Vec<Value>>, String>,
        ttl: Duration,
    ) -> Answer {
        let now = Instant::now();
        let fresh_until = now + ttl.min(self.config.max_ttl);
        Answer {
            values,
            fresh_until,
            stale_until: fresh_until + self.config.serve_stale,
        }
    }

    async fn fetch(&self, id: &Identifier) -> Result<Answer> {
        let referral = match self.referral(&id.prefix()).await {
            Ok(r) => r,
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Ok(self.answer(Err(e.message), self.config.negative_ttl));
            }
            Err(e) => {
                let public = format!(
                    "the top-level node cannot be asked now where {} is served",
                    id.prefix()
                );
                return Err(withhold(id, e, public));
            }
        };
        let unreachable = || {
            format!(
                "the node serving {} cannot be reached now",
                referral.node_prefix
            )
        };
        let urls = referral.grpc_urls();
        if urls.is_empty() {
            let detail = format!(
                "node {} serving {} has not announced a gRPC endpoint",
                referral.node_id, referral.node_prefix
            );
            let e = Error::new(ErrorKind::Unavailable, detail);
            return Err(withhold(id, e, unreachable()));
        }
        // A site's servers in turn: an UNAVAILABLE one hands the request to the next.
        let mut next = 0;
        let asked = self
            .with_retries(&self.stats.remote_calls, urls.len(), || {
                let url = urls[next % urls.len()].clone();
                next += 1;
                async move { self.peers.resolve(&url, id).await }
            })
            .await
            .map_err(|e| withhold(id, e, unreachable()));
        match asked {
            Ok(values) => {
                let ttl = values.iter().map(|v| v.ttl).min().unwrap_or(0);
                Ok(self.answer(Ok(Arc::new(values)), Duration::from_secs(ttl as u64)))
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                Ok(self.answer(Err(e.message), self.config.negative_ttl))
            }
            Err(e) => Err(e),
        }
    }

    /// Longest-prefix match in the referral cache, else ask the upstream.
    async fn referral(&self, prefix: &Prefix) -> Result<Referral> {
        for p in prefix.ancestors_or_self() {
            if let Some(r) = self.referrals.get(p).await {
                if Instant::now() < r.expires {
                    return Ok(r.referral.clone());
                }
            }
        }
        let referral = self
            .with_retries(&self.stats.upstream_calls, 1, || {
                self.locator.locate(prefix)
            })
            .await?;
        if referral.ttl > 0 {
            let expires = Instant::now() + Duration::from_secs(referral.ttl as u64);
            self.referrals
                .insert(
                    referral.node_prefix.to_string(),
                    Arc::new(CachedReferral {
                        referral: referral.clone(),
                        expires,
                    }),
                )
                .await;
        }
        Ok(referral)
    }

    /// Runs `call` with a timeout, retrying failures (not authoritative answers): each
    /// round makes `round` calls (one per server of a site) without waiting, and rounds
    /// back off exponentially; at most `retries + 1` rounds.
    async fn with_retries<T, F, Fut>(
        &self,
        counter: &AtomicU64,
        round: usize,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut backoff = self.config.backoff;
        let mut attempt = 0;
        let round = round.max(1);
        let attempts = (self.config.retries as usize + 1) * round;
        loop {
            bump(counter);
            let outcome = match tokio::time::timeout(self.config.timeout, call()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("no answer within {:?}", self.config.timeout),
                )),
            };
            match outcome {
                Err(e) if e.kind == ErrorKind::Unavailable && attempt + 1 < attempts => {
                    attempt += 1;
                    if attempt % round == 0 {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
                Err(e) if e.kind == ErrorKind::Unavailable => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!("{} (after {} attempts)", e.message, attempt + 1),
                    ))
                }
                other => return other,
            }
        }
    }
}

#[async_trait::async_trait]
impl Remote for Forwarder {
    async fn resolve(&self, id: &Identifier) -> Result<Arc<Vec<Value>>> {
        Forwarder::resolve(self, id).await
    }

    async fn delegated(&self, prefix: &Prefix) -> Result<bool> {
        match self.referral(prefix).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn stats(&self) -> RemoteStats {
        let s = &self.stats;
        let get = ForwardStats::get;
        RemoteStats {
            forwarded: get(&s.forwarded),
            cache_hits: get(&s.cache_hits),
            stale_answers: get(&s.stale_answers),
            upstream_calls: get(&s.upstream_calls),
            remote_calls: get(&s.remote_calls),
            failures: get(&s.failures),
        }
    }

    fn describe(&self) -> String {
        self.locator.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifier::Prefix;
    use crate::toplevel::Referral;

    /// A top-level node that never answers, and peers never asked.
    struct Silent;

    #[async_trait::async_trait]
    impl Locator for Silent {
        async fn locate(&self, _: &Prefix) -> Result<Referral> {
            std::future::pending().await
        }
        fn describe(&self) -> String {
            "a silent top-level node".into()
        }
    }

    #[async_trait::async_trait]
    impl Peers for Silent {
        async fn resolve(&self, _: &str, _: &Identifier) -> Result<Vec<Value>> {
            unreachable!("no referral, no peer")
        }
    }

    /// Waits (bounded) until `counter` reaches `n`.
    async fn until(counter: &AtomicU64, n: u64) {
        for _ in 0..5000 {
            if ForwardStats::get(counter) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("counter stayed at {}", ForwardStats::get(counter));
    }

    #[tokio::test]
    async fn cancelled_waiters_leave_no_flight_behind() {
        let config = ForwardConfig {
            timeout: Duration::from_secs(60),
            ..ForwardConfig::default()
        };
        let forwarder = Arc::new(Forwarder::new(Arc::new(Silent), Arc::new(Silent), config));
        let id = Identifier::parse("88.102.3/AXLE-1").unwrap();

        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (f, id) = (Arc::clone(&forwarder), id.clone());
                tokio::spawn(async move { f.resolve(&id).await })
            })
            .collect();
        until(&forwarder.stats().upstream_calls, 1).await;
        assert_eq!(
            forwarder.in_flight(),
            1,
            "the three waiters share one flight"
        );
        for w in &waiters {
            w.abort();
        }
        for w in waiters {
            assert!(w.await.unwrap_err().is_cancelled());
        }
        assert_eq!(
            forwarder.in_flight(),
            0,
            "cancelled waiters left their flight"
        );

        // The next resolution asks the upstream afresh.
        let f = Arc::clone(&forwarder);
        let next = tokio::spawn(async move { f.resolve(&id).await });
        until(&forwarder.stats().upstream_calls, 2).await;
        assert_eq!(forwarder.in_flight(), 1);
        next.abort();
        assert!(next.await.unwrap_err().is_cancelled());
        assert_eq!(forwarder.in_flight(), 0);
    }

    /// A site of three servers of which the first two are down.
    struct Site {
        asked: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Locator for Site {
        async fn locate(&self, _: &Prefix) -> Result<Referral> {
            let server = |name: &str| crate::toplevel::ServerStatus {
                name: name.into(),
                endpoints: crate::toplevel::Endpoints {
                    grpc: format!("http://{name}"),
                    ..Default::default()
                },
                live: true,
                last_heartbeat: 1,
            };
            Ok(Referral {
                node_prefix: Prefix::parse("88.102").unwrap(),
                node_id: "site".into(),
                node_name: "a site".into(),
                servers: vec![server("a"), server("b"), server("c")],
                ttl: 60,
            })
        }
        fn describe(&self) -> String {
            "a top-level node".into()
        }
    }

    #[async_trait::async_trait]
    impl Peers for Site {
        async fn resolve(&self, url: &str, _: &Identifier) -> Result<Vec<Value>> {
            self.asked.lock().unwrap().push(url.to_owned());
            match url {
                "http://c" => Ok(Vec::new()),
                _ => Err(Error::new(ErrorKind::Unavailable, format!("{url} is down"))),
            }
        }
    }

    #[tokio::test]
    async fn an_unavailable_server_of_a_site_hands_the_request_to_the_next() {
        let site = Arc::new(Site {
            asked: Default::default(),
        });
        let config = ForwardConfig {
            // Rounds back off by an hour: the answer must come within the first round.
            backoff: Duration::from_secs(3600),
            ..ForwardConfig::default()
        };
        let forwarder = Forwarder::new(Arc::clone(&site) as _, Arc::clone(&site) as _, config);
        let id = Identifier::parse("88.102.3/AXLE-1").unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), forwarder.resolve(&id))
            .await
            .expect("no backoff between the servers of one round")
            .unwrap();
        assert!(answer.is_empty());
        assert_eq!(
            *site.asked.lock().unwrap(),
            ["http://a", "http://b", "http://c"]
        );
    }
}
