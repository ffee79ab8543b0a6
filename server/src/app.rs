//! Wiring: opens the log and the store (embedded files, or Kafka and MongoDB in durable cluster
//! mode), builds the other adapters (in-process, or Redis in cluster mode), the node, the
//! background tasks, and the HTTP server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _};
use actix_web::{web, App};
use actors::Node;
use anyhow::Context as _;
use ingest::{IngestConfig, IngestPipeline};
use persistence::kafka::KafkaLog;
use persistence::mongo::MongoStore;
use persistence::{EmbeddedLog, EmbeddedStore};
use ports::{EventLog, Store};
use tokio::net::TcpStream;
use tokio::sync::watch;
use wire::NodeId;

use crate::auth::Authenticator;
use crate::config::{Loaded, Settings};
use crate::metrics::NodeMetrics;

pub struct AppState {
    pub node: Node,
    pub auth: Authenticator,
    pub settings: Settings,
    pub metrics: NodeMetrics,
    pub ready: Arc<AtomicBool>,
    pub socket_urls: Vec<String>,
    log: Arc<dyn EventLog>,
    store: Arc<dyn Store>,
    redis_clients: Vec<(&'static str, persistence::redis::RedisClient)>,
    redis_bus: Option<Arc<persistence::redis::RedisBus>>,
    /// The last result of [`AppState::check_dependencies`] (ready, and why not or what is
    /// degraded), refreshed in the background.
    dependencies: std::sync::Mutex<(bool, &'static str)>,
    /// Durable mode: once MongoDB answered, its outage degrades the node instead of making it
    /// not ready.
    store_may_degrade: bool,
    store_seen_ready: AtomicBool,
}

/// How often the background task checks the log, the store and Redis for `/readyz`.
const DEPENDENCY_CHECK_EVERY: Duration = Duration::from_secs(1);

impl AppState {
    /// Ready when start-up finished and the last dependency check passed; the reason says why
    /// not, or what is degraded while ready. Answers at once: probes never wait for a dead
    /// dependency's timeout.
    pub async fn readiness(&self) -> (bool, &'static str) {
        if !self.ready.load(Ordering::Acquire) {
            return (false, "starting or stopping");
        }
        *self.dependencies.lock().expect("readiness lock")
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
        (true, "")
    }

    /// Refreshes the dependency check every [`DEPENDENCY_CHECK_EVERY`] until shutdown.
    async fn watch_dependencies(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let checked = self.check_dependencies().await;
            *self.dependencies.lock().expect("readiness lock") = checked;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(DEPENDENCY_CHECK_EVERY) => {}
            }
        }
    }
}

/// Runs a node (standalone, Redis cluster or durable cluster mode) until it is stopped (SIGINT/SIGTERM).
pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let settings = loaded.settings;
    tracing::info!(
        api_key_source = %loaded.api_key_source,
        jwt_secret_source = %loaded.jwt_secret_source,
        "auth secrets"
    );
    if loaded.api_key_source == crate::config::SecretSource::DevDefault {
        tracing::warn!(
            api_key = crate::config::DEV_API_KEY,
            "USING THE DEVELOPMENT API KEY: set PARLEY__AUTH__API_KEY for anything but local development"
        );
    }
    if loaded.jwt_secret_source == crate::config::SecretSource::DevDefault {
        tracing::warn!("USING THE DEVELOPMENT JWT SECRET: set PARLEY__AUTH__JWT_SECRET for anything but local development");
    }

    let listener = std::net::TcpListener::bind(settings.bind_addr())
        .with_context(|| format!("cannot bind server.bind {}", settings.server.bind))?;
    let local_addr = listener.local_addr()?;
    let node_id = if settings.server.node_id.is_empty() {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "parley".to_owned());
        NodeId::new(format!("{host}-{}", local_addr.port()))
    } else {
        NodeId::new(settings.server.node_id.clone())
    };
    let socket_urls = if settings.server.public_urls.is_empty() {
        vec![format!("ws://{local_addr}/ws")]
    } else {
        settings.server.public_urls.clone()
    };

    let storage = Storage::open(&settings, &node_id).await?;
    let adapters = crate::adapters::build(
        &settings,
        storage.log.clone(),
        storage.store.clone(),
        storage.embedded.clone(),
    )?;
    let ports = adapters.ports;

    // The embedded store is written by an in-process ingest; in durable mode the `ingest`
    // binary writes MongoDB.
    let ingest = storage.embedded.is_some().then(|| {
        IngestPipeline::new(
            storage.log.clone(),
            storage.store.clone(),
            IngestConfig::default(),
        )
    });
    let mut metrics = NodeMetrics::new();
    if let Some(ingest) = &ingest {
        metrics = metrics.with_ingest(ingest.metrics());
    }
    if let Some(bus) = &adapters.redis_bus {
        metrics = metrics.with_redis_bus(bus.clone());
    }
    if let Some(kafka) = &storage.kafka {
        metrics = metrics.with_kafka(kafka.clone());
    }

    let node = Node::new(
        node_id.clone(),
        ports,
        settings.limits(),
        metrics.actors.clone(),
    );
    let ready = Arc::new(AtomicBool::new(false));
    let state = Arc::new(AppState {
        node: node.clone(),
        auth: Authenticator::new(&settings.auth.jwt_secret, &settings.auth.api_key),
        settings: settings.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        socket_urls,
        log: storage.log.clone(),
        store: storage.store.clone(),
        redis_clients: adapters.redis_clients,
        redis_bus: adapters.redis_bus.clone(),
        dependencies: std::sync::Mutex::new((false, "dependencies not checked yet")),
        store_may_degrade: storage.embedded.is_none(),
        store_seen_ready: AtomicBool::new(false),
    });

    let max_body = settings.limits.max_frame_bytes;
    let http_metrics = metrics.http_request_duration.clone();
    // actix-server with actix-http's HTTP/1 service rather than actix-web's `HttpServer`, so
    // that WebSocket upgrades are handed over with their raw connection (`crate::ws`).
    let mut server = actix_server::Server::build()
        .listen("parley-http", listener, {
            let state = state.clone();
            move || {
                let http_metrics = http_metrics.clone();
                let app = App::new()
                    .app_data(web::Data::new(state.clone()))
                    .wrap_fn(move |request, service| {
                        use actix_web::dev::Service as _;
                        let started = std::time::Instant::now();
                        let route = request
                            .match_pattern()
                            .unwrap_or_else(|| "unmatched".to_owned());
                        let http_metrics = http_metrics.clone();
                        let response = service.call(request);
                        async move {
                            let response = response.await?;
                            http_metrics
                                .with_label_values(&[&route, response.status().as_str()])
                                .observe(started.elapsed().as_secs_f64());
                            Ok(response)
                        }
                    })
                    .configure(|config| crate::http::configure(config, max_body));
                let upgrade_state = state.clone();
                let upgrade = actix_service::fn_service(
                    move |(request, framed): (
                        actix_http::Request,
                        actix_codec::Framed<TcpStream, actix_http::h1::Codec>,
                    )| {
                        let served =
                            crate::ws::serve_upgrade(upgrade_state.clone(), request, framed);
                        async move {
                            served.await;
                            Ok::<(), actix_web::Error>(())
                        }
                    },
                );
                let app = app.into_factory().map_err(|error| error.error_response());
                actix_http::HttpService::build()
                    // actix-web's defaults.
                    .keep_alive(actix_http::KeepAlive::default())
                    .client_request_timeout(Duration::from_secs(5))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    // Small frames must leave at once: without TCP_NODELAY, Nagle's algorithm
                    // and delayed ACKs hold replies and events back by up to ~40 ms.
                    .tcp_nodelay(true)
                    .local_addr(local_addr)
                    .upgrade(upgrade)
                    .finish(actix_service::map_config(app, |()| {
                        actix_web::dev::AppConfig::default()
                    }))
                    .tcp()
            }
        })?
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout_ms.div_ceil(1000));
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let server = server.run();
    let server_handle = server.handle();
    // The one line scripts wait for.
    println!("parley-server listening on {local_addr}");
    tracing::info!(node_id = %node_id, address = %local_addr, storage = storage.description, "listening");

    // Start-up: the embedded store must reflect the whole log before the node serves.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(state.clone().watch_dependencies(shutdown_rx.clone()));
    let mut ingest_task = None;
    if let Some(ingest) = ingest {
        let caught_up = ingest
            .catch_up()
            .await
            .map_err(|error| anyhow::anyhow!("ingest catch-up failed: {error}"))?;
        tracing::info!(records = caught_up, "store caught up with the log");
        ingest_task = Some(spawn_on_own_thread(
            "parley-ingest",
            ingest.run(shutdown_rx.clone()),
        ));
    }
    actors::router::start(node.clone()).context("starting the router")?;
    let relay_task = tokio::spawn(actors::stored_acks::run(node.clone(), shutdown_rx.clone()));
    if let Some(presence) = adapters.redis_presence {
        let sweep_every = Duration::from_millis(settings.redis.presence_ttl_ms / 3)
            .max(Duration::from_millis(50));
        tokio::spawn(sweep_expired_presence(
            node.clone(),
            presence,
            sweep_every,
            shutdown_rx,
        ));
    }
    ready.store(true, Ordering::Release);
    tracing::info!("ready");
    let drain_window = Duration::from_millis(settings.server.drain_window_ms);
    let shutdown_timeout = Duration::from_millis(settings.server.shutdown_timeout_ms);
    let (stop_deadline_tx, stop_deadline_rx) = tokio::sync::oneshot::channel();
    actix_rt::spawn({
        let node = node.clone();
        let ready = ready.clone();
        async move {
            wait_for_stop_signal().await;
            // Everything below, and the exit, happens before this deadline.
            let deadline = Instant::now() + shutdown_timeout;
            let _ = stop_deadline_tx.send(deadline);
            exit_at(deadline);
            tracing::info!(
                drain_window_ms = drain_window.as_millis() as u64,
                shutdown_timeout_ms = shutdown_timeout.as_millis() as u64,
                "stop signal received: not ready, draining sessions"
            );
            // Readiness flips first: load balancers stop routing here, upgrades and REST
            // requests are refused from now on.
            ready.store(false, Ordering::Release);
            let sessions_by = deadline
                .checked_sub(FLUSH_SHARE_OF_DEADLINE * 2)
                .unwrap_or(deadline);
            drain_sessions(&node, drain_window, sessions_by).await;
            // The sessions are closed; stop accepting and wait for the other connections.
            let remaining = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(remaining, server_handle.stop(true))
                .await
                .is_err()
            {
                tracing::warn!("connections still open at the stop deadline");
            }
        }
    });

    let result = server.await;
    ready.store(false, Ordering::Release);
    // No session is left to queue work: let the conversations finish what is in flight (an
    // append whose seq is allocated must land or leave its tombstone, or the seq would be a
    // hole), then flush what the log still buffers.
    let deadline = match stop_deadline_rx.await {
        Ok(deadline) => deadline,
        Err(_) => Instant::now() + shutdown_timeout,
    };
    let quiesce_by = deadline
        .checked_sub(FLUSH_SHARE_OF_DEADLINE)
        .unwrap_or(deadline);
    let quiesced = node.quiesce(quiesce_by).await;
    if quiesced.is_idle() {
        tracing::info!("conversations drained");
    } else {
        tracing::warn!(
            busy_conversations = quiesced.busy_conversations,
            background_appends = quiesced.background_appends,
            "stopping with conversation work still in flight"
        );
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    match storage.log.flush(remaining).await {
        Ok(()) => tracing::info!("log flushed"),
        Err(error) => tracing::warn!(error = %error, "log flush failed"),
    }
    let _ = shutdown_tx.send(true);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(remaining.min(Duration::from_secs(5)), relay_task).await;
    if let Some(ingest_task) = ingest_task {
        let _ = tokio::task::spawn_blocking(move || ingest_task.join()).await;
    }
    tracing::info!("stopped");
    result.context("http server failed")
}

/// The node's event log and store.
struct Storage {
    log: Arc<dyn EventLog>,
    store: Arc<dyn Store>,
    /// The embedded store (standalone and Redis-only cluster mode): also the standalone
    /// directory, and written by an in-process ingest. `None` in durable mode.
    embedded: Option<Arc<EmbeddedStore>>,
    /// The Kafka log in durable mode (for its metrics).
    kafka: Option<KafkaLog>,
    /// For the start-up log line.
    description: &'static str,
}

impl Storage {
    /// Kafka and MongoDB when `kafka.brokers` and `mongo.uri` are set, else the embedded files
    /// under `storage.data_dir`. Neither Kafka nor MongoDB needs to be up: both clients connect
    /// lazily and `/readyz` reports them until they answer.
    async fn open(settings: &Settings, node_id: &NodeId) -> anyhow::Result<Self> {
        if settings.kafka.enabled() {
            let kafka = settings.kafka.kafka_config(node_id.as_str());
            let brokers = kafka.brokers.clone();
            let log = KafkaLog::new(kafka).map_err(|error| anyhow::anyhow!("kafka: {error}"))?;
            let mongo = settings.mongo.mongo_config();
            let mongo_uri = mongo.redacted_uri();
            let store = MongoStore::connect(mongo)
                .await
                .map_err(|error| anyhow::anyhow!("mongo.uri: {error}"))?;
            tracing::info!(
                kafka = %brokers,
                mongo = %mongo_uri,
                database = %settings.mongo.database,
                "durable cluster mode: log in Kafka, store in MongoDB (written by the ingest binary)"
            );
            return Ok(Self {
                log: Arc::new(log.clone()),
                store: Arc::new(store),
                embedded: None,
                kafka: Some(log),
                description: "kafka+mongodb",
            });
        }
        let data_dir = &settings.storage.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create storage.data_dir {}", data_dir.display()))?;
        let log = EmbeddedLog::open(&data_dir.join("log.redb"))
            .with_context(|| format!("cannot open the log in {}", data_dir.display()))?;
        let store = Arc::new(
            EmbeddedStore::open(&data_dir.join("store.redb"))
                .with_context(|| format!("cannot open the store in {}", data_dir.display()))?,
        );
        tracing::info!(data_dir = %data_dir.display(), "embedded log and store");
        Ok(Self {
            log: Arc::new(log),
            store: store.clone(),
            embedded: Some(store),
            kafka: None,
            description: "embedded",
        })
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

async fn wait_for_stop_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(terminate) => { terminate.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// Tells every session to reconnect elsewhere (`goaway` with a jittered delay, then close
/// 1001), in batches spread over `window` so the clients do not all come back at once, then
/// waits (until `until` at the latest) for the sessions to end. Upgraded connections are not
/// the HTTP server's, so nothing else waits for their close frames to go out; a session ends
/// once its client answered the close frame, or after its close linger.
async fn drain_sessions(node: &Node, window: Duration, until: Instant) {
    const BATCHES: usize = 10;
    let sessions = node.registry().all_sessions();
    let total = sessions.len();
    let batch_size = total.div_ceil(BATCHES).max(1);
    let pause = window / BATCHES as u32;
    for (index, batch) in sessions.chunks(batch_size).enumerate() {
        if index > 0 {
            tokio::time::sleep(pause).await;
        }
        for session in batch {
            send_away(session, window);
        }
    }
    loop {
        let left = node.registry().all_sessions();
        if left.is_empty() {
            tracing::info!(sessions = total, "sessions drained");
            return;
        }
        if Instant::now() >= until {
            tracing::warn!(
                sessions = total,
                still_open = left.len(),
                "sessions drained, some still closing at the deadline"
            );
            return;
        }
        // A session that was still being set up when the batches started.
        for session in left.iter().filter(|session| !session.close_requested()) {
            send_away(session, window);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `goaway` with a jittered `reconnect_after_ms`, then close 1001.
fn send_away(session: &actors::SessionHandle, window: Duration) {
    use rand::Rng as _;
    let reconnect_after_ms = rand::rng().random_range(250..=1000 + window.as_millis() as u64);
    let goaway = wire::events::ServerEvent::Goaway { reconnect_after_ms };
    session.deliver(wire::frames::encode_event(&goaway).into());
    session.close(wire::CloseCode::GoingAway, "server going away");
}

/// The part of the stop deadline kept for flushing the log after the conversations drained.
const FLUSH_SHARE_OF_DEADLINE: Duration = Duration::from_millis(500);

/// Ends the process at `deadline` if the graceful stop has not finished by then, so the node
/// always exits within `server.shutdown_timeout_ms` of the signal (before an orchestrator's
/// grace period runs out and it is killed without its producer flushed).
fn exit_at(deadline: Instant) {
    let spawned = std::thread::Builder::new()
        .name("parley-stop-deadline".to_owned())
        .spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            tracing::error!(
                "graceful stop did not finish within server.shutdown_timeout_ms: exiting"
            );
            std::process::exit(1);
        });
    if let Err(error) = spawned {
        tracing::warn!(error = %error, "cannot start the stop deadline thread");
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
