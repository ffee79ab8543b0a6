//! Model-based test of the conversation actor: random rounds of sends (client_msg_ids drawn
//! from a small pool, so retries happen), replies, edits and deletes (by the sender, by another
//! member, by a stranger; of live and deleted messages), under a healthy log, a failing log
//! and an ambiguously failing log (Kafka's kind), and actor restarts, are checked against a
//! reference model. Sends may also be reserved by another node that dies before its append
//! (retried later or never), and the cluster's reaper settles what they left; or accepted by
//! another node, which this node's batches catch up with (replies may answer them).
//! Invariants: every answer is the model's; seqs are dense (a send that failed ambiguously or
//! whose node died leaves a tombstone at its seq); one message per client_msg_id; no accepted
//! message is lost; `message.new` is published once per message this node accepted, in seq
//! order.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ports::BusPayload;
use proptest::prelude::*;
use tokio::sync::oneshot;
use wire::events::ServerEvent;
use wire::log::{LogEventBody, MessageRecord};
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, MessageId, Seq, UserId};

use super::abandoned_tests::{first_page, reserve_then_die};
use super::op::Queued;
use super::{log_event_for, ConversationOp, OpActor};
use crate::node::Limits;
use crate::ops::conversation_get::GetConversation;
use crate::ops::message_delete::{DeleteMessage, Deleter};
use crate::ops::message_edit::EditMessage;
use crate::ops::message_send::SendMessage;
use crate::session::{DetachedSession, SessionHandle};
use crate::testing::Harness;
use crate::OpError;

mod model;

use model::*;

/// The actor under test with its fake ports, the real message ids, and a member's session on
/// this node (with one, a batch of sends catches up from its reservation: the path of issue
/// #14's step (1); without one every batch reloads the record and refreshes first).
struct Run {
    harness: Harness,
    conversation_id: ConversationId,
    ids: BTreeMap<u64, MessageId>,
    _session: Option<(SessionHandle, DetachedSession)>,
}

type Answer = oneshot::Receiver<Result<Outcome, OpError>>;

impl Run {
    async fn new(with_session: bool) -> Self {
        let harness = Harness::new(Limits {
            conversation_idle: IDLE,
            ..Limits::default()
        });
        let conversation_id = harness.group("model", &USERS[..2]);
        let session = if with_session {
            let (session, outbound) = SessionHandle::detached(
                UserId::new(USERS[1]),
                4096,
                harness.node.metrics().clone(),
            );
            harness
                .node
                .registry()
                .register_session(&session, std::slice::from_ref(&conversation_id), None)
                .await
                .expect("register");
            Some((session, outbound))
        } else {
            None
        };
        Self {
            harness,
            conversation_id,
            ids: BTreeMap::new(),
            _session: session,
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

    /// Queues a member's send of `key-{key}` (a reply when `reply_to` is given).
    fn send(&self, sender: usize, key: usize, reply_to: Option<MessageId>) -> Answer {
        let command = SendMessage {
            actor: OpActor::Member(UserId::new(USERS[sender])),
            client_msg_id: ClientMsgId::new(format!("key-{key}")),
            text: key_text(sender, key),
            reply_to,
            forwarded_from: None,
            attachments: Vec::new(),
        };
        self.enqueue(
            |reply| ConversationOp::Send(Queued::new(command, reply)),
            |ack: SendAck| Outcome::Sent(ack.seq),
        )
    }

    /// Queues one step (a step the model skips is not queued).
    fn queue(&self, model: &Model, step: &Step, text: String) -> Option<Answer> {
        let user = |index: usize| UserId::new(USERS[index]);
        match *step {
            Step::Send { user: sender, key } => Some(self.send(sender, key, None)),
            Step::Reply {
                user: sender,
                key,
                target,
            } => {
                let reply_to = self.ids[&model.target(target)?].clone();
                Some(self.send(sender, key, Some(reply_to)))
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
                    deleter: Deleter::Sender(user(deleter)),
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

    /// One burst; `elsewhere` are sends other nodes accept after the warm-up, just before the
    /// steps are queued, so that the burst's first batch has to catch up with them.
    async fn burst(
        &mut self,
        model: &mut Model,
        (steps, log): (&[Step], LogMode),
        round: usize,
        elsewhere: Vec<(usize, usize)>,
    ) {
        self.warm_up().await;
        for (user, key) in elsewhere {
            self.other_node(model, user, key).await;
        }
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

    /// A node reserves a send and dies (its reservation expires).
    async fn dead_node(&self, model: &mut Model, user: usize, key: usize) {
        let client_msg_id = format!("key-{key}");
        let (_, reserved) = reserve_then_die(
            &self.harness,
            &self.conversation_id,
            USERS[user],
            &client_msg_id,
        )
        .await;
        let seq = match reserved {
            ports::Reservation::Fresh(seq) | ports::Reservation::Resent { seq, .. } => Some(seq),
            ports::Reservation::Duplicate(_) | ports::Reservation::InFlight => None,
        };
        assert_eq!(seq, model.dead_node(user, key), "a dead node's reservation");
    }

    /// Another node accepts a send: what this node sees of it is the sequencer's reservation
    /// and ack, the log's event and the shared cache's record.
    async fn other_node(&mut self, model: &mut Model, user: usize, key: usize) {
        let ports = self.harness.node.ports();
        let dedup = ports::DedupKey {
            sender_id: UserId::new(USERS[user]),
            client_msg_id: ClientMsgId::new(format!("key-{key}")),
        };
        let intent = ports::SendIntent::new(dedup.clone(), chrono::Utc::now());
        let mut reserved = ports
            .sequencer
            .reserve(&self.conversation_id, std::slice::from_ref(&intent))
            .await
            .expect("reserve");
        let seq = match reserved.pop().expect("one reservation") {
            ports::Reservation::Fresh(seq) => Some(seq),
            ports::Reservation::Duplicate(_) => None,
            other => panic!("another node's reservation: {other:?}"),
        };
        assert_eq!(
            seq,
            model.other_node(user, key),
            "another node's reservation"
        );
        let Some(seq) = seq else {
            return;
        };
        let mut record = super::tests::accepted(&self.conversation_id, seq.0, &key_text(user, key));
        record.message.sender_id = dedup.sender_id.clone();
        record.message.client_msg_id = dedup.client_msg_id.clone();
        let sent = LogEventBody::MessageSent {
            record: record.clone(),
        };
        ports
            .log
            .append(vec![log_event_for(sent)])
            .await
            .expect("append");
        ports
            .cache
            .put(&self.conversation_id, std::slice::from_ref(&record))
            .await
            .expect("cache");
        let ack = SendAck {
            message_id: record.message.message_id.clone(),
            seq,
            created_at: record.message.created_at,
        };
        ports
            .sequencer
            .confirm(&self.conversation_id, &[(dedup, ack)])
            .await
            .expect("confirm");
        self.learn_ids(model);
    }

    /// The reaper's round: every abandoned send is tombstoned.
    async fn reap(&self) {
        crate::abandoned_sends::settle_round(&self.harness.node)
            .await
            .expect("reaper round");
        assert_eq!(
            self.harness.sequencer.unsettled_claims(),
            0,
            "claims settled"
        );
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
        let page = first_page(&self.harness, &self.conversation_id, None).await;
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
    let mut in_order: Vec<u64> = model
        .accepted
        .iter()
        .filter(|seq| !model.elsewhere.contains(seq))
        .map(|seq| seq.0)
        .collect();
    in_order.sort_unstable();
    assert_eq!(
        delivered, in_order,
        "each message this node accepted is published once, in seq order"
    );
}

async fn run_rounds(rounds: Vec<Round>) {
    run_rounds_with(rounds, false).await;
}

async fn run_rounds_with(rounds: Vec<Round>, with_session: bool) {
    tokio::time::pause();
    let mut run = Run::new(with_session).await;
    let mut model = Model::default();
    // Other nodes' sends wait for the next burst (see `Run::burst`); any other round takes
    // them first.
    let mut elsewhere = Vec::new();
    for (index, round) in rounds.iter().enumerate() {
        if let Round::OtherNode { user, key } = round {
            elsewhere.push((*user, *key));
            continue;
        }
        if let Round::Burst { steps, log } = round {
            let pending = std::mem::take(&mut elsewhere);
            run.burst(&mut model, (steps, *log), index, pending).await;
            continue;
        }
        for (user, key) in std::mem::take(&mut elsewhere) {
            run.other_node(&mut model, user, key).await;
        }
        match round {
            Round::Restart => run.restart().await,
            Round::DeadNode { user, key } => run.dead_node(&mut model, *user, *key).await,
            Round::Reap => run.reap().await,
            Round::Burst { .. } | Round::OtherNode { .. } => unreachable!("handled above"),
        }
    }
    for (user, key) in elsewhere {
        run.other_node(&mut model, user, key).await;
    }
    run.reap().await;
    check_end_state(&run, &model).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_actor_keeps_the_models_guarantees(
        rounds in prop::collection::vec(round(), 1..40),
        with_session in any::<bool>(),
    ) {
        actix_rt::System::new().block_on(run_rounds_with(rounds, with_session));
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

/// Issue #19: a send whose node died after reserving it and that nobody retried leaves no hole
/// (the reaper tombstones it), and neither does one retried on a node that died too.
#[actix_rt::test]
async fn sends_whose_nodes_died_leave_no_hole() {
    let send = |user, key| Round::Burst {
        steps: vec![Step::Send { user, key }],
        log: LogMode::Healthy,
    };
    run_rounds(vec![
        send(0, 1),
        Round::DeadNode { user: 1, key: 0 },
        send(0, 2),
        Round::DeadNode { user: 0, key: 3 },
        Round::DeadNode { user: 0, key: 3 },
        send(1, 4),
    ])
    .await;
}
