//! The event-log contract suite against `KafkaLog` over a real, private Tansu broker (see
//! `common/tansu.rs`), plus what only Kafka shows: keyed partitioning across several partitions,
//! group resumption across topics, and failing fast when the broker is gone.

// Each test crate uses part of `common` (this one: the Tansu broker).
#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tansu::{free_port, TansuBroker};
use persistence::kafka::{KafkaConfig, KafkaLog, AUDIT_TOPIC};
use ports::contract::fixtures::{log_event, sent_event, unique};
use ports::contract::{self, Fixture};
use ports::{EventLog, LogConsumer, LogRecord, PortError};
use wire::log::{topics, LogEvent, LogEventBody};
use wire::{ConversationId, MessageId, Seq, UserId};

const PARTITIONS: i32 = 3;

/// Test settings: short timeouts so failures show quickly, the broker's minimum session timeout,
/// one record per batch (Tansu 0.6 cannot fetch from an offset inside a batch).
fn config(brokers: String) -> KafkaConfig {
    KafkaConfig::new(brokers)
        .with_client_id(unique("parley-test"))
        .with_max_batch_records(1)
        .with_message_timeout(Duration::from_secs(3))
        .with_session_timeout(Duration::from_secs(6))
}

/// A log over `broker` whose topics exist (`PARTITIONS` partitions each).
async fn ready_log(broker: &TansuBroker) -> KafkaLog {
    let log = KafkaLog::new(config(broker.brokers())).expect("kafka log");
    log.ensure_topics(PARTITIONS, 1)
        .await
        .unwrap_or_else(|error| panic!("ensure topics: {error}\nbroker log:\n{}", broker.log()));
    log
}

/// Polls `consumer` until `count` records of `conversations` arrived (10 s at most).
async fn poll_for(
    consumer: &mut Box<dyn LogConsumer>,
    count: usize,
    conversations: &BTreeSet<ConversationId>,
) -> Vec<LogRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = Vec::new();
    while found.len() < count {
        assert!(
            Instant::now() < deadline,
            "expected {count} records, got {}",
            found.len()
        );
        let records = consumer
            .poll(100, Duration::from_millis(200))
            .await
            .expect("poll");
        found.extend(
            records
                .into_iter()
                .filter(|record| conversations.contains(record.event.body.conversation_id())),
        );
    }
    found
}

fn stored_event(conversation_id: &ConversationId, seq: u64) -> LogEvent {
    log_event(LogEventBody::MessageStored {
        conversation_id: conversation_id.clone(),
        message_id: MessageId::new(unique("message")),
        seq: Seq(seq),
        sender_id: UserId::new("sender"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_log_keeps_the_event_log_contract() {
    let broker = TansuBroker::start();
    let log = ready_log(&broker).await;
    log.ensure_topics(PARTITIONS, 1)
        .await
        .expect("ensure_topics again: existing topics are fine");
    contract::event_log_suite(|| {
        let port: Arc<dyn EventLog> =
            Arc::new(KafkaLog::new(config(broker.brokers())).expect("kafka log"));
        async move { Fixture::unguarded(port) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_conversation_stays_in_order_in_one_partition() {
    let broker = TansuBroker::start();
    let log = Arc::new(ready_log(&broker).await);
    let sender = UserId::new(unique("sender"));
    let conversations: Vec<ConversationId> = (0..12)
        .map(|index| ConversationId::new(unique(&format!("keyed-{index}"))))
        .collect();
    // Concurrent appenders, each sending one conversation's events in several appends.
    let mut appenders = Vec::new();
    for conversation_id in conversations.clone() {
        let log = Arc::clone(&log);
        let sender = sender.clone();
        appenders.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for chunk in 0..3u64 {
                let events: Vec<LogEvent> = (1..=4)
                    .map(|seq| sent_event(&conversation_id, chunk * 4 + seq, &sender))
                    .collect();
                log.append(events.clone()).await.expect("append");
                sent.extend(events.into_iter().map(|event| event.event_id));
            }
            (conversation_id, sent)
        }));
    }
    let mut expected: BTreeMap<ConversationId, Vec<String>> = BTreeMap::new();
    for appender in appenders {
        let (conversation_id, sent) = appender.await.expect("appender");
        expected.insert(conversation_id, sent);
    }

    let wanted: BTreeSet<ConversationId> = conversations.iter().cloned().collect();
    let mut consumer = log
        .consumer(&unique("group"), &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_for(&mut consumer, 12 * 12, &wanted).await;
    let mut seen: BTreeMap<ConversationId, Vec<&LogRecord>> = BTreeMap::new();
    for record in &records {
        seen.entry(record.event.body.conversation_id().clone())
            .or_default()
            .push(record);
    }
    let mut partitions_used = BTreeSet::new();
    for (conversation_id, sent) in &expected {
        let got = &seen[conversation_id];
        let ids: Vec<String> = got
            .iter()
            .map(|record| record.event.event_id.clone())
            .collect();
        assert_eq!(&ids, sent, "{conversation_id}: append order kept");
        let partitions: BTreeSet<u32> =
            got.iter().map(|record| record.position.partition).collect();
        assert_eq!(partitions.len(), 1, "{conversation_id}: one partition");
        partitions_used.extend(partitions);
        assert!(
            got.windows(2)
                .all(|pair| pair[0].position.offset < pair[1].position.offset),
            "{conversation_id}: offsets grow"
        );
    }
    assert!(
        partitions_used.len() > 1,
        "12 conversations spread over the {PARTITIONS} partitions: {partitions_used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_resumes_after_the_commit_on_every_topic() {
    let broker = TansuBroker::start();
    let log = ready_log(&broker).await;
    let sender = UserId::new(unique("sender"));
    let conversation_id = ConversationId::new(unique("resume"));
    let sent: Vec<LogEvent> = (1..=4)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    let stored: Vec<LogEvent> = (1..=4)
        .map(|seq| stored_event(&conversation_id, seq))
        .collect();
    log.append(sent.iter().chain(&stored).cloned().collect())
        .await
        .expect("append");
    let wanted = BTreeSet::from([conversation_id.clone()]);
    let both = [topics::MESSAGE_SENT, topics::MESSAGE_DELIVERED];
    let group = unique("group");

    let mut first = log.consumer(&group, &both).await.expect("consumer");
    let records = poll_for(&mut first, 8, &wanted).await;
    let of_topic = |records: &[LogRecord], topic: &str| -> Vec<LogRecord> {
        records
            .iter()
            .filter(|record| record.event.body.topic() == topic)
            .cloned()
            .collect()
    };
    let first_sent = of_topic(&records, topics::MESSAGE_SENT);
    let first_stored = of_topic(&records, topics::MESSAGE_DELIVERED);
    assert_ne!(
        first_sent[0].position.partition, first_stored[0].position.partition,
        "positions of different topics never compare as one partition"
    );
    // Commit one record of message.sent and three of message.delivered.
    first
        .commit(&[
            first_sent[0].position,
            first_stored[2].position,
            first_stored[1].position,
        ])
        .await
        .expect("commit");
    drop(first);

    let mut second = log.consumer(&group, &both).await.expect("consumer");
    let records = poll_for(&mut second, 4, &wanted).await;
    let ids: BTreeSet<String> = records
        .iter()
        .map(|record| record.event.event_id.clone())
        .collect();
    let expected: BTreeSet<String> = sent[1..]
        .iter()
        .chain(&stored[3..])
        .map(|event| event.event_id.clone())
        .collect();
    assert_eq!(ids, expected, "resumes after each topic's committed offset");
    assert_eq!(
        of_topic(&records, topics::MESSAGE_SENT)
            .iter()
            .map(|record| record.event.event_id.clone())
            .collect::<Vec<_>>(),
        sent[1..]
            .iter()
            .map(|event| event.event_id.clone())
            .collect::<Vec<_>>(),
        "in order"
    );
    assert!(
        second
            .poll(100, Duration::from_millis(300))
            .await
            .expect("poll")
            .iter()
            .all(|record| !wanted.contains(record.event.body.conversation_id())),
        "nothing committed comes again"
    );
}

/// Issue #20: a member sees its group's lag on every partition of its topics, assigned to it or
/// not, and a group whose lag does not move for the stall timeout is reported, so that its
/// owner re-joins with a new consumer (which resumes after the committed offsets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_covers_unassigned_partitions_and_a_group_without_progress_is_reported_stalled() {
    let broker = TansuBroker::start();
    let log = ready_log(&broker).await;
    let sender = UserId::new(unique("sender"));
    let conversation_id = ConversationId::new(unique("stall"));
    let sent: Vec<LogEvent> = (1..=4)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    log.append(sent).await.expect("append");
    let wanted = BTreeSet::from([conversation_id.clone()]);
    let group = unique("group");
    let watching =
        KafkaLog::new(config(broker.brokers()).with_stall_timeout(Duration::from_secs(3)))
            .expect("kafka log");

    let mut consumer = watching
        .consumer(&group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    // Never polled: the member has joined nothing and holds no partition.
    let lags = consumer.lag().await.expect("lag");
    assert_eq!(
        lags.len(),
        PARTITIONS as usize,
        "every partition of the topic, none assigned: {lags:?}"
    );
    assert_eq!(lags.iter().map(|(_, _, records)| records).sum::<u64>(), 4);

    // The member consumes but the group never commits: its lag does not move.
    poll_for(&mut consumer, 4, &wanted).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let stalled = loop {
        assert!(Instant::now() < deadline, "the stall was never reported");
        match consumer.poll(100, Duration::from_millis(200)).await {
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    assert!(
        matches!(stalled, PortError::Unavailable { .. }),
        "{stalled:?}"
    );
    let reason = stalled.to_string();
    assert!(
        reason.contains("consumer group stalled: 4 records behind"),
        "{reason}"
    );
    assert!(reason.contains("message.sent/"), "{reason}");

    // Re-joining with a new member resumes where the group stands.
    drop(consumer);
    let mut rejoined = watching
        .consumer(&group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_for(&mut rejoined, 4, &wanted).await;
    let positions: Vec<_> = records.iter().map(|record| record.position).collect();
    rejoined.commit(&positions).await.expect("commit");
    let lags = rejoined.lag().await.expect("lag");
    assert_eq!(lags.iter().map(|(_, _, records)| records).sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_fail_fast_when_no_broker_listens() {
    let nobody = format!("127.0.0.1:{}", free_port());
    let log = KafkaLog::new(KafkaConfig::new(nobody).with_message_timeout(Duration::from_secs(1)))
        .expect("creating the log does not need the broker");
    assert!(!log.is_ready().await, "not ready without a broker");
    let event = sent_event(
        &ConversationId::new(unique("dead")),
        1,
        &UserId::new("sender"),
    );
    let started = Instant::now();
    let result = log.append(vec![event]).await;
    assert!(
        matches!(result, Err(PortError::Unavailable { .. })),
        "append without a broker is unavailable: {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "failed within the message timeout, took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_fail_fast_after_the_broker_died() {
    let mut broker = TansuBroker::start();
    let log = KafkaLog::new(config(broker.brokers()).with_message_timeout(Duration::from_secs(2)))
        .expect("kafka log");
    log.ensure_topics(PARTITIONS, 1)
        .await
        .expect("ensure topics");
    assert!(log.is_ready().await, "ready with a broker");
    let conversation_id = ConversationId::new(unique("dying"));
    let sender = UserId::new("sender");
    log.append(vec![sent_event(&conversation_id, 1, &sender)])
        .await
        .expect("append while the broker runs");

    broker.kill();
    let started = Instant::now();
    let result = log
        .append(vec![sent_event(&conversation_id, 2, &sender)])
        .await;
    assert!(
        matches!(result, Err(PortError::Unavailable { .. })),
        "append after the broker died is unavailable: {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed within the message timeout, took {:?}",
        started.elapsed()
    );
    assert!(!log.is_ready().await, "not ready once the broker is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_gives_the_topics_the_configured_retention() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::ClientConfig;

    let broker = TansuBroker::start();
    let mut with_retention = config(broker.brokers());
    with_retention.topic_retention_ms = Some(3_600_000);
    with_retention.audit_retention_ms = Some(7_200_000);
    let topic = with_retention.topic_name(topics::MESSAGE_SENT);
    let audit = with_retention.topic_name(AUDIT_TOPIC);
    let log = KafkaLog::new(with_retention).expect("kafka log");
    log.ensure_topics(PARTITIONS, 1)
        .await
        .unwrap_or_else(|error| panic!("create: {error}\nbroker log:\n{}", broker.log()));
    log.ensure_topics(PARTITIONS, 1)
        .await
        .expect("existing topics: their retention is changed where the broker allows it");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .expect("admin client");
    // The log's topics get the log's retention, the audit topic its own.
    for (name, expected) in [(&topic, "3600000"), (&audit, "7200000")] {
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(name)], &AdminOptions::new())
            .await
            .expect("describe configs");
        let resource = described
            .into_iter()
            .next()
            .expect("one resource")
            .expect("the topic's configs");
        let retention = resource
            .get("retention.ms")
            .and_then(|entry| entry.value.clone());
        assert_eq!(retention.as_deref(), Some(expected), "{name}: {resource:?}");
    }
}
