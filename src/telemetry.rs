//! Metrics in the Prometheus text format, one registry per node (no global recorder, so
//! several nodes in one process keep their figures apart).
//!
//! Adapters record each request (`interface`, `op`, `outcome`, latency); figures kept
//! elsewhere (registered counts, forwarding counters, store properties, admission refusals)
//! are handed to [`Telemetry::render`] at scrape time as [`Figures`]. The node's wiring owns
//! the registry; this module knows nothing of the core.

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Latency buckets, seconds: 50 µs to 5 s.
const BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// Registered handles of one (interface, op, outcome): looked up once, then reused.
type Handles = (metrics::Counter, metrics::Histogram);

pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: std::sync::RwLock<
        std::collections::HashMap<(&'static str, &'static str, &'static str), Handles>,
    >,
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
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("static buckets are valid")
            .build_recorder();
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
        }
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
        let (counter, histogram) = match found {
            Some(h) => h,
            None => {
                let labels = [
                    ("interface", interface.to_owned()),
                    ("op", op.to_owned()),
                    ("outcome", outcome.to_owned()),
                ];
                let h = (
                    self.recorder
                        .register_counter(&key("idnode_requests_total", &labels), &META),
                    self.recorder
                        .register_histogram(&key("idnode_request_seconds", &labels[..2]), &META),
                );
                self.requests
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(k, h.clone());
                h
            }
        };
        counter.increment(1);
        histogram.record(elapsed.as_secs_f64());
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
        self.handle.run_upkeep();
        self.handle.render()
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
