//! The `Session` actor: one per WebSocket. It owns the socket's read half as its stream, and a
//! writer task owns the write half, fed by a bounded outbound queue. It decodes frames, enforces
//! frame limits, rate limits and in-flight limits, heartbeats, closes on token expiry, and on
//! close leaves the registry and presence.
//!
//! The socket is a tokio-tungstenite stream over the raw TCP connection (the server answers the
//! upgrade itself), so an established WebSocket holds only what the session needs: no HTTP
//! dispatcher buffers.

use std::collections::VecDeque;
use std::sync::Arc;
use tokio::time::Instant;

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context as ActixContext, StreamHandler,
    WrapFuture,
};
use bytestring::ByteString;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use std::sync::Mutex;
use tokio::sync::Notify;
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

/// Most frames the writer hands to the socket before one flush (one write system call for a
/// burst of queued frames instead of one per frame).
const WRITE_BATCH: usize = 64;

/// How long a closing session keeps reading for the client's close frame before it drops the
/// connection (closing a socket with unread input would reset it, and the client could lose
/// the close frame).
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// The WebSocket settings of a session: frames and messages up to `hard_frame_bytes` (larger
/// ones close the session with 1009 without being read), a 512-byte read buffer (chat frames
/// are a few hundred bytes; it grows for a larger frame, which is then read 512 bytes per
/// call), and writes gathered up to 4 KiB before they reach the socket.
fn socket_config(hard_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(4096)
        .max_write_buffer_size(4096 + hard_frame_bytes * 2)
        .max_message_size(Some(hard_frame_bytes))
        .max_frame_size(Some(hard_frame_bytes))
}

/// A frame on its way to the writer task. Pings from the client are answered by the socket
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

/// The outgoing side of a session, shared by every handle and the writer task.
///
/// A plain queue behind a mutex rather than a channel: a channel preallocates a block of 32
/// slots (≈ 1.5 KiB with its header) per session, which is most of what an idle WebSocket
/// would hold; the queue allocates only while frames wait and gives the memory back once it
/// drained (docs/benchmarks.md, "RSS per idle connection").
struct SessionShared {
    session_id: SessionId,
    user_id: UserId,
    metrics: Metrics,
    /// Most frames queued at once (`limits.outbound_queue`).
    capacity: usize,
    outgoing: Mutex<Outgoing>,
    /// Wakes the writer: a frame was queued or a close requested (one waiter, permit kept).
    writer_wake: Notify,
    /// Wakes whoever waits for a close request (the actor, the writer during a write).
    close_wake: Notify,
}

#[derive(Default)]
struct Outgoing {
    queue: VecDeque<Outbound>,
    close: Option<CloseRequest>,
    /// The writer is gone: nothing queued would ever be written.
    writer_gone: bool,
}

impl SessionShared {
    fn new(user_id: UserId, capacity: usize, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            session_id: SessionId::new(uuid::Uuid::now_v7().to_string()),
            user_id,
            metrics,
            capacity: capacity.max(1),
            outgoing: Mutex::new(Outgoing::default()),
            writer_wake: Notify::new(),
            close_wake: Notify::new(),
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

    /// Waits until a close matching `matches` is requested.
    async fn close_requested(&self, matches: impl Fn(&CloseRequest) -> bool) {
        loop {
            // Created before the check: a request made in between still wakes it.
            let notified = self.close_wake.notified();
            if self.outgoing().close.as_ref().is_some_and(&matches) {
                return;
            }
            notified.await;
        }
    }

    /// Up to `max` queued frames, oldest first, and the close request if there is one. The
    /// queue's memory is released once it is empty.
    fn take_burst(&self, max: usize) -> (Vec<Outbound>, Option<CloseRequest>) {
        let mut outgoing = self.outgoing();
        let take = outgoing.queue.len().min(max);
        let frames: Vec<Outbound> = outgoing.queue.drain(..take).collect();
        if outgoing.queue.is_empty() && outgoing.queue.capacity() > 0 {
            outgoing.queue = VecDeque::new();
        }
        (frames, outgoing.close.clone())
    }
}

/// Marks the writer gone when the writer task ends, however it ends.
struct WriterGone(Arc<SessionShared>);

impl Drop for WriterGone {
    fn drop(&mut self) {
        let mut outgoing = self.0.outgoing();
        outgoing.writer_gone = true;
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
                self.shared.metrics.frames_out.inc();
                true
            }
            Err(Refused::Full) => {
                if self.request_close(CloseRequest {
                    code: CloseCode::TooSlow.code(),
                    reason: "outbound queue overflow: client too slow".to_owned(),
                    flush_queue: false,
                }) {
                    self.shared.metrics.outbound_overflows.inc();
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
                .metrics
                .closes
                .with_label_values(&[&request.code.to_string()])
                .inc();
            outgoing.close = Some(request);
        }
        self.shared.writer_wake.notify_one();
        self.shared.close_wake.notify_waiters();
        true
    }

    /// Whether a close was requested already.
    pub fn close_requested(&self) -> bool {
        self.shared.close_request().is_some()
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
        let shared = SessionShared::new(user_id, queue, metrics);
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
            if outgoing.writer_gone {
                return Err(Refused::Gone);
            }
            if outgoing.queue.len() >= self.shared.capacity {
                return Err(Refused::Full);
            }
            outgoing.queue.push_back(outbound);
        }
        self.shared.writer_wake.notify_one();
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
    params: SessionParams,
    last_heard: Instant,
    inflight: usize,
    rejections: VecDeque<Instant>,
    registered: bool,
    /// A close was requested: only the client's close frame (or the end) is awaited.
    closing: bool,
}

impl Session {
    /// Serves an upgraded connection on one task: builds the WebSocket over `io` (`leftover`:
    /// bytes the client sent after its handshake), starts the session actor on its read half,
    /// then writes the session's frames to the write half until the session closes.
    ///
    /// Everything that polls the socket runs on that task or in the actor, so nothing keeps a
    /// waker of the HTTP connection task that handed the socket over (its ≈ 1 KiB task would
    /// otherwise stay allocated for the life of the WebSocket). Must be called on an actix
    /// arbiter.
    pub fn serve(node: Node, params: SessionParams, io: tokio::net::TcpStream, leftover: Vec<u8>) {
        actix_rt::spawn(async move {
            let config = socket_config(node.limits().hard_frame_bytes);
            let socket =
                WebSocketStream::from_partially_read(io, leftover, Role::Server, Some(config))
                    .await;
            let (sink, stream) = socket.split();
            let shared = Session::start(node, params, stream);
            write_frames(sink, shared).await;
        });
    }

    /// Starts the session actor on the socket's read half; returns what the writer needs.
    fn start(node: Node, params: SessionParams, stream: SplitStream<Socket>) -> Arc<SessionShared> {
        let shared = SessionShared::new(
            params.user_id.clone(),
            node.limits().outbound_queue,
            node.metrics().clone(),
        );
        let handle = SessionHandle {
            shared: shared.clone(),
        };
        let close_shared = shared.clone();
        let actor_handle = handle.clone();
        Session::create(move |ctx| {
            ctx.add_stream(stream);
            ctx.spawn(
                actix::fut::wrap_future::<_, Session>(async move {
                    close_shared.close_requested(|_| true).await;
                })
                .map(|_, act, ctx| act.begin_closing(ctx)),
            );
            Session {
                node,
                handle: actor_handle,
                params,
                last_heard: Instant::now(),
                inflight: 0,
                rejections: VecDeque::new(),
                registered: false,
                closing: false,
            }
        });
        shared
    }

    /// A close was requested (the writer sends the close frame): stop handling frames and wait,
    /// at most [`CLOSE_LINGER`], for the client's close frame or the end of the connection.
    fn begin_closing(&mut self, ctx: &mut ActixContext<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        ctx.run_later(CLOSE_LINGER, |_act, ctx| ctx.stop());
    }

    fn caller(&self) -> Caller {
        Caller {
            user_id: self.params.user_id.clone(),
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

    fn record_rejection(&mut self, ctx: &mut ActixContext<Self>) {
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
            tracing::info!(user_id = %self.params.user_id, "closing session for rate limit abuse");
            self.handle
                .close(CloseCode::RateLimitAbuse, "rate limit abuse");
            self.begin_closing(ctx);
        }
    }

    /// Every frame first takes a rate-limit token, then is processed (see docs/protocol.md,
    /// "Order of checks").
    fn handle_frame(&mut self, frame: Frame, ctx: &mut ActixContext<Self>) {
        let user_id = self.params.user_id.clone();
        let rate_limiter = self.node.ports().rate_limiter.clone();
        let check = async move { rate_limiter.check(&user_id, 1).await }
            .into_actor(self)
            .map(move |decision, act, ctx| {
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
                        act.record_rejection(ctx);
                    }
                    Err(error) => {
                        act.send_error(readable_id(&frame), OpError::from(error).into_body());
                    }
                }
            });
        ctx.wait(check);
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
            self.record_rejection(ctx);
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

impl Actor for Session {
    type Context = ActixContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.node.metrics().sessions_open.inc();
        ctx.set_mailbox_capacity(64);
        // Register before anything is read. The welcome is queued inside the registration,
        // before any event can reach the session, so it is the first frame and it means
        // "you receive everything from now on".
        let welcome = ServerEvent::Welcome(Welcome {
            user_id: self.params.user_id.clone(),
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
                .map(|result, act, ctx| match result {
                    Ok(()) => act.registered = true,
                    Err(error) => {
                        tracing::warn!(user_id = %act.params.user_id, error = %error, "session registration failed");
                        act.registered = true;
                        act.handle.request_close(CloseRequest {
                            code: 1013,
                            reason: "service unavailable, try again later".to_owned(),
                            flush_queue: true,
                        });
                        act.begin_closing(ctx);
                    }
                }),
        );
        let heartbeat = self.node.limits().heartbeat;
        ctx.run_interval(heartbeat, |act, ctx| {
            if act.closing {
                return;
            }
            if act.last_heard.elapsed() > act.node.limits().client_timeout {
                act.handle.close(CloseCode::Normal, "idle timeout");
                act.begin_closing(ctx);
                return;
            }
            // A full queue already means a 4009 close.
            let _ = act.handle.queue(Outbound::Ping);
        });
        let until_expiry = (self.params.token_expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        ctx.run_later(until_expiry, |act, ctx| {
            act.handle.close(CloseCode::TokenInvalid, "token expired");
            act.begin_closing(ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.node.metrics().sessions_open.dec();
        self.handle.close(CloseCode::Normal, "session closed");
        if self.registered {
            let node = self.node.clone();
            let handle = self.handle.clone();
            actix_rt::spawn(async move { dispatch::close_session(&node, &handle).await });
        }
    }
}

impl StreamHandler<Result<Message, WsError>> for Session {
    fn handle(&mut self, item: Result<Message, WsError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        if self.closing {
            // Waiting for the client's close frame; nothing else is handled any more.
            if matches!(item, Ok(Message::Close(_)) | Err(_)) {
                ctx.stop();
            }
            return;
        }
        match item {
            Ok(Message::Text(text)) => {
                self.node.metrics().frames_in.inc();
                self.handle_frame(Frame::Text(text), ctx);
            }
            Ok(Message::Binary(_)) => {
                self.node.metrics().frames_in.inc();
                self.handle_frame(Frame::Binary, ctx);
            }
            // The socket answers pings itself.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(_)) => {
                // The socket has answered the close; the connection is over.
                self.handle.close(CloseCode::Normal, "closed by client");
                ctx.stop();
            }
            Err(WsError::Capacity(
                CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
            )) => {
                self.handle.request_close(CloseRequest {
                    code: CloseCode::MessageTooBig.code(),
                    reason: "frame over 1 MiB".to_owned(),
                    flush_queue: true,
                });
                self.begin_closing(ctx);
            }
            Err(error @ (WsError::Protocol(_) | WsError::Utf8(_))) => {
                tracing::debug!(error = %error, "websocket protocol error");
                self.handle.request_close(CloseRequest {
                    code: 1002,
                    reason: "protocol error".to_owned(),
                    flush_queue: false,
                });
                self.begin_closing(ctx);
            }
            Err(error) => {
                tracing::debug!(error = %error, "websocket connection ended");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// The writer task: owns the socket's write half and writes queued frames, a burst of them per
/// flush, until a close is requested or the connection goes away; then sends the close frame.
async fn write_frames(mut sink: SplitSink<Socket, Message>, shared: Arc<SessionShared>) {
    let _gone = WriterGone(shared.clone());
    let request = loop {
        // Created before the queue is looked at: a frame queued in between still wakes it.
        let woken = shared.writer_wake.notified();
        let (frames, close) = shared.take_burst(WRITE_BATCH);
        if let Some(request) = close {
            // 4009 (the client does not read) drops the queue; any other close writes what is
            // queued first, so a `goaway` queued just before its close is never lost.
            if !request.flush_queue || frames.is_empty() {
                break request;
            }
        }
        if frames.is_empty() {
            woken.await;
            continue;
        }
        // Only a close that drops the queue interrupts frames being written: this write may
        // never finish when the client does not read.
        let written = tokio::select! {
            biased;
            _ = shared.close_requested(|request| !request.flush_queue) => continue,
            written = write_burst(&mut sink, frames) => written,
        };
        if written.is_err() {
            return;
        }
    };
    let frame = CloseFrame {
        code: WsCloseCode::from(request.code),
        reason: Utf8Bytes::from(request.reason),
    };
    // A client that does not read may never take the close frame; give up after a while.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}

/// Writes `frames`, then flushes once.
async fn write_burst(
    sink: &mut SplitSink<Socket, Message>,
    frames: Vec<Outbound>,
) -> Result<(), WsError> {
    for frame in frames {
        sink.feed(message_of(frame)).await?;
    }
    sink.flush().await
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
