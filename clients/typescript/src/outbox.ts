import { sleep } from "./backoff.js";
import { NoReplyError, ParleyError } from "./errors.js";
import type {
  ConversationId,
  ErrorBody,
  MessageId,
  SendAck,
  SendArgs,
  UserId,
} from "./generated/wire.js";
import type { StoredValue } from "./storage.js";

/** A sent message's progress: queued, acknowledged (durable), written to the database,
 * delivered to another member's device, read by another member; or refused for good. */
export type MessageState = "pending" | "accepted" | "stored" | "delivered" | "read" | "failed";

const RANK: Record<MessageState, number> = {
  pending: 0,
  accepted: 1,
  stored: 2,
  delivered: 3,
  read: 4,
  failed: 5,
};

export interface OutgoingMessage extends SendArgs {
  state: MessageState;
  /** Set once accepted. */
  message_id?: MessageId;
  seq?: number;
  created_at?: string;
  /** Why the server refused it, when `failed`. */
  error?: ErrorBody;
}

/** Codes worth retrying with the same `client_msg_id`: nothing was accepted yet. */
const RETRIED: ReadonlySet<string> = new Set(["rate_limited", "unavailable", "internal"]);
const RETRY_DELAY_MS = 500;
/** Accepted messages whose later states are still followed. */
const FOLLOWED = 1000;

export type SendOne = (args: SendArgs) => Promise<SendAck>;

/**
 * Messages the app sent: each gets its `client_msg_id` at once and is sent, in order, until the
 * server acknowledges it, over as many connections as it takes (the server answers a repeated
 * `client_msg_id` with the first ack, so a message is never created twice). Pending messages
 * are kept in storage, so they also survive a reload.
 */
export class Outbox {
  private readonly queue: OutgoingMessage[];
  private readonly followed: OutgoingMessage[] = [];
  private readonly storedIds = new Set<MessageId>();
  private flushing = false;

  constructor(
    private readonly store: StoredValue<OutgoingMessage[]>,
    private readonly changed: (message: OutgoingMessage) => void,
  ) {
    this.queue = store.load([]);
  }

  add(args: SendArgs): OutgoingMessage {
    const message: OutgoingMessage = { ...args, state: "pending" };
    this.queue.push(message);
    this.store.save(this.queue);
    this.changed(message);
    return message;
  }

  pending(): readonly OutgoingMessage[] {
    return this.queue;
  }

  /** Sends the queue in order; stops when the connection is gone (call again once back). */
  async flush(send: SendOne): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const head = this.queue[0] as OutgoingMessage;
        if (!(await this.sendHead(head, send))) return;
        this.queue.shift();
        this.store.save(this.queue);
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Whether the head left the queue (accepted or refused); false when disconnected. */
  private async sendHead(head: OutgoingMessage, send: SendOne): Promise<boolean> {
    const { conversation_id, client_msg_id, text, reply_to, attachments } = head;
    for (;;) {
      try {
        const ack = await send({ conversation_id, client_msg_id, text, reply_to, attachments });
        this.accepted(head, ack);
        return true;
      } catch (error) {
        if (error instanceof NoReplyError && error.reason !== "timeout") return false;
        if (error instanceof ParleyError && !RETRIED.has(error.code)) {
          head.error = { code: error.code, message: error.message };
          this.advance(head, "failed");
          return true;
        }
        const retryAfter = error instanceof ParleyError ? error.retryAfterMs : undefined;
        await sleep(retryAfter ?? RETRY_DELAY_MS);
      }
    }
  }

  private accepted(message: OutgoingMessage, ack: SendAck): void {
    message.message_id = ack.message_id;
    message.seq = ack.seq;
    message.created_at = ack.created_at;
    this.followed.push(message);
    if (this.followed.length > FOLLOWED) this.followed.shift();
    this.advance(message, this.storedIds.delete(ack.message_id) ? "stored" : "accepted");
  }

  /** `message.stored` (it may come before the ack: remembered until then). */
  markStored(messageId: MessageId): void {
    const message = this.followed.find((candidate) => candidate.message_id === messageId);
    if (message) {
      this.advance(message, "stored");
    } else if (this.queue.length > 0) {
      // Perhaps the ack of the head is still on its way; or a message of another device.
      this.storedIds.add(messageId);
      const oldest = this.storedIds.values().next().value;
      if (this.storedIds.size > FOLLOWED && oldest !== undefined) this.storedIds.delete(oldest);
    }
  }

  /** `receipt.updated` from another member: raises the messages it covers. */
  receipt(conversationId: ConversationId, by: UserId, me: UserId, delivered: number, read: number) {
    if (by === me) return;
    for (const message of this.followed) {
      if (message.conversation_id !== conversationId || message.seq === undefined) continue;
      if (message.seq <= read) this.advance(message, "read");
      else if (message.seq <= delivered) this.advance(message, "delivered");
    }
  }

  /** States only move forward. */
  private advance(message: OutgoingMessage, state: MessageState): void {
    if (RANK[state] <= RANK[message.state]) return;
    message.state = state;
    this.changed(message);
  }
}
