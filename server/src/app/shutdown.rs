//! The graceful stop: [`drain`] holds the whole order, from the stop signal to the exit.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actors::Node;
use ports::EventLog;

use super::background::Background;
use super::http_server::ServingHttp;
use super::AppState;

/// How many batches the sessions are sent away in, spread over `server.drain_window_ms`.
const GOAWAY_BATCHES: usize = 10;

/// The part of the stop deadline kept for flushing the log after the conversations drained.
const FLUSH_SHARE_OF_DEADLINE: Duration = Duration::from_millis(500);

/// Stops the node once the stop signal arrived, in the order docs/operations.md ("Graceful
/// stop") documents, and all within `server.shutdown_timeout_ms` of the signal: a watchdog
/// thread exits the process at that deadline if a step hangs. Returns the HTTP server's result.
pub(super) async fn drain(
    state: &AppState,
    http: ServingHttp,
    background: Background,
) -> anyhow::Result<()> {
    let drain_window = Duration::from_millis(state.settings.server.drain_window_ms);
    let shutdown_timeout = Duration::from_millis(state.settings.server.shutdown_timeout_ms);
    // Everything below, and the exit, happens before this deadline.
    let deadline = Instant::now() + shutdown_timeout;
    exit_at(deadline);
    tracing::info!(
        drain_window_ms = drain_window.as_millis() as u64,
        shutdown_timeout_ms = shutdown_timeout.as_millis() as u64,
        "stop signal received: not ready, draining sessions"
    );
    // Readiness flips first: load balancers stop routing here, upgrades and REST requests are
    // refused from now on.
    state.ready.store(false, Ordering::Release);
    // Every session is told to reconnect elsewhere, in batches over the drain window.
    let sessions = send_goaway_in_batches(&state.node, drain_window).await;
    // The sessions finish their close handshakes; leave time for the steps after.
    let sessions_by = deadline
        .checked_sub(FLUSH_SHARE_OF_DEADLINE * 2)
        .unwrap_or(deadline);
    wait_for_sessions_to_close(&state.node, sessions, drain_window, sessions_by).await;
    // The sessions are closed; stop accepting and wait for the other connections.
    let served = http.stop(deadline).await;
    // No session is left to queue work: the conversations finish what is in flight.
    finish_conversation_work(&state.node, deadline).await;
    // Flush what the log still buffers (the Kafka producer).
    flush_log(state.log.as_ref(), deadline).await;
    // The ingest finishes its batch, the stored-ack relay leaves its group.
    background.stop(deadline).await;
    tracing::info!("stopped");
    served
}

/// Tells every session to reconnect elsewhere (`goaway` with a jittered delay, then close
/// 1001), in [`GOAWAY_BATCHES`] batches spread over `window` so the clients do not all come
/// back at once. Returns how many sessions there were.
async fn send_goaway_in_batches(node: &Node, window: Duration) -> usize {
    let sessions = node.registry().all_sessions();
    let batch_size = sessions.len().div_ceil(GOAWAY_BATCHES).max(1);
    let pause = window / GOAWAY_BATCHES as u32;
    for (index, batch) in sessions.chunks(batch_size).enumerate() {
        if index > 0 {
            tokio::time::sleep(pause).await;
        }
        for session in batch {
            send_away(session, window);
        }
    }
    sessions.len()
}

/// Waits (until `until` at the latest) for the sessions to end. Upgraded connections are not
/// the HTTP server's, so nothing else waits for their close frames to go out; a session ends
/// once its client answered the close frame, or after its close linger. `total` is how many
/// sessions were sent away, for the log line.
async fn wait_for_sessions_to_close(node: &Node, total: usize, window: Duration, until: Instant) {
    loop {
        let left = node.registry().all_sessions();
        if left.is_empty() {
            tracing::info!(sessions = total, "sessions drained");
            return;
        }
        if Instant::now() >= until {
            tracing::warn!(
                sessions = total,
                still_open = left.len(),
                "sessions drained, some still closing at the deadline"
            );
            return;
        }
        // A session that was still being set up when the batches started.
        for session in left.iter().filter(|session| !session.close_requested()) {
            send_away(session, window);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `goaway` with a jittered `reconnect_after_ms`, then close 1001.
fn send_away(session: &actors::SessionHandle, window: Duration) {
    use rand::Rng as _;
    let reconnect_after_ms = rand::rng().random_range(250..=1000 + window.as_millis() as u64);
    let goaway = wire::events::ServerEvent::Goaway { reconnect_after_ms };
    session.deliver(wire::frames::encode_event(&goaway).into());
    session.close(wire::CloseCode::GoingAway, "server going away");
}

/// Lets the conversations finish what is in flight (an append whose seq is allocated must land
/// or leave its tombstone, or the seq would be a hole), keeping the flush's share of the
/// deadline.
async fn finish_conversation_work(node: &Node, deadline: Instant) {
    let quiesce_by = deadline
        .checked_sub(FLUSH_SHARE_OF_DEADLINE)
        .unwrap_or(deadline);
    let quiesced = node.quiesce(quiesce_by).await;
    if quiesced.is_idle() {
        tracing::info!("conversations drained");
    } else {
        tracing::warn!(
            busy_conversations = quiesced.busy_conversations,
            background_appends = quiesced.background_appends,
            "stopping with conversation work still in flight"
        );
    }
}

/// Flushes what the log still buffers (the Kafka producer; the embedded log has nothing
/// buffered), until `deadline`.
async fn flush_log(log: &dyn EventLog, deadline: Instant) {
    let remaining = deadline.saturating_duration_since(Instant::now());
    match log.flush(remaining).await {
        Ok(()) => tracing::info!("log flushed"),
        Err(error) => tracing::warn!(error = %error, "log flush failed"),
    }
}

/// Ends the process at `deadline` if the graceful stop has not finished by then, so the node
/// always exits within `server.shutdown_timeout_ms` of the signal (before an orchestrator's
/// grace period runs out and it is killed without its producer flushed).
fn exit_at(deadline: Instant) {
    let spawned = std::thread::Builder::new()
        .name("parley-stop-deadline".to_owned())
        .spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            tracing::error!(
                "graceful stop did not finish within server.shutdown_timeout_ms: exiting"
            );
            std::process::exit(1);
        });
    if let Err(error) = spawned {
        tracing::warn!(error = %error, "cannot start the stop deadline thread");
    }
}
