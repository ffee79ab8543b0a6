//! `fanout`: `rooms` group conversations of `members` members each; `publishers_per_room`
//! members of each room publish at `rate` messages/s (open loop). Against the ceiling the
//! rooms are `ws-ceiling` rooms and each publisher's stream is its own pseudo-conversation.

use std::time::{Duration, Instant};

use wire::{ConversationId, ConversationKind};

use super::{create_conversation, user, Load, Outcome, Phase};
use crate::client::Target;

/// A ceiling pseudo-conversation id, as long as Parley's (a UUID), so frames have equal sizes.
fn ceiling_conversation(room: usize, publisher: usize) -> ConversationId {
    ConversationId::new(format!("{room:08x}-0000-7000-8000-{publisher:012x}"))
}

pub(super) async fn run(phase: &Phase<'_>) -> anyhow::Result<Outcome> {
    let scenario = phase.scenario;
    let (rooms, members, publishers) = (
        scenario.rooms,
        scenario.members,
        scenario.publishers_per_room,
    );
    let target = phase.context.target;
    let mut user_ids = Vec::with_capacity(rooms * members);
    let mut room_names = Vec::with_capacity(rooms * members);
    for room in 0..rooms {
        for member in 0..members {
            user_ids.push(user(&phase.prefix, format!("r{room}-m{member}")));
            room_names
                .push((target == Target::Ceiling).then(|| format!("{}-r{room}", phase.prefix)));
        }
    }
    let clients = phase.make_clients(user_ids, room_names).await?;
    let opened = phase.connect_every(&clients).await?;

    // One conversation per publisher stream: Parley's room conversation is shared by its
    // publishers; each ceiling publisher numbers its own stream.
    let mut streams: Vec<(usize, ConversationId)> = Vec::new();
    for room in 0..rooms {
        let room_clients = &clients[room * members..(room + 1) * members];
        match target {
            Target::Parley => {
                let others = room_clients[1..]
                    .iter()
                    .map(|client| client.user_id.clone())
                    .collect();
                let (conversation_id, last_seq) =
                    create_conversation(&room_clients[0], ConversationKind::Group, others).await?;
                for client in room_clients {
                    client.watch(&conversation_id, last_seq);
                }
                for publisher in 0..publishers {
                    streams.push((room * members + publisher, conversation_id.clone()));
                }
            }
            Target::Ceiling => {
                for publisher in 0..publishers {
                    let conversation_id = ceiling_conversation(room, publisher);
                    for client in room_clients {
                        client.watch(&conversation_id, 0);
                    }
                    streams.push((room * members + publisher, conversation_id));
                }
            }
        }
    }

    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(scenario.duration_secs);
    let count = streams.len();
    let tasks = streams
        .into_iter()
        .enumerate()
        .map(|(position, (index, conversation_id))| {
            let client = clients[index].clone();
            phase.publish((position, count), client, conversation_id, start, end)
        })
        .collect();
    let extra = serde_json::json!({
        "rooms": rooms,
        "members": members,
        "publishers_per_room": scenario.publishers_per_room,
        "offered_sends_per_sec": (rooms * scenario.publishers_per_room) as f64 * scenario.rate,
        "offered_deliveries_per_sec": (rooms * scenario.publishers_per_room * members) as f64 * scenario.rate,
    });
    Ok(phase
        .finish(Load { start, end, tasks }, &clients, opened, extra)
        .await)
}
