//! [`TopicEnds`]: for each topic, where the log ended after the last group that held one of
//! its events, so that a consumer waits for its own topics alone. The embedded log is one
//! sequence of every topic; without this, every consumer woke after every group the writer
//! committed (the stored-ack relay, reading one topic, once per message sent).

use futures::future::select_all;
use tokio::sync::watch;
use wire::log::topics;

/// One watch per topic of [`topics::ALL`], holding the log's end offset after the last durable
/// group with an event of that topic (the log's end when it was opened, for every topic, until
/// then: a consumer behind it reads what the log already held).
pub(crate) struct TopicEnds {
    ends: Vec<(&'static str, watch::Sender<u64>)>,
}

impl TopicEnds {
    pub(crate) fn new(end: u64) -> Self {
        let ends = topics::ALL
            .into_iter()
            .map(|topic| (topic, watch::Sender::new(end)))
            .collect();
        Self { ends }
    }

    /// After a durable group that ends at `end`: the topics of its events end there now.
    /// Call it after publishing the log's own end, which a consumer reads after these.
    pub(crate) fn advance(&self, group_topics: &[&'static str], end: u64) {
        for (topic, sender) in &self.ends {
            if group_topics.contains(topic) {
                sender.send_replace(end);
            }
        }
    }

    pub(crate) fn watch(&self, consumed: &[String]) -> TopicWatch {
        let receivers = self
            .ends
            .iter()
            .filter(|(topic, _)| consumed.iter().any(|wanted| wanted == topic))
            .map(|(_, sender)| sender.subscribe())
            .collect();
        TopicWatch { receivers }
    }
}

/// A consumer's view of its topics' ends.
pub(crate) struct TopicWatch {
    receivers: Vec<watch::Receiver<u64>>,
}

impl TopicWatch {
    /// Where the last group with one of the topics ended, marked seen: [`TopicWatch::changed`]
    /// waits for a later one.
    pub(crate) fn seen_end(&mut self) -> u64 {
        self.receivers
            .iter_mut()
            .map(|receiver| *receiver.borrow_and_update())
            .max()
            .unwrap_or(0)
    }

    /// Where the last group with one of the topics ended (not marked seen).
    pub(crate) fn end(&self) -> u64 {
        self.receivers
            .iter()
            .map(|receiver| *receiver.borrow())
            .max()
            .unwrap_or(0)
    }

    /// Returns once a group with one of the topics was committed after the last
    /// [`TopicWatch::seen_end`]. Never, for a consumer of no known topic.
    pub(crate) async fn changed(&mut self) {
        if self.receivers.is_empty() {
            return std::future::pending().await;
        }
        let waits = self
            .receivers
            .iter_mut()
            .map(|receiver| Box::pin(receiver.changed()));
        // The senders live as long as the log's shared state, which the consumer holds.
        let _ = select_all(waits).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn consumed(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_consumer_wakes_for_its_topics_only() {
        let ends = TopicEnds::new(5);
        let mut relay = ends.watch(&consumed(&[topics::MESSAGE_DELIVERED]));
        assert_eq!(relay.seen_end(), 5, "the log's end at open");

        ends.advance(&[topics::MESSAGE_SENT], 9);
        let woke = tokio::time::timeout(Duration::from_millis(50), relay.changed()).await;
        assert!(woke.is_err(), "another topic's group does not wake it");
        assert_eq!(relay.end(), 5);

        ends.advance(&[topics::MESSAGE_SENT, topics::MESSAGE_DELIVERED], 12);
        tokio::time::timeout(Duration::from_secs(5), relay.changed())
            .await
            .expect("its topic's group wakes it");
        assert_eq!(relay.seen_end(), 12);
    }

    #[tokio::test]
    async fn the_end_is_the_latest_of_its_topics() {
        let ends = TopicEnds::new(0);
        let mut ingest = ends.watch(&consumed(&[topics::MESSAGE_SENT, topics::RECEIPT_UPDATED]));
        ends.advance(&[topics::RECEIPT_UPDATED], 3);
        ends.advance(&[topics::MESSAGE_SENT], 7);
        ends.advance(&[topics::MESSAGE_DELIVERED], 8);
        assert_eq!(ingest.seen_end(), 7);
        assert_eq!(ends.watch(&consumed(&["no.such.topic"])).end(), 0);
    }
}
