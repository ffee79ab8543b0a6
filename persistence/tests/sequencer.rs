//! The memory sequencer picks up where the store left off after a restart.

use std::sync::Arc;

use persistence::{EmbeddedStore, MemorySequencer};
use ports::contract::fixtures::{at, message_record};
use ports::contract::sequencer::intents;
use ports::{DedupKey, Reservation, Sequencer, Store, StoreWrite};
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, Seq, UserId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sequencer_continues_and_dedups_from_the_store() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("open"));
    let conversation_id = ConversationId::new("restart");
    let sender = UserId::new("sender");
    let records: Vec<_> = (1..=3)
        .map(|seq| message_record(&conversation_id, seq, &sender, 1, at(seq as i64)))
        .collect();
    store
        .apply(records.iter().cloned().map(StoreWrite::Message).collect())
        .await
        .expect("apply");

    let sequencer = MemorySequencer::new(store);
    assert_eq!(
        sequencer.last_seq(&conversation_id).await.expect("last"),
        Seq(3)
    );
    let retried = DedupKey {
        sender_id: sender.clone(),
        client_msg_id: ClientMsgId::new("client-2"),
    };
    let new = DedupKey {
        sender_id: sender,
        client_msg_id: ClientMsgId::new("client-new"),
    };
    let reserved = sequencer
        .reserve(&conversation_id, &intents(&[retried, new]))
        .await
        .expect("reserve");
    let original = &records[1].message;
    assert_eq!(
        reserved,
        vec![
            Reservation::Duplicate(SendAck {
                message_id: original.message_id.clone(),
                seq: original.seq,
                created_at: original.created_at,
            }),
            Reservation::Fresh(Seq(4)),
        ]
    );
}
