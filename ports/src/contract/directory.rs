//! Contract of [`Directory`].

use std::future::Future;

use wire::{ConversationId, ConversationKind, UserId};

use super::fixtures::{at, conversation_record, unique};
use super::Fixture;
use crate::{CreateOutcome, Directory, PortError};

/// Runs every directory case, each on a fresh directory from `make`.
pub async fn directory_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn Directory>>,
{
    created_conversations_can_be_read(make().await).await;
    a_direct_pair_gets_one_conversation(make().await).await;
    update_needs_the_next_version(make().await).await;
    list_for_user_orders_and_pages(make().await).await;
}

async fn created_conversations_can_be_read(fixture: Fixture<dyn Directory>) {
    let directory = fixture.port;
    let conversation_id = ConversationId::new(unique("dir-create"));
    let owner = UserId::new(unique("owner"));
    let member = UserId::new(unique("member"));
    let record = conversation_record(
        &conversation_id,
        ConversationKind::Group,
        &[&owner, &member],
        1,
        at(0),
    );
    assert_eq!(
        directory.create(record.clone()).await.expect("create"),
        CreateOutcome::Created(record.clone())
    );
    assert_eq!(
        directory.get(&conversation_id).await.expect("get"),
        Some(record)
    );
    assert_eq!(
        directory
            .get(&ConversationId::new(unique("missing")))
            .await
            .expect("get"),
        None
    );
}

async fn a_direct_pair_gets_one_conversation(fixture: Fixture<dyn Directory>) {
    let directory = fixture.port;
    let first = UserId::new(unique("first"));
    let second = UserId::new(unique("second"));
    let original = conversation_record(
        &ConversationId::new(unique("dir-direct")),
        ConversationKind::Direct,
        &[&first, &second],
        1,
        at(0),
    );
    assert_eq!(
        directory.create(original.clone()).await.expect("create"),
        CreateOutcome::Created(original.clone())
    );
    let reversed = conversation_record(
        &ConversationId::new(unique("dir-direct")),
        ConversationKind::Direct,
        &[&second, &first],
        1,
        at(1),
    );
    assert_eq!(
        directory.create(reversed.clone()).await.expect("create"),
        CreateOutcome::Existing(original),
        "the same pair in any order finds the existing conversation"
    );
    assert_eq!(
        directory
            .get(&reversed.conversation.conversation_id)
            .await
            .expect("get"),
        None,
        "no second conversation was created"
    );
}

async fn update_needs_the_next_version(fixture: Fixture<dyn Directory>) {
    let directory = fixture.port;
    let conversation_id = ConversationId::new(unique("dir-update"));
    let owner = UserId::new(unique("owner"));
    let first = conversation_record(
        &conversation_id,
        ConversationKind::Group,
        &[&owner],
        1,
        at(0),
    );
    directory.create(first.clone()).await.expect("create");
    let mut second = first.clone();
    second.version = 2;
    second.conversation.title = Some("renamed".to_owned());
    directory
        .update(second.clone())
        .await
        .expect("update to v2");

    let mut stale = first.clone();
    stale.version = 2;
    stale.conversation.title = Some("lost update".to_owned());
    assert!(
        matches!(
            directory.update(stale).await,
            Err(PortError::Conflict { .. })
        ),
        "a second v2 conflicts"
    );
    let mut skipping = second.clone();
    skipping.version = 4;
    assert!(
        matches!(
            directory.update(skipping).await,
            Err(PortError::Conflict { .. })
        ),
        "skipping a version conflicts"
    );
    assert_eq!(
        directory.get(&conversation_id).await.expect("get"),
        Some(second)
    );
}

async fn list_for_user_orders_and_pages(fixture: Fixture<dyn Directory>) {
    let directory = fixture.port;
    let user = UserId::new(unique("user"));
    let prefix = unique("dir-list");
    let mut created = Vec::new();
    for (suffix, seconds) in [("a", 0), ("b", 20), ("c", 10)] {
        let conversation_id = ConversationId::new(format!("{prefix}-{suffix}"));
        let record = conversation_record(
            &conversation_id,
            ConversationKind::Group,
            &[&user],
            1,
            at(seconds),
        );
        directory.create(record).await.expect("create");
        created.push(conversation_id);
    }
    let ids = |page: Vec<crate::StoredConversation>| -> Vec<ConversationId> {
        page.into_iter()
            .map(|stored| stored.record.conversation.conversation_id)
            .collect()
    };
    let expected = vec![created[1].clone(), created[2].clone(), created[0].clone()];
    assert_eq!(
        ids(directory
            .list_for_user(&user, None, 10)
            .await
            .expect("list")),
        expected
    );
    assert_eq!(
        ids(directory
            .list_for_user(&user, Some(&expected[0]), 1)
            .await
            .expect("list")),
        vec![expected[1].clone()]
    );
}
