//! Contract of [`EventLog`] and [`LogConsumer`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wire::log::{topics, LogEvent, LogEventBody};
use wire::{ConversationId, Seq, UserId};

use super::fixtures::{conversation_record, log_event, sent_event, unique};
use super::Fixture;
use crate::{EventLog, LogConsumer, LogRecord};

/// How long a case waits for records it expects before failing.
const EXPECT_WITHIN: Duration = Duration::from_secs(10);

/// Runs every log case, each on a fresh log from `make`.
pub async fn event_log_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn EventLog>>,
{
    appends_are_consumed_in_order(make().await).await;
    consumers_see_only_their_topics(make().await).await;
    a_new_consumer_resumes_after_the_group_commit(make().await).await;
    groups_are_independent(make().await).await;
    poll_waits_for_an_append(make().await).await;
    poll_returns_empty_when_nothing_arrives(make().await).await;
}

/// Whether `record` belongs to the case's conversation (shared backends carry other traffic).
fn of(conversation_id: &ConversationId) -> impl Fn(&LogRecord) -> bool + '_ {
    move |record| record.event.body.conversation_id() == conversation_id
}

/// Polls until `count` matching records arrived; panics after [`EXPECT_WITHIN`].
async fn poll_matching(
    consumer: &mut Box<dyn LogConsumer>,
    count: usize,
    matches: impl Fn(&LogRecord) -> bool,
) -> Vec<LogRecord> {
    let deadline = Instant::now() + EXPECT_WITHIN;
    let mut found = Vec::new();
    while found.len() < count {
        assert!(
            Instant::now() < deadline,
            "expected {count} records, got {}",
            found.len()
        );
        let records = consumer
            .poll(64, Duration::from_millis(200))
            .await
            .expect("poll");
        found.extend(records.into_iter().filter(|record| matches(record)));
    }
    found
}

/// Polls once with a short wait and returns only matching records.
async fn poll_briefly(
    consumer: &mut Box<dyn LogConsumer>,
    matches: impl Fn(&LogRecord) -> bool,
) -> Vec<LogRecord> {
    let records = consumer
        .poll(64, Duration::from_millis(300))
        .await
        .expect("poll");
    records
        .into_iter()
        .filter(|record| matches(record))
        .collect()
}

fn event_ids(records: &[LogRecord]) -> Vec<String> {
    records
        .iter()
        .map(|record| record.event.event_id.clone())
        .collect()
}

fn ids_of(events: &[LogEvent]) -> Vec<String> {
    events.iter().map(|event| event.event_id.clone()).collect()
}

async fn appends_are_consumed_in_order(fixture: Fixture<dyn EventLog>) {
    let log = fixture.port;
    assert!(log.is_ready().await, "a fresh log is ready");
    let conversation_id = ConversationId::new(unique("log-order"));
    let sender = UserId::new(unique("sender"));
    let first: Vec<LogEvent> = (1..=3)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    let second: Vec<LogEvent> = (4..=5)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    log.append(Vec::new()).await.expect("empty append");
    log.append(first.clone()).await.expect("append");
    log.append(second.clone()).await.expect("append");

    let mut consumer = log
        .consumer(&unique("group"), &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_matching(&mut consumer, 5, of(&conversation_id)).await;
    let expected: Vec<String> = ids_of(&first).into_iter().chain(ids_of(&second)).collect();
    assert_eq!(event_ids(&records), expected, "records in append order");
    assert_eq!(records[0].event, first[0], "events round-trip unchanged");
    for pair in records.windows(2) {
        assert_eq!(pair[0].position.partition, pair[1].position.partition);
        assert!(
            pair[0].position.offset < pair[1].position.offset,
            "offsets grow"
        );
    }
}

async fn consumers_see_only_their_topics(fixture: Fixture<dyn EventLog>) {
    let log = fixture.port;
    let conversation_id = ConversationId::new(unique("log-topics"));
    let sender = UserId::new(unique("sender"));
    let sent = sent_event(&conversation_id, 1, &sender);
    let updated = log_event(LogEventBody::ConversationUpdated {
        record: conversation_record(
            &conversation_id,
            wire::ConversationKind::Group,
            &[&sender],
            1,
            super::fixtures::at(0),
        ),
    });
    let receipt = log_event(LogEventBody::ReceiptUpdated {
        conversation_id: conversation_id.clone(),
        user_id: sender.clone(),
        delivered_seq: Seq(1),
        read_seq: Seq(1),
    });
    log.append(vec![sent.clone(), updated.clone(), receipt.clone()])
        .await
        .expect("append");

    let mut sent_only = log
        .consumer(&unique("group"), &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_matching(&mut sent_only, 1, of(&conversation_id)).await;
    assert_eq!(event_ids(&records), vec![sent.event_id.clone()]);
    assert!(
        poll_briefly(&mut sent_only, of(&conversation_id))
            .await
            .is_empty(),
        "no other topic reaches a message.sent consumer"
    );

    let mut two_topics = log
        .consumer(
            &unique("group"),
            &[topics::CONVERSATION_UPDATED, topics::RECEIPT_UPDATED],
        )
        .await
        .expect("consumer");
    let records = poll_matching(&mut two_topics, 2, of(&conversation_id)).await;
    // Order is promised per topic, not across topics (Kafka partitions are per topic).
    let mut received = event_ids(&records);
    received.sort();
    let mut expected = vec![updated.event_id.clone(), receipt.event_id.clone()];
    expected.sort();
    assert_eq!(received, expected);
}

async fn a_new_consumer_resumes_after_the_group_commit(fixture: Fixture<dyn EventLog>) {
    let log = fixture.port;
    let conversation_id = ConversationId::new(unique("log-resume"));
    let sender = UserId::new(unique("sender"));
    let events: Vec<LogEvent> = (1..=4)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    log.append(events.clone()).await.expect("append");
    let group = unique("group");

    let mut first = log
        .consumer(&group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_matching(&mut first, 4, of(&conversation_id)).await;
    first
        .commit(&[records[1].position])
        .await
        .expect("commit the first two");
    drop(first);

    let mut second = log
        .consumer(&group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_matching(&mut second, 2, of(&conversation_id)).await;
    assert_eq!(
        event_ids(&records),
        ids_of(&events[2..]),
        "resumes right after the committed position"
    );
    second
        .commit(&[records[1].position])
        .await
        .expect("commit the rest");
    drop(second);

    let mut third = log
        .consumer(&group, &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    assert!(
        poll_briefly(&mut third, of(&conversation_id))
            .await
            .is_empty(),
        "everything was committed"
    );
}

async fn groups_are_independent(fixture: Fixture<dyn EventLog>) {
    let log = fixture.port;
    let conversation_id = ConversationId::new(unique("log-groups"));
    let sender = UserId::new(unique("sender"));
    let events: Vec<LogEvent> = (1..=2)
        .map(|seq| sent_event(&conversation_id, seq, &sender))
        .collect();
    log.append(events.clone()).await.expect("append");

    let mut done = log
        .consumer(&unique("group"), &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_matching(&mut done, 2, of(&conversation_id)).await;
    done.commit(&[records[1].position]).await.expect("commit");

    let mut other = log
        .consumer(&unique("group"), &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_matching(&mut other, 2, of(&conversation_id)).await;
    assert_eq!(
        event_ids(&records),
        ids_of(&events),
        "another group starts from the beginning"
    );
}

async fn poll_waits_for_an_append(fixture: Fixture<dyn EventLog>) {
    let log: Arc<dyn EventLog> = fixture.port;
    let conversation_id = ConversationId::new(unique("log-wait"));
    let sender = UserId::new(unique("sender"));
    let mut consumer = log
        .consumer(&unique("group"), &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let event = sent_event(&conversation_id, 1, &sender);
    let appender = {
        let log = Arc::clone(&log);
        let event = event.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            log.append(vec![event]).await
        })
    };
    let records = poll_matching(&mut consumer, 1, of(&conversation_id)).await;
    assert_eq!(event_ids(&records), vec![event.event_id.clone()]);
    appender
        .await
        .expect("appender task")
        .expect("append during poll");
}

async fn poll_returns_empty_when_nothing_arrives(fixture: Fixture<dyn EventLog>) {
    let log = fixture.port;
    let conversation_id = ConversationId::new(unique("log-empty"));
    let mut consumer = log
        .consumer(&unique("group"), &[topics::MESSAGE_SENT])
        .await
        .expect("consumer");
    let records = poll_briefly(&mut consumer, of(&conversation_id)).await;
    assert!(records.is_empty(), "nothing was appended for this case");
}
