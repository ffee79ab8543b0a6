//! `chat`: a realistic mix. Every user has two direct conversations (with the next and the
//! previous user) and one group of `group_size`; each user acts `rate` times a second (open
//! loop), picking by weight: send (to a group or a direct conversation), typing, a read
//! receipt, a history read, or a reconnect (drop, reconnect, `sync`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use wire::ops::{ConversationRef, HistoryArgs, Op, ReceiptArgs};
use wire::{ConversationId, ConversationKind, Seq};

use super::{create_conversation, stagger, user, Load, Outcome, Phase};
use crate::client::Client;

#[derive(Clone, Default)]
struct UserConversations {
    direct: Vec<ConversationId>,
    group: Option<ConversationId>,
}

impl UserConversations {
    /// The conversation an action goes to: the group when `to_group` (and the user has one),
    /// else one of the direct ones (`pick` chooses); `None` when the user has none.
    fn pick(&self, to_group: bool, pick: usize) -> Option<ConversationId> {
        match (&self.group, to_group) {
            (Some(group), true) => Some(group.clone()),
            _ if !self.direct.is_empty() => Some(self.direct[pick % self.direct.len()].clone()),
            (group, _) => group.clone(),
        }
    }
}

#[derive(Clone, Copy)]
enum Action {
    Send,
    Typing,
    Receipt,
    History,
    Reconnect,
}

/// The scenario's mix of actions, by weight.
#[derive(Clone, Copy)]
struct Mix {
    weights: [(Action, f64); 5],
    total_weight: f64,
    group_send_fraction: f64,
}

impl Mix {
    fn of(scenario: &crate::scenario::Scenario) -> Self {
        let weights = [
            (Action::Send, scenario.weight_send),
            (Action::Typing, scenario.weight_typing),
            (Action::Receipt, scenario.weight_receipt),
            (Action::History, scenario.weight_history),
            (Action::Reconnect, scenario.weight_reconnect),
        ];
        Self {
            weights,
            total_weight: weights.iter().map(|(_, weight)| weight).sum(),
            group_send_fraction: scenario.group_send_fraction,
        }
    }

    /// The next action, whether it goes to the group, and a number to pick a direct
    /// conversation with.
    fn roll(&self) -> (Action, bool, usize) {
        let mut rng = rand::rng();
        let mut roll = rng.random::<f64>() * self.total_weight;
        let mut chosen = Action::Reconnect;
        for (action, weight) in self.weights {
            if roll < weight {
                chosen = action;
                break;
            }
            roll -= weight;
        }
        (
            chosen,
            rng.random::<f64>() < self.group_send_fraction,
            rng.random::<u32>() as usize,
        )
    }
}

pub(super) async fn run(phase: &Phase<'_>) -> anyhow::Result<Outcome> {
    let scenario = phase.scenario;
    let count = scenario.connections.max(2);
    let user_ids = (0..count).map(|index| user(&phase.prefix, index)).collect();
    let clients = phase.make_clients(user_ids, vec![None; count]).await?;
    let opened = phase.connect_every(&clients).await?;
    let group_size = scenario.group_size.max(2);
    let conversations = create_conversations(&clients, group_size).await?;

    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(scenario.duration_secs);
    let schedule = Schedule {
        start,
        end,
        period: Duration::from_secs_f64(1.0 / scenario.rate),
        users: count,
        clock: phase.stats().clock,
        mix: Mix::of(scenario),
    };
    let tasks = clients
        .iter()
        .zip(conversations)
        .map(|(client, conversations)| tokio::spawn(schedule.act_as(client.clone(), conversations)))
        .collect();
    let extra = serde_json::json!({ "users": count, "group_size": group_size });
    Ok(phase
        .finish(Load { start, end, tasks }, &clients, opened, extra)
        .await)
}

/// Every user's two direct conversations (with the next and the previous user) and group.
async fn create_conversations(
    clients: &[Arc<Client>],
    group_size: usize,
) -> anyhow::Result<Vec<UserConversations>> {
    let count = clients.len();
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
    Ok(conversations)
}

/// When and what every user does (open loop: one action per `period`, whatever the answers).
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    end: Instant,
    period: Duration,
    /// How many users share the schedule: their first actions are spread evenly over the
    /// first period.
    users: usize,
    clock: crate::stats::Clock,
    mix: Mix,
}

impl Schedule {
    /// One user's actions until the end, its start spread over the first period.
    async fn act_as(self, client: Arc<Client>, conversations: UserConversations) {
        let mut due = self.start + stagger(self.period, client.index, self.users);
        let mut typing = false;
        while due < self.end {
            tokio::time::sleep_until(due.into()).await;
            let (action, to_group, pick) = self.mix.roll();
            let Some(conversation_id) = conversations.pick(to_group, pick) else {
                break;
            };
            if client.is_ready() {
                act(
                    &client,
                    action,
                    &conversation_id,
                    self.clock.micros_of(due),
                    &mut typing,
                );
            }
            due += self.period;
        }
    }
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
