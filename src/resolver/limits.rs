//! In-memory limiters: failed authentications per client, requests per enterprise.
//!
//! Both are bounded maps; they reset on restart (they protect availability, not data).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this many failed authentications from one client within the window, its
/// authentication attempts are refused until the window ends.
pub const MAX_AUTH_FAILURES: u32 = 10;
pub const AUTH_WINDOW: Duration = Duration::from_secs(60);
/// Bound on tracked clients/enterprises (the maps are cleared when full).
const MAX_TRACKED: usize = 100_000;

#[derive(Default)]
pub struct AuthFailures {
    clients: Mutex<HashMap<String, (Instant, u32)>>,
}

impl AuthFailures {
    /// Seconds to wait when `client` is locked out.
    pub fn locked(&self, client: &str) -> Option<u64> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let (start, n) = clients.get(client)?;
        let left = AUTH_WINDOW.checked_sub(start.elapsed())?;
        (*n >= MAX_AUTH_FAILURES).then(|| left.as_secs().max(1))
    }

    pub fn failed(&self, client: &str) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_TRACKED {
            clients.retain(|_, (start, _)| start.elapsed() < AUTH_WINDOW);
            if clients.len() >= MAX_TRACKED {
                clients.clear();
            }
        }
        let entry = clients
            .entry(client.to_owned())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= AUTH_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// Token buckets per enterprise prefix.
#[derive(Default)]
pub struct RequestRates {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RequestRates {
    /// Takes one token from `key`'s bucket of `rate` per second; false when empty.
    pub fn admit(&self, key: &str, rate: u32) -> bool {
        let rate = rate.max(1) as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.clear();
        }
        let now = Instant::now();
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_after_repeated_failures() {
        let f = AuthFailures::default();
        for _ in 0..MAX_AUTH_FAILURES - 1 {
            f.failed("10.0.0.1");
        }
        assert_eq!(f.locked("10.0.0.1"), None);
        f.failed("10.0.0.1");
        assert!(f.locked("10.0.0.1").is_some());
        assert_eq!(f.locked("10.0.0.2"), None, "per client");
    }

    #[test]
    fn bucket_admits_the_rate() {
        let r = RequestRates::default();
        let admitted = (0..20).filter(|_| r.admit("88.101.5", 5)).count();
        assert_eq!(admitted, 5, "a burst of one second");
        assert!(r.admit("88.101.6", 5), "per enterprise");
    }
}
