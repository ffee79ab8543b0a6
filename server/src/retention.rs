//! The node's retention sweep (protocol v1.1, "Compliance"; the purge itself is
//! `actors::retention`): every `retention.sweep_interval_secs`, the expired messages of every
//! conversation not on legal hold are purged. In a durable cluster, whose nodes share one
//! store, one node sweeps per round: the one that takes the Redis lease `retention-sweep` (held
//! for most of the interval). Nodes with an embedded store (standalone, and each node of a
//! cluster without Kafka) sweep their own store.
//!
//! After each sweep a node with an embedded log prunes it (`retention.embedded_log_days`).
//!
//! Metrics `parley_retention_*`: sweeps by result, conversations and messages purged, files
//! deleted, purges that failed, conversations on legal hold, embedded log events pruned.

use std::sync::Arc;
use std::time::Duration;

use actors::retention::{RetentionRules, SweepOutcome};
use actors::Node;
use persistence::redis::RedisLease;
use persistence::EmbeddedLog;
use ports::RetentionScan;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};
use tokio::sync::watch;

use crate::attachments::metrics::{counter, counter_vec};
use crate::config::RetentionSettings;
use crate::job_lease::{take_round, Round};

#[derive(Clone)]
pub struct RetentionMetrics {
    /// By `result`: `ok`, `failed`, `skipped` (another node holds the sweep lease).
    pub sweeps: IntCounterVec,
    pub conversations_purged: IntCounter,
    pub messages_purged: IntCounter,
    pub files_deleted: IntCounter,
    pub purge_failures: IntCounter,
    pub conversations_held: IntGauge,
    pub log_events_pruned: IntCounter,
}

impl RetentionMetrics {
    pub fn new(registry: &Registry) -> Self {
        let conversations_held = IntGauge::new(
            "parley_retention_held_conversations",
            "conversations on legal hold at the last sweep (retention skips them)",
        )
        .expect("valid metric");
        registry
            .register(Box::new(conversations_held.clone()))
            .expect("unique metric");
        let sweeps = counter_vec(
            registry,
            "parley_retention_sweeps_total",
            "retention sweeps by result (ok, failed, skipped: another node sweeps)",
            "result",
        );
        // Exported from the start, so rules over them work before the first sweep.
        for result in ["ok", "failed", "skipped"] {
            sweeps.with_label_values(&[result]);
        }
        Self {
            sweeps,
            conversations_purged: counter(
                registry,
                "parley_retention_purged_conversations_total",
                "purges of a conversation's expired messages",
            ),
            messages_purged: counter(
                registry,
                "parley_retention_purged_messages_total",
                "messages purged because they outlived their conversation's retention",
            ),
            files_deleted: counter(
                registry,
                "parley_retention_deleted_files_total",
                "attachment files deleted because the last message carrying them was purged",
            ),
            purge_failures: counter(
                registry,
                "parley_retention_purge_failures_total",
                "purges of a conversation that failed (the next sweep retries them)",
            ),
            conversations_held,
            log_events_pruned: counter(
                registry,
                "parley_retention_log_events_pruned_total",
                "events deleted from the embedded log because they outlived retention.embedded_log_days",
            ),
        }
    }

    fn count(&self, outcome: &SweepOutcome) {
        self.sweeps.with_label_values(&["ok"]).inc();
        self.conversations_purged
            .inc_by(outcome.conversations_purged);
        self.messages_purged.inc_by(outcome.messages_purged);
        self.files_deleted.inc_by(outcome.files_deleted);
        self.purge_failures.inc_by(outcome.conversations_failed);
        self.conversations_held
            .set(i64::try_from(outcome.conversations_held).unwrap_or(i64::MAX));
    }
}

/// The node's sweep: what it scans, by which rules, how often, and under which lease.
pub struct RetentionSweeper {
    pub node: Node,
    pub scan: Arc<dyn RetentionScan>,
    pub settings: RetentionSettings,
    /// The node's embedded log, pruned after each sweep (`retention.embedded_log_days`).
    pub embedded_log: Option<Arc<EmbeddedLog>>,
    /// `Some` in a durable cluster: one node sweeps the shared store per round.
    pub lease: Option<RedisLease>,
    pub metrics: RetentionMetrics,
}

impl RetentionSweeper {
    fn every(&self) -> Duration {
        Duration::from_secs(self.settings.sweep_interval_secs)
    }

    /// Runs sweeps until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.every()) => {}
            }
            self.sweep_once().await;
        }
    }

    async fn sweep_once(&self) {
        let sweeps = &self.metrics.sweeps;
        let _renewal = match take_round(self.lease.as_ref(), self.every().mul_f64(0.9)).await {
            Ok(Round::Run(renewal)) => renewal,
            Ok(Round::Skip) => return sweeps.with_label_values(&["skipped"]).inc(),
            Err(error) => {
                sweeps.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %error, "retention sweep lease failed");
                return;
            }
        };
        let rules = RetentionRules {
            default_days: self.settings.default_days,
            day: Duration::from_secs(self.settings.day_seconds),
        };
        match actors::retention::sweep(&self.node, self.scan.as_ref(), &rules).await {
            Ok(outcome) => {
                self.metrics.count(&outcome);
                if outcome.conversations_purged > 0 || outcome.conversations_failed > 0 {
                    tracing::info!(
                        conversations = outcome.conversations_purged,
                        messages = outcome.messages_purged,
                        files_deleted = outcome.files_deleted,
                        failed = outcome.conversations_failed,
                        held = outcome.conversations_held,
                        "retention sweep"
                    );
                }
            }
            Err(error) => {
                sweeps.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %error, "retention sweep failed");
            }
        }
        self.prune_embedded_log(&rules).await;
    }

    /// Deletes the embedded log's events older than `retention.embedded_log_days` that every
    /// consumer has read.
    async fn prune_embedded_log(&self, rules: &RetentionRules) {
        let (Some(log), days @ 1..) = (&self.embedded_log, self.settings.embedded_log_days) else {
            return;
        };
        let Some(before) = chrono::Duration::from_std(rules.day * days)
            .ok()
            .and_then(|kept| chrono::Utc::now().checked_sub_signed(kept))
        else {
            return;
        };
        match log.prune_before(before).await {
            Ok(0) => {}
            Ok(pruned) => {
                self.metrics.log_events_pruned.inc_by(pruned);
                tracing::info!(events = pruned, "embedded log pruned");
            }
            Err(error) => {
                self.metrics.sweeps.with_label_values(&["failed"]).inc();
                tracing::warn!(error = %error, "embedded log prune failed");
            }
        }
    }
}
