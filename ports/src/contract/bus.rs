//! Contract of [`Bus`], seen from one node.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use wire::{ConversationId, NodeId, UserId};

use super::fixtures::unique;
use super::Fixture;
use crate::{Bus, BusEnvelope, BusPayload, BusTopic};

const EXPECT_WITHIN: Duration = Duration::from_secs(10);

/// Runs every bus case, each on a fresh bus (one node's view) from `make`.
pub async fn bus_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn Bus>>,
{
    only_subscribed_topics_are_delivered(make().await).await;
}

fn envelope(topic: &BusTopic, marker: &str) -> BusEnvelope {
    BusEnvelope {
        topic: topic.clone(),
        origin: NodeId::new("contract-node"),
        payload: BusPayload::MembershipChanged {
            conversation_id: ConversationId::new(marker),
            added: vec![UserId::new(marker)],
            removed: Vec::new(),
        },
    }
}

async fn next(incoming: &mut Receiver<BusEnvelope>) -> BusEnvelope {
    tokio::time::timeout(EXPECT_WITHIN, incoming.recv())
        .await
        .expect("an envelope in time")
        .expect("incoming open")
}

async fn only_subscribed_topics_are_delivered(fixture: Fixture<dyn Bus>) {
    let bus = fixture.port;
    let mut incoming = bus.take_incoming().expect("incoming taken once");
    assert!(bus.take_incoming().is_none(), "incoming can be taken once");

    let conversation = BusTopic::Conversation(ConversationId::new(unique("bus-conv")));
    let user = BusTopic::User(UserId::new(unique("bus-user")));
    let never = BusTopic::Conversation(ConversationId::new(unique("bus-never")));
    bus.subscribe(vec![conversation.clone(), user.clone()])
        .await
        .expect("subscribe");

    // Unsubscribed envelopes in between must not show up before the next subscribed one.
    bus.publish(envelope(&never, "skipped"))
        .await
        .expect("publish");
    bus.publish(envelope(&conversation, "first"))
        .await
        .expect("publish");
    bus.publish(envelope(&user, "second"))
        .await
        .expect("publish");
    assert_eq!(next(&mut incoming).await, envelope(&conversation, "first"));
    assert_eq!(next(&mut incoming).await, envelope(&user, "second"));

    bus.unsubscribe(vec![conversation.clone()])
        .await
        .expect("unsubscribe");
    bus.publish(envelope(&conversation, "after-unsubscribe"))
        .await
        .expect("publish");
    bus.publish(envelope(&user, "sentinel"))
        .await
        .expect("publish");
    assert_eq!(
        next(&mut incoming).await,
        envelope(&user, "sentinel"),
        "nothing of an unsubscribed topic arrives"
    );
}
