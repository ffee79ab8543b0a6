//! One simulated user: a WebSocket session (replaced on reconnect), its requests in flight, and
//! the checks on everything it receives.
//!
//! Each session runs a reader task (events, replies, pongs) and a writer task (frames queued by
//! the scenario). Sends are queued without waiting (open loop); the reply or the `message.new`
//! that comes back is matched to the scheduled send time carried in the message text.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
use wire::ops::{HistoryArgs, HistoryResult, Op, SendArgs, SyncArgs, SyncResult};
use wire::{ClientMsgId, ConversationId, ErrorBody, Message, MessageId, Seq, UserId};

use crate::ledger::{AnswerLog, ClientLedger, Views};
use crate::net::{self, Endpoints};
use crate::outbox::{Outbox, OutgoingSend};
use crate::stats::Stats;
use crate::tracker::{Arrival, Tracker};

mod incoming;

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
    /// Every acknowledged seq per conversation: what every member must end up with.
    pub acked: Mutex<AckedSeqs>,
    /// Reconnect loops give up after this instant.
    pub deadline: Instant,
    pub text_bytes: usize,
    /// Attempts per message (the first send and its resends) before a client gives up on it.
    pub max_send_attempts: u32,
    /// Every answer to a send, when the run keeps a ledger (`--ledger`).
    pub answers: Option<AnswerLog>,
}

impl RunContext {
    fn record_ack(&self, conversation_id: &ConversationId, seq: u64) {
        let mut acked = self.acked.lock().expect("acked lock");
        acked
            .entry(conversation_id.clone())
            .or_default()
            .insert(seq);
    }

    pub fn acked_snapshot(&self) -> AckedSeqs {
        self.acked.lock().expect("acked lock").clone()
    }
}

/// Every acknowledged seq per conversation. Seqs that were never acked (a send whose append
/// failed leaves a tombstone on its seq, which no session gets live) are not in it.
pub type AckedSeqs = HashMap<ConversationId, BTreeSet<u64>>;

/// A conversation a client lacks acked messages of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lacking {
    pub conversation_id: ConversationId,
    /// Acked seqs the client does not have.
    pub count: u64,
    /// The lowest of them.
    pub first: u64,
    /// The highest acked seq of the conversation.
    pub highest_acked: u64,
}

type Reply = Result<serde_json::Value, ErrorBody>;

enum Pending {
    Send(ClientMsgId),
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
    /// Sends until acked (resent after a reconnect or `unavailable`), and the acks received.
    outbox: Mutex<Outbox>,
    /// What this user holds of each conversation, when the run keeps a ledger.
    views: Option<Views>,
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
            tracker: Mutex::new(Tracker::default()),
            session: Mutex::new(None),
            generation: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            next_request: AtomicI64::new(1),
            pending: Mutex::new(HashMap::new()),
            sent_messages: AtomicU64::new(0),
            outbox: Mutex::new(Outbox::new(context.max_send_attempts)),
            views: context.answers.as_ref().map(|_| Views::default()),
            context,
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

    /// Forgets the current session: requests in flight will get no reply; sends among them
    /// wait in the outbox for the reconnect.
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
            if let Pending::Send(_) = pending {
                self.stats().error("unacked_at_disconnect");
            }
        }
        self.outbox.lock().expect("outbox lock").session_lost();
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
                        self.resend_waiting();
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
            Target::Parley => {
                let send = self.outbox.lock().expect("outbox lock").sent(
                    conversation_id.clone(),
                    client_msg_id,
                    text,
                    scheduled_us,
                );
                self.write_send(&send)
            }
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

    /// Writes one attempt of a send on the current session; without one, the send waits in
    /// the outbox for the reconnect.
    fn write_send(&self, send: &OutgoingSend) -> bool {
        let args = SendArgs {
            conversation_id: send.conversation_id.clone(),
            client_msg_id: send.client_msg_id.clone(),
            text: send.text.clone(),
            reply_to: None,
            attachments: Vec::new(),
        };
        let written = self
            .request(
                Op::MessageSend,
                args,
                Pending::Send(send.client_msg_id.clone()),
            )
            .is_some();
        if !written {
            self.outbox
                .lock()
                .expect("outbox lock")
                .not_written(&send.client_msg_id);
        }
        written
    }

    /// Resends every send waiting in the outbox (same `client_msg_id`), giving up on those
    /// that had their attempts. Nothing is written while a reconnect is in flight: the
    /// reconnect resends once its `sync` is done.
    pub fn resend_waiting(&self) {
        if !self.is_ready() {
            return;
        }
        let round = self.outbox.lock().expect("outbox lock").resend_round();
        let stats = self.stats();
        stats.gave_up.fetch_add(round.given_up, Ordering::Relaxed);
        for send in &round.resend {
            stats.resends.fetch_add(1, Ordering::Relaxed);
            self.write_send(send);
        }
    }

    /// Sends not yet acked nor given up on.
    pub fn outstanding_sends(&self) -> usize {
        self.outbox.lock().expect("outbox lock").outstanding()
    }

    /// This user's part of the run's ledger (acks, messages given up on, views).
    pub fn ledger(&self) -> ClientLedger {
        let outbox = self.outbox.lock().expect("outbox lock");
        ClientLedger {
            user_id: self.user_id.clone(),
            acked: outbox.acked_sends().cloned().collect(),
            gave_up: outbox.abandoned_sends().to_vec(),
            views: self.views.as_ref().map(Views::snapshot).unwrap_or_default(),
        }
    }

    /// The run is over: what is still unacked is given up on.
    pub fn abandon_outstanding(&self) {
        let left = self.outbox.lock().expect("outbox lock").abandon_all();
        self.stats().gave_up.fetch_add(left, Ordering::Relaxed);
    }

    /// Tracks a conversation from `seq` on (messages up to `seq` are not expected).
    pub fn watch(&self, conversation_id: &ConversationId, seq: u64) {
        if let Some(views) = &self.views {
            views.watch(conversation_id, seq);
        }
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
    pub fn behind(&self, acked: &AckedSeqs) -> u64 {
        self.lacking(acked)
            .iter()
            .map(|lacking| lacking.count)
            .sum()
    }

    /// The conversations this client lacks acked messages of.
    pub fn lacking(&self, acked: &AckedSeqs) -> Vec<Lacking> {
        let tracker = self.tracker.lock().expect("tracker lock");
        tracker
            .conversation_ids()
            .into_iter()
            .filter_map(|id| {
                let seqs = acked.get(&id)?;
                let (count, first) = tracker.lacking(&id, seqs)?;
                Some(Lacking {
                    highest_acked: seqs.last().copied().unwrap_or(first),
                    conversation_id: id,
                    count,
                    first,
                })
            })
            .collect()
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
            if let Some(views) = &self.views {
                views.saw(conversation_id, message.seq.0, message.message_id.as_str());
            }
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
