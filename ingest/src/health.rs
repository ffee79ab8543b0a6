//! The `ingest` binary's HTTP endpoint: `GET /healthz` (the process runs), `GET /readyz`
//! (a [`ReadinessCheck`]: ingest's [`Readiness`], or the search role's) and `GET /metrics`
//! (Prometheus text), plus the search role's query routes when it serves them.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::http::header::ContentType;
use actix_web::{web, App, HttpResponse, HttpServer};
use bootstrap::LastCheck;
use ports::{EventLog, Store};
use prometheus::{Registry, TextEncoder};
use tokio::task::JoinHandle;
use tracing::warn;

use ingest::metrics::ProcessMetrics;
use ingest::ConsumerHealth;

/// Whether ingest can do its work: MongoDB and Kafka answer, the indexes exist and the consumer
/// loop runs and makes progress ([`ConsumerHealth`]). MongoDB and Kafka are checked in the background every [`bootstrap::readiness::CHECK_EVERY`], so a
/// probe is answered at once, never after a dead dependency's timeout.
pub struct Readiness {
    store: Arc<dyn Store>,
    log: Arc<dyn EventLog>,
    indexes_created: AtomicBool,
    consumer: Arc<ConsumerHealth>,
    /// The audit consumer's ([`AuditIngest::consumer_health`](ingest::audit::AuditIngest::consumer_health)).
    audit: Arc<ConsumerHealth>,
    /// `(mongodb answers, kafka answers)` at the last check; `None` before the first.
    dependencies: LastCheck<Option<(bool, bool)>>,
}

impl Readiness {
    /// `consumer` is the pipeline's ([`IngestPipeline::consumer_health`](ingest::IngestPipeline::consumer_health)),
    /// `audit` the audit consumer's.
    /// Must be called within the adapters' Tokio runtime: the background checks run there, until
    /// the returned value is dropped.
    pub fn new(
        store: Arc<dyn Store>,
        log: Arc<dyn EventLog>,
        consumer: Arc<ConsumerHealth>,
        audit: Arc<ConsumerHealth>,
    ) -> Arc<Self> {
        let readiness = Arc::new(Self {
            store,
            log,
            indexes_created: AtomicBool::new(false),
            consumer,
            audit,
            dependencies: LastCheck::new(None),
        });
        let weak = Arc::downgrade(&readiness);
        let check = move || {
            let readiness = weak.upgrade();
            async move {
                let Some(readiness) = readiness else {
                    return false;
                };
                readiness.refresh().await;
                true
            }
        };
        tokio::spawn(bootstrap::check_periodically(check, std::future::pending()));
        readiness
    }

    pub fn mark_indexes_created(&self) {
        self.indexes_created.store(true, Ordering::Release);
    }

    /// Checks MongoDB and Kafka now (concurrently) and keeps the result for [`Readiness::check`].
    pub async fn refresh(&self) {
        let checked = tokio::join!(self.store.is_ready(), self.log.is_ready());
        self.dependencies.set(Some(checked));
    }

    /// `Ok` when ready, else every reason it is not, joined by "; ".
    pub fn check(&self) -> Result<(), String> {
        let dependencies = self.dependencies.get();
        let (store_ready, log_ready) = dependencies.unwrap_or((false, false));
        let reasons: Vec<String> = [
            dependencies
                .is_none()
                .then(|| "mongodb and kafka not checked yet".to_owned()),
            (dependencies.is_some() && !store_ready).then(|| "mongodb unavailable".to_owned()),
            (dependencies.is_some() && !log_ready).then(|| "kafka unavailable".to_owned()),
            (!self.indexes_created.load(Ordering::Acquire))
                .then(|| "indexes not created yet".to_owned()),
            self.consumer.problem(),
            self.audit
                .problem()
                .map(|problem| format!("audit {problem}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }
}

/// What `/readyz` asks: `Ok` when ready, else every reason it is not.
pub trait ReadinessCheck: Send + Sync + 'static {
    fn check(&self) -> Result<(), String>;
}

impl ReadinessCheck for Readiness {
    fn check(&self) -> Result<(), String> {
        Readiness::check(self)
    }
}

/// More routes for the endpoint (the search role's queries).
pub type ExtraRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

struct EndpointState {
    readiness: Arc<dyn ReadinessCheck>,
    registry: Registry,
    process: ProcessMetrics,
}

/// The running endpoint.
pub struct HealthServer {
    address: SocketAddr,
    handle: ServerHandle,
    task: JoinHandle<io::Result<()>>,
}

impl HealthServer {
    /// Binds `bind` (port 0 picks a free port) and serves the endpoints on one worker thread;
    /// `/metrics` serves `registry` plus the [`ProcessMetrics`] registered into it here.
    /// Connections are accepted from the moment this returns.
    /// `extra` adds routes (the search role's queries).
    pub fn start(
        bind: &str,
        readiness: Arc<dyn ReadinessCheck>,
        registry: Registry,
        extra: Option<ExtraRoutes>,
    ) -> io::Result<Self> {
        let process = ProcessMetrics::register(&registry).map_err(io::Error::other)?;
        let listener = TcpListener::bind(bind)?;
        let address = listener.local_addr()?;
        let state = web::Data::new(EndpointState {
            readiness,
            registry,
            process,
        });
        let server = HttpServer::new(move || {
            let extra = extra.clone();
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics))
                .configure(move |config| {
                    if let Some(extra) = &extra {
                        extra(config);
                    }
                })
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(Self {
            address,
            handle,
            task,
        })
    }

    /// The bound address (the real port when `bind` asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting and waits for the server to finish (open requests get a second).
    pub async fn stop(self) {
        self.handle.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(error = %error, "health endpoint stopped with an error"),
            Err(error) => warn!(error = %error, "health endpoint task failed"),
        }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body("ok")
}

async fn readyz(state: web::Data<EndpointState>) -> HttpResponse {
    match state.readiness.check() {
        Ok(()) => HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body("ready"),
        Err(reasons) => HttpResponse::ServiceUnavailable()
            .content_type(ContentType::plaintext())
            .body(format!("not ready: {reasons}")),
    }
}

async fn metrics(state: web::Data<EndpointState>) -> HttpResponse {
    let ready = state.readiness.check().is_ok();
    state.process.ready.set(i64::from(ready));
    let encoder = TextEncoder::new();
    match encoder.encode_to_string(&state.registry.gather()) {
        Ok(text) => HttpResponse::Ok()
            .content_type(prometheus::TEXT_FORMAT)
            .body(text),
        Err(error) => HttpResponse::InternalServerError()
            .content_type(ContentType::plaintext())
            .body(format!("metrics encoding failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persistence::{EmbeddedLog, EmbeddedStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("response");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("status line");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_needs_indexes_and_a_running_consumer() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = Arc::new(EmbeddedLog::open(&dir.path().join("log")).expect("log"));
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("store"));
        let consumer = Arc::new(ConsumerHealth::default());
        let audit = Arc::new(ConsumerHealth::default());
        let readiness = Readiness::new(store, log, Arc::clone(&consumer), Arc::clone(&audit));
        readiness.refresh().await;
        let registry = Registry::new();
        let metrics = Arc::new(ingest::IngestMetrics::default());
        metrics.register(&registry).expect("register");
        let server =
            HealthServer::start("127.0.0.1:0", Arc::clone(&readiness) as _, registry, None)
                .expect("start");
        let address = server.address();
        assert_ne!(address.port(), 0, "the real port is reported");

        assert_eq!(get(address, "/healthz").await, (200, "ok".to_owned()));
        let (status, body) = get(address, "/readyz").await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            "not ready: indexes not created yet; consumer not running; audit consumer not running"
        );

        readiness.mark_indexes_created();
        consumer.set_running(true);
        let (status, body) = get(address, "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "not ready: audit consumer not running")
        );
        audit.set_running(true);
        assert_eq!(get(address, "/readyz").await, (200, "ready".to_owned()));

        consumer.set_stalled("kafka unavailable: consume: consumer group stalled".to_owned());
        let (status, body) = get(address, "/readyz").await;
        assert_eq!(status, 503);
        assert_eq!(
            body,
            "not ready: consumer not making progress: kafka unavailable: consume: consumer group \
             stalled"
        );
        consumer.clear_stalled();
        assert_eq!(get(address, "/readyz").await, (200, "ready".to_owned()));

        let (status, body) = get(address, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("parley_ingest_batches_total 0"), "{body}");
        assert!(
            body.contains("parley_ingest_write_seconds_count 0"),
            "{body}"
        );
        assert_eq!(get(address, "/nothing").await.0, 404);
        server.stop().await;
    }
}
