//! The abandoned-send reaper (issue #19; the round itself is `actors::abandoned_sends`): in
//! cluster mode, every [`ROUND_EVERY`] the node that takes the Redis lease `abandoned-sends`
//! settles the sends whose node died after reserving their seq and that nobody retried, so
//! no seq hole stays behind: a send the store holds gets its ack recorded, any other one is
//! tombstoned through its conversation's actor. Each is settled once cluster-wide whatever
//! the lease does (the sequencer's claim is atomic); the lease only keeps the other nodes idle.
//!
//! Metric `parley_abandoned_sends_settled_total{outcome="tombstoned"|"stored"}`.

use std::time::Duration;

use actors::Node;
use persistence::redis::{RedisClient, RedisLease};
use prometheus::{IntCounterVec, Registry};
use tokio::sync::watch;

use crate::attachments::metrics::counter_vec;

/// How often the reaper looks for abandoned sends (they are abandoned 60 s after their
/// reservation, `IN_FLIGHT_TTL`).
pub const ROUND_EVERY: Duration = Duration::from_secs(5);

pub struct AbandonedSendReaper {
    node: Node,
    lease: RedisLease,
    settled: IntCounterVec,
}

impl AbandonedSendReaper {
    pub fn new(node: Node, redis: RedisClient, registry: &Registry) -> Self {
        let lease = RedisLease::new(redis, "abandoned-sends", node.node_id().as_str());
        let settled = counter_vec(
            registry,
            "parley_abandoned_sends_settled_total",
            "sends whose node died before answering and that nobody retried, settled by the reaper: tombstoned, or stored (the store held them: their ack is recorded)",
            "outcome",
        );
        // Exported from the start, so rules over them work before the first one.
        for outcome in ["tombstoned", "stored"] {
            settled.with_label_values(&[outcome]);
        }
        Self {
            node,
            lease,
            settled,
        }
    }

    /// Runs rounds until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(ROUND_EVERY) => {}
            }
            self.round().await;
        }
    }

    async fn round(&self) {
        let _renewal = match self.lease.hold_round(ROUND_EVERY.mul_f64(0.9)).await {
            Ok(Some(renewal)) => renewal,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(error = %error, "abandoned-send reaper lease failed");
                return;
            }
        };
        match actors::abandoned_sends::settle_round(&self.node).await {
            Ok(settled) => {
                self.settled
                    .with_label_values(&["tombstoned"])
                    .inc_by(settled.tombstoned);
                self.settled
                    .with_label_values(&["stored"])
                    .inc_by(settled.stored);
            }
            Err(error) => tracing::warn!(error = %error, "abandoned-send reaper round failed"),
        }
    }
}
