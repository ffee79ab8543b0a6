//! A client's sends until they are acknowledged, as a real client keeps them: a send that got
//! no answer (the connection died) or `unavailable` is resent with the SAME `client_msg_id`
//! (the protocol's idempotent send: a resend of a stored message answers the original ack),
//! after a reconnect or after a back-off, at most `max_attempts` times in all; then the client
//! gives up on it. The acks it got are kept, so that a later, different ack for the same
//! `client_msg_id` is caught, and so that a run can check every acked message against the store.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use wire::ops::SendAck;
use wire::{ClientMsgId, ConversationId};

/// Where an unacknowledged send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// Written on the current session; its answer may come.
    InFlight,
    /// No answer will come (session lost) or the answer was retryable: to be resent.
    Waiting,
}

/// One message the client wants sent, as it is (re)sent.
#[derive(Debug, Clone)]
pub struct OutgoingSend {
    pub conversation_id: ConversationId,
    pub client_msg_id: ClientMsgId,
    pub text: String,
    /// When the first attempt was due (run clock, µs): ack latency counts from there.
    pub scheduled_us: u64,
    /// Attempts made so far (the first send included).
    pub attempts: u32,
    state: SendState,
}

/// An acknowledged message, as the sender believes it stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckedSend {
    pub conversation_id: ConversationId,
    pub client_msg_id: ClientMsgId,
    pub message_id: String,
    pub seq: u64,
}

/// A message the client gave up on (never acked): it may be stored at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbandonedSend {
    pub conversation_id: ConversationId,
    pub client_msg_id: ClientMsgId,
}

/// What an ack meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// The first ack of this `client_msg_id`; `scheduled_us` of its first attempt.
    First {
        conversation_id: ConversationId,
        scheduled_us: u64,
    },
    /// A resend answered with the ack already known: the idempotent send at work.
    Repeated,
    /// A resend answered with another message than the first ack: a duplicate.
    Changed { first: AckedSend },
    /// An answer for a send the outbox does not know (given up on, or never sent).
    Unknown,
}

/// The next attempts to make, and the sends given up on by this round.
#[derive(Debug, Default)]
pub struct ResendRound {
    pub resend: Vec<OutgoingSend>,
    pub given_up: u64,
}

#[derive(Debug)]
pub struct Outbox {
    max_attempts: u32,
    unacked: HashMap<ClientMsgId, OutgoingSend>,
    acked: HashMap<ClientMsgId, AckedSend>,
    abandoned: Vec<AbandonedSend>,
}

impl Outbox {
    pub fn new(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            unacked: HashMap::new(),
            acked: HashMap::new(),
            abandoned: Vec::new(),
        }
    }

    /// A new message, written now (first attempt).
    pub fn sent(
        &mut self,
        conversation_id: ConversationId,
        client_msg_id: ClientMsgId,
        text: String,
        scheduled_us: u64,
    ) -> OutgoingSend {
        let send = OutgoingSend {
            conversation_id,
            client_msg_id: client_msg_id.clone(),
            text,
            scheduled_us,
            attempts: 1,
            state: SendState::InFlight,
        };
        self.unacked.insert(client_msg_id, send.clone());
        send
    }

    /// The server acknowledged `client_msg_id` with `ack`.
    pub fn acked(&mut self, client_msg_id: &ClientMsgId, ack: &SendAck) -> AckOutcome {
        let pending = self.unacked.remove(client_msg_id);
        if let Some(first) = self.acked.get(client_msg_id) {
            if first.message_id == ack.message_id.as_str() && first.seq == ack.seq.0 {
                return AckOutcome::Repeated;
            }
            return AckOutcome::Changed {
                first: first.clone(),
            };
        }
        let Some(send) = pending else {
            return AckOutcome::Unknown;
        };
        self.acked.insert(
            client_msg_id.clone(),
            AckedSend {
                conversation_id: send.conversation_id.clone(),
                client_msg_id: client_msg_id.clone(),
                message_id: ack.message_id.as_str().to_owned(),
                seq: ack.seq.0,
            },
        );
        AckOutcome::First {
            conversation_id: send.conversation_id,
            scheduled_us: send.scheduled_us,
        }
    }

    /// The answer was retryable (`unavailable`): resend later. Returns the back-off to wait
    /// (the server's `retry_after_ms` or more, doubling with the attempts, at most 5 s), or
    /// `None` when the outbox no longer holds the send.
    pub fn retryable(
        &mut self,
        client_msg_id: &ClientMsgId,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let send = self.unacked.get_mut(client_msg_id)?;
        send.state = SendState::Waiting;
        Some(backoff(send.attempts, retry_after))
    }

    /// The answer was a definite refusal (`bad_request`, `not_member`, ...): never resent.
    pub fn refused(&mut self, client_msg_id: &ClientMsgId) {
        self.unacked.remove(client_msg_id);
    }

    /// The session died: no answer will come for what was in flight.
    pub fn session_lost(&mut self) {
        for send in self.unacked.values_mut() {
            send.state = SendState::Waiting;
        }
    }

    /// Takes every waiting send for its next attempt (marked in flight), or gives it up when
    /// it has had its attempts.
    pub fn resend_round(&mut self) -> ResendRound {
        let mut round = ResendRound::default();
        let max_attempts = self.max_attempts;
        let mut exhausted = Vec::new();
        for send in self.unacked.values_mut() {
            if send.state != SendState::Waiting {
                continue;
            }
            if send.attempts >= max_attempts {
                exhausted.push(send.client_msg_id.clone());
                continue;
            }
            send.attempts += 1;
            send.state = SendState::InFlight;
            round.resend.push(send.clone());
        }
        for client_msg_id in exhausted {
            if let Some(send) = self.unacked.remove(&client_msg_id) {
                self.abandoned.push(AbandonedSend {
                    conversation_id: send.conversation_id,
                    client_msg_id,
                });
                round.given_up += 1;
            }
        }
        round
    }

    /// A resend that could not even be written (no session): it waits for the reconnect.
    pub fn not_written(&mut self, client_msg_id: &ClientMsgId) {
        if let Some(send) = self.unacked.get_mut(client_msg_id) {
            send.state = SendState::Waiting;
        }
    }

    /// Sends not yet acked nor given up on.
    pub fn outstanding(&self) -> usize {
        self.unacked.len()
    }

    /// Gives up on everything still unacked (the run is over).
    pub fn abandon_all(&mut self) -> u64 {
        let left: Vec<OutgoingSend> = self.unacked.drain().map(|(_, send)| send).collect();
        let count = left.len() as u64;
        self.abandoned
            .extend(left.into_iter().map(|send| AbandonedSend {
                conversation_id: send.conversation_id,
                client_msg_id: send.client_msg_id,
            }));
        count
    }

    pub fn acked_sends(&self) -> impl Iterator<Item = &AckedSend> {
        self.acked.values()
    }

    pub fn abandoned_sends(&self) -> &[AbandonedSend] {
        &self.abandoned
    }
}

/// The wait before attempt `attempts + 1`: 250 ms doubling per attempt, at most 5 s, never
/// less than the server asked for.
fn backoff(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let doubling = Duration::from_millis(250) * 2u32.saturating_pow(attempts.saturating_sub(1));
    doubling
        .min(Duration::from_secs(5))
        .max(retry_after.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{MessageId, Seq};

    fn conversation() -> ConversationId {
        ConversationId::new("c")
    }

    fn key(name: &str) -> ClientMsgId {
        ClientMsgId::new(name)
    }

    fn ack(message_id: &str, seq: u64) -> SendAck {
        SendAck {
            message_id: MessageId::new(message_id),
            seq: Seq(seq),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_send_lost_with_its_session_is_resent_with_the_same_key_and_text() {
        let mut outbox = Outbox::new(3);
        outbox.sent(conversation(), key("a"), "hi".to_owned(), 7);
        assert!(outbox.resend_round().resend.is_empty(), "still in flight");
        outbox.session_lost();
        let round = outbox.resend_round();
        assert_eq!(round.resend.len(), 1);
        assert_eq!(round.resend[0].client_msg_id, key("a"));
        assert_eq!(round.resend[0].text, "hi");
        assert_eq!(round.resend[0].attempts, 2);
        assert_eq!(
            outbox.acked(&key("a"), &ack("m1", 4)),
            AckOutcome::First {
                conversation_id: conversation(),
                scheduled_us: 7
            }
        );
        assert_eq!(outbox.outstanding(), 0);
        assert_eq!(outbox.acked_sends().count(), 1);
    }

    #[test]
    fn a_repeated_ack_is_the_idempotent_send_and_a_different_one_is_caught() {
        let mut outbox = Outbox::new(3);
        outbox.sent(conversation(), key("a"), "hi".to_owned(), 0);
        outbox.acked(&key("a"), &ack("m1", 4));
        assert_eq!(outbox.acked(&key("a"), &ack("m1", 4)), AckOutcome::Repeated);
        let AckOutcome::Changed { first } = outbox.acked(&key("a"), &ack("m2", 5)) else {
            panic!("a second message for one key must be reported");
        };
        assert_eq!(first.seq, 4);
        assert_eq!(outbox.acked(&key("b"), &ack("m3", 6)), AckOutcome::Unknown);
    }

    #[test]
    fn retries_are_bounded_and_giving_up_is_counted() {
        let mut outbox = Outbox::new(2);
        outbox.sent(conversation(), key("a"), "hi".to_owned(), 0);
        let wait = outbox.retryable(&key("a"), Some(Duration::from_millis(400)));
        assert_eq!(
            wait,
            Some(Duration::from_millis(400)),
            "the server's wait wins"
        );
        assert_eq!(outbox.resend_round().resend.len(), 1);
        outbox.retryable(&key("a"), None);
        let round = outbox.resend_round();
        assert!(round.resend.is_empty());
        assert_eq!(round.given_up, 1);
        assert_eq!(outbox.outstanding(), 0);
        assert_eq!(outbox.abandoned_sends().len(), 1);
        assert_eq!(outbox.acked(&key("a"), &ack("m1", 1)), AckOutcome::Unknown);
    }

    #[test]
    fn refused_sends_are_dropped_and_the_rest_abandoned_at_the_end() {
        let mut outbox = Outbox::new(5);
        outbox.sent(conversation(), key("a"), "hi".to_owned(), 0);
        outbox.sent(conversation(), key("b"), "ho".to_owned(), 0);
        outbox.refused(&key("a"));
        assert_eq!(outbox.outstanding(), 1);
        assert_eq!(outbox.abandon_all(), 1);
        assert_eq!(outbox.abandoned_sends()[0].client_msg_id, key("b"));
    }

    #[test]
    fn the_backoff_doubles_up_to_five_seconds() {
        assert_eq!(backoff(1, None), Duration::from_millis(250));
        assert_eq!(backoff(3, None), Duration::from_secs(1));
        assert_eq!(backoff(9, None), Duration::from_secs(5));
    }
}
