//! What a client receives: events (`message.new` checked against the tracker, `member.joined`
//! adopted) and replies (matched to their requests; send answers settle the outbox).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use wire::events::ServerEvent;
use wire::ops::SendAck;
use wire::{ClientMsgId, ErrorCode, Message};

use super::{scheduled_of, Client, IncomingReply, Pending, Reply, Target};
use crate::outbox::AckOutcome;
use crate::tracker::Arrival;

impl Client {
    pub(super) fn handle_text(self: &Arc<Self>, text: &str) {
        if text.starts_with("{\"ev\"") {
            self.handle_event(text);
            return;
        }
        match serde_json::from_str::<IncomingReply>(text) {
            Ok(reply) if reply.result.is_some() || reply.error.is_some() => {
                self.handle_reply(reply)
            }
            _ => self.handle_event(text),
        }
    }

    fn handle_event(self: &Arc<Self>, text: &str) {
        let Ok(event) = serde_json::from_str::<ServerEvent>(text) else {
            self.stats().error("undecodable_frame");
            return;
        };
        match event {
            ServerEvent::MessageNew { message } => self.message_new(&message),
            ServerEvent::MemberJoined {
                user_ids,
                conversation,
                ..
            } if user_ids.contains(&self.user_id) => {
                self.tracker
                    .lock()
                    .expect("tracker lock")
                    .adopt(&conversation.conversation_id, conversation.last_seq.0);
            }
            _ => {}
        }
    }

    fn message_new(self: &Arc<Self>, message: &Message) {
        if let Some(views) = &self.views {
            views.saw(
                &message.conversation_id,
                message.seq.0,
                message.message_id.as_str(),
            );
        }
        let arrival = self
            .tracker
            .lock()
            .expect("tracker lock")
            .live(&message.conversation_id, message.seq.0);
        let stats = self.stats();
        let correctness = &stats.correctness;
        match arrival {
            Arrival::Duplicate | Arrival::OutOfOrder => {
                let counter = if arrival == Arrival::Duplicate {
                    &correctness.duplicates
                } else {
                    &correctness.out_of_order
                };
                if counter.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!(
                        "correctness: {} got {} seq {} ({}) live {:?}",
                        self.user_id,
                        message.conversation_id,
                        message.seq.0,
                        message.message_id,
                        arrival
                    );
                }
                return;
            }
            Arrival::Overlap => {
                correctness.sync_overlap.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Arrival::AppliedAfterGap => {
                correctness.live_gaps.fetch_add(1, Ordering::Relaxed);
                if self.context.target == Target::Parley {
                    let client = self.clone();
                    tokio::spawn(async move {
                        if client.sync_all().await.is_err() {
                            client.stats().error("sync_failed");
                        }
                    });
                }
            }
            Arrival::Applied => {}
        }
        stats.deliveries.fetch_add(1, Ordering::Relaxed);
        let now_us = stats.clock.now_us();
        if let Some(scheduled_us) = scheduled_of(&message.text) {
            stats.record_delivery(scheduled_us, now_us);
            // The ceiling has no ack: the sender's own copy coming back stands for it.
            if self.context.target == Target::Ceiling && message.sender_id == self.user_id {
                stats.acks.fetch_add(1, Ordering::Relaxed);
                stats
                    .ack_latency
                    .record(now_us.saturating_sub(scheduled_us));
                self.context
                    .record_ack(&message.conversation_id, message.seq.0);
            }
        }
    }

    fn handle_reply(self: &Arc<Self>, reply: IncomingReply) {
        let pending = reply
            .re
            .and_then(|id| self.pending.lock().expect("pending lock").remove(&id));
        let outcome = match (reply.result, reply.error) {
            (_, Some(error)) => Err(error),
            (Some(result), None) => Ok(result),
            (None, None) => return,
        };
        if let Err(error) = &outcome {
            self.stats().error(error.code.as_str());
        }
        match pending {
            Some(Pending::Send(client_msg_id)) => self.send_answered(&client_msg_id, outcome),
            Some(Pending::Call(reply_sender)) => {
                let _ = reply_sender.send(outcome);
            }
            Some(Pending::Fire) | None => {}
        }
    }

    /// The answer to one attempt of a send: an ack, a retryable `unavailable` (resent after a
    /// back-off) or a refusal (dropped).
    fn send_answered(self: &Arc<Self>, client_msg_id: &ClientMsgId, outcome: Reply) {
        if let (Some(answers), Err(error)) = (&self.context.answers, &outcome) {
            answers.record(error.code.as_str(), 0);
        }
        let result = match outcome {
            Ok(result) => result,
            Err(error) if error.code == ErrorCode::Unavailable => {
                let retry_after = error.retry_after_ms.map(Duration::from_millis);
                let wait = self
                    .outbox
                    .lock()
                    .expect("outbox lock")
                    .retryable(client_msg_id, retry_after);
                if let Some(wait) = wait {
                    let client = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        if client.is_settled() {
                            client.resend_waiting();
                        }
                    });
                }
                return;
            }
            Err(_) => {
                self.outbox
                    .lock()
                    .expect("outbox lock")
                    .refused(client_msg_id);
                return;
            }
        };
        let Ok(ack) = serde_json::from_value::<SendAck>(result) else {
            self.stats().error("undecodable_ack");
            return;
        };
        let outcome = self
            .outbox
            .lock()
            .expect("outbox lock")
            .acked(client_msg_id, &ack);
        let stats = self.stats();
        match outcome {
            AckOutcome::First {
                conversation_id,
                scheduled_us,
            } => {
                let latency_us = stats.clock.now_us().saturating_sub(scheduled_us);
                stats.acks.fetch_add(1, Ordering::Relaxed);
                stats.ack_latency.record(latency_us);
                self.context.record_ack(&conversation_id, ack.seq.0);
                if let Some(answers) = &self.context.answers {
                    answers.record("ok", latency_us);
                }
            }
            AckOutcome::Repeated => {
                stats.repeated_acks.fetch_add(1, Ordering::Relaxed);
                if let Some(answers) = &self.context.answers {
                    answers.record("ok_repeated", 0);
                }
            }
            AckOutcome::Changed { first } => {
                stats
                    .correctness
                    .ack_changed
                    .fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "correctness: {} {} was acked as seq {} ({}), then as seq {} ({})",
                    first.conversation_id,
                    client_msg_id,
                    first.seq,
                    first.message_id,
                    ack.seq.0,
                    ack.message_id
                );
            }
            AckOutcome::Unknown => {}
        }
    }
}
