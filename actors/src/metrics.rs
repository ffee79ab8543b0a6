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
    pub messages_accepted: IntCounter,
    pub fanout_deliveries: IntCounter,
    pub request_duration: HistogramVec,
    pub errors: IntCounterVec,
    pub outbound_overflows: IntCounter,
    pub closes: IntCounterVec,
    pub conversations_active: IntGauge,
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
        Self {
            sessions_open: register(
                registry,
                IntGauge::new("parley_ws_sessions_open", "open WebSocket sessions").unwrap(),
            ),
            frames_in: register(
                registry,
                IntCounter::new("parley_ws_frames_in_total", "frames received from clients")
                    .unwrap(),
            ),
            frames_out: register(
                registry,
                IntCounter::new("parley_ws_frames_out_total", "frames queued to clients").unwrap(),
            ),
            messages_accepted: register(
                registry,
                IntCounter::new(
                    "parley_messages_accepted_total",
                    "messages durable in the log and acknowledged as accepted",
                )
                .unwrap(),
            ),
            fanout_deliveries: register(
                registry,
                IntCounter::new(
                    "parley_fanout_deliveries_total",
                    "conversation events queued to local sessions",
                )
                .unwrap(),
            ),
            request_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "parley_request_duration_seconds",
                        "time from a request frame to its reply, by op",
                    )
                    .buckets(latency_buckets.clone()),
                    &["op"],
                )
                .unwrap(),
            ),
            errors: register(
                registry,
                IntCounterVec::new(
                    Opts::new("parley_errors_total", "error replies sent, by code"),
                    &["code"],
                )
                .unwrap(),
            ),
            outbound_overflows: register(
                registry,
                IntCounter::new(
                    "parley_ws_outbound_overflows_total",
                    "sessions closed with 4009 because their outbound queue overflowed",
                )
                .unwrap(),
            ),
            closes: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "parley_ws_closes_total",
                        "sessions closed by the server, by close code",
                    ),
                    &["code"],
                )
                .unwrap(),
            ),
            conversations_active: register(
                registry,
                IntGauge::new(
                    "parley_conversation_actors_active",
                    "conversation actors running on this node",
                )
                .unwrap(),
            ),
            conversation_restarts: register(
                registry,
                IntCounter::new(
                    "parley_conversation_actor_restarts_total",
                    "conversation actors restarted after a failure",
                )
                .unwrap(),
            ),
            conversation_overloads: register(
                registry,
                IntCounter::new(
                    "parley_conversation_overloads_total",
                    "operations refused with `unavailable` because their conversation's queue was full",
                )
                .unwrap(),
            ),
            log_append_duration: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "parley_log_append_duration_seconds",
                        "time for a batch of events to become durable in the log",
                    )
                    .buckets(latency_buckets),
                )
                .unwrap(),
            ),
            log_batch_events: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "parley_log_batch_events",
                        "events per conversation batch appended to the log",
                    )
                    .buckets(exponential_buckets(1.0, 2.0, 12).expect("valid buckets")),
                )
                .unwrap(),
            ),
            log_append_failures: register(
                registry,
                IntCounter::new(
                    "parley_log_append_failures_total",
                    "conversation batches whose log append failed (the senders got an error)",
                )
                .unwrap(),
            ),
            bus_received: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "parley_bus_envelopes_received_total",
                        "envelopes this node received from the bus, by topic kind (conversation, user)",
                    ),
                    &["topic"],
                )
                .unwrap(),
            ),
            stored_acks_relayed: register(
                registry,
                IntCounter::new(
                    "parley_stored_acks_relayed_total",
                    "message.stored acknowledgments relayed to senders",
                )
                .unwrap(),
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
