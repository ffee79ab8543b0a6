//! `chat`: a realistic mix. Every user has two direct conversations (with the next and the
//! previous user) and one group of `group_size`; each user acts `rate` times a second (open
//! loop), picking by weight: send (to a group or a direct conversation), typing, a read
//! receipt, a history read, or a reconnect (drop, reconnect, `sync`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use wire::ops::{ConversationRef, HistoryArgs, Op, ReceiptArgs};
use wire::{ConversationId, ConversationKind, Seq};

use super::{create_conversation, user, Outcome, Phase};
use crate::client::Client;

#[derive(Clone, Default)]
struct UserConversations {
    direct: Vec<ConversationId>,
    group: Option<ConversationId>,
}

enum Action {
    Send,
    Typing,
    Receipt,
    History,
    Reconnect,
}

pub(super) async fn run(phase: &Phase<'_>) -> anyhow::Result<Outcome> {
    let scenario = phase.scenario;
    let count = scenario.connections.max(2);
    let user_ids = (0..count).map(|index| user(&phase.prefix, index)).collect();
    let clients = phase.make_clients(user_ids, vec![None; count]).await?;
    let opened = phase.connect_every(&clients).await?;

    let mut conversations = vec![UserConversations::default(); count];
    for index in 0..count {
        let next = (index + 1) % count;
        if next == index || (count == 2 && index == 1) {
            continue;
        }
        let (conversation_id, last_seq) = create_conversation(
            &clients[index],
            ConversationKind::Direct,
            vec![clients[next].user_id.clone()],
        )
        .await?;
        for member in [index, next] {
            clients[member].watch(&conversation_id, last_seq);
            conversations[member].direct.push(conversation_id.clone());
        }
    }
    let group_size = scenario.group_size.max(2);
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
            conversations[member].group = Some(conversation_id.clone());
        }
    }

    let weights = [
        scenario.weight_send,
        scenario.weight_typing,
        scenario.weight_receipt,
        scenario.weight_history,
        scenario.weight_reconnect,
    ];
    let total_weight: f64 = weights.iter().sum();
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(scenario.duration_secs);
    let period = Duration::from_secs_f64(1.0 / scenario.rate);
    let clock = phase.stats().clock;
    let group_send_fraction = scenario.group_send_fraction;
    let actors: Vec<_> = clients
        .iter()
        .zip(conversations)
        .map(|(client, conversations)| {
            let client: Arc<Client> = client.clone();
            let offset = period.mul_f64((client.index % 997) as f64 / 997.0);
            tokio::spawn(async move {
                let mut due = start + offset;
                let mut typing = false;
                while due < end {
                    tokio::time::sleep_until(due.into()).await;
                    let (action, pick_group, pick) = {
                        let mut rng = rand::rng();
                        let mut roll = rng.random::<f64>() * total_weight;
                        let mut action = Action::Reconnect;
                        for (candidate, weight) in [
                            Action::Send,
                            Action::Typing,
                            Action::Receipt,
                            Action::History,
                            Action::Reconnect,
                        ]
                        .into_iter()
                        .zip(weights)
                        {
                            if roll < weight {
                                action = candidate;
                                break;
                            }
                            roll -= weight;
                        }
                        (
                            action,
                            rng.random::<f64>() < group_send_fraction,
                            rng.random::<u32>() as usize,
                        )
                    };
                    let conversation_id = match (&conversations.group, pick_group) {
                        (Some(group), true) => group.clone(),
                        _ if !conversations.direct.is_empty() => {
                            conversations.direct[pick % conversations.direct.len()].clone()
                        }
                        (Some(group), false) => group.clone(),
                        (None, _) => break,
                    };
                    if client.is_ready() {
                        act(
                            &client,
                            action,
                            &conversation_id,
                            clock.micros_of(due),
                            &mut typing,
                        );
                    }
                    due += period;
                }
            })
        })
        .collect();
    let (window, window_sends, window_deliveries) = phase.measure_window(start, end).await;
    for actor in actors {
        let _ = actor.await;
    }
    phase.drain_and_verify(&clients).await;
    Ok(Outcome {
        connections_opened: opened,
        window,
        window_sends,
        window_deliveries,
        extra: serde_json::json!({ "users": count, "group_size": group_size }),
        failure: None,
    })
}

fn act(
    client: &Arc<Client>,
    action: Action,
    conversation_id: &ConversationId,
    scheduled_us: u64,
    typing: &mut bool,
) {
    let reference = ConversationRef {
        conversation_id: conversation_id.clone(),
    };
    match action {
        Action::Send => client.send_message(conversation_id, scheduled_us),
        Action::Typing => {
            *typing = !*typing;
            let op = if *typing {
                Op::TypingStart
            } else {
                Op::TypingStop
            };
            client.fire(op, reference);
        }
        Action::Receipt => {
            let seq = client.applied(conversation_id);
            if seq > 0 {
                client.fire(
                    Op::ReceiptRead,
                    ReceiptArgs {
                        conversation_id: conversation_id.clone(),
                        seq: Seq(seq),
                    },
                );
            }
        }
        Action::History => client.fire(
            Op::HistoryGet,
            HistoryArgs {
                conversation_id: conversation_id.clone(),
                before_seq: None,
                after_seq: None,
                limit: Some(20),
            },
        ),
        Action::Reconnect => {
            client.drop_connection();
            let client = client.clone();
            tokio::spawn(async move { client.reconnect(Instant::now()).await });
        }
    }
}
