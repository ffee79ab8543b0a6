//! Relays the "stored" acknowledgments that ingest writes to the log (topic
//! `message.delivered`) to the senders' sessions, through the bus so that whichever node holds
//! the sender's sessions delivers them.
//!
//! A malformed record (a `Corrupt` poll whose record the consumer hands over with
//! `LogConsumer::take_poisoned`) is logged and committed past: an acknowledgment that does not
//! decode cannot be relayed, and re-reading it would stop the relay for good.
//!
//! Any other failed poll reopens the consumer, that is re-joins the group as a new member, after a
//! backoff that grows until records flow again. That includes a group that stopped moving: a
//! Kafka consumer reports its group stalled when records are left and no committed offset moved
//! for `kafka.stall_timeout_ms` (e.g. a group a crashed broker left without assignments; see
//! docs/operations.md "Stalled consumer groups"). Its [`ConsumerHealth`] holds the failure
//! until records flow again or nothing is left to relay; the node's `/readyz` reports it as
//! degraded (`message.stored` is late, sends and fan-out are not affected).

use std::time::Duration;

use std::sync::Arc;

use ports::{Backoff, BusEnvelope, BusPayload, BusTopic, ConsumerHealth, LogConsumer};
use tokio::sync::watch;
use wire::events::ServerEvent;
use wire::log::{topics, LogEventBody};

use crate::node::Node;

/// Consumer group shared by every node: each acknowledgment is relayed once.
pub const STORED_ACKS_GROUP: &str = "parley-stored-acks";

/// First pause after a failure; doubles per failure up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// While polls come back empty after a failure, how often the group's lag is checked: nothing
/// left to relay ends the reported failure.
const LAG_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Runs until `shutdown` turns true. Retries with backoff while the log is unavailable; the
/// failure stays in `health` until records flow again or nothing is left to relay.
pub async fn run(node: Node, mut shutdown: watch::Receiver<bool>, health: Arc<ConsumerHealth>) {
    let mut backoff = Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
    while !*shutdown.borrow() {
        let consumer = node
            .ports()
            .log
            .consumer(STORED_ACKS_GROUP, &[topics::MESSAGE_DELIVERED])
            .await;
        let mut consumer = match consumer {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(error = %error, "stored-ack consumer unavailable, retrying");
                health.set_stalled(error.to_string());
                wait(&mut shutdown, backoff.next_delay()).await;
                continue;
            }
        };
        let mut lag_checked = tokio::time::Instant::now();
        loop {
            let records = tokio::select! {
                _ = shutdown.changed() => return,
                records = consumer.poll(512, Duration::from_millis(500)) => records,
            };
            let records = match records {
                Ok(records) => records,
                Err(error) if skip_poisoned(consumer.as_mut(), &error).await => continue,
                Err(error) => {
                    // E.g. the topic does not exist yet: reopen after a growing pause.
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "polling stored acks failed");
                    health.set_stalled(error.to_string());
                    wait(&mut shutdown, delay).await;
                    break;
                }
            };
            if records.is_empty() {
                if health.stall().is_some() && lag_checked.elapsed() >= LAG_CHECK_EVERY {
                    lag_checked = tokio::time::Instant::now();
                    clear_when_nothing_is_left(consumer.as_mut(), &health).await;
                }
                continue;
            }
            health.clear_stalled();
            backoff.reset();
            for record in &records {
                let LogEventBody::MessageStored {
                    conversation_id,
                    message_id,
                    seq,
                    sender_id,
                } = &record.event.body
                else {
                    continue;
                };
                let envelope = BusEnvelope {
                    topic: BusTopic::User(sender_id.clone()),
                    origin: node.node_id().clone(),
                    payload: BusPayload::Event {
                        seq: None,
                        event: ServerEvent::MessageStored {
                            conversation_id: conversation_id.clone(),
                            message_id: message_id.clone(),
                            seq: *seq,
                        },
                    },
                };
                if let Err(error) = crate::router::publish(&node, envelope).await {
                    tracing::warn!(error = %error, "relaying a stored ack failed");
                }
                node.metrics().stored_acks_relayed.inc();
            }
            let positions: Vec<_> = records.iter().map(|record| record.position).collect();
            if let Err(error) = consumer.commit(&positions).await {
                tracing::warn!(error = %error, "committing stored acks failed");
            }
        }
    }
}

/// After a failed poll: when the consumer hands over a malformed record, logs it and commits
/// past it; `true` then (polling goes on with the same consumer).
async fn skip_poisoned(consumer: &mut dyn LogConsumer, error: &ports::PortError) -> bool {
    let Some(poisoned) = consumer.take_poisoned() else {
        return false;
    };
    tracing::error!(
        topic = %poisoned.topic,
        partition = poisoned.partition,
        offset = poisoned.offset,
        error = %error,
        "malformed stored ack skipped"
    );
    if let Err(error) = consumer.commit(&[poisoned.position]).await {
        tracing::warn!(error = %error, "committing past a malformed stored ack failed");
    }
    true
}

/// Ends a reported failure when the group has nothing left to relay on any partition.
async fn clear_when_nothing_is_left(consumer: &mut dyn LogConsumer, health: &ConsumerHealth) {
    match consumer.lag().await {
        Ok(lags) if lags.iter().all(|(_, _, records)| *records == 0) => health.clear_stalled(),
        Ok(_) => {}
        Err(error) => tracing::debug!(error = %error, "stored-ack lag unknown"),
    }
}

async fn wait(shutdown: &mut watch::Receiver<bool>, duration: Duration) {
    tokio::select! {
        _ = shutdown.changed() => {}
        _ = tokio::time::sleep(duration) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Limits;
    use crate::testing::Harness;
    use ports::{LogPosition, LogRecord, PoisonedRecord, PortError, Service};
    use std::sync::atomic::Ordering;
    use wire::log::LogEvent;
    use wire::{ConversationId, MessageId, Seq, UserId};

    #[actix_rt::test]
    async fn a_relay_without_a_consumer_reports_why_until_it_stops() {
        // The fake log has no consumers: every attempt to open one fails.
        let harness = Harness::new(Limits::default());
        let health = Arc::new(ConsumerHealth::default());
        let (stop, stopped) = watch::channel(false);
        let relay = tokio::spawn(run(harness.node.clone(), stopped, health.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let stall = health.stall().expect("the failure is reported");
        assert!(stall.contains("no consumers"), "{stall}");
        stop.send(true).expect("relay listens");
        relay.await.expect("relay stops");
    }

    /// Polls: first a malformed record, then one acknowledgment; then nothing.
    struct PoisonThenAck {
        polls: usize,
        commits: Arc<std::sync::Mutex<Vec<LogPosition>>>,
        poisoned: Option<PoisonedRecord>,
    }

    fn at(offset: u64) -> LogPosition {
        LogPosition {
            partition: 0,
            offset,
        }
    }

    #[async_trait::async_trait]
    impl LogConsumer for PoisonThenAck {
        async fn poll(&mut self, _max: usize, wait: Duration) -> Result<Vec<LogRecord>, PortError> {
            self.polls += 1;
            match self.polls {
                1 => {
                    self.poisoned = Some(PoisonedRecord {
                        position: at(0),
                        topic: topics::MESSAGE_DELIVERED.to_owned(),
                        partition: 0,
                        offset: 0,
                        payload: b"garbage".to_vec(),
                        problem: "not a log event".to_owned(),
                    });
                    Err(PortError::corrupt(
                        Service::Kafka,
                        "record",
                        "not a log event",
                    ))
                }
                2 => Ok(vec![LogRecord {
                    position: at(1),
                    event: LogEvent::new(
                        "stored:m1",
                        chrono::Utc::now(),
                        LogEventBody::MessageStored {
                            conversation_id: ConversationId::new("c1"),
                            message_id: MessageId::new("m1"),
                            seq: Seq(1),
                            sender_id: UserId::new("alice"),
                        },
                    ),
                }]),
                _ => {
                    tokio::time::sleep(wait).await;
                    Ok(Vec::new())
                }
            }
        }

        async fn commit(&mut self, positions: &[LogPosition]) -> Result<(), PortError> {
            self.commits.lock().unwrap().extend_from_slice(positions);
            Ok(())
        }

        fn take_poisoned(&mut self) -> Option<PoisonedRecord> {
            self.poisoned.take()
        }
    }

    #[actix_rt::test]
    async fn a_malformed_ack_is_committed_past_and_the_relay_goes_on() {
        let harness = Harness::new(Limits::default());
        let commits = Arc::new(std::sync::Mutex::new(Vec::new()));
        harness
            .log
            .consumers
            .lock()
            .unwrap()
            .push(Box::new(PoisonThenAck {
                polls: 0,
                commits: Arc::clone(&commits),
                poisoned: None,
            }));
        let (stop, stopped) = watch::channel(false);
        let health = Arc::new(ConsumerHealth::default());
        let relay = tokio::spawn(run(harness.node.clone(), stopped, health));
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(true).expect("relay listens");
        relay.await.expect("relay stops");

        assert_eq!(*commits.lock().unwrap(), vec![at(0), at(1)]);
        assert_eq!(harness.log.consumers_opened.load(Ordering::SeqCst), 1);
        let published = harness.bus.published.lock().unwrap();
        assert_eq!(published.len(), 1, "the acknowledgment after it is relayed");
    }
}
