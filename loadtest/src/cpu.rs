//! CPU time of server processes over the measured window, from `/proc/<pid>/stat` (user +
//! system time of every thread of the process), for the per-message cost (issue #14): CPU
//! seconds per send and per delivery, next to the bare broadcaster's in the same run.

use std::process::Command;

use anyhow::{anyhow, Context};
use serde::Serialize;

/// One process's CPU time over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    pub pid: u32,
    /// The process's command name (`/proc/<pid>/comm`).
    pub name: String,
    pub cpu_secs: f64,
}

/// A process's CPU time at one moment.
struct Reading {
    pid: u32,
    name: String,
    ticks: u64,
}

/// CPU readings of some processes at the start of a window.
pub struct CpuMeter {
    start: Vec<Reading>,
    ticks_per_sec: f64,
}

impl CpuMeter {
    /// Reads the processes' CPU time now. Fails when one cannot be read.
    pub fn start(pids: &[u32]) -> anyhow::Result<Self> {
        Ok(Self {
            start: pids
                .iter()
                .map(|&pid| read(pid))
                .collect::<Result<_, _>>()?,
            ticks_per_sec: ticks_per_sec(),
        })
    }

    /// The CPU time each process used since [`CpuMeter::start`].
    pub fn stop(self) -> anyhow::Result<Vec<ProcessCpu>> {
        self.start
            .into_iter()
            .map(|before| {
                let after = read(before.pid)?;
                Ok(ProcessCpu {
                    pid: before.pid,
                    name: before.name,
                    cpu_secs: after.ticks.saturating_sub(before.ticks) as f64 / self.ticks_per_sec,
                })
            })
            .collect()
    }
}

/// Microseconds of CPU of all `processes` per event (send or delivery), when there were any.
pub fn micros_per(processes: &[ProcessCpu], events: u64) -> Option<f64> {
    let total: f64 = processes.iter().map(|process| process.cpu_secs).sum();
    (!processes.is_empty() && events > 0).then(|| total * 1e6 / events as f64)
}

fn read(pid: u32) -> anyhow::Result<Reading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().to_owned())
        .unwrap_or_default();
    Ok(Reading {
        pid,
        name,
        ticks: ticks_of(&stat).ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat: {stat}"))?,
    })
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line; the command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`.
fn ticks_of(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The kernel's clock ticks per second for `/proc` times (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_the_command_name() {
        let stat = "4242 (parley (x) 1) S 1 2 3 4 5 6 7 8 9 10 1234 56 0 0 20 0 9 0 100 0 0";
        assert_eq!(ticks_of(stat), Some(1290));
    }

    #[test]
    fn this_process_can_be_measured() {
        let meter = CpuMeter::start(&[std::process::id()]).expect("start");
        let spinning = std::time::Instant::now();
        let mut spin = 0u64;
        while spinning.elapsed() < std::time::Duration::from_millis(200) {
            spin = std::hint::black_box(spin.wrapping_add(spin >> 3 ^ 7));
        }
        let used = meter.stop().expect("stop");
        assert_eq!(used.len(), 1);
        assert!(used[0].cpu_secs > 0.0, "{used:?}");
        assert!(!used[0].name.is_empty());
    }

    #[test]
    fn cost_per_event_adds_the_processes() {
        let processes = [
            ProcessCpu {
                pid: 1,
                name: "a".into(),
                cpu_secs: 1.0,
            },
            ProcessCpu {
                pid: 2,
                name: "b".into(),
                cpu_secs: 0.5,
            },
        ];
        assert_eq!(micros_per(&processes, 1500), Some(1000.0));
        assert_eq!(micros_per(&processes, 0), None);
        assert_eq!(micros_per(&[], 10), None);
    }
}
