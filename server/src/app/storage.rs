//! The node's event log and store: embedded files, or Kafka and MongoDB in durable cluster mode.

use std::sync::Arc;

use anyhow::Context as _;
use persistence::kafka::{KafkaAuditLog, KafkaLog};
use persistence::mongo::MongoStore;
use persistence::{EmbeddedLog, EmbeddedStore, LogOptions};
use ports::{AuditLog, EventLog, Jobs, RetentionScan, Store, UserDataScan};
use wire::NodeId;

use crate::config::Settings;

/// The node's event log and store.
pub(super) struct Storage {
    pub(super) log: Arc<dyn EventLog>,
    pub(super) store: Arc<dyn Store>,
    /// The embedded store (standalone and Redis-only cluster mode): also the standalone
    /// directory, and written by an in-process ingest. `None` in durable mode.
    pub(super) embedded: Option<Arc<EmbeddedStore>>,
    /// The audit log: the embedded store, or in durable mode the audit topic (appends) and
    /// MongoDB's `audit` collection (queries; ingest writes it from the topic).
    pub(super) audit: Arc<dyn AuditLog>,
    /// The durable mode's audit log (for its loss counter).
    pub(super) kafka_audit: Option<Arc<KafkaAuditLog>>,
    /// Export and erasure job records: the embedded store, or MongoDB's `jobs` collection in
    /// durable mode.
    pub(super) jobs: Arc<dyn Jobs>,
    /// One user's messages across conversations (exports): the store.
    pub(super) user_data: Arc<dyn UserDataScan>,
    /// What the retention sweep scans: the store.
    pub(super) retention_scan: Arc<dyn RetentionScan>,
    /// The embedded log (standalone and Redis-only cluster mode), which the retention sweep
    /// prunes. `None` in durable mode.
    pub(super) embedded_log: Option<Arc<EmbeddedLog>>,
    /// The Kafka log in durable mode (for its metrics).
    pub(super) kafka: Option<KafkaLog>,
    /// For the start-up log line.
    pub(super) description: &'static str,
}

impl Storage {
    /// Kafka and MongoDB when `kafka.brokers` and `mongo.uri` are set, else the embedded files
    /// under `storage.data_dir`. Neither Kafka nor MongoDB needs to be up: both clients connect
    /// lazily and `/readyz` reports them until they answer.
    pub(super) async fn open(settings: &Settings, node_id: &NodeId) -> anyhow::Result<Self> {
        if settings.kafka.enabled() {
            return Self::open_durable(settings, node_id).await;
        }
        Self::open_embedded(settings)
    }

    async fn open_durable(settings: &Settings, node_id: &NodeId) -> anyhow::Result<Self> {
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
        let store = Arc::new(store);
        let audit = Arc::new(KafkaAuditLog::new(log.clone(), store.clone()));
        Ok(Self {
            log: Arc::new(log.clone()),
            store: store.clone(),
            audit: audit.clone(),
            kafka_audit: Some(audit),
            jobs: store.clone(),
            user_data: store.clone(),
            retention_scan: store,
            embedded: None,
            embedded_log: None,
            kafka: Some(log),
            description: "kafka+mongodb",
        })
    }

    fn open_embedded(settings: &Settings) -> anyhow::Result<Self> {
        let data_dir = &settings.storage.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create storage.data_dir {}", data_dir.display()))?;
        let log_dir = data_dir.join("log");
        persistence::embedded::migrate_redb_log(&data_dir.join("log.redb"), &log_dir)
            .with_context(|| {
                format!("cannot move log.redb to segments in {}", data_dir.display())
            })?;
        let log = Arc::new(
            EmbeddedLog::open_with(&log_dir, log_options(settings))
                .with_context(|| format!("cannot open the log in {}", log_dir.display()))?,
        );
        let store = Arc::new(
            EmbeddedStore::open_with_cache(
                &data_dir.join("store.redb"),
                store_cache_bytes(settings),
            )
            .with_context(|| format!("cannot open the store in {}", data_dir.display()))?,
        );
        // Ingest fills the store from this log: its batches need no fsync of their own.
        store.apply_behind(&log);
        tracing::info!(data_dir = %data_dir.display(), "embedded log and store");
        Ok(Self {
            log: log.clone(),
            embedded_log: Some(log),
            store: store.clone(),
            audit: store.clone(),
            kafka_audit: None,
            jobs: store.clone(),
            user_data: store.clone(),
            retention_scan: store.clone(),
            embedded: Some(store),
            kafka: None,
            description: "embedded",
        })
    }
}

/// The embedded store's cache (`storage.cache_mb`), in bytes.
fn store_cache_bytes(settings: &Settings) -> usize {
    let bytes = settings.storage.cache_mb.saturating_mul(1024 * 1024);
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// The embedded log's writer grouping (`storage.log_group_commit_delay_us`).
fn log_options(settings: &Settings) -> LogOptions {
    LogOptions {
        group_commit_delay: std::time::Duration::from_micros(
            settings.storage.log_group_commit_delay_us,
        ),
        ..LogOptions::default()
    }
}
