//! Contract of [`MessageCache`].

use std::future::Future;

use wire::log::MessageRecord;
use wire::{ConversationId, Seq, UserId};

use super::fixtures::{at, message_record, unique};
use super::Fixture;
use crate::MessageCache;

/// Capacity the suite asks `make` for.
pub const CAPACITY: usize = 5;

/// Runs every cache case; `make(capacity)` returns a fresh cache keeping `capacity` messages
/// per conversation.
pub async fn message_cache_suite<F, Fut>(make: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Fixture<dyn MessageCache>>,
{
    cached_ranges_are_complete_or_none(make(CAPACITY).await).await;
    a_lower_version_never_replaces_a_higher_one(make(CAPACITY).await).await;
    a_deletion_is_final(make(CAPACITY).await).await;
    a_changed_older_message_stays_cached(make(CAPACITY).await).await;
    only_the_newest_capacity_seqs_are_kept(make(CAPACITY).await).await;
    purged_messages_are_forgotten(make(CAPACITY).await).await;
}

async fn purged_messages_are_forgotten(fixture: Fixture<dyn MessageCache>) {
    let cache = fixture.port;
    let conversation_id = ConversationId::new(unique("cache-purge"));
    let other = ConversationId::new(unique("cache-purge"));
    cache
        .put(&conversation_id, &records(&conversation_id, 1..=4))
        .await
        .expect("put");
    cache
        .put(&other, &records(&other, 1..=2))
        .await
        .expect("put");
    cache
        .forget_through(&conversation_id, Seq(2))
        .await
        .expect("forget");
    let held = cache
        .held(&conversation_id, Seq(1), Seq(4))
        .await
        .expect("held");
    let seqs: Vec<u64> = held.iter().map(|record| record.message.seq.0).collect();
    assert_eq!(seqs, [3, 4], "seqs up to the purge are forgotten");
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(2))
            .await
            .expect("range"),
        None
    );
    assert_eq!(
        cache
            .held(&other, Seq(1), Seq(2))
            .await
            .expect("held")
            .len(),
        2,
        "other conversations keep theirs"
    );
}

fn records(
    conversation_id: &ConversationId,
    seqs: std::ops::RangeInclusive<u64>,
) -> Vec<MessageRecord> {
    let sender = UserId::new("cache-sender");
    seqs.map(|seq| message_record(conversation_id, seq, &sender, 1, at(seq as i64)))
        .collect()
}

async fn cached_ranges_are_complete_or_none(fixture: Fixture<dyn MessageCache>) {
    let cache = fixture.port;
    let conversation_id = ConversationId::new(unique("cache-range"));
    let other = ConversationId::new(unique("cache-range-other"));
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(1))
            .await
            .expect("range"),
        None,
        "nothing cached yet"
    );
    let first = records(&conversation_id, 1..=3);
    cache.put(&conversation_id, &first).await.expect("put");
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(3))
            .await
            .expect("range"),
        Some(first.clone())
    );
    assert_eq!(
        cache
            .range(&conversation_id, Seq(2), Seq(2))
            .await
            .expect("range"),
        Some(first[1..2].to_vec())
    );
    assert_eq!(
        cache
            .range(&conversation_id, Seq(2), Seq(4))
            .await
            .expect("range"),
        None,
        "seq 4 is missing"
    );
    // Out of order and with a hole: 5 without 4.
    cache
        .put(&conversation_id, &records(&conversation_id, 5..=5))
        .await
        .expect("put");
    assert_eq!(
        cache
            .range(&conversation_id, Seq(3), Seq(5))
            .await
            .expect("range"),
        None,
        "a hole in the middle"
    );
    cache
        .put(&conversation_id, &records(&conversation_id, 4..=4))
        .await
        .expect("put");
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(5))
            .await
            .expect("range"),
        Some(records(&conversation_id, 1..=5)),
        "ascending by seq"
    );
    assert_eq!(
        cache.range(&other, Seq(1), Seq(1)).await.expect("range"),
        None,
        "conversations are cached separately"
    );
    assert_eq!(
        cache
            .range(&conversation_id, Seq(3), Seq(2))
            .await
            .expect("range"),
        Some(Vec::new()),
        "an empty range is trivially complete"
    );
}

async fn a_lower_version_never_replaces_a_higher_one(fixture: Fixture<dyn MessageCache>) {
    let cache = fixture.port;
    let conversation_id = ConversationId::new(unique("cache-version"));
    let sender = UserId::new(unique("sender"));
    let version = |version: u64| message_record(&conversation_id, 1, &sender, version, at(1));
    cache
        .put(&conversation_id, &[version(1)])
        .await
        .expect("put");
    cache
        .put(&conversation_id, &[version(3)])
        .await
        .expect("put");
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(1))
            .await
            .expect("range"),
        Some(vec![version(3)]),
        "a higher version replaces"
    );
    cache
        .put(&conversation_id, &[version(2)])
        .await
        .expect("put");
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(1))
            .await
            .expect("range"),
        Some(vec![version(3)]),
        "a lower version is ignored"
    );
    cache
        .put(&conversation_id, &[version(4), version(2)])
        .await
        .expect("put");
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(1))
            .await
            .expect("range"),
        Some(vec![version(4)]),
        "within one put too"
    );
}

/// Two nodes may change one message concurrently from the same version: the deletion wins
/// whatever the versions, and no live version replaces it.
async fn a_deletion_is_final(fixture: Fixture<dyn MessageCache>) {
    let cache = fixture.port;
    let conversation_id = ConversationId::new(unique("cache-deleted"));
    let sender = UserId::new(unique("sender"));
    let live = |version: u64| message_record(&conversation_id, 1, &sender, version, at(1));
    let deleted = |version: u64| {
        let mut record = live(version);
        record.message.deleted = true;
        record.message.text.clear();
        record
    };
    let cached = || cache.range(&conversation_id, Seq(1), Seq(1));
    cache.put(&conversation_id, &[live(3)]).await.expect("put");
    cache
        .put(&conversation_id, &[deleted(2)])
        .await
        .expect("put");
    assert_eq!(cached().await.expect("range"), Some(vec![deleted(2)]));
    cache.put(&conversation_id, &[live(5)]).await.expect("put");
    assert_eq!(
        cached().await.expect("range"),
        Some(vec![deleted(2)]),
        "a live version never replaces a deletion"
    );
    cache
        .put(&conversation_id, &[deleted(4)])
        .await
        .expect("put");
    assert_eq!(cached().await.expect("range"), Some(vec![deleted(4)]));
}

/// A change to an older message is put last: the least recently put seqs go first, and `held`
/// returns what the cache has of a range with holes.
async fn a_changed_older_message_stays_cached(fixture: Fixture<dyn MessageCache>) {
    let cache = fixture.port;
    let conversation_id = ConversationId::new(unique("cache-changed"));
    let capacity = CAPACITY as u64;
    let sender = UserId::new("cache-sender");
    cache
        .put(&conversation_id, &records(&conversation_id, 1..=capacity))
        .await
        .expect("put");
    let changed = message_record(&conversation_id, 1, &sender, 2, at(1));
    cache
        .put(&conversation_id, std::slice::from_ref(&changed))
        .await
        .expect("put");
    cache
        .put(
            &conversation_id,
            &records(&conversation_id, capacity + 1..=capacity + 1),
        )
        .await
        .expect("put");
    let mut expected = vec![changed];
    expected.extend(records(&conversation_id, 3..=capacity + 1));
    assert_eq!(
        cache
            .held(&conversation_id, Seq(1), Seq(capacity + 1))
            .await
            .expect("held"),
        expected,
        "seq 2 was put least recently"
    );
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(2))
            .await
            .expect("range"),
        None
    );
}

async fn only_the_newest_capacity_seqs_are_kept(fixture: Fixture<dyn MessageCache>) {
    let cache = fixture.port;
    let conversation_id = ConversationId::new(unique("cache-trim"));
    let capacity = CAPACITY as u64;
    cache
        .put(&conversation_id, &records(&conversation_id, 1..=capacity))
        .await
        .expect("put");
    assert!(cache
        .range(&conversation_id, Seq(1), Seq(capacity))
        .await
        .expect("range")
        .is_some());
    cache
        .put(
            &conversation_id,
            &records(&conversation_id, capacity + 1..=capacity + 2),
        )
        .await
        .expect("put");
    assert_eq!(
        cache
            .range(&conversation_id, Seq(1), Seq(1))
            .await
            .expect("range"),
        None,
        "the oldest seqs were trimmed"
    );
    assert_eq!(
        cache
            .range(&conversation_id, Seq(2), Seq(2))
            .await
            .expect("range"),
        None
    );
    assert_eq!(
        cache
            .range(&conversation_id, Seq(3), Seq(capacity + 2))
            .await
            .expect("range"),
        Some(records(&conversation_id, 3..=capacity + 2)),
        "the newest capacity seqs stay"
    );
}
