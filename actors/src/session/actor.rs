//! The `Session` actix actor: decodes the frames its connection reads, applies the frame
//! limits, the rate limiter and the in-flight limit, dispatches requests and queues their
//! replies, keeps the heartbeat, and registers and unregisters the session.

use std::collections::VecDeque;
use tokio::time::Instant;

use actix::{Actor, ActorFutureExt, AsyncContext, Context as ActixContext, WrapFuture};
use bytestring::ByteString;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use wire::events::{ServerEvent, Welcome};
use wire::frames::{
    decode_request, encode_error, encode_event, encode_reply, peek_request_id, Request,
};
use wire::{CloseCode, ErrorBody, ErrorCode, PROTOCOL_VERSION};

use super::connection::Connection;
use super::handle::{CloseRequest, Outbound, QueuedFrames, SessionHandle, SessionShared};
use super::SessionParams;
use crate::dispatch::{self, Caller};
use crate::node::Node;
use crate::OpError;

pub struct Session {
    pub(super) node: Node,
    pub(super) handle: SessionHandle,
    last_heard: Instant,
    /// Requests dispatched and not answered yet.
    pub(super) inflight: usize,
    rejections: VecDeque<Instant>,
    registered: bool,
    /// A frame's rate-limit check is running: the next frame is read once it is done (frames
    /// are handled in order), while writing goes on.
    pub(super) checking: bool,
    /// The connection's place within the connection caps, given back when the session stops.
    permit: Option<crate::ConnectionPermit>,
}

/// A frame from the client that takes a rate-limit token.
enum Frame {
    Text(Utf8Bytes),
    Binary,
    /// A WebSocket ping or pong: the socket answers a ping itself; over the rate it only
    /// counts toward the abuse close (4008), it has no request to answer.
    Control,
}

/// What a message read from the socket means for the connection.
pub(super) enum Received {
    /// Handled, or ignored while closing: go on reading.
    Frame,
    /// The client's close frame: the socket has queued the answer; nothing more is read.
    PeerClosed,
    /// No more frames can be read (a frame over the hard limit, or a protocol error), but the
    /// client may still be sending: what it sends is read and dropped until it ends the
    /// connection or the close handshake times out.
    Unreadable,
    /// Nothing more can be read: the connection ended.
    End,
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
        let shared = SessionShared::new(params.user_id, limits.outbound_queue, node.metrics());
        let now = Instant::now();
        let connection = Connection::new(io, leftover, limits, params.token_expires_at, now);
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
                permit: Some(params.permit),
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
                    Frame::Binary | Frame::Control => None,
                };
                if matches!(frame, Frame::Control) {
                    if matches!(decision, Ok(ports::RateDecision::Limited { .. })) {
                        act.record_rejection();
                    }
                    return;
                }
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
        let Some(request) = self.decode_frame(frame) else {
            return;
        };
        if self.inflight >= self.node.limits().max_inflight_requests {
            self.send_error(Some(request.id), ErrorBody::rate_limited(50));
            self.record_rejection();
            return;
        }
        self.dispatch(request, ctx);
    }

    /// The request a frame holds; `None` when the frame is refused (binary, over
    /// `max_frame_bytes`, or not a request), its error already sent.
    fn decode_frame(&self, frame: Frame) -> Option<Request> {
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Control => return None,
            Frame::Binary => {
                self.send_error(
                    None,
                    ErrorBody::new(
                        ErrorCode::BadRequest,
                        "binary frames are not supported: send JSON text frames",
                    ),
                );
                return None;
            }
        };
        let max_frame_bytes = self.node.limits().max_frame_bytes;
        if text.len() > max_frame_bytes {
            let id = peek_request_id(&text);
            self.send_error(
                id,
                ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!(
                        "frame of {} bytes is over the limit of {} bytes",
                        text.len(),
                        max_frame_bytes
                    ),
                ),
            );
            return None;
        }
        match decode_request(&text) {
            Ok(request) => Some(request),
            Err(error) => {
                self.send_error(error.id, error.error);
                None
            }
        }
    }

    /// Starts the request and queues its reply once it is done.
    fn dispatch(&mut self, request: Request, ctx: &mut ActixContext<Self>) {
        let id = request.id;
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
                Ok(result_json) => act.send_text(encode_reply(id, &result_json)),
                Err(error) => act.send_error(Some(id), error.into_body()),
            }
        }));
    }

    /// Handles one message from the socket. Once a close was requested, only the client's close
    /// frame and the end of the connection matter.
    pub(super) fn on_message(
        &mut self,
        item: Result<Message, WsError>,
        ctx: &mut ActixContext<Self>,
    ) -> Received {
        self.last_heard = Instant::now();
        if self.handle.close_requested() {
            return match item {
                Ok(Message::Close(_)) => Received::PeerClosed,
                Ok(_) => Received::Frame,
                Err(error) => self.on_read_error(error),
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
            // The socket answers pings itself; pings and pongs take a rate-limit token like
            // any frame, so a ping flood ends in a 4008 close.
            Ok(Message::Ping(_) | Message::Pong(_)) => {
                self.handle_frame(Frame::Control, ctx);
                Received::Frame
            }
            Ok(Message::Frame(_)) => Received::Frame,
            Ok(Message::Close(_)) => {
                self.handle.close(CloseCode::Normal, "closed by client");
                Received::PeerClosed
            }
            Err(error) => self.on_read_error(error),
        }
    }

    /// No more frames can be read: closes with 1009 for a frame over the hard limit, 1002 for
    /// a broken protocol (unless a close is under way already); the close handshake then goes
    /// on over a socket whose input is dropped ([`Received::Unreadable`]).
    fn on_read_error(&self, error: WsError) -> Received {
        match error {
            WsError::Capacity(
                CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
            ) => {
                self.handle.request_close(CloseRequest::new(
                    CloseCode::MessageTooBig,
                    "frame over 1 MiB",
                    QueuedFrames::SendBeforeClose,
                ));
                Received::Unreadable
            }
            error @ (WsError::Protocol(_) | WsError::Utf8(_)) => {
                tracing::debug!(error = %error, "websocket protocol error");
                self.handle.request_close(CloseRequest::new(
                    CloseCode::ProtocolError,
                    "protocol error",
                    QueuedFrames::Discard,
                ));
                Received::Unreadable
            }
            error => {
                tracing::debug!(error = %error, "websocket connection ended");
                Received::End
            }
        }
    }

    /// Every `heartbeat`: closes an idle session, else queues a ping.
    pub(super) fn heartbeat(&mut self) {
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
            features: self.node.features(),
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
                        act.handle.request_close(CloseRequest::new(
                            CloseCode::TryAgainLater,
                            "service unavailable, try again later",
                            QueuedFrames::SendBeforeClose,
                        ));
                    }
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // Before the gauge: a session no longer counted holds no place either.
        self.permit = None;
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
