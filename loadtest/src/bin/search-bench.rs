//! `search-bench`: indexing throughput and query latency of the search index (the Tantivy
//! adapter, through the `SearchIndex` port, as the indexer and `search.messages` use it) over
//! generated messages. Results go to docs/benchmarks.md ("Search").
//!
//! Messages: `--messages` (default 1 000 000) over `--conversations` (default 10 000), 3 to 25
//! words each drawn from a vocabulary of about 400 chat words with Zipf-like frequencies (a few accented
//! words included), indexed in batches of 512 (one commit each, like the indexer). Queries:
//! `--queries` (default 2000) searches of one or two words, the last one cut to a prefix half
//! of the time, each over the 50 conversations of a simulated member.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use ports::{SearchIndex, SearchQuery, SearchReader};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use search::TantivyIndex;
use serde_json::json;
use wire::log::MessageRecord;
use wire::ConversationId;

const BATCH: usize = 512;
const CONVERSATIONS_PER_MEMBER: usize = 50;

struct Options {
    messages: usize,
    conversations: usize,
    queries: usize,
    directory: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(options))
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        messages: 1_000_000,
        conversations: 10_000,
        queries: 2000,
        directory: std::env::temp_dir().join("parley-search-bench"),
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = || arguments.next().unwrap_or_default();
        match argument.as_str() {
            "--messages" => options.messages = value().parse()?,
            "--conversations" => options.conversations = value().parse::<usize>()?.max(1),
            "--queries" => options.queries = value().parse()?,
            "--dir" => options.directory = PathBuf::from(value()),
            "-h" | "--help" => {
                println!("usage: search-bench [--messages 1000000] [--conversations 10000] [--queries 2000] [--dir PATH (emptied first)]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(options)
}

async fn run(options: Options) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&options.directory);
    let index = Arc::new(TantivyIndex::open(&options.directory, 32 * 1024 * 1024)?);
    let vocabulary = vocabulary();
    let mut rng = StdRng::seed_from_u64(16);
    let started = Instant::now();
    let mut sent = 0;
    while sent < options.messages {
        let batch: Vec<MessageRecord> = (sent..options.messages.min(sent + BATCH))
            .map(|number| generated_message(number, &options, &vocabulary, &mut rng))
            .collect::<Result<_, _>>()?;
        sent += batch.len();
        index.apply(batch).await?;
    }
    let indexing = started.elapsed();
    println!(
        "indexed {sent} messages in {:.1} s: {:.0} messages/s",
        indexing.as_secs_f64(),
        sent as f64 / indexing.as_secs_f64()
    );
    println!(
        "index on disk: {:.1} MiB",
        directory_bytes(&options.directory) as f64 / 1048576.0
    );
    println!("RSS after indexing: {:.1} MiB", resident_mib());
    let latencies = query_latencies(&index, &options, &vocabulary, &mut rng).await?;
    println!(
        "{} queries: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        latencies.value_at_quantile(0.50) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        latencies.max() as f64 / 1000.0
    );
    println!("RSS after queries: {:.1} MiB", resident_mib());
    Ok(())
}

async fn query_latencies(
    index: &Arc<TantivyIndex>,
    options: &Options,
    vocabulary: &[&'static str],
    rng: &mut StdRng,
) -> anyhow::Result<Histogram<u64>> {
    let mut latencies = Histogram::<u64>::new(3)?;
    for _ in 0..options.queries {
        let conversations = (0..CONVERSATIONS_PER_MEMBER)
            .map(|_| conversation_id(rng.random_range(0..options.conversations)))
            .collect();
        let mut words: Vec<String> = (0..rng.random_range(1..=2))
            .map(|_| zipf_word(vocabulary, rng).to_owned())
            .collect();
        if rng.random_bool(0.5) {
            let last = words.last_mut().expect("one word at least");
            let keep = last.chars().count().div_ceil(2).max(2);
            *last = last.chars().take(keep).collect();
        }
        let query = SearchQuery {
            text: words.join(" "),
            conversations,
            limit: 20,
            after: None,
        };
        let started = Instant::now();
        index.search(query).await?;
        latencies.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(latencies)
}

fn conversation_id(number: usize) -> ConversationId {
    ConversationId::new(format!("bench-c{number}"))
}

fn generated_message(
    number: usize,
    options: &Options,
    vocabulary: &[&'static str],
    rng: &mut StdRng,
) -> serde_json::Result<MessageRecord> {
    let conversation = number % options.conversations;
    let words: Vec<&str> = (0..rng.random_range(3..=25))
        .map(|_| zipf_word(vocabulary, rng))
        .collect();
    serde_json::from_value(json!({
        "message": {
            "message_id": format!("bench-m{number}"),
            "conversation_id": conversation_id(conversation),
            "seq": number / options.conversations + 1,
            "sender_id": format!("user{}", rng.random_range(0..options.conversations * 5)),
            "client_msg_id": format!("bench-{number}"),
            "text": words.join(" "),
            "reply_to": null,
            "forwarded_from": null,
            "reactions": {},
            "created_at": chrono::DateTime::from_timestamp(1_764_000_000 + number as i64, 0),
            "edited_at": null,
            "deleted": false,
        },
        "version": 1,
    }))
}

/// A word with probability about 1/rank (rank 1 most frequent).
fn zipf_word(vocabulary: &[&'static str], rng: &mut StdRng) -> &'static str {
    let count = vocabulary.len() as f64;
    // Inverse of the continuous 1/x distribution over [1, count + 1).
    let rank = (count + 1.0).powf(rng.random::<f64>()) as usize;
    vocabulary[rank.clamp(1, vocabulary.len()) - 1]
}

fn directory_bytes(directory: &Path) -> u64 {
    std::fs::read_dir(directory)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Chat-like words, most frequent first.
fn vocabulary() -> Vec<&'static str> {
    include_str!("search-bench-words.txt")
        .split_whitespace()
        .collect()
}
