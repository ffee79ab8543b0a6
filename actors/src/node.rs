//! The per-node context shared by every actor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ports::{
    AuditLog, BlobStore, Bus, Directory, EventLog, MessageCache, Presence, RateLimiter,
    RetentionPolicies, SearchReader, Sequencer, Store,
};
use wire::{NodeId, UserId};

use crate::connections::{ConnectionCounter, ConnectionPermit, ConnectionRefused};
use crate::metrics::Metrics;
use crate::registry::LocalRegistry;
use crate::supervisor::Supervisor;

/// The adapters this node runs with (embedded ones in standalone, Redis/Kafka/MongoDB in a
/// cluster).
#[derive(Clone)]
pub struct Ports {
    pub log: Arc<dyn EventLog>,
    pub store: Arc<dyn Store>,
    pub directory: Arc<dyn Directory>,
    pub sequencer: Arc<dyn Sequencer>,
    pub presence: Arc<dyn Presence>,
    pub bus: Arc<dyn Bus>,
    pub rate_limiter: Arc<dyn RateLimiter>,
    pub cache: Arc<dyn MessageCache>,
    /// Attachment bytes and records (protocol v1.1); `None` when attachments are off.
    pub blobs: Option<Arc<dyn BlobStore>>,
    /// Full-text search (`search.messages`); `None` when search is off on this node.
    pub search: Option<Arc<dyn SearchReader>>,
    /// The audit log (conversation creation and membership changes are recorded); `None`
    /// where the node keeps none (actor tests).
    pub audit: Option<Arc<dyn AuditLog>>,
    /// Conversations' retention periods, legal holds and purges (their `first_seq`); `None`
    /// where the node keeps none (actor tests): nothing is ever purged.
    pub retention: Option<Arc<dyn RetentionPolicies>>,
}

/// Limits and timings of sessions and conversations (the `[limits]` config section).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Frames above this get `too_large` (default 64 KiB).
    pub max_frame_bytes: usize,
    /// Frames above this are not read: close 1009 (1 MiB).
    pub hard_frame_bytes: usize,
    /// Frames queued per session before it is closed with 4009.
    pub outbound_queue: usize,
    pub heartbeat: Duration,
    pub client_timeout: Duration,
    pub max_group_members: usize,
    /// Recent messages a conversation actor keeps in memory.
    pub recent_messages: usize,
    /// A conversation actor with nothing to do for this long stops.
    pub conversation_idle: Duration,
    /// Requests of one session being worked on at once; more get `rate_limited`.
    pub max_inflight_requests: usize,
    /// Rate-limit rejections within `abuse_window` that close the session with 4008.
    pub abuse_rejections: u32,
    pub abuse_window: Duration,
    /// Most operations one conversation batch (one log append) takes.
    pub max_batch_ops: usize,
    /// How long fan-out waits for a missing seq before skipping it.
    pub gap_wait: Duration,
    /// Messages returned per conversation by `sync`.
    pub sync_page: usize,
    /// WebSocket connections one user may hold on this node; more are refused before the
    /// upgrade.
    pub max_connections_per_user: usize,
    /// WebSocket connections this node holds in all; more are refused before the upgrade.
    pub max_connections: usize,
    /// Conversations a user may be a member of to create another one.
    pub max_conversations_per_user: usize,
    /// Uploads no message carried for this long are swept (`attachments.orphan_ttl_secs`);
    /// sends refuse them near its end ([`crate::attachments::expiry_margin`]).
    pub attachment_orphan_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            hard_frame_bytes: 1024 * 1024,
            outbound_queue: 256,
            heartbeat: Duration::from_millis(25_000),
            client_timeout: Duration::from_millis(60_000),
            max_group_members: 1000,
            recent_messages: 256,
            conversation_idle: Duration::from_secs(60),
            max_inflight_requests: 128,
            abuse_rejections: 30,
            abuse_window: Duration::from_secs(10),
            max_batch_ops: 512,
            gap_wait: Duration::from_secs(2),
            sync_page: 100,
            max_connections_per_user: 32,
            max_connections: 100_000,
            max_conversations_per_user: 10_000,
            attachment_orphan_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Cheap to clone; everything an actor needs to reach the rest of the node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    node_id: NodeId,
    ports: Ports,
    limits: Limits,
    metrics: Metrics,
    registry: LocalRegistry,
    supervisor: Supervisor,
    connections: ConnectionCounter,
    /// Log appends running detached from any request (tombstones of aborted sends).
    background_appends: Arc<AtomicUsize>,
}

/// What was still running when [`Node::quiesce`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quiesced {
    /// Conversation actors with a batch in flight or operations queued.
    pub busy_conversations: usize,
    /// Detached log appends (tombstones) not finished.
    pub background_appends: usize,
}

impl Quiesced {
    pub fn is_idle(&self) -> bool {
        self.busy_conversations == 0 && self.background_appends == 0
    }
}

/// Counts one detached log append for as long as it lives.
pub(crate) struct BackgroundAppend {
    counter: Arc<AtomicUsize>,
}

impl Drop for BackgroundAppend {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Node {
    /// Builds the node context. Must run inside a tokio runtime (the registry starts its
    /// subscription worker).
    pub fn new(node_id: NodeId, ports: Ports, limits: Limits, metrics: Metrics) -> Self {
        let registry = LocalRegistry::start(
            ports.bus.clone(),
            ports.sequencer.clone(),
            ports.cache.clone(),
        );
        Self {
            inner: Arc::new(NodeInner {
                node_id,
                ports,
                limits,
                metrics,
                registry,
                supervisor: Supervisor::default(),
                connections: ConnectionCounter::default(),
                background_appends: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    pub fn node_id(&self) -> &NodeId {
        &self.inner.node_id
    }

    pub fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    /// The optional (protocol v1.1) features this node serves, as `welcome.data.features`
    /// lists them.
    pub fn features(&self) -> Vec<String> {
        let mut features = Vec::new();
        if self.inner.ports.blobs.is_some() {
            features.push("attachments".to_owned());
        }
        if self.inner.ports.search.is_some() {
            features.push(wire::search::SEARCH_FEATURE.to_owned());
        }
        features
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn registry(&self) -> &LocalRegistry {
        &self.inner.registry
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.inner.supervisor
    }

    /// Admits one more WebSocket connection of `user_id` within the connection caps; the
    /// permit lives as long as the session.
    pub fn admit_connection(
        &self,
        user_id: &UserId,
    ) -> Result<ConnectionPermit, ConnectionRefused> {
        let limits = self.limits();
        self.inner.connections.admit(
            user_id,
            limits.max_connections_per_user,
            limits.max_connections,
        )
    }

    /// Registers a detached log append; [`Node::quiesce`] waits for it while the guard lives.
    pub(crate) fn track_background_append(&self) -> BackgroundAppend {
        self.inner.background_appends.fetch_add(1, Ordering::AcqRel);
        BackgroundAppend {
            counter: self.inner.background_appends.clone(),
        }
    }

    /// Waits until no conversation has work in flight or queued and no detached append is
    /// running, or until `deadline`; returns what was still running. Part of the graceful stop,
    /// after the sessions are closed (nothing queues new work then).
    pub async fn quiesce(&self, deadline: Instant) -> Quiesced {
        loop {
            let quiesced = Quiesced {
                busy_conversations: self.supervisor().busy().await,
                background_appends: self.inner.background_appends.load(Ordering::Acquire),
            };
            if quiesced.is_idle() || Instant::now() >= deadline {
                return quiesced;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
