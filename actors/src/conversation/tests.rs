//! Conversation actor tests over fake ports, with paused time where timing matters.

use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::oneshot;
use wire::log::LogEventBody;
use wire::ops::SendAck;
use wire::{ClientMsgId, CloseCode, ConversationId, ErrorCode, MessageId, Seq, UserId};

use super::abandoned_tests::{aborted_records, reserve_and_die};
use super::op::Queued;
use super::{ConversationHandle, ConversationOp, Deliver, OpActor};
use crate::node::{Limits, Node};
use crate::ops::conversation_get::GetConversation;
use crate::ops::message_delete::{DeleteMessage, Deleter};
use crate::ops::message_edit::EditMessage;
use crate::ops::message_send::SendMessage;
use crate::session::{DetachedSession, Outbound, SessionHandle};
use crate::testing::Harness;
use crate::OpError;

fn enqueue_send(
    node: &Node,
    conversation_id: &ConversationId,
    user: &str,
    client_msg_id: &str,
) -> oneshot::Receiver<Result<SendAck, OpError>> {
    let (reply, answer) = oneshot::channel();
    node.supervisor().enqueue(
        node,
        conversation_id,
        ConversationOp::Send(Queued::new(
            SendMessage {
                actor: OpActor::Member(UserId::new(user)),
                client_msg_id: ClientMsgId::new(client_msg_id),
                text: format!("text of {client_msg_id}"),
                reply_to: None,
                forwarded_from: None,
                attachments: Vec::new(),
            },
            reply,
        )),
    );
    answer
}

pub(super) async fn send(
    node: &Node,
    conversation_id: &ConversationId,
    user: &str,
    client_msg_id: &str,
) -> Result<SendAck, OpError> {
    enqueue_send(node, conversation_id, user, client_msg_id)
        .await
        .expect("answered")
}

fn sent_events(harness: &Harness) -> usize {
    harness
        .log
        .bodies()
        .iter()
        .filter(|body| matches!(body, LogEventBody::MessageSent { .. }))
        .count()
}

#[actix_rt::test]
async fn concurrent_sends_are_batched_and_densely_sequenced() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob", "carol"]);
    let answers: Vec<_> = (0..60)
        .map(|index| {
            let user = ["alice", "bob", "carol"][index % 3];
            enqueue_send(&harness.node, &conversation_id, user, &format!("m{index}"))
        })
        .collect();
    let mut seqs = Vec::new();
    for answer in answers {
        seqs.push(answer.await.unwrap().unwrap().seq.0);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    let appends = harness
        .log
        .appends
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(appends < 60, "60 queued sends took {appends} appends");
    assert_eq!(sent_events(&harness), 60);
}

#[actix_rt::test]
async fn a_failed_append_accepts_nothing_and_gives_the_seqs_back() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    harness
        .log
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let error = send(&harness.node, &conversation_id, "alice", "m1")
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    assert!(
        harness.bus.published.lock().unwrap().is_empty(),
        "nothing may be fanned out for a send that was not accepted"
    );
    harness
        .log
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let ack = send(&harness.node, &conversation_id, "alice", "m2")
        .await
        .unwrap();
    assert_eq!(ack.seq, Seq(1), "the seq of the failed send is reused");
    // The retried first send is now a new message with the next seq.
    let retried = send(&harness.node, &conversation_id, "alice", "m1")
        .await
        .unwrap();
    assert_eq!(retried.seq, Seq(2));
}

#[actix_rt::test]
async fn an_ambiguous_append_failure_burns_its_seqs() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let log = &harness.log;
    log.ambiguous_failures
        .store(true, std::sync::atomic::Ordering::SeqCst);
    log.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let error = send(&harness.node, &conversation_id, "alice", "m1")
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::Unavailable);
    log.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    // Seq 1 may already be in the log: the retry must not reuse it.
    let retried = send(&harness.node, &conversation_id, "alice", "m1")
        .await
        .unwrap();
    assert_eq!(retried.seq, Seq(2));
    // And the failed send's tombstone reaches the log once it answers again.
    let mut tombstone = None;
    for _ in 0..100 {
        tombstone = log
            .events
            .lock()
            .unwrap()
            .iter()
            .find_map(|event| match &event.body {
                wire::log::LogEventBody::MessageAborted { record } => Some(record.clone()),
                _ => None,
            });
        if tombstone.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let tombstone = tombstone.expect("the aborted send is recorded");
    assert!(tombstone.is_aborted());
    assert_eq!(tombstone.message.seq, Seq(1));
    assert_eq!(tombstone.message.client_msg_id.as_str(), "m1");
    // Regression (chaos run: clients whose final `sync` lacked a seq the store had): the
    // tombstone goes to the shared cache too, so readers see seq 1 settled before ingest
    // stores it.
    let cache = &harness.node.ports().cache;
    let mut cached = Vec::new();
    for _ in 0..100 {
        cached = cache.held(&conversation_id, Seq(1), Seq(1)).await.unwrap();
        if !cached.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        cached,
        vec![tombstone],
        "the tombstone is in the shared cache"
    );
}

#[actix_rt::test]
async fn a_retried_client_msg_id_returns_the_first_ack() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    // Twice in the same batch, then once more later.
    let first = enqueue_send(&harness.node, &conversation_id, "alice", "same");
    let second = enqueue_send(&harness.node, &conversation_id, "alice", "same");
    let first = first.await.unwrap().unwrap();
    let second = second.await.unwrap().unwrap();
    let third = send(&harness.node, &conversation_id, "alice", "same")
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(first, third);
    assert_eq!(sent_events(&harness), 1);
    // Another sender may use the same client_msg_id.
    let other = send(&harness.node, &conversation_id, "bob", "same")
        .await
        .unwrap();
    assert_eq!(other.seq, Seq(2));
}

/// Regression (chaos run: a message stored twice after `kill -9` of its node): the retry of a
/// send whose node died after reserving it is sent under a new seq together with the first
/// send's tombstone (same message id and seq), so the store keeps one message for the key even
/// when the first send did reach the log.
#[actix_rt::test]
async fn a_retry_after_its_node_died_tombstones_the_first_send() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let first = reserve_and_die(&harness, &conversation_id, "alice", "retried").await;

    let ack = send(&harness.node, &conversation_id, "alice", "retried")
        .await
        .unwrap();
    assert_eq!(ack.seq, Seq(2));
    assert_ne!(ack.message_id, first.message_id);
    let tombstone = aborted_records(&harness)
        .pop()
        .expect("the first send's tombstone is in the log");
    assert_eq!(tombstone.message.message_id, first.message_id);
    assert_eq!(tombstone.message.seq, Seq(1));
    assert!(tombstone.is_aborted() && tombstone.message.deleted);
    assert_eq!(sent_events(&harness), 1, "only the retry is sent");
    assert_eq!(
        harness.sequencer.unsettled_claims(),
        0,
        "the retry's batch settled its claim of the first send"
    );
}

#[actix_rt::test]
async fn members_only_and_senders_only() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let error = send(&harness.node, &conversation_id, "mallory", "m1")
        .await
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::NotMember);
    let ack = send(&harness.node, &conversation_id, "alice", "m1")
        .await
        .unwrap();
    let (reply, answer) = oneshot::channel();
    harness.node.supervisor().enqueue(
        &harness.node,
        &conversation_id,
        ConversationOp::Edit(Queued::new(
            EditMessage {
                user_id: UserId::new("bob"),
                message_id: ack.message_id.clone(),
                text: "not yours".to_owned(),
            },
            reply,
        )),
    );
    assert_eq!(
        answer.await.unwrap().unwrap_err().code,
        ErrorCode::Forbidden
    );
    let (reply, answer) = oneshot::channel();
    harness.node.supervisor().enqueue(
        &harness.node,
        &conversation_id,
        ConversationOp::Delete(Queued::new(
            DeleteMessage {
                deleter: Deleter::Sender(UserId::new("alice")),
                message_id: MessageId::new("no-such-message"),
            },
            reply,
        )),
    );
    assert_eq!(answer.await.unwrap().unwrap_err().code, ErrorCode::NotFound);
    let (reply, answer) = oneshot::channel();
    harness.node.supervisor().enqueue(
        &harness.node,
        &ConversationId::new("missing"),
        ConversationOp::Get(Queued::new(
            GetConversation {
                user_id: UserId::new("alice"),
            },
            reply,
        )),
    );
    assert_eq!(answer.await.unwrap().unwrap_err().code, ErrorCode::NotFound);
}

/// A detached session of "bob" registered for the conversation; its frames arrive on the
/// receiver.
async fn connect_bob(
    harness: &Harness,
    conversation_id: &ConversationId,
) -> (SessionHandle, DetachedSession) {
    let (session, outbound) =
        SessionHandle::detached(UserId::new("bob"), 16, harness.node.metrics().clone());
    harness
        .node
        .registry()
        .register_session(&session, std::slice::from_ref(conversation_id), None)
        .await
        .unwrap();
    (session, outbound)
}

fn frames(receiver: &mut DetachedSession) -> Vec<String> {
    let mut frames = Vec::new();
    while let Some(Outbound::Text(text)) = receiver.try_recv() {
        frames.push(text.to_string());
    }
    frames
}

/// Bob connected to group c1, whose actor the events are delivered to (time paused).
struct BobWatching {
    _harness: Harness,
    _session: SessionHandle,
    outbound: DetachedSession,
    handle: ConversationHandle,
}

async fn bob_watching_c1(limits: Limits) -> BobWatching {
    tokio::time::pause();
    let harness = Harness::new(limits);
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let (session, outbound) = connect_bob(&harness, &conversation_id).await;
    let handle = harness
        .node
        .supervisor()
        .conversation(&harness.node, &conversation_id);
    BobWatching {
        _harness: harness,
        _session: session,
        outbound,
        handle,
    }
}

#[actix_rt::test]
async fn fan_out_is_in_seq_order_and_bridges_a_gap_after_the_wait() {
    let gap_wait = Limits::default().gap_wait;
    let BobWatching {
        mut outbound,
        handle,
        ..
    } = bob_watching_c1(Limits::default()).await;
    for seq in [1, 3, 2, 5] {
        handle.deliver(sequenced(seq)).await;
    }
    // Let the actor process its mailbox without advancing past the gap wait.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(frames(&mut outbound), ["frame-1", "frame-2", "frame-3"]);
    tokio::time::sleep(gap_wait + Duration::from_millis(10)).await;
    assert_eq!(
        frames(&mut outbound),
        ["frame-5"],
        "seq 4 never came: skipped"
    );
    // Unsequenced events skip the typer.
    handle
        .deliver(Deliver {
            seq: None,
            frame: ByteString::from("typing"),
            exclude: Some(UserId::new("bob")),
            invalidates_record: false,
            invalidates_messages: false,
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(frames(&mut outbound).is_empty());
}

/// A seq that goes missing just before the wait armed for an earlier gap ends gets a whole
/// wait of its own: it is late on the bus, not lost. (The wait used to run from the first
/// gap, so the later seq was "repaired" a moment after it went missing, found nowhere yet,
/// skipped, and dropped as a re-delivery when it came: a live message lost in a cluster
/// under steady load, recovered only by `sync`.)
#[actix_rt::test]
async fn a_gap_that_opens_late_in_an_earlier_gaps_wait_gets_the_whole_wait() {
    let gap_wait = Limits::default().gap_wait;
    let BobWatching {
        mut outbound,
        handle,
        ..
    } = bob_watching_c1(Limits::default()).await;
    // Seq 2 is late: the wait starts.
    handle.deliver(sequenced(1)).await;
    handle.deliver(sequenced(3)).await;
    tokio::time::sleep(gap_wait - Duration::from_millis(100)).await;
    // It comes; seq 4 is late now, 100 ms before the first wait ends.
    handle.deliver(sequenced(2)).await;
    handle.deliver(sequenced(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        frames(&mut outbound),
        ["frame-1", "frame-2", "frame-3"],
        "seq 5 waits for seq 4"
    );
    // Seq 4 comes 200 ms after it went missing, well within a wait.
    handle.deliver(sequenced(4)).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        frames(&mut outbound),
        ["frame-4", "frame-5"],
        "seq 4 was delivered live, not skipped"
    );
}

#[actix_rt::test]
async fn idle_conversations_stop_and_restart_on_demand() {
    tokio::time::pause();
    let limits = Limits {
        conversation_idle: Duration::from_secs(10),
        ..Limits::default()
    };
    let harness = Harness::new(limits);
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    // With a session on this node the actor keeps its state until it is idle.
    let (_session, _outbound) = connect_bob(&harness, &conversation_id).await;
    send(&harness.node, &conversation_id, "alice", "m1")
        .await
        .unwrap();
    assert_eq!(harness.node.supervisor().active(), 1);
    let metrics = harness.node.metrics();
    assert_eq!(metrics.window_messages.get(), 1, "the window holds m1");
    assert!(metrics.window_bytes.get() > 0);
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert_eq!(harness.node.supervisor().active(), 0, "idle actor stopped");
    assert_eq!(
        (metrics.window_messages.get(), metrics.window_bytes.get()),
        (0, 0),
        "a stopped actor's window is no longer counted"
    );
    let ack = send(&harness.node, &conversation_id, "alice", "m2")
        .await
        .unwrap();
    assert_eq!(ack.seq, Seq(2), "a fresh actor continues the sequence");
}

#[actix_rt::test]
async fn a_session_that_does_not_read_is_closed_with_4009() {
    let harness = Harness::new(Limits::default());
    let metrics = harness.node.metrics().clone();
    let (session, detached) = SessionHandle::detached(UserId::new("bob"), 2, metrics.clone());
    assert!(session.deliver(ByteString::from("1")));
    assert!(session.deliver(ByteString::from("2")));
    assert!(!session.deliver(ByteString::from("3")));
    assert!(!session.deliver(ByteString::from("4")));
    assert_eq!(
        detached.close_request().map(|request| request.code),
        Some(CloseCode::TooSlow)
    );
    assert_eq!(metrics.outbound_overflows.get(), 1, "counted once");
}

/// An accepted message of alice's with this seq and text (id `m{seq}`, client_msg_id `c{seq}`).
pub(super) fn accepted(
    conversation_id: &ConversationId,
    seq: u64,
    text: &str,
) -> wire::log::MessageRecord {
    wire::log::MessageRecord {
        message: wire::Message {
            message_id: MessageId::new(format!("m{seq}")),
            conversation_id: conversation_id.clone(),
            seq: Seq(seq),
            sender_id: UserId::new("alice"),
            client_msg_id: ClientMsgId::new(format!("c{seq}")),
            text: text.to_owned(),
            reply_to: None,
            forwarded_from: None,
            reactions: Default::default(),
            created_at: chrono::Utc::now(),
            edited_at: None,
            deleted: false,
            attachments: Vec::new(),
        },
        version: 1,
    }
}

/// Puts an accepted message of alice's with this seq and text in the shared cache.
async fn cache_message(harness: &Harness, conversation_id: &ConversationId, seq: u64, text: &str) {
    let record = accepted(conversation_id, seq, text);
    harness
        .node
        .ports()
        .cache
        .put(conversation_id, &[record])
        .await
        .unwrap();
}

/// Delivers seqs 1 and 3 of `conversation_id` as if published, and lets the gap wait pass.
async fn deliver_one_and_three_then_wait(harness: &Harness, conversation_id: &ConversationId) {
    let handle = harness
        .node
        .supervisor()
        .conversation(&harness.node, conversation_id);
    for seq in [1, 3] {
        handle
            .deliver(Deliver {
                seq: Some(Seq(seq)),
                frame: ByteString::from(format!("frame-{seq}")),
                exclude: None,
                invalidates_record: false,
                invalidates_messages: false,
            })
            .await;
    }
    tokio::time::sleep(harness.node.limits().gap_wait + Duration::from_millis(10)).await;
}

/// Frames 1 and 3 as published, and seq 2 (with `text`) between them, repaired.
fn assert_two_repaired(outbound: &mut DetachedSession, text: &str) {
    let delivered = frames(outbound);
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    assert_eq!(delivered[0], "frame-1");
    assert!(
        delivered[1].contains(&format!("\"{text}\"")),
        "{delivered:?}"
    );
    assert_eq!(delivered[2], "frame-3");
}

/// Regression (chaos run: a message stored that no client got live): seq 2 was appended to
/// the log by a node that died before caching and publishing it; ingest stored it. After the
/// gap wait fan-out finds it in the store instead of skipping it.
#[actix_rt::test]
async fn a_gap_the_cache_lacks_is_repaired_from_the_store() {
    tokio::time::pause();
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let (_session, mut outbound) = connect_bob(&harness, &conversation_id).await;
    let stored = accepted(&conversation_id, 2, "stored only");
    harness
        .node
        .ports()
        .store
        .apply(vec![ports::StoreWrite::Message(stored)])
        .await
        .unwrap();
    deliver_one_and_three_then_wait(&harness, &conversation_id).await;
    assert_two_repaired(&mut outbound, "stored only");
}

/// What another node does for a send it accepts, as far as this node can see: it reserves
/// the next seq (`seq`) and puts the message (id `m{seq}`, text "from the other node") in the
/// shared cache.
async fn accept_on_another_node(harness: &Harness, conversation_id: &ConversationId, seq: Seq) {
    let key = ports::DedupKey {
        sender_id: UserId::new("bob"),
        client_msg_id: ClientMsgId::new(format!("elsewhere-{}", seq.0)),
    };
    let reserved = harness
        .node
        .ports()
        .sequencer
        .reserve(
            conversation_id,
            &[ports::SendIntent::new(key, chrono::Utc::now())],
        )
        .await
        .unwrap();
    assert_eq!(reserved, vec![ports::Reservation::Fresh(seq)]);
    cache_message(harness, conversation_id, seq.0, "from the other node").await;
}

/// Issue #14: a batch of sends catches up with another node's messages from its reservation
/// (no `last_seq` round trip first): seq 2, accepted elsewhere, is taken into the window from
/// the shared cache, so the window holds 1..=3 without a gap.
#[actix_rt::test]
async fn a_batch_of_sends_catches_up_with_other_nodes_from_its_reservation() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    // A local session: without one the batch reloads the record and refreshes first.
    let (_session, _outbound) = connect_bob(&harness, &conversation_id).await;
    let first = send(&harness.node, &conversation_id, "alice", "m1")
        .await
        .unwrap();
    assert_eq!(first.seq, Seq(1));
    accept_on_another_node(&harness, &conversation_id, Seq(2)).await;
    let third = send(&harness.node, &conversation_id, "alice", "m3")
        .await
        .unwrap();
    assert_eq!(third.seq, Seq(3));
    // Only this actor's window can answer now: the cache forgets, the store has nothing.
    harness
        .node
        .ports()
        .cache
        .forget_through(&conversation_id, Seq(3))
        .await
        .unwrap();
    let page = super::abandoned_tests::first_page(&harness, &conversation_id, None).await;
    let texts: Vec<&str> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        vec!["text of m1", "from the other node", "text of m3"]
    );
}

/// A reply is validated before the reservation: a batch holding one catches up first, so a
/// reply to a message accepted on another node a moment ago finds it (in review of issue
/// #14's step: a batch of sends that caught up only from its reservation answered
/// `not_found`).
#[actix_rt::test]
async fn a_reply_to_a_message_accepted_on_another_node_finds_it() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let (_session, _outbound) = connect_bob(&harness, &conversation_id).await;
    send(&harness.node, &conversation_id, "alice", "m1")
        .await
        .unwrap();
    accept_on_another_node(&harness, &conversation_id, Seq(2)).await;
    let (reply, answer) = oneshot::channel();
    harness.node.supervisor().enqueue(
        &harness.node,
        &conversation_id,
        ConversationOp::Send(Queued::new(
            SendMessage {
                actor: OpActor::Member(UserId::new("alice")),
                client_msg_id: ClientMsgId::new("reply"),
                text: "a reply".to_owned(),
                reply_to: Some(MessageId::new("m2")),
                forwarded_from: None,
                attachments: Vec::new(),
            },
            reply,
        )),
    );
    let ack = answer
        .await
        .expect("answered")
        .expect("the reply is accepted");
    assert_eq!(ack.seq, Seq(3));
}

#[actix_rt::test]
async fn a_missed_publish_is_repaired_from_the_shared_cache() {
    tokio::time::pause();
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let (_session, mut outbound) = connect_bob(&harness, &conversation_id).await;
    // Seq 2 was accepted (it is in the shared cache) but its publish never reached this node.
    cache_message(&harness, &conversation_id, 2, "repaired").await;
    deliver_one_and_three_then_wait(&harness, &conversation_id).await;
    assert_two_repaired(&mut outbound, "repaired");
}

/// Regression (chaos run: acked messages connected clients got only from their final `sync`):
/// messages published while this node's bus was reconnecting never arrive; once the bus has
/// subscribed again, the conversation delivers them from the shared cache, without waiting for
/// a later message to reveal the gap.
#[actix_rt::test]
async fn after_the_bus_resubscribed_missed_messages_are_delivered_from_the_cache() {
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let (_session, mut outbound) = connect_bob(&harness, &conversation_id).await;
    let handle = harness
        .node
        .supervisor()
        .conversation(&harness.node, &conversation_id);
    handle
        .deliver(Deliver {
            seq: Some(Seq(1)),
            frame: ByteString::from("frame-1"),
            exclude: None,
            invalidates_record: false,
            invalidates_messages: false,
        })
        .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(frames(&mut outbound), ["frame-1"]);
    // Seqs 2 and 3 were accepted on another node while this node's bus was down.
    let keys = ["c1", "c2", "c3"].map(|client_msg_id| {
        let key = ports::DedupKey {
            sender_id: UserId::new("alice"),
            client_msg_id: ClientMsgId::new(client_msg_id),
        };
        ports::SendIntent::new(key, chrono::Utc::now())
    });
    harness
        .node
        .ports()
        .sequencer
        .reserve(&conversation_id, &keys)
        .await
        .unwrap();
    cache_message(&harness, &conversation_id, 2, "missed two").await;
    cache_message(&harness, &conversation_id, 3, "missed three").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(frames(&mut outbound).is_empty(), "nothing reveals the gap");

    let notice = ports::BusEnvelope {
        topic: ports::BusTopic::Conversation(conversation_id.clone()),
        origin: wire::NodeId::new(ports::RESUBSCRIBED_ORIGIN),
        payload: ports::BusPayload::Resubscribed,
    };
    crate::router::route(&harness.node, notice).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let delivered = frames(&mut outbound);
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert!(delivered[0].contains("\"missed two\""), "{delivered:?}");
    assert!(delivered[1].contains("\"missed three\""), "{delivered:?}");
}

/// Regression (a cluster lost live deliveries after reconnects): a session that subscribes
/// while a batch is in flight (seq allocated, log append not finished) cannot get that message
/// from `sync` yet, so it must arrive live.
#[actix_rt::test]
async fn a_session_registered_while_a_batch_is_in_flight_receives_it_live() {
    use std::sync::atomic::Ordering;
    let harness = Harness::new(Limits::default());
    crate::router::start(harness.node.clone()).unwrap();
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    send(&harness.node, &conversation_id, "alice", "accepted")
        .await
        .unwrap();
    harness.log.stall.store(true, Ordering::SeqCst);
    let answer = enqueue_send(&harness.node, &conversation_id, "alice", "in-flight");
    let sequencer = &harness.node.ports().sequencer;
    while sequencer.last_seq(&conversation_id).await.unwrap() != Seq(2) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let (_session, mut outbound) = connect_bob(&harness, &conversation_id).await;
    harness.log.stall.store(false, Ordering::SeqCst);
    assert_eq!(answer.await.unwrap().unwrap().seq, Seq(2));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut received = Vec::new();
    while !received
        .iter()
        .any(|frame: &String| frame.contains("text of in-flight"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob never received seq 2 live: {received:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        received.extend(frames(&mut outbound));
    }
}

/// Regression: a conversation actor stops after `conversation_idle` without work, while its
/// sessions stay. The one started for the next message must go on from what was delivered,
/// not from the subscription's floor (which re-delivered every cached message since the
/// session connected, after a `gap_wait` stall).
#[actix_rt::test]
async fn an_actor_restarted_after_idling_delivers_only_what_is_new() {
    tokio::time::pause();
    let limits = Limits::default();
    let idle = limits.conversation_idle;
    let harness = Harness::new(limits);
    crate::router::start(harness.node.clone()).unwrap();
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let (_session, mut outbound) = connect_bob(&harness, &conversation_id).await;
    for key in ["first", "second"] {
        send(&harness.node, &conversation_id, "alice", key)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(frames(&mut outbound).len(), 2);

    tokio::time::sleep(idle * 2).await;
    assert!(
        harness
            .node
            .supervisor()
            .running(&conversation_id)
            .is_none(),
        "the idle actor stopped"
    );
    send(&harness.node, &conversation_id, "alice", "third")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let delivered = frames(&mut outbound);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(delivered[0].contains("text of third"), "{delivered:?}");
}

fn sequenced(seq: u64) -> Deliver {
    Deliver {
        seq: Some(Seq(seq)),
        frame: ByteString::from(format!("frame-{seq}")),
        exclude: None,
        invalidates_record: false,
        invalidates_messages: false,
    }
}

/// Regression (10-minute chaos run on the PostgreSQL broker, 2026-12-03: a session got seqs
/// 36–46 live after 47, and 47 twice): two actors of one conversation on a node — a retired
/// one still draining its mailbox and the successor the supervisor started meanwhile, or one
/// started from a floor below what was delivered — must not deliver a seq to a session twice,
/// or after a later one.
#[actix_rt::test]
async fn overlapping_actors_of_a_conversation_never_deliver_a_seq_twice_or_backwards() {
    use actix::Actor;
    let harness = Harness::new(Limits::default());
    let conversation_id = harness.group("c1", &["alice", "bob"]);
    let (_session, mut outbound) = connect_bob(&harness, &conversation_id).await;
    let first = harness
        .node
        .supervisor()
        .conversation(&harness.node, &conversation_id);
    let second = super::ConversationHandle::new(
        super::Conversation::new(harness.node.clone(), conversation_id.clone()).start(),
    );
    let settle = || tokio::time::sleep(Duration::from_millis(20));

    second.deliver(sequenced(1)).await;
    settle().await;
    for seq in [1, 2, 3] {
        first.deliver(sequenced(seq)).await;
    }
    settle().await;
    for seq in [2, 3, 4] {
        second.deliver(sequenced(seq)).await;
    }
    settle().await;
    first.deliver(sequenced(4)).await;
    first.deliver(sequenced(5)).await;
    settle().await;

    assert_eq!(
        frames(&mut outbound),
        ["frame-1", "frame-2", "frame-3", "frame-4", "frame-5"]
    );
    let refused = harness.node.metrics().fanout_redeliveries_refused.get();
    assert_eq!(
        refused, 3,
        "seqs 2 and 3 from the second actor, 4 from the first"
    );
}
