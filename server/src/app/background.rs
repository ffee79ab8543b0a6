//! The node's background tasks: the dependency check behind `/readyz`, the in-process ingest
//! (embedded store), the search indexer (standalone), the router, the stored-ack relay, the
//! retention sweep and, in cluster mode, the presence sweep and the abandoned-send reaper.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::Node;
use anyhow::Context as _;
use ingest::settings::IngestSettings;
use ingest::{IngestConfig, IngestPipeline};
use tokio::sync::watch;

use super::storage::Storage;
use super::AppState;
use crate::config::ExportFiles;

/// The embedded store is written by an in-process ingest (`ingest.linger_ms` is the one
/// setting of `[ingest]` it reads); in durable mode the `ingest` binary writes MongoDB.
pub(super) fn in_process_ingest(
    storage: &Storage,
    settings: &IngestSettings,
) -> Option<IngestPipeline> {
    storage.embedded.is_some().then(|| {
        let config = IngestConfig {
            linger: Duration::from_millis(settings.linger_ms),
            ..IngestConfig::default()
        };
        IngestPipeline::new(storage.log.clone(), storage.store.clone(), config)
    })
}

/// The running background tasks, until [`Background::stop`].
pub(super) struct Background {
    /// Sends `true` to every task to stop it (and must live until then: dropping it stops them
    /// too).
    stop: watch::Sender<bool>,
    stored_acks_relay: tokio::task::JoinHandle<()>,
    ingest_thread: Option<std::thread::JoinHandle<()>>,
    indexer_thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Starts the tasks. The embedded store must reflect the whole log before the node serves:
    /// the ingest catches up first, then keeps following the log on its own thread.
    pub(super) async fn start(
        state: &Arc<AppState>,
        ingest: Option<IngestPipeline>,
        indexer: Option<search::Indexer>,
        redis_presence: Option<Arc<persistence::redis::RedisPresence>>,
        retention: crate::retention::RetentionSweeper,
    ) -> anyhow::Result<Self> {
        let node = &state.node;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(state.clone().watch_dependencies(stopped.clone()));
        let mut ingest_thread = None;
        if let Some(ingest) = ingest {
            let caught_up = ingest
                .catch_up()
                .await
                .map_err(|error| anyhow::anyhow!("ingest catch-up failed: {error}"))?;
            tracing::info!(records = caught_up, "store caught up with the log");
            ingest_thread = Some(spawn_on_own_thread(
                "parley-ingest",
                ingest.run(stopped.clone()),
            ));
        }
        // The index follows the log on its own; the node does not wait for it.
        let indexer_thread = indexer
            .map(|indexer| spawn_on_own_thread("parley-search", indexer.run(stopped.clone())));
        actors::router::start(node.clone()).context("starting the router")?;
        let stored_acks_relay = tokio::spawn(actors::stored_acks::run(
            node.clone(),
            stopped.clone(),
            state.stored_acks.clone(),
        ));
        if let Some(redis) = state.redis_role("redis state") {
            let registry = &state.metrics.registry;
            let reaper =
                crate::abandoned_sends::AbandonedSendReaper::new(node.clone(), redis, registry);
            actix_web::rt::spawn(reaper.run(stopped.clone()));
        }
        if let Some(service) = state.attachments.clone() {
            let lease = state.redis_role("redis state").map(|client| {
                persistence::redis::RedisLease::new(
                    client,
                    "attachments-sweep",
                    node.node_id().as_str(),
                )
            });
            tokio::spawn(crate::attachments::sweep::run(
                service,
                lease,
                stopped.clone(),
            ));
        }
        tokio::spawn(retention.run(stopped.clone()));
        actix_web::rt::spawn(state.erasures.clone().resume(stopped.clone()));
        if let Some(exporter) = state.export.clone() {
            if let ExportFiles::Expire { after, sweep_every } = state.settings.export.files() {
                tokio::spawn(exporter.expiry(after, sweep_every).run(stopped.clone()));
            }
            tokio::spawn(exporter.resume(stopped.clone()));
        }
        if let Some(presence) = redis_presence {
            let sweep_every = Duration::from_millis(state.settings.redis.presence_ttl_ms / 3)
                .max(Duration::from_millis(50));
            tokio::spawn(sweep_expired_presence(
                node.clone(),
                presence,
                sweep_every,
                stopped,
            ));
        }
        Ok(Self {
            stop,
            stored_acks_relay,
            ingest_thread,
            indexer_thread,
        })
    }

    /// Tells every task to stop, then waits (until `deadline`, 5 s at most) for the stored-ack
    /// relay to leave its group, and for the ingest and the search indexer (standalone) to finish
    /// their batches.
    pub(super) async fn stop(self, deadline: Instant) {
        let _ = self.stop.send(true);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(
            remaining.min(Duration::from_secs(5)),
            self.stored_acks_relay,
        )
        .await;
        for thread in [self.ingest_thread, self.indexer_thread]
            .into_iter()
            .flatten()
        {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Announces offline the users whose node died (their sessions expired in Redis).
async fn sweep_expired_presence(
    node: Node,
    presence: Arc<persistence::redis::RedisPresence>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match presence.expired_users().await {
            Ok(users) => {
                for user_id in users {
                    actors::dispatch::announce_offline(&node, &user_id).await;
                }
            }
            Err(error) => tracing::warn!(error = %error, "presence sweep failed"),
        }
    }
}

/// Runs a future on a dedicated thread with its own runtime, off the HTTP workers.
fn spawn_on_own_thread(
    name: &str,
    future: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime builds");
            runtime.block_on(future);
        })
        .expect("thread spawns")
}
