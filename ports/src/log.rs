//! The durable, ordered event log.

use std::time::Duration;

use async_trait::async_trait;
use wire::log::LogEvent;

use crate::PortError;

/// Where a record sits in the log. Offsets grow by one per record within a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogPosition {
    pub partition: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub position: LogPosition,
    pub event: LogEvent,
}

/// A record the log holds that is not a log event (a malformed payload): ingest sets it aside
/// with [`EventLog::set_aside`] and commits past it instead of stopping its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoisonedRecord {
    /// Where it sits, as the consumer that met it reports positions (what `commit` takes).
    pub position: LogPosition,
    /// The log's own name of its topic (with any prefix), partition and offset.
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// The payload exactly as read (empty when the record had none).
    pub payload: Vec<u8>,
    /// Why it does not decode.
    pub problem: String,
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` and returns once every one of them is durable (fsync'd, or acknowledged
    /// by all in-sync replicas). Concurrent callers are group-committed. Events of the same topic
    /// and conversation id keep their relative order for consumers; there is no order across
    /// topics (consumers rely on versions, not on cross-topic order). On error nothing may be assumed
    /// durable and the caller must report the send as not accepted.
    async fn append(&self, events: Vec<LogEvent>) -> Result<(), PortError>;

    /// Opens a consumer of `group` over `topics`, resuming after the group's committed positions
    /// (from the beginning for a new group).
    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn LogConsumer>, PortError>;

    /// Whether the log can take appends right now.
    async fn is_ready(&self) -> bool;

    /// Whether a failed `append` may still have made some of its events durable, e.g. a broker
    /// that wrote a record but whose acknowledgment was lost or timed out. When it may, callers
    /// must not reuse anything the events claimed (their seqs). The default is the safe answer.
    fn failed_appends_may_be_durable(&self) -> bool {
        true
    }

    /// Keeps `poisoned` where operators can find and replay it (Kafka: the dead-letter topic),
    /// returning once that is durable. Only logs whose consumers report poisoned records
    /// ([`LogConsumer::take_poisoned`]) keep them; the default refuses.
    async fn set_aside(&self, poisoned: &PoisonedRecord) -> Result<(), PortError> {
        Err(PortError::internal(format!(
            "this log keeps no dead letters (record {}/{}@{})",
            poisoned.topic, poisoned.partition, poisoned.offset
        )))
    }

    /// Waits, at most `timeout`, until whatever the log still buffers has reached durable
    /// storage or failed: the last step of a node's graceful stop. Logs whose `append` returns
    /// only once its events are durable have nothing buffered (the default).
    async fn flush(&self, timeout: Duration) -> Result<(), PortError> {
        let _ = timeout;
        Ok(())
    }
}

#[async_trait]
pub trait LogConsumer: Send {
    /// Waits up to `wait` for records and returns at most `max` of them, oldest first
    /// per partition. An empty vector means nothing arrived in time.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<LogRecord>, PortError>;

    /// Marks every record at or before each given position (per partition) as done for the
    /// group. After a restart the group resumes after the highest committed position.
    async fn commit(&mut self, positions: &[LogPosition]) -> Result<(), PortError>;

    /// How far the group is behind on each partition of the consumer's topics, assigned to this
    /// consumer or not (a partition nobody consumes must show), as
    /// `(broker-side topic, partition, records)`: the partition's end minus the group's committed
    /// position. Adapters that cannot tell report nothing (the default).
    async fn lag(&mut self) -> Result<Vec<(String, u32, u64)>, PortError> {
        Ok(Vec::new())
    }

    /// The record behind the `PortError::Corrupt` the last `poll` returned, if that error was a
    /// malformed record (taken: a second call returns `None`). Records before it were returned
    /// by earlier polls, so once it is set aside its position can be committed. Adapters whose
    /// records cannot be malformed return `None` (the default).
    fn take_poisoned(&mut self) -> Option<PoisonedRecord> {
        None
    }

    /// How many partitions the group has assigned to this consumer right now; `None` when the
    /// adapter cannot tell (the default).
    fn assigned_partitions(&self) -> Option<usize> {
        None
    }
}
