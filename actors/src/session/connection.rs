//! [`Connection`]: the socket of a session, driven from the session actor's context
//! (docs/adr/0003-websocket-transport.md).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use actix::{ActorContext, ActorFuture, Context as ActixContext};
use futures::future::LocalBoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use wire::{CloseCode, Timestamp};

use super::actor::{Received, Session};
use super::framing::TrackedStream;
use super::handle::{Next, Outbound, SessionShared};
use super::Socket;
use crate::node::Limits;

/// Most frames written per poll of a connection before it lets the actor's other work run.
const WRITE_BUDGET: usize = 256;

/// Most frames read per poll of a connection before it lets the actor's other work run.
const READ_BUDGET: usize = 32;

/// How long a session that is closing may take to send what it still has to send and its close
/// frame (a client that does not read may never take them).
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing session keeps reading for the client's close frame once its own went out
/// (closing a socket with unread input would reset it, and the client could lose the close
/// frame).
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Bytes read per call while input is dropped (after a frame over the hard limit or a protocol
/// error); with [`READ_BUDGET`] calls per poll, up to 256 KiB per poll.
const DISCARD_CHUNK: usize = 8 * 1024;

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

pin_project_lite::pin_project! {
    /// The socket of a session, driven from the session actor's context: it reads frames into
    /// the actor, writes the queued frames, keeps the heartbeat and the token expiry, and does
    /// the close handshake; when the connection is over it stops the actor. One timer serves
    /// the heartbeat, the expiry and the close deadlines.
    pub(super) struct Connection {
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

impl Connection {
    /// A connection to build over `io` (`leftover`: bytes read past the handshake), its first
    /// ping due one heartbeat after `now`, its token expiring at `token_expires_at`.
    pub(super) fn new(
        io: tokio::net::TcpStream,
        leftover: Vec<u8>,
        limits: &Limits,
        token_expires_at: Timestamp,
        now: Instant,
    ) -> Self {
        let config = socket_config(limits.hard_frame_bytes);
        let until_expiry = (token_expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        Self {
            timer: tokio::time::sleep_until(now + limits.heartbeat),
            state: ConnectionState::Building(
                WebSocketStream::from_partially_read(
                    TrackedStream::new(io, &leftover),
                    leftover,
                    Role::Server,
                    Some(config),
                )
                .boxed_local(),
            ),
            next_ping: now + limits.heartbeat,
            expires: now + until_expiry,
        }
    }
}

/// An open WebSocket and where its close handshake stands.
struct Link {
    socket: Socket,
    phase: Phase,
    input: Input,
    /// Written frames not flushed yet (or, after the client's close frame, the socket's answer).
    unflushed: bool,
    /// The last poll left the queue for replies in flight
    /// ([`Link::hold_back_for_replies`]): this one writes.
    held_back: bool,
    /// Closing: the connection ends at this instant at the latest.
    closing_deadline: Option<Instant>,
}

/// Which way a link still carries frames. A close requested while [`Phase::Open`] leaves the
/// phase as it is until the close frame is written (the queue goes first, unless the close
/// discards it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading frames and writing the queue.
    Open,
    /// Our close frame is written: reading on, only for the client's close frame.
    AwaitingClientClose,
    /// Nothing more can be read: writing on, up to the close frame if a close is requested.
    ReadEnded,
    /// Nothing more to read or write (the client's close frame arrived, or ours went out after
    /// reading ended): the connection ends once the socket is flushed.
    FlushingToEnd,
}

// A link's phase is one byte (it took the place of three of the link's four flags).
const _: () = assert!(std::mem::size_of::<Phase>() == 1);

/// What reading does while the phase reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Frames, through the WebSocket.
    Frames,
    /// Raw bytes from the TCP stream, dropped: the WebSocket can no longer read frames (a frame
    /// over the hard limit, a protocol error), and closing a socket with unread input would
    /// reset the connection, losing the close frame on its way to the client. Until the
    /// client's close frame went by ([`TrackedStream`]), the client ends the connection, or
    /// the close handshake times out.
    Dropped,
}

impl Phase {
    fn reads(self) -> bool {
        matches!(self, Phase::Open | Phase::AwaitingClientClose)
    }

    fn writes(self) -> bool {
        matches!(self, Phase::Open | Phase::ReadEnded)
    }

    /// Nothing more can be read.
    fn read_ended(self) -> Self {
        match self {
            Phase::Open => Phase::ReadEnded,
            Phase::AwaitingClientClose => Phase::FlushingToEnd,
            // Nothing is read in these phases.
            Phase::ReadEnded | Phase::FlushingToEnd => self,
        }
    }

    /// Our close frame is written.
    fn close_sent(self) -> Self {
        match self {
            Phase::Open => Phase::AwaitingClientClose,
            Phase::ReadEnded => Phase::FlushingToEnd,
            // Nothing is written in these phases.
            Phase::AwaitingClientClose | Phase::FlushingToEnd => self,
        }
    }
}

impl Link {
    fn new(socket: Socket) -> Self {
        Self {
            socket,
            phase: Phase::Open,
            input: Input::Frames,
            unflushed: false,
            held_back: false,
            closing_deadline: None,
        }
    }

    /// Reads and handles frames until the socket has none, or a frame's checks are running.
    fn read(&mut self, act: &mut Session, ctx: &mut ActixContext<Session>, cx: &mut Context<'_>) {
        for _ in 0..READ_BUDGET {
            if !self.phase.reads() || act.checking {
                return;
            }
            if self.input == Input::Dropped {
                return self.drop_input(cx);
            }
            match self.socket.poll_next_unpin(cx) {
                Poll::Pending => return,
                Poll::Ready(None) => self.phase = self.phase.read_ended(),
                Poll::Ready(Some(item)) => match act.on_message(item, ctx) {
                    Received::Frame => {}
                    Received::PeerClosed => {
                        self.phase = Phase::FlushingToEnd;
                        self.unflushed = true;
                    }
                    Received::Unreadable => self.input = Input::Dropped,
                    Received::End => self.phase = self.phase.read_ended(),
                },
            }
        }
        // More to read: let the actor's other work run first.
        cx.waker().wake_by_ref();
    }

    /// Reads and drops what the client sends ([`Input::Dropped`]) until nothing is left for
    /// now, or its close frame went by, or the connection ends.
    fn drop_input(&mut self, cx: &mut Context<'_>) {
        let mut scratch = [0u8; DISCARD_CHUNK];
        for _ in 0..READ_BUDGET {
            if self.socket.get_ref().client_closed() {
                // Nothing more comes: the connection ends once our close frame is out.
                self.phase = self.phase.read_ended();
                return;
            }
            let mut buffer = ReadBuf::new(&mut scratch);
            match Pin::new(self.socket.get_mut()).poll_read(cx, &mut buffer) {
                Poll::Pending => return,
                Poll::Ready(Ok(())) if !buffer.filled().is_empty() => {}
                // The end of the connection, or a broken one.
                Poll::Ready(_) => {
                    self.phase = self.phase.read_ended();
                    return;
                }
            }
        }
        // More to drop: let the actor's other work run first.
        cx.waker().wake_by_ref();
    }

    /// Whether this poll leaves the queued frames to the next one: while requests are in flight,
    /// every other poll, while the link is open and no close is requested. The task wakes itself, so
    /// it is polled again once the tasks already ready on its thread ran. A send's `message.new`
    /// for the sending session and its ack are both queued within that turn (the conversation
    /// actor fans out as it answers, and the ack is queued when the session's request future
    /// runs, which the connection is polled before), so they go out in one socket write, not
    /// two.
    fn hold_back_for_replies(
        &mut self,
        act: &Session,
        close_requested: bool,
        cx: &mut Context<'_>,
    ) -> bool {
        self.held_back = act.inflight > 0
            && !self.held_back
            && self.phase == Phase::Open
            && !close_requested
            && act.handle.shared.has_queued();
        if self.held_back {
            cx.waker().wake_by_ref();
        }
        self.held_back
    }

    /// Writes queued frames, then the close frame once a close is requested, and flushes.
    /// `Ok(true)` when a flush of written frames completed, `Err` when the connection is broken.
    fn write(&mut self, shared: &SessionShared, cx: &mut Context<'_>) -> Result<bool, WsError> {
        if self.phase.writes() {
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
                    Next::Frame(frame) => {
                        self.socket.start_send_unpin(message_of(frame))?;
                        self.unflushed = true;
                    }
                    Next::Close(frame) => {
                        self.socket.start_send_unpin(Message::Close(Some(frame)))?;
                        self.phase = self.phase.close_sent();
                        self.unflushed = true;
                        break;
                    }
                }
            }
        }
        if !self.unflushed || self.socket.poll_flush_unpin(cx)?.is_pending() {
            return Ok(false);
        }
        self.unflushed = false;
        if self.phase == Phase::AwaitingClientClose {
            let linger = Instant::now() + CLOSE_LINGER;
            self.closing_deadline = Some(self.closing_deadline.map_or(linger, |at| at.min(linger)));
        }
        Ok(true)
    }

    /// Nothing more will be read and everything owed to the client is written.
    fn finished(&self, close_requested: bool) -> bool {
        match self.phase {
            Phase::Open | Phase::AwaitingClientClose => false,
            Phase::ReadEnded => !self.unflushed && !close_requested,
            Phase::FlushingToEnd => !self.unflushed,
        }
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
        if link.closing_deadline.is_none() && (close_requested || link.phase != Phase::Open) {
            link.closing_deadline = Some(now + CLOSE_SEND_TIMEOUT);
        }
        let written = if link.hold_back_for_replies(act, close_requested, cx) {
            Ok(false)
        } else {
            link.write(&act.handle.shared, cx)
        };
        if let Ok(true) = written {
            act.node.metrics().socket_writes.inc();
        }
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
