//! The run's ledger (`parley-loadtest --ledger PATH`): what every client believes, for a checker
//! outside the run (scripts/chaos/verify.py) to hold against the store: every message acked
//! (conversation, `client_msg_id`, seq, `message_id`), every message given up on, each
//! client's final view of its conversations (seq → `message_id`, after a last `sync`), and
//! every answer to a send with its time, so that answers can be matched to the faults of a
//! chaos schedule.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;
use wire::{ConversationId, UserId};

use crate::outbox::{AbandonedSend, AckedSend};

/// One answer to one attempt of a send.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerRecord {
    /// When it came, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `ok` or the error code.
    pub code: String,
    /// Since the message's first attempt was due (acks only, else 0), milliseconds.
    pub latency_ms: f64,
}

/// The answers of a run, recorded only when a ledger is asked for.
#[derive(Debug, Default)]
pub struct AnswerLog {
    answers: Mutex<Vec<AnswerRecord>>,
}

impl AnswerLog {
    pub fn record(&self, code: &str, latency_us: u64) {
        let record = AnswerRecord {
            at_ms: unix_ms(),
            code: code.to_owned(),
            latency_ms: latency_us as f64 / 1e3,
        };
        self.answers.lock().expect("answers lock").push(record);
    }

    pub fn take(&self) -> Vec<AnswerRecord> {
        std::mem::take(&mut *self.answers.lock().expect("answers lock"))
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// What a client holds of one conversation: the seqs it got (live or by `sync`) above the
/// point it started watching, with their message ids.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConversationView {
    pub from_seq: u64,
    pub messages: BTreeMap<u64, String>,
}

/// Every client's views, kept only when a ledger is asked for.
#[derive(Debug, Default)]
pub struct Views {
    conversations: Mutex<HashMap<ConversationId, ConversationView>>,
}

impl Views {
    pub fn watch(&self, conversation_id: &ConversationId, from_seq: u64) {
        let mut conversations = self.conversations.lock().expect("views lock");
        let view = conversations.entry(conversation_id.clone()).or_default();
        view.from_seq = view.from_seq.max(from_seq);
    }

    pub fn saw(&self, conversation_id: &ConversationId, seq: u64, message_id: &str) {
        let mut conversations = self.conversations.lock().expect("views lock");
        let view = conversations.entry(conversation_id.clone()).or_default();
        if seq > view.from_seq {
            view.messages.insert(seq, message_id.to_owned());
        }
    }

    pub fn snapshot(&self) -> BTreeMap<ConversationId, ConversationView> {
        let conversations = self.conversations.lock().expect("views lock");
        conversations
            .iter()
            .map(|(id, view)| (id.clone(), view.clone()))
            .collect()
    }
}

/// One client's part of the ledger.
#[derive(Debug, Serialize)]
pub struct ClientLedger {
    pub user_id: UserId,
    pub acked: Vec<AckedSend>,
    pub gave_up: Vec<AbandonedSend>,
    pub views: BTreeMap<ConversationId, ConversationView>,
}

#[derive(Debug, Serialize)]
pub struct LedgerFile {
    pub answers: Vec<AnswerRecord>,
    pub clients: Vec<ClientLedger>,
}

impl LedgerFile {
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let json = serde_json::to_vec(self)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_keeps_only_what_is_above_its_watch_point() {
        let views = Views::default();
        let conversation = ConversationId::new("c");
        views.watch(&conversation, 2);
        views.saw(&conversation, 2, "m2");
        views.saw(&conversation, 3, "m3");
        let snapshot = views.snapshot();
        let view = &snapshot[&conversation];
        assert_eq!(view.from_seq, 2);
        assert_eq!(
            view.messages.iter().collect::<Vec<_>>(),
            [(&3, &"m3".to_owned())]
        );
    }
}
