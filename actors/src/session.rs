//! The `Session` actor: one per WebSocket, owning its socket. It decodes frames, enforces
//! frame limits, rate limits and in-flight limits, writes the frames queued for it (a bounded
//! outbound queue that conversations and the router fill), heartbeats, closes on token expiry,
//! and on close leaves the registry and presence.
//!
//! The socket is a tokio-tungstenite stream over the raw TCP connection (the server answers the
//! upgrade itself). It is driven by one future in the actor's own context ([`Connection`]):
//! reading, writing, the heartbeat, the token expiry and the close handshake share the actor's
//! task and a single timer, so an established WebSocket holds the actor and its socket and
//! nothing else (docs/adr/0003-websocket-transport.md).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

use actix::{
    Actor, ActorContext, ActorFuture, ActorFutureExt, AsyncContext, Context as ActixContext,
    WrapFuture,
};
use bytestring::ByteString;
use futures::future::LocalBoxFuture;
use futures::task::AtomicWaker;
use futures::{FutureExt, SinkExt, StreamExt};
use prometheus::{IntCounter, IntCounterVec};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use wire::events::{ServerEvent, Welcome};
use wire::frames::{decode_request, encode_error, encode_event, peek_request_id};
use wire::{CloseCode, ErrorBody, ErrorCode, SessionId, Timestamp, UserId, PROTOCOL_VERSION};

use crate::dispatch::{self, Caller};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::OpError;

/// What the session is opened with, after authentication.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub user_id: UserId,
    pub token_expires_at: Timestamp,
}

/// An upgraded client connection.
pub type Socket = WebSocketStream<tokio::net::TcpStream>;

/// Most frames written per poll of a connection before it lets the actor's other work run.
const WRITE_BUDGET: usize = 256;

/// Most frames read per poll of a connection before it lets the actor's other work run.
const READ_BUDGET: usize = 32;

/// How long a session that is closing may take to send what it still has to send and its close
/// frame (a client that does not read may never take them).
const CLOSE_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a closing session keeps reading for the client's close frame once its own went out
/// (closing a socket with unread input would reset it, and the client could lose the close
/// frame).
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// The WebSocket settings of a session: frames and messages up to `hard_frame_bytes` (larger
/// ones close the session with 1009 without being read), a 256-byte read buffer (most chat
/// frames fit; it grows for a larger frame, which is then read 256 bytes per
/// call), and writes gathered up to 4 KiB before they reach the socket.
fn socket_config(hard_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(4096)
        .max_write_buffer_size(4096 + hard_frame_bytes * 2)
        .max_message_size(Some(hard_frame_bytes))
        .max_frame_size(Some(hard_frame_bytes))
}

/// A frame queued for a session's socket. Pings from the client are answered by the socket
/// itself.
#[derive(Debug)]
pub enum Outbound {
    Text(ByteString),
    Ping,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: String,
    /// Send the frames already queued before closing (false for 4009: the client is not reading).
    pub flush_queue: bool,
}

/// The outgoing side of a session, shared by every handle and the session's connection.
///
/// A plain queue behind a mutex rather than a channel: a channel preallocates a block of 32
/// slots (≈ 1.5 KiB with its header) per session, which is most of what an idle WebSocket
/// would hold; the queue allocates only while frames wait and gives the memory back once it
/// drained (docs/benchmarks.md, "RSS per idle connection").
struct SessionShared {
    session_id: SessionId,
    user_id: UserId,
    /// The three metrics a handle updates (not all of [`Metrics`]: every session keeps these).
    frames_out: IntCounter,
    outbound_overflows: IntCounter,
    closes: IntCounterVec,
    /// Most frames queued at once (`limits.outbound_queue`).
    capacity: usize,
    outgoing: Mutex<Outgoing>,
    /// The session's task, woken when a frame is queued or a close requested.
    wake: AtomicWaker,
}

#[derive(Default)]
struct Outgoing {
    queue: VecDeque<Outbound>,
    close: Option<CloseRequest>,
    /// The connection is gone: nothing queued would ever be written.
    connection_gone: bool,
}

/// What a connection writes next.
enum Next {
    Frame(Outbound),
    Close(CloseFrame),
    Idle,
}

impl SessionShared {
    fn new(user_id: UserId, capacity: usize, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            session_id: SessionId::new(uuid::Uuid::now_v7().to_string()),
            user_id,
            frames_out: metrics.frames_out.clone(),
            outbound_overflows: metrics.outbound_overflows.clone(),
            closes: metrics.closes.clone(),
            capacity: capacity.max(1),
            outgoing: Mutex::new(Outgoing::default()),
            wake: AtomicWaker::new(),
        })
    }

    fn outgoing(&self) -> std::sync::MutexGuard<'_, Outgoing> {
        self.outgoing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn close_request(&self) -> Option<CloseRequest> {
        self.outgoing().close.clone()
    }

    fn close_requested(&self) -> bool {
        self.outgoing().close.is_some()
    }

    /// The oldest queued frame; once a close is requested and the queue is written (or, for a
    /// close that drops the queue, at once), the close frame. The queue's memory is released
    /// once it is empty.
    fn next(&self) -> Next {
        let mut outgoing = self.outgoing();
        let close_now = outgoing
            .close
            .as_ref()
            .is_some_and(|close| !close.flush_queue || outgoing.queue.is_empty());
        if close_now {
            outgoing.queue = VecDeque::new();
            let close = outgoing.close.as_ref().expect("checked above");
            return Next::Close(CloseFrame {
                code: WsCloseCode::from(close.code),
                reason: Utf8Bytes::from(close.reason.clone()),
            });
        }
        match outgoing.queue.pop_front() {
            Some(frame) => {
                if outgoing.queue.is_empty() {
                    outgoing.queue = VecDeque::new();
                }
                Next::Frame(frame)
            }
            None => Next::Idle,
        }
    }

    /// The connection ended: frames are refused from now on and the queue is released.
    fn connection_gone(&self) {
        let mut outgoing = self.outgoing();
        outgoing.connection_gone = true;
        outgoing.queue = VecDeque::new();
    }
}

/// How the rest of the node reaches a session: a bounded outbound queue and a close signal.
/// Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    shared: Arc<SessionShared>,
}

/// What a session refuses a frame for.
enum Refused {
    Full,
    Gone,
}

impl SessionHandle {
    pub fn session_id(&self) -> &SessionId {
        &self.shared.session_id
    }

    pub fn user_id(&self) -> &UserId {
        &self.shared.user_id
    }

    /// Queues a text frame. When the queue is full the client is not keeping up: the session is
    /// closed with 4009 and the frame dropped. Returns whether the frame was queued.
    pub fn deliver(&self, frame: ByteString) -> bool {
        match self.queue(Outbound::Text(frame)) {
            Ok(()) => {
                self.shared.frames_out.inc();
                true
            }
            Err(Refused::Full) => {
                if self.request_close(CloseRequest {
                    code: CloseCode::TooSlow.code(),
                    reason: "outbound queue overflow: client too slow".to_owned(),
                    flush_queue: false,
                }) {
                    self.shared.outbound_overflows.inc();
                    tracing::info!(session_id = %self.session_id(), user_id = %self.user_id(), "closing slow session");
                }
                false
            }
            Err(Refused::Gone) => false,
        }
    }

    /// Asks the session to close. Returns false when a close was already requested.
    pub fn request_close(&self, request: CloseRequest) -> bool {
        {
            let mut outgoing = self.shared.outgoing();
            if outgoing.close.is_some() {
                return false;
            }
            self.shared
                .closes
                .with_label_values(&[&request.code.to_string()])
                .inc();
            outgoing.close = Some(request);
        }
        self.shared.wake.wake();
        true
    }

    /// Whether a close was requested already.
    pub fn close_requested(&self) -> bool {
        self.shared.close_requested()
    }

    pub fn close(&self, code: CloseCode, reason: &str) {
        self.request_close(CloseRequest {
            code: code.code(),
            reason: reason.to_owned(),
            flush_queue: true,
        });
    }

    /// A handle with no socket behind it: its frames and close request are read through the
    /// returned [`DetachedSession`]. For tests of the actors and for in-process consumers.
    pub fn detached(
        user_id: UserId,
        queue: usize,
        metrics: Metrics,
    ) -> (SessionHandle, DetachedSession) {
        let shared = SessionShared::new(user_id, queue, &metrics);
        (
            SessionHandle {
                shared: shared.clone(),
            },
            DetachedSession { shared },
        )
    }

    fn queue(&self, outbound: Outbound) -> Result<(), Refused> {
        {
            let mut outgoing = self.shared.outgoing();
            if outgoing.connection_gone {
                return Err(Refused::Gone);
            }
            if outgoing.queue.len() >= self.shared.capacity {
                return Err(Refused::Full);
            }
            outgoing.queue.push_back(outbound);
        }
        self.shared.wake.wake();
        Ok(())
    }
}

/// The far side of a [`SessionHandle::detached`] session.
pub struct DetachedSession {
    shared: Arc<SessionShared>,
}

impl DetachedSession {
    /// The oldest queued frame, if any.
    pub fn try_recv(&self) -> Option<Outbound> {
        self.shared.outgoing().queue.pop_front()
    }

    /// The close requested so far, if any.
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.shared.close_request()
    }
}

pub struct Session {
    node: Node,
    handle: SessionHandle,
    last_heard: Instant,
    inflight: usize,
    rejections: VecDeque<Instant>,
    registered: bool,
    /// A frame's rate-limit check is running: the next frame is read once it is done (frames
    /// are handled in order), while writing goes on.
    checking: bool,
}

impl Session {
    /// Serves an upgraded connection: starts the session actor, which builds the WebSocket over
    /// `io` (`leftover`: bytes the client sent after its handshake) and drives it from its own
    /// context until the connection ends. Must be called on an actix arbiter.
    ///
    /// The socket is first polled by the actor, so nothing keeps a waker of the HTTP connection
    /// task that handed it over (that task would otherwise stay allocated for the life of the
    /// WebSocket).
    pub fn serve(node: Node, params: SessionParams, io: tokio::net::TcpStream, leftover: Vec<u8>) {
        let limits = node.limits();
        let config = socket_config(limits.hard_frame_bytes);
        let heartbeat = limits.heartbeat;
        let shared = SessionShared::new(params.user_id, limits.outbound_queue, node.metrics());
        let now = Instant::now();
        let until_expiry = (params.token_expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        let connection = Connection {
            timer: tokio::time::sleep_until(now + heartbeat),
            state: ConnectionState::Building(
                WebSocketStream::from_partially_read(io, leftover, Role::Server, Some(config))
                    .boxed_local(),
            ),
            next_ping: now + heartbeat,
            expires: now + until_expiry,
        };
        Session::create(move |ctx| {
            ctx.spawn(connection);
            Session {
                node,
                handle: SessionHandle { shared },
                last_heard: now,
                inflight: 0,
                rejections: VecDeque::new(),
                registered: false,
                checking: false,
            }
        });
    }

    fn caller(&self) -> Caller {
        Caller {
            user_id: self.handle.user_id().clone(),
            session_id: self.handle.session_id().clone(),
        }
    }

    fn send_text(&self, text: String) {
        self.handle.deliver(ByteString::from(text));
    }

    fn send_error(&self, id: Option<i64>, error: ErrorBody) {
        self.node
            .metrics()
            .errors
            .with_label_values(&[error.code.as_str()])
            .inc();
        self.send_text(encode_error(id, error));
    }

    fn record_rejection(&mut self) {
        let limits = self.node.limits();
        let now = Instant::now();
        self.rejections.push_back(now);
        while let Some(first) = self.rejections.front() {
            if now.duration_since(*first) > limits.abuse_window {
                self.rejections.pop_front();
            } else {
                break;
            }
        }
        if self.rejections.len() as u32 >= limits.abuse_rejections {
            tracing::info!(user_id = %self.handle.user_id(), "closing session for rate limit abuse");
            self.handle
                .close(CloseCode::RateLimitAbuse, "rate limit abuse");
        }
    }

    /// Every frame first takes a rate-limit token, then is processed (see docs/protocol.md,
    /// "Order of checks"). No other frame is read meanwhile; the socket keeps being written
    /// (in cluster mode the check is a Redis round trip).
    fn handle_frame(&mut self, frame: Frame, ctx: &mut ActixContext<Self>) {
        self.checking = true;
        let user_id = self.handle.user_id().clone();
        let rate_limiter = self.node.ports().rate_limiter.clone();
        let check = async move { rate_limiter.check(&user_id, 1).await }
            .into_actor(self)
            .map(move |decision, act, ctx| {
                act.checking = false;
                // The connection reads on.
                act.handle.shared.wake.wake();
                let readable_id = |frame: &Frame| match frame {
                    Frame::Text(text) => peek_request_id(text),
                    Frame::Binary => None,
                };
                match decision {
                    Ok(ports::RateDecision::Allowed) => act.process_frame(frame, ctx),
                    Ok(ports::RateDecision::Limited { retry_after }) => {
                        let retry_after_ms = (retry_after.as_millis() as u64).max(1);
                        act.send_error(
                            readable_id(&frame),
                            ErrorBody::rate_limited(retry_after_ms),
                        );
                        act.record_rejection();
                    }
                    Err(error) => {
                        act.send_error(readable_id(&frame), OpError::from(error).into_body());
                    }
                }
            });
        ctx.spawn(check);
    }

    fn process_frame(&mut self, frame: Frame, ctx: &mut ActixContext<Self>) {
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary => {
                self.send_error(
                    None,
                    ErrorBody::new(
                        ErrorCode::BadRequest,
                        "binary frames are not supported: send JSON text frames",
                    ),
                );
                return;
            }
        };
        let limits = self.node.limits();
        if text.len() > limits.max_frame_bytes {
            let id = peek_request_id(&text);
            self.send_error(
                id,
                ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!(
                        "frame of {} bytes is over the limit of {} bytes",
                        text.len(),
                        limits.max_frame_bytes
                    ),
                ),
            );
            return;
        }
        let request = match decode_request(&text) {
            Ok(request) => request,
            Err(error) => {
                self.send_error(error.id, error.error);
                return;
            }
        };
        let id = request.id;
        if self.inflight >= limits.max_inflight_requests {
            self.send_error(Some(id), ErrorBody::rate_limited(50));
            self.record_rejection();
            return;
        }
        self.inflight += 1;
        let started = Instant::now();
        let op_label = wire::ops::Op::parse(&request.op)
            .map(|op| op.as_str())
            .unwrap_or("unknown");
        let pending = dispatch::start(&self.node, &self.caller(), request);
        ctx.spawn(pending.into_actor(self).map(move |result, act, _ctx| {
            act.inflight -= 1;
            act.node
                .metrics()
                .request_duration
                .with_label_values(&[op_label])
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(result_json) => {
                    act.send_text(format!("{{\"re\":{id},\"result\":{result_json}}}"))
                }
                Err(error) => act.send_error(Some(id), error.into_body()),
            }
        }));
    }
}

/// A data frame from the client.
enum Frame {
    Text(Utf8Bytes),
    Binary,
}

/// What a message read from the socket means for the connection.
enum Received {
    /// Handled, or ignored while closing: go on reading.
    Frame,
    /// The client's close frame: the socket has queued the answer; nothing more is read.
    PeerClosed,
    /// Nothing more can be read (the connection ended, or a protocol or size error).
    End,
}

impl Session {
    /// Handles one message from the socket. Once a close was requested, only the client's close
    /// frame and the end of the connection matter.
    fn on_message(
        &mut self,
        item: Result<Message, WsError>,
        ctx: &mut ActixContext<Self>,
    ) -> Received {
        self.last_heard = Instant::now();
        if self.handle.close_requested() {
            return match item {
                Ok(Message::Close(_)) => Received::PeerClosed,
                Ok(_) => Received::Frame,
                Err(_) => Received::End,
            };
        }
        match item {
            Ok(Message::Text(text)) => {
                self.node.metrics().frames_in.inc();
                self.handle_frame(Frame::Text(text), ctx);
                Received::Frame
            }
            Ok(Message::Binary(_)) => {
                self.node.metrics().frames_in.inc();
                self.handle_frame(Frame::Binary, ctx);
                Received::Frame
            }
            // The socket answers pings itself.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Received::Frame,
            Ok(Message::Close(_)) => {
                self.handle.close(CloseCode::Normal, "closed by client");
                Received::PeerClosed
            }
            Err(WsError::Capacity(
                CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
            )) => {
                self.handle.request_close(CloseRequest {
                    code: CloseCode::MessageTooBig.code(),
                    reason: "frame over 1 MiB".to_owned(),
                    flush_queue: true,
                });
                Received::End
            }
            Err(error @ (WsError::Protocol(_) | WsError::Utf8(_))) => {
                tracing::debug!(error = %error, "websocket protocol error");
                self.handle.request_close(CloseRequest {
                    code: 1002,
                    reason: "protocol error".to_owned(),
                    flush_queue: false,
                });
                Received::End
            }
            Err(error) => {
                tracing::debug!(error = %error, "websocket connection ended");
                Received::End
            }
        }
    }

    /// Every `heartbeat`: closes an idle session, else queues a ping.
    fn heartbeat(&mut self) {
        if self.last_heard.elapsed() > self.node.limits().client_timeout {
            self.handle.close(CloseCode::Normal, "idle timeout");
        } else {
            // A full queue already means a 4009 close.
            let _ = self.handle.queue(Outbound::Ping);
        }
    }
}

impl Actor for Session {
    type Context = ActixContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.node.metrics().sessions_open.inc();
        // Register before anything is read. The welcome is queued inside the registration,
        // before any event can reach the session, so it is the first frame and it means
        // "you receive everything from now on".
        let welcome = ServerEvent::Welcome(Welcome {
            user_id: self.handle.user_id().clone(),
            session_id: self.handle.session_id().clone(),
            node_id: self.node.node_id().clone(),
            protocol: PROTOCOL_VERSION,
            heartbeat_ms: self.node.limits().heartbeat.as_millis() as u64,
        });
        let welcome = ByteString::from(encode_event(&welcome));
        let node = self.node.clone();
        let handle = self.handle.clone();
        ctx.wait(
            async move { dispatch::open_session(&node, &handle, welcome).await }
                .into_actor(self)
                .map(|result, act, _ctx| match result {
                    Ok(()) => act.registered = true,
                    Err(error) => {
                        tracing::warn!(user_id = %act.handle.user_id(), error = %error, "session registration failed");
                        act.registered = true;
                        act.handle.request_close(CloseRequest {
                            code: 1013,
                            reason: "service unavailable, try again later".to_owned(),
                            flush_queue: true,
                        });
                    }
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.node.metrics().sessions_open.dec();
        self.handle.close(CloseCode::Normal, "session closed");
        self.handle.shared.connection_gone();
        if self.registered {
            let node = self.node.clone();
            let handle = self.handle.clone();
            actix_rt::spawn(async move { dispatch::close_session(&node, &handle).await });
        }
    }
}

pin_project_lite::pin_project! {
    /// The socket of a session, driven from the session actor's context: it reads frames into
    /// the actor, writes the queued frames, keeps the heartbeat and the token expiry, and does
    /// the close handshake; when the connection is over it stops the actor. One timer serves
    /// the heartbeat, the expiry and the close deadlines.
    struct Connection {
        #[pin]
        timer: Sleep,
        state: ConnectionState,
        next_ping: Instant,
        expires: Instant,
    }
}

// The connection lives in one allocation (the actor context boxes it); boxing the socket too
// would add a second one per session for a state that lasts one poll.
#[allow(clippy::large_enum_variant)]
enum ConnectionState {
    /// The WebSocket is built on the first poll, so the socket's wakers are the actor's.
    Building(LocalBoxFuture<'static, Socket>),
    Open(Link),
}

/// An open WebSocket and where its close handshake stands.
struct Link {
    socket: Socket,
    /// Written frames not flushed yet (or, after the client's close frame, the socket's answer).
    unflushed: bool,
    /// Our close frame is written.
    close_sent: bool,
    /// The client's close frame arrived.
    peer_closed: bool,
    /// Nothing more can be read.
    read_ended: bool,
    /// Closing: the connection ends at this instant at the latest.
    closing_deadline: Option<Instant>,
}

impl Link {
    fn new(socket: Socket) -> Self {
        Self {
            socket,
            unflushed: false,
            close_sent: false,
            peer_closed: false,
            read_ended: false,
            closing_deadline: None,
        }
    }

    /// Reads and handles frames until the socket has none, or a frame's checks are running.
    fn read(&mut self, act: &mut Session, ctx: &mut ActixContext<Session>, cx: &mut Context<'_>) {
        for _ in 0..READ_BUDGET {
            if self.read_ended || self.peer_closed || act.checking {
                return;
            }
            match self.socket.poll_next_unpin(cx) {
                Poll::Pending => return,
                Poll::Ready(None) => self.read_ended = true,
                Poll::Ready(Some(item)) => match act.on_message(item, ctx) {
                    Received::Frame => {}
                    Received::PeerClosed => {
                        self.peer_closed = true;
                        self.unflushed = true;
                    }
                    Received::End => self.read_ended = true,
                },
            }
        }
        // More to read: let the actor's other work run first.
        cx.waker().wake_by_ref();
    }

    /// Writes queued frames, then the close frame once a close is requested, and flushes.
    /// `Err` when the connection is broken.
    fn write(&mut self, shared: &SessionShared, cx: &mut Context<'_>) -> Result<(), WsError> {
        if !self.close_sent && !self.peer_closed {
            let mut budget = WRITE_BUDGET;
            loop {
                if budget == 0 {
                    cx.waker().wake_by_ref();
                    break;
                }
                budget -= 1;
                if self.socket.poll_ready_unpin(cx)?.is_pending() {
                    break;
                }
                match shared.next() {
                    Next::Idle => break,
                    Next::Frame(frame) => self.socket.start_send_unpin(message_of(frame))?,
                    Next::Close(frame) => {
                        self.socket.start_send_unpin(Message::Close(Some(frame)))?;
                        self.close_sent = true;
                    }
                }
                self.unflushed = true;
                if self.close_sent {
                    break;
                }
            }
        }
        if self.unflushed && self.socket.poll_flush_unpin(cx)?.is_ready() {
            self.unflushed = false;
            if self.close_sent {
                let linger = Instant::now() + CLOSE_LINGER;
                self.closing_deadline =
                    Some(self.closing_deadline.map_or(linger, |at| at.min(linger)));
            }
        }
        Ok(())
    }

    /// Nothing more will be read and everything owed to the client is written.
    fn finished(&self, close_requested: bool) -> bool {
        (self.peer_closed || self.read_ended)
            && !self.unflushed
            && (self.close_sent || self.peer_closed || !close_requested)
    }
}

impl ActorFuture<Session> for Connection {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Session,
        ctx: &mut ActixContext<Session>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let this = self.project();
        let mut timer = this.timer;
        let link = match this.state {
            ConnectionState::Open(link) => link,
            ConnectionState::Building(build) => {
                let socket = std::task::ready!(build.as_mut().poll(cx));
                *this.state = ConnectionState::Open(Link::new(socket));
                match this.state {
                    ConnectionState::Open(link) => link,
                    ConnectionState::Building(_) => unreachable!("just opened"),
                }
            }
        };
        act.handle.shared.wake.register(cx.waker());
        link.read(act, ctx, cx);
        let close_requested = act.handle.close_requested();
        let now = Instant::now();
        if link.closing_deadline.is_none()
            && (close_requested || link.read_ended || link.peer_closed)
        {
            link.closing_deadline = Some(now + CLOSE_SEND_TIMEOUT);
        }
        let written = link.write(&act.handle.shared, cx);
        if let Err(error) = &written {
            tracing::debug!(error = %error, "websocket write failed");
        }
        if written.is_err() || link.finished(close_requested) {
            ctx.stop();
            return Poll::Ready(());
        }
        let deadline = link
            .closing_deadline
            .unwrap_or_else(|| (*this.next_ping).min(*this.expires));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if link.closing_deadline.is_some() {
            // Closing took too long (the client does not read, or does not answer the close).
            ctx.stop();
            return Poll::Ready(());
        }
        if now >= *this.expires {
            act.handle.close(CloseCode::TokenInvalid, "token expired");
        } else if now >= *this.next_ping {
            act.heartbeat();
            *this.next_ping = now + act.node.limits().heartbeat;
        }
        // Poll again: the ping or the close is to be written, and the timer re-armed.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn message_of(outbound: Outbound) -> Message {
    match outbound {
        // Frames are built from `String`s, so they are valid UTF-8.
        Outbound::Text(text) => match Utf8Bytes::try_from(text.into_bytes()) {
            Ok(text) => Message::Text(text),
            Err(_) => unreachable!("a ByteString is valid UTF-8"),
        },
        Outbound::Ping => Message::Ping(bytes::Bytes::new()),
    }
}
