//! Contract of retention in the stores: [`StoreWrite::Purge`] and [`RetentionScan`].

use std::future::Future;

use wire::{ConversationId, Seq, UserId};

use super::fixtures::{at, message_record, unique};
use super::Fixture;
use crate::{MessageQuery, RetentionScan, Store, StoreWrite};

/// A store the retention sweep can scan.
pub trait RetainingStore: Store + RetentionScan {}

impl<T: Store + RetentionScan> RetainingStore for T {}

/// Runs every retention case of a store, each on a fresh adapter from `make`.
pub async fn store_retention_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn RetainingStore>>,
{
    purges_forget_messages_up_to_their_seq(make().await).await;
    the_scan_finds_expired_messages(make().await).await;
    the_scan_finds_a_senders_conversations(make().await).await;
}

/// Erasure's walk: the conversations holding a sender's messages, in id order, paged.
async fn the_scan_finds_a_senders_conversations(fixture: Fixture<dyn RetainingStore>) {
    let store = fixture.port.as_ref();
    let sender = UserId::new(unique("sender"));
    let mut theirs = Vec::new();
    for _ in 0..3 {
        let conversation_id = ConversationId::new(unique("store-sender"));
        let record = message_record(&conversation_id, 2, &sender, 1, at(1));
        store
            .apply(vec![StoreWrite::Message(record)])
            .await
            .expect("apply");
        theirs.push(conversation_id);
    }
    conversation_with_messages(store, 2).await;
    theirs.sort();
    let sender = &sender;
    let scan = |after: Option<ConversationId>, limit| async move {
        store
            .conversations_with_messages_from(sender, after.as_ref(), limit)
            .await
            .expect("scan")
    };
    assert_eq!(scan(None, 10).await, theirs, "theirs only, in id order");
    assert_eq!(scan(None, 2).await, theirs[..2]);
    assert_eq!(scan(Some(theirs[1].clone()), 2).await, theirs[2..]);
    assert_eq!(
        scan(Some(theirs[2].clone()), 2).await,
        Vec::<ConversationId>::new()
    );
}

/// Stores messages 1..=`count` of a fresh conversation, message n created at `at(n * 10)`.
async fn conversation_with_messages(store: &dyn RetainingStore, count: u64) -> ConversationId {
    let conversation_id = ConversationId::new(unique("store-retention"));
    let sender = UserId::new(unique("sender"));
    let writes = (1..=count)
        .map(|seq| {
            let record = message_record(&conversation_id, seq, &sender, 1, at(seq as i64 * 10));
            StoreWrite::Message(record)
        })
        .collect();
    store.apply(writes).await.expect("apply");
    conversation_id
}

async fn stored_seqs(store: &dyn RetainingStore, conversation_id: &ConversationId) -> Vec<u64> {
    let query = MessageQuery {
        after_seq: Some(Seq::ZERO),
        before_seq: None,
        limit: 100,
    };
    let records = store.messages(conversation_id, query).await.expect("read");
    records.iter().map(|record| record.message.seq.0).collect()
}

fn purge(conversation_id: &ConversationId, through: u64) -> StoreWrite {
    StoreWrite::Purge {
        conversation_id: conversation_id.clone(),
        through_seq: Seq(through),
    }
}

async fn purges_forget_messages_up_to_their_seq(fixture: Fixture<dyn RetainingStore>) {
    let store = fixture.port.as_ref();
    let conversation_id = conversation_with_messages(store, 5).await;
    let bystander = conversation_with_messages(store, 2).await;
    store
        .apply(vec![purge(&conversation_id, 3)])
        .await
        .expect("purge");
    assert_eq!(stored_seqs(store, &conversation_id).await, [4, 5]);
    let first = store
        .message(
            &conversation_id,
            &wire::MessageId::new(format!("{conversation_id}-m1")),
        )
        .await
        .expect("read");
    assert_eq!(first, None, "a purged message is not found by id");
    store
        .apply(vec![purge(&conversation_id, 3), purge(&conversation_id, 2)])
        .await
        .expect("purge again");
    assert_eq!(
        stored_seqs(store, &conversation_id).await,
        [4, 5],
        "an older purge changes nothing"
    );
    assert_eq!(
        stored_seqs(store, &bystander).await,
        [1, 2],
        "a purge is its conversation's own"
    );
}

async fn the_scan_finds_expired_messages(fixture: Fixture<dyn RetainingStore>) {
    let store = fixture.port.as_ref();
    let conversation_id = conversation_with_messages(store, 4).await;
    let newest_before = |seconds| store.newest_seq_before(&conversation_id, at(seconds));
    assert_eq!(
        newest_before(5).await.expect("scan"),
        None,
        "nothing that old"
    );
    assert_eq!(newest_before(25).await.expect("scan"), Some(Seq(2)));
    assert_eq!(newest_before(1000).await.expect("scan"), Some(Seq(4)));
    store
        .apply(vec![purge(&conversation_id, 2)])
        .await
        .expect("purge");
    assert_eq!(
        newest_before(25).await.expect("scan"),
        None,
        "nothing left to purge"
    );
    assert_eq!(newest_before(35).await.expect("scan"), Some(Seq(3)));

    let mut listed = Vec::new();
    let mut after: Option<ConversationId> = None;
    loop {
        let page = store
            .conversations_with_messages(after.as_ref(), 2)
            .await
            .expect("list");
        let Some(last) = page.last().cloned() else {
            break;
        };
        assert!(page.windows(2).all(|pair| pair[0] < pair[1]), "ascending");
        listed.extend(page);
        after = Some(last);
    }
    assert!(listed.contains(&conversation_id), "listed: {listed:?}");
}
