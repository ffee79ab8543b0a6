//! `ingest search`: a search replica. It keeps a complete index of the log under
//! `search.data_dir` (fed by the [`Indexer`] with a consumer group of its own, kept beside the
//! index) and answers the nodes' queries on `search.bind` (`POST /v1/search`, `GET /v1/stats`,
//! see `search::remote`), beside `/healthz`, `/readyz` and `/metrics`. Replicas are
//! independent: add one behind the same Service and it builds its index from the log, ready
//! once it has caught up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ports::{ConsumerHealth, EventLog, SearchReader};
use prometheus::Registry;
use search::{Indexer, IndexerMetrics, TantivyIndex};
use tracing::info;

use ingest::settings::ServiceSettings;
use persistence::kafka::KafkaLog;

use crate::health::{ExtraRoutes, HealthServer, ReadinessCheck};
use crate::service::{announce, ServiceError, Stopped, Stopping};

/// Ready when the indexer runs, has caught up with the log once, and is at most
/// `search.ready_lag_events` records behind.
struct ReplicaReadiness {
    health: Arc<ConsumerHealth>,
    metrics: IndexerMetrics,
    caught_up: Arc<AtomicBool>,
    ready_lag_events: u64,
}

impl ReadinessCheck for ReplicaReadiness {
    fn check(&self) -> Result<(), String> {
        if let Some(problem) = self.health.problem() {
            return Err(format!("search indexer: {problem}"));
        }
        if !self.caught_up.load(Ordering::Acquire) {
            return Err("search index catching up with the log".to_owned());
        }
        let behind = u64::try_from(self.metrics.lag_events.get()).unwrap_or(0);
        if behind > self.ready_lag_events {
            return Err(format!(
                "search index {behind} records behind (ready at {} or fewer)",
                self.ready_lag_events
            ));
        }
        Ok(())
    }
}

/// Runs a search replica until SIGTERM/SIGINT.
pub async fn run(
    settings: &ServiceSettings,
    hostname: Option<&str>,
) -> Result<Stopped, ServiceError> {
    let stopping = Stopping::listen()?;
    let log: Arc<dyn EventLog> = Arc::new(
        KafkaLog::new(settings.kafka_config(hostname)).map_err(ServiceError::AdapterConfig)?,
    );
    let index_dir = settings.search.data_dir.join("index");
    let group = search::replica_group(&index_dir)
        .map_err(|error| ServiceError::index(&index_dir, error))?;
    let index = TantivyIndex::open(&index_dir, settings.search.writer_memory_bytes())
        .map_err(|error| ServiceError::index(&index_dir, error))?;
    let index = Arc::new(index);
    let indexer = Indexer::new(log, index.clone(), settings.indexer_config(group.clone()));
    let registry = Registry::new();
    indexer.metrics().register(&registry)?;
    let readiness = Arc::new(ReplicaReadiness {
        health: indexer.health(),
        metrics: indexer.metrics(),
        caught_up: indexer.caught_up(),
        ready_lag_events: settings.search.ready_lag_events,
    });
    let reader: Arc<dyn SearchReader> = index;
    let routes: ExtraRoutes = Arc::new(move |config| {
        search::remote::endpoint::configure(config, Arc::clone(&reader));
    });
    let server = HealthServer::start(&settings.search.bind, readiness, registry, Some(routes))
        .map_err(|source| ServiceError::Bind {
            bind: settings.search.bind.clone(),
            source,
        })?;
    announce(&format!("ingest listening on {}", server.address()));
    info!(address = %server.address(), group = %group, directory = %index_dir.display(),
        "search replica up");
    let work = tokio::spawn(indexer.run(stopping.requested()));
    let stopped = stopping
        .wait(work, server, settings.shutdown_timeout())
        .await?;
    info!(?stopped, "search replica exiting");
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness() -> ReplicaReadiness {
        ReplicaReadiness {
            health: Arc::new(ConsumerHealth::default()),
            metrics: IndexerMetrics::default(),
            caught_up: Arc::new(AtomicBool::new(false)),
            ready_lag_events: 1000,
        }
    }

    #[test]
    fn a_replica_is_ready_only_running_caught_up_and_close_behind() {
        let replica = readiness();
        let not_ready = |replica: &ReplicaReadiness, why: &str| {
            let reason = replica.check().expect_err(why);
            assert!(reason.contains(why), "{reason}");
        };
        not_ready(&replica, "not running");
        replica.health.set_running(true);
        not_ready(&replica, "catching up");
        replica.caught_up.store(true, Ordering::Release);
        replica.metrics.lag_events.set(1001);
        not_ready(&replica, "1001 records behind");
        replica.metrics.lag_events.set(1000);
        assert_eq!(replica.check(), Ok(()));
        replica.health.set_stalled("poll failed".to_owned());
        not_ready(&replica, "poll failed");
    }
}
