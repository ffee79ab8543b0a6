//! The reference model of the conversation actor: what each step of a round should answer,
//! and what the conversation should hold afterwards.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use wire::ops::SendAck;
use wire::{ErrorCode, MessageId, Seq};

/// Alice and bob are members; mallory is not.
pub(super) const USERS: [&str; 3] = ["alice", "bob", "mallory"];
pub(super) const MALLORY: usize = 2;
pub(super) const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(super) enum Step {
    Send {
        user: usize,
        key: usize,
    },
    /// A send replying to a message accepted before the burst (on this node or another).
    Reply {
        user: usize,
        key: usize,
        target: usize,
    },
    Edit {
        user: usize,
        target: usize,
    },
    Delete {
        user: usize,
        target: usize,
    },
}

/// The keys another node's members send with ([`Round::OtherNode`]); this node's sends and
/// the dead nodes' use keys below it, so an abandoned send is only retried on this node.
pub(super) const OTHER_NODE_KEYS: std::ops::Range<usize> = 6..9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogMode {
    Healthy,
    Fails,
    FailsAmbiguously,
}

#[derive(Debug, Clone)]
pub(super) enum Round {
    /// Steps queued together (so they may share a batch), then answered.
    Burst { steps: Vec<Step>, log: LogMode },
    /// The store catches up with the log, then the actor stops (idle) and a fresh one
    /// takes over on the next operation.
    Restart,
    /// Another node reserves a send of a member and dies before its append: nothing is
    /// logged, the seq is allocated, the key may be retried by a later send (or not).
    DeadNode { user: usize, key: usize },
    /// The cluster's reaper settles the abandoned sends (a final one runs before the check).
    Reap,
    /// Another node accepts a member's send: it reserves the seq, appends the message, puts
    /// it in the shared cache and records the ack — after the next burst's warm-up, so that
    /// the burst's first batch catches up with it (from its reservation, or first when the
    /// batch holds a reply), and the burst's replies may answer it.
    OtherNode { user: usize, key: usize },
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..6usize).prop_map(|(user, key)| Step::Send { user, key }),
        1 => (0..3usize, 0..6usize, 0..8usize)
            .prop_map(|(user, key, target)| Step::Reply { user, key, target }),
        1 => (0..3usize, 0..8usize).prop_map(|(user, target)| Step::Edit { user, target }),
        1 => (0..3usize, 0..8usize).prop_map(|(user, target)| Step::Delete { user, target }),
    ]
}

pub(super) fn round() -> impl Strategy<Value = Round> {
    let log = prop_oneof![
        6 => Just(LogMode::Healthy),
        1 => Just(LogMode::Fails),
        1 => Just(LogMode::FailsAmbiguously),
    ];
    prop_oneof![
        8 => (prop::collection::vec(step(), 1..5), log)
            .prop_map(|(steps, log)| Round::Burst { steps, log }),
        1 => Just(Round::Restart),
        1 => (0..MALLORY, 0..6usize).prop_map(|(user, key)| Round::DeadNode { user, key }),
        1 => Just(Round::Reap),
        2 => (0..MALLORY, OTHER_NODE_KEYS).prop_map(|(user, key)| Round::OtherNode { user, key }),
    ]
}

/// What the model expects at a seq.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Expected {
    pub(super) sender: usize,
    pub(super) key: usize,
    pub(super) text: String,
    pub(super) deleted: bool,
    /// A send that failed ambiguously, or whose node died after reserving it: its
    /// tombstone fills the seq.
    pub(super) aborted: bool,
}

#[derive(Default)]
pub(super) struct Model {
    pub(super) last_seq: u64,
    /// (sender, key) → the first ack.
    pub(super) acks: BTreeMap<(usize, usize), SendAck>,
    /// Accepted messages in the order they were accepted.
    pub(super) accepted: Vec<Seq>,
    /// The accepted messages another node accepted (this node does not publish them).
    pub(super) elsewhere: Vec<Seq>,
    /// How many of `accepted` the current burst's edits and deletes may target.
    pub(super) targets: usize,
    pub(super) at: BTreeMap<u64, Expected>,
}

/// An answer reduced to what the model predicts.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    Sent(Seq),
    Done,
    Failed(ErrorCode),
}

pub(super) fn key_text(sender: usize, key: usize) -> String {
    format!("{} says {key}", USERS[sender])
}

impl Model {
    /// The model's answers to one burst's steps, in queue order; updates the model.
    pub(super) fn burst(&mut self, steps: &[Step], log: LogMode, round: usize) -> Vec<Outcome> {
        let mut batch = BatchModel::default();
        let mut outcomes = Vec::new();
        // Steps target messages accepted before the burst (their ids are known when the
        // burst is queued).
        self.targets = self.accepted.len();
        let mut queued = 0;
        for (index, step) in steps.iter().enumerate() {
            // The running actor starts a batch with the first queued step at once; the others
            // queue behind it and make the next batch. A send's repeat within one batch shares
            // its answer; in a later batch a send that failed is a fresh send again.
            if self.is_queued(step) {
                queued += 1;
                if queued == 2 {
                    batch = BatchModel::default();
                }
            }
            let outcome = match *step {
                Step::Send { user, key } => self.send(user, key, log, &mut batch),
                // A reply is the send of its key (its target exists: accepted before the
                // burst, deleted or not); with no message to answer yet it is not queued.
                Step::Reply { .. } if self.targets == 0 => Outcome::Done,
                Step::Reply { user, key, .. } => self.send(user, key, log, &mut batch),
                Step::Edit { user, target } => {
                    let text = format!("edit {round}.{index}");
                    batch.settle(log, self.edit(user, target, log, text))
                }
                Step::Delete { user, target } => batch.settle(log, self.delete(user, target, log)),
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    pub(super) fn send(
        &mut self,
        user: usize,
        key: usize,
        log: LogMode,
        batch: &mut BatchModel,
    ) -> Outcome {
        if user == MALLORY {
            return Outcome::Failed(ErrorCode::NotMember);
        }
        if let Some(ack) = self.acks.get(&(user, key)) {
            return Outcome::Sent(ack.seq);
        }
        if batch.failed_keys.contains(&(user, key)) {
            return Outcome::Failed(ErrorCode::Unavailable);
        }
        batch.changed = true;
        match log {
            LogMode::Healthy => Outcome::Sent(self.accept(user, key)),
            LogMode::Fails => {
                batch.failed_keys.push((user, key));
                Outcome::Failed(ErrorCode::Unavailable)
            }
            LogMode::FailsAmbiguously => {
                batch.failed_keys.push((user, key));
                self.last_seq += 1;
                self.at.insert(self.last_seq, expected(user, key, true));
                Outcome::Failed(ErrorCode::Unavailable)
            }
        }
    }

    /// A node reserves a send and dies: the seq it got (none for a key already accepted,
    /// answered with its ack), to be tombstoned by a retry or the reaper.
    pub(super) fn dead_node(&mut self, user: usize, key: usize) -> Option<Seq> {
        if self.acks.contains_key(&(user, key)) {
            return None;
        }
        self.last_seq += 1;
        self.at.insert(self.last_seq, expected(user, key, true));
        Some(Seq(self.last_seq))
    }

    /// Another node accepts a send: the seq it got (none for a key accepted already).
    pub(super) fn other_node(&mut self, user: usize, key: usize) -> Option<Seq> {
        if self.acks.contains_key(&(user, key)) {
            return None;
        }
        let seq = self.accept(user, key);
        self.elsewhere.push(seq);
        Some(seq)
    }

    /// A fresh send accepted: the next seq, its ack and its message.
    fn accept(&mut self, user: usize, key: usize) -> Seq {
        self.last_seq += 1;
        let seq = Seq(self.last_seq);
        self.acks.insert(
            (user, key),
            SendAck {
                message_id: MessageId::new(""),
                seq,
                created_at: chrono::Utc::now(),
            },
        );
        self.accepted.push(seq);
        self.at.insert(seq.0, expected(user, key, false));
        seq
    }

    /// Whether the step is sent to the actor (a reply, an edit or a delete needs a target).
    pub(super) fn is_queued(&self, step: &Step) -> bool {
        matches!(step, Step::Send { .. }) || self.targets > 0
    }

    /// The message an edit or delete targets: one accepted before the burst, if any.
    pub(super) fn target(&self, target: usize) -> Option<u64> {
        (self.targets > 0).then(|| self.accepted[target % self.targets].0)
    }

    pub(super) fn edit(
        &mut self,
        user: usize,
        target: usize,
        log: LogMode,
        text: String,
    ) -> Answered {
        let message = match self.changeable(user, target) {
            Ok(message) => message,
            Err(refused) => return (refused, Change::None),
        };
        if message.deleted {
            return (Outcome::Failed(ErrorCode::Conflict), Change::None);
        }
        if log != LogMode::Healthy {
            return (Outcome::Failed(ErrorCode::Unavailable), Change::Made);
        }
        message.text = text;
        (Outcome::Done, Change::Made)
    }

    pub(super) fn delete(&mut self, user: usize, target: usize, log: LogMode) -> Answered {
        let message = match self.changeable(user, target) {
            Ok(message) => message,
            Err(refused) => return (refused, Change::None),
        };
        if message.deleted {
            return (Outcome::Done, Change::None);
        }
        if log != LogMode::Healthy {
            return (Outcome::Failed(ErrorCode::Unavailable), Change::Made);
        }
        message.deleted = true;
        message.text.clear();
        (Outcome::Done, Change::Made)
    }

    /// The message an edit or delete by `user` may change, or the answer refusing it.
    pub(super) fn changeable(
        &mut self,
        user: usize,
        target: usize,
    ) -> Result<&mut Expected, Outcome> {
        let seq = self.target(target).ok_or(Outcome::Done)?;
        let message = self.at.get_mut(&seq).expect("accepted");
        if user == MALLORY {
            return Err(Outcome::Failed(ErrorCode::NotMember));
        }
        if user != message.sender {
            return Err(Outcome::Failed(ErrorCode::Forbidden));
        }
        Ok(message)
    }
}

/// Whether a step changed the working state of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Made,
    None,
}

pub(super) type Answered = (Outcome, Change);

/// One batch as the model sees it: the sends that failed in it, and whether anything changed.
#[derive(Default)]
pub(super) struct BatchModel {
    failed_keys: Vec<(usize, usize)>,
    changed: bool,
}

impl BatchModel {
    /// An edit's or delete's answer. It rests on the changes before it in the batch, so under
    /// a failing log an answer after a change is the append's error.
    pub(super) fn settle(&mut self, log: LogMode, (outcome, change): Answered) -> Outcome {
        let answer = if self.changed && log != LogMode::Healthy {
            Outcome::Failed(ErrorCode::Unavailable)
        } else {
            outcome
        };
        if change == Change::Made {
            self.changed = true;
        }
        answer
    }
}

pub(super) fn expected(sender: usize, key: usize, aborted: bool) -> Expected {
    Expected {
        sender,
        key,
        text: if aborted {
            String::new()
        } else {
            key_text(sender, key)
        },
        deleted: aborted,
        aborted,
    }
}
