//! [`SessionHandle`]: how the rest of the node reaches a session, through its bounded outbound
//! queue and its close request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytestring::ByteString;
use futures::task::AtomicWaker;
use prometheus::{IntCounter, IntCounterVec};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use wire::{CloseCode, SessionId, UserId};

use crate::metrics::Metrics;

/// A frame queued for a session's socket. Pings from the client are answered by the socket
/// itself.
#[derive(Debug)]
pub enum Outbound {
    Text(ByteString),
    Ping,
}

/// What a close does with the frames still queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedFrames {
    /// Written before the close frame.
    SendBeforeClose,
    /// Dropped: the close frame goes out at once (4009: the client is not reading; 1002: the
    /// client broke the protocol).
    Discard,
}

/// A request to close a session: its close frame, and what happens to the frames queued before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: CloseCode,
    pub reason: String,
    pub queued: QueuedFrames,
}

impl CloseRequest {
    pub fn new(code: CloseCode, reason: &str, queued: QueuedFrames) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            queued,
        }
    }
}

/// The outgoing side of a session, shared by every handle and the session's connection.
///
/// A plain queue behind a mutex rather than a channel: a channel preallocates a block of 32
/// slots (≈ 1.5 KiB with its header) per session, which is most of what an idle WebSocket
/// would hold; the queue allocates only while frames wait and gives the memory back once it
/// drained (docs/benchmarks.md, "RSS per idle connection").
pub(super) struct SessionShared {
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
    pub(super) wake: AtomicWaker,
    /// The arbiter (and its thread) the session was created on, where its actor runs.
    home: Option<SessionHome>,
}

/// Where a session runs: its arbiter, and that arbiter's thread.
#[derive(Clone)]
pub struct SessionHome {
    pub arbiter: actix::ArbiterHandle,
    pub thread: std::thread::ThreadId,
}

#[derive(Default)]
struct Outgoing {
    queue: VecDeque<Outbound>,
    close: Option<CloseRequest>,
    /// The connection is gone: nothing queued would ever be written.
    connection_gone: bool,
}

/// What a connection writes next.
pub(super) enum Next {
    Frame(Outbound),
    Close(CloseFrame),
    Idle,
}

impl SessionShared {
    pub(super) fn new(user_id: UserId, capacity: usize, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            session_id: SessionId::new(uuid::Uuid::now_v7().to_string()),
            user_id,
            frames_out: metrics.frames_out.clone(),
            outbound_overflows: metrics.outbound_overflows.clone(),
            closes: metrics.closes.clone(),
            capacity: capacity.max(1),
            outgoing: Mutex::new(Outgoing::default()),
            wake: AtomicWaker::new(),
            home: actix::Arbiter::try_current().map(|arbiter| SessionHome {
                arbiter,
                thread: std::thread::current().id(),
            }),
        })
    }

    fn outgoing(&self) -> MutexGuard<'_, Outgoing> {
        self.outgoing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close_requested(&self) -> bool {
        self.outgoing().close.is_some()
    }

    /// Frames are queued.
    pub(super) fn has_queued(&self) -> bool {
        !self.outgoing().queue.is_empty()
    }

    /// The oldest queued frame; once a close is requested and the queue is written (or, for a
    /// close that discards the queue, at once), the close frame. The queue's memory is released
    /// once it is empty.
    pub(super) fn next(&self) -> Next {
        let mut outgoing = self.outgoing();
        let close_now = outgoing.close.as_ref().is_some_and(|close| {
            close.queued == QueuedFrames::Discard || outgoing.queue.is_empty()
        });
        if close_now {
            outgoing.queue = VecDeque::new();
            let close = outgoing.close.as_ref().expect("checked above");
            return Next::Close(CloseFrame {
                code: WsCloseCode::from(close.code.code()),
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
    pub(super) fn connection_gone(&self) {
        let mut outgoing = self.outgoing();
        outgoing.connection_gone = true;
        outgoing.queue = VecDeque::new();
    }
}

/// How the rest of the node reaches a session: a bounded outbound queue and a close signal.
/// Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    pub(super) shared: Arc<SessionShared>,
}

/// What a session refuses a frame for.
pub(super) enum Refused {
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

    /// The arbiter the session runs on (`None` for a session made off any arbiter).
    pub fn home(&self) -> Option<&SessionHome> {
        self.shared.home.as_ref()
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
                if self.request_close(CloseRequest::new(
                    CloseCode::TooSlow,
                    "outbound queue overflow: client too slow",
                    QueuedFrames::Discard,
                )) {
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
                .with_label_values(&[&request.code.code().to_string()])
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

    /// Asks the session to close once the frames queued so far are written.
    pub fn close(&self, code: CloseCode, reason: &str) {
        self.request_close(CloseRequest::new(
            code,
            reason,
            QueuedFrames::SendBeforeClose,
        ));
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

    /// Queues a frame for the socket (a ping from the heartbeat, or a text frame).
    pub(super) fn queue(&self, outbound: Outbound) -> Result<(), Refused> {
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
        self.shared.outgoing().close.clone()
    }
}
