//! Where a consumer group stands on every partition of its topics: the group's committed offset
//! against the partition's end (high watermark). Measured over *every* partition of the topics,
//! not only those assigned to the member asking: a member that was given no partitions (a group
//! left "formed" with an empty assignment after a broker crash, issue #20) still sees the lag
//! nobody is consuming.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::client::KafkaContext;

/// One partition of the group's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStanding {
    /// Broker-side topic name.
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (next record to read); `None` when it never committed here.
    pub committed: Option<i64>,
    /// Records between the committed offset (the partition's start when none) and the end.
    pub lag: u64,
}

/// How many partitions of the group's topics this member is assigned, and the standing of each
/// partition of the topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStanding {
    pub assigned_partitions: usize,
    pub partitions: Vec<PartitionStanding>,
}

impl GroupStanding {
    /// Records the group has not consumed, over all partitions.
    pub fn total_lag(&self) -> u64 {
        self.partitions.iter().map(|standing| standing.lag).sum()
    }
}

/// Blocking: a metadata request, then two or three offset requests (committed offsets of the
/// group, end offsets, start offsets when some partition has no commit), each bounded by
/// `timeout`, whatever the number of partitions. Partitions the broker reports no offset for
/// are left out. `consumer` is an observer with the group's id that never subscribes: a full
/// metadata request on the member itself makes librdkafka re-check its subscription, and with
/// Tansu that kept the group rebalancing.
pub fn group_standing(
    consumer: &BaseConsumer<KafkaContext>,
    assigned_partitions: usize,
    topics: &[String],
    timeout: Duration,
) -> Result<GroupStanding, KafkaError> {
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut every_partition = TopicPartitionList::new();
    for topic in metadata.topics() {
        if !topics.iter().any(|name| name == topic.name()) || topic.error().is_some() {
            continue;
        }
        for partition in topic.partitions() {
            every_partition.add_partition(topic.name(), partition.id());
        }
    }
    if every_partition.count() == 0 {
        return Ok(GroupStanding {
            assigned_partitions,
            partitions: Vec::new(),
        });
    }
    // ListOffsets with the special timestamps -1 (end) and -2 (start), for all partitions at once.
    let offsets_at = |which: Offset| -> Result<TopicPartitionList, KafkaError> {
        let mut list = every_partition.clone();
        list.set_all_offsets(which)?;
        consumer.offsets_for_times(list, timeout)
    };
    let committed = consumer.committed_offsets(every_partition.clone(), timeout)?;
    let ends = offsets_at(Offset::End)?;
    let uncommitted = committed
        .elements()
        .iter()
        .any(|element| !matches!(element.offset(), Offset::Offset(_)));
    let starts = if uncommitted {
        Some(offsets_at(Offset::Beginning)?)
    } else {
        None
    };
    let offset_in = |list: &TopicPartitionList, topic: &str, partition: i32| {
        let element = list.find_partition(topic, partition)?;
        match (element.error(), element.offset()) {
            (Ok(()), Offset::Offset(offset)) => Some(offset),
            _ => None,
        }
    };
    let mut partitions = Vec::with_capacity(committed.count());
    for element in committed.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let Some(end) = offset_in(&ends, topic, partition) else {
            continue;
        };
        let committed_offset = match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        };
        let position = committed_offset.or_else(|| {
            starts
                .as_ref()
                .and_then(|starts| offset_in(starts, topic, partition))
        });
        let Some(position) = position else {
            continue;
        };
        partitions.push(PartitionStanding {
            topic: topic.to_owned(),
            partition,
            committed: committed_offset,
            lag: u64::try_from(end.saturating_sub(position)).unwrap_or(0),
        });
    }
    Ok(GroupStanding {
        assigned_partitions,
        partitions,
    })
}
