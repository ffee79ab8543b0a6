import type { ConversationId, Message } from "./generated/wire.js";
import type { StoredValue } from "./storage.js";

/** What became of a message offered to the timeline. */
export type Accepted = "applied" | "duplicate" | "waiting";

/**
 * The app's view of each conversation's messages: the highest seq applied without a gap, kept
 * in storage. Messages reach `deliver` once each, in seq order; one that arrives ahead of a
 * gap waits until the messages before it came (from `sync` or `history.get`).
 *
 * A conversation is tracked from the moment the SDK first hears of it: from the user's read
 * watermark when `conversation.list` reveals it (see `discover`), from its `last_seq` when the
 * user is added live (`member.joined`), or from the seq before the first message seen. Older
 * messages are history, read with `history.get`.
 */
export class Timeline {
  private readonly seqs: Record<ConversationId, number>;
  private readonly waiting = new Map<ConversationId, Map<number, Message>>();

  constructor(
    private readonly stored: StoredValue<Record<ConversationId, number>>,
    private readonly deliver: (message: Message) => void,
  ) {
    this.seqs = stored.load({});
  }

  lastSeq(conversationId: ConversationId): number | undefined {
    return this.seqs[conversationId];
  }

  /** The last seq of every tracked conversation: the argument of `sync`. */
  snapshot(): Record<ConversationId, number> {
    return { ...this.seqs };
  }

  /** Starts tracking a conversation at `lastSeq` unless it is tracked already. */
  adopt(conversationId: ConversationId, lastSeq: number): void {
    if (this.seqs[conversationId] === undefined) {
      this.seqs[conversationId] = lastSeq;
      this.stored.save(this.seqs);
    }
  }

  /** Stops tracking a conversation the user no longer belongs to. */
  forget(conversationId: ConversationId): void {
    delete this.seqs[conversationId];
    this.waiting.delete(conversationId);
    this.stored.save(this.seqs);
  }

  /** Whether messages wait behind a gap in this conversation. */
  hasGap(conversationId: ConversationId): boolean {
    return (this.waiting.get(conversationId)?.size ?? 0) > 0;
  }

  accept(message: Message): Accepted {
    const conversationId = message.conversation_id;
    this.adopt(conversationId, message.seq - 1);
    const last = this.seqs[conversationId] ?? 0;
    if (message.seq <= last) return "duplicate";
    let waiting = this.waiting.get(conversationId);
    if (!waiting) {
      waiting = new Map();
      this.waiting.set(conversationId, waiting);
    }
    waiting.set(message.seq, message);
    const applied = this.drain(conversationId, waiting);
    return applied ? "applied" : "waiting";
  }

  /** Delivers the waiting messages that now follow without a gap; whether any did. */
  private drain(conversationId: ConversationId, waiting: Map<number, Message>): boolean {
    let last = this.seqs[conversationId] ?? 0;
    const start = last;
    for (let next = waiting.get(last + 1); next; next = waiting.get(last + 1)) {
      waiting.delete(last + 1);
      last += 1;
      this.seqs[conversationId] = last;
      this.deliver(next);
    }
    if (last !== start) this.stored.save(this.seqs);
    return last !== start;
  }
}
