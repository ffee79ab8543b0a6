//! A poisoned record in the log (a payload that is not a log event) between good ones: the real
//! `ingest` binary, against a private Tansu and SecantusDB, stores every good record, sets the
//! bad ones aside in the dead-letter topic (payload as read, headers naming where it came from),
//! counts them, and commits past them: the consumer lag returns to 0, also when a bad record is
//! the last of its partition.

#[allow(dead_code)]
#[path = "../../persistence/tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::secantus::SecantusServer;
use common::tansu::{produce_raw, TansuBroker};
use mongodb::bson::doc;
use persistence::kafka::config::DEFAULT_DEAD_LETTER_TOPIC;
use persistence::kafka::KafkaLog;
use ports::contract::fixtures::{sent_event, unique};
use ports::EventLog;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use support::{eventually, get, ingest_env, samples, test_kafka_config, IngestProcess, PATIENCE};
use wire::log::topics;
use wire::{ConversationId, UserId};

const NOT_JSON: &[u8] = b"{this is not a log event";
const NOT_AN_EVENT: &[u8] = br#"{"event_id":"x","type":"no_such_event"}"#;

/// Every record of the dead-letter topic: payload → headers.
fn dead_letters(brokers: &str, expected: usize) -> BTreeMap<Vec<u8>, BTreeMap<String, String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("dead-letter-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dead-letter consumer");
    consumer
        .subscribe(&[DEFAULT_DEAD_LETTER_TOPIC])
        .expect("subscribe");
    let mut found = BTreeMap::new();
    let deadline = Instant::now() + PATIENCE;
    while found.len() < expected && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        let value = header.value.unwrap_or_default();
                        (
                            header.key.to_owned(),
                            String::from_utf8_lossy(value).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.insert(message.payload().unwrap_or_default().to_vec(), headers);
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_records_go_to_the_dead_letter_topic_and_the_partition_goes_on() {
    let broker = TansuBroker::start();
    let mongo = SecantusServer::start();
    let brokers = broker.brokers();
    let log = KafkaLog::new(test_kafka_config(brokers.clone())).expect("kafka log");
    log.ensure_topics(support::PARTITIONS, 1)
        .await
        .unwrap_or_else(|error| panic!("ensure topics: {error}\n{}", broker.log()));

    // Good, bad, good, good, bad: one conversation, so one partition, in this order.
    let conversation_id = ConversationId::new(unique("poisoned"));
    let sender = UserId::new(unique("sender"));
    let key = conversation_id.as_str();
    log.append(vec![sent_event(&conversation_id, 1, &sender)])
        .await
        .expect("append");
    produce_raw(&brokers, topics::MESSAGE_SENT, key, NOT_JSON).await;
    log.append(vec![
        sent_event(&conversation_id, 2, &sender),
        sent_event(&conversation_id, 3, &sender),
    ])
    .await
    .expect("append");
    produce_raw(&brokers, topics::MESSAGE_SENT, key, NOT_AN_EVENT).await;

    let database_name = unique("dead_letter").replace('-', "_");
    let mut ingest = IngestProcess::start(
        &["run"],
        &ingest_env(&brokers, &mongo.uri(), &database_name),
    );
    let address = ingest.listening_address().await;

    let messages = support::messages_collection(&mongo.uri(), &database_name).await;
    eventually(&ingest, "the three good records stored", || async {
        let filter = doc! { "conversation_id": conversation_id.as_str() };
        let stored = messages.count_documents(filter).await.ok()?;
        (stored == 3).then_some(())
    })
    .await;

    let letters = dead_letters(&brokers, 2);
    assert_eq!(
        letters.len(),
        2,
        "dead letters: {letters:?}\n{}",
        ingest.log()
    );
    for payload in [NOT_JSON, NOT_AN_EVENT] {
        let headers = letters.get(payload).unwrap_or_else(|| {
            panic!(
                "{:?} not set aside: {letters:?}",
                String::from_utf8_lossy(payload)
            )
        });
        assert_eq!(headers["source_topic"], topics::MESSAGE_SENT, "{headers:?}");
        assert!(
            headers["problem"].contains("not a log event"),
            "{headers:?}"
        );
        assert!(
            headers["source_offset"].parse::<u64>().is_ok(),
            "{headers:?}"
        );
    }

    // Counted once each, and committed past: every partition's lag returns to 0.
    eventually(&ingest, "dead letters counted and lag 0", || async {
        let (_, metrics) = get(address, "/metrics").await;
        let counted = samples(&metrics, "parley_ingest_dead_letters_total");
        let lags = samples(&metrics, "parley_ingest_consumer_lag");
        let sent_topic = format!("topic=\"{}\"", topics::MESSAGE_SENT);
        let sees_sent = lags.keys().any(|labels| labels.contains(&sent_topic));
        (counted.get("") == Some(&2.0) && sees_sent && lags.values().all(|lag| *lag == 0.0))
            .then_some(())
    })
    .await;
    assert!(
        ingest
            .log()
            .contains("malformed log record set aside in the dead-letter topic"),
        "{}",
        ingest.log()
    );
    ingest.terminate();
    assert!(ingest.exit_status().await.success(), "{}", ingest.log());
}
