import type {
  ConversationId,
  ConversationListItem,
  HistoryPager,
  Message,
  MessageState,
  OutgoingMessage,
  PresenceInfo,
  UserId,
} from "@parley/client";

/** Everything the page shows, kept up to date from the SDK's events. */
export class ChatState {
  me: UserId = "";
  connection = "connecting";
  conversations = new Map<ConversationId, ConversationListItem>();
  openId: ConversationId | undefined;
  /** Messages per conversation, by seq. */
  messages = new Map<ConversationId, Map<number, Message>>();
  /** The messages this page sent, by `client_msg_id`. */
  sent = new Map<string, OutgoingMessage>();
  /** Other members' read and delivered watermarks in each conversation. */
  watermarks = new Map<ConversationId, Map<UserId, { delivered: number; read: number }>>();
  presence = new Map<UserId, PresenceInfo>();
  typing = new Map<UserId, ReturnType<typeof setTimeout>>();
  pager: HistoryPager | undefined;
  replyTo: Message | undefined;
  editing: Message | undefined;

  conversationMessages(id: ConversationId): Map<number, Message> {
    let messages = this.messages.get(id);
    if (!messages) {
      messages = new Map();
      this.messages.set(id, messages);
    }
    return messages;
  }

  put(message: Message): void {
    this.conversationMessages(message.conversation_id).set(message.seq, message);
  }

  /** Applies a change to a known message (edit, delete, reactions). */
  update(id: ConversationId, messageId: string, change: (message: Message) => Message): void {
    const messages = this.conversationMessages(id);
    for (const [seq, message] of messages) {
      if (message.message_id === messageId) messages.set(seq, change(message));
    }
  }

  sentState(message: OutgoingMessage): void {
    this.sent.set(message.client_msg_id, message);
  }

  /** My messages of a conversation not acknowledged yet (shown with a clock). */
  unacknowledged(id: ConversationId): OutgoingMessage[] {
    return [...this.sent.values()].filter(
      (message) => message.conversation_id === id && message.state === "pending",
    );
  }

  /** The tick of one of my messages: from this page's sends, else from the others' receipts. */
  tick(message: Message): MessageState {
    const others = [...(this.watermarks.get(message.conversation_id)?.values() ?? [])];
    if (others.some((mark) => mark.read >= message.seq)) return "read";
    if (others.some((mark) => mark.delivered >= message.seq)) return "delivered";
    return this.sent.get(message.client_msg_id)?.state ?? "accepted";
  }

  receipt(id: ConversationId, user: UserId, delivered: number, read: number): void {
    let marks = this.watermarks.get(id);
    if (!marks) {
      marks = new Map();
      this.watermarks.set(id, marks);
    }
    marks.set(user, { delivered, read });
  }

  /** A new message in a conversation: the list's `last_seq` and, when not open, its unread. */
  arrived(message: Message): void {
    const item = this.conversations.get(message.conversation_id);
    if (!item) return;
    item.last_seq = Math.max(item.last_seq, message.seq);
    const mine = message.sender_id === this.me;
    if (!mine && this.openId !== message.conversation_id) item.unread += 1;
  }
}
