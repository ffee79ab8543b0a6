//! `idle`: open N connections, hold them, and report the server's RSS per connection:
//! (VmRSS with N open − VmRSS before) / N, from `/proc/<pid>/status`.

use std::time::{Duration, Instant};

use super::{user, Outcome, Phase};

pub(super) async fn run(phase: &Phase<'_>) -> anyhow::Result<Outcome> {
    let scenario = phase.scenario;
    let count = scenario.connections;
    let user_ids = (0..count).map(|index| user(&phase.prefix, index)).collect();
    let clients = phase.make_clients(user_ids, vec![None; count]).await?;
    let pid = phase.options.server_pid;
    let rss = |pid: Option<u32>| pid.and_then(|pid| crate::net::rss_kib(pid).ok());
    let rss_before_kib = rss(pid);
    let connect_started = Instant::now();
    let opened = phase.connect_all(&clients).await;
    let connect_secs = connect_started.elapsed().as_secs_f64();
    // Let the server finish setting sessions up (presence, registrations) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_at_n_kib = rss(pid);
    let hold_started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(scenario.hold_secs)).await;
    let rss_after_hold_kib = rss(pid);
    let held = clients.iter().filter(|client| client.is_ready()).count() as u64;
    let per_connection_bytes = match (rss_before_kib, rss_at_n_kib) {
        (Some(before), Some(at_n)) if opened > 0 => {
            Some((at_n.saturating_sub(before) * 1024) as f64 / opened as f64)
        }
        _ => None,
    };
    for client in &clients {
        client.close();
    }
    let failure = if opened < count as u64 {
        Some(format!("only {opened} of {count} connections opened"))
    } else if held < opened {
        Some(format!(
            "{} connection(s) dropped while idle",
            opened - held
        ))
    } else {
        None
    };
    Ok(Outcome {
        connections_opened: opened,
        window: hold_started.elapsed(),
        window_sends: 0,
        window_deliveries: 0,
        extra: serde_json::json!({
            "server_pid": pid,
            "connect_secs": connect_secs,
            "connections_held": held,
            "rss_before_kib": rss_before_kib,
            "rss_at_n_kib": rss_at_n_kib,
            "rss_after_hold_kib": rss_after_hold_kib,
            "rss_per_connection_bytes": per_connection_bytes,
        }),
        failure,
    })
}
