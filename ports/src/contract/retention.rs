//! Contract of [`RetentionPolicies`].

use std::future::Future;

use wire::{ConversationId, Seq};

use super::fixtures::unique;
use super::Fixture;
use crate::{ConversationRetention, LegalHold, RetentionPeriod, RetentionPolicies};

/// Runs every retention case, each on a fresh adapter from `make`.
pub async fn retention_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn RetentionPolicies>>,
{
    periods_and_holds_are_set_and_reset(make().await).await;
    purges_only_move_forward(make().await).await;
}

async fn listed(
    policies: &dyn RetentionPolicies,
    conversation_id: &ConversationId,
) -> Option<ConversationRetention> {
    let changed = policies.changed().await.expect("changed");
    changed
        .into_iter()
        .find(|(listed_id, _)| listed_id == conversation_id)
        .map(|(_, retention)| retention)
}

async fn periods_and_holds_are_set_and_reset(fixture: Fixture<dyn RetentionPolicies>) {
    let policies = fixture.port;
    let conversation = ConversationId::new(unique("conversation"));
    let bystander = ConversationId::new(unique("conversation"));
    let retention = |id| policies.retention(id);
    assert_eq!(
        retention(&conversation).await.expect("retention"),
        ConversationRetention::default(),
        "a conversation never changed has the default retention"
    );
    assert_eq!(listed(policies.as_ref(), &conversation).await, None);

    policies
        .set_period(&conversation, RetentionPeriod::Days(7))
        .await
        .expect("set period");
    policies
        .set_legal_hold(&conversation, LegalHold::On)
        .await
        .expect("hold");
    let expected = ConversationRetention {
        period: RetentionPeriod::Days(7),
        legal_hold: LegalHold::On,
        purged_through: Seq::ZERO,
    };
    assert_eq!(retention(&conversation).await.expect("retention"), expected);
    assert_eq!(
        listed(policies.as_ref(), &conversation).await,
        Some(expected)
    );
    assert_eq!(
        retention(&bystander).await.expect("retention"),
        ConversationRetention::default(),
        "a policy is the conversation's own"
    );

    policies
        .set_period(&conversation, RetentionPeriod::Forever)
        .await
        .expect("forever");
    assert_eq!(
        retention(&conversation).await.expect("retention").period,
        RetentionPeriod::Forever
    );
    policies
        .set_period(&conversation, RetentionPeriod::Default)
        .await
        .expect("default");
    policies
        .set_legal_hold(&conversation, LegalHold::Off)
        .await
        .expect("lift hold");
    assert_eq!(
        retention(&conversation).await.expect("retention"),
        ConversationRetention::default()
    );
    assert_eq!(
        listed(policies.as_ref(), &conversation).await,
        None,
        "a conversation back to the default is not listed"
    );
}

async fn purges_only_move_forward(fixture: Fixture<dyn RetentionPolicies>) {
    let policies = fixture.port;
    let conversation = ConversationId::new(unique("conversation"));
    policies
        .record_purge(&conversation, Seq(5))
        .await
        .expect("purge");
    policies
        .record_purge(&conversation, Seq(3))
        .await
        .expect("older purge");
    let retention = policies.retention(&conversation).await.expect("retention");
    assert_eq!(retention.purged_through, Seq(5), "a purge never moves back");
    assert_eq!(retention.first_seq(), Seq(6));
    assert_eq!(
        listed(policies.as_ref(), &conversation)
            .await
            .map(|listed| listed.purged_through),
        Some(Seq(5))
    );
    policies
        .set_legal_hold(&conversation, LegalHold::On)
        .await
        .expect("hold");
    policies
        .set_legal_hold(&conversation, LegalHold::Off)
        .await
        .expect("lift");
    assert_eq!(
        policies
            .retention(&conversation)
            .await
            .expect("retention")
            .purged_through,
        Seq(5),
        "policy changes keep the purge"
    );
}
