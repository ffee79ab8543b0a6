//! The report: a JSON file and a summary table.

use serde::Serialize;

use super::PhaseReport;
use crate::client::Target;
use crate::scenario::Scenario;
use crate::stats::{format_micros, LatencySummary};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub phases: Vec<PhaseReport>,
    /// Parley's deliveries/s divided by the ceiling's, when both ran.
    pub ratio_of_ceiling: Option<f64>,
    pub passed: bool,
}

impl Report {
    pub fn new(
        scenario: Scenario,
        started_at: chrono::DateTime<chrono::Utc>,
        phases: Vec<PhaseReport>,
    ) -> Self {
        let rate_of = |target| {
            phases
                .iter()
                .find(|phase| phase.target == target)
                .map(|phase| phase.deliveries_per_sec)
        };
        let ratio_of_ceiling = match (rate_of(Target::Parley), rate_of(Target::Ceiling)) {
            (Some(parley), Some(ceiling)) if ceiling > 0.0 => Some(parley / ceiling),
            _ => None,
        };
        let passed = phases
            .iter()
            .all(|phase| phase.correctness.passed && phase.failure.is_none());
        Self {
            scenario,
            started_at,
            phases,
            ratio_of_ceiling,
            passed,
        }
    }
}

fn latency_row(name: &str, summary: &LatencySummary) -> String {
    format!(
        "  {name:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        summary.count,
        format_micros(summary.p50_us),
        format_micros(summary.p90_us),
        format_micros(summary.p99_us),
        format_micros(summary.p999_us),
        format_micros(summary.max_us),
    )
}

/// The CPU line: each measured process's CPU seconds over the window, and the cost per send
/// and per delivery.
fn print_cpu(phase: &PhaseReport) {
    if phase.server_cpu.is_empty() {
        return;
    }
    let processes: Vec<String> = phase
        .server_cpu
        .iter()
        .map(|process| format!("{}[{}] {:.2}s", process.name, process.pid, process.cpu_secs))
        .collect();
    let per = |value: Option<f64>| value.map_or("-".to_owned(), |micros| format!("{micros:.1}µs"));
    println!(
        "  cpu in the window: {}; per send {}, per delivery {}",
        processes.join(", "),
        per(phase.cpu_us_per_send),
        per(phase.cpu_us_per_delivery)
    );
}

/// Prints the summary table to stdout.
pub fn print_summary(report: &Report) {
    println!("== {} ==", report.scenario.kind.as_str());
    for phase in &report.phases {
        println!(
            "target {:?} ({}): {} of {} connections, window {:.1}s",
            phase.target,
            phase.urls.join(", "),
            phase.connections_opened,
            phase.connections_requested,
            phase.window_secs
        );
        println!(
            "  sends {} ({:.0}/s)  acks {}  deliveries {} ({:.0}/s)  other requests {}",
            phase.sends,
            phase.sends_per_sec,
            phase.acks,
            phase.deliveries,
            phase.deliveries_per_sec,
            phase.other_requests
        );
        print_cpu(phase);
        println!(
            "  {:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        println!("{}", latency_row("send->ack", &phase.ack_latency));
        println!("{}", latency_row("send->delivery", &phase.delivery_latency));
        if phase.window_delivery_latency.count > 0 {
            println!(
                "{}",
                latency_row("  in the window", &phase.window_delivery_latency)
            );
        }
        println!(
            "{}",
            latency_row("reconnect+sync", &phase.reconnect_latency)
        );
        println!(
            "  reconnects {}  connect failures {}  errors {:?}",
            phase.reconnects, phase.connect_failures, phase.errors
        );
        let correctness = &phase.correctness;
        println!(
            "  correctness {}: duplicates {} out_of_order {} missed_live {} missing {} (live_gaps {} recovered_by_sync {} sync_overlap {}, recovered_at_end {}, ceiling unrecoverable {}, {} sessions verified)",
            if correctness.passed { "PASS" } else { "FAIL" },
            correctness.duplicates,
            correctness.out_of_order,
            correctness.missed_live,
            correctness.missing,
            correctness.live_gaps,
            correctness.recovered_by_sync,
            correctness.sync_overlap,
            correctness.recovered_at_end,
            correctness.unrecoverable,
            correctness.sessions_verified,
        );
        if !phase.extra.is_null() {
            println!("  {}", phase.extra);
        }
        if let Some(failure) = &phase.failure {
            println!("  FAILED: {failure}");
        }
    }
    if let Some(ratio) = report.ratio_of_ceiling {
        println!("parley deliveries/s as a ratio of the ceiling: {ratio:.3}");
    }
    println!("result: {}", if report.passed { "PASS" } else { "FAIL" });
}
