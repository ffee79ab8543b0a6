//! The real `ingest` binary against a private Tansu (Kafka protocol) and SecantusDB (MongoDB
//! wire), both started by `common/`: `setup` creates the topics and indexes; `run` listens
//! before MongoDB exists, turns ready once it does, ingests what is appended to the log,
//! acknowledges it on `message.delivered` and exits 0 on SIGTERM. Plus the command line's
//! failures (bad configuration: 2; setup past its deadline: 1).
//!
//! Each test's `IngestProcess` prints the binary's log when the test fails.

// persistence's service helpers, shared rather than copied; this test uses Tansu and SecantusDB.
#[allow(dead_code)]
#[path = "../../persistence/tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::secantus::SecantusServer;
use common::tansu::{free_port, TansuBroker};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use persistence::kafka::KafkaLog;
use persistence::mongo::{MESSAGES_COLLECTION, PARTICIPANTS_COLLECTION};
use ports::contract::fixtures::{sent_event, unique};
use ports::EventLog;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use support::{
    eventually, get, ingest_env, probe, samples, test_kafka_config, IngestProcess, PARTITIONS,
    PATIENCE,
};
use wire::log::{topics, LogEventBody};
use wire::{ConversationId, MessageId, UserId};

/// Topic name → partition count, as the broker reports them.
fn broker_topics(brokers: &str) -> BTreeMap<String, usize> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("metadata client");
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(5))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .map(|topic| (topic.name().to_owned(), topic.partitions().len()))
        .collect()
}

async fn index_names(database: &mongodb::Database, collection: &str) -> BTreeSet<String> {
    database
        .collection::<Document>(collection)
        .list_index_names()
        .await
        .expect("list indexes")
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_the_topics_and_the_indexes() {
    let broker = TansuBroker::start();
    let mongo = SecantusServer::start();
    let database_name = unique("ingest_setup").replace('-', "_");
    let env = ingest_env(&broker.brokers(), &mongo.uri(), &database_name);

    for round in ["first", "again (idempotent)"] {
        let mut setup = IngestProcess::start(&["setup", "--timeout-secs", "60"], &env);
        assert_eq!(
            setup.line().await.as_deref(),
            Some("ingest setup done"),
            "{round}"
        );
        let status = setup.exit_status().await;
        assert!(status.success(), "{round}: {status}\n{}", setup.log());
    }

    let created = broker_topics(&broker.brokers());
    for topic in topics::ALL {
        assert_eq!(
            created.get(topic),
            Some(&(PARTITIONS as usize)),
            "topic {topic} in {created:?}"
        );
    }
    assert_eq!(
        created.get(persistence::kafka::config::DEFAULT_DEAD_LETTER_TOPIC),
        Some(&(PARTITIONS as usize)),
        "the dead-letter topic in {created:?}"
    );
    let client = mongodb::Client::with_uri_str(mongo.uri())
        .await
        .expect("mongodb client");
    let database = client.database(&database_name);
    let messages = index_names(&database, MESSAGES_COLLECTION).await;
    for index in [
        "conversation_seq",
        "message_id",
        "conversation_sender_client_msg",
    ] {
        assert!(messages.contains(index), "{index} in {messages:?}");
    }
    let participants = index_names(&database, PARTICIPANTS_COLLECTION).await;
    assert!(
        participants.contains("conversation_user"),
        "{participants:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_waits_for_mongodb_then_ingests_acknowledges_and_stops_on_sigterm() {
    let broker = TansuBroker::start();
    let log = KafkaLog::new(test_kafka_config(broker.brokers())).expect("kafka log");
    log.ensure_topics(PARTITIONS, 1)
        .await
        .unwrap_or_else(|error| panic!("ensure topics: {error}\n{}", broker.log()));
    let mongo_port = free_port();
    let mongo_uri = format!("mongodb://127.0.0.1:{mongo_port}/");
    let database_name = unique("ingest_run").replace('-', "_");
    let env = ingest_env(&broker.brokers(), &mongo_uri, &database_name);

    // Started before MongoDB exists: it listens and says why it is not ready.
    let mut ingest = IngestProcess::start(&["run"], &env);
    let address = ingest.listening_address().await;
    assert_ne!(address.port(), 0);
    assert_eq!(get(address, "/healthz").await, (200, "ok".to_owned()));
    // Dependencies are checked in the background: wait for the first check's verdict.
    let reason = eventually(&ingest, "the first dependency check", || async {
        let (status, reason) = get(address, "/readyz").await;
        assert_eq!(status, 503, "{reason}");
        (!reason.contains("not checked yet")).then_some(reason)
    })
    .await;
    assert!(reason.contains("mongodb unavailable"), "{reason}");
    // The container health check (`ingest probe URL`) follows: live, not ready.
    assert!(probe(&format!("http://{address}/healthz")));
    assert!(!probe(&format!("http://{address}/readyz")));

    // MongoDB appears: ready without a restart.
    let mongo = SecantusServer::start_on_port(mongo_port);
    eventually(&ingest, "ready once mongodb runs", || async {
        (get(address, "/readyz").await == (200, "ready".to_owned())).then_some(())
    })
    .await;
    assert!(probe(&format!("http://{address}/readyz")));

    // Sends appended to the log end up in MongoDB and are acknowledged on message.delivered.
    let conversation_id = ConversationId::new(unique("ingest-binary"));
    let sender = UserId::new(unique("sender"));
    let events: Vec<_> = (1..=3)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    let sent_ids: BTreeSet<MessageId> = events
        .iter()
        .filter_map(|event| match &event.body {
            LogEventBody::MessageSent { record } => Some(record.message.message_id.clone()),
            _ => None,
        })
        .collect();
    log.append(events).await.expect("append sends");

    let messages = support::messages_collection(&mongo.uri(), &database_name).await;
    let stored: Vec<Document> = eventually(&ingest, "messages in mongodb", || async {
        let found: Vec<Document> = messages
            .find(doc! { "conversation_id": conversation_id.as_str() })
            .sort(doc! { "seq": 1 })
            .await
            .ok()?
            .try_collect()
            .await
            .ok()?;
        (found.len() == sent_ids.len()).then_some(found)
    })
    .await;
    let stored_ids: BTreeSet<MessageId> = stored
        .iter()
        .map(|document| MessageId::new(document.get_str("message_id").expect("message_id")))
        .collect();
    assert_eq!(stored_ids, sent_ids);

    let mut acks = log
        .consumer(&unique("acks"), &[topics::MESSAGE_DELIVERED])
        .await
        .expect("acks consumer");
    let mut acknowledged = BTreeSet::new();
    let deadline = Instant::now() + PATIENCE;
    while !sent_ids.is_subset(&acknowledged) {
        assert!(
            Instant::now() < deadline,
            "message.stored for {:?} only\n{}",
            acknowledged,
            ingest.log()
        );
        for record in acks
            .poll(64, Duration::from_millis(200))
            .await
            .expect("poll acks")
        {
            if let LogEventBody::MessageStored { message_id, .. } = record.event.body {
                acknowledged.insert(message_id);
            }
        }
    }

    // The metrics saw it, and the lag of the assigned partitions goes back to 0.
    let (status, metrics) = get(address, "/metrics").await;
    assert_eq!(status, 200);
    let applied = samples(&metrics, "parley_ingest_events_applied_total");
    assert!(applied[""] >= 3.0, "{metrics}");
    assert!(samples(&metrics, "parley_ingest_acks_emitted_total")[""] >= 3.0);
    assert!(samples(&metrics, "parley_ingest_batch_size_count")[""] >= 1.0);
    assert!(samples(&metrics, "parley_ingest_write_seconds_count")[""] >= 1.0);
    assert!(samples(&metrics, "parley_ingest_ack_append_seconds_count")[""] >= 1.0);
    eventually(&ingest, "consumer lag reported and caught up", || async {
        let (_, metrics) = get(address, "/metrics").await;
        let lags = samples(&metrics, "parley_ingest_consumer_lag");
        let sent_topic = format!("topic=\"{}\"", topics::MESSAGE_SENT);
        let sees_sent = lags.keys().any(|labels| labels.contains(&sent_topic));
        (sees_sent && lags.values().all(|lag| *lag == 0.0)).then_some(())
    })
    .await;

    // SIGTERM: a clean exit.
    ingest.terminate();
    let status = ingest.exit_status().await;
    assert!(status.success(), "{status}\n{}", ingest.log());
    assert!(ingest.log().contains("shutdown requested"));
    drop(mongo);
}

/// The lag `ingest` exports comes from `KafkaConsumer::lag`: uncommitted records count from the
/// partition's start, committed ones stop counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_counts_what_the_group_has_not_committed() {
    let broker = TansuBroker::start();
    let log = KafkaLog::new(test_kafka_config(broker.brokers())).expect("kafka log");
    log.ensure_topics(PARTITIONS, 1)
        .await
        .unwrap_or_else(|error| panic!("ensure topics: {error}\n{}", broker.log()));
    let conversation_id = ConversationId::new(unique("lag"));
    let sender = UserId::new(unique("sender"));
    log.append(
        (1..=3)
            .map(|seq| sent_event(&conversation_id, seq, &sender))
            .collect(),
    )
    .await
    .expect("append");

    let mut consumer = log
        .consumer(&unique("lag-group"), &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let deadline = Instant::now() + PATIENCE;
    let mut records = Vec::new();
    while records.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "3 records, got {}",
            records.len()
        );
        records.extend(
            consumer
                .poll(16, Duration::from_millis(200))
                .await
                .expect("poll"),
        );
    }
    let total = |lags: &[(String, u32, u64)]| -> u64 {
        assert!(lags
            .iter()
            .all(|(topic, _, _)| topic == topics::MESSAGE_SENT));
        lags.iter().map(|(_, _, lag)| lag).sum()
    };
    let lags = consumer.lag().await.expect("lag");
    assert_eq!(lags.len(), PARTITIONS as usize, "{lags:?}");
    assert_eq!(total(&lags), 3, "nothing committed yet: {lags:?}");

    let positions: Vec<_> = records.iter().map(|record| record.position).collect();
    consumer.commit(&positions).await.expect("commit");
    let lags = consumer.lag().await.expect("lag");
    assert_eq!(total(&lags), 0, "all committed: {lags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_gives_up_after_its_timeout() {
    let nowhere = format!("127.0.0.1:{}", free_port());
    let mut env = ingest_env(&nowhere, &format!("mongodb://{nowhere}/"), "parley");
    // Attempts fail well within the deadline, so some wait is logged.
    env.push((
        "PARLEY__KAFKA__REQUEST_TIMEOUT_MS".to_owned(),
        "200".to_owned(),
    ));
    let mut setup = IngestProcess::start(&["setup", "--timeout-secs", "1"], &env);
    let status = setup.exit_status().await;
    assert_eq!(status.code(), Some(1), "{}", setup.log());
    let log = setup.log();
    assert!(
        log.contains("setup did not finish within 1s: waiting for kafka"),
        "{log}"
    );
    assert!(log.contains("dependency not ready, waiting"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_exits_with_2_and_names_the_key() {
    let mut ingest = IngestProcess::start(&["run"], &[]);
    assert_eq!(ingest.exit_status().await.code(), Some(2));
    assert!(ingest.log().contains("`kafka.brokers`"), "{}", ingest.log());

    let env = [(
        "PARLEY__KAFKA__BROKERS".to_owned(),
        "127.0.0.1:9092".to_owned(),
    )];
    let mut ingest = IngestProcess::start(&["setup"], &env);
    assert_eq!(ingest.exit_status().await.code(), Some(2));
    assert!(ingest.log().contains("`mongo.uri`"), "{}", ingest.log());

    let mut ingest = IngestProcess::start(&["serve"], &env);
    assert_eq!(ingest.exit_status().await.code(), Some(2));
    assert!(ingest.log().contains("usage: ingest"), "{}", ingest.log());

    let mut help = IngestProcess::start(&["--help"], &[]);
    assert_eq!(
        help.line().await.as_deref(),
        Some("usage: ingest [--config PATH] [run | setup [--timeout-secs N] | search | reindex]")
    );
    assert!(help.exit_status().await.success());
}
