//! The embedded log is one sequence of every topic: a consumer skips the records of topics it
//! does not read without owing them (lag) or being woken for them.

use std::time::Duration;

use persistence::EmbeddedLog;
use ports::contract::fixtures::{log_event, sent_event};
use ports::{EventLog, LogConsumer};
use wire::log::{topics, LogEventBody};
use wire::{ConversationId, MessageId, Seq, UserId};

fn stored_ack(seq: u64) -> wire::log::LogEvent {
    log_event(LogEventBody::MessageStored {
        conversation_id: ConversationId::new("c"),
        message_id: MessageId::new(format!("m{seq}")),
        seq: Seq(seq),
        sender_id: UserId::new("u"),
    })
}

async fn lag(consumer: &mut Box<dyn LogConsumer>) -> u64 {
    consumer
        .lag()
        .await
        .expect("lag")
        .iter()
        .map(|(_, _, records)| records)
        .sum()
}

#[tokio::test]
async fn a_consumer_of_one_topic_owes_nothing_for_the_others_and_reads_its_own_past_them() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = EmbeddedLog::open(dir.path()).expect("open log");
    let mut relay = log
        .consumer("relay", &[topics::MESSAGE_DELIVERED])
        .await
        .expect("consumer");
    let mut ingest = log
        .consumer("ingest", &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    for seq in 1..=3 {
        // One group each, as sends of different conversations.
        let event = sent_event(&ConversationId::new("c"), seq, &UserId::new("u"));
        log.append(vec![event]).await.expect("append");
    }

    assert_eq!(lag(&mut relay).await, 0, "three records of another topic");
    assert_eq!(lag(&mut ingest).await, 3);
    let none = relay
        .poll(16, Duration::from_millis(20))
        .await
        .expect("poll");
    assert!(none.is_empty());

    log.append(vec![stored_ack(1)]).await.expect("append");
    assert_eq!(
        lag(&mut relay).await,
        4,
        "its own record, behind the others"
    );
    let acks = relay.poll(16, Duration::from_secs(5)).await.expect("poll");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].position.offset, 3);
    assert!(matches!(
        acks[0].event.body,
        LogEventBody::MessageStored { .. }
    ));
    assert_eq!(lag(&mut relay).await, 0);

    let sent = ingest.poll(16, Duration::from_secs(5)).await.expect("poll");
    let offsets: Vec<u64> = sent.iter().map(|record| record.position.offset).collect();
    assert_eq!(offsets, [0, 1, 2], "the ack after them is not its topic");
    assert_eq!(lag(&mut ingest).await, 0);
}

#[tokio::test]
async fn a_waiting_consumer_wakes_for_its_own_topic() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let log = std::sync::Arc::new(EmbeddedLog::open(dir.path()).expect("open log"));
    let mut relay = log
        .consumer("relay", &[topics::MESSAGE_DELIVERED])
        .await
        .expect("consumer");
    let appender = std::sync::Arc::clone(&log);
    let appended = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let event = sent_event(&ConversationId::new("c"), 1, &UserId::new("u"));
        appender.append(vec![event]).await.expect("append");
        appender.append(vec![stored_ack(1)]).await.expect("append");
    });
    // A wait far longer than the appends take: the poll returns with the ack, not empty.
    let acks = relay.poll(16, Duration::from_secs(30)).await.expect("poll");
    appended.await.expect("appender");
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].position.offset, 1);
}
