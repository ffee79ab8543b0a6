//! Every relevant port contract suite against the Redis adapters over a real, private
//! `redis-server` (see `common/redis.rs`), plus what only a shared Redis can show: two adapters
//! standing for two nodes.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::redis::{free_port, RedisServer};
use persistence::redis::{
    RedisBus, RedisClient, RedisConfig, RedisDirectory, RedisLease, RedisMessageCache,
    RedisPresence, RedisRateLimiter, RedisSequencer,
};
use persistence::EmbeddedStore;
use ports::contract::sequencer::intents;
use ports::contract::{self, Fixture};
use ports::{
    Bus, BusEnvelope, BusPayload, BusTopic, DedupKey, Directory, MessageCache, PortError, Presence,
    RateLimiter, Reservation, Sequencer,
};
use tempfile::TempDir;
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId, MessageId, NodeId, Seq, SessionId, UserId};

fn client(server: &RedisServer) -> RedisClient {
    RedisClient::new(RedisConfig::new(server.url())).expect("redis client")
}

/// A fresh embedded store in its own temporary directory.
fn open_store() -> (Arc<EmbeddedStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(&dir.path().join("store.redb")).expect("open store");
    (Arc::new(store), dir)
}

fn unique(prefix: &str) -> String {
    contract::fixtures::unique(prefix)
}

/// Polls `condition` until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sequencer_keeps_the_sequencer_contract() {
    let server = RedisServer::start();
    contract::sequencer_suite(|| async {
        let (store, dir) = open_store();
        let port: Arc<dyn Sequencer> = Arc::new(RedisSequencer::new(client(&server), store));
        Fixture::new(port, dir)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_another_node_gets_the_original_ack() {
    let server = RedisServer::start();
    let (store, _dir) = open_store();
    let node_a = RedisSequencer::new(client(&server), store.clone());
    let node_b = RedisSequencer::new(client(&server), store);
    let conversation_id = ConversationId::new(unique("two-nodes"));
    let key = DedupKey {
        sender_id: UserId::new(unique("sender")),
        client_msg_id: ClientMsgId::new(unique("client")),
    };
    let reserved = node_a
        .reserve(&conversation_id, &intents(std::slice::from_ref(&key)))
        .await
        .expect("reserve on a");
    assert_eq!(reserved, vec![Reservation::Fresh(Seq(1))]);
    let ack = SendAck {
        message_id: MessageId::new(unique("message")),
        seq: Seq(1),
        created_at: Utc::now(),
    };
    node_a
        .confirm(&conversation_id, &[(key.clone(), ack.clone())])
        .await
        .expect("confirm on a");

    let other_key = DedupKey {
        sender_id: key.sender_id.clone(),
        client_msg_id: ClientMsgId::new(unique("client")),
    };
    let retried = node_b
        .reserve(&conversation_id, &intents(&[key, other_key]))
        .await
        .expect("reserve on b");
    assert_eq!(
        retried,
        vec![Reservation::Duplicate(ack), Reservation::Fresh(Seq(2))],
        "node b answers the retry with node a's ack and continues the same counter"
    );
    assert_eq!(
        node_a.last_seq(&conversation_id).await.expect("last seq"),
        Seq(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_nodes_allocate_dense_seqs() {
    let server = RedisServer::start();
    let (store, _dir) = open_store();
    let conversation_id = ConversationId::new(unique("race"));
    let sender = UserId::new(unique("sender"));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let node = RedisSequencer::new(client(&server), store.clone());
        let conversation_id = conversation_id.clone();
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..25 {
                let keys: Vec<DedupKey> = (0..2)
                    .map(|_| DedupKey {
                        sender_id: sender.clone(),
                        client_msg_id: ClientMsgId::new(unique("client")),
                    })
                    .collect();
                for reservation in node
                    .reserve(&conversation_id, &intents(&keys))
                    .await
                    .expect("reserve")
                {
                    match reservation {
                        Reservation::Fresh(seq) => seqs.push(seq.0),
                        other => panic!("expected a fresh seq, got {other:?}"),
                    }
                }
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>(), "dense, no duplicate");
}

/// The fixtures' ports (every private server of the tests) are free and below the kernel's
/// ephemeral range, where an outgoing connection of a parallel test could take them.
#[test]
fn fixture_ports_are_free_and_below_the_ephemeral_range() {
    use common::free_ports::{free_block, is_free, EPHEMERAL_START, LOWEST};
    for _ in 0..50 {
        let base = free_block(4, 10_000);
        assert!(base >= LOWEST, "{base}");
        assert!(base + 10_000 + 4 <= EPHEMERAL_START, "{base}");
        assert!((base..base + 4)
            .chain(base + 10_000..base + 10_004)
            .all(is_free));
    }
    let port = free_port();
    assert!((LOWEST..EPHEMERAL_START).contains(&port), "{port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_quickly() {
    let config = RedisConfig::new(format!("redis://127.0.0.1:{}/", free_port()))
        .with_command_timeout(Duration::from_millis(500));
    let client = RedisClient::new(config).expect("client");
    let (store, _dir) = open_store();
    let sequencer = RedisSequencer::new(client.clone(), store);
    let started = Instant::now();
    let result = sequencer
        .last_seq(&ConversationId::new(unique("nowhere")))
        .await;
    assert!(
        matches!(result, Err(PortError::Unavailable { .. })),
        "got {result:?}"
    );
    assert!(!client.is_ready().await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// A runtime of a thread's own, as an actix worker has.
fn thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `CLIENT ID` of the connection `client` uses on a thread of its own (with its own runtime,
/// as an actix worker has), asked twice, the second time through a clone.
fn connection_ids_on_a_new_thread(client: &RedisClient) -> (i64, i64) {
    let client = client.clone();
    std::thread::spawn(move || {
        thread_runtime().block_on(async {
            let first = client_id(&client).await.expect("CLIENT ID");
            let again = client_id(&client.clone()).await.expect("CLIENT ID");
            (first, again)
        })
    })
    .join()
    .expect("thread")
}

async fn client_id(client: &RedisClient) -> Result<i64, PortError> {
    let mut id = deadpool_redis::redis::cmd("CLIENT");
    id.arg("ID");
    client.query(id).await
}

/// Issue #14: a thread's commands go on a connection of its own (a connection's driver runs on
/// the runtime that made it: one shared connection made every command cross threads twice);
/// a client's clones share it; a connection killed under a thread fails one command, then
/// the thread gets a new one.
#[tokio::test]
async fn each_thread_keeps_its_own_connection_and_gets_a_new_one_after_a_failure() {
    let server = RedisServer::start();
    let client = client(&server);
    let (first, again) = connection_ids_on_a_new_thread(&client);
    assert_eq!(first, again, "one connection per thread, shared by clones");
    let (other, _) = connection_ids_on_a_new_thread(&client);
    assert_ne!(first, other, "another thread, another connection");

    let mine = client_id(&client).await.expect("CLIENT ID");
    assert_eq!(client_id(&client).await.expect("CLIENT ID"), mine);
    kill_connection(&client, mine);
    let renewed = id_after_a_kill(&client).await;
    assert_ne!(renewed, mine, "a new connection after the kill");
}

/// Kills the connection `id` (from a thread of its own, so through another connection).
fn kill_connection(client: &RedisClient, id: i64) {
    let mut kill = deadpool_redis::redis::cmd("CLIENT");
    kill.arg("KILL").arg("ID").arg(id);
    let killer = client.clone();
    let killed = std::thread::spawn(move || thread_runtime().block_on(killer.query::<i64>(kill)))
        .join()
        .expect("thread")
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);
}

/// The `CLIENT ID` this thread gets once its killed connection failed (the first command after
/// a kill fails; the next makes a new connection).
async fn id_after_a_kill(client: &RedisClient) -> i64 {
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(client_id(client).await.ok());
    }
    answers
        .iter()
        .flatten()
        .last()
        .copied()
        .unwrap_or_else(|| panic!("no answer after the kill: {answers:?}"))
}

/// A thread that keeps running (as an actix worker does) and tells, when asked, the
/// `CLIENT ID` of the connection it uses.
struct WorkerThread {
    asks: std::sync::mpsc::Sender<std::sync::mpsc::Sender<i64>>,
}

impl WorkerThread {
    fn start(client: &RedisClient) -> Self {
        let (asks, requests) = std::sync::mpsc::channel::<std::sync::mpsc::Sender<i64>>();
        let client = client.clone();
        std::thread::spawn(move || {
            let runtime = thread_runtime();
            for reply in requests {
                let id = runtime.block_on(client_id(&client)).expect("CLIENT ID");
                let _ = reply.send(id);
            }
        });
        Self { asks }
    }

    fn connection_id(&self) -> i64 {
        let (reply, answer) = std::sync::mpsc::channel();
        self.asks.send(reply).expect("worker running");
        answer.recv().expect("worker answers")
    }
}

/// A connection that fails on one thread makes every thread of the client connect again
/// before its next command (a generation count), as the one shared connection did: after a
/// Redis restart, the other threads' connections are dead too.
#[tokio::test]
async fn a_failed_connection_makes_every_thread_connect_again() {
    let server = RedisServer::start();
    let client = client(&server);
    let worker = WorkerThread::start(&client);
    let before = worker.connection_id();
    assert_eq!(worker.connection_id(), before, "kept while nothing fails");
    let mine = client_id(&client).await.expect("CLIENT ID");
    assert_ne!(mine, before);
    kill_connection(&client, mine);
    id_after_a_kill(&client).await;
    assert_ne!(
        worker.connection_id(),
        before,
        "the worker's healthy connection is replaced too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_message_cache_keeps_the_message_cache_contract() {
    let server = RedisServer::start();
    contract::message_cache_suite(|capacity| {
        let port: Arc<dyn MessageCache> =
            Arc::new(RedisMessageCache::with_capacity(client(&server), capacity));
        async move { Fixture::unguarded(port) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rate_limiter_keeps_the_rate_limiter_contract() {
    let server = RedisServer::start();
    contract::rate_limiter_suite(|per_second, burst| {
        let port: Arc<dyn RateLimiter> =
            Arc::new(RedisRateLimiter::new(client(&server), per_second, burst));
        async move { Fixture::unguarded(port) }
    })
    .await;
}

/// A user's bucket is shared by every node (docs/protocol.md §12.2): a burst spent through one
/// node leaves the user limited on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_rate_limit_bucket_is_shared_by_every_node() {
    let server = RedisServer::start();
    let node_a = RedisRateLimiter::new(client(&server), 0.01, 3);
    let node_b = RedisRateLimiter::new(client(&server), 0.01, 3);
    let user = UserId::new(unique("user"));
    for limiter in [&node_a, &node_b, &node_a] {
        assert_eq!(
            limiter.check(&user, 1).await.expect("check"),
            ports::RateDecision::Allowed
        );
    }
    for limiter in [&node_b, &node_a] {
        assert!(matches!(
            limiter.check(&user, 1).await.expect("check"),
            ports::RateDecision::Limited { .. }
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_presence_keeps_the_presence_contract() {
    let server = RedisServer::start();
    contract::presence_suite(|| {
        let port: Arc<dyn Presence> = Arc::new(RedisPresence::new(client(&server)));
        async move { Fixture::unguarded(port) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_refreshing_has_its_users_expire() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(1);
    let node_a = RedisPresence::with_ttl(client(&server), ttl);
    let node_b = RedisPresence::with_ttl(client(&server), ttl);
    let stranded = UserId::new(unique("stranded"));
    let survivor = UserId::new(unique("survivor"));
    let (a, b) = (NodeId::new(unique("node-a")), NodeId::new(unique("node-b")));
    assert!(node_a
        .connect(&stranded, &SessionId::new(unique("s")), &a)
        .await
        .expect("connect"));
    assert!(node_a
        .connect(&survivor, &SessionId::new(unique("s")), &a)
        .await
        .expect("connect"));
    assert!(!node_b
        .connect(&survivor, &SessionId::new(unique("s")), &b)
        .await
        .expect("connect"));

    // Longer than the TTL while node a refreshes: everyone stays online.
    tokio::time::sleep(ttl * 2).await;
    let seen = node_b
        .get(&[stranded.clone(), survivor.clone()])
        .await
        .expect("get");
    assert!(
        seen[&stranded].online && seen[&survivor].online,
        "refreshed: {seen:?}"
    );
    assert_eq!(
        node_b.expired_users().await.expect("expired"),
        Vec::<UserId>::new()
    );

    drop(node_a); // node a dies: nobody refreshes its sessions any more
    eventually(ttl * 10, "the stranded user expires", || async {
        let seen = node_b
            .get(std::slice::from_ref(&stranded))
            .await
            .expect("get");
        !seen[&stranded].online
    })
    .await;
    let seen = node_b
        .get(&[stranded.clone(), survivor.clone()])
        .await
        .expect("get");
    assert!(
        seen[&survivor].online,
        "the survivor has a session on node b"
    );
    let expired = node_b.expired_users().await.expect("expired");
    assert_eq!(expired, vec![stranded.clone()], "reported once");
    assert_eq!(
        node_b.expired_users().await.expect("expired"),
        Vec::<UserId>::new(),
        "only once"
    );
    let seen = node_b
        .get(std::slice::from_ref(&stranded))
        .await
        .expect("get");
    assert!(seen[&stranded].last_seen.is_some(), "last_seen recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_directory_keeps_the_directory_contract() {
    let server = RedisServer::start();
    contract::directory_suite(|| {
        let port: Arc<dyn Directory> = Arc::new(RedisDirectory::new(client(&server)));
        async move { Fixture::unguarded(port) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_lists_by_recorded_activity_and_follows_membership() {
    use contract::fixtures::{at, conversation_record};
    use wire::ConversationKind;
    let server = RedisServer::start();
    let directory = RedisDirectory::new(client(&server));
    let user = UserId::new(unique("user"));
    let other = UserId::new(unique("other"));
    let older = ConversationId::new(unique("older"));
    let newer = ConversationId::new(unique("newer"));
    let older_record =
        conversation_record(&older, ConversationKind::Group, &[&user, &other], 1, at(0));
    directory
        .create(older_record.clone())
        .await
        .expect("create");
    let newer_record = conversation_record(&newer, ConversationKind::Group, &[&user], 1, at(10));
    directory.create(newer_record).await.expect("create");
    let ids = |page: Vec<ports::StoredConversation>| -> Vec<(ConversationId, Seq)> {
        page.into_iter()
            .map(|stored| (stored.record.conversation.conversation_id, stored.last_seq))
            .collect()
    };
    assert_eq!(
        ids(directory
            .list_for_user(&user, None, 10)
            .await
            .expect("list")),
        vec![(newer.clone(), Seq::ZERO), (older.clone(), Seq::ZERO)]
    );
    directory
        .record_activity(&older, Seq(7), at(20))
        .await
        .expect("activity");
    directory
        .record_activity(&older, Seq(5), at(30))
        .await
        .expect("an older seq changes nothing");
    assert_eq!(
        ids(directory
            .list_for_user(&user, None, 10)
            .await
            .expect("list")),
        vec![(older.clone(), Seq(7)), (newer.clone(), Seq::ZERO)],
        "activity moves a conversation up"
    );
    let mut without_user = older_record.clone();
    without_user.version = 2;
    without_user
        .participants
        .retain(|participant| participant.user_id != user);
    directory.update(without_user).await.expect("update");
    assert_eq!(
        ids(directory
            .list_for_user(&user, None, 10)
            .await
            .expect("list")),
        vec![(newer, Seq::ZERO)],
        "a removed participant no longer lists it"
    );
    assert_eq!(
        ids(directory
            .list_for_user(&other, None, 10)
            .await
            .expect("list")),
        vec![(older, Seq(7))]
    );
}

fn envelope(topic: &BusTopic, marker: &str) -> BusEnvelope {
    BusEnvelope {
        topic: topic.clone(),
        origin: NodeId::new("node-a"),
        payload: BusPayload::MembershipChanged {
            conversation_id: ConversationId::new(marker),
            added: Vec::new(),
            removed: Vec::new(),
        },
    }
}

async fn next_envelope(incoming: &mut tokio::sync::mpsc::Receiver<BusEnvelope>) -> BusEnvelope {
    tokio::time::timeout(Duration::from_secs(5), incoming.recv())
        .await
        .expect("an envelope in time")
        .expect("incoming open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_keeps_the_bus_contract() {
    let server = RedisServer::start();
    contract::bus_suite(|| {
        let port: Arc<dyn Bus> = Arc::new(RedisBus::new(client(&server), 16).expect("bus"));
        async move { Fixture::unguarded(port) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_another_nodes_messages_only_when_subscribed() {
    let server = RedisServer::start();
    let node_a = RedisBus::new(client(&server), 16).expect("bus a");
    let node_b = RedisBus::new(client(&server), 16).expect("bus b");
    let mut incoming_b = node_b.take_incoming().expect("incoming");
    let conversation = BusTopic::Conversation(ConversationId::new(unique("conv")));
    let sentinel = BusTopic::User(UserId::new(unique("sentinel")));
    node_b
        .subscribe(vec![sentinel.clone()])
        .await
        .expect("subscribe");

    node_a
        .publish(envelope(&conversation, "before"))
        .await
        .expect("publish");
    node_a
        .publish(envelope(&sentinel, "sentinel-1"))
        .await
        .expect("publish");
    assert_eq!(
        next_envelope(&mut incoming_b).await,
        envelope(&sentinel, "sentinel-1"),
        "b did not get the conversation it has not subscribed to"
    );

    node_b
        .subscribe(vec![conversation.clone()])
        .await
        .expect("subscribe");
    node_a
        .publish(envelope(&conversation, "after"))
        .await
        .expect("publish");
    assert_eq!(
        next_envelope(&mut incoming_b).await,
        envelope(&conversation, "after")
    );
    assert_eq!(
        node_b
            .counters()
            .dropped_unsubscribed
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "redis itself filtered: nothing unwanted reached b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_resubscribes_after_losing_its_connection() {
    use std::sync::atomic::Ordering::Relaxed;
    let server = RedisServer::start();
    let admin = client(&server);
    let node_a = RedisBus::new(client(&server), 64).expect("bus a");
    let node_b = RedisBus::new(client(&server), 64).expect("bus b");
    let mut incoming_b = node_b.take_incoming().expect("incoming");
    let topic = BusTopic::Conversation(ConversationId::new(unique("conv")));
    node_b
        .subscribe(vec![topic.clone()])
        .await
        .expect("subscribe");

    let mut kill = deadpool_redis::redis::cmd("CLIENT");
    kill.arg("KILL").arg("TYPE").arg("pubsub");
    let killed: i64 = admin.query(kill).await.expect("client kill");
    assert!(killed >= 1, "the subscriber connection was killed");

    eventually(Duration::from_secs(5), "b resubscribes", || async {
        node_b.counters().reconnects.load(Relaxed) >= 1
    })
    .await;
    // What was published while b was away is lost: b's bus tells its own node so.
    assert_eq!(
        next_envelope(&mut incoming_b).await,
        BusEnvelope {
            topic: topic.clone(),
            origin: NodeId::new(ports::RESUBSCRIBED_ORIGIN),
            payload: BusPayload::Resubscribed,
        }
    );
    // The resubscription is confirmed before the reconnect is counted, so this arrives.
    node_a
        .publish(envelope(&topic, "after-reconnect"))
        .await
        .expect("publish");
    assert_eq!(
        next_envelope(&mut incoming_b).await,
        envelope(&topic, "after-reconnect")
    );
}

#[tokio::test]
async fn redis_retention_keeps_the_retention_contract() {
    let server = RedisServer::start();
    contract::retention_suite(|| {
        let port: Arc<dyn ports::RetentionPolicies> =
            Arc::new(persistence::redis::RedisRetention::new(client(&server)));
        async move { Fixture::unguarded(port) }
    })
    .await;
}

#[tokio::test]
async fn redis_sanctions_keep_the_sanctions_contract() {
    let server = RedisServer::start();
    contract::sanctions_suite(|| {
        let port: Arc<dyn ports::Sanctions> =
            Arc::new(persistence::redis::RedisSanctions::new(client(&server)));
        async move { Fixture::unguarded(port) }
    })
    .await;
}

/// Two nodes' leases of a fresh name, the first taken by node A for `ttl`.
async fn lease_taken_by_node_a(server: &RedisServer, ttl: Duration) -> (RedisLease, RedisLease) {
    let name = unique("lease");
    let lease_of = |holder: &str| RedisLease::new(client(server), &name, holder);
    let (node_a, node_b) = (lease_of("node-a"), lease_of("node-b"));
    assert!(
        node_a.try_hold(ttl).await.expect("hold"),
        "a free lease is taken"
    );
    (node_a, node_b)
}

/// A round's lease ([`RedisLease::hold_round`], long work such as a slow sweep) is kept by its
/// holder well past its TTL, refused to another node meanwhile, and lapses once the renewal
/// guard is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rounds_lease_outlives_its_ttl_and_lapses_once_let_go() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(600);
    let (node_a, node_b) = lease_taken_by_node_a(&server, ttl).await;
    let renewal = node_a
        .hold_round(ttl)
        .await
        .expect("hold")
        .expect("its holder extends it");
    tokio::time::sleep(ttl * 3).await;
    assert!(
        node_b.hold_round(ttl).await.expect("hold").is_none(),
        "kept: still held three TTLs later"
    );
    drop(renewal);
    tokio::time::sleep(ttl + ttl / 2).await;
    assert!(
        node_b.try_hold(ttl).await.expect("hold"),
        "let go: it lapsed and another node takes it"
    );
}

/// Two nodes' leases of one name: one holds it (and renews it), the other gets it only once it
/// lapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_held_renewed_and_taken_over_once_it_lapses() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(1);
    let (node_a, node_b) = lease_taken_by_node_a(&server, ttl).await;
    assert!(
        !node_b.try_hold(ttl).await.expect("hold"),
        "another holder is refused"
    );
    tokio::time::sleep(ttl / 2).await;
    assert!(
        node_a.try_hold(ttl).await.expect("renew"),
        "its holder renews it"
    );
    tokio::time::sleep(ttl / 2 + ttl / 4).await;
    assert!(
        !node_b.try_hold(ttl).await.expect("hold"),
        "renewed: still held"
    );
    tokio::time::sleep(ttl).await;
    assert!(
        node_b.try_hold(ttl).await.expect("hold"),
        "lapsed: taken over"
    );
    assert!(
        !node_a.try_hold(ttl).await.expect("hold"),
        "the new holder keeps it"
    );
}
