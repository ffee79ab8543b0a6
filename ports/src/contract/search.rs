//! Contract of [`SearchIndex`].

use std::future::Future;

use wire::log::MessageRecord;
use wire::{ConversationId, Seq, UserId};

use super::fixtures::{at, message_record, unique};
use super::Fixture;
use crate::{SearchIndex, SearchPage, SearchQuery};

/// Runs every search index case, each on a fresh index from `make`.
pub async fn search_index_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Fixture<dyn SearchIndex>>,
{
    words_match_whatever_their_case_and_accents_and_the_last_as_a_prefix(make().await).await;
    an_edit_replaces_the_text_and_older_versions_change_nothing(make().await).await;
    a_deleted_message_is_never_found_again(make().await).await;
    erasing_a_user_forgets_their_messages_only(make().await).await;
    a_purge_forgets_its_conversation_up_to_its_seq(make().await).await;
    only_the_given_conversations_are_searched(make().await).await;
    pages_follow_the_ranking_and_return_every_hit_once(make().await).await;
    applying_the_same_records_again_changes_nothing(make().await).await;
}

/// A message of `conversation_id` at `seq`, version `version`, saying `text`.
fn saying(
    conversation_id: &ConversationId,
    seq: u64,
    sender: &UserId,
    version: u64,
    text: &str,
) -> MessageRecord {
    let mut record = message_record(conversation_id, seq, sender, version, at(seq as i64));
    record.message.text = text.to_owned();
    record
}

fn deleted(record: &MessageRecord) -> MessageRecord {
    let mut deleted = record.clone();
    deleted.message.text.clear();
    deleted.message.deleted = true;
    deleted.version += 1;
    deleted
}

/// No hits.
const NOTHING: [u64; 0] = [];

async fn search(
    index: &dyn SearchIndex,
    text: &str,
    conversations: &[&ConversationId],
    limit: usize,
) -> SearchPage {
    let query = SearchQuery {
        text: text.to_owned(),
        conversations: conversations.iter().map(|id| (*id).clone()).collect(),
        limit,
        after: None,
    };
    index.search(query).await.expect("search")
}

/// The seqs of a page's hits, in order.
fn seqs(page: &SearchPage) -> Vec<u64> {
    page.hits
        .iter()
        .map(|hit| hit.record.message.seq.0)
        .collect()
}

async fn apply(index: &dyn SearchIndex, records: Vec<MessageRecord>) {
    index.apply(records).await.expect("apply");
}

async fn words_match_whatever_their_case_and_accents_and_the_last_as_a_prefix(
    fixture: Fixture<dyn SearchIndex>,
) {
    let index = fixture.port.as_ref();
    let conversation = ConversationId::new(unique("search-words"));
    let sender = UserId::new(unique("sender"));
    apply(
        index,
        vec![
            saying(
                &conversation,
                1,
                &sender,
                1,
                "Crème brûlée at the CAFÉ tonight",
            ),
            saying(&conversation, 2, &sender, 1, "the deployment is green"),
        ],
    )
    .await;
    let conversations = [&conversation];
    assert_eq!(
        seqs(&search(index, "creme BRULEE", &conversations, 10).await),
        [1]
    );
    assert_eq!(seqs(&search(index, "café", &conversations, 10).await), [1]);
    assert_eq!(
        seqs(&search(index, "the depl", &conversations, 10).await),
        [2],
        "last word as a prefix"
    );
    assert_eq!(
        seqs(&search(index, "depl green", &conversations, 10).await),
        NOTHING,
        "only the last word is a prefix"
    );
    assert_eq!(
        seqs(&search(index, "cafe purple", &conversations, 10).await),
        NOTHING,
        "every word must match"
    );
    assert_eq!(
        seqs(&search(index, " ,;- ", &conversations, 10).await),
        NOTHING,
        "no words, no hits"
    );
    let hit = &search(index, "tonight", &conversations, 10).await.hits[0];
    assert!(hit.score > 0.0, "a hit has a positive score: {}", hit.score);
    assert_eq!(
        hit.record.message.text, "Crème brûlée at the CAFÉ tonight",
        "hits carry the message as sent"
    );
}

async fn an_edit_replaces_the_text_and_older_versions_change_nothing(
    fixture: Fixture<dyn SearchIndex>,
) {
    let index = fixture.port.as_ref();
    let conversation = ConversationId::new(unique("search-edit"));
    let sender = UserId::new(unique("sender"));
    let sent = saying(&conversation, 1, &sender, 1, "meet at noon");
    let edited = saying(&conversation, 1, &sender, 2, "meet at midnight");
    apply(index, vec![sent.clone()]).await;
    apply(index, vec![edited.clone()]).await;
    apply(index, vec![sent]).await;
    let conversations = [&conversation];
    assert_eq!(
        seqs(&search(index, "noon", &conversations, 10).await),
        NOTHING,
        "the old text is gone"
    );
    let page = search(index, "midnight", &conversations, 10).await;
    assert_eq!(page.hits.len(), 1);
    assert_eq!(
        page.hits[0].record, edited,
        "the edit is indexed, the older send did not win"
    );
}

async fn a_deleted_message_is_never_found_again(fixture: Fixture<dyn SearchIndex>) {
    let index = fixture.port.as_ref();
    let conversation = ConversationId::new(unique("search-delete"));
    let sender = UserId::new(unique("sender"));
    let sent = saying(&conversation, 1, &sender, 1, "secret plans");
    let kept = saying(&conversation, 2, &sender, 1, "public plans");
    apply(index, vec![sent.clone(), kept]).await;
    apply(index, vec![deleted(&sent)]).await;
    let mut late_edit = sent.clone();
    late_edit.version = 7;
    // A send and a later edit arriving after the deletion (no order across log topics).
    apply(index, vec![sent, late_edit]).await;
    assert_eq!(
        seqs(&search(index, "plans", &[&conversation], 10).await),
        [2]
    );
    assert_eq!(index.live_messages().await.expect("count"), 1);
}

async fn erasing_a_user_forgets_their_messages_only(fixture: Fixture<dyn SearchIndex>) {
    let index = fixture.port.as_ref();
    let conversation = ConversationId::new(unique("search-erase"));
    let erased_user = UserId::new(unique("erased"));
    let other_user = UserId::new(unique("other"));
    let elsewhere = ConversationId::new(unique("search-erase"));
    let erased_message = saying(&conversation, 1, &erased_user, 1, "lunch on friday");
    apply(
        index,
        vec![
            erased_message.clone(),
            saying(&conversation, 2, &erased_user, 1, "lunch at the park"),
            saying(&conversation, 3, &other_user, 1, "lunch sounds good"),
            saying(&conversation, 4, &erased_user, 1, "lunch after the erasure"),
            saying(&elsewhere, 1, &erased_user, 1, "lunch elsewhere"),
        ],
    )
    .await;
    let erase = || index.erase_user(&conversation, &erased_user, Seq(3));
    assert_eq!(erase().await.expect("erase"), 2);
    assert_eq!(erase().await.expect("erase again"), 0);
    apply(index, vec![erased_message]).await;
    assert_eq!(
        seqs(&search(index, "lunch", &[&conversation], 10).await),
        [3, 4],
        "only their messages up to the seq go"
    );
    assert_eq!(
        seqs(&search(index, "lunch", &[&elsewhere], 10).await),
        [1],
        "their messages in other conversations stay"
    );
}

async fn a_purge_forgets_its_conversation_up_to_its_seq(fixture: Fixture<dyn SearchIndex>) {
    let index = fixture.port.as_ref();
    let conversation = ConversationId::new(unique("search-purge"));
    let bystander = ConversationId::new(unique("search-purge"));
    let sender = UserId::new(unique("sender"));
    let oldest = saying(&conversation, 1, &sender, 1, "budget draft");
    apply(
        index,
        vec![
            oldest.clone(),
            saying(&conversation, 2, &sender, 1, "budget review"),
            saying(&conversation, 3, &sender, 1, "budget final"),
            saying(&bystander, 1, &sender, 1, "budget elsewhere"),
        ],
    )
    .await;
    index.purge(&conversation, Seq(2)).await.expect("purge");
    index
        .purge(&conversation, Seq(2))
        .await
        .expect("purge again");
    apply(index, vec![oldest]).await;
    let both = [&conversation, &bystander];
    let hits = search(index, "budget", &both, 10).await;
    let mut found: Vec<(String, u64)> = hits
        .hits
        .iter()
        .map(|hit| {
            let message = &hit.record.message;
            (message.conversation_id.as_str().to_owned(), message.seq.0)
        })
        .collect();
    found.sort();
    let mut expected = vec![
        (conversation.as_str().to_owned(), 3),
        (bystander.as_str().to_owned(), 1),
    ];
    expected.sort();
    assert_eq!(
        found, expected,
        "purged messages stay gone, even re-applied"
    );
}

async fn only_the_given_conversations_are_searched(fixture: Fixture<dyn SearchIndex>) {
    let index = fixture.port.as_ref();
    let sender = UserId::new(unique("sender"));
    let mine = ConversationId::new(unique("search-mine"));
    let also_mine = ConversationId::new(unique("search-also-mine"));
    let theirs = ConversationId::new(unique("search-theirs"));
    apply(
        index,
        vec![
            saying(&mine, 1, &sender, 1, "quarterly report"),
            saying(&also_mine, 2, &sender, 1, "quarterly numbers"),
            saying(&theirs, 3, &sender, 1, "quarterly secrets"),
        ],
    )
    .await;
    let mut found = seqs(&search(index, "quarterly", &[&mine, &also_mine], 10).await);
    found.sort_unstable();
    assert_eq!(found, [1, 2]);
    assert_eq!(seqs(&search(index, "quarterly", &[&theirs], 10).await), [3]);
    assert_eq!(
        seqs(&search(index, "quarterly", &[], 10).await),
        NOTHING,
        "no conversation, no hits"
    );
}

async fn pages_follow_the_ranking_and_return_every_hit_once(fixture: Fixture<dyn SearchIndex>) {
    let index = fixture.port.as_ref();
    let conversation = ConversationId::new(unique("search-pages"));
    let sender = UserId::new(unique("sender"));
    let mut records: Vec<MessageRecord> = (1..=7)
        .map(|seq| saying(&conversation, seq, &sender, 1, "standup notes"))
        .collect();
    // Most relevant: the word is most of a short message.
    records.push(saying(&conversation, 8, &sender, 1, "standup"));
    apply(index, records.clone()).await;
    let mut query = SearchQuery {
        text: "standup".to_owned(),
        conversations: vec![conversation.clone()],
        limit: 3,
        after: None,
    };
    let mut pages = Vec::new();
    loop {
        let page = index.search(query.clone()).await.expect("search");
        pages.push(seqs(&page));
        let Some(next) = page.next else { break };
        query.after = Some(next);
    }
    // BM25 first, then the newer message (equal scores here: seq order is time order).
    assert_eq!(pages, [vec![8, 7, 6], vec![5, 4, 3], vec![2, 1]]);
}

async fn applying_the_same_records_again_changes_nothing(fixture: Fixture<dyn SearchIndex>) {
    let index = fixture.port.as_ref();
    let conversation = ConversationId::new(unique("search-again"));
    let sender = UserId::new(unique("sender"));
    let records: Vec<MessageRecord> = (1..=3)
        .map(|seq| saying(&conversation, seq, &sender, 1, "release checklist"))
        .collect();
    apply(index, records.clone()).await;
    apply(index, records.clone()).await;
    assert_eq!(
        seqs(&search(index, "checklist", &[&conversation], 10).await),
        [3, 2, 1]
    );
    assert_eq!(index.live_messages().await.expect("count"), 3);
}
