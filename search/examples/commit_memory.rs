//! How much memory the index's commits (and the merges after them) take at their peak, as the
//! index grows.
//!
//! ```sh
//! cargo run --release -p search --example commit_memory -- [DOCS] [DOCS_PER_COMMIT]
//! ```
//!
//! Indexes `DOCS` chat-like messages (default 60 000) in commits of `DOCS_PER_COMMIT` (25, a
//! node's half second under the soak's load) and prints, per tenth of the run, the peak of live
//! allocations above the live heap at the tenth's start, the number of segments and the live
//! heap after. Merges start once 8 segments wait (Tantivy's log merge policy), so the first
//! seven commits' peaks are a commit's alone.
//! The allocator counts every allocation (jemalloc underneath), so the peaks are exact, not
//! sampled: what any thread (the merges' included) held at once above the tenth's start.

use peakmem_alloc::{PeakMemAlloc, PeakMemAllocTrait};
use ports::contract::fixtures::{at, message_record};
use ports::SearchIndex;
use search::TantivyIndex;
use wire::{ConversationId, UserId};

#[global_allocator]
static ALLOCATOR: PeakMemAlloc<tikv_jemallocator::Jemalloc> =
    PeakMemAlloc::new(tikv_jemallocator::Jemalloc);

/// The live heap: bytes allocated and not freed (jemalloc's statistics).
fn live_mib() -> f64 {
    tikv_jemalloc_ctl::epoch::advance().expect("jemalloc epoch");
    tikv_jemalloc_ctl::stats::allocated::read().expect("jemalloc allocated") as f64 / 1048576.0
}

const WORDS: &[&str] = &[
    "hello", "meeting", "tomorrow", "lunch", "project", "deadline", "review", "thanks", "see",
    "you", "later", "call", "me", "when", "ready", "the", "build", "is", "green", "again",
];

fn chat_text(n: u64) -> String {
    let words = 4 + (n % 9);
    (0..words)
        .map(|i| WORDS[((n * 7 + i * 13) % WORDS.len() as u64) as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn argument(position: usize, default: u64) -> u64 {
    std::env::args()
        .nth(position)
        .map(|value| value.parse().expect("a number"))
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let docs = argument(1, 60_000);
    let per_commit = argument(2, 25).max(1);
    let directory = tempfile::tempdir().expect("temporary directory");
    let index = TantivyIndex::open(directory.path(), 15_000_000).expect("open index");
    let commits = docs / per_commit;
    let tenth = (commits / 10).max(1);
    println!("docs {docs}, {per_commit} per commit");
    println!("commits\tdocs\tpeak above start (MiB)\tsegments\tlive after (MiB)");
    let senders: Vec<UserId> = (0..50).map(|n| UserId::new(format!("u{n}"))).collect();
    let mut seq = 0u64;
    ALLOCATOR.reset_peak_memory();
    for commit in 1..=commits {
        let batch = (0..per_commit)
            .map(|_| {
                seq += 1;
                let conversation = ConversationId::new(format!("c{}", seq % 500));
                let sender = &senders[(seq % 50) as usize];
                let mut record = message_record(&conversation, seq, sender, 1, at(seq as i64));
                record.message.text = chat_text(seq);
                record
            })
            .collect();
        index.apply(batch).await.expect("apply");
        if commit % tenth == 0 {
            println!(
                "{commit}\t{seq}\t{:.1}\t{}\t{:.1}",
                ALLOCATOR.get_peak_memory() as f64 / 1048576.0,
                index.segment_count(),
                live_mib()
            );
            ALLOCATOR.reset_peak_memory();
        }
    }
}
