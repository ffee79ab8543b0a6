//! [`KafkaAuditLog`]: the audit log of a durable cluster's node, carried by the log.
//!
//! `append` produces the record (its JSON, as `ports::AuditRecord` serializes) to the audit
//! topic ([`AUDIT_TOPIC`], with the prefix) and returns once the brokers acknowledged it (the
//! idempotent producer of the event log, `acks=all`). Records are keyed by their actor, so one
//! actor's records keep their order in one partition; the order of the log is not the order of
//! the audit log anyway: queries sort by record id (UUIDv7: time, then a per-process counter).
//! Ingest consumes the topic ([`KafkaLog::audit_consumer`]) into MongoDB's `audit`
//! collection, idempotently by record id; `query` reads that collection.
//!
//! An append that fails (the brokers are down past `kafka.message_timeout_ms`) is counted in
//! [`KafkaAuditLog::records_lost`] and returned; the caller logs it (what the record describes
//! happened anyway).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use ports::{AuditLog, AuditPage, AuditQuery, AuditRecord, During, PortError};

use super::config::AUDIT_TOPIC;
use super::consumer::KafkaConsumer;
use super::log::KafkaLog;

/// Appends go to the audit topic; queries read where ingest writes the records.
pub struct KafkaAuditLog {
    log: KafkaLog,
    /// MongoDB's `audit` collection (written by ingest).
    records: Arc<dyn AuditLog>,
    lost: AtomicU64,
}

impl KafkaAuditLog {
    /// Appends through `log`'s producer; `records` answers queries.
    pub fn new(log: KafkaLog, records: Arc<dyn AuditLog>) -> Self {
        Self {
            log,
            records,
            lost: AtomicU64::new(0),
        }
    }

    /// Appends that failed since the start: records that never reached the log.
    pub fn records_lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl AuditLog for KafkaAuditLog {
    async fn append(&self, record: AuditRecord) -> Result<(), PortError> {
        let payload = serde_json::to_vec(&record).map_err(|error| {
            PortError::internal(During::new(
                format!("encoding audit record {}", record.id),
                error,
            ))
        })?;
        let appended = self
            .log
            .append_record(AUDIT_TOPIC, &record.actor, &record.id, payload)
            .await;
        if appended.is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
        appended
    }

    async fn query(&self, query: &AuditQuery) -> Result<AuditPage, PortError> {
        self.records.query(query).await
    }
}

impl KafkaLog {
    /// A member of `group` over the audit topic (ingest's audit consumer).
    pub fn audit_consumer(&self, group: &str) -> Result<KafkaConsumer<AuditRecord>, PortError> {
        KafkaConsumer::subscribe(Arc::new(self.config().clone()), group, &[AUDIT_TOPIC])
    }
}
