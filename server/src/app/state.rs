//! The state every HTTP handler and WebSocket upgrade shares, and the node's readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actors::Node;
use bootstrap::LastCheck;
use ports::{ConsumerHealth, EventLog, Store};
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::metrics::NodeMetrics;

pub struct AppState {
    pub node: Node,
    pub auth: Authenticator,
    pub settings: Settings,
    pub metrics: NodeMetrics,
    pub ready: Arc<AtomicBool>,
    pub socket_urls: Vec<String>,
    /// Protocol v1.1 attachments; `None` when `attachments.store` resolves to off.
    pub attachments: Option<Arc<crate::attachments::AttachmentService>>,
    /// The admin API's sanctions and metrics.
    pub admin: crate::admin::Admin,
    /// Export and erasure job records, shared by the nodes that share the store.
    pub jobs: Arc<dyn ports::Jobs>,
    /// Erasure jobs: requested by the admin API, run and taken up again in the background.
    pub erasures: crate::erasure::Erasures,
    /// Exports of users' data; `None` without a blob store (attachments off).
    pub export: Option<Arc<crate::export::Exporter>>,
    pub(super) log: Arc<dyn EventLog>,
    pub(super) store: Arc<dyn Store>,
    pub(super) redis_clients: Vec<(&'static str, persistence::redis::RedisClient)>,
    pub(super) redis_bus: Option<Arc<persistence::redis::RedisBus>>,
    /// The last result of [`AppState::check_dependencies`] (ready, and why not or what is
    /// degraded), refreshed in the background.
    pub(super) dependencies: LastCheck<(bool, &'static str)>,
    /// Whether the stored-ack relay consumes: a stalled relay degrades the node (only
    /// `message.stored` is late).
    pub(super) stored_acks: Arc<ConsumerHealth>,
    /// Durable mode: once MongoDB answered, its outage degrades the node instead of making it
    /// not ready.
    pub(super) store_may_degrade: bool,
    pub(super) store_seen_ready: AtomicBool,
    /// Search (standalone), for the `/readyz` details; `None` when search is off.
    pub search: Option<super::SearchStatus>,
}

impl AppState {
    /// The Redis client of a role (`"redis state"`, …) in cluster mode.
    pub(super) fn redis_role(&self, role: &str) -> Option<persistence::redis::RedisClient> {
        self.redis_clients
            .iter()
            .find(|(name, _)| *name == role)
            .map(|(_, client)| client.clone())
    }

    /// Ready when start-up finished and the last dependency check passed; the reason says why
    /// not, or what is degraded while ready. Answers at once: probes never wait for a dead
    /// dependency's timeout.
    pub async fn readiness(&self) -> (bool, &'static str) {
        if !self.ready.load(Ordering::Acquire) {
            return (false, "starting or stopping");
        }
        self.dependencies.get()
    }

    /// Whether the log, the store and every Redis role answer (checked concurrently: a dead
    /// dependency costs its timeout once, not once per dependency).
    async fn check_dependencies(&self) -> (bool, &'static str) {
        let (log_ready, store_ready, redis_ready) = tokio::join!(
            self.log.is_ready(),
            self.store.is_ready(),
            futures::future::join_all(
                self.redis_clients
                    .iter()
                    .map(|(_, client)| client.is_ready())
            ),
        );
        if !log_ready {
            return (false, "event log unavailable");
        }
        // A durable node serves without MongoDB once it has seen it (sends need only Kafka and
        // Redis; reads beyond the cache fail with `unavailable`): it stays ready, degraded. At
        // start-up MongoDB must answer first.
        let store_degraded = if store_ready {
            self.store_seen_ready.store(true, Ordering::Release);
            false
        } else if self.store_may_degrade && self.store_seen_ready.load(Ordering::Acquire) {
            true
        } else {
            return (false, "store unavailable");
        };
        if let Some(((name, _), _)) = self
            .redis_clients
            .iter()
            .zip(redis_ready)
            .find(|(_, ready)| !ready)
        {
            return (false, name);
        }
        if self
            .redis_bus
            .as_ref()
            .is_some_and(|bus| !bus.is_connected())
        {
            return (false, "redis pub/sub subscription down");
        }
        if store_degraded {
            return (true, "store unavailable: history beyond the cache fails");
        }
        if self.stored_acks.stall().is_some() {
            return (
                true,
                "stored-ack relay not consuming: message.stored is late",
            );
        }
        (true, "")
    }

    /// Refreshes the dependency check every [`bootstrap::readiness::CHECK_EVERY`] until
    /// shutdown.
    pub(super) async fn watch_dependencies(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let check = || async {
            self.dependencies.set(self.check_dependencies().await);
            true
        };
        let stop = async {
            let _ = shutdown.changed().await;
        };
        bootstrap::check_periodically(check, stop).await;
    }
}
