//! [`RedisBus`]: cross-node routing over Redis pub/sub. A node receives only the channels it
//! subscribed to, so nothing is broadcast to every node.
//!
//! Channels (prefix omitted): `bus:conv:{conversation}` and `bus:user:{user}`; messages are JSON
//! `BusEnvelope`s. `publish` is a `PUBLISH` on the pool. One dedicated pub/sub connection, owned
//! by a background task, carries this node's subscriptions: `subscribe`/`unsubscribe` calls
//! queue changes, and the task sends each run of queued changes of one kind as one
//! `SUBSCRIBE`/`UNSUBSCRIBE` (at most [`MAX_CHANNELS_PER_COMMAND`] channels each), answering
//! callers once Redis confirmed. Messages go into the bounded incoming channel; when it is full
//! the task waits (and Redis buffers, up to its pub/sub output limit, after which it drops the
//! connection and the task reconnects).
//!
//! The task keeps the wanted set of channels. When the connection is lost (or a health `PING`
//! fails) it reconnects with exponential backoff (50 ms to 5 s) and subscribes the whole set
//! again, counting reconnects. Envelopes published while the connection was down are lost:
//! pub/sub is at-most-once; ordered consumers bridge gaps from the log/store. So after a
//! reconnect the task puts a [`BusPayload::Resubscribed`] envelope for each wanted
//! conversation on the incoming channel: its actor catches up from the shared cache. While it is down,
//! `subscribe` records the topic (it is subscribed on reconnect) but fails with `Unavailable`;
//! `unsubscribe` succeeds (there is nothing to receive).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, aio::PubSubSink, aio::PubSubStream};
use futures::StreamExt;
use ports::{
    Backoff, Bus, BusEnvelope, BusPayload, BusTopic, PortError, Service, RESUBSCRIBED_ORIGIN,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wire::{ConversationId, NodeId};

use super::client::{bad_url, decode, encode, redis_error, RedisClient};

/// Default capacity of the incoming channel.
pub const DEFAULT_INCOMING_CAPACITY: usize = 65_536;
/// Channels per `SUBSCRIBE`/`UNSUBSCRIBE` command at most.
pub const MAX_CHANNELS_PER_COMMAND: usize = 1000;
/// How often an idle pub/sub connection is checked with `PING`.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The start of a conversation's channel name (after the key prefix).
const CONVERSATION_CHANNELS: &str = "bus:conv:";

/// What the bus did, for tests and metrics.
#[derive(Debug, Default)]
pub struct RedisBusCounters {
    /// Successful `publish` calls.
    pub published: AtomicU64,
    /// Envelopes put on the incoming channel.
    pub delivered: AtomicU64,
    /// Messages of channels no longer wanted (in flight across an `UNSUBSCRIBE`), dropped.
    pub dropped_unsubscribed: AtomicU64,
    /// Messages that were not a valid envelope, dropped.
    pub undecodable: AtomicU64,
    /// Times the pub/sub connection was re-established after a loss.
    pub reconnects: AtomicU64,
    /// Whether the pub/sub connection is up with every wanted channel subscribed.
    pub connected: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Subscribe,
    Unsubscribe,
}

struct Request {
    change: Change,
    channels: Vec<String>,
    reply: oneshot::Sender<Result<(), PortError>>,
}

pub struct RedisBus {
    client: RedisClient,
    requests: mpsc::Sender<Request>,
    incoming: Mutex<Option<mpsc::Receiver<BusEnvelope>>>,
    counters: Arc<RedisBusCounters>,
    subscriber: JoinHandle<()>,
}

impl RedisBus {
    /// Starts the subscriber task (call within a Tokio runtime); it connects in the background.
    pub fn new(client: RedisClient, incoming_capacity: usize) -> Result<Self, PortError> {
        let redis_client = redis::Client::open(client.config().url.as_str())
            .map_err(|error| bad_url(client.config(), error))?;
        let (incoming_sender, incoming) = mpsc::channel(incoming_capacity.max(1));
        let (requests, request_receiver) = mpsc::channel(1024);
        let counters = Arc::new(RedisBusCounters::default());
        let subscriber = Subscriber {
            redis_client,
            command_timeout: client.config().command_timeout,
            connect_timeout: client.config().connect_timeout,
            requests: request_receiver,
            pending: None,
            incoming: incoming_sender,
            counters: Arc::clone(&counters),
            wanted: BTreeSet::new(),
            conversation_channels: client.key(CONVERSATION_CHANNELS),
        };
        Ok(Self {
            client,
            requests,
            incoming: Mutex::new(Some(incoming)),
            counters,
            subscriber: tokio::spawn(subscriber.run()),
        })
    }

    /// Whether this node currently receives what it subscribed to (readiness).
    pub fn is_connected(&self) -> bool {
        self.counters.connected.load(Ordering::Acquire)
    }

    pub fn counters(&self) -> &RedisBusCounters {
        &self.counters
    }

    fn channel(&self, topic: &BusTopic) -> String {
        match topic {
            BusTopic::Conversation(conversation_id) => self
                .client
                .key(&format!("{CONVERSATION_CHANNELS}{conversation_id}")),
            BusTopic::User(user_id) => self.client.key(&format!("bus:user:{user_id}")),
        }
    }

    async fn change(&self, change: Change, topics: Vec<BusTopic>) -> Result<(), PortError> {
        if topics.is_empty() {
            return Ok(());
        }
        let channels = topics.iter().map(|topic| self.channel(topic)).collect();
        let (reply, answer) = oneshot::channel();
        let request = Request {
            change,
            channels,
            reply,
        };
        let stopped = || PortError::internal("bus subscriber task stopped");
        self.requests.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, envelope: BusEnvelope) -> Result<(), PortError> {
        let channel = self.channel(&envelope.topic);
        let payload = encode("bus envelope", &envelope)?;
        let _receivers: i64 = self
            .client
            .query(redis::cmd("PUBLISH").arg(channel).arg(payload).to_owned())
            .await?;
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe(&self, topics: Vec<BusTopic>) -> Result<(), PortError> {
        self.change(Change::Subscribe, topics).await
    }

    async fn unsubscribe(&self, topics: Vec<BusTopic>) -> Result<(), PortError> {
        self.change(Change::Unsubscribe, topics).await
    }

    fn take_incoming(&self) -> Option<mpsc::Receiver<BusEnvelope>> {
        self.incoming
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// Why a connected session of the subscriber ended.
enum Ended {
    /// The bus was dropped.
    Stopped,
    /// The connection broke; reconnect.
    Lost(String),
}

/// The task that owns the pub/sub connection.
struct Subscriber {
    redis_client: redis::Client,
    command_timeout: Duration,
    connect_timeout: Duration,
    requests: mpsc::Receiver<Request>,
    /// A request taken while batching that belongs to the next batch.
    pending: Option<Request>,
    incoming: mpsc::Sender<BusEnvelope>,
    counters: Arc<RedisBusCounters>,
    /// Every channel this node wants, subscribed again after a reconnect.
    wanted: BTreeSet<String>,
    /// The start of every conversation channel's name, key prefix included.
    conversation_channels: String,
}

impl Subscriber {
    async fn run(mut self) {
        let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        let mut connected_before = false;
        loop {
            match self.connect().await {
                Ok((mut sink, mut stream)) => {
                    if connected_before {
                        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(channels = self.wanted.len(), "bus resubscribed");
                        self.announce_resubscribed().await;
                    }
                    connected_before = true;
                    backoff.reset();
                    self.counters.connected.store(true, Ordering::Release);
                    let ended = self.serve(&mut sink, &mut stream).await;
                    self.counters.connected.store(false, Ordering::Release);
                    match ended {
                        Ended::Stopped => return,
                        Ended::Lost(reason) => {
                            tracing::warn!(error = %reason, "bus pub/sub connection lost")
                        }
                    }
                }
                Err(reason) => tracing::warn!(error = %reason, "bus pub/sub connect failed"),
            }
            if !self.wait_disconnected(backoff.next_delay()).await {
                return;
            }
        }
    }

    /// Tells this node's consumers of every wanted conversation that envelopes may have been
    /// lost while the connection was down.
    async fn announce_resubscribed(&self) {
        let conversations: Vec<ConversationId> = self
            .wanted
            .iter()
            .filter_map(|channel| channel.strip_prefix(&self.conversation_channels))
            .map(ConversationId::new)
            .collect();
        for conversation_id in conversations {
            let notice = BusEnvelope {
                topic: BusTopic::Conversation(conversation_id),
                origin: NodeId::new(RESUBSCRIBED_ORIGIN),
                payload: BusPayload::Resubscribed,
            };
            if self.incoming.send(notice).await.is_err() {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<(PubSubSink, PubSubStream), String> {
        let pubsub =
            tokio::time::timeout(self.connect_timeout, self.redis_client.get_async_pubsub())
                .await
                .map_err(|_| format!("no connection within {:?}", self.connect_timeout))?
                .map_err(|error| error.to_string())?;
        let (mut sink, stream) = pubsub.split();
        let wanted: Vec<String> = self.wanted.iter().cloned().collect();
        self.send(&mut sink, Change::Subscribe, &wanted)
            .await
            .map_err(|error| error.to_string())?;
        Ok((sink, stream))
    }

    async fn send(
        &self,
        sink: &mut PubSubSink,
        change: Change,
        channels: &[String],
    ) -> Result<(), PortError> {
        for chunk in channels.chunks(MAX_CHANNELS_PER_COMMAND) {
            let command = async {
                match change {
                    Change::Subscribe => sink.subscribe(chunk).await,
                    Change::Unsubscribe => sink.unsubscribe(chunk).await,
                }
            };
            match tokio::time::timeout(self.command_timeout, command).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(redis_error(error)),
                Err(_) => {
                    return Err(PortError::unavailable(
                        Service::Redis,
                        format!(
                            "no confirmation of {change:?} within {:?}",
                            self.command_timeout
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// The next request and every queued one of the same kind right behind it.
    async fn next_batch(&mut self) -> Option<(Change, Vec<String>, Vec<Request>)> {
        let first = match self.pending.take() {
            Some(request) => request,
            None => self.requests.recv().await?,
        };
        let change = first.change;
        let mut channels = first.channels.clone();
        let mut batch = vec![first];
        while let Ok(next) = self.requests.try_recv() {
            if next.change != change {
                self.pending = Some(next);
                break;
            }
            channels.extend(next.channels.iter().cloned());
            batch.push(next);
        }
        Some((change, channels, batch))
    }

    async fn serve(&mut self, sink: &mut PubSubSink, stream: &mut PubSubStream) -> Ended {
        let mut health = tokio::time::interval(HEALTH_INTERVAL);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await;
        loop {
            tokio::select! {
                batch = self.next_batch() => {
                    let Some((change, channels, requests)) = batch else {
                        return Ended::Stopped;
                    };
                    match change {
                        Change::Subscribe => self.wanted.extend(channels.iter().cloned()),
                        Change::Unsubscribe => {
                            for channel in &channels {
                                self.wanted.remove(channel);
                            }
                        }
                    }
                    let result = self.send(sink, change, &channels).await;
                    let answer = match (&result, change) {
                        (Err(_), Change::Unsubscribe) => Ok(()),
                        _ => result.clone(),
                    };
                    for request in requests {
                        let _ = request.reply.send(answer.clone());
                    }
                    if let Err(error) = result {
                        return Ended::Lost(error.to_string());
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else {
                        return Ended::Lost("connection closed".to_owned());
                    };
                    self.forward(message).await;
                }
                _ = health.tick() => {
                    // A subscribed RESP2 connection answers PING with ["pong", ""], not "PONG":
                    // any reply proves the connection alive.
                    let ping = tokio::time::timeout(self.command_timeout, sink.ping::<redis::Value>()).await;
                    match ping {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => return Ended::Lost(error.to_string()),
                        Err(_) => return Ended::Lost("health ping timed out".to_owned()),
                    }
                }
            }
        }
    }

    async fn forward(&self, message: redis::Msg) {
        if !self.wanted.contains(message.get_channel_name()) {
            self.counters
                .dropped_unsubscribed
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let envelope: BusEnvelope = match decode("bus envelope", message.get_payload_bytes()) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.counters.undecodable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(channel = message.get_channel_name(), error = %error, "bus message dropped");
                return;
            }
        };
        // A dropped receiver means nobody consumes: the envelope has nowhere to go.
        if self.incoming.send(envelope).await.is_ok() {
            self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sleeps `delay` while answering requests as a disconnected bus. False when the bus was
    /// dropped.
    async fn wait_disconnected(&mut self, delay: Duration) -> bool {
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = &mut wake => return true,
                batch = self.next_batch() => {
                    let Some((change, channels, requests)) = batch else {
                        return false;
                    };
                    let answer = match change {
                        Change::Subscribe => {
                            self.wanted.extend(channels);
                            Err(PortError::unavailable(Service::Redis, "bus not connected (subscribed on reconnect)"))
                        }
                        Change::Unsubscribe => {
                            for channel in &channels {
                                self.wanted.remove(channel);
                            }
                            Ok(())
                        }
                    };
                    for request in requests {
                        let _ = request.reply.send(answer.clone());
                    }
                }
            }
        }
    }
}
