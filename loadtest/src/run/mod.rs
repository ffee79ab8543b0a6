//! The scenarios and what they share: making clients, connecting them, open-loop publishers,
//! the drain-and-verify step, and the report.

mod chat;
mod fanout;
mod idle;
mod report;
mod storm;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde::Serialize;
use wire::{ConversationId, UserId};

use crate::client::{Client, RunContext, Target};
use crate::cpu::{micros_per, CpuMeter, ProcessCpu};
use crate::ledger::{AnswerLog, LedgerFile};
use crate::net::{self, Endpoints};
use crate::scenario::{Scenario, ScenarioKind};
use crate::stats::{CorrectnessReport, LatencySummary, Stats};

pub use report::{print_summary, Report};

/// Which servers a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetChoice {
    Parley,
    Ceiling,
    /// The ceiling first, then Parley with the same load; the report gives the ratio.
    Both,
}

/// Command-line options besides the scenario knobs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Parley WebSocket URLs (`ws://host:port/ws`), or the ceiling's with `--target ceiling`.
    pub urls: Vec<String>,
    /// `ws-ceiling` URLs for `--target both`.
    pub ceiling_urls: Vec<String>,
    pub target: TargetChoice,
    pub source_addrs: usize,
    pub api_key: String,
    /// The Parley server's pid, for RSS (idle).
    pub server_pid: Option<u32>,
    /// Processes whose CPU time over the measured window is reported for the Parley phase
    /// (its nodes, Redis, ingest, ...), and for the ceiling phase.
    pub cpu_pids: Vec<u32>,
    pub ceiling_cpu_pids: Vec<u32>,
    pub report: Option<PathBuf>,
    /// Where to write the run's ledger (every ack, final view and send answer), if anywhere.
    pub ledger: Option<PathBuf>,
    /// Whether to print the live progress line.
    pub progress: bool,
}

/// The outcome of one target's run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub target: Target,
    pub urls: Vec<String>,
    pub connections_requested: usize,
    pub connections_opened: u64,
    /// Length of the measured window (the load phase minus its first second), seconds.
    pub window_secs: f64,
    /// CPU time of the processes given with `--cpu-pid` (`--ceiling-cpu-pid`) over the window,
    /// and per send and per delivery of the window.
    pub server_cpu: Vec<ProcessCpu>,
    pub cpu_us_per_send: Option<f64>,
    pub cpu_us_per_delivery: Option<f64>,
    pub sends: u64,
    pub acks: u64,
    pub deliveries: u64,
    pub sends_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub ack_latency: LatencySummary,
    pub delivery_latency: LatencySummary,
    /// Send→delivery of the sends scheduled inside the measured window (the steady state).
    pub window_delivery_latency: LatencySummary,
    pub reconnect_latency: LatencySummary,
    pub reconnects: u64,
    /// Sends written again with the same `client_msg_id` (after a lost session or
    /// `unavailable`), those answered with the ack already received, and the messages given
    /// up on (no ack after `max_send_attempts`, or none when the run ended).
    pub resends: u64,
    pub repeated_acks: u64,
    pub gave_up: u64,
    pub connect_failures: u64,
    pub other_requests: u64,
    pub errors: std::collections::BTreeMap<String, u64>,
    pub correctness: CorrectnessReport,
    /// Scenario-specific results (idle: RSS).
    pub extra: serde_json::Value,
    /// A failed scenario-specific check (idle: connections not all opened).
    pub failure: Option<String>,
}

/// Runs a scenario against the chosen target(s).
pub async fn run(scenario: &Scenario, options: &Options) -> anyhow::Result<Report> {
    let started_at = chrono::Utc::now();
    let mut phases = Vec::new();
    match options.target {
        TargetChoice::Parley => {
            phases.push(run_phase(scenario, options, Target::Parley, &options.urls).await?)
        }
        TargetChoice::Ceiling => {
            phases.push(run_phase(scenario, options, Target::Ceiling, &options.urls).await?)
        }
        TargetChoice::Both => {
            if options.ceiling_urls.is_empty() {
                bail!("--target both needs --ceiling-url");
            }
            phases
                .push(run_phase(scenario, options, Target::Ceiling, &options.ceiling_urls).await?);
            phases.push(run_phase(scenario, options, Target::Parley, &options.urls).await?);
        }
    }
    Ok(Report::new(scenario.clone(), started_at, phases))
}

async fn run_phase(
    scenario: &Scenario,
    options: &Options,
    target: Target,
    urls: &[String],
) -> anyhow::Result<PhaseReport> {
    if target == Target::Ceiling && scenario.kind != ScenarioKind::Fanout {
        bail!("only the fanout scenario can target the ceiling");
    }
    let stats = Arc::new(Stats::default());
    let budget = scenario.duration_secs + scenario.drain_secs + scenario.hold_secs + 120.0;
    let context = Arc::new(RunContext {
        stats: stats.clone(),
        endpoints: Endpoints::new(urls.to_vec(), options.source_addrs)?,
        target,
        acked: Default::default(),
        deadline: Instant::now() + Duration::from_secs_f64(budget),
        text_bytes: scenario.text_bytes,
        max_send_attempts: scenario.max_send_attempts,
        answers: options.ledger.as_ref().map(|_| AnswerLog::default()),
    });
    let (stop_progress, progress_stopped) = tokio::sync::watch::channel(false);
    let progress = options.progress.then(|| {
        let stats = stats.clone();
        let label = format!("{} {}", scenario.kind.as_str(), target_name(target));
        tokio::spawn(async move { stats.progress(&label, progress_stopped).await })
    });
    let phase = Phase {
        scenario,
        options,
        context,
        prefix: format!("lt{:06x}", rand::random::<u32>() & 0xff_ffff),
        cpu: Mutex::new(Vec::new()),
    };
    let outcome = match scenario.kind {
        ScenarioKind::Idle => idle::run(&phase).await,
        ScenarioKind::Fanout => fanout::run(&phase).await,
        ScenarioKind::Chat => chat::run(&phase).await,
        ScenarioKind::ReconnectStorm => storm::run(&phase).await,
    };
    let _ = stop_progress.send(true);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    let outcome = outcome?;
    let window_secs = outcome.window.as_secs_f64().max(1e-9);
    let server_cpu = std::mem::take(&mut *phase.cpu.lock().expect("cpu lock"));
    Ok(PhaseReport {
        target,
        urls: urls.to_vec(),
        connections_requested: scenario.total_connections(),
        connections_opened: outcome.connections_opened,
        window_secs,
        cpu_us_per_send: micros_per(&server_cpu, outcome.window_sends),
        cpu_us_per_delivery: micros_per(&server_cpu, outcome.window_deliveries),
        server_cpu,
        sends: stats.sends.load(Ordering::Relaxed),
        acks: stats.acks.load(Ordering::Relaxed),
        deliveries: stats.deliveries.load(Ordering::Relaxed),
        sends_per_sec: outcome.window_sends as f64 / window_secs,
        deliveries_per_sec: outcome.window_deliveries as f64 / window_secs,
        ack_latency: stats.ack_latency.summary(),
        delivery_latency: stats.delivery_latency.summary(),
        window_delivery_latency: stats.window_delivery_latency.summary(),
        reconnect_latency: stats.reconnect_latency.summary(),
        reconnects: stats.reconnects.load(Ordering::Relaxed),
        resends: stats.resends.load(Ordering::Relaxed),
        repeated_acks: stats.repeated_acks.load(Ordering::Relaxed),
        gave_up: stats.gave_up.load(Ordering::Relaxed),
        connect_failures: stats.connect_failures.load(Ordering::Relaxed),
        other_requests: stats.other_requests.load(Ordering::Relaxed),
        errors: stats.errors(),
        correctness: stats.correctness.report(),
        extra: outcome.extra,
        failure: outcome.failure,
    })
}

fn target_name(target: Target) -> &'static str {
    match target {
        Target::Parley => "parley",
        Target::Ceiling => "ceiling",
    }
}

/// What one scenario run hands back.
struct Outcome {
    connections_opened: u64,
    window: Duration,
    window_sends: u64,
    window_deliveries: u64,
    extra: serde_json::Value,
    failure: Option<String>,
}

/// A load phase in flight: the tasks that act from `start` until `end` (awaited in order).
struct Load {
    start: Instant,
    end: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Phase<'a> {
    scenario: &'a Scenario,
    options: &'a Options,
    context: Arc<RunContext>,
    /// Prefix of this run's user ids, so runs against the same server do not collide.
    prefix: String,
    /// The CPU time of the measured processes over the window, once measured.
    cpu: Mutex<Vec<ProcessCpu>>,
}

impl Phase<'_> {
    fn stats(&self) -> &Stats {
        &self.context.stats
    }

    /// Creates clients (fetching a token for each on Parley). `rooms[i]` is the ceiling room
    /// of client `i`.
    async fn make_clients(
        &self,
        user_ids: Vec<UserId>,
        rooms: Vec<Option<String>>,
    ) -> anyhow::Result<Vec<Arc<Client>>> {
        let authority = net::authority(&self.context.endpoints.urls()[0])?.to_owned();
        let api_key = self.options.api_key.clone();
        let target = self.context.target;
        let tokens: Vec<anyhow::Result<String>> = futures::stream::iter(user_ids.iter().cloned())
            .map(|user_id| {
                let authority = authority.clone();
                let api_key = api_key.clone();
                async move {
                    match target {
                        Target::Parley => {
                            net::fetch_token(&authority, &api_key, user_id.as_str()).await
                        }
                        Target::Ceiling => Ok(String::new()),
                    }
                }
            })
            .buffered(32)
            .collect()
            .await;
        let mut clients = Vec::with_capacity(user_ids.len());
        for (index, ((user_id, token), room)) in
            user_ids.into_iter().zip(tokens).zip(rooms).enumerate()
        {
            clients.push(Client::new(
                index,
                user_id,
                token.context("token")?,
                room,
                self.context.clone(),
            ));
        }
        Ok(clients)
    }

    /// Connects every client, `connect_concurrency` handshakes at a time; returns how many
    /// connected.
    async fn connect_all(&self, clients: &[Arc<Client>]) -> u64 {
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(clients.iter().cloned())
            .map(|client| async move { client.connect().await })
            .buffer_unordered(self.scenario.connect_concurrency)
            .collect()
            .await;
        let mut first_error = None;
        let mut connected = 0;
        for result in results {
            match result {
                Ok(()) => connected += 1,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            eprintln!(
                "warning: {} connection(s) failed; first error: {error:#}",
                clients.len() as u64 - connected
            );
        }
        connected
    }

    /// Connects every client or fails the run.
    async fn connect_every(&self, clients: &[Arc<Client>]) -> anyhow::Result<u64> {
        let connected = self.connect_all(clients).await;
        if connected < clients.len() as u64 {
            bail!("only {connected} of {} clients connected", clients.len());
        }
        Ok(connected)
    }

    /// Spawns an open-loop publisher, stream `position` of `streams`: message `k` is due at
    /// `start + offset + k / rate`, the offsets spread evenly over one period, and
    /// its latency is measured from that due time even when the send itself is late.
    fn publish(
        &self,
        (position, streams): (usize, usize),
        client: Arc<Client>,
        conversation_id: ConversationId,
        start: Instant,
        end: Instant,
    ) -> tokio::task::JoinHandle<()> {
        let period = Duration::from_secs_f64(1.0 / self.scenario.rate);
        // Spread publishers over one period so they do not fire in lockstep.
        let offset = stagger(period, position, streams);
        let clock = self.stats().clock;
        tokio::spawn(async move {
            let mut due = start + offset;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                client.send_message(&conversation_id, clock.micros_of(due));
                due += period;
            }
        })
    }

    /// The processes whose CPU time this phase measures.
    fn cpu_pids(&self) -> &[u32] {
        match self.context.target {
            Target::Parley => &self.options.cpu_pids,
            Target::Ceiling => &self.options.ceiling_cpu_pids,
        }
    }

    /// Counters over the measured window: from one second into the load phase (a fifth of it
    /// when shorter) to its end. Returns the window's length, sends and deliveries. The sends
    /// scheduled inside the window also have their delivery latency recorded apart.
    async fn measure_window(&self, start: Instant, end: Instant) -> (Duration, u64, u64) {
        let warmup = (end - start).mul_f64(0.2).min(Duration::from_secs(1));
        let stats = self.stats();
        stats
            .window_start
            .set(stats.clock.micros_of(start + warmup));
        tokio::time::sleep_until((start + warmup).into()).await;
        let sends = self.stats().sends.load(Ordering::Relaxed);
        let deliveries = self.stats().deliveries.load(Ordering::Relaxed);
        let meter = CpuMeter::start(self.cpu_pids());
        tokio::time::sleep_until(end.into()).await;
        match meter.and_then(CpuMeter::stop) {
            Ok(used) => *self.cpu.lock().expect("cpu lock") = used,
            Err(error) => eprintln!("cpu: not measured: {error:#}"),
        }
        (
            end - (start + warmup),
            self.stats().sends.load(Ordering::Relaxed) - sends,
            self.stats().deliveries.load(Ordering::Relaxed) - deliveries,
        )
    }

    /// The end of a load phase run by `load`'s tasks: measures the window while they run,
    /// waits for them, drains and checks the clients, and reports.
    async fn finish(
        &self,
        load: Load,
        clients: &[Arc<Client>],
        opened: u64,
        extra: serde_json::Value,
    ) -> Outcome {
        let (window, window_sends, window_deliveries) =
            self.measure_window(load.start, load.end).await;
        for task in load.tasks {
            let _ = task.await;
        }
        self.drain_and_verify(clients).await;
        Outcome {
            connections_opened: opened,
            window,
            window_sends,
            window_deliveries,
            extra,
            failure: None,
        }
    }

    /// After the load: waits (up to `drain_secs`) until every client has every acked message
    /// of its conversations and no reconnect is in flight, then checks each client, with a
    /// final `sync` for those behind. Messages only that `sync` brings are deliveries the
    /// server failed to make.
    async fn drain_and_verify(&self, clients: &[Arc<Client>]) {
        let deadline = Instant::now() + Duration::from_secs_f64(self.scenario.drain_secs);
        loop {
            let acked = self.context.acked_snapshot();
            let settled = clients.iter().all(|client| {
                client.is_settled() && client.behind(&acked) == 0 && client.outstanding_sends() == 0
            });
            if settled || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let acked = self.context.acked_snapshot();
        let correctness = &self.stats().correctness;
        let recoverable = self.context.target == Target::Parley;
        let mut reported = 0;
        for client in clients {
            correctness
                .sessions_verified
                .fetch_add(1, Ordering::Relaxed);
            let lagging = client.lacking(&acked);
            let behind: u64 = lagging.iter().map(|lacking| lacking.count).sum();
            if behind == 0 {
                continue;
            }
            if !recoverable {
                // The ceiling has no `sync`: what a member closed as too slow missed is gone.
                correctness
                    .unrecoverable
                    .fetch_add(behind, Ordering::Relaxed);
                continue;
            }
            // A client connected and synced at the deadline that still lacks acked messages
            // lost live deliveries; one still reconnecting (overload, 4009) only ran late.
            let settled_at_deadline = client.is_settled();
            // The final check: reconnect if needed and `sync`, a few times.
            for _ in 0..3 {
                if !client.is_settled() {
                    client.clone().reconnect(Instant::now()).await;
                    // Another reconnect may be in flight: wait for it, bounded.
                    let until = Instant::now() + Duration::from_secs(10);
                    while !client.is_settled() && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                if client.sync_all().await.is_ok() {
                    break;
                }
                self.stats().error("final_sync_failed");
            }
            let still_behind = client.behind(&acked);
            let counter = if settled_at_deadline {
                &correctness.missed_live
            } else {
                &correctness.recovered_at_end
            };
            counter.fetch_add(behind - still_behind, Ordering::Relaxed);
            correctness
                .missing
                .fetch_add(still_behind, Ordering::Relaxed);
            reported += 1;
            if reported <= 10 {
                let detail: Vec<String> = lagging
                    .iter()
                    .map(|lacking| {
                        format!(
                            "{} lacked {} acked seq(s) from {} (highest acked {})",
                            lacking.conversation_id,
                            lacking.count,
                            lacking.first,
                            lacking.highest_acked
                        )
                    })
                    .collect();
                eprintln!(
                    "correctness: {} ({}) lacked {behind} acked message(s) after the drain ({}); {still_behind} still missing after sync",
                    client.user_id,
                    if settled_at_deadline { "connected and synced" } else { "still reconnecting" },
                    detail.join(", ")
                );
            }
        }
        if reported > 10 {
            eprintln!(
                "correctness: ... and {} more client(s) behind",
                reported - 10
            );
        }
        for client in clients {
            client.abandon_outstanding();
        }
        if let Some(path) = &self.options.ledger {
            self.write_ledger(clients, path).await;
        }
        for client in clients {
            client.close();
        }
    }

    /// Every client `sync`s once more (so its view holds what the store holds, tombstones of
    /// failed sends included), then the ledger is written.
    async fn write_ledger(&self, clients: &[Arc<Client>], path: &std::path::Path) {
        let syncs = futures::stream::iter(clients.iter().cloned())
            .map(|client| async move { client.sync_all().await })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        for failed in syncs.iter().filter(|sync| sync.is_err()) {
            self.stats().error("ledger_sync_failed");
            if let Err(error) = failed {
                eprintln!("ledger: a last sync failed: {error:#}");
            }
        }
        let ledger = LedgerFile {
            answers: self
                .context
                .answers
                .as_ref()
                .map(AnswerLog::take)
                .unwrap_or_default(),
            clients: clients.iter().map(|client| client.ledger()).collect(),
        };
        if let Err(error) = ledger.write(path) {
            eprintln!("ledger: {error:#}");
            self.stats().error("ledger_not_written");
        }
    }
}

/// Builds a user id of this run.
fn user(prefix: &str, name: impl std::fmt::Display) -> UserId {
    UserId::new(format!("{prefix}-{name}"))
}

/// Creates a conversation as `owner`; returns its id and `last_seq`.
async fn create_conversation(
    owner: &Client,
    kind: wire::ConversationKind,
    members: Vec<UserId>,
) -> anyhow::Result<(ConversationId, u64)> {
    let value = owner
        .call(
            wire::ops::Op::ConversationCreate,
            wire::ops::CreateConversationArgs {
                kind,
                members,
                title: None,
            },
        )
        .await?;
    let result: wire::ops::ConversationResult = serde_json::from_value(value)?;
    Ok((
        result.conversation.conversation_id,
        result.conversation.last_seq.0,
    ))
}

/// When participant `position` of `of` acts first after the start: evenly spread over one
/// `period`, so that their actions are spread over every period, not bunched at its start.
fn stagger(period: Duration, position: usize, of: usize) -> Duration {
    period.mul_f64((position % of.max(1)) as f64 / of.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_actions_are_spread_over_the_whole_period_not_its_first_fifth() {
        let period = Duration::from_secs(4);
        let offsets: Vec<Duration> = (0..200).map(|index| stagger(period, index, 200)).collect();
        assert_eq!(offsets[0], Duration::ZERO);
        assert!(
            offsets[199] > Duration::from_millis(3900),
            "{:?}",
            offsets[199]
        );
        assert!(offsets.iter().all(|offset| *offset < period));
        // Each second of the period gets a quarter of the users.
        for second in 0..4 {
            let in_second = offsets
                .iter()
                .filter(|offset| offset.as_secs() == second)
                .count();
            assert_eq!(in_second, 50, "second {second}");
        }
    }
}
