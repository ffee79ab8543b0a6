//! The embedded store's memory is bounded by its cache, not by what it holds: redb keeps the
//! pages it reads and writes up to its cache size (its default, 1 GiB, let a standalone node's
//! heap grow ≈ 2 KB per stored message). Counted with jemalloc's statistics of this test binary.

use persistence::EmbeddedStore;
use ports::contract::fixtures::{at, message_record};
use ports::{Store, StoreWrite};
use wire::{ConversationId, UserId};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The live heap: bytes the program has allocated and not freed.
fn live_bytes() -> i64 {
    tikv_jemalloc_ctl::epoch::advance().expect("jemalloc epoch");
    tikv_jemalloc_ctl::stats::allocated::read().expect("jemalloc allocated") as i64
}

const CACHE_BYTES: usize = 4 * 1024 * 1024;
const MESSAGES: u64 = 16_000;
const BATCH: u64 = 200;

/// `MESSAGES` messages of 1 KB over 40 conversations, in batches as ingest applies them.
async fn fill(store: &EmbeddedStore) {
    let sender = UserId::new("u-memory");
    let text = "x".repeat(1_000);
    for first in (1..=MESSAGES).step_by(BATCH as usize) {
        let writes = (first..first + BATCH)
            .map(|n| {
                let conversation = ConversationId::new(format!("c-memory-{}", n % 40));
                let mut record =
                    message_record(&conversation, n / 40 + 1, &sender, 1, at(n as i64));
                record.message.text = format!("{n} {text}");
                StoreWrite::Message(record)
            })
            .collect();
        store.apply(writes).await.expect("apply");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_stays_within_the_cache_as_the_store_grows() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("store.redb");
    let store = EmbeddedStore::open_with_cache(&path, CACHE_BYTES).expect("open store");
    let before = live_bytes();
    fill(&store).await;
    let growth = live_bytes() - before;
    let file = std::fs::metadata(&path).expect("store file").len() as i64;
    // ≈ 16 MB of messages, a 71 MB file: with redb's default cache (1 GiB) the heap grew 46 MB.
    assert!(file > 16_000_000, "the store file is only {file} bytes");
    assert!(
        growth < 2 * CACHE_BYTES as i64,
        "the heap grew {growth} bytes for a store file of {file} bytes and a cache of {CACHE_BYTES}"
    );
}
