//! Prometheus metrics of the actors, named `parley_<subsystem>_<name>_<unit>`.
//!
//! Labelled metrics whose label values form a fixed set (error codes, close codes, ops, bus
//! topic kinds) are created for every value at registration, so each series is exported from
//! the first scrape (at 0) and `rate()` and `increase()` work before the first event.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry,
};
use wire::ops::Op;
use wire::{CloseCode, ErrorCode};

/// The `op` label of requests whose op is not one of protocol v1's.
pub const UNKNOWN_OP_LABEL: &str = "unknown";

/// The `topic` labels of `parley_bus_envelopes_received_total`.
pub const BUS_TOPIC_KINDS: [&str; 2] = ["conversation", "user"];

#[derive(Clone)]
pub struct Metrics {
    pub sessions_open: IntGauge,
    pub frames_in: IntCounter,
    pub frames_out: IntCounter,
    /// Flushes of queued frames to a client's socket (frames_out ÷ this: frames per write).
    pub socket_writes: IntCounter,
    pub messages_accepted: IntCounter,
    pub fanout_deliveries: IntCounter,
    pub fanout_redeliveries_refused: IntCounter,
    pub request_duration: HistogramVec,
    pub errors: IntCounterVec,
    pub outbound_overflows: IntCounter,
    pub closes: IntCounterVec,
    pub conversations_active: IntGauge,
    pub window_messages: IntGauge,
    pub window_bytes: IntGauge,
    pub conversation_restarts: IntCounter,
    pub conversation_overloads: IntCounter,
    pub log_append_duration: Histogram,
    pub log_batch_events: Histogram,
    pub log_append_failures: IntCounter,
    pub stored_acks_relayed: IntCounter,
    pub bus_received: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`, every known label value at 0.
    pub fn new(registry: &Registry) -> Self {
        let metrics = Self::create(registry);
        metrics.initialise_labels();
        metrics
    }

    /// Creates the series of every known label value (at 0).
    fn initialise_labels(&self) {
        for code in ErrorCode::ALL {
            self.errors.with_label_values(&[code.as_str()]);
        }
        for code in CloseCode::ALL {
            self.closes.with_label_values(&[&code.code().to_string()]);
        }
        for op in Op::ALL {
            self.request_duration.with_label_values(&[op.as_str()]);
        }
        self.request_duration.with_label_values(&[UNKNOWN_OP_LABEL]);
        for kind in BUS_TOPIC_KINDS {
            self.bus_received.with_label_values(&[kind]);
        }
    }

    fn create(registry: &Registry) -> Self {
        let latency_buckets = exponential_buckets(0.000_05, 2.0, 18).expect("valid buckets");
        let batch_buckets = exponential_buckets(1.0, 2.0, 12).expect("valid buckets");
        let counter = |name: &str, help: &str| {
            register(registry, IntCounter::new(name, help).expect("valid metric"))
        };
        let gauge = |name: &str, help: &str| {
            register(registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let counter_by = |name: &str, help: &str, label: &str| {
            let metric = IntCounterVec::new(Opts::new(name, help), &[label]);
            register(registry, metric.expect("valid metric"))
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets));
            register(registry, metric.expect("valid metric"))
        };
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "parley_request_duration_seconds",
                "time from a request frame to its reply, by op",
            )
            .buckets(latency_buckets.clone()),
            &["op"],
        );
        Self {
            sessions_open: gauge("parley_ws_sessions_open", "open WebSocket sessions"),
            frames_in: counter("parley_ws_frames_in_total", "frames received from clients"),
            frames_out: counter("parley_ws_frames_out_total", "frames queued to clients"),
            socket_writes: counter("parley_ws_socket_writes_total", "socket writes to clients"),
            messages_accepted: counter(
                "parley_messages_accepted_total",
                "messages durable in the log and acknowledged as accepted",
            ),
            fanout_deliveries: counter(
                "parley_fanout_deliveries_total",
                "conversation events queued to local sessions",
            ),
            fanout_redeliveries_refused: counter(
                "parley_fanout_redeliveries_refused_total",
                "message.new fan-outs refused because this node's sessions already got that seq or a later one",
            ),
            request_duration: register(registry, request_duration.expect("valid metric")),
            errors: counter_by("parley_errors_total", "error replies sent, by code", "code"),
            outbound_overflows: counter(
                "parley_ws_outbound_overflows_total",
                "sessions closed with 4009 because their outbound queue overflowed",
            ),
            closes: counter_by(
                "parley_ws_closes_total",
                "sessions closed by the server, by close code",
                "code",
            ),
            conversations_active: gauge(
                "parley_conversation_actors_active",
                "conversation actors running on this node",
            ),
            window_messages: gauge(
                "parley_conversation_window_messages",
                "messages held in the conversation actors' windows of recent messages",
            ),
            window_bytes: gauge(
                "parley_conversation_window_bytes",
                "estimated heap bytes of the messages held in the conversation actors' windows",
            ),
            conversation_restarts: counter(
                "parley_conversation_actor_restarts_total",
                "conversation actors restarted after a failure",
            ),
            conversation_overloads: counter(
                "parley_conversation_overloads_total",
                "operations refused with `unavailable` because their conversation's queue was full",
            ),
            log_append_duration: histogram(
                "parley_log_append_duration_seconds",
                "time for a batch of events to become durable in the log",
                latency_buckets,
            ),
            log_batch_events: histogram(
                "parley_log_batch_events",
                "events per conversation batch appended to the log",
                batch_buckets,
            ),
            log_append_failures: counter(
                "parley_log_append_failures_total",
                "conversation batches whose log append failed (the senders got an error)",
            ),
            bus_received: counter_by(
                "parley_bus_envelopes_received_total",
                "envelopes this node received from the bus, by topic kind (conversation, user)",
                "topic",
            ),
            stored_acks_relayed: counter(
                "parley_stored_acks_relayed_total",
                "message.stored acknowledgments relayed to senders",
            ),
        }
    }

    /// Metrics registered in a private registry (tests).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_label_values_are_exported_at_zero_before_any_event() {
        let registry = Registry::new();
        let _metrics = Metrics::new(&registry);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("text encoding");
        for expected in [
            r#"parley_errors_total{code="unavailable"} 0"#,
            r#"parley_errors_total{code="internal"} 0"#,
            r#"parley_ws_closes_total{code="4009"} 0"#,
            r#"parley_ws_closes_total{code="1001"} 0"#,
            r#"parley_request_duration_seconds_count{op="message.send"} 0"#,
            r#"parley_request_duration_seconds_count{op="unknown"} 0"#,
            r#"parley_bus_envelopes_received_total{topic="user"} 0"#,
        ] {
            assert!(text.contains(expected), "missing {expected} in:\n{text}");
        }
        let error_series = text
            .lines()
            .filter(|line| line.starts_with("parley_errors_total{"))
            .count();
        assert_eq!(error_series, ErrorCode::ALL.len());
    }
}
