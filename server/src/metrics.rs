//! Prometheus registry of the node: the actors' metrics, HTTP latency, and the in-process
//! ingest pipeline's counters.

use std::sync::Arc;

use persistence::IngestMetrics;
use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct NodeMetrics {
    pub registry: Registry,
    pub actors: actors::metrics::Metrics,
    pub http_request_duration: HistogramVec,
    ingest: Option<(Arc<IngestMetrics>, IngestGauges)>,
    redis_bus: Option<(Arc<persistence::redis::RedisBus>, IntGauge, IntGauge)>,
    kafka: Option<(persistence::kafka::KafkaLog, IntGauge)>,
}

#[derive(Clone)]
struct IngestGauges {
    batches: IntGauge,
    events_consumed: IntGauge,
    events_applied: IntGauge,
    acks_emitted: IntGauge,
    retries: IntGauge,
}

impl NodeMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let actors = actors::metrics::Metrics::new(&registry);
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "parley_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(exponential_buckets(0.000_1, 2.0, 16).expect("valid buckets")),
            &["route", "status"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_request_duration.clone()))
            .expect("unique metric");
        Self {
            registry,
            actors,
            http_request_duration,
            ingest: None,
            redis_bus: None,
            kafka: None,
        }
    }

    /// Exposes the in-process ingest pipeline's counters as `parley_ingest_*`.
    pub fn with_ingest(mut self, ingest: Arc<IngestMetrics>) -> Self {
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::with_opts(Opts::new(name, help)).expect("valid metric");
            self.registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
            gauge
        };
        let gauges = IngestGauges {
            batches: gauge(
                "parley_ingest_batches_total",
                "ingest batches written and committed",
            ),
            events_consumed: gauge(
                "parley_ingest_events_consumed_total",
                "log records consumed by ingest",
            ),
            events_applied: gauge(
                "parley_ingest_events_applied_total",
                "store writes applied by ingest",
            ),
            acks_emitted: gauge(
                "parley_ingest_acks_emitted_total",
                "message.stored acknowledgments written by ingest",
            ),
            retries: gauge(
                "parley_ingest_retries_total",
                "ingest steps retried after a failure",
            ),
        };
        self.ingest = Some((ingest, gauges));
        self
    }

    /// Exposes the Redis bus's state as `parley_redis_bus_*`.
    pub fn with_redis_bus(mut self, bus: Arc<persistence::redis::RedisBus>) -> Self {
        let reconnects = IntGauge::with_opts(Opts::new(
            "parley_redis_bus_reconnects_total",
            "times the Redis pub/sub connection was re-established",
        ))
        .expect("valid metric");
        let connected = IntGauge::with_opts(Opts::new(
            "parley_redis_bus_connected",
            "1 while the Redis pub/sub connection is up with every channel subscribed",
        ))
        .expect("valid metric");
        for gauge in [&reconnects, &connected] {
            self.registry
                .register(Box::new(gauge.clone()))
                .expect("unique metric");
        }
        self.redis_bus = Some((bus, reconnects, connected));
        self
    }

    /// Exposes the Kafka producer's replacements as `parley_kafka_producer_restarts_total`.
    pub fn with_kafka(mut self, log: persistence::kafka::KafkaLog) -> Self {
        let restarts = IntGauge::with_opts(Opts::new(
            "parley_kafka_producer_restarts_total",
            "Kafka producers replaced after a timed-out or fatal append",
        ))
        .expect("valid metric");
        self.registry
            .register(Box::new(restarts.clone()))
            .expect("unique metric");
        self.kafka = Some((log, restarts));
        self
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some((log, restarts)) = &self.kafka {
            restarts.set(log.producer_restarts() as i64);
        }
        if let Some((ingest, gauges)) = &self.ingest {
            let snapshot = ingest.snapshot();
            gauges.batches.set(snapshot.batches as i64);
            gauges.events_consumed.set(snapshot.events_consumed as i64);
            gauges.events_applied.set(snapshot.events_applied as i64);
            gauges.acks_emitted.set(snapshot.acks_emitted as i64);
            gauges.retries.set(snapshot.retries as i64);
        }
        if let Some((bus, reconnects, connected)) = &self.redis_bus {
            let counters = bus.counters();
            reconnects.set(
                counters
                    .reconnects
                    .load(std::sync::atomic::Ordering::Relaxed) as i64,
            );
            connected.set(i64::from(bus.is_connected()));
        }
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
