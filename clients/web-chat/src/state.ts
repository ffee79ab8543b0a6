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
  /** My read watermark per conversation. */
  readSeqs = new Map<ConversationId, number>();
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

  /** The list from `conversation.list`; each `unread` becomes a read watermark, so that a
   * message counted by the server and also seen live is not counted twice. */
  listed(items: ConversationListItem[]): void {
    this.conversations = new Map(items.map((item) => [item.conversation_id, item]));
    for (const item of items) {
      const read = item.last_seq - item.unread;
      this.readSeqs.set(
        item.conversation_id,
        Math.max(read, this.readSeqs.get(item.conversation_id) ?? 0),
      );
      this.recount(item);
    }
  }

  /** A new message in a conversation: the list's `last_seq`, and my own messages count as read. */
  arrived(message: Message): void {
    const item = this.conversations.get(message.conversation_id);
    if (!item) return;
    item.last_seq = Math.max(item.last_seq, message.seq);
    if (message.sender_id === this.me) this.read(message.conversation_id, message.seq);
    this.recount(item);
  }

  /** Raises the read watermark (the open conversation is read up to its last message). */
  read(id: ConversationId, seq: number): void {
    this.readSeqs.set(id, Math.max(seq, this.readSeqs.get(id) ?? 0));
    const item = this.conversations.get(id);
    if (item) this.recount(item);
  }

  private recount(item: ConversationListItem): void {
    const read = this.readSeqs.get(item.conversation_id) ?? 0;
    item.unread = Math.max(0, item.last_seq - read);
  }
}
