//! One simulated user: a WebSocket session (replaced on reconnect), its requests in flight, and
//! the checks on everything it receives.
//!
//! Each session runs a reader task (events, replies, pongs) and a writer task (frames queued by
//! the scenario). Sends are queued without waiting (open loop); the reply or the `message.new`
//! that comes back is matched to the scheduled send time carried in the message text.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wire::events::ServerEvent;
use wire::frames::RequestId;
use wire::ops::{HistoryArgs, HistoryResult, Op, SendAck, SendArgs, SyncArgs, SyncResult};
use wire::{ClientMsgId, ConversationId, ErrorBody, Message, MessageId, Seq, UserId};

use crate::net::{self, Endpoints};
use crate::stats::Stats;
use crate::tracker::{Arrival, Tracker};

/// How long a request waits for its reply.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Prefix of every message text the load generator sends: `lt|<scheduled µs>|xxxx…`.
const STAMP_PREFIX: &str = "lt|";

/// Which server the run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A Parley node speaking protocol v1.
    Parley,
    /// The bare broadcast server `ws-ceiling`.
    Ceiling,
}

/// What every client of a run shares.
pub struct RunContext {
    pub stats: Arc<Stats>,
    pub endpoints: Endpoints,
    pub target: Target,
    /// Highest acknowledged seq per conversation: what every member must end up with.
    pub acked: Mutex<HashMap<ConversationId, u64>>,
    /// Reconnect loops give up after this instant.
    pub deadline: Instant,
    pub text_bytes: usize,
}

impl RunContext {
    fn record_ack(&self, conversation_id: &ConversationId, seq: u64) {
        let mut acked = self.acked.lock().expect("acked lock");
        let entry = acked.entry(conversation_id.clone()).or_default();
        *entry = (*entry).max(seq);
    }

    pub fn acked_snapshot(&self) -> HashMap<ConversationId, u64> {
        self.acked.lock().expect("acked lock").clone()
    }
}

type Reply = Result<serde_json::Value, ErrorBody>;

enum Pending {
    Send {
        scheduled_us: u64,
        conversation_id: ConversationId,
    },
    Call(oneshot::Sender<Reply>),
    Fire,
}

struct SessionLink {
    writer: mpsc::UnboundedSender<WsMessage>,
    tasks: Vec<JoinHandle<()>>,
}

/// A reply frame: `{"re": 7, "result": ...}` or `{"re": 7, "error": {...}}`.
#[derive(Deserialize)]
struct IncomingReply {
    re: Option<RequestId>,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

pub struct Client {
    pub index: usize,
    pub user_id: UserId,
    token: String,
    /// Ceiling target: the room joined (`?room=`).
    room: Option<String>,
    context: Arc<RunContext>,
    tracker: Mutex<Tracker>,
    session: Mutex<Option<SessionLink>>,
    /// Bumped whenever a session is replaced or dropped on purpose; a reader task of an older
    /// generation does not trigger a reconnect.
    generation: AtomicU64,
    ready: AtomicBool,
    reconnecting: AtomicBool,
    stopping: AtomicBool,
    next_request: AtomicI64,
    pending: Mutex<HashMap<RequestId, Pending>>,
    sent_messages: AtomicU64,
}

impl Client {
    pub fn new(
        index: usize,
        user_id: UserId,
        token: String,
        room: Option<String>,
        context: Arc<RunContext>,
    ) -> Arc<Self> {
        Arc::new(Self {
            index,
            user_id,
            token,
            room,
            context,
            tracker: Mutex::new(Tracker::default()),
            session: Mutex::new(None),
            generation: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            next_request: AtomicI64::new(1),
            pending: Mutex::new(HashMap::new()),
            sent_messages: AtomicU64::new(0),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Connected, with no reconnect (and its `sync`) in flight.
    pub fn is_settled(&self) -> bool {
        self.is_ready() && !self.reconnecting.load(Ordering::Acquire)
    }

    fn stats(&self) -> &Stats {
        &self.context.stats
    }

    fn url(&self) -> String {
        let (url, _) = self.context.endpoints.pick(self.index);
        match &self.room {
            Some(room) => format!("{url}?room={room}"),
            None => format!("{url}?v=1&token={}", self.token),
        }
    }

    /// Opens a session (and for Parley waits for `welcome`).
    pub async fn connect(self: &Arc<Self>) -> anyhow::Result<()> {
        let (_, source) = self.context.endpoints.pick(self.index);
        let socket = match net::connect_websocket(&self.url(), source).await {
            Ok(socket) => socket,
            Err(error) => {
                self.stats()
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                return Err(error);
            }
        };
        let (mut sink, mut stream) = socket.split();
        // Frames that came before `welcome` (a protocol violation, counted), handled once the
        // session is set up.
        let mut early_frames = Vec::new();
        if self.context.target == Target::Parley {
            loop {
                let frame = tokio::time::timeout(net::IO_TIMEOUT, stream.next())
                    .await
                    .map_err(|_| anyhow!("no welcome from the server"))?
                    .ok_or_else(|| anyhow!("connection closed before welcome"))??;
                let text = frame
                    .into_text()
                    .context("a frame before welcome is not text")?;
                if let Ok(ServerEvent::Welcome(_)) = serde_json::from_str::<ServerEvent>(&text) {
                    break;
                }
                if early_frames.is_empty() {
                    self.stats().error("protocol_welcome_not_first");
                }
                if early_frames.len() >= 1000 {
                    bail!("no welcome among the first 1000 frames");
                }
                early_frames.push(text);
            }
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.tracker.lock().expect("tracker lock").new_session();
        let (writer, mut queue) = mpsc::unbounded_channel::<WsMessage>();
        let writer_task = tokio::spawn(async move {
            while let Some(frame) = queue.recv().await {
                if sink.feed(frame).await.is_err() {
                    return;
                }
                while let Ok(frame) = queue.try_recv() {
                    if sink.feed(frame).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let reader_client = self.clone();
        let reader_task = tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(WsMessage::Text(text)) => reader_client.handle_text(&text),
                    Ok(WsMessage::Close(close)) => {
                        // The server's answer to our own close is not an error.
                        if !reader_client.stopping.load(Ordering::Acquire) {
                            let code = close.map_or(1005, |frame| u16::from(frame.code));
                            reader_client.stats().error(&format!("close_{code}"));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            reader_client.session_ended(generation);
        });
        let previous = self
            .session
            .lock()
            .expect("session lock")
            .replace(SessionLink {
                writer,
                tasks: vec![writer_task, reader_task],
            });
        if let Some(previous) = previous {
            previous.tasks.iter().for_each(JoinHandle::abort);
        }
        self.stats().connected.fetch_add(1, Ordering::Relaxed);
        self.ready.store(true, Ordering::Release);
        for text in early_frames {
            self.handle_text(&text);
        }
        Ok(())
    }

    fn session_ended(self: &Arc<Self>, generation: u64) {
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        self.lost_session();
        if !self.stopping.load(Ordering::Acquire) {
            let client = self.clone();
            tokio::spawn(async move { client.reconnect(Instant::now()).await });
        }
    }

    /// Forgets the current session: requests in flight will get no reply.
    fn lost_session(&self) {
        if self.ready.swap(false, Ordering::AcqRel) {
            self.stats().connected.fetch_sub(1, Ordering::Relaxed);
        }
        let pending: Vec<Pending> = self
            .pending
            .lock()
            .expect("pending lock")
            .drain()
            .map(|(_, pending)| pending)
            .collect();
        for pending in pending {
            if let Pending::Send { .. } = pending {
                self.stats().error("unacked_at_disconnect");
            }
        }
    }

    /// Drops the connection abruptly (no close handshake), as a lost network would.
    pub fn drop_connection(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(link) = self.session.lock().expect("session lock").take() {
            link.tasks.iter().for_each(JoinHandle::abort);
        }
        self.lost_session();
    }

    /// Closes the session cleanly and stops reconnecting.
    pub fn close(&self) {
        self.stopping.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(link) = self.session.lock().expect("session lock").take() {
            let _ = link.writer.send(WsMessage::Close(None));
        }
        self.lost_session();
    }

    /// Reconnects (retrying until the run's deadline), then `sync`s. `since` is when the
    /// connection was lost, for the reconnect latency.
    pub async fn reconnect(self: Arc<Self>, since: Instant) {
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stats().reconnects.fetch_add(1, Ordering::Relaxed);
        let mut backoff = Duration::from_millis(50);
        while Instant::now() < self.context.deadline && !self.stopping.load(Ordering::Acquire) {
            match self.connect().await {
                Ok(()) => match self.sync_all().await {
                    Ok(()) => {
                        self.stats()
                            .reconnect_latency
                            .record(since.elapsed().as_micros() as u64);
                        break;
                    }
                    Err(_) => self.stats().error("sync_failed"),
                },
                Err(error) => {
                    if std::env::var_os("LOADTEST_DEBUG").is_some() {
                        eprintln!("{}: reconnect failed: {error:#}", self.user_id);
                    }
                    self.stats().error("reconnect_failed")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        self.reconnecting.store(false, Ordering::Release);
    }

    fn push(&self, frame: String) -> bool {
        match self.session.lock().expect("session lock").as_ref() {
            Some(link) => link.writer.send(WsMessage::text(frame)).is_ok(),
            None => false,
        }
    }

    fn request(&self, op: Op, args: impl Serialize, pending: Pending) -> Option<RequestId> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let frame = serde_json::json!({"id": id, "op": op.as_str(), "args": args}).to_string();
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id, pending);
        if self.push(frame) {
            Some(id)
        } else {
            self.pending.lock().expect("pending lock").remove(&id);
            None
        }
    }

    /// A request whose reply the caller awaits.
    pub async fn call(&self, op: Op, args: impl Serialize) -> anyhow::Result<serde_json::Value> {
        let (reply_sender, reply) = oneshot::channel();
        self.request(op, args, Pending::Call(reply_sender))
            .ok_or_else(|| anyhow!("{} not sent: no session", op.as_str()))?;
        match tokio::time::timeout(CALL_TIMEOUT, reply).await {
            Err(_) => bail!("{} timed out", op.as_str()),
            Ok(Err(_)) => bail!("{} lost: the session ended", op.as_str()),
            Ok(Ok(Err(error))) => bail!("{} failed: {:?}", op.as_str(), error.code),
            Ok(Ok(Ok(value))) => Ok(value),
        }
    }

    /// A request whose reply only counts (errors by code).
    pub fn fire(&self, op: Op, args: impl Serialize) {
        self.stats().other_requests.fetch_add(1, Ordering::Relaxed);
        if self.request(op, args, Pending::Fire).is_none() {
            self.stats().error("not_connected");
        }
    }

    /// Sends one message scheduled at `scheduled_us` (run clock) without waiting for anything.
    pub fn send_message(&self, conversation_id: &ConversationId, scheduled_us: u64) {
        let number = self.sent_messages.fetch_add(1, Ordering::Relaxed) + 1;
        let client_msg_id = ClientMsgId::new(format!("{}-{number}", self.user_id));
        let text = stamped_text(scheduled_us, self.context.text_bytes);
        self.stats().sends.fetch_add(1, Ordering::Relaxed);
        let sent = match self.context.target {
            Target::Parley => self
                .request(
                    Op::MessageSend,
                    SendArgs {
                        conversation_id: conversation_id.clone(),
                        client_msg_id,
                        text,
                        reply_to: None,
                        attachments: Vec::new(),
                    },
                    Pending::Send {
                        scheduled_us,
                        conversation_id: conversation_id.clone(),
                    },
                )
                .is_some(),
            Target::Ceiling => {
                let event = ServerEvent::MessageNew {
                    message: Message {
                        message_id: MessageId::new(uuid::Uuid::now_v7().to_string()),
                        conversation_id: conversation_id.clone(),
                        seq: Seq(number),
                        sender_id: self.user_id.clone(),
                        client_msg_id,
                        text,
                        reply_to: None,
                        forwarded_from: None,
                        reactions: BTreeMap::new(),
                        created_at: chrono::Utc::now(),
                        edited_at: None,
                        deleted: false,
                        attachments: Vec::new(),
                    },
                };
                self.push(wire::frames::encode_event(&event))
            }
        };
        if !sent {
            self.stats().error("not_connected");
        }
    }

    fn handle_text(self: &Arc<Self>, text: &str) {
        if text.starts_with("{\"ev\"") {
            self.handle_event(text);
            return;
        }
        match serde_json::from_str::<IncomingReply>(text) {
            Ok(reply) if reply.result.is_some() || reply.error.is_some() => {
                self.handle_reply(reply)
            }
            _ => self.handle_event(text),
        }
    }

    fn handle_event(self: &Arc<Self>, text: &str) {
        let Ok(event) = serde_json::from_str::<ServerEvent>(text) else {
            self.stats().error("undecodable_frame");
            return;
        };
        match event {
            ServerEvent::MessageNew { message } => self.message_new(&message),
            ServerEvent::MemberJoined {
                user_ids,
                conversation,
                ..
            } if user_ids.contains(&self.user_id) => {
                self.tracker
                    .lock()
                    .expect("tracker lock")
                    .adopt(&conversation.conversation_id, conversation.last_seq.0);
            }
            _ => {}
        }
    }

    fn message_new(self: &Arc<Self>, message: &Message) {
        let arrival = self
            .tracker
            .lock()
            .expect("tracker lock")
            .live(&message.conversation_id, message.seq.0);
        let stats = self.stats();
        let correctness = &stats.correctness;
        match arrival {
            Arrival::Duplicate => {
                correctness.duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Arrival::OutOfOrder => {
                correctness.out_of_order.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Arrival::Overlap => {
                correctness.sync_overlap.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Arrival::AppliedAfterGap => {
                correctness.live_gaps.fetch_add(1, Ordering::Relaxed);
                if self.context.target == Target::Parley {
                    let client = self.clone();
                    tokio::spawn(async move {
                        if client.sync_all().await.is_err() {
                            client.stats().error("sync_failed");
                        }
                    });
                }
            }
            Arrival::Applied => {}
        }
        stats.deliveries.fetch_add(1, Ordering::Relaxed);
        let now_us = stats.clock.now_us();
        if let Some(scheduled_us) = scheduled_of(&message.text) {
            stats.record_delivery(scheduled_us, now_us);
            // The ceiling has no ack: the sender's own copy coming back stands for it.
            if self.context.target == Target::Ceiling && message.sender_id == self.user_id {
                stats.acks.fetch_add(1, Ordering::Relaxed);
                stats
                    .ack_latency
                    .record(now_us.saturating_sub(scheduled_us));
                self.context
                    .record_ack(&message.conversation_id, message.seq.0);
            }
        }
    }

    fn handle_reply(&self, reply: IncomingReply) {
        let pending = reply
            .re
            .and_then(|id| self.pending.lock().expect("pending lock").remove(&id));
        let outcome = match (reply.result, reply.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => return,
        };
        if let Err(error) = &outcome {
            self.stats().error(error.code.as_str());
        }
        match pending {
            Some(Pending::Send {
                scheduled_us,
                conversation_id,
            }) => {
                let Ok(result) = outcome else { return };
                let Ok(ack) = serde_json::from_value::<SendAck>(result) else {
                    self.stats().error("undecodable_ack");
                    return;
                };
                let stats = self.stats();
                stats.acks.fetch_add(1, Ordering::Relaxed);
                stats
                    .ack_latency
                    .record(stats.clock.now_us().saturating_sub(scheduled_us));
                self.context.record_ack(&conversation_id, ack.seq.0);
            }
            Some(Pending::Call(reply_sender)) => {
                let _ = reply_sender.send(outcome);
            }
            Some(Pending::Fire) | None => {}
        }
    }

    /// Tracks a conversation from `seq` on (messages up to `seq` are not expected).
    pub fn watch(&self, conversation_id: &ConversationId, seq: u64) {
        self.tracker
            .lock()
            .expect("tracker lock")
            .watch(conversation_id, seq);
    }

    pub fn applied(&self, conversation_id: &ConversationId) -> u64 {
        self.tracker
            .lock()
            .expect("tracker lock")
            .applied(conversation_id)
    }

    /// How many acked messages this client has not received yet.
    pub fn behind(&self, acked: &HashMap<ConversationId, u64>) -> u64 {
        let tracker = self.tracker.lock().expect("tracker lock");
        tracker
            .conversation_ids()
            .iter()
            .map(|id| {
                let target = acked.get(id).copied().unwrap_or(0);
                target.saturating_sub(tracker.applied(id))
            })
            .sum()
    }

    /// `sync` every watched conversation from its applied seq, paging on with `history.get`.
    pub async fn sync_all(&self) -> anyhow::Result<()> {
        if self.context.target != Target::Parley {
            return Ok(());
        }
        let points = self.tracker.lock().expect("tracker lock").sync_points();
        for chunk in points.chunks(1000) {
            let args = SyncArgs {
                conversations: chunk
                    .iter()
                    .map(|(id, seq)| (id.clone(), Seq(*seq)))
                    .collect(),
            };
            let result: SyncResult = serde_json::from_value(self.call(Op::Sync, args).await?)?;
            for (conversation_id, page) in result.conversations {
                let mut last = self.absorb(&conversation_id, &page);
                let mut has_more = page.has_more;
                let mut pages = 0;
                while has_more && pages < 10_000 {
                    pages += 1;
                    let args = HistoryArgs {
                        conversation_id: conversation_id.clone(),
                        before_seq: None,
                        after_seq: Some(Seq(last)),
                        limit: Some(wire::ops::HISTORY_MAX_LIMIT),
                    };
                    let page: HistoryResult =
                        serde_json::from_value(self.call(Op::HistoryGet, args).await?)?;
                    last = self.absorb(&conversation_id, &page).max(last);
                    has_more = page.has_more;
                }
            }
        }
        Ok(())
    }

    /// Applies recovered messages; returns the highest seq of the page.
    fn absorb(&self, conversation_id: &ConversationId, page: &HistoryResult) -> u64 {
        let correctness = &self.stats().correctness;
        let mut tracker = self.tracker.lock().expect("tracker lock");
        let mut last = 0;
        for message in &page.messages {
            last = last.max(message.seq.0);
            match tracker.recovered(conversation_id, message.seq.0) {
                Arrival::Overlap => correctness.sync_overlap.fetch_add(1, Ordering::Relaxed),
                _ => correctness
                    .recovered_by_sync
                    .fetch_add(1, Ordering::Relaxed),
            };
        }
        last
    }
}

/// `lt|<scheduled µs>|` padded with `x` to `length` bytes.
pub fn stamped_text(scheduled_us: u64, length: usize) -> String {
    let mut text = format!("{STAMP_PREFIX}{scheduled_us}|");
    if text.len() < length {
        text.extend(std::iter::repeat_n('x', length - text.len()));
    }
    text
}

/// The scheduled time carried by a load-generator message text.
pub fn scheduled_of(text: &str) -> Option<u64> {
    text.strip_prefix(STAMP_PREFIX)?
        .split('|')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_the_scheduled_time() {
        let text = stamped_text(123_456, 64);
        assert_eq!(text.len(), 64);
        assert_eq!(scheduled_of(&text), Some(123_456));
        assert_eq!(scheduled_of("hello"), None);
    }
}
