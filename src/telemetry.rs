//! Metrics in the Prometheus text format, one registry per node (no global recorder, so
//! several nodes in one process keep their figures apart).
//!
//! Adapters record each request (`interface`, `op`, `outcome`, latency); figures kept
//! elsewhere (registered counts, forwarding counters, RocksDB properties) are read at
//! scrape time by [`Telemetry::render`].

use std::time::Duration;

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::auth::Caller;
use crate::resolver::{Core, Interface};

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

    /// The Prometheus text of everything this node measures.
    pub fn render(&self, core: &Core) -> String {
        match core.counts(&Caller::Admin) {
            Ok(counts) => {
                self.gauge(
                    "idnode_registered_identifiers",
                    &[],
                    counts.node_total as f64,
                );
                for (prefix, n) in counts.prefixes {
                    self.gauge(
                        "idnode_registered_identifiers_by_prefix",
                        &[("prefix", prefix)],
                        n as f64,
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: counts unavailable"),
        }
        for via in Interface::ALL {
            let (local, forwarded) = core.resolutions().get(via);
            let i = via.name().to_owned();
            self.counter(
                "idnode_resolutions_total",
                &[("interface", i.clone()), ("route", "local".into())],
                local,
            );
            self.counter(
                "idnode_resolutions_total",
                &[("interface", i), ("route", "forwarded".into())],
                forwarded,
            );
        }
        if let Some(remote) = core.remote() {
            let s = remote.stats();
            self.counter("idnode_forward_cache_hits_total", &[], s.cache_hits);
            self.counter(
                "idnode_forward_cache_misses_total",
                &[],
                s.forwarded.saturating_sub(s.cache_hits),
            );
            self.counter("idnode_forward_stale_answers_total", &[], s.stale_answers);
            self.counter("idnode_upstream_calls_total", &[], s.upstream_calls);
            self.counter("idnode_remote_calls_total", &[], s.remote_calls);
            self.counter("idnode_forward_failures_total", &[], s.failures);
        }
        for (name, value) in core.store().properties() {
            let (family, property) = match name.strip_prefix("record-cache-") {
                Some(p) => ("idnode_record_cache", p),
                None => ("idnode_rocksdb", name),
            };
            self.gauge(family, &[("property", property.to_owned())], value as f64);
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}
