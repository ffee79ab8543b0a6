//! Metrics of the ingest pipeline.
//!
//! The counters are plain atomics ([`IngestMetrics::snapshot`]): `parley-server` exports them
//! for its in-process ingest. The histograms and the lag gauge are Prometheus instruments the
//! pipeline always records into; they are created unregistered, so they only show up where a
//! binary calls [`IngestMetrics::register`] (the `ingest` binary, which also exports the
//! counters that way). Every name is `parley_ingest_*`. [`ProcessMetrics`] are the `ingest`
//! binary's own: its readiness and the process's CPU, memory and file descriptors.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub struct IngestMetrics {
    /// Batches applied to the store and committed.
    pub batches: AtomicU64,
    /// Log records consumed (and committed).
    pub events_consumed: AtomicU64,
    /// Store writes applied.
    pub events_applied: AtomicU64,
    /// `MessageStored` acknowledgments appended to the log.
    pub acks_emitted: AtomicU64,
    /// Failed attempts that were retried (store, log append or commit).
    pub retries: AtomicU64,
    /// Malformed log records set aside (dead-letter topic) and committed past.
    pub dead_letters: AtomicU64,
    /// `parley_ingest_batch_size`: records per committed batch.
    pub batch_size: Histogram,
    /// `parley_ingest_write_seconds`: duration of each `Store::apply` attempt.
    pub write_seconds: Histogram,
    /// `parley_ingest_ack_append_seconds`: duration of each append of stored acknowledgments.
    pub ack_append_seconds: Histogram,
    /// `parley_ingest_message_stored_latency_seconds`: per acknowledged message, from the
    /// event's `at` (the node accepted and appended it) until its `message.stored`
    /// acknowledgment was appended to the log, the MongoDB write before it included.
    pub message_stored_latency_seconds: Histogram,
    /// `parley_ingest_consumer_lag{topic,partition}`: records of each partition of the consumed
    /// topics (assigned to this process or not) past the group's committed position.
    pub consumer_lag: IntGaugeVec,
    /// `parley_ingest_assigned_partitions`: partitions the group assigned to this process, as of
    /// the last lag refresh.
    pub assigned_partitions: IntGauge,
    /// The `(topic, partition)` labels `consumer_lag` currently has values for.
    lag_labels: Mutex<BTreeSet<(String, String)>>,
}

/// A point-in-time copy of [`IngestMetrics`]' counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestMetricsSnapshot {
    pub batches: u64,
    pub events_consumed: u64,
    pub events_applied: u64,
    pub acks_emitted: u64,
    pub retries: u64,
    pub dead_letters: u64,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        let seconds = |name: &str, help: &str| {
            Histogram::with_opts(
                HistogramOpts::new(name, help)
                    // 0.5 ms .. ~8 s
                    .buckets(exponential_buckets(0.000_5, 2.0, 15).expect("valid buckets")),
            )
            .expect("valid metric")
        };
        Self {
            batches: AtomicU64::new(0),
            events_consumed: AtomicU64::new(0),
            events_applied: AtomicU64::new(0),
            acks_emitted: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            batch_size: Histogram::with_opts(
                HistogramOpts::new(
                    "parley_ingest_batch_size",
                    "log records per batch ingest committed",
                )
                // 1 .. 4096
                .buckets(exponential_buckets(1.0, 2.0, 13).expect("valid buckets")),
            )
            .expect("valid metric"),
            write_seconds: seconds(
                "parley_ingest_write_seconds",
                "duration of each store write attempt of a batch",
            ),
            ack_append_seconds: seconds(
                "parley_ingest_ack_append_seconds",
                "duration of each append attempt of a batch's message.stored acknowledgments",
            ),
            message_stored_latency_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "parley_ingest_message_stored_latency_seconds",
                    "from a message's acceptance (its log event time) to its message.stored \
                     acknowledgment appended",
                )
                // 5 ms .. ~82 s
                .buckets(exponential_buckets(0.005, 2.0, 15).expect("valid buckets")),
            )
            .expect("valid metric"),
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "parley_ingest_consumer_lag",
                    "records of a partition of the consumed topics past the ingest group's \
                     committed position",
                ),
                &["topic", "partition"],
            )
            .expect("valid metric"),
            assigned_partitions: IntGauge::new(
                "parley_ingest_assigned_partitions",
                "log partitions the ingest group assigned to this process",
            )
            .expect("valid metric"),
            lag_labels: Mutex::new(BTreeSet::new()),
        }
    }
}

impl fmt::Debug for IngestMetrics {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("IngestMetrics")
            .field("counters", &self.snapshot())
            .finish_non_exhaustive()
    }
}

impl IngestMetrics {
    pub fn snapshot(&self) -> IngestMetricsSnapshot {
        IngestMetricsSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            events_consumed: self.events_consumed.load(Ordering::Relaxed),
            events_applied: self.events_applied.load(Ordering::Relaxed),
            acks_emitted: self.acks_emitted.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Replaces the lag gauge's values with `lags` (`(topic, partition, records)`); partitions
    /// no longer assigned (after a rebalance) disappear.
    pub fn set_lag(&self, lags: &[(String, u32, u64)]) {
        let mut labels = self
            .lag_labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current: BTreeSet<(String, String)> = lags
            .iter()
            .map(|(topic, partition, _)| (topic.clone(), partition.to_string()))
            .collect();
        for (topic, partition) in labels.difference(&current) {
            let _ = self.consumer_lag.remove_label_values(&[topic, partition]);
        }
        for (topic, partition, records) in lags {
            self.consumer_lag
                .with_label_values(&[topic.as_str(), partition.to_string().as_str()])
                .set(i64::try_from(*records).unwrap_or(i64::MAX));
        }
        *labels = current;
    }

    /// Registers every ingest metric with `registry`: the counters as
    /// `parley_ingest_{batches,events_consumed,events_applied,acks_emitted,retries,dead_letters}_total`, the
    /// histograms and the lag gauge.
    pub fn register(self: &Arc<Self>, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(CounterMirror::new(Arc::clone(self))?))?;
        registry.register(Box::new(self.batch_size.clone()))?;
        registry.register(Box::new(self.write_seconds.clone()))?;
        registry.register(Box::new(self.ack_append_seconds.clone()))?;
        registry.register(Box::new(self.message_stored_latency_seconds.clone()))?;
        registry.register(Box::new(self.consumer_lag.clone()))?;
        registry.register(Box::new(self.assigned_partitions.clone()))?;
        Ok(())
    }
}

/// The `ingest` process's own metrics, registered by its HTTP endpoint: `parley_ingest_ready`
/// and, on Linux, the standard `process_*` metrics (CPU, resident memory, file descriptors,
/// threads, start time).
pub struct ProcessMetrics {
    /// `parley_ingest_ready`: 1 while `/readyz` answers 200; set before each scrape.
    pub ready: IntGauge,
}

impl ProcessMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let ready = IntGauge::new(
            "parley_ingest_ready",
            "1 while the ingest process is ready (GET /readyz answers 200), else 0",
        )?;
        registry.register(Box::new(ready.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self { ready })
    }
}

/// Exposes the atomic counters as Prometheus counters, brought up to date at each scrape.
struct CounterMirror {
    metrics: Arc<IngestMetrics>,
    batches: IntCounter,
    events_consumed: IntCounter,
    events_applied: IntCounter,
    acks_emitted: IntCounter,
    retries: IntCounter,
    dead_letters: IntCounter,
    /// Serialises scrapes, so two of them never add the same difference twice.
    syncing: Mutex<()>,
}

impl CounterMirror {
    fn new(metrics: Arc<IngestMetrics>) -> prometheus::Result<Self> {
        Ok(Self {
            metrics,
            batches: IntCounter::new(
                "parley_ingest_batches_total",
                "ingest batches written and committed",
            )?,
            events_consumed: IntCounter::new(
                "parley_ingest_events_consumed_total",
                "log records consumed and committed by ingest",
            )?,
            events_applied: IntCounter::new(
                "parley_ingest_events_applied_total",
                "store writes applied by ingest",
            )?,
            acks_emitted: IntCounter::new(
                "parley_ingest_acks_emitted_total",
                "message.stored acknowledgments appended by ingest",
            )?,
            retries: IntCounter::new(
                "parley_ingest_retries_total",
                "ingest steps retried after a failure",
            )?,
            dead_letters: IntCounter::new(
                "parley_ingest_dead_letters_total",
                "malformed log records ingest set aside in the dead-letter topic",
            )?,
            syncing: Mutex::new(()),
        })
    }

    fn pairs(&self) -> [(&IntCounter, u64); 6] {
        let snapshot = self.metrics.snapshot();
        [
            (&self.batches, snapshot.batches),
            (&self.events_consumed, snapshot.events_consumed),
            (&self.events_applied, snapshot.events_applied),
            (&self.acks_emitted, snapshot.acks_emitted),
            (&self.retries, snapshot.retries),
            (&self.dead_letters, snapshot.dead_letters),
        ]
    }
}

impl Collector for CounterMirror {
    fn desc(&self) -> Vec<&Desc> {
        [
            &self.batches,
            &self.events_consumed,
            &self.events_applied,
            &self.acks_emitted,
            &self.retries,
            &self.dead_letters,
        ]
        .into_iter()
        .flat_map(|counter| counter.desc())
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _syncing = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut families = Vec::new();
        for (counter, value) in self.pairs() {
            let exported = counter.get();
            if value > exported {
                counter.inc_by(value - exported);
            }
            families.extend(counter.collect());
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gathered(registry: &Registry) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("text encoding")
    }

    #[test]
    fn registered_counters_follow_the_atomics() {
        let metrics = Arc::new(IngestMetrics::default());
        let registry = Registry::new();
        metrics.register(&registry).expect("register");
        IngestMetrics::add(&metrics.events_applied, 3);
        assert!(gathered(&registry).contains("parley_ingest_events_applied_total 3"));
        IngestMetrics::add(&metrics.events_applied, 2);
        metrics.batch_size.observe(5.0);
        let text = gathered(&registry);
        assert!(text.contains("parley_ingest_events_applied_total 5"));
        assert!(text.contains("# TYPE parley_ingest_events_applied_total counter"));
        assert!(text.contains("parley_ingest_batch_size_count 1"));
    }

    #[test]
    fn process_metrics_are_exported() {
        let registry = Registry::new();
        let process = ProcessMetrics::register(&registry).expect("register");
        process.ready.set(1);
        let text = gathered(&registry);
        assert!(text.contains("parley_ingest_ready 1"), "{text}");
        #[cfg(target_os = "linux")]
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
    }

    #[test]
    fn lag_of_partitions_no_longer_assigned_disappears() {
        let metrics = Arc::new(IngestMetrics::default());
        let registry = Registry::new();
        metrics.register(&registry).expect("register");
        metrics.set_lag(&[("message.sent".into(), 0, 4), ("message.sent".into(), 1, 0)]);
        let text = gathered(&registry);
        assert!(
            text.contains(r#"parley_ingest_consumer_lag{partition="0",topic="message.sent"} 4"#)
        );
        assert!(
            text.contains(r#"parley_ingest_consumer_lag{partition="1",topic="message.sent"} 0"#)
        );
        metrics.set_lag(&[("message.sent".into(), 1, 7)]);
        let text = gathered(&registry);
        assert!(!text.contains(r#"partition="0""#));
        assert!(
            text.contains(r#"parley_ingest_consumer_lag{partition="1",topic="message.sent"} 7"#)
        );
    }
}
