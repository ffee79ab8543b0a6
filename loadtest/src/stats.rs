//! Measurements shared by every connection of a run: counters, HDR histograms, the live
//! progress line and the final report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds since the start of the run: the time base of every scheduled send, carried in
/// message texts so that a recipient in this process can compute the delivery latency.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }

    pub fn instant_of(&self, micros: u64) -> Instant {
        self.base + Duration::from_micros(micros)
    }

    pub fn micros_of(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.base).as_micros() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// A latency histogram in microseconds (1 µs to 10 min, 3 significant digits).
pub struct LatencyHistogram {
    inner: Mutex<Histogram<u64>>,
}

impl LatencyHistogram {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }

    pub fn record(&self, micros: u64) {
        let mut histogram = self.inner.lock().expect("histogram lock");
        histogram.saturating_record(micros.max(1));
    }

    pub fn summary(&self) -> LatencySummary {
        let histogram = self.inner.lock().expect("histogram lock");
        LatencySummary::of(&histogram)
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl LatencySummary {
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }
}

/// Correctness counters. Any of `duplicates`, `out_of_order`, `missed_live`, `missing`,
/// `ack_changed` above zero fails the run.
#[derive(Debug, Default)]
pub struct Correctness {
    /// A `message.new` whose seq the session had already received live.
    pub duplicates: AtomicU64,
    /// A live `message.new` with a seq below the last one the session received.
    pub out_of_order: AtomicU64,
    /// A live `message.new` more than one above the last live seq of the session (filled by
    /// `sync`, as the protocol prescribes; reported, not a failure on its own).
    pub live_gaps: AtomicU64,
    /// Messages recovered by the `sync` after a reconnect (expected with reconnects).
    pub recovered_by_sync: AtomicU64,
    /// Messages the client received both from `sync` and live (benign overlap).
    pub sync_overlap: AtomicU64,
    /// Acked messages a connected, synced session had not received when the drain ended and
    /// only got from the final `sync`: a delivery the server failed to make.
    pub missed_live: AtomicU64,
    /// Acked messages a client still reconnecting when the drain ended (overload: closed with
    /// 4009 again and again) got from the final `sync`: late, not lost (reported only).
    pub recovered_at_end: AtomicU64,
    /// Acked messages still missing after the final `sync`.
    pub missing: AtomicU64,
    /// A resend (same `client_msg_id`) acked as another message than its first ack: the
    /// idempotent send broken, a duplicate.
    pub ack_changed: AtomicU64,
    /// Ceiling target only: messages a member closed as too slow never got (the ceiling has
    /// no `sync`; reported, not a failure).
    pub unrecoverable: AtomicU64,
    /// Sessions verified at the end.
    pub sessions_verified: AtomicU64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CorrectnessReport {
    pub passed: bool,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub live_gaps: u64,
    pub recovered_by_sync: u64,
    pub sync_overlap: u64,
    pub missed_live: u64,
    pub missing: u64,
    pub ack_changed: u64,
    pub recovered_at_end: u64,
    pub unrecoverable: u64,
    pub sessions_verified: u64,
}

impl Correctness {
    pub fn report(&self) -> CorrectnessReport {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let duplicates = load(&self.duplicates);
        let out_of_order = load(&self.out_of_order);
        let missed_live = load(&self.missed_live);
        let missing = load(&self.missing);
        let ack_changed = load(&self.ack_changed);
        CorrectnessReport {
            passed: duplicates == 0
                && out_of_order == 0
                && missed_live == 0
                && missing == 0
                && ack_changed == 0,
            duplicates,
            out_of_order,
            live_gaps: load(&self.live_gaps),
            recovered_by_sync: load(&self.recovered_by_sync),
            sync_overlap: load(&self.sync_overlap),
            missed_live,
            missing,
            ack_changed,
            recovered_at_end: load(&self.recovered_at_end),
            unrecoverable: load(&self.unrecoverable),
            sessions_verified: load(&self.sessions_verified),
        }
    }
}

/// Where the measured window of a run starts, in [`Clock`] micros; `u64::MAX` (no send is in
/// it) until it is set.
pub struct WindowStart(AtomicU64);

impl WindowStart {
    pub fn set(&self, micros: u64) {
        self.0.store(micros, Ordering::Relaxed);
    }

    pub fn micros(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for WindowStart {
    fn default() -> Self {
        Self(AtomicU64::new(u64::MAX))
    }
}

/// Everything a run measures.
#[derive(Default)]
pub struct Stats {
    pub clock: Clock,
    pub connected: AtomicU64,
    pub connect_failures: AtomicU64,
    pub sends: AtomicU64,
    pub acks: AtomicU64,
    pub deliveries: AtomicU64,
    pub other_requests: AtomicU64,
    pub reconnects: AtomicU64,
    /// Sends written again (same `client_msg_id`) after a lost session or `unavailable`.
    pub resends: AtomicU64,
    /// Resends answered with the ack already received (the idempotent send).
    pub repeated_acks: AtomicU64,
    /// Messages given up on: no ack after their attempts, or still unacked when the run ended.
    pub gave_up: AtomicU64,
    pub ack_latency: LatencyHistogram,
    pub delivery_latency: LatencyHistogram,
    /// Send→delivery of the sends scheduled inside the measured window only (from
    /// `window_start_us` on): the steady state, without the first second's cold start.
    pub window_delivery_latency: LatencyHistogram,
    pub window_start: WindowStart,
    pub reconnect_latency: LatencyHistogram,
    pub correctness: Correctness,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    /// Records a delivery's latency; also in the window's histogram when its send was scheduled
    /// inside the measured window.
    pub fn record_delivery(&self, scheduled_us: u64, now_us: u64) {
        let latency = now_us.saturating_sub(scheduled_us);
        self.delivery_latency.record(latency);
        if scheduled_us >= self.window_start.micros() {
            self.window_delivery_latency.record(latency);
        }
    }

    /// Counts an error by its code (`rate_limited`, `close_4009`, `connect`, ...).
    pub fn error(&self, code: &str) {
        let mut errors = self.errors.lock().expect("errors lock");
        *errors.entry(code.to_owned()).or_default() += 1;
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().expect("errors lock").clone()
    }

    fn error_total(&self) -> u64 {
        self.errors.lock().expect("errors lock").values().sum()
    }

    /// Prints a progress line to stderr once per second until `stop` resolves.
    pub async fn progress(&self, label: &str, stop: tokio::sync::watch::Receiver<bool>) {
        let mut stop = stop;
        let started = Instant::now();
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let mut last = (0, 0, 0);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.changed() => return,
            }
            let sends = self.sends.load(Ordering::Relaxed);
            let acks = self.acks.load(Ordering::Relaxed);
            let deliveries = self.deliveries.load(Ordering::Relaxed);
            let ack = self.ack_latency.summary();
            let delivery = self.delivery_latency.summary();
            eprintln!(
                "[{label} {:>4.0}s] conns {} | sends {}/s acks {}/s deliveries {}/s | ack p50 {} p99 {} | delivery p50 {} p99 {} | errors {} reconnects {}",
                started.elapsed().as_secs_f64(),
                self.connected.load(Ordering::Relaxed),
                sends - last.0,
                acks - last.1,
                deliveries - last.2,
                format_micros(ack.p50_us),
                format_micros(ack.p99_us),
                format_micros(delivery.p50_us),
                format_micros(delivery.p99_us),
                self.error_total(),
                self.reconnects.load(Ordering::Relaxed),
            );
            last = (sends, acks, deliveries);
        }
    }
}

pub fn format_micros(micros: u64) -> String {
    if micros >= 1_000_000 {
        format!("{:.2}s", micros as f64 / 1e6)
    } else if micros >= 1_000 {
        format!("{:.2}ms", micros as f64 / 1e3)
    } else {
        format!("{micros}us")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sends_scheduled_inside_the_window_count_for_the_window() {
        let stats = Stats::default();
        // Before the window is known, no send is in it.
        stats.record_delivery(10, 500);
        stats.window_start.set(1_000);
        stats.record_delivery(900, 5_000); // scheduled before the window, delivered inside
        stats.record_delivery(1_000, 1_300);
        stats.record_delivery(2_000, 2_100);
        assert_eq!(stats.delivery_latency.summary().count, 4);
        let window = stats.window_delivery_latency.summary();
        assert_eq!(window.count, 2);
        assert_eq!(window.max_us, 300);
    }

    #[test]
    fn histogram_quantiles() {
        let histogram = LatencyHistogram::new();
        for micros in 1..=1000 {
            histogram.record(micros);
        }
        let summary = histogram.summary();
        assert_eq!(summary.count, 1000);
        assert!((499..=501).contains(&summary.p50_us), "{summary:?}");
        assert!((989..=991).contains(&summary.p99_us), "{summary:?}");
        assert_eq!(summary.max_us, 1000);
    }

    #[test]
    fn any_missing_message_fails_the_run() {
        let correctness = Correctness::default();
        assert!(correctness.report().passed);
        correctness.live_gaps.fetch_add(1, Ordering::Relaxed);
        assert!(correctness.report().passed);
        correctness.missing.fetch_add(1, Ordering::Relaxed);
        assert!(!correctness.report().passed);
    }
}
