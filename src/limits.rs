//! In-memory limiters, all bounded; they reset on restart (they protect availability, not
//! data):
//!
//! - [`Rates`]: requests per second per key, each key at its own rate: per client address
//!   (`api::admission`) and per enterprise (its quota). The algorithm and its state are
//!   governor's keyed GCRA; this file only bounds how many keys it holds.
//! - [`AuthFailures`]: the failed-authentication lockout per client.
//! - [`ClientKey`]: what "one client" is for both: an IPv4 address, or an IPv6 /64 (one
//!   subscriber's network: addresses within it cost an attacker nothing).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{HashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

use crate::error::{Error, ErrorKind, Reason, Result};

/// After this many failed authentications from one client within the window, its
/// authentication attempts are refused until the window ends.
pub const MAX_AUTH_FAILURES: u32 = 10;
pub const AUTH_WINDOW: Duration = Duration::from_secs(60);
/// Clients with recent failed authentications tracked at once.
pub const MAX_FAILING_CLIENTS: usize = 100_000;
/// Enterprises whose request rates are tracked at once (those with a rate quota that
/// made a request within the last second).
pub const MAX_ENTERPRISE_RATES: usize = 100_000;

/// One client, as the limiters count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
    /// The address is not known (in-process callers): all of them are one client.
    Unknown,
}

impl ClientKey {
    pub fn of(client: Option<IpAddr>) -> ClientKey {
        match client {
            None => ClientKey::Unknown,
            Some(IpAddr::V4(v4)) => ClientKey::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&v6.octets()[..8]);
                    ClientKey::V6(net)
                }
            },
        }
    }
}

/// Cells per second of the one GCRA quota behind [`Rates`]: a request of a key limited to
/// `r` per second costs `CELLS_PER_SECOND / r` cells (rounded down), so every key gets its
/// own rate and a burst of one second's worth.
const CELLS_PER_SECOND: u32 = 1_000_000_000;
/// Lock shards of the keyed state.
const SHARDS: usize = 16;
/// Least time between two sweeps of keys whose buckets are full again.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Requests per second per key (governor's keyed GCRA), holding at most `capacity` keys.
///
/// A key idle for a second has a full bucket again, like a key never seen; such keys are
/// swept when the table is full (at most once a second, one shard lock at a time). Past
/// `capacity` active keys, requests of keys not in the table are refused: the keys already
/// counted keep their state and their service.
pub struct Rates<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    limiter: RateLimiter<K, Shards<K>, C, NoOpMiddleware<C::Instant>>,
    /// The same state as `limiter`'s, to see which keys it holds.
    shards: Shards<K>,
    per_shard: usize,
    start: C::Instant,
    /// When the next sweep may run, in nanoseconds since `start`.
    next_sweep: AtomicU64,
}

impl<K: Hash + Eq + Clone> Rates<K> {
    pub fn new(capacity: usize) -> Rates<K> {
        Rates::with_clock(capacity, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> Rates<K, C> {
    /// A table of `capacity` keys (at least one per shard) on `clock`.
    pub fn with_clock(capacity: usize, clock: C) -> Rates<K, C> {
        let shards = Shards::new();
        let quota = Quota::per_second(NonZeroU32::new(CELLS_PER_SECOND).expect("non-zero"));
        let start = clock.now();
        Rates {
            limiter: RateLimiter::new(quota, shards.clone(), clock),
            shards,
            per_shard: capacity.div_ceil(SHARDS).max(1),
            start,
            next_sweep: AtomicU64::new(0),
        }
    }

    /// Takes one request of `key`, limited to `rate` per second: false when over it, or
    /// when the table is full and `key` is not in it.
    pub fn admit(&self, key: &K, rate: NonZeroU32) -> bool {
        if !self.shards.room_for(key, self.per_shard) {
            self.sweep();
            if !self.shards.room_for(key, self.per_shard) {
                return false;
            }
        }
        let cost = NonZeroU32::new(CELLS_PER_SECOND / rate.get()).unwrap_or(NonZeroU32::MIN);
        matches!(self.limiter.check_key_n(key, cost), Ok(Ok(_)))
    }

    /// Keys in the table.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops the keys whose buckets are full again, unless a sweep ran within the last
    /// [`SWEEP_EVERY`].
    fn sweep(&self) {
        let now = self
            .limiter
            .clock()
            .now()
            .duration_since(self.start)
            .as_u64();
        let due = self.next_sweep.load(Ordering::Relaxed);
        let next = now.saturating_add(SWEEP_EVERY.as_nanos() as u64);
        if now < due
            || self
                .next_sweep
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.limiter.retain_recent();
    }
}

/// Governor's keyed state store in lock shards, shared between the limiter and [`Rates`].
struct Shards<K: Hash + Eq + Clone> {
    maps: Arc<[HashMapStateStore<K>]>,
    hasher: std::hash::RandomState,
}

impl<K: Hash + Eq + Clone> Clone for Shards<K> {
    fn clone(&self) -> Self {
        Shards {
            maps: Arc::clone(&self.maps),
            hasher: self.hasher.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone> Shards<K> {
    fn new() -> Shards<K> {
        Shards {
            maps: (0..SHARDS).map(|_| HashMapStateStore::default()).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> &HashMapStateStore<K> {
        &self.maps[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// True if `key` has state here, or its shard has room for it.
    fn room_for(&self, key: &K, per_shard: usize) -> bool {
        let map = self.shard(key).lock();
        map.len() < per_shard || map.contains_key(key)
    }
}

impl<K: Hash + Eq + Clone> StateStore for Shards<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.shard(key).measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for Shards<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        for map in self.maps.iter() {
            map.retain_recent(drop_below);
        }
    }

    fn shrink_to_fit(&self) {
        for map in self.maps.iter() {
            ShrinkableKeyedStateStore::shrink_to_fit(map);
        }
    }

    fn len(&self) -> usize {
        self.maps.iter().map(|m| m.lock().len()).sum()
    }

    fn is_empty(&self) -> bool {
        self.maps.iter().all(|m| m.lock().is_empty())
    }
}

/// Why authentication attempts of a client are refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// This client failed [`MAX_AUTH_FAILURES`] times within the window.
    Client { retry_secs: u64 },
    /// The table of failing clients is full of locked-out ones; clients not in it are
    /// refused until the oldest lockout ends (rather than forgetting a lockout).
    Full { retry_secs: u64 },
}

impl Lockout {
    pub fn message(self) -> String {
        match self {
            Lockout::Client { retry_secs } => {
                format!("too many failed authentications from this client; retry in {retry_secs} s")
            }
            Lockout::Full { retry_secs } => {
                format!("too many clients are failing authentication; retry in {retry_secs} s")
            }
        }
    }
}

/// Failed authentications per client: [`MAX_AUTH_FAILURES`] within [`AUTH_WINDOW`] of the
/// first lock the client out for the rest of the window.
///
/// Bounded at `capacity` clients without forgetting a lockout: when the table is full, a
/// new failing client takes the place of the oldest client that is not locked out (losing
/// fewer than [`MAX_AUTH_FAILURES`] failures); when every client in it is locked out, new
/// clients are refused until the first window ends. Every operation is O(log n).
pub struct AuthFailures {
    table: Mutex<Failures>,
    capacity: usize,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures::with_capacity(MAX_FAILING_CLIENTS)
    }
}

#[derive(Default)]
struct Failures {
    clients: HashMap<ClientKey, Failing>,
    /// The clients below the limit, oldest window first (the eviction order).
    counting: BTreeMap<(Instant, u64), ClientKey>,
    /// The clients locked out, oldest window first.
    locked: BTreeMap<(Instant, u64), ClientKey>,
    /// Tells apart windows that start at the same instant.
    next_seq: u64,
}

struct Failing {
    /// When the window started (the first failure) and its place in the indexes.
    since: (Instant, u64),
    failures: u32,
}

impl Failures {
    /// Forgets every client whose window has ended.
    fn expire(&mut self, now: Instant) {
        for index in [&mut self.counting, &mut self.locked] {
            while let Some(entry) = index.first_entry() {
                if now.duration_since(entry.key().0) < AUTH_WINDOW {
                    break;
                }
                self.clients.remove(&entry.remove());
            }
        }
    }

    /// Seconds until the window that started at `since` ends (at least 1).
    fn left(since: Instant, now: Instant) -> u64 {
        AUTH_WINDOW
            .saturating_sub(now.duration_since(since))
            .as_secs()
            .max(1)
    }
}

impl AuthFailures {
    pub fn with_capacity(capacity: usize) -> AuthFailures {
        AuthFailures {
            table: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `client` may try to authenticate now.
    pub fn locked(&self, client: ClientKey) -> Option<Lockout> {
        self.locked_at(client, Instant::now())
    }

    /// Counts a failed authentication of `client`.
    pub fn failed(&self, client: ClientKey) {
        self.failed_at(client, Instant::now())
    }

    /// Runs `authenticate` for `client` under the lockout.
    ///
    /// Errors: `ResourceExhausted` with reason 406 while the client is locked out (or the
    /// table is full of lockouts and `client` is not in it), without calling
    /// `authenticate`; its own error otherwise, an `Unauthenticated` one counted and
    /// logged (with the address, never the token).
    pub fn authenticate<T>(
        &self,
        client: Option<IpAddr>,
        authenticate: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let key = ClientKey::of(client);
        if let Some(lockout) = self.locked(key) {
            return Err(Error::limit(Reason::AuthenticationLimit, lockout.message()));
        }
        let result = authenticate();
        if let Err(e) = &result {
            if e.kind == ErrorKind::Unauthenticated {
                self.failed(key);
                match client {
                    Some(ip) => tracing::warn!(client = %ip, "authentication failed"),
                    None => tracing::warn!("authentication failed (client address unknown)"),
                }
            }
        }
        result
    }

    /// Clients tracked.
    pub fn len(&self) -> usize {
        self.table().clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn locked_at(&self, client: ClientKey, now: Instant) -> Option<Lockout> {
        let mut guard = self.table();
        let t = &mut *guard;
        t.expire(now);
        match t.clients.get(&client) {
            Some(c) if c.failures >= MAX_AUTH_FAILURES => Some(Lockout::Client {
                retry_secs: Failures::left(c.since.0, now),
            }),
            Some(_) => None,
            None if t.clients.len() >= self.capacity && t.counting.is_empty() => {
                let (oldest, _) = t.locked.first_key_value()?.0;
                Some(Lockout::Full {
                    retry_secs: Failures::left(*oldest, now),
                })
            }
            None => None,
        }
    }

    fn failed_at(&self, client: ClientKey, now: Instant) {
        let mut guard = self.table();
        let t = &mut *guard;
        t.expire(now);
        if let Some(c) = t.clients.get_mut(&client) {
            c.failures = c.failures.saturating_add(1);
            if c.failures == MAX_AUTH_FAILURES {
                let since = c.since;
                t.counting.remove(&since);
                t.locked.insert(since, client);
            }
            return;
        }
        if t.clients.len() >= self.capacity {
            // Make room by forgetting the oldest client below the limit; never a lockout.
            let Some((_, oldest)) = t.counting.pop_first() else {
                return; // full of lockouts: `locked` refuses this client
            };
            t.clients.remove(&oldest);
        }
        let since = (now, t.next_seq);
        t.next_seq += 1;
        t.counting.insert(since, client);
        t.clients.insert(client, Failing { since, failures: 1 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn v4(i: u32) -> ClientKey {
        ClientKey::of(Some(IpAddr::from(i.to_be_bytes())))
    }

    fn rate(r: u32) -> NonZeroU32 {
        NonZeroU32::new(r).unwrap()
    }

    #[test]
    fn client_keys() {
        let check = |a: &str, b: &str, same: bool| {
            let key = |s: &str| ClientKey::of(Some(s.parse().unwrap()));
            assert_eq!(key(a) == key(b), same, "{a} {b}");
        };
        check("192.0.2.1", "192.0.2.1", true);
        check("192.0.2.1", "192.0.2.2", false);
        check("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true); // one /64
        check("2001:db8:1:2::1", "2001:db8:1:3::1", false);
        check("::ffff:192.0.2.1", "192.0.2.1", true);
        assert_eq!(ClientKey::of(None), ClientKey::Unknown);
    }

    #[test]
    fn each_key_gets_its_rate_with_a_burst_of_one_second() {
        let clock = FakeRelativeClock::default();
        let rates = Rates::<&str, _>::with_clock(1000, clock.clone());
        let admitted = |key, r, n| (0..n).filter(|_| rates.admit(&key, rate(r))).count();
        assert_eq!(admitted("a", 100, 150), 100);
        assert_eq!(admitted("b", 5, 20), 5, "another key, another rate");
        assert_eq!(admitted("a", 100, 1), 0);
        clock.advance(Duration::from_millis(10));
        assert_eq!(admitted("a", 100, 5), 1, "one more per 1/100 s");
        clock.advance(Duration::from_secs(1));
        assert_eq!(admitted("a", 100, 150), 100, "a full bucket after a second");
        assert_eq!(admitted("c", 1_000_000_000, 10), 10);
    }

    #[test]
    fn a_full_rate_table_keeps_its_keys_and_refuses_newcomers_until_a_sweep() {
        let clock = FakeRelativeClock::default();
        let rates = Rates::<ClientKey, _>::with_clock(1024, clock.clone());
        let limited = v4(1);
        assert_eq!(
            (0..20).filter(|_| rates.admit(&limited, rate(10))).count(),
            10
        );
        // A spray of 200k addresses, each at its limit.
        let mut admitted = 0;
        for i in 2..200_002 {
            admitted += rates.admit(&v4(i), rate(1)) as usize;
        }
        assert!(rates.len() <= 1024 + SHARDS, "{} keys", rates.len());
        assert!(
            (900..=1024).contains(&admitted),
            "{admitted} newcomers admitted"
        );
        assert!(
            !rates.admit(&limited, rate(10)),
            "the limited key kept its state"
        );
        // A second later every bucket is full again: the sweep makes room.
        clock.advance(Duration::from_millis(1100));
        assert!(rates.admit(&v4(300_000), rate(1)));
        assert!(rates.admit(&limited, rate(10)));
        assert!(rates.len() < 64, "{} keys after the sweep", rates.len());
    }

    #[test]
    fn lockout_after_repeated_failures_for_the_rest_of_the_window() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        for _ in 0..MAX_AUTH_FAILURES - 1 {
            f.failed_at(v4(1), t0);
        }
        assert_eq!(f.locked_at(v4(1), t0), None);
        f.failed_at(v4(1), t0 + Duration::from_secs(10));
        assert_eq!(
            f.locked_at(v4(1), t0 + Duration::from_secs(10)),
            Some(Lockout::Client { retry_secs: 50 })
        );
        assert_eq!(f.locked_at(v4(2), t0), None, "per client");
        assert_eq!(f.locked_at(v4(1), t0 + AUTH_WINDOW), None, "a minute");
        assert!(f.is_empty());
    }

    #[test]
    fn a_spray_of_200k_source_keys_never_unlocks_a_locked_client() {
        let f = AuthFailures::default();
        let t0 = Instant::now();
        let client = ClientKey::of(Some("2001:db8:aa:1::1".parse().unwrap()));
        for _ in 0..MAX_AUTH_FAILURES {
            f.failed_at(client, t0);
        }
        // 200k other clients fail once each: the oldest of them make room, never the
        // locked client (another address in its /64 is the same client).
        let same = ClientKey::of(Some("2001:db8:aa:1:ffff::2".parse().unwrap()));
        for i in 0..200_000u32 {
            let now = t0 + Duration::from_micros(100 * i as u64);
            f.failed_at(v4(i), now);
        }
        let now = t0 + Duration::from_secs(20);
        assert!(f.len() <= MAX_FAILING_CLIENTS, "{}", f.len());
        assert!(matches!(
            f.locked_at(same, now),
            Some(Lockout::Client { .. })
        ));
        // 200k /64s each fail until locked out: the table fills with lockouts, then new
        // clients are refused rather than any lockout forgotten.
        for i in 0..200_000u64 {
            let net = ClientKey::V6((0x2001_0db8_0000_0000 | i << 16).to_be_bytes());
            for _ in 0..MAX_AUTH_FAILURES {
                f.failed_at(net, now);
            }
        }
        assert_eq!(f.len(), MAX_FAILING_CLIENTS);
        assert!(matches!(
            f.locked_at(client, now),
            Some(Lockout::Client { .. })
        ));
        assert_eq!(
            f.locked_at(v4(u32::MAX), now),
            Some(Lockout::Full { retry_secs: 40 }),
            "the oldest lockout ends in 40 s"
        );
        // When the windows end, everyone may try again.
        let later = now + AUTH_WINDOW;
        assert_eq!(f.locked_at(client, later), None);
        assert_eq!(f.locked_at(v4(u32::MAX), later), None);
        assert!(f.is_empty());
    }
}
