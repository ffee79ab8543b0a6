//! Model-based test of the conversation actor: random rounds of sends (client_msg_ids drawn
//! from a small pool, so retries happen), edits and deletes (by the sender, by another
//! member, by a stranger; of live and deleted messages), under a healthy log, a failing log
//! and an ambiguously failing log (Kafka's kind), and actor restarts, are checked against a
//! reference model. Invariants: every answer is the model's; seqs are dense (a send that failed
//! ambiguously leaves a tombstone at its seq); one message per client_msg_id; no accepted
//! message is lost; `message.new` is published once per accepted message, in seq order.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ports::BusPayload;
use proptest::prelude::*;
use tokio::sync::oneshot;
use wire::events::ServerEvent;
use wire::log::{LogEventBody, MessageRecord};
use wire::ops::{HistoryResult, SendAck};
use wire::{ClientMsgId, ConversationId, ErrorCode, MessageId, Seq, UserId};

use super::op::Queued;
use super::{ConversationOp, OpActor};
use crate::node::Limits;
use crate::ops::conversation_get::GetConversation;
use crate::ops::history_get::{PageBudget, ReadHistory};
use crate::ops::message_delete::DeleteMessage;
use crate::ops::message_edit::EditMessage;
use crate::ops::message_send::SendMessage;
use crate::testing::Harness;
use crate::OpError;

/// Alice and bob are members; mallory is not.
const USERS: [&str; 3] = ["alice", "bob", "mallory"];
const MALLORY: usize = 2;
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Step {
    Send { user: usize, key: usize },
    Edit { user: usize, target: usize },
    Delete { user: usize, target: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogMode {
    Healthy,
    Fails,
    FailsAmbiguously,
}

#[derive(Debug, Clone)]
enum Round {
    /// Steps queued together (so they may share a batch), then answered.
    Burst { steps: Vec<Step>, log: LogMode },
    /// The store catches up with the log, then the actor stops (idle) and a fresh one
    /// takes over on the next operation.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize, 0..6usize).prop_map(|(user, key)| Step::Send { user, key }),
        1 => (0..3usize, 0..8usize).prop_map(|(user, target)| Step::Edit { user, target }),
        1 => (0..3usize, 0..8usize).prop_map(|(user, target)| Step::Delete { user, target }),
    ]
}

fn round() -> impl Strategy<Value = Round> {
    let log = prop_oneof![
        6 => Just(LogMode::Healthy),
        1 => Just(LogMode::Fails),
        1 => Just(LogMode::FailsAmbiguously),
    ];
    prop_oneof![
        8 => (prop::collection::vec(step(), 1..5), log)
            .prop_map(|(steps, log)| Round::Burst { steps, log }),
        1 => Just(Round::Restart),
    ]
}

/// What the model expects at a seq.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    sender: usize,
    key: usize,
    text: String,
    deleted: bool,
    /// A send that failed ambiguously: its tombstone fills the seq.
    aborted: bool,
}

#[derive(Default)]
struct Model {
    last_seq: u64,
    /// (sender, key) → the first ack.
    acks: BTreeMap<(usize, usize), SendAck>,
    /// Accepted messages in the order they were accepted.
    accepted: Vec<Seq>,
    /// How many of `accepted` the current burst's edits and deletes may target.
    targets: usize,
    at: BTreeMap<u64, Expected>,
}

/// An answer reduced to what the model predicts.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Sent(Seq),
    Done,
    Failed(ErrorCode),
}

fn key_text(sender: usize, key: usize) -> String {
    format!("{} says {key}", USERS[sender])
}

impl Model {
    /// The model's answers to one burst's steps, in queue order; updates the model.
    fn burst(&mut self, steps: &[Step], log: LogMode, round: usize) -> Vec<Outcome> {
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

    fn send(&mut self, user: usize, key: usize, log: LogMode, batch: &mut BatchModel) -> Outcome {
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
            LogMode::Healthy => {
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
                Outcome::Sent(seq)
            }
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

    /// Whether the step is sent to the actor (an edit or delete needs a target).
    fn is_queued(&self, step: &Step) -> bool {
        matches!(step, Step::Send { .. }) || self.targets > 0
    }

    /// The message an edit or delete targets: one accepted before the burst, if any.
    fn target(&self, target: usize) -> Option<u64> {
        (self.targets > 0).then(|| self.accepted[target % self.targets].0)
    }

    fn edit(&mut self, user: usize, target: usize, log: LogMode, text: String) -> Answered {
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

    fn delete(&mut self, user: usize, target: usize, log: LogMode) -> Answered {
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
    fn changeable(&mut self, user: usize, target: usize) -> Result<&mut Expected, Outcome> {
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
enum Change {
    Made,
    None,
}

type Answered = (Outcome, Change);

/// One batch as the model sees it: the sends that failed in it, and whether anything changed.
#[derive(Default)]
struct BatchModel {
    failed_keys: Vec<(usize, usize)>,
    changed: bool,
}

impl BatchModel {
    /// An edit's or delete's answer. It rests on the changes before it in the batch, so under
    /// a failing log an answer after a change is the append's error.
    fn settle(&mut self, log: LogMode, (outcome, change): Answered) -> Outcome {
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

fn expected(sender: usize, key: usize, aborted: bool) -> Expected {
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

/// The actor under test with its fake ports, and the real message ids.
struct Run {
    harness: Harness,
    conversation_id: ConversationId,
    ids: BTreeMap<u64, MessageId>,
}

type Answer = oneshot::Receiver<Result<Outcome, OpError>>;

impl Run {
    async fn new() -> Self {
        let harness = Harness::new(Limits {
            conversation_idle: IDLE,
            ..Limits::default()
        });
        let conversation_id = harness.group("model", &USERS[..2]);
        Self {
            harness,
            conversation_id,
            ids: BTreeMap::new(),
        }
    }

    fn enqueue<T: 'static>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, OpError>>) -> ConversationOp,
        to_outcome: impl FnOnce(T) -> Outcome + 'static,
    ) -> Answer {
        let (reply, answer) = oneshot::channel();
        let node = &self.harness.node;
        node.supervisor()
            .enqueue(node, &self.conversation_id, op(reply));
        let (outcome, receiver) = oneshot::channel();
        actix_rt::spawn(async move {
            let result = answer.await.expect("answered").map(to_outcome);
            let _ = outcome.send(result);
        });
        receiver
    }

    /// Queues one step (a step the model skips is not queued).
    fn queue(&self, model: &Model, step: &Step, text: String) -> Option<Answer> {
        let user = |index: usize| UserId::new(USERS[index]);
        match *step {
            Step::Send { user: sender, key } => {
                let command = SendMessage {
                    actor: OpActor::Member(user(sender)),
                    client_msg_id: ClientMsgId::new(format!("key-{key}")),
                    text: key_text(sender, key),
                    reply_to: None,
                    forwarded_from: None,
                    attachments: Vec::new(),
                };
                Some(self.enqueue(
                    |reply| ConversationOp::Send(Queued::new(command, reply)),
                    |ack: SendAck| Outcome::Sent(ack.seq),
                ))
            }
            Step::Edit {
                user: editor,
                target,
            } => {
                let command = EditMessage {
                    user_id: user(editor),
                    message_id: self.ids[&model.target(target)?].clone(),
                    text,
                };
                Some(self.enqueue(
                    |reply| ConversationOp::Edit(Queued::new(command, reply)),
                    |_| Outcome::Done,
                ))
            }
            Step::Delete {
                user: deleter,
                target,
            } => {
                let command = DeleteMessage {
                    user_id: user(deleter),
                    message_id: self.ids[&model.target(target)?].clone(),
                };
                Some(self.enqueue(
                    |reply| ConversationOp::Delete(Queued::new(command, reply)),
                    |()| Outcome::Done,
                ))
            }
        }
    }

    /// Starts the actor (if it stopped) and waits until it is idle, so that a burst's first
    /// step makes a batch of its own (see [`Model::burst`]).
    async fn warm_up(&self) {
        let read = GetConversation {
            user_id: UserId::new(USERS[0]),
        };
        let (reply, answer) = oneshot::channel();
        let node = &self.harness.node;
        node.supervisor().enqueue(
            node,
            &self.conversation_id,
            ConversationOp::Get(Queued::new(read, reply)),
        );
        answer.await.expect("answered").expect("the conversation");
    }

    fn set_log(&self, mode: LogMode) {
        let log = &self.harness.log;
        log.ambiguous_failures
            .store(mode == LogMode::FailsAmbiguously, Ordering::SeqCst);
        log.fail.store(mode != LogMode::Healthy, Ordering::SeqCst);
    }

    async fn burst(&mut self, model: &mut Model, steps: &[Step], log: LogMode, round: usize) {
        self.warm_up().await;
        model.targets = model.accepted.len();
        self.set_log(log);
        let answers: Vec<Option<Answer>> = steps
            .iter()
            .enumerate()
            .map(|(index, step)| self.queue(model, step, format!("edit {round}.{index}")))
            .collect();
        let expected = model.burst(steps, log, round);
        for ((step, answer), expected) in steps.iter().zip(answers).zip(expected) {
            let Some(answer) = answer else {
                continue;
            };
            let got = match answer.await.expect("answered") {
                Ok(outcome) => outcome,
                Err(error) => Outcome::Failed(error.code),
            };
            assert_eq!(
                got, expected,
                "round {round}, {step:?} with the log {log:?}"
            );
        }
        self.set_log(LogMode::Healthy);
        self.learn_ids(model);
    }

    /// The message ids of accepted sends, from the log.
    fn learn_ids(&mut self, model: &Model) {
        for (seq, record) in self.folded_log() {
            if model.accepted.contains(&Seq(seq)) {
                self.ids.entry(seq).or_insert(record.message.message_id);
            }
        }
    }

    /// The newest version of every message the log holds, by seq.
    fn folded_log(&self) -> BTreeMap<u64, MessageRecord> {
        let mut folded: BTreeMap<u64, MessageRecord> = BTreeMap::new();
        for event in self.harness.log.events.lock().unwrap().iter() {
            let record = match &event.body {
                LogEventBody::MessageSent { record }
                | LogEventBody::MessageEdited { record }
                | LogEventBody::MessageDeleted { record }
                | LogEventBody::MessageAborted { record } => record,
                _ => continue,
            };
            let seq = record.message.seq.0;
            if folded.get(&seq).is_none_or(|held| record.supersedes(held)) {
                folded.insert(seq, record.clone());
            }
        }
        folded
    }

    /// The store catches up with the log (ingest's part), then the actor stops for idleness.
    async fn restart(&self) {
        let records: Vec<ports::StoreWrite> = self
            .folded_log()
            .into_values()
            .map(ports::StoreWrite::Message)
            .collect();
        ports::Store::apply(&*self.harness.store, records)
            .await
            .expect("store");
        tokio::time::sleep(IDLE * 2).await;
        assert_eq!(
            self.harness.node.supervisor().active(),
            0,
            "the actor stopped"
        );
    }

    /// Every message as a reader gets it through the actor.
    async fn history(&self) -> Vec<wire::Message> {
        let read = ReadHistory {
            user_id: None,
            query: ports::MessageQuery {
                after_seq: Some(Seq::ZERO),
                before_seq: None,
                limit: 100,
            },
            budget: PageBudget::REPLY,
        };
        let (reply, answer) = oneshot::channel();
        let node = &self.harness.node;
        node.supervisor().enqueue(
            node,
            &self.conversation_id,
            ConversationOp::History(Queued::new(read, reply)),
        );
        let page: HistoryResult = answer.await.expect("answered").expect("history");
        assert!(!page.has_more, "the test keeps under one page");
        page.messages
    }

    /// The seqs of the `message.new` events published for the members, in publish order
    /// (each node's sessions get them in this order: conversation/tests.rs checks delivery).
    fn published_seqs(&self) -> Vec<u64> {
        let published = self.harness.bus.published.lock().unwrap();
        published
            .iter()
            .filter_map(|envelope| match &envelope.payload {
                BusPayload::Event {
                    event: ServerEvent::MessageNew { message },
                    ..
                } => Some(message.seq.0),
                _ => None,
            })
            .collect()
    }
}

/// The end state: the log, a reader and the fan-out agree with the model.
async fn check_end_state(run: &Run, model: &Model) {
    // Tombstones of ambiguous failures are appended once the log answers again.
    let aborted = model.at.values().filter(|message| message.aborted).count();
    for _ in 0..200 {
        let written = run
            .folded_log()
            .values()
            .filter(|record| record.is_aborted())
            .count();
        if written == aborted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let folded = run.folded_log();
    let seqs: Vec<u64> = folded.keys().copied().collect();
    let dense: Vec<u64> = (1..=model.last_seq).collect();
    assert_eq!(seqs, dense, "every seq is a message or a tombstone, once");
    for (seq, record) in &folded {
        let expected = &model.at[seq];
        let message = &record.message;
        assert_eq!(record.is_aborted(), expected.aborted, "seq {seq}");
        assert_eq!(
            message.sender_id.as_str(),
            USERS[expected.sender],
            "seq {seq}"
        );
        assert_eq!(
            message.client_msg_id.as_str(),
            format!("key-{}", expected.key)
        );
        assert_eq!(message.text, expected.text, "seq {seq}");
        assert_eq!(message.deleted, expected.deleted, "seq {seq}");
    }
    // A tombstone reaches readers through the store (until it is ingested its seq is a gap
    // that readers skip): ingest, restart, then read.
    run.restart().await;
    let read: Vec<(u64, String, bool)> = run
        .history()
        .await
        .into_iter()
        .map(|message| (message.seq.0, message.text, message.deleted))
        .collect();
    let logged: Vec<(u64, String, bool)> = folded
        .values()
        .map(|record| {
            let message = &record.message;
            (message.seq.0, message.text.clone(), message.deleted)
        })
        .collect();
    assert_eq!(read, logged, "a reader sees what the log holds");
    let delivered = run.published_seqs();
    let accepted: Vec<u64> = model.accepted.iter().map(|seq| seq.0).collect();
    let mut in_order = accepted.clone();
    in_order.sort_unstable();
    assert_eq!(
        delivered, in_order,
        "each accepted message is published once, in seq order"
    );
}

async fn run_rounds(rounds: Vec<Round>) {
    tokio::time::pause();
    let mut run = Run::new().await;
    let mut model = Model::default();
    for (index, round) in rounds.iter().enumerate() {
        match round {
            Round::Burst { steps, log } => run.burst(&mut model, steps, *log, index).await,
            Round::Restart => run.restart().await,
        }
    }
    check_end_state(&run, &model).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_actor_keeps_the_models_guarantees(rounds in prop::collection::vec(round(), 1..40)) {
        actix_rt::System::new().block_on(run_rounds(rounds));
    }
}

/// Found by the model: an edit queued behind a deletion of the same message, in a batch whose
/// append then failed, was answered `conflict` ("the message is deleted") although the
/// deletion never happened. Answers resting on the batch's earlier changes now wait for the
/// append and become its error.
#[actix_rt::test]
async fn an_answer_resting_on_a_failed_change_is_the_failure() {
    let send = |key| Step::Send { user: 0, key };
    run_rounds(vec![
        Round::Burst {
            steps: vec![send(0)],
            log: LogMode::Healthy,
        },
        Round::Burst {
            steps: vec![
                send(1),
                Step::Delete { user: 0, target: 0 },
                Step::Edit { user: 0, target: 0 },
                Step::Edit { user: 1, target: 0 },
            ],
            log: LogMode::Fails,
        },
    ])
    .await;
}
