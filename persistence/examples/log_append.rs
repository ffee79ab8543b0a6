//! What one group of the embedded log costs: appends `COUNT` chat-message events one at a time
//! (each its own group: one write and one fdatasync) to a fresh log under `DIR`, with the zeros
//! written ahead of the records (the default) and without (`prepared_bytes` 0, every group grows
//! the file), alternating `ROUNDS` times, and prints the wall time and the process's CPU time per
//! append of each round (docs/benchmarks.md, issue #14):
//!
//! ```sh
//! cargo run --release -p persistence --example log_append -- DIR [COUNT] [ROUNDS]
//! ```
//!
//! `DIR` must be on the disk under test (a tmpfs makes fdatasync free).

use std::path::Path;
use std::time::Instant;

use persistence::{EmbeddedLog, LogOptions};
use ports::contract::fixtures::sent_event;
use ports::EventLog;
use wire::{ConversationId, UserId};

/// The process's user + system CPU time in seconds (`/proc/self/stat`, clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields[index].parse::<f64>().expect("ticks");
    // Fields 14 and 15 of stat(5) (utime, stime), counted from the state field (3rd).
    (ticks(11) + ticks(12)) / 100.0
}

async fn round(dir: &Path, count: u64, prepared_bytes: u64) -> (f64, f64) {
    let _ = std::fs::remove_dir_all(dir);
    let options = LogOptions {
        prepared_bytes,
        ..LogOptions::default()
    };
    let log = EmbeddedLog::open_with(dir, options).expect("open the log");
    let conversation_id = ConversationId::new("log-append");
    let sender = UserId::new("sender");
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for seq in 1..=count {
        let event = sent_event(&conversation_id, seq, &sender);
        log.append(vec![event]).await.expect("append");
    }
    let per_append = |seconds: f64| seconds * 1e6 / count as f64;
    (
        per_append(wall.elapsed().as_secs_f64()),
        per_append(cpu_seconds() - cpu),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: log_append DIR [COUNT] [ROUNDS]");
    let count: u64 = args.next().map_or(5_000, |n| n.parse().expect("COUNT"));
    let rounds: u32 = args.next().map_or(3, |n| n.parse().expect("ROUNDS"));
    let dir = Path::new(&dir).join("log-append");
    println!("{count} appends of one event each, per append:");
    let ahead = LogOptions::default().prepared_bytes;
    let written_ahead = format!("written ahead ({} KiB)", ahead >> 10);
    for _ in 0..rounds {
        for (name, prepared) in [(written_ahead.as_str(), ahead), ("growing the file", 0)] {
            let (wall, cpu) = round(&dir, count, prepared).await;
            println!("  {name:22} wall {wall:7.1} us   cpu {cpu:6.1} us");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
