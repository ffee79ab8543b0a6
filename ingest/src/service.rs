//! The `ingest` binary's two commands over Kafka and MongoDB:
//!
//! - [`setup`]: wait for Kafka and MongoDB (capped exponential backoff, each wait logged),
//!   create the missing topics and the indexes, backfill what older message documents lack
//!   (`reactors`), within an overall deadline.
//! - [`run`]: serve the health endpoint first ([`HealthServer`]), then wait for MongoDB and
//!   create its indexes (retried until it answers), then run the [`IngestPipeline`] and the
//!   [`AuditIngest`] (the audit topic into MongoDB's `audit` collection) until
//!   SIGTERM/SIGINT. Shutdown finishes the batch in hand within `ingest.shutdown_timeout_ms`; a
//!   second signal, or the deadline, ends the process at once (an uncommitted batch is consumed
//!   again, idempotently, by the next ingest).

use std::future::Future;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use bootstrap::StopSignals;
use ports::{Backoff, EventLog, PortError, Store};
use prometheus::Registry;
use thiserror::Error;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use ingest::audit::AuditIngest;
use ingest::settings::{ServiceSettings, SettingsError, INITIAL_BACKOFF};
use ingest::IngestPipeline;
use persistence::kafka::KafkaLog;
use persistence::mongo::MongoStore;

use crate::health::{HealthServer, Readiness};

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// An adapter refused its configuration (a malformed MongoDB URI, a bad librdkafka setting).
    #[error("configuration: {0}")]
    AdapterConfig(PortError),
    #[error("ingest.bind: cannot listen on {bind}: {source}")]
    Bind { bind: String, source: io::Error },
    #[error("setup did not finish within {timeout:?}: {step} ({last_error})")]
    SetupTimedOut {
        timeout: Duration,
        step: &'static str,
        last_error: String,
    },
    /// The search role's index directory cannot be opened or created.
    #[error("search.data_dir: cannot open the index in {directory}: {problem}")]
    Index { directory: String, problem: String },
    /// `ingest reindex`: MongoDB or the new index failed.
    #[error("reindex: {0}")]
    Reindex(PortError),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen for signals: {0}")]
    Signals(io::Error),
    #[error("the ingest task failed: {0}")]
    Task(String),
}

impl ServiceError {
    /// The search index in `directory` cannot be opened, created or replaced.
    pub fn index(directory: &std::path::Path, error: impl std::fmt::Display) -> Self {
        Self::Index {
            directory: directory.display().to_string(),
            problem: error.to_string(),
        }
    }

    /// 2 for configuration mistakes, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Settings(_) | Self::AdapterConfig(_) | Self::Bind { .. } | Self::Index { .. } => {
                2
            }
            _ => 1,
        }
    }
}

/// How `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Everything in hand was finished (or abandoned while failing) before the deadline.
    Cleanly,
    /// The deadline passed, or a second signal came: work may still be running; exit now.
    Forced,
}

/// The adapters of one ingest process.
struct Adapters {
    log: Arc<KafkaLog>,
    store: Arc<MongoStore>,
}

impl Adapters {
    /// Builds both clients; neither connects yet.
    async fn open(
        settings: &ServiceSettings,
        hostname: Option<&str>,
    ) -> Result<Self, ServiceError> {
        let log = KafkaLog::new(settings.kafka_config(hostname)).map_err(adapter_config)?;
        let store = MongoStore::connect(settings.mongo_config())
            .await
            .map_err(adapter_config)?;
        Ok(Self {
            log: Arc::new(log),
            store: Arc::new(store),
        })
    }
}

fn adapter_config(error: PortError) -> ServiceError {
    ServiceError::AdapterConfig(error)
}

/// `ingest setup`: topics, indexes and the backfill of fields older documents lack, within
/// `timeout`.
pub async fn setup(
    settings: &ServiceSettings,
    hostname: Option<&str>,
    timeout: Duration,
) -> Result<(), ServiceError> {
    let adapters = Adapters::open(settings, hostname).await?;
    let mut progress = Progress::new("waiting for kafka");
    let steps = async {
        let log = &adapters.log;
        let (partitions, replication) =
            (settings.kafka.partitions, settings.kafka.replication_factor);
        // Not gated on `is_ready`: that wants the topics this step creates. An unreachable
        // broker fails `ensure_topics` as unavailable within the request timeout.
        retry(&mut progress, settings.max_backoff(), None, || {
            log.ensure_topics(partitions, replication)
        })
        .await;
        info!(partitions, replication, "kafka topics exist");
        progress.start("waiting for mongodb");
        let store = &adapters.store;
        retry(&mut progress, settings.max_backoff(), None, || {
            ensure_indexes(store)
        })
        .await;
        info!(database = %settings.mongo.database, "mongodb indexes exist");
        progress.start("backfilling message reactors");
        let backfill = retry(&mut progress, settings.max_backoff(), None, || {
            store.backfill_reactors()
        });
        if let Some(backfilled) = backfill.await {
            info!(
                filled = backfilled.filled,
                unreadable = backfilled.unreadable,
                "message documents have their reactors"
            );
        }
    };
    match tokio::time::timeout(timeout, steps).await {
        Ok(()) => Ok(()),
        Err(_elapsed) => Err(ServiceError::SetupTimedOut {
            timeout,
            step: progress.step,
            last_error: progress
                .last_error
                .unwrap_or_else(|| "no answer yet".to_owned()),
        }),
    }
}

async fn ensure_indexes(store: &MongoStore) -> Result<(), PortError> {
    store.ping().await?;
    store.ensure_indexes().await
}

/// `ingest run`: prints `ingest listening on <addr>` once the endpoint accepts connections,
/// then ingests until a signal.
pub async fn run(
    settings: &ServiceSettings,
    hostname: Option<&str>,
) -> Result<Stopped, ServiceError> {
    // Before anything is announced: a SIGTERM right after the "listening" line must already
    // mean a clean stop, not the default kill.
    let stopping = Stopping::listen()?;
    let adapters = Adapters::open(settings, hostname).await?;
    let log: Arc<dyn EventLog> = adapters.log.clone();
    let store: Arc<dyn Store> = adapters.store.clone();
    let pipeline = IngestPipeline::new(
        Arc::clone(&log),
        Arc::clone(&store),
        settings.pipeline_config(),
    );
    let audit = AuditIngest::new(
        Arc::clone(&adapters.log),
        adapters.store.clone(),
        settings.pipeline_config(),
    );
    let registry = Registry::new();
    pipeline.metrics().register(&registry)?;
    audit.metrics().register(&registry)?;
    let readiness = Readiness::new(
        store,
        log,
        pipeline.consumer_health(),
        audit.consumer_health(),
    );
    let server = HealthServer::start(&settings.ingest.bind, readiness.clone(), registry, None)
        .map_err(|source| ServiceError::Bind {
            bind: settings.ingest.bind.clone(),
            source,
        })?;
    announce(&format!("ingest listening on {}", server.address()));
    info!(
        address = %server.address(),
        group = %settings.ingest.group,
        client_id = %adapters.log.config().client_id,
        "ingest endpoint up"
    );

    let max_backoff = settings.max_backoff();
    let mongo = Arc::clone(&adapters.store);
    let mut work_shutdown = stopping.requested();
    let work = tokio::spawn(async move {
        let mut progress = Progress::new("waiting for mongodb");
        let prepared = retry(&mut progress, max_backoff, Some(&mut work_shutdown), || {
            ensure_indexes(&mongo)
        })
        .await;
        if prepared.is_none() {
            return;
        }
        info!("mongodb indexes exist");
        readiness.mark_indexes_created();
        tokio::join!(
            pipeline.run(work_shutdown.clone()),
            audit.run(work_shutdown)
        );
    });

    let stopped = stopping
        .wait(work, server, settings.shutdown_timeout())
        .await?;
    info!(?stopped, "ingest exiting");
    Ok(stopped)
}

/// The stop of a long-running command: the first SIGTERM/SIGINT requests it, a second one
/// forces it.
pub struct Stopping {
    requested: watch::Receiver<bool>,
    forced: Arc<Notify>,
    signals: JoinHandle<()>,
}

impl Stopping {
    /// Listens for the signals from now on (before anything is announced: a SIGTERM right
    /// after the "listening" line must already mean a clean stop, not the default kill).
    pub fn listen() -> Result<Self, ServiceError> {
        let (shutdown, requested) = watch::channel(false);
        let forced = Arc::new(Notify::new());
        let signals = listen_for_signals(shutdown, Arc::clone(&forced))?;
        Ok(Self {
            requested,
            forced,
            signals,
        })
    }

    /// Turns true when a stop is requested (for the work to watch).
    pub fn requested(&self) -> watch::Receiver<bool> {
        self.requested.clone()
    }

    /// Waits for `work` to end by itself, or, once a stop is requested, to finish what it has
    /// in hand within `deadline` (a second signal cuts the wait short); then stops `server`
    /// unless the stop was forced (work may still be running: the process exits at once).
    pub async fn wait(
        mut self,
        work: JoinHandle<()>,
        server: HealthServer,
        deadline: Duration,
    ) -> Result<Stopped, ServiceError> {
        let finished = self.finish(work, deadline).await;
        self.signals.abort();
        if !matches!(finished, Ok(Stopped::Forced)) {
            server.stop().await;
        }
        finished
    }

    async fn finish(
        &mut self,
        mut work: JoinHandle<()>,
        deadline: Duration,
    ) -> Result<Stopped, ServiceError> {
        let finished = tokio::select! {
            finished = &mut work => Some(finished),
            _ = self.requested.wait_for(|requested| *requested) => None,
        };
        match finished {
            Some(Ok(())) => return Ok(Stopped::Cleanly),
            Some(Err(join_error)) => return Err(ServiceError::Task(join_error.to_string())),
            None => {}
        }
        info!(
            deadline_ms = deadline.as_millis() as u64,
            "finishing the batch in hand"
        );
        Ok(tokio::select! {
            finished = tokio::time::timeout(deadline, &mut work) => match finished {
                Ok(Ok(())) => Stopped::Cleanly,
                Ok(Err(join_error)) => {
                    error!(error = %join_error, "ingest task failed while stopping");
                    Stopped::Cleanly
                }
                Err(_elapsed) => {
                    warn!(deadline_ms = deadline.as_millis() as u64,
                        "shutdown deadline passed; exiting with the batch in hand uncommitted");
                    Stopped::Forced
                }
            },
            () = self.forced.notified() => {
                warn!("second signal; exiting with the batch in hand uncommitted");
                Stopped::Forced
            }
        })
    }
}

/// Prints one line on stdout (what scripts wait for) and flushes it.
pub fn announce(line: &str) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// The first SIGTERM/SIGINT requests shutdown; the next one notifies `forced`.
fn listen_for_signals(
    shutdown: watch::Sender<bool>,
    forced: Arc<Notify>,
) -> Result<tokio::task::JoinHandle<()>, ServiceError> {
    let mut signals = StopSignals::listen().map_err(ServiceError::Signals)?;
    Ok(tokio::spawn(async move {
        let mut received = 0_u32;
        loop {
            let signal = signals.recv().await;
            received += 1;
            if received == 1 {
                info!(signal = signal.name(), "shutdown requested");
                shutdown.send_replace(true);
            } else {
                forced.notify_one();
            }
        }
    }))
}

/// What a retry loop is waiting for, and the last failure (for the timeout message).
struct Progress {
    step: &'static str,
    last_error: Option<String>,
}

impl Progress {
    fn new(step: &'static str) -> Self {
        Self {
            step,
            last_error: None,
        }
    }

    fn start(&mut self, step: &'static str) {
        self.step = step;
        self.last_error = None;
    }
}

/// Calls `attempt` until it succeeds, sleeping with capped exponential backoff in between and
/// logging each wait. `None` when `shutdown` is requested first.
async fn retry<T, Attempt, Fut>(
    progress: &mut Progress,
    max_backoff: Duration,
    mut shutdown: Option<&mut watch::Receiver<bool>>,
    mut attempt: Attempt,
) -> Option<T>
where
    Attempt: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PortError>>,
{
    let mut backoff = Backoff::new(INITIAL_BACKOFF.min(max_backoff), max_backoff);
    let mut attempts = 0_u32;
    loop {
        let outcome = match shutdown.as_deref_mut() {
            Some(shutdown) => tokio::select! {
                outcome = attempt() => outcome,
                _ = shutdown.wait_for(|requested| *requested) => return None,
            },
            None => attempt().await,
        };
        let error = match outcome {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        attempts += 1;
        let delay = backoff.next_delay();
        warn!(
            step = progress.step,
            attempt = attempts,
            retry_in_ms = delay.as_millis() as u64,
            error = %error,
            "dependency not ready, waiting"
        );
        progress.last_error = Some(error.to_string());
        match shutdown.as_deref_mut() {
            Some(shutdown) => tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|requested| *requested) => return None,
            },
            None => tokio::time::sleep(delay).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ports::Service;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retry_backs_off_until_the_attempt_succeeds() {
        let calls = AtomicU32::new(0);
        let mut progress = Progress::new("waiting for the test");
        let started = tokio::time::Instant::now();
        let value = retry(&mut progress, Duration::from_millis(200), None, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..=4 => Err(PortError::unavailable(
                    Service::InProcess,
                    format!("down #{}", calls.load(Ordering::SeqCst)),
                )),
                _ => Ok("up"),
            }
        })
        .await;
        assert_eq!(value, Some("up"));
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        assert_eq!(
            progress.last_error.as_deref(),
            Some("in-process unavailable: down #5")
        );
        // 50 + 100 + 200 + 200 + 200 ms of (virtual) waiting: doubling, capped.
        assert_eq!(started.elapsed(), Duration::from_millis(750));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_when_shutdown_is_requested() {
        let (shutdown, mut requested) = watch::channel(false);
        let mut progress = Progress::new("waiting for the test");
        let waiting = retry(
            &mut progress,
            Duration::from_secs(1),
            Some(&mut requested),
            || async { Err::<(), _>(PortError::unavailable(Service::InProcess, "down")) },
        );
        let stop = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            shutdown.send_replace(true);
        };
        let (outcome, ()) = tokio::join!(waiting, stop);
        assert_eq!(outcome, None);
    }

    #[test]
    fn configuration_mistakes_exit_with_2() {
        let invalid = ServiceError::Settings(SettingsError::Invalid(ingest::settings::Invalid {
            key: "kafka.brokers",
            problem: "must be set".to_owned(),
        }));
        assert_eq!(invalid.exit_code(), 2);
        let timed_out = ServiceError::SetupTimedOut {
            timeout: Duration::from_secs(1),
            step: "waiting for kafka",
            last_error: "down".to_owned(),
        };
        assert_eq!(timed_out.exit_code(), 1);
        assert!(timed_out.to_string().contains("waiting for kafka (down)"));
    }
}
