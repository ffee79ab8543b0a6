//! Start-up as named steps, then the graceful stop. [`run`] reads as the order: bind the
//! listener, open the storage, build the node, build the HTTP server, start the background
//! tasks, become ready, serve until the stop signal, then [`shutdown::drain`].
//!
//! - `state`: [`AppState`], shared by the HTTP handlers, and the readiness check.
//! - `storage`: the event log and store (embedded files, or Kafka and MongoDB in durable cluster
//!   mode).
//! - `http_server`: the actix HTTP server with the WebSocket upgrade.
//! - `search`: the search index and its indexer (standalone), and their `/readyz` details.
//! - `background`: the ingest, search indexer, router, stored-ack relay, presence sweep and dependency check.
//! - `fresh_store`: the node's view of the embedded store, whose reads wait for the in-process
//!   ingest when they would miss.
//! - `shutdown`: the drain order, from the stop signal to the exit.

mod background;
mod fresh_store;
mod http_server;
mod search;
mod shutdown;
mod state;
mod storage;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actors::Node;
use anyhow::Context as _;
use bootstrap::LastCheck;
use ingest::IngestPipeline;
use wire::NodeId;

use crate::adapters::Adapters;
use crate::auth::Authenticator;
use crate::config::{Loaded, SecretSource, Settings, DEV_API_KEY};
use crate::metrics::NodeMetrics;
use crate::retention::{RetentionMetrics, RetentionSweeper};
use background::Background;
use persistence::redis::RedisLease;
pub use search::SearchStatus;
pub use state::AppState;
use storage::Storage;

/// Runs a node (standalone, Redis cluster or durable cluster mode) until it is stopped
/// (SIGINT/SIGTERM).
pub async fn run(loaded: Loaded) -> anyhow::Result<()> {
    report_secret_sources(&loaded);
    crate::web_chat::report(&loaded.settings);
    let settings = loaded.settings;
    let bound = Bound::bind(&settings)?;
    let storage = Storage::open(&settings, &bound.node_id).await?;
    let built = build_node(settings, &bound, &storage)?;
    let state = built.state;
    let server = http_server::build(bound.listener, bound.local_addr, state.clone())?;
    // The one line scripts wait for.
    println!("parley-server listening on {}", bound.local_addr);
    tracing::info!(
        node_id = %bound.node_id,
        address = %bound.local_addr,
        storage = storage.description,
        "listening"
    );
    let sweeper = retention_sweeper(&state, &storage);
    let background = Background::start(
        &state,
        built.ingest,
        built.indexer,
        built.redis_presence,
        sweeper,
    )
    .await?;
    state.ready.store(true, Ordering::Release);
    tracing::info!("ready");
    let http = http_server::serve(server);
    bootstrap::wait_for_stop_signal().await;
    shutdown::drain(&state, http, background).await
}

/// Says where the API key and the JWT secret came from (never their values), loudly when they
/// are the public development defaults.
fn report_secret_sources(loaded: &Loaded) {
    tracing::info!(
        api_key_source = %loaded.api_key_source,
        jwt_secret_source = %loaded.jwt_secret_source,
        "auth secrets"
    );
    if loaded.api_key_source == SecretSource::DevDefault {
        tracing::warn!(
            api_key = DEV_API_KEY,
            "USING THE DEVELOPMENT API KEY: set PARLEY__AUTH__API_KEY for anything but local development"
        );
    }
    if loaded.jwt_secret_source == SecretSource::DevDefault {
        tracing::warn!("USING THE DEVELOPMENT JWT SECRET: set PARLEY__AUTH__JWT_SECRET for anything but local development");
    }
    let settings = &loaded.settings;
    if let (Some(key), true) = (settings.dev_secret_in_use(), settings.binds_publicly()) {
        // Validation let it through: auth.allow_dev_secrets_on_public_bind is set.
        tracing::warn!(
            key,
            bind = %settings.server.bind,
            "PUBLIC DEVELOPMENT SECRET ON A NON-LOOPBACK ADDRESS (auth.allow_dev_secrets_on_public_bind): anyone can mint tokens or call the HTTP API"
        );
    }
}

/// The bound HTTP listener, and the names the node takes from its address.
struct Bound {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// `server.node_id`, or `$HOSTNAME-port`.
    node_id: NodeId,
    /// The WebSocket URLs the token endpoint hands out: `server.public_urls`, or this listener's.
    socket_urls: Vec<String>,
}

impl Bound {
    fn bind(settings: &Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.bind_addr())
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
        Ok(Self {
            listener,
            local_addr,
            node_id,
            socket_urls,
        })
    }
}

/// The node, the state its handlers share, and what the background tasks will take.
struct Built {
    state: Arc<AppState>,
    ingest: Option<IngestPipeline>,
    indexer: Option<::search::Indexer>,
    redis_presence: Option<Arc<persistence::redis::RedisPresence>>,
}

/// Builds the adapters over `storage`, the node over them, and the shared state (not ready).
fn build_node(settings: Settings, bound: &Bound, storage: &Storage) -> anyhow::Result<Built> {
    let mut adapters = crate::adapters::build(
        &settings,
        storage.log.clone(),
        storage.store.clone(),
        storage.embedded.clone(),
    )?;
    let ingest = background::in_process_ingest(storage, &settings.ingest);
    if let Some(ingest) = &ingest {
        // The node's reads wait for its ingest when they would miss; the sequencer, which
        // built the adapters with the plain store, misses on every new send and must not.
        adapters.ports.store = Arc::new(fresh_store::FreshStore::new(
            storage.store.clone(),
            ingest.barrier(),
        ));
    }
    let search = search::open(&settings, storage)?;
    let metrics = node_metrics(storage, ingest.as_ref(), &adapters);
    if let Some(search) = &search {
        adapters.ports.search = Some(search.reader.clone());
        if let Some(indexer) = &search.indexer {
            indexer.metrics().register(&metrics.registry)?;
        }
    }
    let search_status = search.as_ref().map(SearchStatus::of);
    let attachments = crate::attachments::open(&settings, bound.local_addr, &metrics.registry)?;
    let sanctions = adapters.sanctions;
    let mut ports = adapters.ports;
    ports.audit = Some(storage.audit.clone());
    ports.blobs = attachments
        .as_ref()
        .map(|service| service.attachments.blobs().clone());
    let node = Node::new(
        bound.node_id.clone(),
        ports,
        settings.limits(),
        metrics.actors.clone(),
    );
    let admin = crate::admin::Admin::new(sanctions, &metrics.registry);
    let leases = job_leases(&node, storage, &adapters.redis_clients);
    let erasures = erasures(&node, storage, leases.clone(), &metrics);
    let export = exporter(&settings, &node, storage, leases, &metrics);
    let state = Arc::new(AppState {
        node,
        auth: Authenticator::new(
            &settings.auth.jwt_secret,
            &settings.auth.api_key,
            &settings.auth.admin_api_key,
        ),
        admin,
        jobs: storage.jobs.clone(),
        erasures,
        export,
        settings,
        metrics,
        ready: Arc::new(AtomicBool::new(false)),
        socket_urls: bound.socket_urls.clone(),
        attachments,
        log: storage.log.clone(),
        store: storage.store.clone(),
        redis_clients: adapters.redis_clients,
        redis_bus: adapters.redis_bus,
        dependencies: LastCheck::new((false, "dependencies not checked yet")),
        stored_acks: Arc::default(),
        store_may_degrade: storage.embedded.is_none(),
        store_seen_ready: AtomicBool::new(false),
        search: search_status,
    });
    Ok(Built {
        state,
        ingest,
        indexer: search.and_then(|search| search.indexer),
        redis_presence: adapters.redis_presence,
    })
}

/// The leases of the node's jobs: Redis leases in durable mode (shared job records).
fn job_leases(
    node: &Node,
    storage: &Storage,
    redis_clients: &[(&'static str, persistence::redis::RedisClient)],
) -> crate::job_lease::JobLeases {
    let client = storage.kafka.as_ref().and_then(|_| {
        (redis_clients.iter())
            .find(|(role, _)| *role == "redis state")
            .map(|(_, client)| client.clone())
    });
    crate::job_lease::JobLeases::new(client, node.node_id().clone())
}

/// The node's erasure jobs; in durable mode (shared job records) runs take a Redis lease.
fn erasures(
    node: &Node,
    storage: &Storage,
    leases: crate::job_lease::JobLeases,
    metrics: &NodeMetrics,
) -> crate::erasure::Erasures {
    crate::erasure::Erasures::new(
        node.clone(),
        storage.jobs.clone(),
        storage.retention_scan.clone(),
        leases,
        crate::erasure::ErasureMetrics::new(&metrics.registry),
    )
}

/// The exports of users' data, into the node's blob store (`None` without one).
fn exporter(
    settings: &Settings,
    node: &Node,
    storage: &Storage,
    leases: crate::job_lease::JobLeases,
    metrics: &NodeMetrics,
) -> Option<Arc<crate::export::Exporter>> {
    // Registered with or without exports, so dashboards find the series.
    let job_metrics = crate::export::JobMetrics::new(&metrics.registry);
    let ports = node.ports();
    let export_ports = crate::export::ExportPorts {
        jobs: storage.jobs.clone(),
        directory: ports.directory.clone(),
        store: storage.store.clone(),
        scan: storage.user_data.clone(),
        blobs: ports.blobs.clone()?,
        audit: storage.audit.clone(),
    };
    Some(Arc::new(crate::export::Exporter::new(
        export_ports,
        node.node_id().clone(),
        std::time::Duration::from_secs(settings.export.download_url_ttl_secs),
        job_metrics,
        leases,
    )))
}

/// The retention sweep over the node's store; in durable mode under the cluster's lease (the
/// nodes share the store), else over this node's own embedded store.
fn retention_sweeper(state: &AppState, storage: &Storage) -> RetentionSweeper {
    let node = &state.node;
    let lease = storage
        .kafka
        .as_ref()
        .and_then(|_| state.redis_role("redis state"))
        .map(|client| RedisLease::new(client, "retention-sweep", node.node_id().as_str()));
    RetentionSweeper {
        node: node.clone(),
        scan: storage.retention_scan.clone(),
        settings: state.settings.retention.clone(),
        embedded_log: storage.embedded_log.clone(),
        lease,
        metrics: RetentionMetrics::new(&state.metrics.registry),
    }
}

/// The node's metrics, with the ingest's, the Redis bus's, the Kafka producer's and the audit
/// topic's losses when the node has them.
fn node_metrics(
    storage: &Storage,
    ingest: Option<&IngestPipeline>,
    adapters: &Adapters,
) -> NodeMetrics {
    let mut metrics = NodeMetrics::new();
    if let Some(ingest) = ingest {
        metrics = metrics.with_ingest(ingest.metrics());
    }
    if let Some(bus) = &adapters.redis_bus {
        metrics = metrics.with_redis_bus(bus.clone());
    }
    if let Some(kafka) = &storage.kafka {
        metrics = metrics.with_kafka(kafka.clone());
    }
    if let Some(log) = &storage.embedded_log {
        metrics = metrics.with_embedded_log(log.clone());
    }
    if let Some(audit) = &storage.kafka_audit {
        metrics = metrics.with_kafka_audit(audit.clone());
    }
    metrics
}
