//! Kafka adapter of the event log for cluster mode (rdkafka over bundled librdkafka).
//!
//! - [`config`]: [`KafkaConfig`] (brokers, client id, topic prefix, timeouts).
//! - [`client`]: the librdkafka client settings shared by producer, consumers and admin, the
//!   mapping of Kafka failures onto `PortError` (transport trouble and timeouts → `Unavailable`),
//!   and [`client::KafkaContext`], which logs librdkafka's errors: fatal and permission errors at
//!   error, broker trouble librdkafka retries at most once per 5 s per client at warn.
//! - [`log`]: [`KafkaLog`], the idempotent producer behind `EventLog::append` (replaced by a new
//!   one after a timed-out or fatal append), explicit topic creation
//!   ([`KafkaLog::ensure_topics`]) and readiness.
//! - [`consumer`]: [`KafkaConsumer`], a consumer-group member behind `LogConsumer`, how a
//!   `LogPosition` names a (topic, partition) pair, and which consumer errors reach the caller
//!   (transport trouble does not: librdkafka retries it).
//! - [`lag`]: where the group stands on every partition of its topics (committed offset against
//!   the end), assigned to the asking member or not.
//! - [`audit`]: [`KafkaAuditLog`], the node's audit log in durable mode: appends to the audit
//!   topic, queries MongoDB (where ingest writes the topic).
//! - [`stall`]: [`stall::StallWatch`], which tells a consumer that its group stopped making
//!   progress (records left, offsets not moving) so it can re-join.
//!
//! One record per event on the topic `topic_prefix + event.body.topic()`, keyed by the
//! conversation id (one conversation's events stay ordered in one partition), JSON payload (the
//! `LogEvent`), headers `event_id`, `v` and `appended_at_us` (see [`consumer`]). Audit records go
//! to a topic of their own (`audit`), keyed by actor, headers `record_id` and `appended_at_us`.

pub mod audit;
pub mod client;
pub mod config;
pub mod consumer;
pub mod lag;
pub mod log;
pub mod stall;

pub use audit::KafkaAuditLog;
pub use config::{KafkaConfig, AUDIT_TOPIC};
pub use consumer::KafkaConsumer;
pub use log::KafkaLog;
