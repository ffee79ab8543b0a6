//! Relays the "stored" acknowledgments that ingest writes to the log (topic
//! `message.delivered`) to the senders' sessions, through the bus so that whichever node holds
//! the sender's sessions delivers them.
//!
//! A failed poll reopens the consumer, that is re-joins the group as a new member, after a
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
                if let Err(error) = node.ports().bus.publish(envelope).await {
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
}
