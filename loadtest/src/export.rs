//! The export benchmark (`export-bench`): one user with many messages seeded straight into a
//! standalone node's embedded store, an export of their data run by the real node, the node's
//! RSS sampled from `/proc` while it exports and while the file downloads, and the file
//! checked line by line against what was seeded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ports::{Store, StoreWrite};
use wire::log::{ConversationRecord, MessageRecord, Participant, ParticipantRole};
use wire::{Conversation, ConversationId, ConversationKind, Seq, UserId};

/// Whose data is exported, and who else writes (none of it may show).
pub const EXPORTED: &str = "alice";
pub const OTHER: &str = "bob";
/// Written in batches of this many records.
const SEED_BATCH: usize = 1000;

/// What to seed: `messages` of the exported user over `conversations`; the other user writes
/// one message for every ten of theirs, and the exported user reacted to every tenth of those.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    pub messages: usize,
    pub conversations: usize,
}

impl Seed {
    fn others_messages(&self) -> usize {
        self.messages / 10
    }

    /// The line counts by type the export must hold.
    pub fn expected_lines(&self) -> BTreeMap<String, u64> {
        let conversations = self.conversations as u64;
        [
            ("conversation", conversations),
            ("membership", conversations),
            ("receipt", conversations),
            ("message", self.messages as u64),
            ("reaction", self.others_messages().div_ceil(10) as u64),
        ]
        .into_iter()
        .map(|(kind, count)| (kind.to_owned(), count))
        .collect()
    }
}

fn conversation_id(index: usize) -> ConversationId {
    ConversationId::new(format!("bench-conversation-{index:05}"))
}

fn conversation(index: usize) -> ConversationRecord {
    let created_at = chrono::Utc::now();
    let members = [UserId::new(EXPORTED), UserId::new(OTHER)];
    ConversationRecord {
        participants: members
            .iter()
            .map(|user_id| Participant {
                user_id: user_id.clone(),
                role: ParticipantRole::Member,
                joined_at: created_at,
            })
            .collect(),
        conversation: Conversation {
            conversation_id: conversation_id(index),
            kind: ConversationKind::Group,
            title: Some(format!("bench {index}")),
            members: members.to_vec(),
            created_by: UserId::new(EXPORTED),
            created_at,
            last_seq: Seq::ZERO,
        },
        version: 1,
        updated_at: created_at,
    }
}

/// Message `number` of the seed: the exported user's, or (`of_other`) the other user's, whose
/// every tenth carries the exported user's reaction.
fn message(number: usize, of_other: bool, seed: &Seed) -> MessageRecord {
    let conversation = number % seed.conversations;
    // The exported user's messages take the even seqs, the other user's the odd ones.
    let seq = (number / seed.conversations) as u64 * 2 + 1 + u64::from(of_other);
    let (sender, text) = if of_other {
        (
            OTHER,
            format!("{OTHER} message {number}: not to be exported"),
        )
    } else {
        (EXPORTED, format!("{EXPORTED} message {number}: the quick brown fox jumps over the lazy dog, again and again"))
    };
    let reactions = if of_other && number.is_multiple_of(10) {
        serde_json::json!({ "👍": [EXPORTED] })
    } else {
        serde_json::json!({})
    };
    serde_json::from_value(serde_json::json!({
        "message": {
            "message_id": format!("bench-{sender}-{number}"),
            "conversation_id": conversation_id(conversation), "seq": seq, "sender_id": sender,
            "client_msg_id": format!("{sender}-{number}"), "text": text, "reply_to": null,
            "forwarded_from": null, "reactions": reactions, "created_at": chrono::Utc::now(),
            "edited_at": null, "deleted": false, "attachments": [],
        },
        "version": 1,
    }))
    .expect("a message record")
}

/// Writes the seed into `store`: the conversations, the messages, a receipt per conversation.
pub async fn seed_store(store: &dyn Store, seed: &Seed) -> anyhow::Result<()> {
    let mut writes: Vec<StoreWrite> = (0..seed.conversations)
        .map(|index| StoreWrite::Conversation(conversation(index)))
        .collect();
    writes.extend((0..seed.conversations).map(|index| StoreWrite::Watermarks {
        conversation_id: conversation_id(index),
        user_id: UserId::new(EXPORTED),
        delivered_seq: Seq(2),
        read_seq: Seq(1),
    }));
    store.apply(writes).await?;
    let theirs = (0..seed.messages).map(|number| (number, false));
    let others = (0..seed.others_messages()).map(|number| (number, true));
    let all: Vec<(usize, bool)> = theirs.chain(others).collect();
    for batch in all.chunks(SEED_BATCH) {
        let writes = batch
            .iter()
            .map(|&(number, of_other)| StoreWrite::Message(message(number, of_other, seed)))
            .collect();
        store.apply(writes).await?;
    }
    Ok(())
}

/// Samples a process's RSS every 10 ms until stopped: the peak, in KiB.
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (peak_kib, stop) = (peak_kib.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(rss) = crate::net::rss_kib(pid) {
                        peak_kib.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        Self {
            peak_kib,
            stop,
            task,
        }
    }

    /// Stops sampling: the peak RSS seen, in KiB.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.peak_kib.load(Ordering::Relaxed)
    }
}

/// Reads the export file at `url` chunk by chunk: its line counts by type and its size. Fails
/// on a line of the other user's.
pub async fn count_lines(url: &str) -> anyhow::Result<(BTreeMap<String, u64>, u64)> {
    let mut response = reqwest::get(url).await.context("download")?;
    if !response.status().is_success() {
        bail!("download answered {}", response.status());
    }
    let mut counts = BTreeMap::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.context("download chunk")? {
        bytes += chunk.len() as u64;
        pending.extend_from_slice(&chunk);
        let complete = pending
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |at| at + 1);
        for line in pending[..complete]
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
        {
            let value: serde_json::Value = serde_json::from_slice(line).context("a JSON line")?;
            if value.to_string().contains("not to be exported") {
                bail!("the file holds another user's message: {value}");
            }
            let kind = value["type"].as_str().unwrap_or("untyped").to_owned();
            *counts.entry(kind).or_insert(0) += 1;
        }
        pending.drain(..complete);
    }
    Ok((counts, bytes))
}
