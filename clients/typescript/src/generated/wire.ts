// Generated from the Rust `wire` crate by `cargo run -p wire-typescript`.
// Do not edit: change the wire types and regenerate (a test fails while this file is stale).

export type UserId = string;
export type ConversationId = string;
export type MessageId = string;
export type ClientMsgId = string;
export type NodeId = string;
export type SessionId = string;
export type Seq = number;
export type AttachmentId = string;
export type ConversationKind = "direct" | "group";
export type Conversation = { conversation_id: ConversationId, kind: ConversationKind, title: string | null, members: Array<UserId>, created_by: UserId, created_at: string, last_seq: Seq, };
export type ForwardedFrom = { conversation_id: ConversationId, message_id: MessageId, };
export type AttachmentRef = { attachment_id: AttachmentId, name: string, content_type: string, size: number, };
export type Message = { message_id: MessageId, conversation_id: ConversationId, seq: Seq, sender_id: UserId, client_msg_id: ClientMsgId, text: string, reply_to: MessageId | null, forwarded_from: ForwardedFrom | null, reactions: { [key in string]: Array<UserId> }, created_at: string, edited_at: string | null, deleted: boolean, 
/**
 * Always serialized (an empty list when none); absent in records written before v1.1.
 */
attachments: Array<AttachmentRef>, };
export type ErrorCode = "bad_request" | "unknown_op" | "unauthorized" | "not_member" | "not_found" | "forbidden" | "conflict" | "too_large" | "rate_limited" | "unavailable" | "internal";
export type ErrorBody = { code: ErrorCode, message: string, retry_after_ms?: number, };
export type Welcome = { user_id: UserId, session_id: SessionId, node_id: NodeId, protocol: number, heartbeat_ms: number, 
/**
 * Protocol v1.1 features this node serves (`"attachments"`, `"search"`); always present.
 */
features: Array<string>, };
export type TypingState = "started" | "stopped";
export type ServerEvent = { "ev": "welcome", "data": Welcome } | { "ev": "message.new", "data": { message: Message, } } | { "ev": "message.stored", "data": { conversation_id: ConversationId, message_id: MessageId, seq: Seq, } } | { "ev": "message.edited", "data": { message: Message, } } | { "ev": "message.deleted", "data": { conversation_id: ConversationId, message_id: MessageId, seq: Seq, } } | { "ev": "reaction.updated", "data": { conversation_id: ConversationId, message_id: MessageId, reactions: { [key in string]: Array<UserId> }, } } | { "ev": "conversation.updated", "data": { conversation: Conversation, } } | { "ev": "member.joined", "data": { conversation_id: ConversationId, user_ids: Array<UserId>, by: UserId, conversation: Conversation, } } | { "ev": "member.left", "data": { conversation_id: ConversationId, user_ids: Array<UserId>, by: UserId, conversation: Conversation, } } | { "ev": "receipt.updated", "data": { conversation_id: ConversationId, user_id: UserId, delivered_seq: Seq, read_seq: Seq, } } | { "ev": "typing", "data": { conversation_id: ConversationId, user_id: UserId, state: TypingState, } } | { "ev": "presence", "data": { user_id: UserId, online: boolean, last_seen?: string, } } | { "ev": "goaway", "data": { reconnect_after_ms: number, } };
export type CreateConversationArgs = { kind: ConversationKind, members: Array<UserId>, title?: string, };
export type ConversationRef = { conversation_id: ConversationId, };
export type ListConversationsArgs = { limit?: number, 
/**
 * The `conversation_id` of the last item of the previous page.
 */
after?: ConversationId, };
export type UpdateConversationArgs = { conversation_id: ConversationId, title: string, };
export type MembersArgs = { conversation_id: ConversationId, user_ids: Array<UserId>, };
export type SendArgs = { conversation_id: ConversationId, client_msg_id: ClientMsgId, text: string, reply_to?: MessageId, 
/**
 * Uploaded files to carry (protocol v1.1), at most [`MAX_ATTACHMENTS`].
 */
attachments?: Array<AttachmentId>, };
export type EditArgs = { conversation_id: ConversationId, message_id: MessageId, text: string, };
export type MessageRef = { conversation_id: ConversationId, message_id: MessageId, };
export type ForwardArgs = { conversation_id: ConversationId, message_id: MessageId, to_conversation_id: ConversationId, client_msg_id: ClientMsgId, 
/**
 * The caller's own uploads to add to the forwarded message's attachments (protocol v1.1).
 */
attachments?: Array<AttachmentId>, };
export type ReactionArgs = { conversation_id: ConversationId, message_id: MessageId, emoji: string, };
export type HistoryArgs = { conversation_id: ConversationId, before_seq?: Seq, after_seq?: Seq, limit?: number, };
export type SyncArgs = { conversations: { [key in ConversationId]: Seq }, };
export type ReceiptArgs = { conversation_id: ConversationId, seq: Seq, };
export type PresenceGetArgs = { user_ids: Array<UserId>, };
export type Empty = Record<symbol, never>;
export type ConversationResult = { conversation: Conversation, };
export type ConversationListItem = { 
/**
 * Messages after the caller's `read_seq`.
 */
unread: number, conversation_id: ConversationId, kind: ConversationKind, title: string | null, members: Array<UserId>, created_by: UserId, created_at: string, last_seq: Seq, };
export type ConversationListResult = { conversations: Array<ConversationListItem>, };
export type SendAck = { message_id: MessageId, seq: Seq, created_at: string, };
export type MessageResult = { message: Message, };
export type HistoryResult = { messages: Array<Message>, has_more: boolean, 
/**
 * The oldest seq retention still keeps (v1.1): seqs below it were purged, not lost. 1 when
 * nothing was purged.
 */
first_seq: Seq, };
export type SyncResult = { conversations: { [key in ConversationId]: HistoryResult }, };
export type PresenceInfo = { online: boolean, last_seen: string | null, };
export type PresenceResult = { presence: { [key in UserId]: PresenceInfo }, };
export type SearchArgs = { query: string, 
/**
 * Only this conversation (the caller must be a member).
 */
conversation_id?: ConversationId, limit?: number, 
/**
 * The `next_cursor` of the previous page.
 */
cursor?: string, };
export type SearchHit = { message: Message, 
/**
 * Relevance (BM25); higher is better. Comparable within one search only.
 */
score: number, };
export type SearchResult = { hits: Array<SearchHit>, 
/**
 * Pass as `cursor` for the next page; `null` on the last page.
 */
next_cursor: string | null, };

export const OPS = [
  "ping",
  "conversation.create",
  "conversation.get",
  "conversation.list",
  "conversation.update",
  "conversation.add_members",
  "conversation.remove_members",
  "conversation.leave",
  "message.send",
  "message.edit",
  "message.delete",
  "message.forward",
  "reaction.add",
  "reaction.remove",
  "history.get",
  "sync",
  "receipt.delivered",
  "receipt.read",
  "typing.start",
  "typing.stop",
  "presence.get",
  "search.messages",
] as const;
export type OpName = (typeof OPS)[number];
export interface OpArgs {
  "ping": Empty;
  "conversation.create": CreateConversationArgs;
  "conversation.get": ConversationRef;
  "conversation.list": ListConversationsArgs;
  "conversation.update": UpdateConversationArgs;
  "conversation.add_members": MembersArgs;
  "conversation.remove_members": MembersArgs;
  "conversation.leave": ConversationRef;
  "message.send": SendArgs;
  "message.edit": EditArgs;
  "message.delete": MessageRef;
  "message.forward": ForwardArgs;
  "reaction.add": ReactionArgs;
  "reaction.remove": ReactionArgs;
  "history.get": HistoryArgs;
  "sync": SyncArgs;
  "receipt.delivered": ReceiptArgs;
  "receipt.read": ReceiptArgs;
  "typing.start": ConversationRef;
  "typing.stop": ConversationRef;
  "presence.get": PresenceGetArgs;
  "search.messages": SearchArgs;
}
export interface OpResults {
  "ping": Empty;
  "conversation.create": ConversationResult;
  "conversation.get": ConversationResult;
  "conversation.list": ConversationListResult;
  "conversation.update": ConversationResult;
  "conversation.add_members": ConversationResult;
  "conversation.remove_members": ConversationResult;
  "conversation.leave": Empty;
  "message.send": SendAck;
  "message.edit": MessageResult;
  "message.delete": Empty;
  "message.forward": SendAck;
  "reaction.add": MessageResult;
  "reaction.remove": MessageResult;
  "history.get": HistoryResult;
  "sync": SyncResult;
  "receipt.delivered": Empty;
  "receipt.read": Empty;
  "typing.start": Empty;
  "typing.stop": Empty;
  "presence.get": PresenceResult;
  "search.messages": SearchResult;
}

export const ERROR_CODES = [
  "bad_request",
  "unknown_op",
  "unauthorized",
  "not_member",
  "not_found",
  "forbidden",
  "conflict",
  "too_large",
  "rate_limited",
  "unavailable",
  "internal",
] as const;
export const CLOSE_CODES = {
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  MessageTooBig: 1009,
  TryAgainLater: 1013,
  TokenInvalid: 4001,
  Kicked: 4003,
  RateLimitAbuse: 4008,
  TooSlow: 4009,
} as const;
export const PROTOCOL_VERSION = 1;
