//! Ingest against faults of its broker (issue #20): `kill -9` of ingest, a restart, and a
//! `kill -9` of the broker within seconds — while the restarted ingest is joining its consumer
//! group — then a broker restart, all under a steady stream of sends. Once, this left the group
//! "formed" with an empty assignment: ingest stayed ready and consumed nothing, forever.
//!
//! Needs `scripts/services/{redis,tansu,secantus}.sh install` and the ingest binary
//! (`cargo build -p ingest`); the test fails, never skips, without them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::durable::{event_within, find_all, integer, DurableCluster, TestIngest};
use common::Client;
use mongodb::bson::doc;
use mongodb::Database;
use serde_json::json;

/// `kafka.stall_timeout_ms` of ingest and the nodes here: short, so that a stalled group is
/// noticed within the test.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long ingest may look ready while consuming nothing with records waiting: the stall
/// timeout, the check interval (a third of it), the lag gauge's refresh (5 s) and slack.
const READY_AND_IDLE_AT_MOST: Duration = Duration::from_secs(25);
/// Upper bound for the pipeline to deliver everything after the last fault.
const RECOVERY_WAIT: Duration = Duration::from_secs(100);
/// When the broker is killed after each ingest restart: the fault sequence runs once per delay,
/// so that the kill lands in different phases of the group join (the failure needed it to land
/// between the join and the assignment).
const BROKER_KILL_DELAYS_MS: [u64; 4] = [1_000, 2_000, 3_000, 4_500];
/// Pause between two sends of one sender.
const PACE: Duration = Duration::from_millis(25);

/// What one sender got back: the accepted sends as `message_id → seq`, and how many failed.
struct Sent {
    client: Client,
    accepted: BTreeMap<String, u64>,
    failed: usize,
}

/// Sends to `conversation_id` until `stop`, one message per [`PACE`]; counts acks in `acked`.
async fn send_until(
    mut client: Client,
    conversation_id: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Sent {
    let mut accepted = BTreeMap::new();
    let mut failed = 0;
    let user = client.user_id().to_owned();
    let mut index = 0_usize;
    while !stop.load(Ordering::SeqCst) {
        let reply = client
            .request(
                "message.send",
                json!({
                    "conversation_id": conversation_id,
                    "client_msg_id": format!("{user}-{index}"),
                    "text": format!("{user} #{index}"),
                }),
            )
            .await;
        match reply.get("result") {
            Some(result) => {
                let message_id = result["message_id"].as_str().expect("message_id");
                let seq = result["seq"].as_u64().expect("seq");
                accepted.insert(message_id.to_owned(), seq);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            // The broker is down: the send is not accepted (and must not be stored).
            None => failed += 1,
        }
        index += 1;
        tokio::time::sleep(PACE).await;
    }
    Sent {
        client,
        accepted,
        failed,
    }
}

/// Waits for the `message.stored` of every message of `waiting` (message ids) on `client`;
/// returns the ones that never came within `limit`.
async fn missing_stored(
    client: &mut Client,
    mut waiting: BTreeSet<String>,
    limit: Duration,
) -> BTreeSet<String> {
    let deadline = tokio::time::Instant::now() + limit;
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // The outer timeout fires first: running out of time is an outcome, not a panic.
        let stored = tokio::time::timeout(
            left,
            event_within(
                client,
                "message.stored",
                left + Duration::from_secs(5),
                |_| true,
            ),
        )
        .await;
        match stored {
            Ok(data) => {
                waiting.remove(data["message_id"].as_str().expect("message_id"));
            }
            Err(_elapsed) => break,
        }
    }
    waiting
}

/// The `(seq, message_id)` of every message document of `conversation_id` that is not a
/// tombstone (a failed send's seq, docs/architecture.md "Outages"), in seq order.
async fn stored_messages(db: &Database, conversation_id: &str) -> Vec<(u64, String)> {
    find_all(
        db,
        "messages",
        doc! { "conversation_id": conversation_id },
        doc! { "seq": 1 },
    )
    .await
    .iter()
    .filter(|document| integer(document, "version") != Some(i64::MAX))
    .map(|document| {
        let seq = integer(document, "seq").expect("seq");
        let message_id = document.get_str("message_id").expect("message_id");
        (
            u64::try_from(seq).expect("positive seq"),
            message_id.to_owned(),
        )
    })
    .collect()
}

/// Ingest's state as `/readyz` and `/metrics` show it.
struct Observed {
    ready: bool,
    lag: f64,
    consumed: f64,
}

async fn observe(ingest: &TestIngest) -> Observed {
    Observed {
        ready: ingest.readyz().await == 200,
        lag: ingest
            .metric("parley_ingest_consumer_lag")
            .await
            .unwrap_or(0.0),
        consumed: ingest
            .metric("parley_ingest_events_consumed_total")
            .await
            .unwrap_or(0.0),
    }
}

/// Polls ingest until MongoDB holds `expected` messages of `conversation_id` (or `limit`
/// passes), failing as soon as ingest has been ready, with lag, without consuming anything for
/// longer than [`READY_AND_IDLE_AT_MOST`]: ingest is either consuming or not ready.
async fn wait_stored_while_watching_ingest(
    db: &Database,
    conversation_id: &str,
    ingest: &TestIngest,
    expected: usize,
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut idle_since: Option<(tokio::time::Instant, f64)> = None;
    loop {
        let stored = stored_messages(db, conversation_id).await.len();
        if stored >= expected {
            return;
        }
        let observed = observe(ingest).await;
        idle_since = match idle_since {
            Some((since, consumed)) if observed.ready && observed.lag > 0.0 => {
                if observed.consumed > consumed {
                    None
                } else {
                    Some((since, consumed))
                }
            }
            None if observed.ready && observed.lag > 0.0 => {
                Some((tokio::time::Instant::now(), observed.consumed))
            }
            _ => None,
        };
        if let Some((since, _)) = idle_since {
            if since.elapsed() > READY_AND_IDLE_AT_MOST {
                ingest.dump_log();
                panic!(
                    "ingest ready with lag {} but consumed nothing for {:?} ({stored} of \
                     {expected} messages stored)",
                    observed.lag,
                    since.elapsed()
                );
            }
        }
        if tokio::time::Instant::now() > deadline {
            ingest.dump_log();
            panic!("{stored} of {expected} acked messages in mongodb after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until `count` reaches `target`, or panics naming `what`.
async fn wait_count(count: &AtomicUsize, target: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + RECOVERY_WAIT;
    while count.load(Ordering::SeqCst) < target {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_while_a_restarted_ingest_joins_its_group_loses_and_duplicates_nothing() {
    let stall_timeout = STALL_TIMEOUT.as_millis().to_string();
    let mut cluster = DurableCluster::start_with(
        "parley_e2e_ingest_faults",
        2,
        &[("PARLEY__KAFKA__STALL_TIMEOUT_MS", stall_timeout.as_str())],
        &[],
    )
    .await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let mut alice = a.connect("alice").await;
    let bob = b.connect("bob").await;
    let conversation_id = alice
        .ok(
            "conversation.create",
            json!({ "kind": "group", "members": ["bob"], "title": "faults" }),
        )
        .await["conversation"]["conversation_id"]
        .as_str()
        .expect("conversation_id")
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = [alice, bob]
        .into_iter()
        .map(|client| {
            tokio::spawn(send_until(
                client,
                conversation_id.clone(),
                stop.clone(),
                acked.clone(),
            ))
        })
        .collect();

    // The fault sequence, with the broker killed at different moments of the group join:
    // 1. kill -9 ingest once it is mid-stream, let the log grow, restart it;
    // 2. kill -9 the broker a little later, while the new ingest joins its group, and restart
    //    the broker;
    // 3. wait until sends are accepted again.
    wait_count(&acked, 40, "sends never got going").await;
    for broker_kill_delay_ms in BROKER_KILL_DELAYS_MS {
        cluster.ingest.kill9();
        let at_kill = acked.load(Ordering::SeqCst);
        wait_count(&acked, at_kill + 150, "sends stalled while ingest was down").await;
        cluster.ingest.restart().await;
        tokio::time::sleep(Duration::from_millis(broker_kill_delay_ms)).await;
        cluster.tansu.kill9();
        eprintln!(
            "broker killed {broker_kill_delay_ms} ms after the ingest restart, {} sends acked",
            acked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.tansu.resume();
        let at_resume = acked.load(Ordering::SeqCst);
        wait_count(&acked, at_resume + 40, "sends never resumed").await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for sender in senders {
        outcomes.push(sender.await.expect("sender task"));
    }

    // Every accepted send is in MongoDB exactly once, and nothing else is.
    let mut accepted: Vec<(u64, String)> = outcomes
        .iter()
        .flat_map(|sent| sent.accepted.iter())
        .map(|(message_id, seq)| (*seq, message_id.clone()))
        .collect();
    accepted.sort();
    let failed: usize = outcomes.iter().map(|sent| sent.failed).sum();
    eprintln!("{} sends accepted, {failed} failed", accepted.len());
    wait_stored_while_watching_ingest(
        &cluster.db,
        &conversation_id,
        &cluster.ingest,
        accepted.len(),
        RECOVERY_WAIT,
    )
    .await;
    assert_eq!(
        stored_messages(&cluster.db, &conversation_id).await,
        accepted,
        "mongodb holds each accepted message once (tombstones aside)"
    );

    // Every sender was told `message.stored` for each of its accepted messages.
    for sent in &mut outcomes {
        let waiting: BTreeSet<String> = sent.accepted.keys().cloned().collect();
        let missing = missing_stored(&mut sent.client, waiting, RECOVERY_WAIT).await;
        assert!(
            missing.is_empty(),
            "no message.stored for {} of {} accepted messages of {}: {missing:?}",
            missing.len(),
            sent.accepted.len(),
            sent.client.user_id()
        );
    }
    // Ingest ends ready with nothing left on any partition (the gauge refreshes every 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let observed = observe(&cluster.ingest).await;
        if observed.ready && observed.lag == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest ready: {}, lag {}",
            observed.ready,
            observed.lag
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(cluster.ingest.is_running());
    let log = cluster.ingest.log();
    eprintln!(
        "ingest reported its group stalled {} times and re-joined {} times",
        log.matches("kafka consumer group stalled").count(),
        log.matches("ingest re-joined its consumer group").count()
    );
}
