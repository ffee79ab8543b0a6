//! `reconnect-storm`: users in groups of `storm_group_size`, one publisher per group at
//! `rate`; `storms` times during the load every client (but the publishers, with
//! `storm_spare_publishers`) drops its connection at once and reconnects at once, then
//! `sync`s. Every acked message must end up at every member.

use std::time::{Duration, Instant};

use wire::ConversationKind;

use super::{create_conversation, user, Load, Outcome, Phase};

pub(super) async fn run(phase: &Phase<'_>) -> anyhow::Result<Outcome> {
    let scenario = phase.scenario;
    let count = scenario.connections.max(2);
    let user_ids = (0..count).map(|index| user(&phase.prefix, index)).collect();
    let clients = phase.make_clients(user_ids, vec![None; count]).await?;
    let opened = phase.connect_every(&clients).await?;

    let group_size = scenario.storm_group_size.max(2);
    let mut streams = Vec::new();
    for first in (0..count).step_by(group_size) {
        let members: Vec<usize> = (first..(first + group_size).min(count)).collect();
        let others = members[1..]
            .iter()
            .map(|&member| clients[member].user_id.clone())
            .collect();
        let (conversation_id, last_seq) =
            create_conversation(&clients[first], ConversationKind::Group, others).await?;
        for &member in &members {
            clients[member].watch(&conversation_id, last_seq);
        }
        streams.push((first, conversation_id));
    }

    let start = Instant::now() + Duration::from_millis(200);
    let duration = Duration::from_secs_f64(scenario.duration_secs);
    let end = start + duration;
    let count = streams.len();
    let mut tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(position, (index, conversation_id))| {
            let client = clients[index].clone();
            phase.publish((position, count), client, conversation_id, start, end)
        })
        .collect();
    let storms = scenario.storms.max(1);
    let storm_clients: Vec<_> = clients
        .iter()
        .filter(|client| !(scenario.storm_spare_publishers && client.index % group_size == 0))
        .cloned()
        .collect();
    let storm_task = tokio::spawn(async move {
        for storm in 1..=storms {
            let at = start + duration.mul_f64(storm as f64 / (storms + 1) as f64);
            tokio::time::sleep_until(at.into()).await;
            eprintln!(
                "storm {storm}: dropping {} connections",
                storm_clients.len()
            );
            let dropped_at = Instant::now();
            for client in &storm_clients {
                client.drop_connection();
            }
            for client in &storm_clients {
                tokio::spawn(client.clone().reconnect(dropped_at));
            }
        }
    });
    tasks.push(storm_task);
    let extra = serde_json::json!({ "users": count, "group_size": group_size, "storms": storms });
    Ok(phase
        .finish(Load { start, end, tasks }, &clients, opened, extra)
        .await)
}
