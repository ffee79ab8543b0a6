//! Prometheus registry of the node: the actors' metrics, HTTP latency, readiness, the process's
//! CPU and memory, and what the adapters count (Redis bus, Kafka producer, in-process ingest).
//!
//! The adapters keep their counts in atomics; [`ObservedValue`] reads them at each scrape, so
//! nothing has to copy them into Prometheus instruments in between.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ingest::IngestMetrics;
use prometheus::core::{Collector, Desc, Describer};
use prometheus::proto::MetricFamily;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct NodeMetrics {
    pub registry: Registry,
    pub actors: actors::metrics::Metrics,
    pub http_request_duration: HistogramVec,
    /// `parley_node_ready`: 1 while `/readyz` answers 200; set before each scrape.
    pub node_ready: IntGauge,
    /// `parley_ws_upgrades_refused_total{reason}`: WebSocket upgrades answered with an error.
    pub upgrades_refused: IntCounterVec,
}

impl NodeMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let actors = actors::metrics::Metrics::new(&registry);
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "parley_http_request_duration_seconds",
                "HTTP request latency by route and status",
            )
            .buckets(exponential_buckets(0.000_1, 2.0, 16).expect("valid buckets")),
            &["route", "status"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_request_duration.clone()))
            .expect("unique metric");
        let node_ready = IntGauge::new(
            "parley_node_ready",
            "1 while the node is ready (GET /readyz answers 200), else 0",
        )
        .expect("valid metric");
        registry
            .register(Box::new(node_ready.clone()))
            .expect("unique metric");
        let upgrades_refused = IntCounterVec::new(
            Opts::new(
                "parley_ws_upgrades_refused_total",
                "WebSocket upgrade requests refused, by reason (bad_request, unauthorized, \
                 not_ready, user_connection_cap, node_connection_cap, not_found)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(upgrades_refused.clone()))
            .expect("unique metric");
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        let metrics = Self {
            registry,
            actors,
            http_request_duration,
            node_ready,
            upgrades_refused,
        };
        metrics.observe_allocator();
        metrics
    }

    /// jemalloc's own figures (ADR 0004) as `parley_allocator_*_bytes`: what the program holds
    /// (`allocated`) against what the allocator keeps in memory for it (`resident`), so that a
    /// growing RSS can be told apart as live data, or pages the allocator keeps.
    fn observe_allocator(&self) {
        use tikv_jemalloc_ctl::{epoch, stats};
        type Read = fn() -> tikv_jemalloc_ctl::Result<usize>;
        let gauges: [(&str, &str, Read); 5] = [
            (
                "parley_allocator_allocated_bytes",
                "bytes the node holds in live allocations (jemalloc stats.allocated)",
                stats::allocated::read,
            ),
            (
                "parley_allocator_active_bytes",
                "bytes in the allocator's pages that hold live allocations (stats.active)",
                stats::active::read,
            ),
            (
                "parley_allocator_resident_bytes",
                "bytes of physical memory the allocator holds, its metadata and pages it keeps \
                 for reuse included (stats.resident)",
                stats::resident::read,
            ),
            (
                "parley_allocator_retained_bytes",
                "virtual memory the allocator unmapped from use but kept mapped (stats.retained)",
                stats::retained::read,
            ),
            (
                "parley_allocator_metadata_bytes",
                "bytes of the allocator's own bookkeeping (stats.metadata)",
                stats::metadata::read,
            ),
        ];
        for (name, help, read) in gauges {
            self.observe(ObservedValue::gauge(name, help, move || {
                // jemalloc caches its statistics until the epoch advances.
                let _ = epoch::advance();
                read().map_or(0, |bytes| bytes as u64)
            }));
        }
    }

    /// Exposes the in-process ingest pipeline's metrics (`parley_ingest_*`).
    pub fn with_ingest(self, ingest: Arc<IngestMetrics>) -> Self {
        ingest.register(&self.registry).expect("unique metric");
        self
    }

    /// Exposes the Redis bus's state as `parley_redis_bus_*`.
    pub fn with_redis_bus(self, bus: Arc<persistence::redis::RedisBus>) -> Self {
        let reconnects_of = Arc::clone(&bus);
        self.observe(ObservedValue::counter(
            "parley_redis_bus_reconnects_total",
            "times the Redis pub/sub connection was re-established after a loss",
            move || reconnects_of.counters().reconnects.load(Ordering::Relaxed),
        ));
        self.observe(ObservedValue::gauge(
            "parley_redis_bus_connected",
            "1 while the Redis pub/sub connection is up with every channel subscribed",
            move || u64::from(bus.is_connected()),
        ));
        self
    }

    /// Exposes the Kafka producer's replacements as `parley_kafka_producer_restarts_total`.
    pub fn with_kafka(self, log: persistence::kafka::KafkaLog) -> Self {
        self.observe(ObservedValue::counter(
            "parley_kafka_producer_restarts_total",
            "Kafka producers replaced after a timed-out or fatal append",
            move || log.producer_restarts(),
        ));
        self
    }

    /// Exposes the embedded log writer's commits as `parley_log_commits_total` and
    /// `parley_log_delayed_commits_total` (with `parley_log_appended_events_total`, the size of
    /// its groups: `storage.log_group_commit_delay_us`), and its fdatasyncs' time as
    /// `parley_log_fsync_duration_seconds`.
    pub fn with_embedded_log(self, log: Arc<persistence::EmbeddedLog>) -> Self {
        type Read = fn(&persistence::embedded::LogStats) -> u64;
        let counters: [(&str, &str, Read); 3] = [
            (
                "parley_log_commits_total",
                "durable (fsync'd) commits of the embedded log's writer",
                |stats| stats.commits,
            ),
            (
                "parley_log_delayed_commits_total",
                "commits the embedded log's writer waited storage.log_group_commit_delay_us before",
                |stats| stats.delayed_commits,
            ),
            (
                "parley_log_appended_events_total",
                "events the embedded log's writer made durable",
                |stats| stats.appended_events,
            ),
        ];
        for (name, help, read) in counters {
            let log = Arc::clone(&log);
            self.observe(ObservedValue::counter(name, help, move || {
                read(&log.stats())
            }));
        }
        let fsyncs = Histogram::with_opts(
            HistogramOpts::new(
                "parley_log_fsync_duration_seconds",
                "time of each fdatasync of the embedded log's writer (the disk's latency)",
            )
            .buckets(exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric");
        self.registry
            .register(Box::new(fsyncs.clone()))
            .expect("unique metric");
        log.observe_fsyncs(Arc::new(move |took| fsyncs.observe(took.as_secs_f64())));
        self
    }

    /// Exposes the audit records whose append to the audit topic failed as
    /// `parley_audit_records_lost_total`.
    pub fn with_kafka_audit(self, audit: Arc<persistence::kafka::KafkaAuditLog>) -> Self {
        self.observe(ObservedValue::counter(
            "parley_audit_records_lost_total",
            "audit records whose append to the Kafka audit topic failed (never stored)",
            move || audit.records_lost(),
        ));
        self
    }

    fn observe(&self, value: ObservedValue) {
        self.registry
            .register(Box::new(value))
            .expect("unique metric");
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A counter or gauge whose value is read from elsewhere (an adapter's atomic) at each scrape.
struct ObservedValue {
    opts: Opts,
    counter: bool,
    desc: Desc,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl ObservedValue {
    fn counter(name: &str, help: &str, read: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self::new(name, help, true, Box::new(read))
    }

    fn gauge(name: &str, help: &str, read: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self::new(name, help, false, Box::new(read))
    }

    fn new(
        name: &str,
        help: &str,
        counter: bool,
        read: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Self {
        let opts = Opts::new(name, help);
        let desc = opts.describe().expect("valid metric");
        Self {
            opts,
            counter,
            desc,
            read,
        }
    }
}

impl Collector for ObservedValue {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let value = (self.read)();
        if self.counter {
            let counter = IntCounter::with_opts(self.opts.clone()).expect("valid metric");
            counter.inc_by(value);
            counter.collect()
        } else {
            let gauge = IntGauge::with_opts(self.opts.clone()).expect("valid metric");
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn observed_values_are_read_at_each_scrape_with_their_type() {
        let metrics = NodeMetrics::new();
        let source = Arc::new(AtomicU64::new(2));
        let read = Arc::clone(&source);
        metrics.observe(ObservedValue::counter(
            "parley_test_things_total",
            "things",
            move || read.load(Ordering::Relaxed),
        ));
        let text = metrics.render();
        assert!(
            text.contains("# TYPE parley_test_things_total counter"),
            "{text}"
        );
        assert!(text.contains("parley_test_things_total 2"), "{text}");
        source.store(5, Ordering::Relaxed);
        assert!(metrics.render().contains("parley_test_things_total 5"));
        assert!(text.contains("parley_node_ready 0"), "{text}");
        assert!(text.contains(r#"parley_errors_total{code="unavailable"} 0"#));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(
            text.contains("# TYPE parley_allocator_resident_bytes gauge"),
            "{text}"
        );
    }

    #[test]
    fn in_process_ingest_counters_are_counters() {
        let metrics = NodeMetrics::new().with_ingest(Arc::new(IngestMetrics::default()));
        let text = metrics.render();
        assert!(
            text.contains("# TYPE parley_ingest_batches_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE parley_ingest_retries_total counter"),
            "{text}"
        );
    }
}
