//! The `SearchIndex` contract suite against the Tantivy adapter, on a fresh directory per case.

use std::sync::Arc;

use ports::contract::{self, Fixture};
use ports::{SearchIndex, SearchReader};
use search::TantivyIndex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tantivy_index_meets_the_contract() {
    contract::search_index_suite(|| async {
        let directory = tempfile::tempdir().expect("temporary directory");
        let index = TantivyIndex::open(directory.path(), 32_000_000).expect("open index");
        Fixture::new(Arc::new(index) as Arc<dyn SearchIndex>, directory)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_survives_a_reopen() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let record = {
        let conversation = wire::ConversationId::new("c-reopen");
        let sender = wire::UserId::new("u");
        let mut record = ports::contract::fixtures::message_record(
            &conversation,
            1,
            &sender,
            1,
            ports::contract::fixtures::at(1),
        );
        record.message.text = "persisted words".to_owned();
        record
    };
    {
        let index = TantivyIndex::open(directory.path(), 32_000_000).expect("open index");
        index.apply(vec![record.clone()]).await.expect("apply");
    }
    let index = TantivyIndex::open(directory.path(), 32_000_000).expect("reopen index");
    assert_eq!(index.live_messages().await.expect("count"), 1);
}
