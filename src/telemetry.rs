//! Metrics in the Prometheus text format, one registry per node (no global recorder, so
//! several nodes in one process keep their figures apart).
//!
//! Adapters record each request (`interface`, `op`, `outcome`, latency); figures kept
//! elsewhere (registered counts, forwarding counters, store properties, admission refusals)
//! are handed to [`Telemetry::render`] at scrape time as [`Figures`]. The node's wiring owns
//! the registry; this module knows nothing of the core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Latency buckets, seconds: 50 µs to 5 s.
const BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// One latency histogram (`idnode_request_seconds` of an interface and op): fixed atomic
/// buckets, so recording is a few relaxed adds and its memory never grows with traffic.
/// (The Prometheus exporter's own histograms keep every sample until they are drained,
/// which without a scrape is never.)
#[derive(Default)]
struct Latency {
    /// Per bucket of [`BUCKETS`], then the rest (`+Inf`); not cumulative.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    nanos: AtomicU64,
}

impl Latency {
    fn record(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS.partition_point(|le| *le < secs);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The Prometheus lines of this histogram, labelled `labels` (`k="v",...`).
    fn render(&self, labels: &str, out: &mut String) {
        use std::fmt::Write;
        let mut total = 0;
        for (i, le) in BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".into()])
            .enumerate()
        {
            total += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "idnode_request_seconds_bucket{{{labels},le=\"{le}\"}} {total}"
            );
        }
        let sum = self.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "idnode_request_seconds_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "idnode_request_seconds_count{{{labels}}} {total}");
    }
}

/// Registered handles of one (interface, op, outcome): looked up once, then reused.
type Handles = (metrics::Counter, Arc<Latency>);

/// (interface, op, outcome).
type Labels3 = (&'static str, &'static str, &'static str);
/// (interface, op) and its latency histogram.
type Latencies = Vec<((&'static str, &'static str), Arc<Latency>)>;

pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: std::sync::RwLock<HashMap<Labels3, Handles, foldhash::fast::FixedState>>,
    /// Latency per (interface, op), in the order first seen (bounded like the label sets).
    latencies: std::sync::Mutex<Latencies>,
    /// Resolutions per minute over the last hour, per interface (the console's chart).
    minutes: std::sync::Mutex<Minutes>,
}

/// Minutes a [`Minutes`] ring keeps.
pub const RING_MINUTES: usize = 60;
/// Most series a [`Minutes`] ring keeps (more are ignored).
const MAX_SERIES: usize = 8;

/// Per-minute amounts of a few named series over the last [`RING_MINUTES`] minutes, from
/// cumulative counts sampled now and then: bounded (60 slots per series, at most 8 series)
/// and independent of request traffic (sampling costs a few loads, whoever reads).
#[derive(Debug, Default)]
pub struct Minutes {
    series: Vec<Series>,
}

#[derive(Debug)]
struct Series {
    name: &'static str,
    /// The cumulative count at the last sample.
    last: u64,
    /// `(minute since the epoch, amount)`, slot `minute % 60`.
    slots: [(i64, u64); RING_MINUTES],
}

impl Minutes {
    /// Adds what each cumulative count grew by since its last sample to `minute` (the
    /// first sample of a series only sets its base).
    pub fn sample(&mut self, minute: i64, counts: &[(&'static str, u64)]) {
        for &(name, count) in counts {
            let i = match self.series.iter().position(|s| s.name == name) {
                Some(i) => i,
                None if self.series.len() < MAX_SERIES => {
                    self.series.push(Series {
                        name,
                        last: count,
                        slots: [(0, 0); RING_MINUTES],
                    });
                    continue;
                }
                None => continue,
            };
            let s = &mut self.series[i];
            let grown = count.saturating_sub(s.last);
            s.last = count;
            let slot = &mut s.slots[minute.rem_euclid(RING_MINUTES as i64) as usize];
            if slot.0 != minute {
                *slot = (minute, 0);
            }
            slot.1 += grown;
        }
    }

    /// Each series' amounts for the [`RING_MINUTES`] minutes ending with `minute`, oldest
    /// first (0 for minutes without samples).
    pub fn window(&self, minute: i64) -> Vec<(&'static str, Vec<u64>)> {
        self.series
            .iter()
            .map(|s| {
                let amounts = (minute - RING_MINUTES as i64 + 1..=minute)
                    .map(
                        |m| match s.slots[m.rem_euclid(RING_MINUTES as i64) as usize] {
                            (at, n) if at == m => n,
                            _ => 0,
                        },
                    )
                    .collect();
                (s.name, amounts)
            })
            .collect()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        recorder.describe_counter(
            "idnode_refused_total".into(),
            None,
            "Requests and connections refused by admission limits.".into(),
        );
        recorder.describe_gauge(
            "idnode_site_lag_messages".into(),
            None,
            "Messages of the site's log this server has not applied yet.".into(),
        );
        Telemetry {
            recorder,
            handle,
            requests: Default::default(),
            latencies: Default::default(),
            minutes: Default::default(),
        }
    }

    /// Samples cumulative resolution counts per interface into the per-minute ring.
    pub fn sample_resolutions(&self, minute: i64, counts: &[(&'static str, u64)]) {
        self.minutes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sample(minute, counts);
    }

    /// Resolutions per minute and interface for the hour ending with `minute`, oldest first.
    pub fn resolutions_per_minute(&self, minute: i64) -> Vec<(&'static str, Vec<u64>)> {
        self.minutes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .window(minute)
    }

    /// Counts one request and records its latency. Hot path: the handles of a label set
    /// are registered once and then found with one read-locked map lookup.
    pub fn request(
        &self,
        interface: &'static str,
        op: &'static str,
        outcome: &'static str,
        elapsed: Duration,
    ) {
        let k = (interface, op, outcome);
        let found = self
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&k)
            .cloned();
        let (counter, latency) = match found {
            Some(h) => h,
            None => self.register(k),
        };
        counter.increment(1);
        latency.record(elapsed);
    }

    /// The handles of a label set seen for the first time (label sets are a fixed
    /// vocabulary of static strings, so the map stays small).
    fn register(&self, k: Labels3) -> Handles {
        let (interface, op, outcome) = k;
        let labels = [
            ("interface", interface.to_owned()),
            ("op", op.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        let counter = self
            .recorder
            .register_counter(&key("idnode_requests_total", &labels), &META);
        let latency = {
            let mut all = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
            match all.iter().find(|(io, _)| *io == (interface, op)) {
                Some((_, l)) => Arc::clone(l),
                None => {
                    let l = Arc::new(Latency::default());
                    all.push(((interface, op), Arc::clone(&l)));
                    l
                }
            }
        };
        let h = (counter, latency);
        self.requests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k, h.clone());
        h
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, String)], v: f64) {
        self.recorder
            .register_gauge(&key(name, labels), &META)
            .set(v);
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, String)], v: u64) {
        self.recorder
            .register_counter(&key(name, labels), &META)
            .absolute(v);
    }

    /// The Prometheus text of everything this node measures: the requests recorded here,
    /// and `figures` kept elsewhere, read at scrape time by whoever serves `/metrics`.
    pub fn render(&self, figures: &Figures) -> String {
        if let Some(total) = figures.registered {
            self.gauge("idnode_registered_identifiers", &[], total as f64);
        }
        for (prefix, n) in &figures.registered_by_prefix {
            self.gauge(
                "idnode_registered_identifiers_by_prefix",
                &[("prefix", prefix.clone())],
                *n as f64,
            );
        }
        for (interface, local, forwarded) in &figures.resolutions {
            let i = (*interface).to_owned();
            self.counter(
                "idnode_resolutions_total",
                &[("interface", i.clone()), ("route", "local".into())],
                *local,
            );
            self.counter(
                "idnode_resolutions_total",
                &[("interface", i), ("route", "forwarded".into())],
                *forwarded,
            );
        }
        if let Some(f) = &figures.forwarding {
            self.counter("idnode_forward_cache_hits_total", &[], f.cache_hits);
            self.counter("idnode_forward_cache_misses_total", &[], f.cache_misses);
            self.counter("idnode_forward_stale_answers_total", &[], f.stale_answers);
            self.counter("idnode_upstream_calls_total", &[], f.upstream_calls);
            self.counter("idnode_remote_calls_total", &[], f.remote_calls);
            self.counter("idnode_forward_failures_total", &[], f.failures);
        }
        for (name, value) in &figures.store {
            let (family, property) = match name.strip_prefix("record-cache-") {
                Some(p) => ("idnode_record_cache", p),
                None => ("idnode_rocksdb", *name),
            };
            self.gauge(family, &[("property", property.to_owned())], *value as f64);
        }
        for (limit, n) in &figures.refused {
            self.counter(
                "idnode_refused_total",
                &[("limit", (*limit).to_owned())],
                *n,
            );
        }
        if let Some((applied, lag)) = figures.site {
            self.gauge("idnode_site_applied_sequence", &[], applied as f64);
            self.gauge("idnode_site_lag_messages", &[], lag as f64);
        }
        let mut out = self.handle.render();
        let latencies = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if !latencies.is_empty() {
            out.push_str("# TYPE idnode_request_seconds histogram\n");
            for ((interface, op), l) in latencies.iter() {
                l.render(&format!("interface=\"{interface}\",op=\"{op}\""), &mut out);
            }
        }
        out
    }
}

/// Figures a node keeps outside its metrics registry (counts, forwarding, the store,
/// admission), handed to [`Telemetry::render`] at each scrape.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Registered identifiers on the node (`None`: the counts could not be read).
    pub registered: Option<i64>,
    /// Registered identifiers per counting prefix.
    pub registered_by_prefix: Vec<(String, i64)>,
    /// Resolutions served: (interface, local, forwarded).
    pub resolutions: Vec<(&'static str, u64, u64)>,
    /// Forwarding, when the node forwards.
    pub forwarding: Option<Forwarding>,
    /// Store properties (RocksDB, the record cache).
    pub store: Vec<(&'static str, u64)>,
    /// Requests and connections refused, by limit.
    pub refused: Vec<(&'static str, u64)>,
    /// In a site: (last log sequence applied here, messages not applied yet).
    pub site: Option<(u64, u64)>,
}

/// Forwarding figures since start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forwarding {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub stale_answers: u64,
    pub upstream_calls: u64,
    pub remote_calls: u64,
    pub failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_counted_per_bucket_cumulatively_and_sum_up() {
        let t = Telemetry::new();
        for us in [30, 30, 700, 2_000_000, 9_000_000] {
            t.request("grpc", "resolve", "ok", Duration::from_micros(us));
        }
        t.request("grpc", "resolve", "not_found", Duration::from_micros(80));
        t.request("dns", "query", "ok", Duration::from_micros(10));
        let text = t.render(&Figures::default());
        let line = |needle: &str| -> String {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let b = "idnode_request_seconds_bucket{interface=\"grpc\",op=\"resolve\",le=";
        assert_eq!(line(&format!("{b}\"0.00005\"}}")), "2");
        assert_eq!(line(&format!("{b}\"0.0001\"}}")), "3");
        assert_eq!(line(&format!("{b}\"0.001\"}}")), "4");
        assert_eq!(line(&format!("{b}\"5\"}}")), "5");
        assert_eq!(line(&format!("{b}\"+Inf\"}}")), "6");
        assert_eq!(
            line("idnode_request_seconds_count{interface=\"grpc\",op=\"resolve\"}"),
            "6"
        );
        let sum: f64 = line("idnode_request_seconds_sum{interface=\"grpc\",op=\"resolve\"}")
            .parse()
            .unwrap();
        assert!((sum - 11.00084).abs() < 1e-9, "{sum}");
        assert_eq!(
            line("idnode_request_seconds_count{interface=\"dns\",op=\"query\"}"),
            "1"
        );
        assert_eq!(
            line("idnode_requests_total{interface=\"grpc\",op=\"resolve\",outcome=\"not_found\"}"),
            "1"
        );
        assert_eq!(
            text.matches("# TYPE idnode_request_seconds histogram")
                .count(),
            1
        );
    }

    #[test]
    fn the_ring_keeps_an_hour_per_minute_and_forgets_older_minutes() {
        let mut m = Minutes::default();
        m.sample(100, &[("dns", 50)]); // the base: nothing counted
        m.sample(100, &[("dns", 53)]);
        m.sample(101, &[("dns", 60)]);
        m.sample(101, &[("dns", 61)]);
        let w = m.window(101);
        assert_eq!(w[0].0, "dns");
        assert_eq!(w[0].1.len(), RING_MINUTES);
        assert_eq!(&w[0].1[58..], &[3, 8]);
        // Sixty minutes on, slot 101 % 60 holds minute 161: minute 101 is gone.
        m.sample(161, &[("dns", 62)]);
        let w = m.window(161);
        assert_eq!(w[0].1.iter().sum::<u64>(), 1);
        assert_eq!(w[0].1[59], 1);
        // A counter that went backwards (a restart) adds nothing.
        m.sample(161, &[("dns", 10)]);
        assert_eq!(m.window(161)[0].1[59], 1);
    }
}
